//! Restart slots against real servers: the FleetLock client against the fleet test
//! server on 127.0.0.1, the gate with a real SQLite store, and the etcd semaphore
//! against Debian's real `etcd` started here on loopback.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leger_api_types::fleet::LockState;
use leger_config::fleet::{FleetLockSettings, FleetSettings, LockBackend};
use leger_e2e::fleet_server;
use legerd::fleet::etcd::EtcdSemaphore;
use legerd::fleet::fleetlock::FleetLockClient;
use legerd::fleet::{Disruption, FleetGate, LockError, RetrySettings};
use legerd::metrics::Metrics;
use legerd::store::Store;

async fn server(slots: usize) -> (String, fleet_server::Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = fleet_server::state(slots, None);
    tokio::spawn(fleet_server::serve(listener, Arc::clone(&state)));
    (format!("http://{addr}"), state)
}

fn ops(state: &fleet_server::Shared) -> Vec<String> {
    state
        .lock()
        .unwrap()
        .log
        .iter()
        .map(|e| format!("{} {}", e.op, e.id))
        .collect()
}

#[tokio::test]
async fn fleetlock_slots_are_per_group_reentrant_and_refused_when_full() {
    let (url, state) = server(1).await;
    let a = FleetLockClient::new(&url, "a", "web");
    let b = FleetLockClient::new(&url, "b", "web");
    let c = FleetLockClient::new(&url, "c", "db");
    a.pre_reboot().await.unwrap();
    a.pre_reboot().await.unwrap();
    let e = b.pre_reboot().await.unwrap_err();
    match &e {
        LockError::Refused { kind, value, .. } => {
            assert_eq!(kind, "failed_lock");
            assert!(value.contains("holders: a"), "{value}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    c.pre_reboot().await.unwrap();
    a.steady_state().await.unwrap();
    b.pre_reboot().await.unwrap();
    assert_eq!(
        ops(&state),
        [
            "grant a",
            "regrant a",
            "refuse b",
            "grant c",
            "release a",
            "grant b"
        ]
    );
    assert_eq!(state.lock().unwrap().protocol_errors, 0);
}

#[tokio::test]
async fn fleetlock_other_answers_are_never_a_go_ahead() {
    // A web server that is not a FleetLock server: 404 pages and redirects.
    let app = axum::Router::new()
        .route(
            "/v1/pre-reboot",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, "/login")],
                )
            }),
        )
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "<html>no</html>") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = FleetLockClient::new(&url, "a", "default");
    for e in [
        client.pre_reboot().await.unwrap_err(),
        client.steady_state().await.unwrap_err(),
    ] {
        assert!(matches!(e, LockError::Protocol { .. }), "{e:?}");
        assert!(e.to_string().contains("FleetLock protocol"), "{e}");
    }
    // Nothing listens here any more: unreachable, which means waiting.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = FleetLockClient::new(&format!("http://{closed}"), "a", "default")
        .pre_reboot()
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::Unreachable { .. }), "{e:?}");
}

/// `fleet.lock.etcd` pointing at a web server that is not etcd: a 200 with a web page
/// and a 404 are protocol errors naming etcd and the setting to check, never a slot,
/// and the gate waits on them.
#[tokio::test]
async fn etcd_answers_that_are_not_etcds_are_never_a_go_ahead() {
    let answer: Arc<Mutex<(u16, &'static str)>> = Arc::new(Mutex::new((200, "<html>hi</html>")));
    let app = axum::Router::new().fallback({
        let answer = Arc::clone(&answer);
        move || {
            let (code, body) = *answer.lock().unwrap();
            async move { (axum::http::StatusCode::from_u16(code).unwrap(), body) }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let gate = FleetGate::new(
        &fleet(
            "h1",
            LockBackend::Etcd {
                endpoints: vec![url.clone()],
                slots: 1,
            },
        ),
        RETRY,
        Arc::new(Mutex::new(Store::open(&dir.path().join("s.db")).unwrap())),
        Arc::new(Metrics::new(false)),
    );
    for bad in [
        (200, "<html>hi</html>"),
        (404, "not found"),
        (200, "{\"kvs\":[]}"),
    ] {
        *answer.lock().unwrap() = bad;
        let e = EtcdSemaphore::new(vec![url.clone()], "web", 1, "h1")
            .lock()
            .await
            .unwrap_err();
        assert!(matches!(e, LockError::Protocol { .. }), "{bad:?}: {e:?}");
        let text = e.to_string();
        for want in [
            "etcd v3 JSON gateway",
            "check fleet.lock.etcd",
            url.as_str(),
        ] {
            assert!(text.contains(want), "{bad:?}: no {want:?} in {text}");
        }
        assert!(!text.contains("FleetLock"), "{text}");
        let (wait, _) = gate.before_apply(&restart_web()).await.unwrap_err();
        assert!(wait.contains("check fleet.lock.etcd"), "{wait}");
        assert!(!gate.holds_slot());
        assert_eq!(gate.status().lock.unwrap().state, LockState::Waiting);
    }
}

fn fleet(host: &str, backend: LockBackend) -> FleetSettings {
    FleetSettings {
        host: host.to_owned(),
        groups: vec!["eu".into()],
        report_url: None,
        report_token_file: None,
        report_interval: Duration::from_secs(300),
        lock: Some(FleetLockSettings {
            backend,
            group: "default".into(),
        }),
    }
}

const RETRY: RetrySettings = RetrySettings {
    initial: Duration::from_secs(2),
    max: Duration::from_secs(60),
};

fn restart_web() -> Disruption {
    Disruption {
        units: vec!["web.service".into()],
    }
}

#[tokio::test]
async fn fleet_gate_keeps_a_slot_after_a_failed_gate_across_restarts() {
    let (url, state) = server(1).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let open = || Arc::new(Mutex::new(Store::open(&db).unwrap()));
    let settings = fleet("h1", LockBackend::FleetLock { url: url.clone() });
    let metrics = Arc::new(Metrics::new(false));

    let gate = FleetGate::new(&settings, RETRY, open(), Arc::clone(&metrics));
    // A first install or a self-heal start asks nobody.
    gate.before_apply(&Disruption::default()).await.unwrap();
    assert!(ops(&state).is_empty());
    gate.before_apply(&restart_web()).await.unwrap();
    gate.after_failed_gate().await;
    let s = gate.status();
    assert_eq!(s.host, "h1");
    let lock = s.lock.unwrap();
    assert_eq!(lock.state, LockState::Held);
    assert_eq!(lock.held_reason.as_deref(), Some("rolled_back"));
    drop(gate);

    // legerd restarts: the slot is still on record and neither forgotten nor released.
    let gate = FleetGate::new(&settings, RETRY, open(), Arc::clone(&metrics));
    assert!(gate.holds_slot());
    // Another host of the group waits, with the server's answer in its status.
    let other_db = dir.path().join("other.db");
    let other_metrics = Arc::new(Metrics::new(false));
    let other = FleetGate::new(
        &fleet("h2", LockBackend::FleetLock { url: url.clone() }),
        RETRY,
        Arc::new(Mutex::new(Store::open(&other_db).unwrap())),
        Arc::clone(&other_metrics),
    );
    assert!(
        other_metrics
            .render()
            .contains("\nlegerd_fleet_lock_waiting 0\n")
    );
    let (wait, retry) = other.before_apply(&restart_web()).await.unwrap_err();
    assert!(
        retry >= RETRY.initial && retry <= RETRY.initial * 2,
        "{retry:?}"
    );
    assert!(
        wait.contains("all 1 slots of group default are taken"),
        "{wait}"
    );
    assert_eq!(other.status().lock.unwrap().state, LockState::Waiting);
    // The dashboard's "hosts waiting for the lock" reads this gauge.
    let text = other_metrics.render();
    assert!(text.contains("\nlegerd_fleet_lock_waiting 1\n"), "{text}");
    assert!(text.contains("\nlegerd_fleet_lock_held 0\n"), "{text}");
    // A success that changed nothing keeps the slot, and so does a pass that only holds
    // the last good revision; the next apply of a new target returns it.
    gate.after_healthy(false, true, false).await;
    gate.after_healthy(true, false, true).await;
    assert!(gate.holds_slot());
    gate.before_apply(&restart_web()).await.unwrap();
    gate.after_healthy(true, true, true).await;
    assert!(!gate.holds_slot());
    other.before_apply(&restart_web()).await.unwrap();
    let text = other_metrics.render();
    assert!(text.contains("\nlegerd_fleet_lock_waiting 0\n"), "{text}");
    assert!(text.contains("\nlegerd_fleet_lock_held 1\n"), "{text}");
    assert_eq!(
        ops(&state),
        ["grant h1", "refuse h2", "release h1", "grant h2"]
    );
    let text = metrics.render();
    assert!(
        text.contains(r#"legerd_fleet_lock_requests_total{op="acquire",result="ok"} 1"#),
        "{text}"
    );
    assert!(text.contains("legerd_fleet_lock_held 0"), "{text}");
}

#[tokio::test]
async fn fleet_gate_waits_while_the_server_is_down() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new(false));
    let gate = FleetGate::new(
        &fleet(
            "h1",
            LockBackend::FleetLock {
                url: format!("http://{closed}"),
            },
        ),
        RETRY,
        Arc::new(Mutex::new(Store::open(&dir.path().join("s.db")).unwrap())),
        Arc::clone(&metrics),
    );
    // First installs go ahead without a server; a restart waits for it.
    gate.before_apply(&Disruption::default()).await.unwrap();
    let (wait, _) = gate.before_apply(&restart_web()).await.unwrap_err();
    assert!(wait.contains("unreachable"), "{wait}");
    assert!(!gate.holds_slot());
    // An unreachable lock service is waiting too, and the gauge says so.
    let text = metrics.render();
    assert!(text.contains("\nlegerd_fleet_lock_waiting 1\n"), "{text}");
    // A pass that no longer needs a slot (the change was undone) stops waiting.
    gate.before_apply(&Disruption::default()).await.unwrap();
    assert!(metrics.render().contains("\nlegerd_fleet_lock_waiting 0\n"));
    assert_eq!(gate.status().lock.unwrap().state, LockState::Free);
}

/// A real etcd on loopback, stopped on drop.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn etcd() -> Etcd {
    let dir = tempfile::tempdir().unwrap();
    let client = free_port();
    let peer = free_port();
    let child = Command::new("etcd")
        .args([
            "--name",
            "leger-test",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen-client-urls",
            &format!("http://{client}"),
            "--advertise-client-urls",
            &format!("http://{client}"),
            "--listen-peer-urls",
            &format!("http://{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://{peer}"),
            "--initial-cluster",
            &format!("leger-test=http://{peer}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd is needed for this test (Debian package etcd-server; .ci/run installs it)");
    let url = format!("http://{client}");
    let etcd = Etcd {
        child,
        url,
        _dir: dir,
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = http
            .get(format!("{}/health", etcd.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "etcd did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    etcd
}

#[tokio::test]
async fn etcd_semaphore_against_real_etcd() {
    let etcd = etcd().await;
    let endpoints = vec![
        format!("http://{}", free_port()), // a dead endpoint first: the next one is tried
        etcd.url.clone(),
    ];
    let a = EtcdSemaphore::new(endpoints.clone(), "web", 1, "a");
    let b = EtcdSemaphore::new(endpoints.clone(), "web", 1, "b");
    let other_group = EtcdSemaphore::new(endpoints.clone(), "db", 1, "b");
    a.lock().await.unwrap();
    a.lock().await.unwrap();
    let e = b.lock().await.unwrap_err();
    assert!(
        matches!(&e, LockError::Refused { value, .. } if value.contains("holders: a")),
        "{e:?}"
    );
    other_group.lock().await.unwrap();
    let sem = a.read().await.unwrap();
    assert_eq!(
        (sem.total_slots, sem.holders.clone()),
        (1, vec!["a".to_owned()])
    );
    a.unlock().await.unwrap();
    b.lock().await.unwrap();
    b.unlock().await.unwrap();
    b.unlock().await.unwrap();

    // Twelve hosts race for three slots: the version check lets exactly three win.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = EtcdSemaphore::new(vec![etcd.url.clone()], "race", 3, &format!("h{i:02}"));
        tasks.push(tokio::spawn(async move { s.lock().await }));
    }
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 3);
    let sem = EtcdSemaphore::new(vec![etcd.url.clone()], "race", 3, "x")
        .read()
        .await
        .unwrap();
    assert_eq!(sem.holders.len(), 3);
}

#[tokio::test]
async fn etcd_gate_keeps_and_releases_like_fleetlock() {
    let etcd = etcd().await;
    let backend = || LockBackend::Etcd {
        endpoints: vec![etcd.url.clone()],
        slots: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = |n: &str| Arc::new(Mutex::new(Store::open(&dir.path().join(n)).unwrap()));
    let h1 = FleetGate::new(
        &fleet("h1", backend()),
        RETRY,
        store("1.db"),
        Arc::new(Metrics::new(false)),
    );
    let h2 = FleetGate::new(
        &fleet("h2", backend()),
        RETRY,
        store("2.db"),
        Arc::new(Metrics::new(false)),
    );
    h1.before_apply(&restart_web()).await.unwrap();
    h1.after_failed_gate().await;
    let (wait, _) = h2.before_apply(&restart_web()).await.unwrap_err();
    assert!(wait.contains("all 1 semaphore slots"), "{wait}");
    let msg = h1.release().await.unwrap();
    assert!(msg.contains("released"), "{msg}");
    h2.before_apply(&restart_web()).await.unwrap();
}

//! Whole passes in-process with overlays and the fleet lock: real files, a real SQLite
//! store, a dir source, the fleet test server on 127.0.0.1. systemd is the recording
//! double, whose unit states the test sets (it never pretends a restart changes one);
//! what a real restart does, and a failing health gate, are tested on the test bed.

use std::path::Path;
use std::sync::{Arc, Mutex};

use leger_api_types::fleet::LockState;
use leger_api_types::status::reason;
use leger_api_types::{ConditionStatus, PassOutcome};
use leger_config::fleet::{FleetLockSettings, LockBackend};
use leger_e2e::fleet_server;
use legerd::model::UnitState;
use legerd::reconciler::Reconciler;
use legerd::store::Store;
use legerd::systemd::recording::{Call, RecordingUnitManager};

#[allow(dead_code)]
#[path = "support/upstream.rs"]
mod upstream;

const COMMON: &str = "[Container]\nImage=localhost/busybox:latest\nExec=echo common\n";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn active() -> UnitState {
    UnitState {
        load_state: "loaded".into(),
        active_state: "active".into(),
        sub_state: "running".into(),
    }
}

struct Host {
    reconciler: Reconciler<RecordingUnitManager>,
    units: Arc<RecordingUnitManager>,
    quadlets: std::path::PathBuf,
}

fn host(root: &Path, name: &str, groups: &[&str], source: &Path, lock_url: &str) -> Host {
    let dir = root.join(name);
    let mut settings = legerd::testkit::settings_in(&dir);
    settings.fleet.host = name.to_owned();
    settings.fleet.groups = groups.iter().map(|g| (*g).to_owned()).collect();
    settings.fleet.lock = Some(FleetLockSettings {
        backend: LockBackend::FleetLock {
            url: lock_url.to_owned(),
        },
        group: "web".into(),
    });
    write(
        &dir,
        "etc/desired.toml",
        &format!(
            "[source]\nkind = \"dir\"\npath = \"{}\"\noverlays = [\"groups/{{group}}/apps\", \"hosts/{{host}}/apps\"]\n",
            source.display()
        ),
    );
    std::fs::create_dir_all(&settings.paths.state_dir).unwrap();
    let store = Arc::new(Mutex::new(
        Store::open(&settings.paths.state_dir.join("state.db")).unwrap(),
    ));
    let units = Arc::new(RecordingUnitManager::new());
    let quadlets = settings.paths.quadlet_dir.clone();
    Host {
        reconciler: Reconciler::new(settings, Arc::clone(&units), store),
        units,
        quadlets,
    }
}

fn apps(h: &Host) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(&h.quadlets)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn fleet_pass_overlays_first_installs_without_lock_then_one_restart_at_a_time() {
    let t = tempfile::tempdir().unwrap();
    let source = t.path().join("source");
    // The common layer is the source root; groups and hosts add and replace apps.
    write(&source, "web/web.container", COMMON);
    write(&source, "groups/eu/apps/cache/cache.container", COMMON);
    write(
        &source,
        "hosts/h2/apps/web/web.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=echo h2\n",
    );
    write(
        &source,
        "hosts/h2/apps/cache/leger.toml",
        "enabled = false\n",
    );

    // The lock server is not there yet: first installs need no slot.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("http://{closed}");
    let mut h1 = host(t.path(), "h1", &["eu"], &source, &down);
    let mut h2 = host(t.path(), "h2", &["eu"], &source, &down);
    for h in [&mut h1, &mut h2] {
        for u in ["web.service", "cache.service"] {
            h.units.set_state_after_job(u, active());
        }
        let r = h.reconciler.reconcile(&["startup".into()]).await;
        assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    }
    assert_eq!(apps(&h1), ["cache", "web"]);
    assert_eq!(apps(&h2), ["web"]);
    let h2_web = std::fs::read_to_string(h2.quadlets.join("web/web.container")).unwrap();
    assert!(h2_web.contains("echo h2"), "{h2_web}");
    let s1 = h1.reconciler.status(None);
    let layers: Vec<(String, Option<String>)> = s1
        .status
        .apps
        .iter()
        .map(|a| (a.name.clone(), a.layer.clone()))
        .collect();
    assert_eq!(
        layers,
        [
            ("cache".to_owned(), Some("groups/eu/apps".to_owned())),
            ("web".to_owned(), Some(".".to_owned()))
        ]
    );
    let fleet = s1.status.fleet.clone().unwrap();
    assert_eq!(
        (fleet.host.as_str(), fleet.groups.clone()),
        ("h1", vec!["eu".to_owned()])
    );
    assert_eq!(fleet.lock.unwrap().state, LockState::Free);
    // The two hosts apply different compositions of one source revision.
    let (r1, r2) = (
        h1.reconciler.applied_revision().unwrap().to_owned(),
        h2.reconciler.applied_revision().unwrap().to_owned(),
    );
    assert_ne!(r1, r2);
    assert_eq!(r1.split('+').next(), r2.split('+').next());

    // Now everything runs, and a server holds the one slot of group web for another
    // host: a change of the common app waits on both, with nothing touched.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = fleet_server::state(1, None);
    tokio::spawn(fleet_server::serve(listener, Arc::clone(&state)));
    state
        .lock()
        .unwrap()
        .holders
        .insert("web".into(), vec!["h9".into()]);
    // legerd restarts with the lock server configured; its units run.
    let mut h1 = host(t.path(), "h1", &["eu"], &source, &url);
    for u in ["web.service", "cache.service"] {
        h1.units.set_state(u, active());
        h1.units.set_state_after_job(u, active());
    }
    write(
        &source,
        "web/web.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=echo common v2\n",
    );
    h1.units.take_calls();
    let r = h1.reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Waiting, "{:?}", r.record);
    assert!(r.retry_after.is_some());
    assert!(
        !h1.units
            .actions()
            .iter()
            .any(|c| matches!(c, Call::Restart(_))),
        "{:?}",
        h1.units.actions()
    );
    let on_disk = std::fs::read_to_string(h1.quadlets.join("web/web.container")).unwrap();
    assert!(!on_disk.contains("v2"), "nothing is written while waiting");
    let status = h1.reconciler.status(None);
    let reconciling = status
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Reconciling")
        .unwrap();
    assert_eq!(reconciling.status, ConditionStatus::True);
    assert_eq!(reconciling.reason, reason::WAITING_FOR_FLEET_LOCK);
    assert!(
        reconciling
            .message
            .contains("all 1 slots of group web are taken"),
        "{}",
        reconciling.message
    );
    assert_eq!(
        status.status.fleet.unwrap().lock.unwrap().state,
        LockState::Waiting
    );

    // The holder is done: h1 takes the slot, restarts, passes its gate, gives it back.
    state.lock().unwrap().holders.clear();
    let r = h1.reconciler.reconcile(&["retry".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert!(
        h1.units
            .actions()
            .contains(&Call::Restart("web.service".into())),
        "{:?}",
        h1.units.actions()
    );
    let log: Vec<String> = state
        .lock()
        .unwrap()
        .log
        .iter()
        .map(|e| format!("{} {}", e.op, e.id))
        .collect();
    assert_eq!(log, ["refuse h1", "grant h1", "release h1"]);
    assert_eq!(
        h1.reconciler
            .status(None)
            .status
            .fleet
            .unwrap()
            .lock
            .unwrap()
            .state,
        LockState::Free
    );
}

fn log(state: &fleet_server::Shared) -> Vec<String> {
    state
        .lock()
        .unwrap()
        .log
        .iter()
        .map(|e| format!("{} {}", e.op, e.id))
        .collect()
}

fn failed() -> UnitState {
    UnitState {
        load_state: "loaded".into(),
        active_state: "failed".into(),
        sub_state: "failed".into(),
    }
}

fn restarts(h: &Host) -> usize {
    h.units
        .actions()
        .iter()
        .filter(|c| matches!(c, Call::Restart(_)))
        .count()
}

#[tokio::test]
async fn fleet_pass_a_bad_revision_stops_at_the_first_host_and_keeps_the_slot() {
    let t = tempfile::tempdir().unwrap();
    let source = t.path().join("source");
    write(&source, "web/web.container", COMMON);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = fleet_server::state(1, None);
    tokio::spawn(fleet_server::serve(listener, Arc::clone(&state)));
    let mut h1 = host(t.path(), "h1", &[], &source, &url);
    let mut h2 = host(t.path(), "h2", &[], &source, &url);
    for h in [&mut h1, &mut h2] {
        h.units.set_state_after_job("web.service", active());
        let r = h.reconciler.reconcile(&["startup".into()]).await;
        assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    }
    assert!(log(&state).is_empty(), "first installs take no slot");

    // A bad revision: its container fails on h1, which rolls back and keeps the slot.
    write(
        &source,
        "web/web.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=false\n",
    );
    h1.units.set_state_after_job("web.service", failed());
    let r = h1.reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::RolledBack, "{:?}", r.record);
    let lock = h1
        .reconciler
        .status(None)
        .status
        .fleet
        .unwrap()
        .lock
        .unwrap();
    assert_eq!(lock.state, LockState::Held);
    assert_eq!(lock.held_reason.as_deref(), Some("rolled_back"));
    // h2 never runs it: it waits for the slot h1 keeps.
    h2.units.take_calls();
    let r = h2.reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Waiting, "{:?}", r.record);
    assert_eq!(restarts(&h2), 0);
    assert_eq!(log(&state), ["grant h1", "refuse h2"]);

    // A fixed revision: h1 applies it in the slot it kept and gives it back; then h2.
    write(
        &source,
        "web/web.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=echo fixed\n",
    );
    h1.units.set_state_after_job("web.service", active());
    let r = h1.reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    let r = h2.reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(restarts(&h2), 1);
    assert_eq!(
        log(&state),
        [
            "grant h1",
            "refuse h2",
            "release h1",
            "grant h2",
            "release h2"
        ]
    );
    assert!(state.lock().unwrap().holders["web"].is_empty());
}

/// A lock URL that points at something other than a FleetLock server: every answer that
/// is not the protocol's makes the pass wait with nothing written or restarted, and the
/// status says what answered and what to check.
#[tokio::test]
async fn fleet_pass_answers_not_in_the_protocol_apply_nothing() {
    type Answer = (u16, &'static str);
    let answer: Arc<Mutex<Answer>> = Arc::new(Mutex::new((200, "<html>Sign in</html>")));
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

    let t = tempfile::tempdir().unwrap();
    let source = t.path().join("source");
    write(&source, "web/web.container", COMMON);
    let mut h1 = host(t.path(), "h1", &[], &source, &url);
    h1.units.set_state_after_job("web.service", active());
    // A first install needs no slot, so the server is never asked.
    let r = h1.reconciler.reconcile(&["startup".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    h1.units.set_state("web.service", active());
    write(
        &source,
        "web/web.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=echo common v2\n",
    );
    for (bad, what) in [
        (
            (200, "<html>Sign in</html>"),
            "HTTP 200 with a body that is not JSON",
        ),
        ((409, "{}"), "HTTP 409 without a {\"kind\",\"value\"} body"),
        ((500, "Internal Server Error"), "HTTP 500 without"),
        ((204, ""), "HTTP 204"),
    ] {
        *answer.lock().unwrap() = bad;
        h1.units.take_calls();
        let r = h1.reconciler.reconcile(&["poll".into()]).await;
        assert_eq!(
            r.record.outcome,
            PassOutcome::Waiting,
            "{bad:?}: {:?}",
            r.record
        );
        assert!(
            !h1.units
                .actions()
                .iter()
                .any(|c| matches!(c, Call::Restart(_) | Call::Stop(_))),
            "{bad:?}: {:?}",
            h1.units.actions()
        );
        let on_disk = std::fs::read_to_string(h1.quadlets.join("web/web.container")).unwrap();
        assert!(!on_disk.contains("v2"), "{bad:?}: nothing is written");
        let status = h1.reconciler.status(None).status;
        let reconciling = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Reconciling")
            .unwrap();
        assert_eq!(reconciling.reason, reason::WAITING_FOR_FLEET_LOCK);
        for want in [
            what,
            "did not answer in the FleetLock protocol",
            "check fleet.lock.url",
            url.as_str(),
        ] {
            assert!(
                reconciling.message.contains(want),
                "{bad:?}: no {want:?} in {}",
                reconciling.message
            );
        }
        let lock = status.fleet.unwrap().lock.unwrap();
        assert_eq!(lock.state, LockState::Waiting, "{bad:?}");
        assert!(lock.held_since.is_none(), "{bad:?}");
    }
}

/// A desired.toml whose overlay template is bad is refused as a whole: the error names
/// the template and what is wrong, and the host keeps its last good composition (no
/// layer of the bad list is applied).
#[tokio::test]
async fn fleet_pass_bad_overlay_templates_keep_the_last_good_composition() {
    let t = tempfile::tempdir().unwrap();
    let source = t.path().join("source");
    write(&source, "web/web.container", COMMON);
    write(&source, "hosts/h1/apps/extra/extra.container", COMMON);
    write(&source, "secret/apps/other/other.container", COMMON);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut h1 = host(t.path(), "h1", &[], &source, &format!("http://{closed}"));
    for u in ["web.service", "extra.service", "other.service"] {
        h1.units.set_state_after_job(u, active());
    }
    let desired = t.path().join("h1/etc/desired.toml");
    let with = |overlays: &str| {
        std::fs::write(
            &desired,
            format!(
                "[source]\nkind = \"dir\"\npath = \"{}\"\noverlays = [{overlays}]\n",
                source.display()
            ),
        )
        .unwrap();
    };
    with("");
    let r = h1.reconciler.reconcile(&["startup".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(apps(&h1), ["web"]);
    for (overlays, want) in [
        (
            "\"hosts/{host}/apps\", \"hosts/{hostname}/apps\"",
            "overlays[1]: overlay \"hosts/{hostname}/apps\" uses the unknown placeholder {hostname}; only {host} and {group} exist",
        ),
        (
            "\"hosts/{host}/apps\", \"hosts/../secret/apps\"",
            "overlays[1]: overlay \"hosts/../secret/apps\" has an empty, '.' or '..' folder",
        ),
        ("\"/etc/leger\"", "must be relative to the source root"),
    ] {
        with(overlays);
        let _ = h1.reconciler.reconcile(&["poll".into()]).await;
        let status = h1.reconciler.status(None).status;
        let error = status.desired_state_error.unwrap_or_default();
        for part in [want, "desired.toml", "keeping the last good desired state"] {
            assert!(error.contains(part), "{overlays}: no {part:?} in {error}");
        }
        assert_eq!(apps(&h1), ["web"], "{overlays}: nothing of it is applied");
    }
    // Fixed, the host layer applies.
    with("\"hosts/{host}/apps\"");
    let r = h1.reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(apps(&h1), ["extra", "web"]);
}

/// The same composition from a git source whose common layer is `path = "apps"`: the
/// overlay folders lie outside `path` and are still read (the whole tree is fetched),
/// each host gets exactly its apps with their layers, and a host whose groups change
/// gets a new composition (a new revision), never the tree validated for its old groups.
#[tokio::test]
async fn fleet_pass_git_source_with_path_and_overlays() {
    let t = tempfile::tempdir().unwrap();
    let repo = upstream::Upstream::new(t.path(), "fleet");
    repo.write("apps/web/web.container", COMMON);
    repo.write(
        "apps/cache/cache.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=echo common cache\n",
    );
    repo.write(
        "groups/eu/apps/cache/cache.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=echo eu cache\n",
    );
    repo.write("hosts/h1/apps/local/local.container", COMMON);
    repo.write("hosts/h2/apps/web/leger.toml", "enabled = false\n");
    let commit = repo.commit("fleet");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("http://{closed}");
    let desired = format!(
        "[source]\nkind = \"git\"\nurl = \"{}\"\nref = \"main\"\npath = \"apps\"\noverlays = [\"groups/{{group}}/apps\", \"hosts/{{host}}/apps\"]\n",
        repo.file_url()
    );
    let source = t.path().join("unused");
    let run = |name: &str, groups: &[&str], lock: &str| {
        let h = host(t.path(), name, groups, &source, lock);
        write(&t.path().join(name), "etc/desired.toml", &desired);
        for u in ["web.service", "cache.service", "local.service"] {
            h.units.set_state_after_job(u, active());
        }
        h
    };
    let layers = |h: &Host| -> Vec<(String, String)> {
        h.reconciler
            .status(None)
            .status
            .apps
            .iter()
            .map(|a| (a.name.clone(), a.layer.clone().unwrap_or_default()))
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());

    let mut h1 = run("h1", &["eu"], &down);
    let r = h1.reconciler.reconcile(&["startup".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(
        layers(&h1),
        [
            pair("cache", "groups/eu/apps"),
            pair("local", "hosts/h1/apps"),
            pair("web", "apps"),
        ]
    );
    let cache = std::fs::read_to_string(h1.quadlets.join("cache/cache.container")).unwrap();
    assert!(cache.contains("eu cache"), "{cache}");

    let mut h2 = run("h2", &[], &down);
    let r = h2.reconciler.reconcile(&["startup".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(layers(&h2), [pair("cache", "apps")]);
    assert_eq!(apps(&h2), ["cache"]);
    let before = h2.reconciler.applied_revision().unwrap().to_owned();
    assert!(before.starts_with(&format!("{commit}+o")), "{before}");

    // h2 joins group eu (a config change, so legerd restarts): same commit, new
    // composition, the eu cache, and its own revision. Its cache runs, so the change
    // takes a slot from the (now running) lock server and gives it back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = fleet_server::state(1, None);
    tokio::spawn(fleet_server::serve(listener, Arc::clone(&state)));
    drop(h2);
    let mut h2 = run("h2", &["eu"], &url);
    h2.units.set_state("cache.service", active());
    let r = h2.reconciler.reconcile(&["startup".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    let after = h2.reconciler.applied_revision().unwrap().to_owned();
    assert!(after.starts_with(&format!("{commit}+o")), "{after}");
    assert_ne!(before, after);
    assert_eq!(layers(&h2), [pair("cache", "groups/eu/apps")]);
    let cache = std::fs::read_to_string(h2.quadlets.join("cache/cache.container")).unwrap();
    assert!(cache.contains("eu cache"), "{cache}");
    assert_eq!(log(&state), ["grant h2", "release h2"]);
}

/// A failed mark belongs to one composition: after h1 rolls back a bad common app, the
/// same bad composition is held back, but the same source revision composed for new
/// groups (whose layer replaces the bad app) applies, and gives the kept slot back.
#[tokio::test]
async fn fleet_pass_a_failed_mark_does_not_block_another_composition() {
    let t = tempfile::tempdir().unwrap();
    let source = t.path().join("source");
    write(&source, "web/web.container", COMMON);
    write(
        &source,
        "groups/eu/apps/web/web.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=echo eu web\n",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = fleet_server::state(1, None);
    tokio::spawn(fleet_server::serve(listener, Arc::clone(&state)));
    let mut h1 = host(t.path(), "h1", &[], &source, &url);
    h1.units.set_state_after_job("web.service", active());
    let r = h1.reconciler.reconcile(&["startup".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);

    write(
        &source,
        "web/web.container",
        "[Container]\nImage=localhost/busybox:latest\nExec=false\n",
    );
    h1.units.set_state_after_job("web.service", failed());
    let r = h1.reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::RolledBack, "{:?}", r.record);
    let bad = r.record.revision.clone().unwrap();
    // The same composition again: held back, nothing restarted.
    h1.units.set_state("web.service", active());
    h1.units.set_state_after_job("web.service", active());
    h1.units.take_calls();
    let r = h1.reconciler.reconcile(&["poll".into()]).await;
    assert_ne!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(restarts(&h1), 0, "{:?}", h1.units.actions());

    // h1 joins eu (legerd restarts with the same store): a new composition of the same
    // source revision, which the failed mark of the old one does not block.
    drop(h1);
    let mut h1 = host(t.path(), "h1", &["eu"], &source, &url);
    h1.units.set_state("web.service", active());
    h1.units.set_state_after_job("web.service", active());
    let r = h1.reconciler.reconcile(&["startup".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    let good = h1.reconciler.applied_revision().unwrap().to_owned();
    assert_eq!(good.split('+').next(), bad.split('+').next(), "same source");
    assert_ne!(good, bad);
    let web = std::fs::read_to_string(h1.quadlets.join("web/web.container")).unwrap();
    assert!(web.contains("eu web"), "{web}");
    assert_eq!(log(&state), ["grant h1", "release h1"]);
}

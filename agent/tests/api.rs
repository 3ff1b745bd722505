//! The local API on a real Unix socket in a temp dir, with a real HTTP client.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leger_api_types::{
    AgentStatus, ApiError, Condition, ConditionStatus, PassOutcome, PassRecord, ReconcileResponse,
    StatusDocument, StatusSpec, condition_type, reason,
};
use legerd::api::{ApiContext, bind_socket, lookup_group, serve};
use legerd::store::Store;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(60);

struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    client: reqwest::Client,
    status_tx: watch::Sender<StatusDocument>,
    reconcile_rx: Option<mpsc::Receiver<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

fn doc(ready: bool) -> StatusDocument {
    StatusDocument::new(
        StatusSpec {
            source_kind: Some("git".into()),
            source: Some("https://git.example.org/fleet.git".into()),
            reference: Some("main".into()),
            path: Some("apps".into()),
            suspended: false,
        },
        AgentStatus {
            agent_version: "0.1.0".into(),
            mode: "system".into(),
            applied_revision: Some("abc".into()),
            conditions: vec![Condition {
                type_: condition_type::READY.into(),
                status: if ready {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                reason: reason::SUCCEEDED.into(),
                message: "all units active".into(),
                last_transition_time: "2025-01-02T03:04:05Z".into(),
            }],
            ..AgentStatus::default()
        },
    )
}

fn pass(n: u64) -> PassRecord {
    PassRecord {
        id: 0,
        started_at: format!("2025-01-02T03:04:{n:02}Z"),
        finished_at: format!("2025-01-02T03:04:{n:02}Z"),
        duration_ms: n,
        trigger: "poll".into(),
        revision: None,
        outcome: PassOutcome::Noop,
        actions: vec![],
        error: None,
        runs: 1,
        first_started_at: None,
    }
}

async fn start(passes: u64) -> Server {
    start_with(passes, legerd::access::AccessPolicy::owner_only()).await
}

async fn start_with(passes: u64, access: legerd::access::AccessPolicy) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/leger/legerd.sock");
    let store = Store::open(&dir.path().join("state/legerd.db")).unwrap();
    for n in 1..=passes {
        store.insert_pass(&pass(n)).unwrap();
    }
    // A revision that failed its health gate, for the retry endpoint.
    store
        .record_revision(
            "bad",
            legerd::store::RevisionState::Failed,
            Some("web died"),
        )
        .unwrap();
    let (status_tx, status_rx) = watch::channel(doc(false));
    let (reconcile_tx, reconcile_rx) = mpsc::channel(1);
    let listener = bind_socket(&socket, None).unwrap();
    let ctx = ApiContext {
        status: status_rx,
        store: Arc::new(Mutex::new(store)),
        reconcile: reconcile_tx,
        identity: None,
        staged: tokio::sync::watch::channel(None).1,
        revisions: None,
        backups: None,
        access,
        fleet: None,
        plan: None,
    };
    let (shutdown, shutdown_rx) = oneshot::channel();
    let task = tokio::spawn(serve(listener, ctx, async {
        let _ = shutdown_rx.await;
    }));
    let client = reqwest::Client::builder()
        .unix_socket(socket.clone())
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    Server {
        _dir: dir,
        socket,
        client,
        status_tx,
        reconcile_rx: Some(reconcile_rx),
        shutdown: Some(shutdown),
        task: Some(task),
    }
}

impl Server {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("http://legerd{path}"))
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(format!("http://legerd{path}"))
            .send()
            .await
            .unwrap()
    }
}

async fn api_error(resp: reqwest::Response, code: u16) -> String {
    assert_eq!(resp.status().as_u16(), code);
    resp.json::<ApiError>().await.unwrap().error
}

#[tokio::test]
async fn api_status_serves_the_latest_document() {
    let s = start(0).await;
    let resp = s.get("/v1/status").await;
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["apiVersion"], leger_api_types::API_VERSION);
    assert_eq!(v["kind"], "AgentStatus");
    assert_eq!(
        serde_json::from_value::<StatusDocument>(v).unwrap(),
        doc(false)
    );
    s.status_tx.send(doc(true)).unwrap();
    let got: StatusDocument = s.get("/v1/status").await.json().await.unwrap();
    assert_eq!(got, doc(true));
}

#[tokio::test]
async fn api_history_is_newest_first_and_limited() {
    let s = start(25).await;
    let all: Vec<PassRecord> = s.get("/v1/history").await.json().await.unwrap();
    assert_eq!(all.len(), 20, "default limit");
    assert_eq!(all[0].duration_ms, 25);
    assert_eq!(all[19].duration_ms, 6);
    let two: Vec<PassRecord> = s.get("/v1/history?limit=2").await.json().await.unwrap();
    assert_eq!(
        two.iter().map(|p| p.duration_ms).collect::<Vec<_>>(),
        vec![25, 24]
    );
    let many: Vec<PassRecord> = s.get("/v1/history?limit=1000").await.json().await.unwrap();
    assert_eq!(many.len(), 25);
    let e = api_error(s.get("/v1/history?limit=1001").await, 400).await;
    assert!(e.contains("1001") && e.contains("1 to 1000"), "{e}");
    let e = api_error(s.get("/v1/history?limit=0").await, 400).await;
    assert!(e.contains("out of range"), "{e}");
    let e = api_error(s.get("/v1/history?limit=lots").await, 400).await;
    assert!(e.contains("invalid query"), "{e}");
}

/// `--failed`, `--app`, `history show ID` and the counters, through the socket.
#[tokio::test]
async fn api_history_filters_shows_one_pass_whole_and_counts_idle_polls() {
    let s = start(3).await;
    {
        let store = Store::open(&s._dir.path().join("state/legerd.db")).unwrap();
        let mut failed = pass(50);
        failed.outcome = PassOutcome::Failed;
        failed.trigger = "manual".into();
        failed.error = Some("web.service failed\nline 2 of podman's output".into());
        store.record_pass(&failed).unwrap();
        store.record_pass(&pass(51)).unwrap(); // an idle poll: counted
    }
    let mut d = doc(false);
    d.status.apps = vec![leger_api_types::AppStatus {
        name: "web".into(),
        units: vec![leger_api_types::UnitStatus {
            name: "web.service".into(),
            active_state: "failed".into(),
            sub_state: "failed".into(),
        }],
        layer: None,
    }];
    s.status_tx.send(d).unwrap();
    let failed: Vec<PassRecord> = s.get("/v1/history?failed=true").await.json().await.unwrap();
    assert_eq!(failed.len(), 1);
    let web: Vec<PassRecord> = s.get("/v1/history?app=web").await.json().await.unwrap();
    assert_eq!(web, failed, "the error names web's unit");
    let none: Vec<PassRecord> = s
        .get("/v1/history?app=db&changes=true")
        .await
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());
    let one: PassRecord = s
        .get(&format!("/v1/history/{}", failed[0].id))
        .await
        .json()
        .await
        .unwrap();
    assert!(one.error.unwrap().contains("line 2 of podman's output"));
    let summary: leger_api_types::HistorySummary =
        s.get("/v1/history/summary").await.json().await.unwrap();
    assert_eq!(summary.idle_polls, 1);
    let e = api_error(s.get("/v1/history/999").await, 404).await;
    assert!(e.contains("legerctl history"), "{e}");
    let e = api_error(s.get("/v1/history/abc").await, 400).await;
    assert!(e.contains("not a pass id"), "{e}");
}

#[tokio::test]
async fn api_reconcile_queues_even_when_a_pass_is_pending() {
    let mut s = start(0).await;
    for _ in 0..3 {
        let resp = s.post("/v1/reconcile").await;
        assert_eq!(resp.status().as_u16(), 200);
        let r: ReconcileResponse = resp.json().await.unwrap();
        assert!(r.queued);
    }
    let mut rx = s.reconcile_rx.take().unwrap();
    assert!(rx.try_recv().is_ok(), "one request is queued");
    assert!(rx.try_recv().is_err(), "the queue holds one pending pass");
    drop(rx);
    let e = api_error(s.post("/v1/reconcile").await, 503).await;
    assert!(e.contains("not running"), "{e}");
}

#[tokio::test]
async fn api_errors_are_json() {
    let s = start(0).await;
    let e = api_error(s.get("/v2/status").await, 404).await;
    assert!(e.contains("/v1/status"), "{e}");
    let e = api_error(s.get("/v1/reconcile").await, 405).await;
    assert!(e.contains("POST"), "{e}");
}

#[tokio::test]
async fn api_socket_has_mode_0660() {
    let s = start(0).await;
    let meta = std::fs::symlink_metadata(&s.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let parent = std::fs::metadata(s.socket.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o755);
}

fn group_to_try() -> (String, u32) {
    let text = std::fs::read_to_string("/etc/group").unwrap();
    let egid = rustix::process::getegid().as_raw();
    let root = rustix::process::geteuid().is_root();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse::<u32>().ok()?))
        })
        // As root any group works, so prefer one that differs from ours to see the chown.
        .find(|(_, gid)| if root { *gid != egid } else { *gid == egid })
        .expect("a usable group in /etc/group")
}

#[tokio::test]
async fn api_socket_is_chowned_to_the_group() {
    let t = tempfile::tempdir().unwrap();
    let (name, gid) = group_to_try();
    let path = t.path().join("legerd.sock");
    let _l = bind_socket(&path, Some(&name)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().gid(), gid);
    assert_eq!(
        lookup_group(&name, Path::new("/etc/group")).unwrap(),
        Some(gid)
    );
}

#[tokio::test]
async fn api_socket_with_missing_group_still_binds() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.sock");
    let _l = bind_socket(&path, Some("no-such-group-leger-test")).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

#[test]
fn lookup_group_reads_group_file() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("group");
    std::fs::write(&f, "root:x:0:\nleger:x:977:alice,bob\nbroken\n").unwrap();
    assert_eq!(lookup_group("leger", &f).unwrap(), Some(977));
    assert_eq!(lookup_group("root", &f).unwrap(), Some(0));
    assert_eq!(lookup_group("lege", &f).unwrap(), None);
    assert_eq!(lookup_group("x", &t.path().join("nope")).unwrap(), None);
}

#[tokio::test]
async fn api_socket_replaces_a_stale_socket_but_not_a_live_one() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.sock");
    // A socket file whose listener is gone, as a crashed legerd leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = bind_socket(&path, None).unwrap();
    let e = bind_socket(&path, None).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    drop(live);
    let other = t.path().join("plain");
    std::fs::write(&other, b"not a socket").unwrap();
    let e = bind_socket(&other, None).unwrap_err();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&other).unwrap(), b"not a socket");
}

#[tokio::test]
async fn api_serve_shuts_down_gracefully() {
    let mut s = start(1).await;
    // Leave a keep-alive connection open: shutdown must close it, not wait forever.
    assert_eq!(s.get("/v1/status").await.status().as_u16(), 200);
    s.shutdown.take().unwrap().send(()).unwrap();
    let result = tokio::time::timeout(TIMEOUT, s.task.take().unwrap())
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    result.unwrap();
    assert!(!s.socket.exists(), "the socket file is removed on shutdown");
    let err = s
        .client
        .get("http://legerd/v1/status")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
}

#[tokio::test]
async fn api_retry_forgets_a_failed_revision_once() {
    let mut s = start(0).await;
    let resp = s.post("/v1/revisions/bad/retry").await;
    assert_eq!(resp.status().as_u16(), 200);
    let r: ReconcileResponse = resp.json().await.unwrap();
    assert!(r.queued);
    // It asked for a pass, so legerd tries the revision at once.
    assert!(s.reconcile_rx.as_mut().unwrap().try_recv().is_ok());
    let list: Vec<leger_api_types::RevisionInfo> =
        s.get("/v1/revisions").await.json().await.unwrap();
    let bad = list.iter().find(|r| r.revision == "bad").unwrap();
    assert_eq!(bad.state, "fetched");
    // Not failed any more (or never known): nothing to retry.
    let e = api_error(s.post("/v1/revisions/bad/retry").await, 409).await;
    assert!(e.contains("not marked failed"), "{e}");
    let e = api_error(s.post("/v1/revisions/nope/retry").await, 409).await;
    assert!(e.contains("nope"), "{e}");
}

/// Group ids that exist nowhere else on a test machine; the policy names them directly.
const READERS: u32 = 64242;
const ADMINS: u32 = 64243;
const NOBODY: &str = "65534";

/// One request as another user: `setpriv` sets the real uid, gid and supplementary
/// groups of a real `curl`, so the kernel's `SO_PEERCRED` and `/proc/<pid>/status` are
/// what legerd checks, as in production.
fn curl_as(socket: &Path, groups: &[u32], method: &str, path: &str) -> (u16, String) {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid", NOBODY, "--regid", NOBODY]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.args(["--groups", &list.join(",")]);
    }
    let out = cmd
        .args([
            "curl",
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .args(["-X", method, "--data-binary", "v"])
        .arg(format!("http://legerd{path}"))
        .output()
        .expect("setpriv and curl run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn open_to_everyone(socket: &Path) {
    // The socket's own 0660 is the first gate; this test is about the second one.
    let mut p = socket.to_path_buf();
    while let Some(parent) = p.parent() {
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        if parent == Path::new("/tmp") || parent.parent().is_none() {
            break;
        }
        p = parent.to_path_buf();
    }
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).unwrap();
}

#[tokio::test]
async fn api_roles_follow_the_callers_groups() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: needs root to run curl as another user");
        return;
    }
    let group = |name: &str, gid| {
        Some(legerd::access::Group {
            name: name.into(),
            gid: Some(gid),
        })
    };
    let mut s = start_with(
        1,
        legerd::access::AccessPolicy {
            owner_uid: 0,
            readers: group("leger", READERS),
            admins: group("leger-admin", ADMINS),
        },
    )
    .await;
    open_to_everyone(&s.socket);
    let socket = s.socket.clone();
    let run = move |groups: Vec<u32>, method: &'static str, path: &'static str| {
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || curl_as(&socket, &groups, method, path))
    };
    let reads = ["/v1/status", "/v1/history", "/v1/revisions"];
    // Reads whose answer depends on parts this server does not have (a staged revision,
    // the controller loop): a reader is let through, a stranger is not.
    let other_reads = [
        "/v1/history/summary",
        "/v1/history/1",
        "/v1/staged",
        "/v1/plan",
        "/v1/identity",
        "/v1/secrets",
        "/v1/backups",
    ];
    let writes = [
        ("POST", "/v1/reconcile"),
        ("PUT", "/v1/secrets/db-pass"),
        ("DELETE", "/v1/secrets/db-pass"),
        ("POST", "/v1/restore"),
        ("POST", "/v1/revisions/abc123/retry"),
        ("POST", "/v1/fleet/release"),
    ];
    for path in other_reads {
        let (code, body) = run(vec![READERS], "GET", path).await.unwrap();
        assert_ne!(code, 403, "reader GET {path}: {body}");
        let (code, body) = run(vec![], "GET", path).await.unwrap();
        assert_eq!(code, 403, "stranger GET {path}: {body}");
    }
    for path in reads {
        let (code, body) = run(vec![READERS], "GET", path).await.unwrap();
        assert_eq!(code, 200, "reader GET {path}: {body}");
        let (code, body) = run(vec![], "GET", path).await.unwrap();
        assert_eq!(code, 403, "stranger GET {path}: {body}");
        assert!(body.contains("group leger "), "{body}");
    }
    for (method, path) in writes {
        let (code, body) = run(vec![READERS], method, path).await.unwrap();
        assert_eq!(code, 403, "reader {method} {path}: {body}");
        assert!(body.contains("group leger-admin"), "{body}");
        let (code, body) = run(vec![READERS, ADMINS], method, path).await.unwrap();
        assert_ne!(code, 403, "admin {method} {path}: {body}");
    }
    // The admin's reconcile got through to the loop.
    let mut rx = s.reconcile_rx.take().unwrap();
    assert!(rx.try_recv().is_ok(), "the admin's reconcile was queued");
    // Root (this process) needs no group.
    assert_eq!(s.post("/v1/reconcile").await.status().as_u16(), 200);
}

#[tokio::test]
async fn api_refuses_a_body_over_its_limit() {
    let s = start(0).await;
    let big = vec![b'x'; legerd::api::MAX_BODY_BYTES + 1];
    let resp = s
        .client
        .put("http://legerd/v1/secrets/big")
        .body(big)
        .send()
        .await
        .unwrap();
    let e = api_error(resp, 413).await;
    assert!(e.contains("at most 512000 bytes"), "{e}");
}

#[test]
fn route_and_target_split_the_name_off() {
    use legerd::api::route_and_target;
    assert_eq!(
        route_and_target("/v1/secrets/db-pass"),
        ("/v1/secrets/{name}".to_owned(), "db-pass".to_owned())
    );
    assert_eq!(
        route_and_target("/v1/reconcile"),
        ("/v1/reconcile".to_owned(), "-".to_owned())
    );
    // Endpoints added later are named as the router names them, not as `{name}`.
    assert_eq!(
        route_and_target("/v1/revisions/abc123/retry"),
        (
            "/v1/revisions/{revision}/retry".to_owned(),
            "abc123".to_owned()
        )
    );
    assert_eq!(
        route_and_target("/v1/fleet/release"),
        ("/v1/fleet/release".to_owned(), "-".to_owned())
    );
    assert_eq!(
        route_and_target("/v1/history/summary"),
        ("/v1/history/summary".to_owned(), "-".to_owned())
    );
}

//! The legerctl binary against a desired file in a temp dir and a real legerd API
//! server on a Unix socket.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leger_api_types::{
    AgentStatus, AppStatus, Condition, ConditionStatus, DesiredState, PassOutcome, PassRecord,
    SourceSpec, StatusDocument, StatusSpec, UnitStatus,
};
use legerd::api::{ApiContext, bind_socket, serve};
use legerd::store::Store;
use tokio::sync::{mpsc, oneshot};

const VALID: &str = "# hand-written\n[source]\nkind = \"dir\"\npath = \"/srv/apps\"\n\n[policy]\nsuspend = true\nprune = false\n";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn desired(&self) -> PathBuf {
        self.dir.path().join("etc/leger/desired.toml")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/leger/legerd.sock")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_legerctl"));
        c.env_remove("LEGER_SOCKET")
            .env_remove("LEGER_DESIRED_FILE")
            .arg("--desired-file")
            .arg(self.desired())
            .arg("--socket")
            .arg(self.socket())
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn write_desired(&self, text: &str) {
        std::fs::create_dir_all(self.desired().parent().unwrap()).unwrap();
        std::fs::write(self.desired(), text).unwrap();
    }

    fn read_desired(&self) -> String {
        std::fs::read_to_string(self.desired()).unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

#[test]
fn cli_set_desired_git_writes_a_valid_file() {
    let env = Env::new();
    let o = env.run(&[
        "set-desired",
        "git",
        "https://git.example.org/fleet.git",
        "--ref",
        "v1.4",
        "--path",
        "hosts/web",
        "--interval",
        "5m",
        "--allow-rewrite",
    ]);
    assert_code(&o, 0);
    let text = env.read_desired();
    assert!(stdout(&o).contains(&text), "prints what was written");
    assert!(
        stdout(&o).contains("next pass, which its watch on desired.toml starts within a second"),
        "says what happens next, and when: {}",
        stdout(&o)
    );
    let d = DesiredState::from_toml_str(&text).unwrap();
    let SourceSpec::Git(g) = d.source else {
        panic!("git source expected: {text}")
    };
    assert_eq!(g.url, "https://git.example.org/fleet.git");
    assert_eq!(g.reference, "v1.4");
    assert_eq!(g.path.as_deref(), Some("hosts/web"));
    assert_eq!(g.poll_interval, Duration::from_secs(300));
    assert!(g.allow_rewrite);
    assert_eq!(
        std::fs::metadata(env.desired())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640,
        "desired.toml is not world-readable"
    );
}

#[test]
fn cli_set_desired_dir_keeps_the_policy() {
    let env = Env::new();
    env.write_desired(VALID);
    let other = env.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let o = env.run(&["set-desired", "dir", other.to_str().unwrap()]);
    assert_code(&o, 0);
    let d = DesiredState::from_toml_str(&env.read_desired()).unwrap();
    assert_eq!(
        d.source,
        SourceSpec::Dir(leger_api_types::DirSourceSpec {
            path: other,
            overlays: Vec::new(),
        })
    );
    assert!(d.policy.suspend && !d.policy.prune, "{:?}", d.policy);
}

#[test]
fn cli_set_desired_overlays_are_repeatable_and_checked() {
    let env = Env::new();
    env.write_desired(VALID);
    let o = env.run(&[
        "set-desired",
        "git",
        "https://git.example.org/fleet.git",
        "--path",
        "apps",
        "--overlay",
        "groups/{group}/apps",
        "--overlay",
        "hosts/{host}/apps",
    ]);
    assert_code(&o, 0);
    let d = DesiredState::from_toml_str(&env.read_desired()).unwrap();
    assert_eq!(d.overlays(), ["groups/{group}/apps", "hosts/{host}/apps"]);
    // The same for the other two kinds of source.
    for kind in [
        &["manifest", "https://static.example.org/fleet/"][..],
        &["dir", "/srv/leger-overlays", "--force"][..],
    ] {
        let mut args = vec!["set-desired"];
        args.extend_from_slice(kind);
        args.extend([
            "--overlay",
            "groups/{group}/apps",
            "--overlay",
            "hosts/{host}/apps",
        ]);
        let o = env.run(&args);
        assert_code(&o, 0);
        let d = DesiredState::from_toml_str(&env.read_desired()).unwrap();
        assert_eq!(
            d.overlays(),
            ["groups/{group}/apps", "hosts/{host}/apps"],
            "{kind:?}"
        );
    }
    for bad in ["hosts/{hostname}/apps", "hosts/../x"] {
        let o = env.run(&["set-desired", "dir", "/srv/x", "--overlay", bad]);
        assert_code(&o, 2);
        assert!(stderr(&o).contains(bad), "{}", stderr(&o));
    }
    assert_eq!(
        DesiredState::from_toml_str(&env.read_desired())
            .unwrap()
            .overlays()
            .len(),
        2,
        "a refused edit leaves the file alone"
    );
}

#[test]
fn cli_set_desired_dir_refuses_a_missing_folder_unless_forced() {
    let env = Env::new();
    env.write_desired(VALID);
    let o = env.run(&["set-desired", "dir", "/nonexistent/leger-apps"]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("/nonexistent/leger-apps") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(env.read_desired(), VALID, "nothing half-applied");

    let file = env.dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let o = env.run(&["set-desired", "dir", file.to_str().unwrap(), "--force"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("is not a folder"), "{}", stderr(&o));

    let o = env.run(&["set-desired", "dir", "/nonexistent/leger-apps", "--force"]);
    assert_code(&o, 0);
    assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(env.read_desired().contains("/nonexistent/leger-apps"));
}

#[test]
fn cli_set_policy_changes_only_the_named_settings_and_says_what_follows() {
    let env = Env::new();
    env.write_desired(VALID);
    let o = env.run(&["set-policy", "--mode", "staged", "--allow-empty", "true"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("mode staged") && out.contains("legerctl approve"),
        "{out}"
    );
    assert!(out.contains("allow-empty on"), "{out}");
    assert!(out.contains("suspended"), "VALID is suspended: {out}");
    let d = DesiredState::from_toml_str(&env.read_desired()).unwrap();
    assert_eq!(d.policy.mode, leger_api_types::UpdateMode::Staged);
    assert!(d.policy.allow_empty && d.policy.suspend && !d.policy.prune);

    let before = env.read_desired();
    let o = env.run(&["set-policy", "--mode", "staged"]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("nothing to change"), "{}", stdout(&o));
    assert_eq!(env.read_desired(), before);
}

#[test]
fn cli_set_policy_refuses_bad_input_and_changes_nothing() {
    let env = Env::new();
    env.write_desired(VALID);
    let o = env.run(&["set-policy", "--mode", "nope"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("nope") && err.contains("auto") && err.contains("staged"),
        "{err}"
    );
    let o = env.run(&["set-policy", "--prune", "maybe"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("maybe"), "{}", stderr(&o));
    let o = env.run(&["set-policy"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("--mode"), "{}", stderr(&o));
    assert_eq!(env.read_desired(), VALID);
}

#[test]
fn cli_set_desired_file_is_written_as_is() {
    let env = Env::new();
    let src = env.dir.path().join("in.toml");
    std::fs::write(&src, VALID).unwrap();
    let o = env.run(&["set-desired", "--file", src.to_str().unwrap()]);
    assert_code(&o, 0);
    assert_eq!(env.read_desired(), VALID);
    let stdin_doc = VALID.replace("/srv/apps", "/srv/from-stdin");
    let o = env.run_stdin(&["set-desired", "--file", "-"], &stdin_doc);
    assert_code(&o, 0);
    assert_eq!(env.read_desired(), stdin_doc);
}

#[test]
fn cli_set_desired_file_refuses_bad_documents_naming_the_key() {
    let env = Env::new();
    env.write_desired(VALID);
    let cases = [
        (
            "[source]\nkind = \"git\"\nurl = \"https://h/r.git\"\nbranch = \"main\"\n",
            "branch",
        ),
        ("[source]\nkind = \"git\"\nurl = \"ftp://h/r.git\"\n", "url"),
        (
            "[source]\nkind = \"git\"\nurl = \"https://h/r.git\"\npoll_interval = \"soon\"\n",
            "poll_interval",
        ),
    ];
    for (doc, key) in cases {
        let o = env.run_stdin(&["set-desired", "--file", "-"], doc);
        assert_code(&o, 1);
        let e = stderr(&o);
        assert!(e.contains(key) && e.contains("unchanged"), "{key}: {e}");
        assert_eq!(env.read_desired(), VALID, "the old file is untouched");
    }
}

#[test]
fn cli_usage_errors_exit_2() {
    let env = Env::new();
    for args in [
        &["set-desired", "git", "https://h/r.git", "--interval", "0s"][..],
        &["set-desired", "git", "ftp://h/r.git"],
        &["set-desired"],
        &["history", "-n", "0"],
        &["frobnicate"],
    ] {
        let o = env.run(args);
        assert_code(&o, 2);
    }
    assert!(!env.desired().exists());
}

#[test]
fn cli_set_desired_refuses_an_escaping_path_as_usage() {
    let env = Env::new();
    let o = env.run(&["set-desired", "git", "https://h/r.git", "--path", "../etc"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains(".."), "{}", stderr(&o));
    assert!(!env.desired().exists());
}

#[test]
fn cli_suspend_and_resume_flip_the_flag() {
    let env = Env::new();
    let o = env.run(&["suspend"]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("set-desired"), "{}", stderr(&o));
    env.write_desired(&VALID.replace("suspend = true", "suspend = false"));
    let o = env.run(&["suspend"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("suspended: from legerd's next pass (within a second)"),
        "says what follows and when: {}",
        stdout(&o)
    );
    let d = DesiredState::from_toml_str(&env.read_desired()).unwrap();
    assert!(d.policy.suspend && !d.policy.prune);
    let o = env.run(&["resume"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("resumed: legerd's next pass (within a second)"),
        "{}",
        stdout(&o)
    );
    let d = DesiredState::from_toml_str(&env.read_desired()).unwrap();
    assert!(!d.policy.suspend && !d.policy.prune);
}

#[test]
fn cli_get_desired_prints_the_file_or_how_to_set_one() {
    let env = Env::new();
    let o = env.run(&["get-desired"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("legerctl set-desired"),
        "{}",
        stderr(&o)
    );
    env.write_desired(VALID);
    let o = env.run(&["get-desired"]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), VALID);
    // A read command like the others: documents with apiVersion and kind.
    let o = env.run(&["get-desired", "-o", "yaml"]);
    assert_code(&o, 0);
    let y = stdout(&o);
    assert!(
        y.contains("apiVersion: leger.run/v1alpha1") && y.contains("kind: DesiredState"),
        "{y}"
    );
    assert!(
        y.contains("path: /srv/apps") && y.contains("suspend: true"),
        "{y}"
    );
    let o = env.run(&["get-desired", "--output", "json"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["kind"], "DesiredState");
    assert_eq!(v["source"]["kind"], "dir");
    // A file legerd would refuse: said, naming the file and the way to see it as is.
    env.write_desired("[source]\nkind = \"dir\"\n");
    let o = env.run(&["get-desired", "-o", "json"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("is not a valid desired state") && stderr(&o).contains("desired.toml"),
        "{}",
        stderr(&o)
    );
    let o = env.run(&["get-desired", "-o", "nope"]);
    assert_code(&o, 2);
}

#[test]
fn cli_status_without_legerd_says_it_is_not_running() {
    let env = Env::new();
    let o = env.run(&["status"]);
    assert_code(&o, 1);
    let e = stderr(&o);
    assert!(
        e.contains("legerd is not running (no socket at")
            && e.contains(env.socket().to_str().unwrap())
            && e.contains("`systemctl start legerd`"),
        "{e}"
    );
    let o = env.run(&["--user", "reconcile"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("`systemctl --user start legerd`"),
        "{}",
        stderr(&o)
    );
    // A socket left behind by a crashed legerd: it exists but nobody answers.
    std::fs::create_dir_all(env.socket().parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(env.socket()).unwrap());
    let o = env.run(&["history"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("legerd is not running"),
        "{}",
        stderr(&o)
    );
}

fn status_doc() -> StatusDocument {
    StatusDocument::new(
        StatusSpec {
            source_kind: Some("git".into()),
            source: Some("https://git.example.org/fleet.git".into()),
            reference: Some("main".into()),
            path: None,
            suspended: false,
        },
        AgentStatus {
            agent_version: "0.1.0".into(),
            mode: "system".into(),
            fetched_revision: Some("aaaabbbbccccddddeeeeffff0000111122223333".into()),
            applied_revision: Some("aaaabbbbccccddddeeeeffff0000111122223333".into()),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ConditionStatus::False,
                reason: "UnitFailed".into(),
                message: "web.service did not reach active".into(),
                last_transition_time: "2025-03-04T05:06:07Z".into(),
            }],
            apps: vec![AppStatus {
                name: "web".into(),
                layer: None,
                units: vec![UnitStatus {
                    name: "web.service".into(),
                    active_state: "failed".into(),
                    sub_state: "failed".into(),
                }],
            }],
            last_pass: None,
            desired_state_error: None,
            staged_revision: None,
            pinned_revision: None,
            podman: None,
            unhealable_drift: Vec::new(),
            fleet: None,
        },
    )
}

async fn run_async(env: &Env, args: &[&str]) -> Output {
    let mut c = env.command(args);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn store_with_pass(path: &Path) -> Store {
    let store = Store::open(path).unwrap();
    store
        .insert_pass(&PassRecord {
            id: 0,
            started_at: "2025-03-04T05:06:07Z".into(),
            finished_at: "2025-03-04T05:06:09Z".into(),
            duration_ms: 2000,
            trigger: "startup".into(),
            revision: Some("aaaabbbbccccddddeeeeffff0000111122223333".into()),
            outcome: PassOutcome::Failed,
            actions: vec!["start web.service".into()],
            error: Some("web.service failed".into()),
            runs: 1,
            first_started_at: None,
        })
        .unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_status_history_and_reconcile_talk_to_legerd() {
    let env = Env::new();
    let listener = bind_socket(&env.socket(), None).unwrap();
    let (_status_tx, status_rx) = tokio::sync::watch::channel(status_doc());
    let (reconcile_tx, mut reconcile_rx) = mpsc::channel(1);
    let ctx = ApiContext {
        status: status_rx,
        store: Arc::new(Mutex::new(store_with_pass(
            &env.dir.path().join("state/legerd.db"),
        ))),
        reconcile: reconcile_tx,
        identity: None,
        staged: tokio::sync::watch::channel(None).1,
        revisions: None,
        backups: None,
        access: legerd::access::AccessPolicy::owner_only(),
        fleet: None,
        plan: None,
    };
    let (stop, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, ctx, async {
        let _ = stop_rx.await;
    }));

    let o = run_async(&env, &["status"]).await;
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l.contains("Ready")
            && l.contains("False")
            && l.contains("UnitFailed")
            && l.contains("web.service did not reach active")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("web.service") && l.contains("failed")),
        "{out}"
    );

    let o = run_async(&env, &["status", "--json"]).await;
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["apiVersion"], leger_api_types::API_VERSION);
    assert_eq!(
        serde_json::from_value::<StatusDocument>(v).unwrap(),
        status_doc()
    );

    let o = run_async(&env, &["history", "-n", "5"]).await;
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.lines().any(|l| l.contains("startup")
            && l.contains("aaaabbbbcccc")
            && l.contains("failed")
            && l.contains("web.service failed")),
        "{out}"
    );

    // --output json|yaml: documents with apiVersion and kind; --json stays the bare list.
    let o = run_async(&env, &["history", "-o", "yaml"]).await;
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("apiVersion: leger.run/v1alpha1") && out.contains("kind: PassList"),
        "{out}"
    );
    assert!(
        out.contains("items:") && out.contains("trigger: startup"),
        "{out}"
    );
    assert!(out.contains("notListed:"), "the counters come along: {out}");
    let o = run_async(&env, &["history", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["kind"], "PassList");
    let id = v["items"][0]["id"].as_i64().unwrap();
    let o = run_async(&env, &["history", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v.is_array(), "--json keeps its old shape");
    let o = run_async(&env, &["status", "-o", "yaml"]).await;
    assert!(stdout(&o).contains("kind: AgentStatus"), "{}", stdout(&o));
    let o = run_async(&env, &["history", "show", &id.to_string(), "-o", "json"]).await;
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["id"].as_i64()),
        (Some("Pass"), Some(id))
    );
    let o = run_async(&env, &["history", "--json", "-o", "yaml"]).await;
    assert_code(&o, 2);

    let o = run_async(&env, &["reconcile"]).await;
    assert_code(&o, 0);
    assert!(
        stdout(&o).starts_with("reconcile queued: legerd starts a pass now"),
        "{}",
        stdout(&o)
    );
    tokio::time::timeout(Duration::from_secs(60), reconcile_rx.recv())
        .await
        .expect("a reconcile request arrives")
        .expect("channel open");

    // No pass ever finishes here: --wait gives up after its timeout with exit 3 and
    // says where to look.
    let o = run_async(&env, &["reconcile", "--wait=2s"]).await;
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains("timed out after 2s") && stderr(&o).contains("legerctl status"),
        "{}",
        stderr(&o)
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_secrets_set_list_rm_and_identity_never_show_values() {
    let env = Env::new();
    let listener = bind_socket(&env.socket(), None).unwrap();
    let (_status_tx, status_rx) = tokio::sync::watch::channel(status_doc());
    let (reconcile_tx, mut reconcile_rx) = mpsc::channel(4);
    let state = env.dir.path().join("state");
    let store = Arc::new(Mutex::new(Store::open(&state.join("legerd.db")).unwrap()));
    let identity = Arc::new(legerd::secrets::NodeIdentity::load_or_create(&state).unwrap());
    let ctx = ApiContext {
        status: status_rx,
        store: Arc::clone(&store),
        reconcile: reconcile_tx,
        identity: Some(Arc::clone(&identity)),
        staged: tokio::sync::watch::channel(None).1,
        revisions: None,
        backups: None,
        access: legerd::access::AccessPolicy::owner_only(),
        fleet: None,
        plan: None,
    };
    let (stop, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, ctx, async {
        let _ = stop_rx.await;
    }));

    let o = run_async(&env, &["identity"]).await;
    assert_code(&o, 0);
    assert_eq!(stdout(&o).trim(), identity.recipient());
    let o = run_async(&env, &["identity", "-o", "yaml"]).await;
    assert_code(&o, 0);
    let y: serde_json::Value = yaml_serde::from_str(&stdout(&o)).unwrap();
    assert_eq!(y["kind"], "Identity");
    assert_eq!(y["apiVersion"], "leger.run/v1alpha1");
    assert_eq!(y["recipient"], identity.recipient().to_string());

    let value = "pl41n-t3xt-value";
    let mut c = env.command(&["secrets", "set", "db-pass"]);
    let o = tokio::task::spawn_blocking(move || {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("secret db-pass set (version 1)"),
        "{}",
        stdout(&o)
    );
    tokio::time::timeout(Duration::from_secs(60), reconcile_rx.recv())
        .await
        .expect("set queues a pass");
    let (ct, version) = store
        .lock()
        .unwrap()
        .local_secret("db-pass")
        .unwrap()
        .unwrap();
    assert_eq!(version, 1);
    assert!(!String::from_utf8_lossy(&ct).contains(value));
    assert_eq!(
        identity.decrypt("db-pass", &ct).unwrap().expose(),
        value.as_bytes()
    );

    for args in [&["secrets", "list"][..], &["secrets", "list", "--json"][..]] {
        let o = run_async(&env, args).await;
        assert_code(&o, 0);
        let out = stdout(&o);
        assert!(out.contains("db-pass") && !out.contains(value), "{out}");
    }

    let o = run_async(&env, &["secrets", "set", "bad/name"]).await;
    assert!(!o.status.success());

    let o = run_async(&env, &["secrets", "rm", "db-pass"]).await;
    assert_code(&o, 0);
    assert!(
        store
            .lock()
            .unwrap()
            .local_secret("db-pass")
            .unwrap()
            .is_none()
    );
    let o = run_async(&env, &["secrets", "rm", "db-pass"]).await;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no local secret db-pass"));

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}

#[test]
fn cli_set_desired_git_takes_a_credentials_file_and_refuses_a_url_with_credentials() {
    let env = Env::new();
    let o = env.run(&[
        "set-desired",
        "git",
        "https://bob:planted-token@git.example.org/fleet.git",
    ]);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("credentials_file"), "{err}");
    assert!(!err.contains("planted-token"), "never echoed: {err}");
    assert!(!env.desired().exists(), "nothing was written");
    let o = env.run(&[
        "set-desired",
        "git",
        "https://git.example.org/fleet.git",
        "--credentials-file",
        "/etc/leger/git-credentials",
    ]);
    assert_code(&o, 0);
    let d = DesiredState::from_toml_str(&env.read_desired()).unwrap();
    let SourceSpec::Git(g) = d.source else {
        panic!("git source expected")
    };
    assert_eq!(
        g.credentials_file.as_deref(),
        Some(std::path::Path::new("/etc/leger/git-credentials"))
    );
}

#[test]
fn cli_wait_refuses_a_zero_timeout() {
    let env = Env::new();
    env.write_desired(VALID);
    let o = env.run(&["set-policy", "--mode", "staged", "--wait=0s"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("greater than zero"), "{}", stderr(&o));
    let o = env.run(&["reconcile", "--wait=soon"]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("not a duration"), "{}", stderr(&o));
    assert_eq!(env.read_desired(), VALID);
}

#[test]
fn cli_wait_without_legerd_changes_nothing() {
    let env = Env::new();
    env.write_desired(VALID);
    let o = env.run(&["set-policy", "--mode", "staged", "--wait"]);
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("legerd must be running"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.read_desired(), VALID, "nothing half-applied");
}

/// Serves the legerd API on `env`'s socket with `fleet` as its fleet gate and `store`
/// as its store; returns a stopper and the server task.
fn serve_fleet_api(
    env: &Env,
    store: Arc<Mutex<Store>>,
    fleet: Option<Arc<legerd::fleet::FleetGate>>,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = bind_socket(&env.socket(), None).unwrap();
    let ctx = ApiContext {
        status: tokio::sync::watch::channel(status_doc()).1,
        store,
        reconcile: mpsc::channel(1).0,
        identity: None,
        staged: tokio::sync::watch::channel(None).1,
        revisions: None,
        backups: None,
        access: legerd::access::AccessPolicy::owner_only(),
        fleet,
        plan: None,
    };
    let (stop, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, ctx, async {
        let _ = stop_rx.await;
    }));
    (stop, server)
}

fn fleet_settings(host: &str, url: &str) -> leger_config::fleet::FleetSettings {
    leger_config::fleet::FleetSettings {
        host: host.to_owned(),
        groups: vec![],
        report_url: None,
        report_token_file: None,
        report_interval: Duration::from_secs(300),
        lock: Some(leger_config::fleet::FleetLockSettings {
            backend: leger_config::fleet::LockBackend::FleetLock {
                url: url.to_owned(),
            },
            group: "default".into(),
        }),
    }
}

const FLEET_RETRY: legerd::fleet::RetrySettings = legerd::fleet::RetrySettings {
    initial: Duration::from_secs(2),
    max: Duration::from_secs(60),
};

/// The real path of `legerctl fleet release`: the binary, legerd's API on a Unix
/// socket, its fleet gate with a real SQLite store, and the e2e FleetLock server on
/// 127.0.0.1. A slot kept after a rollback blocks another host until the operator
/// releases it; with the lock server gone, the release fails loudly and the slot
/// stays on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_fleet_release_gives_a_kept_slot_back_through_legerd() {
    let env = Env::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lock_server = leger_e2e::fleet_server::state(1, None);
    tokio::spawn(leger_e2e::fleet_server::serve(
        listener,
        Arc::clone(&lock_server),
    ));
    let db = env.dir.path().join("state/legerd.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let store = Arc::new(Mutex::new(Store::open(&db).unwrap()));
    let metrics = Arc::new(legerd::metrics::Metrics::new(false));
    let gate = Arc::new(legerd::fleet::FleetGate::new(
        &fleet_settings("h1", &url),
        FLEET_RETRY,
        Arc::clone(&store),
        Arc::clone(&metrics),
    ));
    let restart = legerd::fleet::Disruption {
        units: vec!["web.service".into()],
    };
    // h1 restarted web in its slot, and the health gate failed: it keeps the slot.
    gate.before_apply(&restart).await.unwrap();
    gate.after_failed_gate().await;
    assert!(gate.holds_slot());
    let other = legerd::fleet::FleetGate::new(
        &fleet_settings("h2", &url),
        FLEET_RETRY,
        Arc::new(Mutex::new(
            Store::open(&env.dir.path().join("state/h2.db")).unwrap(),
        )),
        Arc::new(legerd::metrics::Metrics::new(false)),
    );
    let (wait, _) = other.before_apply(&restart).await.unwrap_err();
    assert!(wait.contains("holders: h1"), "{wait}");

    let (stop, server) = serve_fleet_api(&env, Arc::clone(&store), Some(Arc::clone(&gate)));
    let o = run_async(&env, &["fleet", "release"]).await;
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("asking legerd to release this host's restart slot"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "released the restart slot of h1 at FleetLock server {url}"
        )),
        "{out}"
    );
    assert!(!gate.holds_slot());
    assert!(
        lock_server
            .lock()
            .unwrap()
            .holders
            .values()
            .all(Vec::is_empty)
    );
    // The release is on record: a restarted legerd does not think it still holds one.
    let reopened = legerd::fleet::FleetGate::new(
        &fleet_settings("h1", &url),
        FLEET_RETRY,
        Arc::new(Mutex::new(Store::open(&db).unwrap())),
        Arc::new(legerd::metrics::Metrics::new(false)),
    );
    assert!(!reopened.holds_slot());
    // The waiting host goes ahead now.
    other.before_apply(&restart).await.unwrap();
    let log: Vec<String> = lock_server
        .lock()
        .unwrap()
        .log
        .iter()
        .map(|e| format!("{} {}", e.op, e.id))
        .collect();
    assert_eq!(log, ["grant h1", "refuse h2", "release h1", "grant h2"]);
    // A second release says there was nothing on record, and still tells the server.
    let o = run_async(&env, &["fleet", "release"]).await;
    assert_code(&o, 0);
    assert!(
        stdout(&o).contains("h1 held no slot on record"),
        "{}",
        stdout(&o)
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    // legerd restarts with the slot on record while its lock server is gone.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    other.after_failed_gate().await;
    drop(other);
    let h2_db = env.dir.path().join("state/h2.db");
    let h2_store = Arc::new(Mutex::new(Store::open(&h2_db).unwrap()));
    let stranded = Arc::new(legerd::fleet::FleetGate::new(
        &fleet_settings("h2", &gone),
        FLEET_RETRY,
        Arc::clone(&h2_store),
        Arc::new(legerd::metrics::Metrics::new(false)),
    ));
    assert!(stranded.holds_slot());
    let (stop, server) = serve_fleet_api(&env, h2_store, Some(Arc::clone(&stranded)));
    let o = run_async(&env, &["fleet", "release"]).await;
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("the slot is still held on record"), "{err}");
    assert!(
        err.contains(&format!("FleetLock server {gone} is unreachable")),
        "{err}"
    );
    assert!(stranded.holds_slot());
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    // A legerd without a fleet gate says so.
    let (stop, server) = serve_fleet_api(&env, store, None);
    let o = run_async(&env, &["fleet", "release"]).await;
    assert_code(&o, 1);
    assert!(
        stderr(&o).contains("this legerd does not serve fleet commands"),
        "{}",
        stderr(&o)
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[test]
fn cli_set_desired_git_takes_ssh_files_and_refuses_an_open_key_or_a_missing_known_hosts() {
    let env = Env::new();
    let key = env.dir.path().join("id_ed25519");
    std::fs::write(&key, "placeholder; legerctl never reads it").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let known = env.dir.path().join("known_hosts");
    let url = "git@192.0.2.7:fleet.git";
    let (key_arg, known_arg) = (key.to_str().unwrap(), known.to_str().unwrap());
    let args = [
        "set-desired",
        "git",
        url,
        "--ssh-key-file",
        key_arg,
        "--known-hosts-file",
        known_arg,
    ];

    // A key others can read is refused, naming the file and the fix.
    let o = env.run(&args);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(err.contains(key_arg) && err.contains("chmod 600"), "{err}");
    assert!(!err.contains("placeholder"), "never read or echoed: {err}");
    assert!(!env.desired().exists(), "nothing was written");

    // A missing known_hosts file is refused, saying how to make one.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = env.run(&args);
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains(known_arg) && err.contains("ssh-keyscan"),
        "{err}"
    );
    assert!(!env.desired().exists(), "nothing was written");

    // An ssh url without the files is refused by the desired.toml rules.
    let o = env.run(&["set-desired", "git", url]);
    assert_code(&o, 1);
    assert!(stderr(&o).contains("ssh_key_file"), "{}", stderr(&o));

    std::fs::write(&known, "[192.0.2.7]:22 ssh-ed25519 AAAA\n").unwrap();
    let o = env.run(&args);
    assert_code(&o, 0);
    let d = DesiredState::from_toml_str(&env.read_desired()).unwrap();
    let SourceSpec::Git(g) = d.source else {
        panic!("git source expected")
    };
    assert_eq!(g.url, url);
    assert_eq!(g.ssh_key_file.as_deref(), Some(key.as_path()));
    assert_eq!(g.known_hosts_file.as_deref(), Some(known.as_path()));
}

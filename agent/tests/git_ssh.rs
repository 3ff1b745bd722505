//! The git source over ssh, against a real OpenSSH server on 127.0.0.1 serving a real
//! repository through `git-upload-pack`: fetching and following commits, whole
//! in-process passes, and every refusal (unknown or changed host key, a key the server
//! does not take, a key file others can read, a server that never answers).
//!
//! Each test skips with a note when `/usr/sbin/sshd` is missing (`.ci/run` installs
//! Debian's openssh-server; CI runs as root).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leger_api_types::PassOutcome;
use leger_api_types::desired::GitSourceSpec;
use leger_api_types::status::reason;
use leger_config::Limits;
use legerd::model::UnitState;
use legerd::reconciler::Reconciler;
use legerd::source::SourceError;
use legerd::source::git::GitSource;
use legerd::store::Store;
use legerd::systemd::recording::RecordingUnitManager;

#[path = "support/sshd.rs"]
mod sshd;
#[allow(dead_code)]
#[path = "support/upstream.rs"]
mod upstream;

use sshd::{Sshd, keygen};
use upstream::Upstream;

const WEB: &str = "[Container]\nImage=localhost/busybox:latest\nExec=echo v1\n";

/// A server, a repository it serves, and a key it accepts with a known_hosts that
/// trusts it.
struct Fixture {
    t: tempfile::TempDir,
    sshd: Sshd,
    up: Upstream,
    key: PathBuf,
    known_hosts: PathBuf,
    rev: String,
}

fn fixture() -> Option<Fixture> {
    let t = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(&t.path().join("sshd"))?;
    let up = Upstream::new(t.path(), "fleet");
    up.write("apps/web/web.container", WEB);
    let rev = up.commit("first");
    let key = t.path().join("id_ed25519");
    keygen(&key);
    sshd.authorize(&key);
    let known_hosts = t.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
    Some(Fixture {
        t,
        sshd,
        up,
        key,
        known_hosts,
        rev,
    })
}

impl Fixture {
    fn spec(&self) -> GitSourceSpec {
        let mut s = GitSourceSpec::new(self.sshd.url(&self.up.bare));
        s.path = Some("apps".into());
        s.ssh_key_file = Some(self.key.clone());
        s.known_hosts_file = Some(self.known_hosts.clone());
        s
    }

    fn source(&self, spec: GitSourceSpec) -> GitSource {
        GitSource::new(spec, &self.t.path().join("state"), limits())
    }

    /// The lines of the private key file: none may show up anywhere.
    fn key_material(&self) -> Vec<String> {
        std::fs::read_to_string(&self.key)
            .unwrap()
            .lines()
            .filter(|l| l.len() > 20)
            .map(str::to_owned)
            .collect()
    }

    fn assert_no_key_material(&self, text: &str) {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for line in self.key_material() {
            assert!(!text.contains(&line), "key material in: {text}");
        }
    }
}

fn limits() -> Limits {
    Limits {
        max_file_size: 1024 * 1024,
        max_files: 10_000,
    }
}

fn ssh_problem(e: &SourceError) -> &str {
    match e {
        SourceError::Ssh { problem, .. } => problem,
        other => panic!("expected an ssh error, got {other:?}: {other}"),
    }
}

#[test]
fn ssh_source_fetches_then_follows_a_new_commit() {
    let Some(f) = fixture() else { return };
    let mut src = f.source(f.spec());
    let first = src
        .fetch(None)
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", f.sshd.log_text()));
    assert_eq!(first.snapshot.revision, f.rev);
    assert_eq!(
        first.snapshot.files.keys().collect::<Vec<_>>(),
        ["web/web.container"]
    );
    assert!(first.stats.received_pack);

    let idle = src.fetch(Some(&f.rev)).unwrap();
    assert_eq!(idle.snapshot.revision, f.rev);
    assert!(idle.stats.contacted_remote && !idle.stats.received_pack);

    f.up.write("apps/web/web.container", WEB.replace("v1", "v2"));
    let rev2 = f.up.commit("second");
    let second = src.fetch(Some(&f.rev)).unwrap();
    assert_eq!(second.snapshot.revision, rev2);
    assert!(second.stats.received_pack);
    let text = String::from_utf8(second.snapshot.files["web/web.container"].to_vec()).unwrap();
    assert!(text.contains("echo v2"), "{text}");
    // The login went through the key: sshd logged a publickey acceptance.
    assert!(
        f.sshd.log_text().contains("Accepted publickey"),
        "{}",
        f.sshd.log_text()
    );
}

#[test]
fn ssh_source_refuses_an_unknown_host_key_and_names_known_hosts_file() {
    let Some(f) = fixture() else { return };
    // A known_hosts that trusts some other host only.
    let other = f.t.path().join("other_host");
    keygen(&other);
    std::fs::write(
        &f.known_hosts,
        format!("[192.0.2.1]:22 {}\n", sshd::public_key(&other)),
    )
    .unwrap();
    let mut src = f.source(f.spec());
    let e = src.fetch(None).unwrap_err();
    let problem = ssh_problem(&e);
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE);
    assert!(
        problem.contains(&f.known_hosts.display().to_string())
            && problem.contains("never trusts an unknown host key")
            && problem.contains(&format!("[127.0.0.1]:{}", f.sshd.addr.port()))
            && problem.contains("ssh-keyscan -p"),
        "{problem}"
    );
    f.assert_no_key_material(&e.to_string());
    // Nothing came from the server, and the file was not changed (never accept-new).
    assert!(!f.sshd.log_text().contains("Accepted publickey"));
    let known = std::fs::read_to_string(&f.known_hosts).unwrap();
    assert_eq!(known.lines().count(), 1, "{known}");
}

#[test]
fn ssh_source_refuses_a_changed_host_key() {
    let Some(f) = fixture() else { return };
    let impostor = f.t.path().join("impostor");
    keygen(&impostor);
    std::fs::write(
        &f.known_hosts,
        format!(
            "[127.0.0.1]:{} {}\n",
            f.sshd.addr.port(),
            sshd::public_key(&impostor)
        ),
    )
    .unwrap();
    let e = f.source(f.spec()).fetch(None).unwrap_err();
    let problem = ssh_problem(&e);
    assert!(
        problem.contains("does not match known_hosts_file")
            && problem.contains(&f.known_hosts.display().to_string())
            && problem.contains("nothing was fetched"),
        "{problem}"
    );
    assert!(!f.sshd.log_text().contains("Accepted publickey"));
}

#[test]
fn ssh_source_with_a_key_the_server_does_not_accept_is_refused() {
    let Some(f) = fixture() else { return };
    let stranger = f.t.path().join("stranger");
    keygen(&stranger);
    let mut spec = f.spec();
    spec.ssh_key_file = Some(stranger.clone());
    let e = f.source(spec).fetch(None).unwrap_err();
    let problem = ssh_problem(&e);
    assert!(
        problem.contains(&format!(
            "refused the key in ssh_key_file {}",
            stranger.display()
        )) && problem.contains("Permission denied")
            && problem.contains("authorized keys"),
        "{problem}"
    );
    f.assert_no_key_material(&e.to_string());
    f.assert_no_key_material(&format!("{e:?}"));
    let stranger_lines = std::fs::read_to_string(&stranger).unwrap();
    for line in stranger_lines.lines().filter(|l| l.len() > 20) {
        assert!(!e.to_string().contains(line), "{e}");
    }
}

#[test]
fn ssh_source_refuses_a_key_file_others_can_read_before_running_ssh() {
    let Some(f) = fixture() else { return };
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = f.source(f.spec()).fetch(None).unwrap_err();
    let problem = ssh_problem(&e);
    assert!(
        problem.contains(&f.key.display().to_string()) && problem.contains("chmod 600"),
        "{problem}"
    );
    std::fs::remove_file(&f.key).unwrap();
    let e = f.source(f.spec()).fetch(None).unwrap_err();
    assert!(ssh_problem(&e).contains("does not exist"), "{e}");
    // A spec built in code without the files never falls back to gix's own ssh.
    let mut bare = f.spec();
    bare.known_hosts_file = None;
    let e = f.source(bare).fetch(None).unwrap_err();
    assert!(ssh_problem(&e).contains("needs both"), "{e}");
    // sshd saw the readiness probe's connection only: no login was ever tried.
    assert!(
        !f.sshd.log_text().contains("publickey"),
        "ssh never ran: {}",
        f.sshd.log_text()
    );
}

#[test]
fn ssh_source_is_killed_at_the_command_timeout() {
    // A server that accepts the connection and never says a word: only the time limit
    // ends the fetch. No sshd is needed for this one.
    let t = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let key = t.path().join("id");
    keygen(&key);
    let known_hosts = t.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let mut spec = GitSourceSpec::new(format!("ssh://git@127.0.0.1:{port}/fleet.git"));
    spec.ssh_key_file = Some(key);
    spec.known_hosts_file = Some(known_hosts);
    let mut src = GitSource::new(spec, &t.path().join("state"), limits())
        .with_command_timeout(Duration::from_secs(2));
    let t0 = Instant::now();
    let e = src.fetch(None).unwrap_err();
    let problem = ssh_problem(&e);
    assert!(
        problem.contains("did not finish within 2s and was killed") && problem.contains("ssh"),
        "{problem}"
    );
    // Bounded by the limit and the kill grace, far below ssh's own 30 s connect limit.
    assert!(t0.elapsed() < Duration::from_secs(25), "{:?}", t0.elapsed());
    drop(held);
}

fn active() -> UnitState {
    UnitState {
        load_state: "loaded".into(),
        active_state: "active".into(),
        sub_state: "running".into(),
    }
}

#[tokio::test]
async fn ssh_pass_converges_follows_a_commit_and_keeps_the_key_out_of_status() {
    let Some(f) = fixture() else { return };
    let root = f.t.path().join("host");
    let settings = legerd::testkit::settings_in(&root);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let desired = format!(
        "[source]\nkind = \"git\"\nurl = \"{}\"\npath = \"apps\"\nssh_key_file = \"{}\"\nknown_hosts_file = \"{}\"\n",
        f.sshd.url(&f.up.bare),
        f.key.display(),
        f.known_hosts.display()
    );
    std::fs::write(&settings.paths.desired_file, &desired).unwrap();
    std::fs::create_dir_all(&settings.paths.state_dir).unwrap();
    let store = Arc::new(Mutex::new(
        Store::open(&settings.paths.state_dir.join("state.db")).unwrap(),
    ));
    let units = Arc::new(RecordingUnitManager::new());
    units.set_state_after_job("web.service", active());
    let quadlets = settings.paths.quadlet_dir.clone();
    let mut reconciler = Reconciler::new(settings, Arc::clone(&units), store);

    let r = reconciler.reconcile(&["startup".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(r.record.revision.as_deref(), Some(f.rev.as_str()));
    let installed = std::fs::read_to_string(quadlets.join("web/web.container")).unwrap();
    assert!(installed.contains("echo v1"), "{installed}");

    f.up.write("apps/web/web.container", WEB.replace("v1", "v2"));
    let rev2 = f.up.commit("second");
    let r = reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(r.record.revision.as_deref(), Some(rev2.as_str()));
    let installed = std::fs::read_to_string(quadlets.join("web/web.container")).unwrap();
    assert!(installed.contains("echo v2"), "{installed}");

    // The server's key changes: the pass fails with the reason, the last good revision
    // stays, and neither status nor the error carries key material.
    let impostor = f.t.path().join("impostor");
    keygen(&impostor);
    std::fs::write(
        &f.known_hosts,
        format!(
            "[127.0.0.1]:{} {}\n",
            f.sshd.addr.port(),
            sshd::public_key(&impostor)
        ),
    )
    .unwrap();
    f.up.write("apps/web/web.container", WEB.replace("v1", "v3"));
    f.up.commit("third");
    let r = reconciler.reconcile(&["poll".into()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Failed, "{:?}", r.record);
    let error = r.record.error.clone().unwrap_or_default();
    assert!(error.contains("does not match known_hosts_file"), "{error}");
    let installed = std::fs::read_to_string(quadlets.join("web/web.container")).unwrap();
    assert!(installed.contains("echo v2"), "{installed}");
    let status = reconciler.status(None);
    assert_eq!(
        status.status.applied_revision.as_deref(),
        Some(rev2.as_str())
    );
    let json = serde_json::to_string(&status).unwrap();
    assert!(json.contains(reason::SOURCE_UNAVAILABLE), "{json}");
    assert!(json.contains("does not match known_hosts_file"), "{json}");
    f.assert_no_key_material(&json);
    f.assert_no_key_material(&format!("{:?}", r.record));
}

#[test]
fn ssh_source_to_a_closed_port_is_unreachable_with_what_ssh_said() {
    let t = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = t.path().join("id");
    keygen(&key);
    let known_hosts = t.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let mut spec = GitSourceSpec::new(format!("ssh://git@127.0.0.1:{closed}/fleet.git"));
    spec.ssh_key_file = Some(key);
    spec.known_hosts_file = Some(known_hosts);
    let e = GitSource::new(spec, &t.path().join("state"), limits())
        .fetch(None)
        .unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}: {e}");
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE);
    assert!(e.to_string().contains("Connection refused"), "{e}");
}

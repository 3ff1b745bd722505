//! legerd in a test-bed machine, under the shipped hardened legerd.service, follows a
//! git source over ssh: a real OpenSSH server (Debian's `openssh-server` on the host,
//! run by the test in the test network's namespace at 192.0.2.1) serves the fleet
//! repository through `git-upload-pack`.
//!
//! The test-bed image has no ssh client and its package list is shared, so the host's
//! `/usr/bin/ssh` (Debian's openssh-client, whose libraries the image has) is copied
//! into the machine, as `apt install openssh-client` (which the package recommends)
//! would put it there. Skipped with a note when the host has no sshd or ssh.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use common::{
    Fleet, WAIT, condition, container, legerctl, reconcile_and_wait_for_pass, start_legerd, status,
    wait_applied, wait_running,
};
use leger_e2e::fleet_net::{FleetNet, SERVER_IP};
use leger_e2e::{Testbed, wait_until};

const SSHD: &str = "/usr/sbin/sshd";
const PORT: u16 = 2222;
const KEY_INSIDE: &str = "/etc/leger/ssh/id_ed25519";
const KNOWN_HOSTS_INSIDE: &str = "/etc/leger/ssh/known_hosts";

fn keygen(path: &Path) -> Result<String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "leger-e2e", "-f"])
        .arg(path)
        .output()
        .context("cannot run ssh-keygen (openssh-client)")?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    let public = std::fs::read_to_string(format!("{}.pub", path.display()))?;
    let mut parts = public.split_whitespace();
    Ok(format!(
        "{} {}",
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    ))
}

/// Starts sshd in the test network's namespace with its own config and host key, letting
/// in the holder of `client_public`. Returns the server's host public key and its log.
fn start_sshd(net: &mut FleetNet, dir: &Path, client_public: &str) -> Result<(String, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    // Privilege separation needs its empty folder (ssh.service makes it; it is not run).
    std::fs::create_dir_all("/run/sshd")?;
    let host_key = dir.join("host_ed25519");
    let host_public = keygen(&host_key)?;
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{client_public}\n"))?;
    std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o600))?;
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {SERVER_IP}:{PORT}\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nAuthorizedKeysFile {}\nAllowUsers root\n\
             AcceptEnv GIT_PROTOCOL\nLogLevel VERBOSE\n",
            host_key.display(),
            authorized.display()
        ),
    )?;
    let log = dir.join("sshd.log");
    net.spawn(
        SSHD,
        &[
            "-D",
            "-f",
            config.to_str().context("utf-8 path")?,
            "-E",
            log.to_str().context("utf-8 path")?,
        ],
    )?;
    wait_until(WAIT, "sshd listening", || {
        Ok(std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Server listening"))
    })?;
    Ok((host_public, log))
}

/// Puts the host's ssh client into the machine (see the module doc).
fn install_ssh_client(tb: &Testbed) -> Result<()> {
    let root = PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    let inside = root.join("usr/bin/ssh");
    std::fs::copy("/usr/bin/ssh", &inside).context("cannot copy /usr/bin/ssh into the machine")?;
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o755))?;
    tb.exec_ok(&["ssh", "-V"]).map(drop)
}

fn write_root_file(tb: &Testbed, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
    let host = PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT")).join(path.trim_start_matches('/'));
    std::fs::create_dir_all(host.parent().context("a parent")?)?;
    std::fs::write(&host, bytes)?;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[test]
fn ssh_source_under_the_hardened_unit_converges_follows_and_refuses_a_changed_host_key()
-> Result<()> {
    if !Path::new(SSHD).exists() || !Path::new("/usr/bin/ssh").exists() {
        eprintln!(
            "SKIPPED: {SSHD} or /usr/bin/ssh is missing; install Debian's openssh-server and openssh-client (.ci/run does)"
        );
        return Ok(());
    }
    let tb = Testbed::boot("ssh")?;
    let prefix = std::env::var("LEGER_E2E_PREFIX").unwrap_or_default();
    let mut net = FleetNet::create(&format!("{prefix}lgrssh"), &[&tb])?;
    install_ssh_client(&tb)?;

    let fleet = Fleet::create(
        &tb,
        &[("apps/web/web.container", &container("web", "web v1"))],
    )?;
    let bare = tb.share_dir_host().join("fleet.git");
    let keys = tempfile::tempdir()?;
    let key = keys.path().join("id_ed25519");
    let client_public = keygen(&key)?;
    let (host_public, sshd_log) = start_sshd(&mut net, &keys.path().join("sshd"), &client_public)?;
    let key_bytes = std::fs::read(&key)?;
    write_root_file(&tb, KEY_INSIDE, &key_bytes, 0o600)?;
    let known = format!("[{SERVER_IP}]:{PORT} {host_public}\n");
    write_root_file(&tb, KNOWN_HOSTS_INSIDE, known.as_bytes(), 0o644)?;

    let url = format!("ssh://root@{SERVER_IP}:{PORT}{}", bare.display());
    legerctl(
        &tb,
        &[
            "set-desired",
            "git",
            &url,
            "--path",
            "apps",
            "--ssh-key-file",
            KEY_INSIDE,
            "--known-hosts-file",
            KNOWN_HOSTS_INSIDE,
        ],
    )?;
    start_legerd(&tb)?;
    let first = fleet.head()?;
    wait_applied(&tb, &first).with_context(|| {
        format!(
            "status: {}\nsshd log:\n{}",
            status(&tb).map(|s| s.to_string()).unwrap_or_default(),
            std::fs::read_to_string(&sshd_log).unwrap_or_default()
        )
    })?;
    wait_running(&tb, "web.service", "web")?;
    let log = std::fs::read_to_string(&sshd_log)?;
    if !log.contains("Accepted publickey for root") {
        bail!("legerd did not log in over ssh:\n{log}");
    }

    // A new commit converges through the same source.
    let second = fleet.commit(
        &[("apps/web/web.container", &container("web", "web v2"))],
        &[],
        "v2",
    )?;
    reconcile_and_wait_for_pass(&tb)?;
    wait_applied(&tb, &second)?;

    // The server's host key changes: the fetch is refused with the reason, and the last
    // good revision keeps running.
    let impostor = keys.path().join("impostor");
    let impostor_public = keygen(&impostor)?;
    write_root_file(
        &tb,
        KNOWN_HOSTS_INSIDE,
        format!("[{SERVER_IP}]:{PORT} {impostor_public}\n").as_bytes(),
        0o644,
    )?;
    fleet.commit(
        &[("apps/web/web.container", &container("web", "web v3"))],
        &[],
        "v3",
    )?;
    wait_until(WAIT, "the changed host key in status", || {
        reconcile_and_wait_for_pass(&tb)?;
        let doc = status(&tb)?;
        Ok(doc.to_string().contains("does not match known_hosts_file"))
    })?;
    let doc = status(&tb)?;
    assert_eq!(
        doc["status"]["appliedRevision"].as_str(),
        Some(second.as_str())
    );
    let (_, reason, message) = condition(&doc, "Ready").context("a Ready condition")?;
    assert_eq!(reason, "SourceUnavailable", "{message}");
    assert!(message.contains(KNOWN_HOSTS_INSIDE), "{message}");

    // No key material in status, history or the journal.
    let history = legerctl(&tb, &["history"])?;
    let journal = tb.exec_ok(&["journalctl", "-b", "--no-pager", "-o", "json"])?;
    let key_text = String::from_utf8(key_bytes)?;
    for (what, text) in [
        ("status", doc.to_string()),
        ("history", history),
        ("journal", journal),
    ] {
        assert!(!text.contains("PRIVATE KEY"), "{what}");
        for line in key_text.lines().filter(|l| l.len() > 20) {
            assert!(!text.contains(line), "key material in {what}");
        }
    }
    Ok(())
}

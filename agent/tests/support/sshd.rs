//! A real OpenSSH server on 127.0.0.1 for the ssh git source tests: its own config,
//! host key and authorized keys in a temporary folder, on a free port, serving
//! repositories through `git-upload-pack` like any git host.
//!
//! It needs Debian's `openssh-server` (`.ci/run` installs it). [`Sshd::start`] returns
//! `None` when `/usr/sbin/sshd` is missing, and the test says it was skipped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the server.
pub const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed when dropped.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    /// 127.0.0.1 and the port it listens on.
    pub addr: SocketAddr,
    /// The server's host public key, one `type base64` line.
    pub host_public_key: String,
    /// The user it lets in (the one running the test).
    pub user: String,
    /// Its log (`-E`), for a failing test's message.
    pub log: PathBuf,
    /// `authorized_keys`, which [`Sshd::authorize`] appends to.
    authorized_keys: PathBuf,
}

/// Creates an ed25519 key pair without a passphrase at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "leger-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The public key line of a key made by [`keygen`], without its comment.
pub fn public_key(private: &Path) -> String {
    let text = std::fs::read_to_string(format!("{}.pub", private.display())).unwrap();
    let mut parts = text.split_whitespace();
    format!("{} {}", parts.next().unwrap(), parts.next().unwrap())
}

impl Sshd {
    /// Starts sshd with its files under `dir`; `None` (with a note on stderr) when
    /// sshd is not installed.
    pub fn start(dir: &Path) -> Option<Sshd> {
        if !Path::new(SSHD).exists() {
            eprintln!(
                "SKIPPED: {SSHD} is missing; install Debian's openssh-server to run the ssh source tests (.ci/run does)"
            );
            return None;
        }
        let user = current_user();
        if rustix::process::geteuid().is_root() {
            // Privilege separation needs its empty folder; systemd's ssh.service makes
            // it, and the test runs without that unit.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        std::fs::create_dir_all(dir).unwrap();
        let host_key = dir.join("host_ed25519");
        keygen(&host_key);
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, "").unwrap();
        std::fs::set_permissions(&authorized_keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = dir.join("sshd.log");
        let mut last_error = String::new();
        // A free port can be taken by someone else between the probe and sshd's bind:
        // try a few.
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1:{port}\n\
                     HostKey {}\n\
                     PidFile none\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     AuthorizedKeysFile {}\n\
                     AllowUsers {user}\n\
                     AcceptEnv GIT_PROTOCOL\n\
                     LogLevel VERBOSE\n",
                    host_key.display(),
                    authorized_keys.display()
                ),
            )
            .unwrap();
            let mut child = Command::new(SSHD)
                .args(["-D", "-f"])
                .arg(&config)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sshd starts");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(addr).is_ok() {
                    return Some(Sshd {
                        child,
                        addr,
                        host_public_key: public_key(&host_key),
                        user,
                        log,
                        authorized_keys,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            last_error = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("sshd did not start: {last_error}");
    }

    /// Lets the holder of `private_key` (made by [`keygen`]) log in.
    pub fn authorize(&self, private_key: &Path) {
        let mut text = std::fs::read_to_string(&self.authorized_keys).unwrap();
        text.push_str(&public_key(private_key));
        text.push('\n');
        std::fs::write(&self.authorized_keys, text).unwrap();
    }

    /// A known_hosts line that trusts this server.
    pub fn known_hosts_line(&self) -> String {
        format!(
            "[127.0.0.1]:{} {}\n",
            self.addr.port(),
            self.host_public_key
        )
    }

    /// `ssh://user@127.0.0.1:port/<repo>`.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.addr.port(),
            repo.display()
        )
    }

    /// What sshd logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

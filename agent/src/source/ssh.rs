//! Git over ssh: legerd runs the `ssh` program itself and hands its pipes to gix as a
//! git connection.
//!
//! **Why not gix's own ssh transport:** it runs `ssh` too, but gives no handle on the
//! child: nothing could kill it when the fetch hangs (a server that accepts the
//! connection and then says nothing would hold the pass for good), and ssh's messages
//! go to legerd's stderr unparsed, so "host key verification failed" would reach
//! status as a bare "unexpected end of file". Here the child runs through
//! [`Runner::converse`] like every command legerd runs (its own process group, killed
//! at `reconcile.command_timeout`), and its stderr is read to say what went wrong.
//!
//! **Trust:** the server is trusted only through the operator's `known_hosts_file`
//! (`StrictHostKeyChecking=yes`: never accept-new, never off), legerd logs in with
//! `ssh_key_file` only (`IdentitiesOnly`, no agent), and no ssh config file is read
//! (`-F /dev/null`), so neither `~/.ssh/config` nor `/etc/ssh/ssh_config` can change
//! the host, the key or the checks. `BatchMode` makes ssh fail rather than prompt.
//!
//! legerd never reads the key; it checks only the file's type and mode. Nothing here
//! puts key material in an error.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::time::Duration;

use gix::protocol::transport::Protocol;
use gix::protocol::transport::client::git::ConnectMode;
use gix::protocol::transport::client::git::blocking_io::Connection;
use gix::url::ArgumentSafety;

use crate::command::{CommandLine, Conversation, Ended, Runner};

/// The longest ssh waits for the TCP connection and the key exchange; the whole fetch
/// is bounded by `reconcile.command_timeout` on top.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A git connection over a running `ssh`, and the conversation that owns the child.
pub(super) struct SshConnection {
    /// What gix talks git's protocol through.
    pub transport: Connection<ChildStdout, ChildStdin>,
    /// The running ssh; [`Conversation::finish`] it after the fetch, whatever happened.
    pub conversation: Conversation,
}

/// The ssh files of a source, checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct SshFiles<'a> {
    /// `ssh_key_file`.
    pub key: &'a Path,
    /// `known_hosts_file`.
    pub known_hosts: &'a Path,
}

/// Refuses a private key file that is missing, not a file, or open to anyone but its
/// owner (ssh itself refuses such a key, with a message that names no setting).
pub fn check_key_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "ssh_key_file {} does not exist; create a key (ssh-keygen -t ed25519 -N '' -f {}) and give its public key to the git server",
                path.display(),
                path.display()
            )
        } else {
            format!("cannot read ssh_key_file {}: {e}", path.display())
        }
    })?;
    if !meta.is_file() {
        return Err(format!(
            "ssh_key_file {} is not a file; name the private key file",
            path.display()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "ssh_key_file {} can be read or changed by other users (mode {mode:04o}); a private key must be readable by its owner only: run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// Refuses a known_hosts file that is missing, not a file, or writable by anyone but
/// its owner: whoever can write it decides which server legerd trusts.
pub fn check_known_hosts_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "known_hosts_file {} does not exist; write the git server's host key into it (from the server's operator, or ssh-keyscan HOST > {}, then compare `ssh-keygen -lf {}` with the fingerprint the operator gives)",
                path.display(),
                path.display(),
                path.display()
            )
        } else {
            format!("cannot read known_hosts_file {}: {e}", path.display())
        }
    })?;
    if !meta.is_file() {
        return Err(format!("known_hosts_file {} is not a file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "known_hosts_file {} can be changed by other users (mode {mode:04o}), and whoever writes it decides which server legerd trusts: run `chmod 644 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// The host as ssh and known_hosts name it: `host`, or `[host]:port` off port 22.
pub(super) fn known_hosts_name(url: &gix::Url) -> String {
    let host = url.host().unwrap_or_default();
    match url.port {
        Some(port) if port != 22 => format!("[{host}]:{port}"),
        _ => host.to_owned(),
    }
}

/// The `ssh` command line that runs `git-upload-pack` for `url` on the server.
pub(super) fn command_line(url: &gix::Url, files: SshFiles<'_>) -> Result<CommandLine, String> {
    let login = match (url.user_as_argument(), url.host_as_argument()) {
        (_, ArgumentSafety::Absent) => return Err("the url has no host".to_owned()),
        (ArgumentSafety::Dangerous(_), _)
        | (ArgumentSafety::Absent, ArgumentSafety::Dangerous(_)) => {
            return Err(
                "the url's user or host starts with '-', which ssh would read as an option"
                    .to_owned(),
            );
        }
        (
            ArgumentSafety::Usable(user),
            ArgumentSafety::Usable(host) | ArgumentSafety::Dangerous(host),
        ) => {
            format!("{user}@{host}")
        }
        (ArgumentSafety::Absent, ArgumentSafety::Usable(host)) => host.to_owned(),
    };
    let path = gix::url::expand_path::for_shell(url.path.clone());
    if path.first() == Some(&b'-') {
        return Err("the url's path starts with '-'".to_owned());
    }
    let remote_command = format!("git-upload-pack {}", gix::quote::single(path.as_ref()));
    let mut cmd = CommandLine::new("ssh").args(["-F", "/dev/null", "-T", "-x", "-i"]);
    cmd = cmd.arg(files.key);
    for option in [
        "IdentitiesOnly=yes".to_owned(),
        "IdentityAgent=none".to_owned(),
        format!("UserKnownHostsFile={}", ssh_option_path(files.known_hosts)),
        "GlobalKnownHostsFile=/dev/null".to_owned(),
        "StrictHostKeyChecking=yes".to_owned(),
        "UpdateHostKeys=no".to_owned(),
        "BatchMode=yes".to_owned(),
        format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs()),
        "ServerAliveInterval=15".to_owned(),
        "ServerAliveCountMax=4".to_owned(),
        "SendEnv=GIT_PROTOCOL".to_owned(),
    ] {
        cmd = cmd.arg("-o").arg(option);
    }
    if let Some(port) = url.port {
        cmd = cmd.arg("-p").arg(port.to_string());
    }
    Ok(cmd
        .arg(login)
        .arg(&remote_command)
        .env("GIT_PROTOCOL", "version=2")
        // ssh's messages are read below; keep them in English.
        .env("LANG", "C")
        .env("LC_ALL", "C"))
}

/// A path as the value of an `-o` option: quoted (ssh splits the value at spaces)
/// and with `%` doubled (ssh expands `%h` and friends in these paths).
fn ssh_option_path(path: &Path) -> String {
    let text = path.to_string_lossy().replace('%', "%%");
    format!("\"{text}\"")
}

/// Starts ssh for `url` and wraps its pipes in a git connection asking for protocol v2
/// (servers that do not accept `GIT_PROTOCOL` answer in v0, which gix handles).
pub(super) fn connect(
    url: &gix::Url,
    files: SshFiles<'_>,
    runner: Runner,
) -> Result<SshConnection, String> {
    check_key_file(files.key)?;
    check_known_hosts_file(files.known_hosts)?;
    let cmd = command_line(url, files)?;
    let mut conversation = runner.converse(&cmd).map_err(|e| {
        if e.is_not_found() {
            "the `ssh` program is not installed; install openssh-client".to_owned()
        } else {
            e.to_string()
        }
    })?;
    let (Some(stdout), Some(stdin)) = (conversation.stdout.take(), conversation.stdin.take())
    else {
        return Err("ssh started without its pipes".to_owned());
    };
    let transport = Connection::new(
        stdout,
        stdin,
        Protocol::V2,
        url.path.clone(),
        None::<(&str, Option<u16>)>,
        ConnectMode::Process,
        false,
    );
    Ok(SshConnection {
        transport,
        conversation,
    })
}

/// What ssh's stderr says went wrong, as a message for status that names the file
/// to fix and how; `None` when it says nothing legerd recognises.
pub(super) fn explain(ended: &Ended, url: &gix::Url, files: SshFiles<'_>) -> Option<String> {
    if let Some(timed_out) = &ended.timed_out {
        return Some(timed_out.to_string());
    }
    let stderr = ended.stderr_text();
    let host = known_hosts_name(url);
    let known = files.known_hosts.display();
    let key = files.key.display();
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("has changed and you have requested strict checking")
    {
        return Some(format!(
            "the host key of {host} does not match known_hosts_file {known}: the server's key changed, or something between legerd and the server is pretending to be it; nothing was fetched. If the server's operator confirms a new key, replace the line for {host} in {known} with it"
        ));
    }
    if stderr.contains("host key is known for") || stderr.contains("Host key verification failed") {
        return Some(format!(
            "the host key of {host} is not in known_hosts_file {known}, and legerd never trusts an unknown host key; add the server's key to that file (from the server's operator, or ssh-keyscan{} {}, comparing its fingerprint with theirs)",
            url.port.map(|p| format!(" -p {p}")).unwrap_or_default(),
            url.host().unwrap_or_default()
        ));
    }
    if let Some(line) = stderr.lines().find(|l| l.contains("Permission denied")) {
        let user = url.user().unwrap_or("root");
        return Some(format!(
            "{host} refused the key in ssh_key_file {key} for user {user} ({}); add its public key (ssh-keygen -y -f {key}) to that user's authorized keys on the server",
            line.trim()
        ));
    }
    if let Some(line) = stderr
        .lines()
        .find(|l| l.starts_with("Load key") || l.contains("invalid format"))
    {
        return Some(format!(
            "ssh cannot use ssh_key_file {key} ({}); write an OpenSSH private key without a passphrase there",
            line.trim()
        ));
    }
    None
}

/// The last line ssh (or the server's git) wrote to stderr, to add to a transport
/// error that would otherwise only say the connection ended.
pub(super) fn last_words(ended: &Ended) -> Option<String> {
    ended
        .stderr_text()
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> Vec<String> {
        let url = gix::url::parse(url).unwrap();
        let files = SshFiles {
            key: Path::new("/etc/leger/ssh/id"),
            known_hosts: Path::new("/etc/leger/ssh/known 100%"),
        };
        command_line(&url, files)
            .unwrap()
            .arguments()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn ssh_command_line_is_strict_and_reads_no_config() {
        let a = args("ssh://git@192.0.2.7:2222/srv/fleet.git").join(" ");
        for must in [
            "-F /dev/null",
            "-i /etc/leger/ssh/id",
            "-o IdentitiesOnly=yes",
            "-o UserKnownHostsFile=\"/etc/leger/ssh/known 100%%\"",
            "-o GlobalKnownHostsFile=/dev/null",
            "-o StrictHostKeyChecking=yes",
            "-o BatchMode=yes",
            "-p 2222 git@192.0.2.7 git-upload-pack '/srv/fleet.git'",
        ] {
            assert!(a.contains(must), "{must} in {a}");
        }
        assert!(
            !a.contains("accept-new") && !a.contains("StrictHostKeyChecking=no"),
            "{a}"
        );
    }

    #[test]
    fn ssh_command_line_of_an_scp_like_url_has_the_path_relative_to_home() {
        let a = args("git@192.0.2.7:fleet.git");
        assert_eq!(
            a[a.len() - 2..],
            ["git@192.0.2.7", "git-upload-pack 'fleet.git'"]
        );
        assert!(!a.iter().any(|x| x == "-p"), "{a:?}");
        let a = args("ssh://192.0.2.7/~/it's.git");
        assert_eq!(
            a[a.len() - 2..],
            ["192.0.2.7", r"git-upload-pack '~/it'\''s.git'"]
        );
    }

    #[test]
    fn ssh_command_line_refuses_an_option_as_host() {
        let url = gix::url::parse("ssh://-oProxyCommand=x/srv/f.git").unwrap();
        let files = SshFiles {
            key: Path::new("/k"),
            known_hosts: Path::new("/h"),
        };
        let e = command_line(&url, files).unwrap_err();
        assert!(e.contains("starts with '-'"), "{e}");
    }

    #[test]
    fn key_and_known_hosts_files_are_checked_before_ssh_runs() {
        let t = tempfile::tempdir().unwrap();
        let key = t.path().join("id");
        let e = check_key_file(&key).unwrap_err();
        assert!(
            e.contains("does not exist") && e.contains("ssh-keygen"),
            "{e}"
        );
        std::fs::write(&key, "not read by legerd").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_key_file(&key).unwrap_err();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("not read by legerd"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_key_file(&key).unwrap();
        let e = check_key_file(t.path()).unwrap_err();
        assert!(e.contains("not a file"), "{e}");

        let known = t.path().join("known_hosts");
        let e = check_known_hosts_file(&known).unwrap_err();
        assert!(e.contains("ssh-keyscan"), "{e}");
        std::fs::write(&known, "").unwrap();
        std::fs::set_permissions(&known, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = check_known_hosts_file(&known).unwrap_err();
        assert!(e.contains("chmod 644"), "{e}");
        std::fs::set_permissions(&known, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_known_hosts_file(&known).unwrap();
    }
}

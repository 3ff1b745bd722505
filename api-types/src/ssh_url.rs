//! Git URLs reached over ssh: `ssh://[user@]host[:port]/path` and the scp-like
//! `[user@]host:path`, and the rules for the files that go with them.
//!
//! They live apart from the http(s) rules because their trust is different: the user
//! name is a login, not a secret, so it may stay in the url, while a password never
//! may; and the server is trusted only through a `known_hosts_file` the operator
//! wrote, never through whatever key it shows on first contact.

use std::path::Path;

/// True for a git URL legerd fetches over ssh.
pub fn is_ssh_url(url: &str) -> bool {
    url.starts_with("ssh://") || scp_like(url).is_some()
}

/// The `(user@host, path)` of an scp-like URL (`git@host:fleet.git`), the way git
/// tells one apart from a local path: a colon before the first slash, and no `://`.
pub fn scp_like(url: &str) -> Option<(&str, &str)> {
    if url.contains("://") || url.starts_with('/') {
        return None;
    }
    let (login, path) = url.split_once(':')?;
    if login.is_empty() || login.contains('/') || path.is_empty() {
        return None;
    }
    let host = login.rsplit_once('@').map_or(login, |(_, h)| h);
    (!host.is_empty()).then_some((login, path))
}

/// Checks an ssh git URL: a host, a path, and no password.
pub fn validate(url: &str) -> Result<(), String> {
    let (login, path) = match scp_like(url) {
        Some(parts) => parts,
        None => {
            // Not echoed: a malformed url may still hold a password.
            let parsed = url::Url::parse(url).map_err(|e| {
                format!("invalid ssh url: {e}; write ssh://user@host[:port]/path or user@host:path")
            })?;
            if parsed.password().is_some() {
                return Err(password_refused());
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(format!("invalid url {url:?}: no host"));
            }
            if parsed.path().trim_matches('/').is_empty() {
                return Err(format!(
                    "invalid url {url:?}: no repository path; write ssh://user@host[:port]/path/to/repo.git"
                ));
            }
            return Ok(());
        }
    };
    // `user:password@host:path` splits at its first colon, as git splits it, into a
    // "host" `user` and a path that starts with `password@host:`: still a password.
    let password_in_path = path
        .split_once('@')
        .is_some_and(|(pw, rest)| !pw.contains('/') && rest.contains(':'));
    if !login.contains('@') && password_in_path {
        return Err(password_refused());
    }
    Ok(())
}

fn password_refused() -> String {
    "the ssh url carries a password; legerd logs in with a key only: remove it and name the key with `ssh_key_file` in [source]".to_owned()
}

/// Checks the `[source]` keys of a git source against its URL: an ssh URL needs
/// `ssh_key_file` and `known_hosts_file` (absolute) and takes no `credentials_file`;
/// any other URL takes neither ssh key.
pub fn check_keys(
    url: &str,
    ssh_key_file: Option<&Path>,
    known_hosts_file: Option<&Path>,
    credentials_file: Option<&Path>,
) -> Result<(), String> {
    if !is_ssh_url(url) {
        for (key, set) in [
            ("ssh_key_file", ssh_key_file.is_some()),
            ("known_hosts_file", known_hosts_file.is_some()),
        ] {
            if set {
                return Err(format!(
                    "`{key}` is only for an ssh url (ssh://user@host/path or user@host:path)"
                ));
            }
        }
        return Ok(());
    }
    if credentials_file.is_some() {
        return Err(
            "`credentials_file` is for http(s) urls; an ssh url logs in with `ssh_key_file`"
                .to_owned(),
        );
    }
    let key = ssh_key_file.ok_or(
        "an ssh url needs `ssh_key_file`: a private key readable by root only (ssh-keygen -t ed25519 -N '' -f /etc/leger/ssh/id_ed25519), whose public key the git server accepts",
    )?;
    let known = known_hosts_file.ok_or(
        "an ssh url needs `known_hosts_file`: the server's host key in known_hosts format; legerd never accepts an unknown host key (get the key from the server's operator, or from ssh-keyscan and check its fingerprint)",
    )?;
    for (name, p) in [("ssh_key_file", key), ("known_hosts_file", known)] {
        if !p.is_absolute() {
            return Err(format!("{name}: {:?} must be absolute", p.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_are_told_from_paths_and_http() {
        assert!(is_ssh_url("ssh://git@host:2222/srv/fleet.git"));
        assert!(is_ssh_url("git@host:fleet.git"));
        assert!(is_ssh_url("host:fleet.git"));
        assert_eq!(
            scp_like("git@host:fleet.git"),
            Some(("git@host", "fleet.git"))
        );
        for not in [
            "/srv/fleet.git",
            "https://host/fleet.git",
            "file:///srv/f.git",
            "./a:b",
            "git@host:",
            ":path",
        ] {
            assert!(!is_ssh_url(not), "{not}");
        }
    }

    #[test]
    fn ssh_url_with_a_password_is_refused_and_names_ssh_key_file() {
        for url in [
            "ssh://git:planted-pw@host/srv/f.git",
            "git:planted-pw@host:f.git",
        ] {
            let e = validate(url).unwrap_err();
            assert!(e.contains("ssh_key_file"), "{e}");
            assert!(!e.contains("planted-pw"), "{e}");
        }
        validate("ssh://git@host:22/srv/f.git").unwrap();
        validate("git@host:f.git").unwrap();
        let e = validate("ssh://git@host").unwrap_err();
        assert!(e.contains("no repository path"), "{e}");
    }

    #[test]
    fn ssh_keys_go_with_ssh_urls_only() {
        let key = Some(Path::new("/etc/leger/ssh/id"));
        let known = Some(Path::new("/etc/leger/ssh/known_hosts"));
        check_keys("git@h:f.git", key, known, None).unwrap();
        let e = check_keys("git@h:f.git", None, known, None).unwrap_err();
        assert!(
            e.contains("ssh_key_file") && e.contains("ssh-keygen"),
            "{e}"
        );
        let e = check_keys("git@h:f.git", key, None, None).unwrap_err();
        assert!(
            e.contains("known_hosts_file") && e.contains("unknown host key"),
            "{e}"
        );
        let e = check_keys("git@h:f.git", key, known, key).unwrap_err();
        assert!(e.contains("credentials_file"), "{e}");
        let e = check_keys("git@h:f.git", Some(Path::new("id")), known, None).unwrap_err();
        assert!(e.contains("must be absolute"), "{e}");
        let e = check_keys("https://h/f.git", key, None, None).unwrap_err();
        assert!(e.contains("only for an ssh url"), "{e}");
        check_keys("https://h/f.git", None, None, key).unwrap();
    }

    #[test]
    fn desired_toml_takes_an_ssh_source_and_round_trips() {
        use crate::{DesiredState, SourceSpec};
        let text = "[source]\nkind = \"git\"\nurl = \"ssh://git@192.0.2.7:2222/srv/fleet.git\"\nssh_key_file = \"/etc/leger/ssh/id_ed25519\"\nknown_hosts_file = \"/etc/leger/ssh/known_hosts\"\n";
        let d = DesiredState::from_toml_str(text).unwrap();
        let SourceSpec::Git(g) = &d.source else {
            panic!("{d:?}")
        };
        assert_eq!(
            g.ssh_key_file.as_deref(),
            Some(Path::new("/etc/leger/ssh/id_ed25519"))
        );
        assert_eq!(DesiredState::from_toml_str(&d.to_toml_string()).unwrap(), d);
        let e = DesiredState::from_toml_str(
            "[source]\nkind = \"git\"\nurl = \"git@192.0.2.7:fleet.git\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ssh_key_file"), "{e}");
        let e = DesiredState::from_toml_str(
            "[source]\nkind = \"dir\"\npath = \"/srv\"\nknown_hosts_file = \"/x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("known_hosts_file"), "{e}");
    }
}

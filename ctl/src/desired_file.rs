//! Writing and reading desired.toml with the permissions it needs.
//!
//! desired.toml says which repository a host trusts and whether it is suspended, so it
//! is written `0640`: root may change it, the admin group (`[api] admin_group`, default
//! `leger-admin`) may read it (legerctl reads the current file before editing it), and
//! other users see nothing. legerd runs as root and reads it either way.

use std::io;
use std::path::Path;

use anyhow::{Context, Result};

/// The permission bits of desired.toml.
pub const MODE: u32 = 0o640;

/// The group desired.toml is given when root writes it: the configured admin group of
/// system mode, or `leger-admin` when the configuration cannot be read.
fn admin_group() -> Option<String> {
    let env = leger_config::Environment::from_process();
    let dirs = leger_config::default_dropin_dirs(leger_config::Mode::System, &env);
    match leger_config::load(leger_config::Mode::System, &dirs, &env) {
        Ok(s) => s.admin_group,
        Err(_) => Some("leger-admin".to_owned()),
    }
}

/// Writes desired.toml atomically, `0640`, and when running as root gives it the admin
/// group (a group missing from /etc/group leaves it root's, with a warning).
pub fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    leger_config::fs::write_atomic(path, text.as_bytes(), MODE).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            "; changing the desired state needs root (run legerctl with sudo)"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!("cannot write {}{hint}", path.display()))
    })?;
    if rustix::process::geteuid().is_root()
        && let Some(group) = admin_group()
    {
        match legerd::api::lookup_group(&group, Path::new("/etc/group")) {
            Ok(Some(gid)) => {
                rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
                    .with_context(|| format!("cannot give {} to group {group}", path.display()))?;
            }
            _ => eprintln!(
                "warning: group {group} does not exist, so {} is readable by root only; create it with `groupadd {group}`",
                path.display()
            ),
        }
    }
    Ok(())
}

/// Reads desired.toml; `None` when there is none. A permission error names the group
/// to join.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let group = admin_group().unwrap_or_else(|| "leger-admin".to_owned());
            Err(anyhow::anyhow!(
                "cannot read {}: permission denied; the desired state is readable by root and group {group} only (ask an admin to run `usermod -aG {group} $USER`, then log in again; changes need sudo)",
                path.display()
            ))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

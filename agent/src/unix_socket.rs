//! Binding a Unix socket the way both of legerd's sockets (the API and the optional
//! metrics socket) need it: parent directory created, a stale socket from a crashed
//! legerd replaced, a live one refused (two legerds must not steal each other's
//! socket), and the permission bits set.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

/// Binds `path` with `mode`. `what` names the socket in errors ("API socket") and
/// `config_key` is the setting that moves it ("paths.socket").
pub fn bind(path: &Path, what: &str, config_key: &str, mode: u32) -> io::Result<UnixListener> {
    let ctx = |action: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot {action} for {what} {}: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| ctx("create the parent directory", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{what} {} is in use by another process; stop the other legerd first",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path).map_err(|e| ctx("remove the stale socket", e))?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; remove it or set {config_key} elsewhere",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ctx("inspect the existing path", e)),
    }
    let listener = UnixListener::bind(path).map_err(|e| ctx("bind", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ctx(&format!("set mode {mode:o}"), e))?;
    Ok(listener)
}

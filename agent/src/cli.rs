//! legerd's command line. It lives in the library so the man page `legerd(8)` is
//! generated from the same definition the binary parses (see `docgen/`), and cannot drift.

use std::path::PathBuf;

use clap::Parser;

/// legerd converges Podman quadlets on this host to the desired state in desired.toml
/// (a git repository or a local folder), driving systemd over D-Bus.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "Examples:\n  legerd                      # system mode, as the legerd.service unit runs it\n  legerd --user               # rootless, for one user's quadlets\n  legerd --config-dir /tmp/c  # read config drop-ins from /tmp/c only\n\nEdit desired state with `legerctl set-desired`, read status with `legerctl status`."
)]
pub struct Args {
    /// Manage the calling user's quadlets over the user bus (rootless podman).
    #[arg(long)]
    pub user: bool,
    /// Read config drop-ins (*.toml) from these directories instead of the defaults
    /// (/usr/lib/leger/config.d, /run/leger/config.d, /etc/leger/config.d). Repeatable.
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dirs: Vec<PathBuf>,
    /// Run one reconcile pass, print its outcome, and exit (1 when it failed).
    #[arg(long)]
    pub once: bool,
}

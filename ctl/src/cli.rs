//! legerctl's command line, documented for `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use legerctl::edit::{parse_git_url, parse_interval, parse_subpath};

/// Edit leger's desired state and read legerd's status.
///
/// legerctl never starts a unit and never calls podman: it writes desired.toml (legerd
/// notices within a second) and reads status over legerd's local socket.
#[derive(Debug, Parser)]
#[command(name = "legerctl", version, propagate_version = true)]
#[command(after_help = "Examples:
  legerctl set-desired git https://git.example.org/fleet.git --ref main --path apps
  legerctl status
  legerctl history -n 5
  legerctl suspend

Exit codes: 0 on success, 1 when the command failed, 2 for usage errors.")]
pub struct Cli {
    /// Use user-mode paths (rootless podman, ~/.config/leger, $XDG_RUNTIME_DIR/leger).
    #[arg(long, global = true)]
    pub user: bool,

    /// legerd's API socket [default: from config, /run/leger/legerd.sock].
    #[arg(long, global = true, env = "LEGER_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// The desired-state file [default: from config, /etc/leger/desired.toml].
    #[arg(long, global = true, env = "LEGER_DESIRED_FILE", value_name = "PATH")]
    pub desired_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show source, revisions, conditions, apps and units, and the last pass.
    #[command(
        after_help = "Exits 0 whenever status was read, whatever it says: scripts should \
read the conditions, e.g.
  legerctl status --json | jq -e '.status.conditions[] | select(.type == \"Ready\") | .status == \"True\"'"
    )]
    Status {
        /// Print the status document as JSON (stable; check apiVersion and kind).
        #[arg(long)]
        json: bool,
    },

    /// Show recent reconcile passes, newest first.
    #[command(after_help = "Example:\n  legerctl history -n 50 --json")]
    History {
        /// How many passes to show (1 to 1000).
        #[arg(short = 'n', long = "limit", default_value_t = 20,
              value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Print the passes as JSON.
        #[arg(long)]
        json: bool,
    },

    /// Ask legerd for a reconcile pass now instead of at the next poll.
    Reconcile,

    /// Write desired.toml: where apps come from (validated, written atomically).
    #[command(
        subcommand_negates_reqs = true,
        args_conflicts_with_subcommands = true,
        after_help = "An existing [policy] table (suspend, prune, ...) is kept when the source changes.

Examples:
  legerctl set-desired git https://git.example.org/fleet.git --ref main --path apps --interval 5m
  legerctl set-desired dir /srv/leger/apps
  legerctl set-desired --file desired.toml
  cat desired.toml | legerctl set-desired --file -"
    )]
    SetDesired(SetDesired),

    /// Print the current desired.toml.
    GetDesired,

    /// Stop changing the host: legerd keeps fetching and reporting (sets policy.suspend).
    #[command(after_help = "desired.toml is rewritten in canonical form; comments are not kept.")]
    Suspend,

    /// Let legerd change the host again (clears policy.suspend).
    #[command(after_help = "desired.toml is rewritten in canonical form; comments are not kept.")]
    Resume,

    /// Manage secrets in legerd's local, age-encrypted store. Values are never shown.
    #[command(subcommand)]
    Secrets(SecretsCommand),

    /// Print this node's age recipient: encrypt `secrets/NAME.age` files to it.
    #[command(
        after_help = "Example:\n  printf %s \"$VALUE\" | age -r \"$(legerctl identity)\" -o secrets/db-pass.age"
    )]
    Identity,
}

/// `legerctl secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set NAME from stdin (never from an argument, which `ps` and shell history would show).
    #[command(after_help = "Example:\n  printf %s \"$DB_PASS\" | legerctl secrets set db-pass")]
    Set {
        /// The secret name, as in `Secret=NAME`.
        name: String,
    },
    /// List names, versions, sources and consuming units.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove NAME from the local store (units that need it then wait for another source).
    Rm {
        /// The secret name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct SetDesired {
    /// Take the whole document from FILE (`-` for stdin); it is validated and written as-is.
    #[arg(long, value_name = "FILE", required = true)]
    pub file: Option<PathBuf>,

    #[command(subcommand)]
    pub source: Option<SourceCommand>,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Apps come from a git repository, one folder per app.
    #[command(
        after_help = "Example:\n  legerctl set-desired git https://git.example.org/fleet.git --ref v1.4 --path hosts/web"
    )]
    Git {
        /// https://, http://, file:// URL or an absolute path of the repository.
        #[arg(value_parser = parse_git_url)]
        url: String,
        /// Branch, tag, or full commit id (a commit id pins the host) [default: main].
        #[arg(long = "ref", value_name = "REF")]
        reference: Option<String>,
        /// Sub-folder of the repository that holds the app folders.
        #[arg(long, value_name = "DIR", value_parser = parse_subpath)]
        path: Option<String>,
        /// How often legerd checks the remote, e.g. 30s, 5m [default: 60s].
        #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
        interval: Option<Duration>,
        /// Accept force-pushed history (a new commit that does not descend from the applied one).
        #[arg(long)]
        allow_rewrite: bool,
    },
    /// Apps come from a local folder, one sub-folder per app.
    #[command(after_help = "Example:\n  legerctl set-desired dir /srv/leger/apps")]
    Dir {
        /// The folder; a relative path is made absolute from the current directory.
        path: PathBuf,
    },
}

//! legerctl's command line, documented for `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use leger_api_types::ManifestVersion;
use legerctl::edit::{
    parse_git_url, parse_interval, parse_manifest_url, parse_manifest_version, parse_public_key,
    parse_subpath,
};

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
  legerctl logs web -f

Exit codes: 0 on success, 1 when the command failed, 2 for usage errors, 3 when --wait timed out.")]
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
  legerctl status -o json | jq -e '.status.conditions[] | select(.type == \"Ready\") | .status == \"True\"'"
    )]
    Status {
        #[command(flatten)]
        out: legerctl::output::OutputArg,
        /// Show condition messages and the last error whole (podman's output, journal
        /// lines), not shortened to one line.
        #[arg(long)]
        details: bool,
    },

    /// Show recent reconcile passes, newest first.
    ///
    /// Idle polls and the no-op passes legerd's own changes trigger are counted, not
    /// listed (one summary line); a failure or hold repeated with the same revision and
    /// error is one row with a run count.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:
  legerctl history -n 50 --json
  legerctl history --failed
  legerctl history --changes --app web
  legerctl history show 42        # one pass whole: its actions and the full error"
    )]
    History {
        /// How many passes to show (1 to 1000).
        #[arg(short = 'n', long = "limit", default_value_t = 20,
              value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Only passes that changed the host.
        #[arg(long)]
        changes: bool,
        /// Only failed and rolled-back passes.
        #[arg(long)]
        failed: bool,
        /// Only passes about this app (its files or units).
        #[arg(long, value_name = "APP")]
        app: Option<String>,
        #[command(flatten)]
        out: legerctl::output::OutputArg,
        #[command(subcommand)]
        show: Option<HistoryCommand>,
    },

    /// Ask legerd for a reconcile pass now instead of at the next poll.
    Reconcile {
        #[command(flatten)]
        wait: WaitArg,
    },

    /// Fleet commands: the restart slot this host holds.
    #[command(subcommand)]
    Fleet(FleetCommand),

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

    /// Print the current desired.toml (as it is, or as a DesiredState document).
    #[command(after_help = "Examples:
  legerctl get-desired
  legerctl get-desired -o yaml")]
    GetDesired {
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },

    /// Show what applying the staged revision would do: unit actions and a unified diff.
    #[command(
        after_help = "Exit code: 0 when nothing would change, 1 when something would (like diff(1)), 2 on errors.
Colored on a terminal. Needs policy.mode = \"staged\" (legerd stages each new revision and waits).

Examples:
  legerctl diff            # every app
  legerctl diff web        # one app
  legerctl diff --json"
    )]
    Diff {
        /// Only this app.
        app: Option<String>,
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },

    /// Show what the next pass would do now: unit actions, secrets by name, drift and a
    /// diff of every file. Changes nothing.
    #[command(
        after_help = "Works in every mode: while suspended it shows what `legerctl resume` would let the next
pass do; in staged mode, what approving the staged revision would do. legerd fetches the
source and plans as a pass would, between passes, without touching the host. Secret values
are never shown, only their names. Exit code 0 when the plan was read, whatever it says.

Examples:
  legerctl plan            # every app
  legerctl plan web        # one app
  legerctl plan --json"
    )]
    Plan {
        /// Only this app.
        app: Option<String>,
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },

    /// Approve a staged revision: legerd applies exactly that revision (sets policy.approved).
    #[command(
        after_help = "Without REV: the revision staged now (see `legerctl status` or `legerctl diff`)."
    )]
    Approve {
        /// The revision to apply.
        revision: Option<String>,
        /// Approve a revision that already failed its health gate, so legerd tries it again.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArg,
    },

    /// Hold the host at REV from legerd's own revision store, whatever the source says (sets policy.pin).
    #[command(
        after_help = "REV must be one legerd validated before: see `legerctl revisions`. Release with `legerctl unpin`."
    )]
    Pin {
        /// The revision.
        revision: String,
        /// Pin a revision that already failed its health gate, so legerd tries it again.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArg,
    },

    /// Follow the source again (clears policy.pin).
    Unpin,

    /// Go back to an earlier applied revision, without fetching (pins it).
    #[command(
        after_help = "Without REV: the revision applied before the current one. `legerctl unpin` returns to the source."
    )]
    Rollback {
        /// The revision to go back to.
        revision: Option<String>,
        #[command(flatten)]
        wait: WaitArg,
    },

    /// List the revisions legerd has seen, newest first, and which can be pinned.
    Revisions {
        /// How many.
        #[arg(short = 'n', long = "limit", default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },

    /// Change how legerd converges: mode (auto|staged), prune, self-heal, allow-empty.
    #[command(
        after_help = "Only the settings named change; the rest of desired.toml is kept (rewritten in canonical form).
legerd notices the change within a second and applies it at its next pass.

Examples:
  legerctl set-policy --mode staged
  legerctl set-policy --prune false --self-heal false
  legerctl set-policy --mode auto --allow-empty true"
    )]
    SetPolicy(SetPolicy),

    /// Stop changing the host: legerd keeps fetching and reporting (sets policy.suspend).
    #[command(after_help = "desired.toml is rewritten in canonical form; comments are not kept.")]
    Suspend,

    /// Let legerd change the host again (clears policy.suspend).
    #[command(after_help = "desired.toml is rewritten in canonical form; comments are not kept.")]
    Resume,

    /// Show the journal of an app's units, of one managed unit, or of legerd and every managed unit, through journalctl.
    #[command(
        after_help = "Without APP: legerd itself and every unit it manages, interleaved.
Needs legerd running to know an app's units; journalctl's own permissions apply
(members of group systemd-journal or adm can read the system journal).

Examples:
  legerctl logs web -f
  legerctl logs web-db.service -n 100
  legerctl logs web -u web-db.service -n 100
  journalctl MESSAGE_ID=fc2e5769da014e6c827e73b17a4eb9e8   # every revision applied (docs/journal.md)"
    )]
    Logs {
        /// The app whose units to show, or one unit legerd manages (`web.service`, `web`).
        #[arg(value_name = "APP|UNIT")]
        app: Option<String>,
        /// Only this unit (repeatable); it must belong to APP, or be managed by legerd.
        #[arg(short = 'u', long = "unit", value_name = "UNIT")]
        units: Vec<String>,
        /// Keep printing new entries.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Show only the last N entries.
        #[arg(short = 'n', long = "lines", value_name = "N")]
        lines: Option<u32>,
    },

    /// Build a leger.run manifest tree from a folder of apps (offline; touches no host).
    #[command(
        after_help = "Writes OUT_DIR/v{N+1}/ (the files, manifest.json and, with --sign, manifest.json.sig), then replaces OUT_DIR/latest.json. Older versions are kept so hosts can pin them.
The apps are validated the way legerd validates them. Set SOURCE_DATE_EPOCH for a byte-for-byte reproducible manifest (generated_at is the only field that varies).

Example:
  legerctl publish ./apps ./public --sign leger.key
  legerctl set-desired manifest https://static.example.org/fleet/ --public-key RWQ..."
    )]
    Publish {
        /// The folder with one sub-folder per app.
        apps_dir: PathBuf,
        /// The static tree to add a version to (created when missing).
        out_dir: PathBuf,
        /// Sign manifest.json with this minisign secret key (from `legerctl keygen`).
        #[arg(long, value_name = "KEYFILE")]
        sign: Option<PathBuf>,
        /// An overlay template desired.toml uses (`hosts/{host}/apps`); its folders are
        /// published too. Repeatable.
        #[arg(long = "overlay", value_name = "TEMPLATE", value_parser = parse_overlay)]
        overlays: Vec<String>,
        /// Check the composition of this host offline (with --overlay).
        #[arg(long, value_name = "HOST", value_parser = parse_segment)]
        host: Option<String>,
        /// ... in this group (repeatable, in order).
        #[arg(long = "group", value_name = "GROUP", value_parser = parse_segment)]
        groups: Vec<String>,
    },

    /// Check a folder of apps, or one host's composition of a tree, offline, the way legerd checks a revision.
    #[command(
        after_help = "Needs no legerd, no root and no podman. Uses exactly legerd's validation, for the podman given with --podman, else the podman installed here, else the newest podman release legerd knows (the output says which).
With --root, validates the composition one host gets from a tree with overlays, composed by legerd's own code: the common layer (--path, default the root), then each --overlay template expanded for --host and its --group list, in order. Without --host no host folder applies.
Exits 0 when valid, 1 when not, 2 for usage errors; problems print as file:line: message, the file relative to the tree.

Examples:
  legerctl validate
  legerctl validate --podman 5.4 ./apps
  legerctl validate --json ./apps | jq '.errors[]'
  legerctl validate --root . --overlay 'groups/{group}/apps' --overlay 'hosts/{host}/apps' --host web1 --group eu"
    )]
    Validate {
        /// The folder with one sub-folder per app (the one `publish` takes).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Validate a whole tree (a repository checkout, a publish folder) as one host composes it.
        #[arg(long, value_name = "DIR", conflicts_with = "dir")]
        root: Option<PathBuf>,
        /// The common layer under --root, like a git source's `path` (default: the root).
        #[arg(long, value_name = "DIR", requires = "root", conflicts_with = "dir", value_parser = parse_subpath)]
        path: Option<String>,
        /// An overlay template as in desired.toml (`hosts/{host}/apps`). Repeatable, in order.
        #[arg(long = "overlay", value_name = "TEMPLATE", requires = "root", conflicts_with = "dir", value_parser = parse_overlay)]
        overlays: Vec<String>,
        /// The host whose composition to validate.
        #[arg(long, value_name = "HOST", requires = "root", conflicts_with = "dir", value_parser = parse_segment)]
        host: Option<String>,
        /// ... in this group (repeatable, in order).
        #[arg(long = "group", value_name = "GROUP", requires = "root", conflicts_with = "dir", value_parser = parse_segment)]
        groups: Vec<String>,
        /// Validate for this podman release (X.Y or X.Y.Z, 4.4 or newer).
        #[arg(long, value_name = "X.Y", value_parser = legerctl::validate::parse_podman_arg)]
        podman: Option<legerd::quadlet::PodmanVersion>,
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },

    /// Create a minisign key pair for signing manifests: OUT.key and OUT.pub.
    #[command(
        after_help = "The secret key is written unencrypted (mode 0600) so CI can use it; keep it in a secret store. Put the printed public key in desired.toml's public_keys.

Example:
  legerctl keygen ./leger"
    )]
    Keygen {
        /// Path prefix for the two files.
        out: PathBuf,
    },

    /// Manage secrets in legerd's local, age-encrypted store. Values are never shown.
    #[command(subcommand)]
    Secrets(SecretsCommand),

    /// List the backups legerd took before changing or removing apps, newest first.
    #[command(
        after_help = "legerd backs an app up (its files and the named volumes of changing quadlets) before an apply changes or removes it.

Examples:
  legerctl backups
  legerctl backups web --json"
    )]
    Backups {
        /// Only this app's backups.
        app: Option<String>,
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },

    /// Ask legerd to restore an app from a backup: stop its units, import its volumes,
    /// put its files back, start its units.
    #[command(
        after_help = "Also pins the host to the backup's revision (policy.pin in desired.toml), or legerd would put the newer revision back at its next pass. `legerctl unpin` returns to following the source.

Examples:
  legerctl restore web                                  # the newest backup of web
  legerctl restore web 20250304T050607Z-0123456789ab"
    )]
    Restore {
        /// The app.
        app: String,
        /// The backup id from `legerctl backups` [default: the app's newest].
        backup: Option<String>,
        #[command(flatten)]
        wait: WaitArg,
    },

    /// Print this node's age recipient: encrypt `secrets/NAME.age` files to it.
    #[command(
        after_help = "Example:\n  printf %s \"$VALUE\" | age -r \"$(legerctl identity)\" -o secrets/db-pass.age"
    )]
    Identity {
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },
}

/// `legerctl secrets ...`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set NAME from stdin (never from an argument, which `ps` and shell history would show).
    #[command(after_help = "Example:\n  printf %s \"$DB_PASS\" | legerctl secrets set db-pass")]
    Set {
        /// The secret name, as in `Secret=NAME`.
        name: String,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// List names, versions, sources and consuming units.
    List {
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },
    /// Remove NAME from the local store (units that need it then wait for another source).
    Rm {
        /// The secret name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Give this host's restart slot back to the fleet lock now.
    #[command(
        after_help = "A host keeps its slot after a rollout failed its health gate, so the rollout stops there; it gives it back after its next good apply. Release it by hand once you have dealt with the failure (other hosts then go on with the rollout)."
    )]
    Release,
}

/// `legerctl set-policy`: at least one setting.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("setting").required(true).multiple(true)
    .args(["mode", "prune", "self_heal", "allow_empty"])))]
pub struct SetPolicy {
    /// auto: apply each new revision; staged: wait for `legerctl approve`.
    #[arg(long, value_enum)]
    pub mode: Option<legerctl::policy::ModeArg>,
    /// Remove installed apps that left the source.
    #[arg(long, value_name = "true|false")]
    pub prune: Option<bool>,
    /// Restore hand-edited managed files and restart managed units that stop.
    #[arg(long, value_name = "true|false")]
    pub self_heal: Option<bool>,
    /// Let a source with no apps remove every installed app.
    #[arg(long, value_name = "true|false")]
    pub allow_empty: Option<bool>,
    #[command(flatten)]
    pub wait: WaitArg,
}

/// `--wait[=TIMEOUT]` on the commands that change what legerd does.
#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArg {
    /// Wait until the resulting pass has applied (exit 0), failed or rolled back (1), or
    /// TIMEOUT passed (3), showing its progress [default TIMEOUT: 10m].
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          default_missing_value = legerctl::wait::DEFAULT_WAIT,
          value_parser = legerctl::wait::parse_wait)]
    pub wait: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct SetDesired {
    /// Take the whole document from FILE (`-` for stdin); it is validated and written as-is.
    #[arg(long, value_name = "FILE", required = true)]
    pub file: Option<PathBuf>,

    /// An overlay template relative to the source root, e.g. `hosts/{host}/apps`;
    /// repeatable, later ones win. `{host}` and `{group}` come from legerd's `[fleet]`.
    #[arg(long = "overlay", value_name = "TEMPLATE", global = true, value_parser = parse_overlay)]
    pub overlays: Vec<String>,

    #[command(subcommand)]
    pub source: Option<SourceCommand>,

    /// Wait until the new desired state has been applied (exit 0), failed or rolled
    /// back (1), or TIMEOUT passed (3), showing progress [default TIMEOUT: 10m].
    #[arg(long, global = true, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          default_missing_value = legerctl::wait::DEFAULT_WAIT,
          value_parser = legerctl::wait::parse_wait)]
    pub wait: Option<Duration>,
}

fn parse_overlay(s: &str) -> Result<String, String> {
    leger_api_types::overlay::validate_template(s).map(|()| s.to_owned())
}

/// A host or group name, checked like `[fleet]`'s.
fn parse_segment(s: &str) -> Result<String, String> {
    leger_config::fleet::check_segment(s).map(|()| s.to_owned())
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Apps come from a git repository, one folder per app.
    #[command(
        after_help = "Examples:\n  legerctl set-desired git https://git.example.org/fleet.git --ref v1.4 --path hosts/web\n  legerctl set-desired git git@git.example.org:fleet.git --ssh-key-file /etc/leger/ssh/id_ed25519 --known-hosts-file /etc/leger/ssh/known_hosts"
    )]
    Git {
        /// https://, http://, ssh:// or user@host:path URL, file:// URL or an absolute path
        /// of the repository.
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
        /// A root-only file with the credentials for an http(s) remote: a token, or
        /// user:password, on its first line (never put them in the url).
        #[arg(long, value_name = "FILE")]
        credentials_file: Option<std::path::PathBuf>,
        /// For an ssh url: the private key legerd logs in with (readable by root only).
        #[arg(long, value_name = "FILE")]
        ssh_key_file: Option<std::path::PathBuf>,
        /// For an ssh url: the server's host key in known_hosts format; an unknown or
        /// changed host key fails the fetch (never accepted on first contact).
        #[arg(long, value_name = "FILE")]
        known_hosts_file: Option<std::path::PathBuf>,
    },
    /// Apps come from a leger.run manifest tree served over HTTP(S).
    #[command(
        after_help = "Example:\n  legerctl set-desired manifest https://static.example.org/fleet/ --public-key RWQ... --interval 5m\n  legerctl set-desired manifest https://static.example.org/fleet/ --version 3   # pin v3"
    )]
    #[command(disable_version_flag = true)]
    Manifest {
        /// Base URL of the tree (where latest.json is).
        #[arg(value_parser = parse_manifest_url)]
        url: String,
        /// A version number to pin, or `latest` [default: latest].
        #[arg(long, value_name = "N|latest", value_parser = parse_manifest_version)]
        version: Option<ManifestVersion>,
        /// A minisign public key (base64); every manifest must then be signed. Repeatable.
        #[arg(long = "public-key", value_name = "KEY", value_parser = parse_public_key)]
        public_keys: Vec<String>,
        /// A file holding a bearer token for the server (the token never goes in desired.toml).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// How often legerd polls latest.json, e.g. 30s, 5m [default: 60s].
        #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
        interval: Option<Duration>,
    },
    /// Apps come from a local folder, one sub-folder per app.
    #[command(after_help = "Example:\n  legerctl set-desired dir /srv/leger/apps")]
    Dir {
        /// The folder; a relative path is made absolute from the current directory.
        path: PathBuf,
        /// Accept a folder that does not exist (yet); legerd reports it until it does.
        #[arg(long)]
        force: bool,
    },
}

/// `legerctl history show ID`.
#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Print one pass whole: every action and the full error (podman's output, journal
    /// lines) that the table keeps to one line.
    Show {
        /// The pass id (the ID column of `legerctl history`).
        id: i64,
        #[command(flatten)]
        out: legerctl::output::OutputArg,
    },
}

impl Command {
    /// The `--wait` timeout, on the commands that have one.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            Command::Reconcile { wait }
            | Command::Approve { wait, .. }
            | Command::Pin { wait, .. }
            | Command::Rollback { wait, .. }
            | Command::Restore { wait, .. }
            | Command::Secrets(SecretsCommand::Set { wait, .. }) => wait.wait,
            Command::SetPolicy(p) => p.wait.wait,
            Command::SetDesired(d) => d.wait,
            _ => None,
        }
    }
}

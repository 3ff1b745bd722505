//! legerd's configuration.
//!
//! Configuration comes as TOML drop-in fragments, the way zincati and systemd do it:
//! packaged defaults in `/usr/lib/leger/config.d/`, runtime overrides in
//! `/run/leger/config.d/`, and the administrator's in `/etc/leger/config.d/`.
//!
//! Loading goes in three steps, so each step has one job:
//! 1. [`Fragment`]: one file, every field optional, unknown keys refused.
//! 2. Merge: fragments ordered by file name; a file in a later directory with the same
//!    name masks the earlier one (so `/etc` can blank out a packaged file), and keys in
//!    later fragments override earlier ones.
//! 3. [`Settings`]: the merge laid over the mode's defaults, with every value checked.
//!
//! `legerctl` uses the same code to find `desired.toml` and the socket, so the two
//! binaries can never disagree about where things live.

pub mod fleet;
pub mod fs;
mod timeouts;

pub use timeouts::{
    DEFAULT_BUS_GIVE_UP, DEFAULT_CALL_TIMEOUT, DEFAULT_COMMAND_TIMEOUT, DEFAULT_GENERATOR_TIMEOUT,
    DEFAULT_PASS_TIMEOUT, Timeouts,
};

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Whether legerd manages the system's quadlets or one user's (rootless).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// System bus, `/etc/containers/systemd`, run as root.
    System,
    /// User bus, `~/.config/containers/systemd`, rootless podman.
    User,
}

impl Mode {
    /// `system` or `user`, as shown in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::User => "user",
        }
    }
}

/// The environment variables that decide user-mode paths, passed in so tests need no
/// real home directory.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`, default `~/.config`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$XDG_STATE_HOME`, default `~/.local/state`.
    pub xdg_state_home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`, where the user's socket lives.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// The machine's hostname, the default `fleet.host`.
    pub hostname: Option<String>,
}

impl Environment {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Environment {
            home: var("HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_state_home: var("XDG_STATE_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            hostname: Some(
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned(),
            )
            .filter(|h| !h.is_empty()),
        }
    }
}

/// Where legerd reads and writes, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Holds `desired.toml` and `config.d/`.
    pub config_dir: PathBuf,
    /// The desired-state document legerctl edits and legerd watches.
    pub desired_file: PathBuf,
    /// Where quadlets are installed; one sub-folder per app.
    pub quadlet_dir: PathBuf,
    /// SQLite database, git checkouts, revision cache.
    pub state_dir: PathBuf,
    /// legerd's API socket.
    pub socket: PathBuf,
}

/// Reconcile loop tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileSettings {
    /// Triggers that arrive within this window are merged into one pass.
    pub debounce: Duration,
    /// First retry delay after a failed pass.
    pub backoff_initial: Duration,
    /// Upper bound of the retry delay.
    pub backoff_max: Duration,
    /// Fraction (0..=1) of the poll interval added at random, so a fleet spreads out.
    pub jitter: f64,
    /// How long to wait for one systemd job (start, restart, stop).
    pub job_timeout: Duration,
    /// Most start/restart jobs queued with systemd at once. The jobs of one dependency
    /// level run in parallel (systemd starts them side by side), but a host of 1,000
    /// apps should not get 1,000 podman processes in the same second.
    pub max_jobs_in_flight: NonZeroUsize,
    /// How long a poll whose source did not move may skip observing the host, trusting
    /// the quadlet dir watch and unit events to report drift; after it, a poll observes
    /// everything again. Zero observes on every poll.
    pub resync: Duration,
}

/// Default of [`ReconcileSettings::max_jobs_in_flight`]: enough to keep systemd busy
/// on a small host (systemd alone starts 100 podman units in about 7.6 s on 2 cores),
/// few enough that image pulls and container starts do not thrash it.
pub const DEFAULT_MAX_JOBS_IN_FLIGHT: usize = 32;

/// Limits on what a source may contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest file legerd will install.
    pub max_file_size: u64,
    /// Most files one revision may hold.
    pub max_files: usize,
}

/// How quadlets are validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuadletSettings {
    /// Path of podman's quadlet generator, used in dry-run mode when present.
    pub generator: PathBuf,
    /// Run the generator's dry run on every new revision.
    pub generator_dry_run: bool,
}

/// Where `GET /metrics` is served, and how much detail it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// TCP address of the Prometheus endpoint; `None` switches the TCP listener off.
    /// TCP is the default because a scraper on another host cannot reach a socket
    /// (zincati#677 asked for exactly that).
    pub listen: Option<std::net::SocketAddr>,
    /// An extra Unix socket serving the same endpoint, for a local agent that prefers
    /// file permissions to a port.
    pub socket: Option<PathBuf>,
    /// Adds per-app series (an `app` label). Off by default: a fleet with many apps
    /// would otherwise multiply the series every host sends.
    pub per_app_labels: bool,
}

/// The default metrics address: loopback only, so nothing is exposed until the
/// administrator chooses to.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// The health gate after an apply (see legerd's `health` module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// How long a started unit may take to become active (and healthy).
    pub timeout: Duration,
    /// How long it must then stay up before the revision counts as good.
    pub settle: Duration,
}

/// Backups legerd takes before an apply changes or removes an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSettings {
    /// How many backups to keep per app; `0` takes none. The newest backup of an app is
    /// kept whatever its age, so a restore is always possible after a removal.
    pub keep: usize,
    /// Older backups are removed (except each app's newest).
    pub max_age: Duration,
    /// The most bytes all backups together may take; `None` sets no cap.
    pub max_bytes: Option<u64>,
    /// Free bytes that must be left on the state filesystem after a backup; `None`
    /// checks nothing.
    pub min_free: Option<u64>,
}

/// A size in desired units: an integer of bytes, or a string with a binary suffix
/// (`"512M"`, `"10G"`, `"1T"`, also `"10GiB"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// Bytes.
    Bytes(u64),
    /// `"10G"`.
    Text(String),
}

/// Parses a [`SizeValue`]; the error says what is accepted.
pub fn parse_size(key: &str, v: &SizeValue) -> Result<u64, ConfigError> {
    let text = match v {
        SizeValue::Bytes(n) => return Ok(*n),
        SizeValue::Text(t) => t.trim(),
    };
    let bad = || ConfigError::Value {
        key: key.to_owned(),
        message: format!(
            "{text:?} is not a size; use bytes (1000000) or a number with K, M, G or T (\"10G\")"
        ),
    };
    let upper = text.to_ascii_uppercase();
    let digits = upper.trim_end_matches("IB").trim_end_matches('B');
    let (number, shift) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 10),
        Some('M') => (&digits[..digits.len() - 1], 20),
        Some('G') => (&digits[..digits.len() - 1], 30),
        Some('T') => (&digits[..digits.len() - 1], 40),
        _ => (digits, 0),
    };
    let n: u64 = number.trim().parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// Free space a backup must leave on the state filesystem by default: 1 GiB, so a
/// backup never fills the disk the SQLite database and the journal share.
pub const DEFAULT_MIN_FREE: u64 = 1 << 30;

/// Validated settings legerd runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// System or user mode.
    pub mode: Mode,
    /// Resolved paths.
    pub paths: Paths,
    /// Group that may use the socket (mode 0660) and read over it; `None` keeps the
    /// owner's group.
    pub socket_group: Option<String>,
    /// Group whose members may also change things over the socket (secrets, restores,
    /// reconcile); `None` leaves that to root and legerd's own user.
    pub admin_group: Option<String>,
    /// A D-Bus address to use instead of the mode's default bus.
    pub bus_address: Option<String>,
    /// Loop tuning.
    pub reconcile: ReconcileSettings,
    /// Source limits.
    pub limits: Limits,
    /// Quadlet validation.
    pub quadlet: QuadletSettings,
    /// The Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// The health gate.
    pub health: HealthSettings,
    /// Backups before changes.
    pub backups: BackupSettings,
    /// This host's place in a fleet: name, groups, reports, restart slots.
    pub fleet: fleet::FleetSettings,
    /// Time bounds on passes, commands, the generator and D-Bus.
    pub timeouts: Timeouts,
}

/// One drop-in file. Every field is optional so a fragment says only what it changes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    /// `[paths]`.
    #[serde(default)]
    pub paths: PathsFragment,
    /// `[api]`.
    #[serde(default)]
    pub api: ApiFragment,
    /// `[systemd]`.
    #[serde(default)]
    pub systemd: SystemdFragment,
    /// `[reconcile]`.
    #[serde(default)]
    pub reconcile: ReconcileFragment,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsFragment,
    /// `[quadlet]`.
    #[serde(default)]
    pub quadlet: QuadletFragment,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsFragment,
    /// `[health]`.
    #[serde(default)]
    pub health: HealthFragment,
    /// `[backups]`.
    #[serde(default)]
    pub backups: BackupsFragment,
    /// `[fleet]` and `[fleet.lock]`.
    #[serde(default)]
    pub fleet: fleet::FleetFragment,
}

/// `[backups]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsFragment {
    /// Backups kept per app; `0` switches backups off.
    pub keep: Option<usize>,
    /// e.g. `"30d"`.
    pub max_age: Option<String>,
    /// e.g. `"20G"` or bytes.
    pub max_bytes: Option<SizeValue>,
    /// e.g. `"2G"` or bytes.
    pub min_free: Option<SizeValue>,
}

/// `[health]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFragment {
    /// e.g. `"60s"`.
    pub timeout: Option<String>,
    /// e.g. `"10s"`.
    pub settle: Option<String>,
}

/// `[paths]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathsFragment {
    /// Overrides [`Paths::desired_file`].
    pub desired_file: Option<PathBuf>,
    /// Overrides [`Paths::quadlet_dir`].
    pub quadlet_dir: Option<PathBuf>,
    /// Overrides [`Paths::state_dir`].
    pub state_dir: Option<PathBuf>,
    /// Overrides [`Paths::socket`].
    pub socket: Option<PathBuf>,
}

/// `[api]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFragment {
    /// Group given access to the socket and read rights; `""` disables the chown.
    pub socket_group: Option<String>,
    /// Group given write rights (secrets, restore, reconcile); `""` leaves them to root.
    pub admin_group: Option<String>,
}

/// `[systemd]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdFragment {
    /// A D-Bus address, e.g. `unix:path=/run/dbus/system_bus_socket`.
    pub bus_address: Option<String>,
    /// Per-job timeout, e.g. `"90s"`.
    pub job_timeout: Option<String>,
    /// Most unit jobs in flight at once, 1 to 1024.
    pub max_jobs_in_flight: Option<usize>,
    /// Per D-Bus method call, e.g. `"30s"`.
    pub call_timeout: Option<String>,
    /// How long to keep reconnecting to a lost bus before exiting, e.g. `"5m"`.
    pub bus_give_up: Option<String>,
}

/// `[reconcile]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileFragment {
    /// e.g. `"200ms"`.
    pub debounce: Option<String>,
    /// e.g. `"2s"`.
    pub backoff_initial: Option<String>,
    /// e.g. `"5m"`.
    pub backoff_max: Option<String>,
    /// 0.0 to 1.0.
    pub jitter: Option<f64>,
    /// A pass's budget, e.g. `"30m"`.
    pub pass_timeout: Option<String>,
    /// Each podman or journalctl call, e.g. `"10m"`.
    pub command_timeout: Option<String>,
    /// e.g. `"10m"`; `"0s"` observes on every poll.
    pub resync: Option<String>,
}

/// `[limits]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFragment {
    /// Bytes.
    pub max_file_size: Option<u64>,
    /// Count.
    pub max_files: Option<usize>,
}

/// `[quadlet]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuadletFragment {
    /// Path of the generator binary.
    pub generator: Option<PathBuf>,
    /// Run the generator's dry run.
    pub generator_dry_run: Option<bool>,
    /// The dry run's time limit, e.g. `"1m"`.
    pub generator_timeout: Option<String>,
}

/// `[metrics]` in a fragment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFragment {
    /// `"host:port"`, or `""` / `false` to switch the TCP listener off, `true` for the default.
    pub listen: Option<ListenValue>,
    /// Path of an extra Unix socket; `""` for none.
    pub socket: Option<PathBuf>,
    /// Turns per-app series on.
    pub per_app_labels: Option<bool>,
}

/// `metrics.listen` accepts an address or a switch, so `listen = false` reads naturally.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ListenValue {
    /// `true`: the default address; `false`: off.
    Switch(bool),
    /// An address; `""` is off.
    Address(String),
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A fragment could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A fragment is not valid TOML or has an unknown key.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and key.
        message: String,
    },
    /// A value is out of range or a required environment variable is missing.
    #[error("invalid config value {key}: {message}")]
    Value {
        /// The dotted key.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The drop-in directories for a mode, lowest precedence first.
pub fn default_dropin_dirs(mode: Mode, env: &Environment) -> Vec<PathBuf> {
    match mode {
        Mode::System => vec![
            PathBuf::from("/usr/lib/leger/config.d"),
            PathBuf::from("/run/leger/config.d"),
            PathBuf::from("/etc/leger/config.d"),
        ],
        Mode::User => user_config_home(env)
            .map(|c| vec![c.join("leger/config.d")])
            .unwrap_or_default(),
    }
}

fn user_config_home(env: &Environment) -> Option<PathBuf> {
    env.xdg_config_home
        .clone()
        .or_else(|| env.home.as_ref().map(|h| h.join(".config")))
}

/// Lists the fragment files to load, in the order they apply.
///
/// A file name seen in a later directory replaces the earlier file of that name; the
/// survivors are applied sorted by file name.
pub fn fragment_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: dir.clone(),
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| ConfigError::Read {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") {
                by_name.insert(name, entry.path());
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// Reads and parses one fragment file.
pub fn read_fragment(path: &Path) -> Result<Fragment, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// Lays `over` onto `base`: every field `over` sets wins.
pub fn merge_fragments(base: Fragment, over: Fragment) -> Fragment {
    fn pick<T>(a: Option<T>, b: Option<T>) -> Option<T> {
        b.or(a)
    }
    Fragment {
        paths: PathsFragment {
            desired_file: pick(base.paths.desired_file, over.paths.desired_file),
            quadlet_dir: pick(base.paths.quadlet_dir, over.paths.quadlet_dir),
            state_dir: pick(base.paths.state_dir, over.paths.state_dir),
            socket: pick(base.paths.socket, over.paths.socket),
        },
        api: ApiFragment {
            socket_group: pick(base.api.socket_group, over.api.socket_group),
            admin_group: pick(base.api.admin_group, over.api.admin_group),
        },
        systemd: SystemdFragment {
            bus_address: pick(base.systemd.bus_address, over.systemd.bus_address),
            job_timeout: pick(base.systemd.job_timeout, over.systemd.job_timeout),
            max_jobs_in_flight: pick(
                base.systemd.max_jobs_in_flight,
                over.systemd.max_jobs_in_flight,
            ),
            call_timeout: pick(base.systemd.call_timeout, over.systemd.call_timeout),
            bus_give_up: pick(base.systemd.bus_give_up, over.systemd.bus_give_up),
        },
        reconcile: ReconcileFragment {
            debounce: pick(base.reconcile.debounce, over.reconcile.debounce),
            backoff_initial: pick(
                base.reconcile.backoff_initial,
                over.reconcile.backoff_initial,
            ),
            backoff_max: pick(base.reconcile.backoff_max, over.reconcile.backoff_max),
            jitter: pick(base.reconcile.jitter, over.reconcile.jitter),
            resync: pick(base.reconcile.resync, over.reconcile.resync),
            pass_timeout: pick(base.reconcile.pass_timeout, over.reconcile.pass_timeout),
            command_timeout: pick(
                base.reconcile.command_timeout,
                over.reconcile.command_timeout,
            ),
        },
        limits: LimitsFragment {
            max_file_size: pick(base.limits.max_file_size, over.limits.max_file_size),
            max_files: pick(base.limits.max_files, over.limits.max_files),
        },
        quadlet: QuadletFragment {
            generator: pick(base.quadlet.generator, over.quadlet.generator),
            generator_dry_run: pick(
                base.quadlet.generator_dry_run,
                over.quadlet.generator_dry_run,
            ),
            generator_timeout: pick(
                base.quadlet.generator_timeout,
                over.quadlet.generator_timeout,
            ),
        },
        metrics: MetricsFragment {
            listen: pick(base.metrics.listen, over.metrics.listen),
            socket: pick(base.metrics.socket, over.metrics.socket),
            per_app_labels: pick(base.metrics.per_app_labels, over.metrics.per_app_labels),
        },
        health: HealthFragment {
            timeout: pick(base.health.timeout, over.health.timeout),
            settle: pick(base.health.settle, over.health.settle),
        },
        backups: BackupsFragment {
            keep: pick(base.backups.keep, over.backups.keep),
            max_age: pick(base.backups.max_age, over.backups.max_age),
            max_bytes: pick(base.backups.max_bytes, over.backups.max_bytes),
            min_free: pick(base.backups.min_free, over.backups.min_free),
        },
        fleet: fleet::merge(base.fleet, over.fleet),
    }
}

/// Loads every fragment from `dirs` and validates the result for `mode`.
pub fn load(mode: Mode, dirs: &[PathBuf], env: &Environment) -> Result<Settings, ConfigError> {
    let mut merged = Fragment::default();
    for file in fragment_files(dirs)? {
        merged = merge_fragments(merged, read_fragment(&file)?);
    }
    Settings::from_fragment(mode, merged, env)
}

/// Most jobs a host may ask for at once: beyond this, systemd's own job queue and the
/// podman processes are the limit, and a typo such as `100000` would only hide that.
const MAX_JOBS_IN_FLIGHT_LIMIT: usize = 1024;

fn max_jobs_in_flight(value: Option<usize>) -> Result<NonZeroUsize, ConfigError> {
    let n = value.unwrap_or(DEFAULT_MAX_JOBS_IN_FLIGHT);
    NonZeroUsize::new(n)
        .filter(|n| n.get() <= MAX_JOBS_IN_FLIGHT_LIMIT)
        .ok_or_else(|| ConfigError::Value {
            key: "systemd.max_jobs_in_flight".to_owned(),
            message: format!(
                "{n} is outside 1..={MAX_JOBS_IN_FLIGHT_LIMIT}; use 1 to start units one at a time"
            ),
        })
}

fn duration(key: &str, value: Option<String>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(s) => humantime::parse_duration(&s).map_err(|e| ConfigError::Value {
            key: key.to_owned(),
            message: format!(
                "{s:?} is not a duration ({e}); write e.g. \"500ms\", \"30s\", \"5m\""
            ),
        }),
    }
}

impl Settings {
    /// The defaults of a mode with no fragments at all.
    pub fn defaults(mode: Mode, env: &Environment) -> Result<Settings, ConfigError> {
        Settings::from_fragment(mode, Fragment::default(), env)
    }

    /// Validates a merged fragment over the mode's defaults.
    pub fn from_fragment(
        mode: Mode,
        f: Fragment,
        env: &Environment,
    ) -> Result<Settings, ConfigError> {
        let missing = |what: &str| ConfigError::Value {
            key: "paths".to_owned(),
            message: format!(
                "user mode needs {what} to find its directories; set it or set the paths in config"
            ),
        };
        let (config_dir, quadlet_dir, state_dir, runtime_dir) = match mode {
            Mode::System => (
                PathBuf::from("/etc/leger"),
                PathBuf::from("/etc/containers/systemd"),
                PathBuf::from("/var/lib/leger"),
                PathBuf::from("/run/leger"),
            ),
            Mode::User => {
                let config_home = user_config_home(env).ok_or_else(|| missing("$HOME"))?;
                let state_home = env
                    .xdg_state_home
                    .clone()
                    .or_else(|| env.home.as_ref().map(|h| h.join(".local/state")))
                    .ok_or_else(|| missing("$HOME"))?;
                let runtime = env
                    .xdg_runtime_dir
                    .clone()
                    .ok_or_else(|| missing("$XDG_RUNTIME_DIR"))?;
                (
                    config_home.join("leger"),
                    config_home.join("containers/systemd"),
                    state_home.join("leger"),
                    runtime.join("leger"),
                )
            }
        };
        let paths = Paths {
            desired_file: f
                .paths
                .desired_file
                .unwrap_or_else(|| config_dir.join("desired.toml")),
            quadlet_dir: f.paths.quadlet_dir.unwrap_or(quadlet_dir),
            state_dir: f.paths.state_dir.unwrap_or(state_dir),
            socket: f
                .paths
                .socket
                .unwrap_or_else(|| runtime_dir.join("legerd.sock")),
            config_dir,
        };
        for (key, p) in [
            ("paths.desired_file", &paths.desired_file),
            ("paths.quadlet_dir", &paths.quadlet_dir),
            ("paths.state_dir", &paths.state_dir),
            ("paths.socket", &paths.socket),
        ] {
            if !p.is_absolute() {
                return Err(ConfigError::Value {
                    key: key.to_owned(),
                    message: format!("{} must be an absolute path", p.display()),
                });
            }
        }
        let socket_group = match (mode, f.api.socket_group) {
            (_, Some(g)) if g.is_empty() => None,
            (_, Some(g)) => Some(g),
            (Mode::System, None) => Some("leger".to_owned()),
            (Mode::User, None) => None,
        };
        let admin_group = match (mode, f.api.admin_group) {
            (_, Some(g)) if g.is_empty() => None,
            (_, Some(g)) => Some(g),
            (Mode::System, None) => Some("leger-admin".to_owned()),
            (Mode::User, None) => None,
        };
        let jitter = f.reconcile.jitter.unwrap_or(0.1);
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ConfigError::Value {
                key: "reconcile.jitter".to_owned(),
                message: format!("{jitter} is outside 0.0..=1.0"),
            });
        }
        let reconcile = ReconcileSettings {
            debounce: duration(
                "reconcile.debounce",
                f.reconcile.debounce,
                Duration::from_millis(200),
            )?,
            backoff_initial: duration(
                "reconcile.backoff_initial",
                f.reconcile.backoff_initial,
                Duration::from_secs(2),
            )?,
            backoff_max: duration(
                "reconcile.backoff_max",
                f.reconcile.backoff_max,
                Duration::from_secs(300),
            )?,
            jitter,
            job_timeout: duration(
                "systemd.job_timeout",
                f.systemd.job_timeout,
                Duration::from_secs(120),
            )?,
            max_jobs_in_flight: max_jobs_in_flight(f.systemd.max_jobs_in_flight)?,
            resync: duration(
                "reconcile.resync",
                f.reconcile.resync,
                Duration::from_secs(600),
            )?,
        };
        if reconcile.backoff_initial.is_zero() || reconcile.backoff_max < reconcile.backoff_initial
        {
            return Err(ConfigError::Value {
                key: "reconcile.backoff_max".to_owned(),
                message: "backoff_initial must be > 0 and backoff_max >= backoff_initial"
                    .to_owned(),
            });
        }
        let limits = Limits {
            max_file_size: f.limits.max_file_size.unwrap_or(1024 * 1024),
            max_files: f.limits.max_files.unwrap_or(10_000),
        };
        if limits.max_file_size == 0 || limits.max_files == 0 {
            return Err(ConfigError::Value {
                key: "limits".to_owned(),
                message: "max_file_size and max_files must be greater than zero".to_owned(),
            });
        }
        let metrics = metrics_settings(f.metrics)?;
        let fleet = fleet::settings(f.fleet, env.hostname.as_deref())?;
        let health = HealthSettings {
            timeout: duration("health.timeout", f.health.timeout, Duration::from_secs(60))?,
            settle: duration("health.settle", f.health.settle, Duration::from_secs(10))?,
        };
        let timeouts = Timeouts {
            pass: duration(
                "reconcile.pass_timeout",
                f.reconcile.pass_timeout,
                DEFAULT_PASS_TIMEOUT,
            )?,
            command: duration(
                "reconcile.command_timeout",
                f.reconcile.command_timeout,
                DEFAULT_COMMAND_TIMEOUT,
            )?,
            generator: duration(
                "quadlet.generator_timeout",
                f.quadlet.generator_timeout,
                DEFAULT_GENERATOR_TIMEOUT,
            )?,
            call: duration(
                "systemd.call_timeout",
                f.systemd.call_timeout,
                DEFAULT_CALL_TIMEOUT,
            )?,
            bus_give_up: duration(
                "systemd.bus_give_up",
                f.systemd.bus_give_up,
                DEFAULT_BUS_GIVE_UP,
            )?,
        };
        timeouts.validate(reconcile.job_timeout, health.timeout + health.settle)?;
        Ok(Settings {
            mode,
            paths,
            socket_group,
            admin_group,
            bus_address: f.systemd.bus_address,
            reconcile,
            limits,
            quadlet: QuadletSettings {
                generator: f
                    .quadlet
                    .generator
                    .unwrap_or_else(|| PathBuf::from("/usr/libexec/podman/quadlet")),
                generator_dry_run: f.quadlet.generator_dry_run.unwrap_or(true),
            },
            metrics,
            health,
            backups: BackupSettings {
                keep: f.backups.keep.unwrap_or(10),
                max_age: duration(
                    "backups.max_age",
                    f.backups.max_age,
                    Duration::from_secs(30 * 24 * 3600),
                )?,
                max_bytes: f
                    .backups
                    .max_bytes
                    .as_ref()
                    .map(|v| parse_size("backups.max_bytes", v))
                    .transpose()?,
                min_free: match &f.backups.min_free {
                    Some(v) => Some(parse_size("backups.min_free", v)?),
                    None => Some(DEFAULT_MIN_FREE),
                },
            },
            fleet,
            timeouts,
        })
    }
}

fn metrics_settings(f: MetricsFragment) -> Result<MetricsSettings, ConfigError> {
    let address = match f.listen {
        None | Some(ListenValue::Switch(true)) => Some(DEFAULT_METRICS_LISTEN.to_owned()),
        Some(ListenValue::Switch(false)) => None,
        Some(ListenValue::Address(a)) if a.trim().is_empty() => None,
        Some(ListenValue::Address(a)) => Some(a),
    };
    let listen = match address {
        None => None,
        Some(a) => Some(a.parse().map_err(|e| ConfigError::Value {
            key: "metrics.listen".to_owned(),
            message: format!(
                "{a:?} is not an address ({e}); write e.g. \"127.0.0.1:9464\" or \"[::]:9464\", or \"\" to switch it off"
            ),
        })?),
    };
    let socket = f.socket.filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = &socket
        && !p.is_absolute()
    {
        return Err(ConfigError::Value {
            key: "metrics.socket".to_owned(),
            message: format!("{} must be an absolute path", p.display()),
        });
    }
    Ok(MetricsSettings {
        listen,
        socket,
        per_app_labels: f.per_app_labels.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn system_defaults_match_the_brief() {
        let s = Settings::defaults(Mode::System, &Environment::default()).unwrap();
        assert_eq!(
            s.paths.quadlet_dir,
            PathBuf::from("/etc/containers/systemd")
        );
        assert_eq!(
            s.paths.desired_file,
            PathBuf::from("/etc/leger/desired.toml")
        );
        assert_eq!(s.paths.state_dir, PathBuf::from("/var/lib/leger"));
        assert_eq!(s.paths.socket, PathBuf::from("/run/leger/legerd.sock"));
        assert_eq!(s.socket_group.as_deref(), Some("leger"));
        assert_eq!(s.admin_group.as_deref(), Some("leger-admin"));
        assert_eq!(s.limits.max_file_size, 1024 * 1024);
    }

    #[test]
    fn user_defaults_follow_xdg() {
        let env = Environment {
            home: Some("/home/u".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..Environment::default()
        };
        let s = Settings::defaults(Mode::User, &env).unwrap();
        assert_eq!(
            s.paths.quadlet_dir,
            PathBuf::from("/home/u/.config/containers/systemd")
        );
        assert_eq!(
            s.paths.desired_file,
            PathBuf::from("/home/u/.config/leger/desired.toml")
        );
        assert_eq!(
            s.paths.state_dir,
            PathBuf::from("/home/u/.local/state/leger")
        );
        assert_eq!(
            s.paths.socket,
            PathBuf::from("/run/user/1000/leger/legerd.sock")
        );
        assert_eq!(s.socket_group, None);
        assert_eq!(s.admin_group, None);
    }

    #[test]
    fn user_mode_without_runtime_dir_says_what_is_missing() {
        let env = Environment {
            home: Some("/home/u".into()),
            ..Environment::default()
        };
        let e = Settings::defaults(Mode::User, &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("XDG_RUNTIME_DIR"), "{e}");
    }

    #[test]
    fn max_jobs_in_flight_and_resync_default_and_refuse_bad_values() {
        let s = Settings::defaults(Mode::System, &Environment::default()).unwrap();
        assert_eq!(
            s.reconcile.max_jobs_in_flight.get(),
            DEFAULT_MAX_JOBS_IN_FLIGHT
        );
        assert_eq!(s.reconcile.resync, Duration::from_secs(600));
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "50.toml",
            "[systemd]\nmax_jobs_in_flight = 4\n[reconcile]\nresync = \"0s\"\n",
        );
        let dirs = vec![t.path().to_owned()];
        let s = load(Mode::System, &dirs, &Environment::default()).unwrap();
        assert_eq!(s.reconcile.max_jobs_in_flight.get(), 4);
        assert_eq!(s.reconcile.resync, Duration::ZERO);
        for bad in ["0", "5000"] {
            write(
                t.path(),
                "50.toml",
                &format!("[systemd]\nmax_jobs_in_flight = {bad}\n"),
            );
            let e = load(Mode::System, &dirs, &Environment::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("systemd.max_jobs_in_flight"), "{e}");
            assert!(e.contains(bad), "{e}");
        }
    }

    /// Pins the precedence: later directories mask same-named files, and later file
    /// names override earlier ones key by key.
    #[test]
    fn dropins_precedence_is_pinned() {
        let t = tempfile::tempdir().unwrap();
        let usr = t.path().join("usr");
        let run = t.path().join("run");
        let etc = t.path().join("etc");
        write(
            &usr,
            "10-base.toml",
            "[reconcile]\ndebounce = \"1s\"\njitter = 0.5\n",
        );
        write(&usr, "20-vendor.toml", "[limits]\nmax_files = 7\n");
        write(&run, "20-vendor.toml", "[limits]\nmax_files = 8\n");
        write(&etc, "10-base.toml", "[reconcile]\ndebounce = \"3s\"\n");
        write(&etc, "99-admin.toml", "[limits]\nmax_files = 9\n");
        let dirs = vec![usr, run, etc];
        let s = load(Mode::System, &dirs, &Environment::default()).unwrap();
        // etc/10-base.toml masks usr/10-base.toml entirely: jitter falls back to the default.
        assert_eq!(s.reconcile.debounce, Duration::from_secs(3));
        assert_eq!(s.reconcile.jitter, 0.1);
        // 99-admin sorts after 20-vendor, so it wins.
        assert_eq!(s.limits.max_files, 9);
    }

    #[test]
    fn dropin_unknown_key_is_refused_with_file_and_key() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "50.toml", "[reconcile]\ndebounse = \"1s\"\n");
        let e = load(
            Mode::System,
            &[t.path().to_owned()],
            &Environment::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("50.toml") && e.contains("debounse"), "{e}");
    }

    #[test]
    fn metrics_listen_defaults_to_loopback_and_can_be_switched_off() {
        let s = Settings::defaults(Mode::System, &Environment::default()).unwrap();
        assert_eq!(s.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.metrics.socket, None);
        assert!(!s.metrics.per_app_labels);
        for off in ["listen = false", "listen = \"\""] {
            let f: Fragment = toml::from_str(&format!("[metrics]\n{off}\n")).unwrap();
            let s = Settings::from_fragment(Mode::System, f, &Environment::default()).unwrap();
            assert_eq!(s.metrics.listen, None, "{off}");
        }
        let f: Fragment = toml::from_str(
            "[metrics]\nlisten = \"[::1]:9100\"\nsocket = \"/run/leger/metrics.sock\"\nper_app_labels = true\n",
        )
        .unwrap();
        let s = Settings::from_fragment(Mode::System, f, &Environment::default()).unwrap();
        assert_eq!(s.metrics.listen, Some("[::1]:9100".parse().unwrap()));
        assert_eq!(
            s.metrics.socket,
            Some(PathBuf::from("/run/leger/metrics.sock"))
        );
        assert!(s.metrics.per_app_labels);
    }

    #[test]
    fn metrics_bad_listen_names_the_key() {
        let f: Fragment = toml::from_str("[metrics]\nlisten = \"localhost\"\n").unwrap();
        let e = Settings::from_fragment(Mode::System, f, &Environment::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metrics.listen") && e.contains("localhost"),
            "{e}"
        );
    }

    #[test]
    fn backups_default_to_ten_for_thirty_days_and_merge() {
        let s = Settings::defaults(Mode::System, &Environment::default()).unwrap();
        assert_eq!(s.backups.keep, 10);
        assert_eq!(s.backups.max_age, Duration::from_secs(30 * 24 * 3600));
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            "10.toml",
            "[backups]\nkeep = 3\nmax_age = \"7d\"\n",
        );
        write(t.path(), "20.toml", "[backups]\nkeep = 0\n");
        let s = load(
            Mode::System,
            &[t.path().to_owned()],
            &Environment::default(),
        )
        .unwrap();
        assert_eq!(s.backups.keep, 0);
        assert_eq!(s.backups.max_age, Duration::from_secs(7 * 24 * 3600));
        let f: Fragment = toml::from_str("[backups]\nmax_age = \"a month\"\n").unwrap();
        let e = Settings::from_fragment(Mode::System, f, &Environment::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("backups.max_age"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        let f = Fragment {
            reconcile: ReconcileFragment {
                jitter: Some(2.0),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(Settings::from_fragment(Mode::System, f, &Environment::default()).is_err());
        let f = Fragment {
            paths: PathsFragment {
                quadlet_dir: Some("relative".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = Settings::from_fragment(Mode::System, f, &Environment::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("paths.quadlet_dir"), "{e}");
        let f = Fragment {
            reconcile: ReconcileFragment {
                debounce: Some("fast".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = Settings::from_fragment(Mode::System, f, &Environment::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("reconcile.debounce"), "{e}");
    }

    #[test]
    fn backup_budget_sizes_parse_with_suffixes_and_name_the_key() {
        let v = |t: &str| SizeValue::Text(t.into());
        assert_eq!(parse_size("k", &SizeValue::Bytes(5)).unwrap(), 5);
        assert_eq!(parse_size("k", &v("512M")).unwrap(), 512 << 20);
        assert_eq!(parse_size("k", &v("10GiB")).unwrap(), 10 << 30);
        assert_eq!(parse_size("k", &v("2t")).unwrap(), 2 << 40);
        let e = parse_size("backups.max_bytes", &v("lots"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("backups.max_bytes") && e.contains("10G"), "{e}");
        assert!(parse_size("k", &v("99999999999T")).is_err(), "overflow");
        let s = Settings::defaults(Mode::System, &Environment::default()).unwrap();
        assert_eq!(
            (s.backups.max_bytes, s.backups.min_free),
            (None, Some(DEFAULT_MIN_FREE))
        );
    }
}

//! The data that flows between legerd's stages: a fetched [`Snapshot`], the validated
//! [`DesiredTree`] built from it, and the [`Observed`] state of the host.
//!
//! These are plain data with no I/O so the planner can be a pure function of them and
//! tests can build them by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The sha256 of a file's bytes. Used for the inventory and for change detection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hashes bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(Sha256::digest(bytes).into())
    }

    /// Lower-case hex, as stored in SQLite.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses lower- or upper-case hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ContentHash(out))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.to_hex()[..12])
    }
}

/// One fetched snapshot of a source: every file under the source's app folder, keyed
/// by its path relative to that folder (`web/web.container`). Bytes are kept as-is;
/// validation decides what they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The revision name: a commit id for git, `sha256:<digest>` for a dir.
    pub revision: String,
    /// Files by relative path, `/`-separated, never starting with `/`, never with `..`.
    pub files: BTreeMap<String, Arc<[u8]>>,
}

/// A validated revision, ready to plan: one entry per app.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredTree {
    /// The revision the tree came from.
    pub revision: String,
    /// Apps by name (the folder name).
    pub apps: BTreeMap<String, App>,
    /// The overlay layer each app came from (empty for a source without overlays);
    /// shown in status and reports.
    pub layers: BTreeMap<String, String>,
    /// The quadlets (base names) each app's quadlets reference, resources and `[Unit]`
    /// ordering both, wherever they are defined. Incremental validation
    /// ([`crate::validated`]) follows them to an app's dependents.
    pub uses: BTreeMap<String, BTreeSet<String>>,
}

/// One app: the files legerd installs for it and the units they make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// The app's folder name, which is also its folder under the quadlet dir.
    pub name: String,
    /// Files to install, keyed by path relative to the app folder (`web.container`,
    /// `conf/nginx.conf`). Only quadlets and the companions they reference are here.
    pub files: BTreeMap<String, AppFile>,
    /// Units generated from the app's quadlets, in start order (dependencies first).
    pub units: Vec<Unit>,
    /// The app's `leger.toml`: health gate overrides, secret name mapping.
    pub config: leger_api_types::app_config::AppConfig,
}

/// One file to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFile {
    /// The bytes.
    pub content: Arc<[u8]>,
    /// sha256 of `content`, computed once.
    pub hash: ContentHash,
}

impl AppFile {
    /// Wraps bytes and hashes them.
    pub fn new(content: impl Into<Arc<[u8]>>) -> Self {
        let content = content.into();
        let hash = ContentHash::of(&content);
        AppFile { content, hash }
    }
}

/// The kinds of quadlet file podman's generator understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuadletKind {
    /// `.container`
    Container,
    /// `.volume`
    Volume,
    /// `.network`
    Network,
    /// `.pod`
    Pod,
    /// `.kube`
    Kube,
    /// `.image`
    Image,
    /// `.build`
    Build,
    /// `.artifact` (podman 5.7+): pulls an OCI artifact.
    Artifact,
}

impl QuadletKind {
    /// Every kind, in start order: what others depend on comes first.
    pub const ALL: [QuadletKind; 8] = [
        QuadletKind::Network,
        QuadletKind::Volume,
        QuadletKind::Artifact,
        QuadletKind::Image,
        QuadletKind::Build,
        QuadletKind::Pod,
        QuadletKind::Container,
        QuadletKind::Kube,
    ];

    /// The kind for a file name, by extension.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1;
        Some(match ext {
            "container" => QuadletKind::Container,
            "volume" => QuadletKind::Volume,
            "network" => QuadletKind::Network,
            "pod" => QuadletKind::Pod,
            "kube" => QuadletKind::Kube,
            "image" => QuadletKind::Image,
            "build" => QuadletKind::Build,
            "artifact" => QuadletKind::Artifact,
            _ => return None,
        })
    }

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            QuadletKind::Container => "container",
            QuadletKind::Volume => "volume",
            QuadletKind::Network => "network",
            QuadletKind::Pod => "pod",
            QuadletKind::Kube => "kube",
            QuadletKind::Image => "image",
            QuadletKind::Build => "build",
            QuadletKind::Artifact => "artifact",
        }
    }

    /// The main section of the file, e.g. `[Container]`.
    pub fn section(self) -> &'static str {
        match self {
            QuadletKind::Container => "Container",
            QuadletKind::Volume => "Volume",
            QuadletKind::Network => "Network",
            QuadletKind::Pod => "Pod",
            QuadletKind::Kube => "Kube",
            QuadletKind::Image => "Image",
            QuadletKind::Build => "Build",
            QuadletKind::Artifact => "Artifact",
        }
    }

    /// Start order rank: lower starts first.
    pub fn start_rank(self) -> usize {
        QuadletKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(usize::MAX)
    }

    /// The unit quadlet generates for `stem.<ext>` when `ServiceName=` is not set.
    ///
    /// `web.container` → `web.service`, `data.volume` → `data-volume.service`.
    pub fn default_unit_name(self, stem: &str) -> String {
        match self {
            QuadletKind::Container | QuadletKind::Kube => format!("{stem}.service"),
            other => format!("{stem}-{}.service", other.extension()),
        }
    }
}

/// A systemd unit that one quadlet file generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The unit name, e.g. `web.service`.
    pub name: String,
    /// The quadlet kind that makes it.
    pub kind: QuadletKind,
    /// The quadlet file, relative to the app folder.
    pub source_file: String,
    /// Every managed file this unit's behaviour depends on, as install keys
    /// (`app/relpath`, see [`install_key`]), its own quadlet included: companions it
    /// references (`EnvironmentFile=`), and the quadlets of the volumes, networks and
    /// pods it uses, which may sit in another app. A change to any of them restarts it.
    pub depends_on_files: BTreeSet<String>,
    /// Podman secrets the unit consumes (`Secret=`), for the secrets issue.
    pub secrets: BTreeSet<String>,
    /// For a container in a pod (`Pod=x.pod`), the pod's unit: restarting the pod
    /// restarts the container too (quadlet binds it to the pod), so the planner never
    /// restarts both.
    pub pod: Option<String>,
}

/// What legerd observed on the host before planning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Files legerd installed earlier (from the inventory), keyed by `app/relpath`.
    pub managed: BTreeMap<String, ManagedFile>,
    /// Paths legerd would like to write that exist on disk but are not in the
    /// inventory: someone else's files, never to be overwritten.
    pub foreign: BTreeSet<String>,
    /// Unit states by unit name, for the managed units and the desired ones.
    pub units: BTreeMap<String, UnitState>,
    /// Units an interrupted apply meant to start or restart (its intent record): they
    /// are restarted even if their files match, since the files may never have been
    /// loaded.
    pub interrupted: BTreeSet<String>,
    /// Units that ran to completion (exited 0: a migration, a one-shot job) under
    /// their current files: inactive, but neither drift nor failed.
    pub completed: BTreeSet<String>,
    /// Podman secrets whose value changes in this pass: their consumers restart.
    pub changed_secrets: BTreeSet<String>,
    /// Units that must not be installed, started or updated: a secret they need is
    /// missing at every source.
    pub blocked_units: BTreeSet<String>,
}

/// One inventory entry compared with the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFile {
    /// The app that owns it.
    pub app: String,
    /// The hash legerd wrote.
    pub installed: ContentHash,
    /// The hash on disk now; `None` when the file is gone.
    pub on_disk: Option<ContentHash>,
    /// The unit the file generates, when it is a quadlet.
    pub unit: Option<String>,
}

/// A unit's state as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `loaded`, `not-found`, ...
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    pub active_state: String,
    /// `running`, `exited`, `dead`, ...
    pub sub_state: String,
}

impl UnitState {
    /// A unit systemd does not know about.
    pub fn unknown() -> Self {
        UnitState {
            load_state: "not-found".into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
        }
    }

    /// Active, or on its way there: nothing to do.
    pub fn is_up(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading"
        )
    }

    /// At rest without having failed: a unit that may have run to completion
    /// (quadlet containers that exit non-zero end `failed`; `Type=oneshot` with
    /// `RemainAfterExit=` stays `active` instead), or one stopped from outside. The
    /// health gate tells the two apart from systemd's record of the run
    /// ([`UnitRun::ran_to_completion`]) and remembers only true completions; the
    /// planner then reads a remembered unit at rest as done ([`Observed::completed`]).
    pub fn has_completed(&self) -> bool {
        self.active_state == "inactive"
    }
}

/// How a service's last run ended, as systemd recorded it: what tells a run to
/// completion from a stop. An `inactive` unit looks the same either way; a container
/// that traps SIGTERM even exits 0 on `systemctl stop`. What differs is the order:
/// a run that completes has its main process exit *before* the unit leaves `active`,
/// a stopped one leaves `active` first (the stop job) and its main process exits after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitRun {
    /// `Service.Result`: `success`, `exit-code`, `signal`, ...
    pub result: String,
    /// `ExecMainCode`: 1 exited, 2 killed by a signal, 3 dumped core; 0 no record.
    pub main_code: i32,
    /// `ExecMainStatus`: the exit status, or the signal.
    pub main_status: i32,
    /// `ExecMainExitTimestampMonotonic` (µs; 0: no record).
    pub main_exited: u64,
    /// `ActiveExitTimestampMonotonic`: when the unit last left `active` (0: never).
    pub active_exited: u64,
    /// `InactiveExitTimestampMonotonic`: when the current run began.
    pub started: u64,
    /// `RemainAfterExit=`: a finished run would still be `active`.
    pub remain_after_exit: bool,
}

/// `ExecMainCode` of a main process that exited by itself (`CLD_EXITED`).
const CLD_EXITED: i32 = 1;

impl UnitRun {
    /// For a unit at rest (`inactive`): did this run complete? `Ok` when its main
    /// process exited by itself with success (exit 0, or a status the unit's
    /// `SuccessExitStatus=` accepts) before anything stopped the unit; `Err` says what
    /// happened instead. `None` when systemd kept no record of the run (the unit was
    /// unloaded and loaded again): nothing can be told.
    pub fn ran_to_completion(&self) -> Option<Result<(), String>> {
        if self.main_code == 0 || self.main_exited == 0 {
            return None;
        }
        Some(if self.remain_after_exit {
            Err("it was stopped: with RemainAfterExit=yes a finished run stays active".to_owned())
        } else if self.active_exited >= self.started && self.active_exited < self.main_exited {
            Err("it was stopped (a stop job: `systemctl stop` or a conflicting unit) while its main process still ran; it did not exit by itself".to_owned())
        } else if self.main_code != CLD_EXITED {
            Err(format!(
                "its main process was killed by signal {}",
                self.main_status
            ))
        } else if self.result != "success" {
            Err(format!(
                "its main process exited with status {} (Result={})",
                self.main_status, self.result
            ))
        } else {
            Ok(())
        })
    }
}

/// A revision name as the sources write it: a git commit id, `sha256:<digest>` for a
/// dir, `v<N>@sha256:<digest>` for a manifest. It lives here, in the leaf module, so
/// every module that prints a revision for people (journal, backups, status) shares
/// one formatter without depending on the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision<'a>(pub &'a str);

impl<'a> Revision<'a> {
    /// The first 12 characters of the revision, for people; a manifest revision keeps
    /// its version: `v3@sha256:0123…` reads `v3@0123456789ab`.
    pub fn short(self) -> std::borrow::Cow<'a, str> {
        let revision = self.0;
        // A composed revision (overlays) keeps its composition id: `0123456789ab+o…`.
        if let Some((source, composition)) = revision.split_once('+') {
            return format!("{}+{composition}", Revision(source).short()).into();
        }
        if let Some((version, digest)) = revision.split_once("@sha256:") {
            return format!("{version}@{}", &digest[..digest.len().min(12)]).into();
        }
        let r = revision.strip_prefix("sha256:").unwrap_or(revision);
        r[..r.len().min(12)].into()
    }
}

impl fmt::Display for Revision<'_> {
    /// Displays the short form: full revisions go into journal fields, not messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// The install path key of an app file: `app/relpath`.
pub fn install_key(app: &str, rel: &str) -> String {
    format!("{app}/{rel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures read with `systemctl show` on the test bed (systemd 257, podman 5.4.2)
    /// from quadlet containers kept loaded: what each way of coming to rest records.
    #[test]
    fn unit_run_tells_a_completion_from_a_stop() {
        let run = |code, status, main, active_exit, started, rae| UnitRun {
            result: "success".into(),
            main_code: code,
            main_status: status,
            main_exited: main,
            active_exited: active_exit,
            started,
            remain_after_exit: rae,
        };
        // `Exec=echo job ran`: the main process exits, then the unit leaves active.
        let job = run(1, 0, 21_668_434_184, 21_668_434_664, 21_668_035_096, false);
        assert_eq!(job.ran_to_completion(), Some(Ok(())));
        // A server that traps SIGTERM and exits 0, `systemctl stop`ped: the unit left
        // active 210 ms before its main process exited.
        let stopped = run(1, 0, 21_671_558_916, 21_671_348_330, 21_668_060_642, false);
        let why = stopped.ran_to_completion().unwrap().unwrap_err();
        assert!(why.contains("stopped"), "{why}");
        // `Type=oneshot`: never active; an old active exit from before this run is
        // not a stop.
        let oneshot = run(1, 0, 21_676_202_717, 0, 21_675_860_558, false);
        assert_eq!(oneshot.ran_to_completion(), Some(Ok(())));
        let restarted = run(1, 0, 300, 100, 200, false);
        assert_eq!(restarted.ran_to_completion(), Some(Ok(())));
        // `RemainAfterExit=yes` stopped after it finished: at rest means stopped.
        let rae = run(1, 0, 21_676_214_653, 21_677_440_970, 21_675_885_023, true);
        assert!(rae.ran_to_completion().unwrap().is_err());
        // Killed by a signal, or an exit systemd does not count as success.
        let killed = run(2, 9, 300, 400, 200, false);
        assert!(
            killed
                .ran_to_completion()
                .unwrap()
                .unwrap_err()
                .contains("signal 9")
        );
        let mut failed = run(1, 7, 300, 400, 200, false);
        failed.result = "exit-code".into();
        assert!(failed.ran_to_completion().unwrap().is_err());
        // Unloaded and loaded again: an empty record says nothing.
        assert_eq!(UnitRun::default().ran_to_completion(), None);
        let fresh = UnitRun {
            result: "success".into(),
            ..UnitRun::default()
        };
        assert_eq!(fresh.ran_to_completion(), None);
    }

    #[test]
    fn unit_names_follow_quadlet_rules() {
        assert_eq!(
            QuadletKind::Container.default_unit_name("web"),
            "web.service"
        );
        assert_eq!(
            QuadletKind::Volume.default_unit_name("data"),
            "data-volume.service"
        );
        assert_eq!(
            QuadletKind::Network.default_unit_name("net"),
            "net-network.service"
        );
        assert_eq!(QuadletKind::Pod.default_unit_name("x"), "x-pod.service");
        assert_eq!(QuadletKind::Kube.default_unit_name("k"), "k.service");
        assert_eq!(QuadletKind::Image.default_unit_name("i"), "i-image.service");
        assert_eq!(QuadletKind::Build.default_unit_name("b"), "b-build.service");
    }

    #[test]
    fn kinds_by_extension() {
        assert_eq!(
            QuadletKind::from_file_name("a.b.container"),
            Some(QuadletKind::Container)
        );
        assert_eq!(QuadletKind::from_file_name("README.md"), None);
        assert_eq!(QuadletKind::from_file_name("noext"), None);
        assert!(QuadletKind::Network.start_rank() < QuadletKind::Container.start_rank());
    }

    #[test]
    fn revision_short_keeps_a_manifest_version() {
        let rev = format!("v12@sha256:{}", "ab".repeat(32));
        assert_eq!(Revision(&rev).short(), "v12@abababababab");
        assert_eq!(Revision("sha256:0123456789abcdef").short(), "0123456789ab");
        assert_eq!(Revision("0123").to_string(), "0123");
    }

    #[test]
    fn content_hash_hex_round_trips() {
        let h = ContentHash::of(b"hello");
        assert_eq!(ContentHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ContentHash::from_hex("zz"), None);
    }
}

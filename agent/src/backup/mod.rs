//! Backups before an apply changes or removes an app, and restores from them.
//!
//! A plan that updates, heals or removes an app's files, or stops its units, first
//! copies that app as it is now into `<state>/backups/<id>/<app>/`: its managed files
//! exactly as they sit in the quadlet dir, and the named volumes that the changing
//! quadlets use, exported with `podman volume export`. `manifest.json` is written last,
//! so a folder without one is an interrupted backup that listing skips and retention
//! removes. The backup id is `<UTC time>-<short revision>`, the revision being the one
//! the app is at, which is what a restore brings back.
//!
//! **Why the volumes of changing quadlets only:** exporting every volume on every
//! update would copy a database for a label change elsewhere in the app. A volume is
//! exported when its own `.volume` quadlet or a quadlet that mounts it is updated,
//! removed, stopped or restarted: exactly the changes that can alter or orphan its data.
//!
//! A restore runs in the controller loop between passes (never during one) through the
//! pass's converge stage in restore mode: this module finds and verifies the backup and
//! imports its volumes, each removed and made again empty first, so a restore is
//! point-in-time (`podman volume import` alone merges into what is there);
//! [`crate::pass::restore`] does the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use leger_api_types::BackupInfo;
use leger_api_types::app_config::BackupFailure;
use leger_config::BackupSettings;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{ContentHash, QuadletKind};
use crate::pass::blocking;
use crate::plan::{Action, Plan, WriteReason};
use crate::store::{InventoryEntry, StoreError};
use crate::systemd::SystemdError;

pub mod budget;
mod podman;
pub mod quiesce;
mod restore;
mod volume_size;

pub use podman::PodmanVolumes;
pub use restore::{RestoreJob, VerifiedBackup};

/// The manifest's file name inside an app's backup folder.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this legerd writes and reads.
const FORMAT: u32 = 1;

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file or folder of the backup could not be read or written.
    #[error("cannot {what} {path}: {source}; check the space and permissions of the state dir")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A podman volume command failed.
    #[error("podman volume {what} {volume} failed: {reason}")]
    Podman {
        /// `export`, `import`, `create`, `exists`.
        what: &'static str,
        /// The volume.
        volume: String,
        /// podman's message or why it could not run.
        reason: String,
    },
    /// A manifest could not be read.
    #[error(
        "cannot read backup manifest {path}: {reason}; pick another backup with `legerctl backups`"
    )]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A backed-up file no longer matches its manifest.
    #[error(
        "backup file {path} does not match its manifest ({reason}); pick another backup with `legerctl backups`"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// No backup matches the request.
    #[error("{0}")]
    NotFound(String),
    /// The backup does not fit the budget even after evicting older backups.
    #[error(
        "no room to back up app {app}: {detail}, even after removing the backups of other revisions oldest first. Free space on the state filesystem, raise [backups] max_bytes or lower min_free, or let the app update without a backup with backup_failure = \"warn\" in its leger.toml"
    )]
    Budget {
        /// The app.
        app: String,
        /// Which limit, by how much.
        detail: String,
    },
    /// The backup's revision is no longer in legerd's revision store.
    #[error(
        "backup {backup} is of revision {revision}, which is no longer in legerd's revision store, so the host could not be pinned to it; see `legerctl revisions` for the revisions kept, and pick a newer backup with `legerctl backups`"
    )]
    RevisionGone {
        /// The backup id.
        backup: String,
        /// Its revision.
        revision: String,
    },
    /// An app or backup name that is not a plain folder name.
    #[error("invalid {what} {value:?}: use the name `legerctl backups` shows")]
    InvalidName {
        /// `app` or `backup`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The inventory could not be read or updated.
    #[error("cannot update the inventory: {0}")]
    Store(#[from] StoreError),
    /// A file could not be written into or removed from the quadlet dir.
    #[error(transparent)]
    Apply(#[from] crate::apply::ApplyError),
    /// systemd refused a stop, reload or start.
    #[error("{action} {unit} failed during the restore: {source}")]
    Systemd {
        /// stop, reload or start.
        action: &'static str,
        /// The unit; empty for the reload.
        unit: String,
        /// systemd's answer (boxed: zbus errors are large and this path is rare).
        source: Box<SystemdError>,
    },
    /// The restored revision did not converge (validation, apply or health gate).
    #[error("restore of {app} from {backup} failed: {message}")]
    Converge {
        /// The app.
        app: String,
        /// The backup id.
        backup: String,
        /// What failed, from the converge stage.
        message: String,
    },
    /// The files and volumes are back but some units did not start.
    #[error("restored {app} from {backup}, but units failed to start: {errors}")]
    StartFailed {
        /// The app.
        app: String,
        /// The backup id.
        backup: String,
        /// `unit: error` joined by `; `.
        errors: String,
    },
}

/// `manifest.json` of one app's backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format, `1`.
    pub format: u32,
    /// The app.
    pub app: String,
    /// The revision the app was at: what a restore brings back.
    pub revision: String,
    /// The revision whose apply this backup preceded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// RFC 3339 time of the backup.
    pub created: String,
    /// The app's managed files.
    pub files: Vec<ManifestFile>,
    /// Exported volumes.
    pub volumes: Vec<ManifestVolume>,
}

/// One backed-up file, stored under `files/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the app's folder in the quadlet dir.
    pub path: String,
    /// Lower-case hex sha256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The unit it generates, for quadlets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// One exported volume, stored as `volumes/<name>.tar`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestVolume {
    /// The podman volume name.
    pub name: String,
    /// Lower-case hex sha256 of the archive.
    pub sha256: String,
    /// Size of the archive in bytes.
    pub size: u64,
}

/// What a plan changes in one app that needs a backup first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Affected {
    /// Install keys written (update, restore) or removed.
    pub keys: BTreeSet<String>,
    /// Units stopped or restarted.
    pub units: BTreeSet<String>,
}

/// The apps a plan changes or removes, with what changes in each. Creating files or
/// starting units alone loses nothing, so it needs no backup.
pub fn affected_apps(plan: &Plan) -> BTreeMap<String, Affected> {
    let mut out: BTreeMap<String, Affected> = BTreeMap::new();
    for a in &plan.actions {
        match a {
            Action::WriteFile {
                key,
                app,
                reason: WriteReason::Update | WriteReason::Restore,
                ..
            }
            | Action::RemoveFile { key, app } => {
                out.entry(app.clone()).or_default().keys.insert(key.clone());
            }
            Action::StopUnit { unit, app } => {
                out.entry(app.clone())
                    .or_default()
                    .units
                    .insert(unit.clone());
            }
            _ => {}
        }
    }
    // A restart in an app that changes anyway means its data may change too.
    for a in &plan.actions {
        if let Action::RestartUnit { unit, app } = a
            && let Some(affected) = out.get_mut(app)
        {
            affected.units.insert(unit.clone());
        }
    }
    out
}

/// One managed file of an app as it is now: its inventory row and its bytes on disk
/// (`None` when someone deleted it).
#[derive(Debug, Clone)]
pub struct CurrentFile {
    /// The inventory row.
    pub entry: InventoryEntry,
    /// The bytes in the quadlet dir.
    pub content: Option<Vec<u8>>,
}

impl CurrentFile {
    pub(super) fn rel(&self) -> &str {
        self.entry
            .key
            .split_once('/')
            .map_or(self.entry.key.as_str(), |(_, r)| r)
    }
}

/// The podman volume a `.volume` quadlet makes: `VolumeName=`, or quadlet's default
/// `systemd-<stem>`.
pub fn volume_name(file_name: &str, text: Option<&str>) -> String {
    let parsed = text.and_then(|t| crate::quadlet::parse(file_name, t).ok());
    match parsed.as_ref().and_then(|q| q.get("Volume", "VolumeName")) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => {
            let base = file_name.rsplit('/').next().unwrap_or(file_name);
            format!("systemd-{}", base.strip_suffix(".volume").unwrap_or(base))
        }
    }
}

/// The named volumes the affected quadlets of an app use: the volume of an affected
/// `.volume` quadlet, and the `Volume=` sources of affected containers and pods
/// (`data.volume:/d` through that quadlet, `name:/d` directly). Host paths and
/// anonymous volumes are not named volumes and are left out.
pub fn volumes_to_export(files: &[CurrentFile], affected: &Affected) -> BTreeSet<String> {
    let index = VolumeQuadlets::of(files);
    let mut out = BTreeSet::new();
    for f in files {
        let is_affected = affected.keys.contains(&f.entry.key)
            || f.entry
                .unit
                .as_ref()
                .is_some_and(|u| affected.units.contains(u));
        if is_affected {
            out.extend(index.volumes_of(f));
        }
    }
    out
}

/// The `.volume` quadlets among some files, by base name, with the volume each makes.
///
/// Built once per question, so that asking it about every file is linear: asking each
/// file against a map rebuilt per file parsed every `.volume` quadlet N times (a
/// one-app change at 1,000 apps spent most of its pass there).
pub(crate) struct VolumeQuadlets<'a>(BTreeMap<&'a str, String>);

impl<'a> VolumeQuadlets<'a> {
    /// All `files`' `.volume` quadlets: a `Volume=x.volume:/d` may name another app's.
    pub(crate) fn of(files: &'a [CurrentFile]) -> Self {
        VolumeQuadlets(
            files
                .iter()
                .filter(|f| f.rel().ends_with(".volume"))
                .map(|f| {
                    let base = f.rel().rsplit('/').next().unwrap_or(f.rel());
                    (base, volume_name(f.rel(), text_of(f).as_deref()))
                })
                .collect(),
        )
    }

    /// The named volumes one quadlet file makes or mounts (none for other files).
    pub(crate) fn volumes_of(&self, f: &CurrentFile) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(kind) = QuadletKind::from_file_name(f.rel()) else {
            return out;
        };
        let text = text_of(f);
        if kind == QuadletKind::Volume {
            out.insert(volume_name(f.rel(), text.as_deref()));
            return out;
        }
        let Some(q) = text.and_then(|t| crate::quadlet::parse(f.rel(), &t).ok()) else {
            return out;
        };
        for e in q.get_all(kind.section(), "Volume") {
            let mut parts = e.value.splitn(3, ':');
            let (Some(source), Some(_)) = (parts.next(), parts.next()) else {
                continue;
            };
            if let Some(stem) = source.strip_suffix(".volume") {
                out.insert(
                    self.0
                        .get(source)
                        .cloned()
                        .unwrap_or_else(|| format!("systemd-{stem}")),
                );
            } else if !source.is_empty()
                && !source.starts_with(['/', '.', '%'])
                && !source.contains('/')
            {
                out.insert(source.to_owned());
            }
        }
        out
    }
}

fn text_of(f: &CurrentFile) -> Option<String> {
    f.content
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_owned)
}

/// One app's backup, as found on disk, for retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRef {
    /// The backup id (folder name).
    pub id: String,
    /// The app.
    pub app: String,
    /// When it was taken; `None` for an interrupted backup without a manifest.
    pub created: Option<SystemTime>,
}

/// The backups retention removes: per app, everything past the newest `keep`, and
/// everything older than `max_age`, but never an app's newest complete backup, so an
/// app that was removed can always be restored. Interrupted backups always go.
pub fn expired(
    backups: &[BackupRef],
    now: SystemTime,
    keep: usize,
    max_age: Duration,
) -> Vec<BackupRef> {
    let mut by_app: BTreeMap<&str, Vec<&BackupRef>> = BTreeMap::new();
    let mut out = Vec::new();
    for b in backups {
        match b.created {
            Some(_) => by_app.entry(&b.app).or_default().push(b),
            None => out.push(b.clone()),
        }
    }
    for list in by_app.values_mut() {
        list.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
        for (i, b) in list.iter().enumerate() {
            let age = b
                .created
                .and_then(|c| now.duration_since(c).ok())
                .unwrap_or_default();
            if i > 0 && (i >= keep || age > max_age) {
                out.push((*b).clone());
            }
        }
    }
    out
}

/// The folder name of a backup taken at `now` of an app at `revision`.
pub fn backup_id(now: SystemTime, revision: &str) -> String {
    let time: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let rev: String = crate::model::Revision(revision)
        .short()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '@' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{time}-{rev}")
}

pub(super) fn check_name(what: &'static str, value: &str) -> Result<(), BackupError> {
    let ok = !value.is_empty()
        && !value.starts_with('.')
        && !value.contains('/')
        && !value.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(BackupError::InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

pub(super) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io { what, path, source }
}

pub(super) fn sha256_file(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = std::fs::File::open(path).map_err(io_err("read", path))?;
    let mut h = Sha256::new();
    let n = io::copy(&mut f, &mut h).map_err(io_err("read", path))?;
    Ok((hex::encode(h.finalize()), n))
}

/// What one app's `leger.toml` asks of its backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppBackupPolicy {
    /// Export its volumes (`backup_volumes`).
    pub volumes: bool,
    /// What a failed backup does to its update (`backup_failure`).
    pub failure: BackupFailure,
}

impl Default for AppBackupPolicy {
    fn default() -> Self {
        AppBackupPolicy {
            volumes: true,
            failure: BackupFailure::Refuse,
        }
    }
}

/// The backup policy of every app of a tree; an app not in it (one being removed) gets
/// the default.
pub fn policies_of(tree: &crate::model::DesiredTree) -> BTreeMap<String, AppBackupPolicy> {
    tree.apps
        .iter()
        .map(|(name, app)| {
            (
                name.clone(),
                AppBackupPolicy {
                    volumes: app.config.backup_volumes,
                    failure: app.config.backup_failure,
                },
            )
        })
        .collect()
}

/// The backup folder and its settings.
#[derive(Debug, Clone)]
pub struct Backups {
    root: PathBuf,
    settings: BackupSettings,
    pub(super) podman: PodmanVolumes,
    /// Per-app choices from `leger.toml`.
    policies: BTreeMap<String, AppBackupPolicy>,
    /// Outcomes counted since the last [`Backups::drain_outcomes`], shared by clones;
    /// the pass reports them into `legerd_backups_total`.
    outcomes: std::sync::Arc<std::sync::Mutex<BTreeMap<&'static str, u64>>>,
}

impl Backups {
    /// Backups under `root` (`<state>/backups`).
    pub fn new(root: PathBuf, settings: BackupSettings) -> Self {
        Backups {
            root,
            settings,
            podman: PodmanVolumes::default(),
            policies: BTreeMap::new(),
            outcomes: Default::default(),
        }
    }

    /// Applies each app's `leger.toml` choices (volumes or not, refuse or warn).
    pub fn with_policies(mut self, policies: BTreeMap<String, AppBackupPolicy>) -> Self {
        self.policies = policies;
        self
    }

    fn record(&self, outcome: &'static str) {
        *self
            .outcomes
            .lock()
            .expect("outcomes lock")
            .entry(outcome)
            .or_default() += 1;
    }

    /// The outcomes counted since the last call (`taken`, `failed`, `skipped`,
    /// `evicted`, see [`crate::metrics::BACKUP_OUTCOMES`]), reset to zero.
    pub fn drain_outcomes(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.outcomes.lock().expect("outcomes lock"))
    }

    /// Reports the outcomes counted so far and the folder's size (a walk of the
    /// folder, on the blocking pool) into `metrics`.
    pub async fn report(&self, metrics: &crate::metrics::Metrics) {
        for (outcome, n) in self.drain_outcomes() {
            for _ in 0..n {
                metrics.record_backup(outcome);
            }
        }
        metrics.set_backup_bytes(self.off_runtime(Backups::size).await);
    }

    /// What all backups take on disk now.
    pub fn size(&self) -> u64 {
        dir_size(&self.root)
    }

    /// Removes backups a crash left without a `manifest.json`; legerd calls it at start.
    /// Returns how many app folders went.
    pub fn remove_interrupted(&self) -> Result<usize, BackupError> {
        let mut removed = 0;
        for (id, app, dir) in self.app_dirs()? {
            if matches!(read_manifest(&dir), Ok(None)) {
                std::fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
                let _ = std::fs::remove_dir(self.root.join(&id));
                tracing::info!(backup = %id, app = %app, "removed an interrupted backup");
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Makes room for `needed` more bytes within the budget, evicting complete backups
    /// of other revisions than `saving`, oldest first, never one in `protected`.
    fn ensure_room(
        &self,
        app: &str,
        needed: u64,
        saving: &str,
        protected: &[(String, String)],
    ) -> Result<(), BackupError> {
        if self.settings.max_bytes.is_none() && self.settings.min_free.is_none() {
            return Ok(());
        }
        loop {
            let usage = budget::Usage {
                used: dir_size(&self.root),
                free: budget::free_bytes(&self.root).map_err(io_err("measure", &self.root))?,
            };
            let Err(detail) = budget::fits(&self.settings, usage, needed) else {
                return Ok(());
            };
            let candidates: Vec<budget::Candidate> = self
                .app_dirs()?
                .into_iter()
                .filter_map(|(id, app, dir)| {
                    let m = read_manifest(&dir).ok()??;
                    Some(budget::Candidate {
                        id,
                        app,
                        revision: m.revision,
                        created: humantime::parse_rfc3339(&m.created)
                            .unwrap_or(SystemTime::UNIX_EPOCH),
                    })
                })
                .collect();
            let Some(victim) = budget::next_eviction(&candidates, saving, protected) else {
                return Err(BackupError::Budget {
                    app: app.to_owned(),
                    detail,
                });
            };
            let dir = self.root.join(&victim.id).join(&victim.app);
            std::fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
            let _ = std::fs::remove_dir(self.root.join(&victim.id));
            tracing::warn!(
                backup = %victim.id,
                app = %victim.app,
                revision = %victim.revision,
                "removed an old backup to stay within the backup budget ({detail})"
            );
            self.record("evicted");
        }
    }

    /// Runs volume calls through `podman` (the one legerd was configured with, or a
    /// recording double in tests) instead of the default CLI.
    pub fn with_podman(mut self, podman: std::sync::Arc<dyn crate::podman::Podman>) -> Self {
        self.podman = PodmanVolumes::new(podman);
        self
    }

    /// The folder backups live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Backs up every app the plan changes or removes, then applies retention. Called
    /// right before the apply: an error here fails the pass with nothing changed.
    /// `current` is the revision the host is at; `next` the one about to be applied.
    pub async fn take(
        &self,
        plan: &Plan,
        inventory: &[InventoryEntry],
        quadlet_dir: &Path,
        current: Option<&str>,
        next: &str,
        now: SystemTime,
    ) -> Result<Vec<BackupInfo>, BackupError> {
        if self.settings.keep == 0 {
            return Ok(Vec::new());
        }
        let affected = affected_apps(plan);
        let mut taken = Vec::new();
        for (app, what) in &affected {
            let rows: Vec<InventoryEntry> = inventory
                .iter()
                .filter(|e| &e.app == app)
                .cloned()
                .collect();
            let (a, dir) = (app.clone(), quadlet_dir.to_owned());
            let files = blocking::run(move || current_files(&rows, &a, &dir)).await?;
            if files.is_empty() {
                continue;
            }
            let revision = app_revision(current, &files);
            let policy = self.policies.get(app).copied().unwrap_or_default();
            let volumes = if policy.volumes {
                volumes_to_export(&files, what)
            } else {
                BTreeSet::new()
            };
            let protected: Vec<(String, String)> = taken
                .iter()
                .map(|i: &BackupInfo| (i.id.clone(), i.app.clone()))
                .collect();
            match self
                .take_app(app, &revision, next, &files, &volumes, now, &protected)
                .await
            {
                Ok(Some(info)) => {
                    self.record("taken");
                    taken.push(info);
                }
                Ok(None) => {}
                Err(e) if policy.failure == BackupFailure::Warn => {
                    self.record("skipped");
                    tracing::warn!(
                        app,
                        error = %e,
                        "backup failed; the app's leger.toml says backup_failure = \"warn\", so it is updated without one"
                    );
                }
                Err(e) => {
                    self.record("failed");
                    return Err(e);
                }
            }
        }
        if !taken.is_empty() {
            self.off_runtime(move |b| b.prune(now)).await?;
        }
        Ok(taken)
    }

    #[allow(clippy::too_many_arguments)]
    async fn take_app(
        &self,
        app: &str,
        revision: &str,
        next: &str,
        files: &[CurrentFile],
        volumes: &BTreeSet<String>,
        now: SystemTime,
        protected: &[(String, String)],
    ) -> Result<Option<BackupInfo>, BackupError> {
        // Before anything is written: the files, and each volume at the size its last
        // backup had (its real size is checked again right after its export).
        let file_bytes = files
            .iter()
            .filter_map(|f| f.content.as_ref().map(|c| c.len() as u64))
            .sum::<u64>();
        let volume_bytes = self.volume_estimates(volumes).await;
        let (a, rev, mut protected) = (app.to_owned(), revision.to_owned(), protected.to_vec());
        let (id, protected) = self
            .off_runtime(move |b| {
                let estimate = file_bytes + volume_bytes;
                let base = backup_id(now, &rev);
                let mut id = base.clone();
                let mut n = 1;
                while b.root.join(&id).join(&a).exists() {
                    n += 1;
                    id = format!("{base}.{n}");
                }
                protected.push((id.clone(), a.clone()));
                b.ensure_room(&a, estimate, &rev, &protected)?;
                Ok::<_, BackupError>((id, protected))
            })
            .await?;
        let dir = self.root.join(&id).join(app);
        let result = self
            .write_app(&dir, app, revision, next, files, volumes, now, &protected)
            .await;
        // Nothing to keep (every file deleted by hand, no volume): no backup either.
        let empty = result
            .as_ref()
            .is_ok_and(|m| m.files.is_empty() && m.volumes.is_empty());
        if result.is_err() || empty {
            let (d, id_dir) = (dir.clone(), self.root.join(&id));
            blocking::run(move || {
                let _ = std::fs::remove_dir_all(&d);
                let _ = std::fs::remove_dir(&id_dir);
            })
            .await;
        }
        let manifest = result?;
        if empty {
            return Ok(None);
        }
        tracing::info!(backup = %id, app, revision, volumes = manifest.volumes.len(), "backed up app before apply");
        Ok(Some(
            blocking::run(move || info(&id, &dir, &manifest)).await,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_app(
        &self,
        dir: &Path,
        app: &str,
        revision: &str,
        next: &str,
        files: &[CurrentFile],
        volumes: &BTreeSet<String>,
        now: SystemTime,
        protected: &[(String, String)],
    ) -> Result<Manifest, BackupError> {
        let mut manifest = Manifest {
            format: FORMAT,
            app: app.to_owned(),
            revision: revision.to_owned(),
            replaced_by: Some(next.to_owned()),
            created: humantime::format_rfc3339_seconds(now).to_string(),
            files: Vec::new(),
            volumes: Vec::new(),
        };
        let (d, files, with_volumes) = (dir.to_owned(), files.to_vec(), !volumes.is_empty());
        manifest.files = blocking::run(move || write_files(&d, &files, with_volumes)).await?;
        for v in volumes {
            if !self.podman.exists(v).await? {
                tracing::info!(volume = %v, app, "volume does not exist; nothing to back up");
                continue;
            }
            let path = dir.join("volumes").join(format!("{v}.tar"));
            self.podman.export(v, &path).await?;
            let (v, a, rev, protected) = (
                v.clone(),
                app.to_owned(),
                revision.to_owned(),
                protected.to_vec(),
            );
            let volume = self
                .off_runtime(move |b| {
                    let (sha256, size) = sha256_file(&path)?;
                    b.record_measured_size(&v, size);
                    // The archive is on disk now, so the budget sees its real size.
                    b.ensure_room(&a, 0, &rev, &protected)?;
                    Ok::<_, BackupError>(ManifestVolume {
                        name: v,
                        sha256,
                        size,
                    })
                })
                .await?;
            manifest.volumes.push(volume);
        }
        let path = dir.join(MANIFEST);
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
        blocking::run(move || {
            leger_config::fs::write_atomic(&path, &json, 0o600).map_err(io_err("write", &path))
        })
        .await?;
        Ok(manifest)
    }

    /// What the exports of `volumes` will take, before they run: each volume measured
    /// where podman keeps its data ([`volume_size`]), or, when that cannot be read (a
    /// driver without a local path, a read error), the size of its last export.
    async fn volume_estimates(&self, volumes: &BTreeSet<String>) -> u64 {
        let mut total = 0;
        let mut unmeasured = BTreeSet::new();
        for v in volumes {
            let measured = match self.podman.mountpoint(v).await {
                Ok(Some(dir)) => blocking::run(move || volume_size::archive_estimate(&dir))
                    .await
                    .ok(),
                _ => None,
            };
            match measured {
                Some(size) => total += size,
                None => {
                    unmeasured.insert(v.clone());
                }
            }
        }
        total
            + self
                .off_runtime(move |b| b.last_volume_sizes(&unmeasured))
                .await
    }

    /// Runs `f` with a clone of these backups on the blocking pool: every folder walk,
    /// copy, hash and fsync of a backup goes through here, never an async worker.
    async fn off_runtime<T, F>(&self, f: F) -> T
    where
        F: FnOnce(&Backups) -> T + Send + 'static,
        T: Send + 'static,
    {
        let me = self.clone();
        blocking::run(move || f(&me)).await
    }

    /// The size each of `volumes` had in its newest backup: the estimate of its next
    /// export when it cannot be measured.
    fn last_volume_sizes(&self, volumes: &BTreeSet<String>) -> u64 {
        if volumes.is_empty() {
            return 0;
        }
        let measured = self.measured_sizes();
        let mut newest: BTreeMap<&str, (SystemTime, u64)> = volumes
            .iter()
            .filter_map(|v| Some((v.as_str(), (SystemTime::now(), *measured.get(v)?))))
            .collect();
        let dirs = self.app_dirs().unwrap_or_default();
        let manifests: Vec<Manifest> = dirs
            .iter()
            .filter_map(|(_, _, dir)| read_manifest(dir).ok().flatten())
            .collect();
        for m in &manifests {
            let t = humantime::parse_rfc3339(&m.created).unwrap_or(SystemTime::UNIX_EPOCH);
            for v in m.volumes.iter().filter(|v| volumes.contains(&v.name)) {
                let e = newest.entry(v.name.as_str()).or_insert((t, v.size));
                if t > e.0 {
                    *e = (t, v.size);
                }
            }
        }
        newest.values().map(|(_, size)| size).sum()
    }

    /// The archive size of each volume's last export, kept even when its backup failed
    /// (`.volume-sizes.json`), so the next attempt is refused before any unit stops.
    fn measured_sizes(&self) -> BTreeMap<String, u64> {
        std::fs::read(self.root.join(SIZES_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn record_measured_size(&self, volume: &str, size: u64) {
        let mut sizes = self.measured_sizes();
        sizes.insert(volume.to_owned(), size);
        let json = serde_json::to_vec(&sizes).expect("sizes serialize");
        if let Err(e) = mkdir(&self.root) {
            tracing::warn!(error = %e, "cannot record a volume's export size");
            return;
        }
        if let Err(e) = leger_config::fs::write_atomic(&self.root.join(SIZES_FILE), &json, 0o600) {
            tracing::warn!(error = %e, "cannot record a volume's export size");
        }
    }

    /// The budget check a backup would make first, before any unit is stopped for it:
    /// an app whose `leger.toml` says `refuse` and whose files plus volumes (measured
    /// on disk, [`Self::volume_estimates`]) do not fit fails here, so the app is not
    /// stopped for a backup that cannot fit, even before a volume's first export.
    pub async fn precheck(
        &self,
        plan: &Plan,
        inventory: &[InventoryEntry],
        quadlet_dir: &Path,
        current: Option<&str>,
    ) -> Result<(), BackupError> {
        if self.settings.keep == 0 {
            return Ok(());
        }
        for (app, what) in &affected_apps(plan) {
            let policy = self.policies.get(app).copied().unwrap_or_default();
            if policy.failure == BackupFailure::Warn {
                continue;
            }
            let (inv, dir, a) = (inventory.to_vec(), quadlet_dir.to_owned(), app.clone());
            let files = self
                .off_runtime(move |_| current_files(&inv, &a, &dir))
                .await?;
            if files.is_empty() {
                continue;
            }
            let volumes = if policy.volumes {
                volumes_to_export(&files, what)
            } else {
                BTreeSet::new()
            };
            let estimate = files
                .iter()
                .filter_map(|f| f.content.as_ref().map(|c| c.len() as u64))
                .sum::<u64>()
                + self.volume_estimates(&volumes).await;
            let (a, rev) = (app.clone(), app_revision(current, &files));
            let room = self
                .off_runtime(move |b| b.ensure_room(&a, estimate, &rev, &[]))
                .await;
            if let Err(e) = room {
                self.record("failed");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Every complete backup, newest first; `app` narrows the list to one app.
    pub fn list(&self, app: Option<&str>) -> Result<Vec<BackupInfo>, BackupError> {
        let mut out: Vec<(SystemTime, BackupInfo)> = Vec::new();
        for (id, a, dir) in self.app_dirs()? {
            if app.is_some_and(|want| want != a) {
                continue;
            }
            match read_manifest(&dir) {
                Ok(Some(m)) => {
                    let t = humantime::parse_rfc3339(&m.created).unwrap_or(SystemTime::UNIX_EPOCH);
                    out.push((t, info(&id, &dir, &m)));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable backup"),
            }
        }
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
        Ok(out.into_iter().map(|(_, i)| i).collect())
    }

    /// `(id, app, folder)` of every app folder under the root.
    fn app_dirs(&self) -> Result<Vec<(String, String, PathBuf)>, BackupError> {
        let mut out = Vec::new();
        let ids = match std::fs::read_dir(&self.root) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("list", &self.root)(e)),
        };
        for id in ids {
            let id = id.map_err(io_err("list", &self.root))?;
            if !id.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let id_path = id.path();
            for app in std::fs::read_dir(&id_path).map_err(io_err("list", &id_path))? {
                let app = app.map_err(io_err("list", &id_path))?;
                if app.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push((
                        id.file_name().to_string_lossy().into_owned(),
                        app.file_name().to_string_lossy().into_owned(),
                        app.path(),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Removes what [`expired`] selects, and backup folders left empty.
    pub fn prune(&self, now: SystemTime) -> Result<(), BackupError> {
        let mut refs = Vec::new();
        for (id, app, dir) in self.app_dirs()? {
            let created = match read_manifest(&dir) {
                Ok(Some(m)) => {
                    Some(humantime::parse_rfc3339(&m.created).unwrap_or(SystemTime::UNIX_EPOCH))
                }
                Ok(None) => None,
                // Unreadable: keep it for the operator to look at.
                Err(_) => continue,
            };
            refs.push(BackupRef { id, app, created });
        }
        for b in expired(&refs, now, self.settings.keep, self.settings.max_age) {
            let dir = self.root.join(&b.id).join(&b.app);
            std::fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
            // The id folder goes once its last app is gone.
            let _ = std::fs::remove_dir(self.root.join(&b.id));
            tracing::info!(backup = %b.id, app = %b.app, "removed old backup");
        }
        Ok(())
    }

    /// Finds the backup to restore: `backup`, or the app's newest.
    fn find(
        &self,
        app: &str,
        backup: Option<&str>,
    ) -> Result<(String, PathBuf, Manifest), BackupError> {
        check_name("app", app)?;
        let id = match backup {
            Some(b) => {
                check_name("backup", b)?;
                b.to_owned()
            }
            None => self
                .list(Some(app))?
                .into_iter()
                .next()
                .map(|b| b.id)
                .ok_or_else(|| {
                    BackupError::NotFound(format!(
                        "there is no backup of app {app}; legerd backs an app up before it changes or removes it"
                    ))
                })?,
        };
        let dir = self.root.join(&id).join(app);
        match read_manifest(&dir)? {
            Some(m) => Ok((id, dir, m)),
            None => Err(BackupError::NotFound(format!(
                "there is no backup {id} of app {app}; see `legerctl backups {app}`"
            ))),
        }
    }
}

/// Where the last export size of each volume is kept, in the backup folder.
const SIZES_FILE: &str = ".volume-sizes.json";

/// The revision an app's backup saves: the one the host is at, or for an app whose
/// files came from different passes, the newest of theirs.
fn app_revision(current: Option<&str>, files: &[CurrentFile]) -> String {
    current
        .map(str::to_owned)
        .or_else(|| {
            files
                .iter()
                .max_by(|a, b| a.entry.installed_at.cmp(&b.entry.installed_at))
                .map(|f| f.entry.revision.clone())
        })
        .unwrap_or_default()
}

fn mkdir(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err("create", path))
}

/// Copies an app's files into its backup folder `dir` (and makes `volumes/` when
/// volumes follow), returning their manifest entries. Blocking.
fn write_files(
    dir: &Path,
    files: &[CurrentFile],
    with_volumes: bool,
) -> Result<Vec<ManifestFile>, BackupError> {
    mkdir(dir)?;
    let mut out = Vec::new();
    for f in files {
        let Some(content) = &f.content else { continue };
        let path = dir.join("files").join(f.rel());
        mkdir(path.parent().expect("a file has a parent"))?;
        std::fs::write(&path, content).map_err(io_err("write", &path))?;
        out.push(ManifestFile {
            path: f.rel().to_owned(),
            sha256: ContentHash::of(content).to_hex(),
            size: content.len() as u64,
            unit: f.entry.unit.clone(),
        });
    }
    if with_volumes {
        mkdir(&dir.join("volumes"))?;
    }
    Ok(out)
}

pub(super) fn read_manifest(dir: &Path) -> Result<Option<Manifest>, BackupError> {
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(BackupError::Manifest {
                path,
                reason: e.to_string(),
            });
        }
    };
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if m.format != FORMAT {
        return Err(BackupError::Manifest {
            path,
            reason: format!(
                "format {} is not {FORMAT}; a newer legerd wrote it",
                m.format
            ),
        });
    }
    Ok(Some(m))
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn info(id: &str, dir: &Path, m: &Manifest) -> BackupInfo {
    BackupInfo {
        id: id.to_owned(),
        app: m.app.clone(),
        revision: m.revision.clone(),
        created: m.created.clone(),
        files: m.files.iter().map(|f| f.path.clone()).collect(),
        volumes: m.volumes.iter().map(|v| v.name.clone()).collect(),
        size: dir_size(dir),
    }
}

/// The app's inventory rows with their bytes on disk.
pub(super) fn current_files(
    inventory: &[InventoryEntry],
    app: &str,
    quadlet_dir: &Path,
) -> Result<Vec<CurrentFile>, BackupError> {
    inventory
        .iter()
        .filter(|e| e.app == app)
        .map(|e| {
            let path = quadlet_dir.join(&e.key);
            let content = match std::fs::read(&path) {
                Ok(b) => Some(b),
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(err) => return Err(io_err("read", &path)(err)),
            };
            Ok(CurrentFile {
                entry: e.clone(),
                content,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podman::PodmanCall;

    fn entry(key: &str, unit: Option<&str>) -> InventoryEntry {
        InventoryEntry {
            key: key.to_owned(),
            app: key.split('/').next().unwrap().to_owned(),
            hash: ContentHash::of(b""),
            unit: unit.map(str::to_owned),
            revision: "r1".to_owned(),
            installed_at: "2025-01-01T00:00:00Z".to_owned(),
        }
    }

    fn file(key: &str, unit: Option<&str>, text: &str) -> CurrentFile {
        CurrentFile {
            entry: entry(key, unit),
            content: Some(text.as_bytes().to_vec()),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn r(id: &str, app: &str, created: Option<u64>) -> BackupRef {
        BackupRef {
            id: id.to_owned(),
            app: app.to_owned(),
            created: created.map(at),
        }
    }

    #[test]
    fn affected_apps_are_those_updated_healed_removed_or_stopped() {
        let hash = ContentHash::of(b"x");
        let plan = Plan {
            actions: vec![
                Action::StopUnit {
                    unit: "old.service".into(),
                    app: "old".into(),
                },
                Action::WriteFile {
                    key: "new/new.container".into(),
                    app: "new".into(),
                    hash,
                    reason: WriteReason::Create,
                },
                Action::WriteFile {
                    key: "web/web.container".into(),
                    app: "web".into(),
                    hash,
                    reason: WriteReason::Update,
                },
                Action::WriteFile {
                    key: "db/db.env".into(),
                    app: "db".into(),
                    hash,
                    reason: WriteReason::Restore,
                },
                Action::Reload,
                Action::StartUnit {
                    unit: "new.service".into(),
                    app: "new".into(),
                    reason: crate::plan::StartReason::Install,
                },
                Action::RestartUnit {
                    unit: "db.service".into(),
                    app: "db".into(),
                },
                Action::RestartUnit {
                    unit: "cache.service".into(),
                    app: "cache".into(),
                },
            ],
            drift: vec![],
        };
        let a = affected_apps(&plan);
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            ["db", "old", "web"],
            "a new app and a restart alone need no backup"
        );
        assert!(a["db"].keys.contains("db/db.env") && a["db"].units.contains("db.service"));
        assert!(a["old"].units.contains("old.service"));
    }

    #[test]
    fn volumes_to_export_follow_the_changing_quadlets() {
        let files = vec![
            file("app/data.volume", Some("data-volume.service"), "[Volume]\n"),
            file(
                "app/named.volume",
                Some("named-volume.service"),
                "[Volume]\nVolumeName=precious\n",
            ),
            file(
                "app/web.container",
                Some("web.service"),
                "[Container]\nImage=busybox\nVolume=named.volume:/n\nVolume=cache:/c:Z\nVolume=/srv/host:/h\nVolume=./rel:/r\nVolume=/anon\n",
            ),
            file(
                "app/other.container",
                Some("other.service"),
                "[Container]\nImage=busybox\nVolume=data.volume:/d\nVolume=elsewhere.volume:/e\n",
            ),
        ];
        let web_changed = Affected {
            keys: ["app/web.container".to_owned()].into(),
            units: BTreeSet::new(),
        };
        assert_eq!(
            volumes_to_export(&files, &web_changed),
            ["cache".to_owned(), "precious".to_owned()].into()
        );
        let other_stopped = Affected {
            keys: BTreeSet::new(),
            units: ["other.service".to_owned()].into(),
        };
        assert_eq!(
            volumes_to_export(&files, &other_stopped),
            ["systemd-data".to_owned(), "systemd-elsewhere".to_owned()].into()
        );
        let volume_removed = Affected {
            keys: ["app/named.volume".to_owned()].into(),
            units: BTreeSet::new(),
        };
        assert_eq!(
            volumes_to_export(&files, &volume_removed),
            ["precious".to_owned()].into()
        );
        assert!(volumes_to_export(&files, &Affected::default()).is_empty());
    }

    #[test]
    fn retention_keeps_the_newest_per_app_by_count_and_age() {
        let day = 24 * 3600;
        let backups = vec![
            r("a1", "web", Some(0)),
            r("a2", "web", Some(day)),
            r("a3", "web", Some(2 * day)),
            r("a4", "web", Some(3 * day)),
            r("b1", "db", Some(0)),
            r("x", "db", None),
        ];
        let now = at(3 * day + 60);
        let mut gone: Vec<String> = expired(&backups, now, 2, Duration::from_secs(100 * day))
            .into_iter()
            .map(|b| format!("{}/{}", b.id, b.app))
            .collect();
        gone.sort();
        assert_eq!(gone, ["a1/web", "a2/web", "x/db"]);
        // By age: web's a3 is 1 day old, a4 newer; db's only backup is kept however old.
        let mut gone: Vec<String> = expired(&backups, now, 10, Duration::from_secs(day / 2))
            .into_iter()
            .map(|b| format!("{}/{}", b.id, b.app))
            .collect();
        gone.sort();
        assert_eq!(gone, ["a1/web", "a2/web", "a3/web", "x/db"]);
    }

    #[test]
    fn backup_id_is_sortable_time_and_short_revision() {
        let t = humantime::parse_rfc3339("2025-03-04T05:06:07Z").unwrap();
        assert_eq!(
            backup_id(t, "0123456789abcdef0123456789abcdef01234567"),
            "20250304T050607Z-0123456789ab"
        );
        assert_eq!(
            backup_id(t, "v3@sha256:00112233445566778899"),
            "20250304T050607Z-v3@001122334455"
        );
    }

    fn settings(keep: usize) -> BackupSettings {
        BackupSettings {
            keep,
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_bytes: None,
            min_free: None,
        }
    }

    fn update_plan(key: &str) -> Plan {
        Plan {
            actions: vec![Action::WriteFile {
                key: key.to_owned(),
                app: key.split('/').next().unwrap().to_owned(),
                hash: ContentHash::of(b"new"),
                reason: WriteReason::Update,
            }],
            drift: vec![],
        }
    }

    #[tokio::test]
    async fn backup_manifest_records_files_with_sha256_and_is_listed() {
        let t = tempfile::tempdir().unwrap();
        let quadlets = t.path().join("quadlets");
        std::fs::create_dir_all(quadlets.join("web/conf")).unwrap();
        std::fs::write(
            quadlets.join("web/web.container"),
            "[Container]\nImage=busybox\n",
        )
        .unwrap();
        std::fs::write(quadlets.join("web/conf/app.env"), "A=1\n").unwrap();
        let inventory = vec![
            entry("web/web.container", Some("web.service")),
            entry("web/conf/app.env", None),
            entry("db/db.container", Some("db.service")),
        ];
        let b = Backups::new(t.path().join("backups"), settings(10));
        let taken = b
            .take(
                &update_plan("web/conf/app.env"),
                &inventory,
                &quadlets,
                Some("rev1"),
                "rev2",
                at(0),
            )
            .await
            .unwrap();
        assert_eq!(taken.len(), 1, "only web changes");
        let dir = b.root().join(&taken[0].id).join("web");
        let m = read_manifest(&dir).unwrap().unwrap();
        assert_eq!((m.app.as_str(), m.revision.as_str()), ("web", "rev1"));
        assert_eq!(m.replaced_by.as_deref(), Some("rev2"));
        let mut paths: Vec<(&str, &str, u64)> = m
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.sha256.as_str(), f.size))
            .collect();
        paths.sort();
        let env_sha = ContentHash::of(b"A=1\n").to_hex();
        assert_eq!(paths[0], ("conf/app.env", env_sha.as_str(), 4));
        assert_eq!(paths[1].0, "web.container");
        assert_eq!(
            std::fs::read(dir.join("files/conf/app.env")).unwrap(),
            b"A=1\n"
        );
        assert!(m.volumes.is_empty());
        let listed = b.list(Some("web")).unwrap();
        assert_eq!(listed, taken);
        assert!(listed[0].size > 0);
        assert!(b.list(Some("db")).unwrap().is_empty());
    }

    #[tokio::test]
    async fn backup_retention_runs_after_each_backup() {
        let t = tempfile::tempdir().unwrap();
        let quadlets = t.path().join("quadlets");
        std::fs::create_dir_all(quadlets.join("web")).unwrap();
        std::fs::write(
            quadlets.join("web/web.container"),
            "[Container]\nImage=busybox\n",
        )
        .unwrap();
        let inventory = vec![entry("web/web.container", Some("web.service"))];
        let b = Backups::new(t.path().join("backups"), settings(2));
        // An interrupted backup: no manifest.
        std::fs::create_dir_all(b.root().join("19990101T000000Z-x/web/files")).unwrap();
        for i in 0..4 {
            b.take(
                &update_plan("web/web.container"),
                &inventory,
                &quadlets,
                Some(&format!("rev{i}")),
                "next",
                at(i * 10),
            )
            .await
            .unwrap();
        }
        let listed = b.list(None).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|i| i.revision.as_str())
                .collect::<Vec<_>>(),
            ["rev3", "rev2"],
            "newest first, two kept"
        );
        let ids: Vec<_> = std::fs::read_dir(b.root())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            ids.len(),
            2,
            "old and interrupted folders are gone: {ids:?}"
        );
    }

    #[tokio::test]
    async fn backup_keeps_what_is_on_disk_and_skips_an_app_with_nothing_left() {
        let t = tempfile::tempdir().unwrap();
        let quadlets = t.path().join("quadlets");
        std::fs::create_dir_all(quadlets.join("web")).unwrap();
        std::fs::write(quadlets.join("web/web.env"), "A=2\n").unwrap();
        let b = Backups::new(t.path().join("backups"), settings(10));
        // web.container was deleted by hand; self-heal writes it back.
        let only_deleted = vec![entry("web/web.container", Some("web.service"))];
        let taken = b
            .take(
                &update_plan("web/web.container"),
                &only_deleted,
                &quadlets,
                Some("r"),
                "r",
                at(0),
            )
            .await
            .unwrap();
        assert!(taken.is_empty(), "{taken:?}");
        assert!(b.list(None).unwrap().is_empty());
        let with_env = vec![
            entry("web/web.container", Some("web.service")),
            entry("web/web.env", None),
        ];
        let taken = b
            .take(
                &update_plan("web/web.container"),
                &with_env,
                &quadlets,
                Some("r"),
                "r",
                at(1),
            )
            .await
            .unwrap();
        assert_eq!(
            taken[0].files,
            ["web.env"],
            "the hand edit as it is on disk"
        );
    }

    #[tokio::test]
    async fn backup_budget_measures_a_never_exported_volume_before_its_first_export() {
        let t = tempfile::tempdir().unwrap();
        let quadlets = t.path().join("quadlets");
        std::fs::create_dir_all(quadlets.join("db")).unwrap();
        std::fs::write(quadlets.join("db/data.volume"), "[Volume]\n").unwrap();
        std::fs::write(
            quadlets.join("db/db.container"),
            "[Container]\nImage=busybox\nVolume=data.volume:/d\n",
        )
        .unwrap();
        let inventory = vec![
            entry("db/data.volume", Some("data-volume.service")),
            entry("db/db.container", Some("db.service")),
        ];
        let plan = update_plan("db/db.container");
        // The volume's data: 100 kB, never exported, so no last size to go by.
        let data = t.path().join("volume-data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("app.db"), vec![7u8; 100_000]).unwrap();
        let podman = std::sync::Arc::new(crate::podman::RecordingPodman::new());
        podman.set_volume_exists("systemd-data", true);
        podman.set_volume_mountpoint("systemd-data", &data);
        let mut s = settings(3);
        s.max_bytes = Some(16_000);
        let b = Backups::new(t.path().join("backups"), s).with_podman(podman.clone());

        let e = b
            .precheck(&plan, &inventory, &quadlets, Some("r1"))
            .await
            .unwrap_err();
        assert!(matches!(e, BackupError::Budget { .. }), "{e}");
        assert!(e.to_string().contains("max_bytes = 16000"), "{e}");
        let e = b
            .take(&plan, &inventory, &quadlets, Some("r1"), "r2", at(0))
            .await
            .unwrap_err();
        assert!(matches!(e, BackupError::Budget { .. }), "{e}");
        let calls = podman.take_calls();
        assert!(
            calls.contains(&PodmanCall::VolumeMountpoint("systemd-data".into())),
            "{calls:?}"
        );
        assert!(
            !calls
                .iter()
                .any(|c| matches!(c, PodmanCall::VolumeExport(..))),
            "refused before the export: {calls:?}"
        );
        assert!(b.list(None).unwrap().is_empty());

        // A small volume fits and is exported.
        std::fs::write(data.join("app.db"), vec![7u8; 1_000]).unwrap();
        b.precheck(&plan, &inventory, &quadlets, Some("r1"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn backup_budget_evicts_other_revisions_then_refuses_or_warns() {
        let t = tempfile::tempdir().unwrap();
        let quadlets = t.path().join("quadlets");
        std::fs::create_dir_all(quadlets.join("web")).unwrap();
        let body = vec![b'#'; 4000];
        std::fs::write(quadlets.join("web/web.container"), &body).unwrap();
        let inventory = vec![entry("web/web.container", Some("web.service"))];
        let plan = update_plan("web/web.container");
        let mut s = settings(10);
        // Room for two backups of 4000 bytes and their manifests, not three.
        s.max_bytes = Some(9_500);
        let metrics = crate::metrics::Metrics::new(false);
        let b = Backups::new(t.path().join("backups"), s.clone());
        for (i, rev) in ["r1", "r2", "r3"].iter().enumerate() {
            b.take(
                &plan,
                &inventory,
                &quadlets,
                Some(rev),
                "n",
                at(i as u64 * 10),
            )
            .await
            .unwrap();
        }
        b.report(&metrics).await;
        let revs: Vec<String> = b
            .list(None)
            .unwrap()
            .into_iter()
            .map(|i| i.revision)
            .collect();
        assert_eq!(revs, ["r3", "r2"], "the oldest other revision went first");
        let text = metrics.render();
        assert!(
            text.contains("legerd_backups_total{outcome=\"evicted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("legerd_backups_total{outcome=\"taken\"} 3"),
            "{text}"
        );
        assert!(!text.contains("legerd_backup_bytes 0\n"), "{text}");

        // Too big for the budget even when empty: refused, nothing left behind.
        s.max_bytes = Some(1000);
        let b = Backups::new(t.path().join("small"), s.clone());
        let e = b
            .take(&plan, &inventory, &quadlets, Some("r1"), "n", at(0))
            .await
            .unwrap_err();
        assert!(matches!(e, BackupError::Budget { .. }), "{e}");
        assert!(
            e.to_string().contains("max_bytes = 1000") && e.to_string().contains("backup_failure"),
            "{e}"
        );
        assert!(b.list(None).unwrap().is_empty());
        // The same refusal comes from the precheck, before any unit would stop.
        let e = b
            .precheck(&plan, &inventory, &quadlets, Some("r1"))
            .await
            .unwrap_err();
        assert!(matches!(e, BackupError::Budget { .. }), "{e}");
        // A volume's measured export size counts in the next estimate.
        b.record_measured_size("systemd-data", 123);
        assert_eq!(
            b.last_volume_sizes(&["systemd-data".to_owned()].into()),
            123
        );
        // The app said warn: no backup, no error.
        let warn = Backups::new(t.path().join("small"), s).with_policies(
            [(
                "web".to_owned(),
                AppBackupPolicy {
                    volumes: true,
                    failure: BackupFailure::Warn,
                },
            )]
            .into(),
        );
        let taken = warn
            .take(&plan, &inventory, &quadlets, Some("r1"), "n", at(0))
            .await
            .unwrap();
        assert!(taken.is_empty());
    }

    #[test]
    fn interrupted_backups_are_removed_at_start() {
        let t = tempfile::tempdir().unwrap();
        let b = Backups::new(t.path().to_owned(), settings(10));
        std::fs::create_dir_all(t.path().join("20250101T000000Z-x/web/files")).unwrap();
        std::fs::create_dir_all(t.path().join("20250102T000000Z-y/db")).unwrap();
        std::fs::write(t.path().join("20250102T000000Z-y/db/manifest.json"), b"{}").unwrap();
        assert_eq!(b.remove_interrupted().unwrap(), 1);
        assert!(!t.path().join("20250101T000000Z-x").exists());
        assert!(
            t.path().join("20250102T000000Z-y/db").exists(),
            "a complete (even unreadable) one stays"
        );
    }

    #[tokio::test]
    async fn backup_is_skipped_when_keep_is_zero() {
        let t = tempfile::tempdir().unwrap();
        let b = Backups::new(t.path().join("backups"), settings(0));
        let inventory = vec![entry("web/web.container", Some("web.service"))];
        let taken = b
            .take(
                &update_plan("web/web.container"),
                &inventory,
                t.path(),
                Some("r"),
                "n",
                at(0),
            )
            .await
            .unwrap();
        assert!(taken.is_empty() && !b.root().exists());
    }

    #[test]
    fn restore_refuses_names_that_leave_the_backup_folder() {
        let t = tempfile::tempdir().unwrap();
        let b = Backups::new(t.path().to_owned(), settings(1));
        for (app, backup) in [("../etc", None), ("web", Some("..")), ("web", Some("a/b"))] {
            let e = b.find(app, backup).unwrap_err();
            assert!(matches!(e, BackupError::InvalidName { .. }), "{e}");
        }
        let e = b.find("web", None).unwrap_err().to_string();
        assert!(e.contains("no backup of app web"), "{e}");
        assert!(restore::check_rel("../x").is_err() && restore::check_rel("conf/a.env").is_ok());
    }
}

//! Carries out a plan: files into the quadlet dir, one daemon-reload, unit jobs.
//!
//! **Architecture invariant:** the inventory is updated *before* a file is written and
//! *after* a file is removed. Whatever instant legerd dies at, every file of legerd's
//! in the quadlet dir is in the inventory, so the next pass can finish or undo the work
//! and never mistakes its own file for someone else's.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use leger_config::fs::write_atomic_with;

use crate::crashpoint;
use crate::journal;
use crate::model::{AppFile, DesiredTree, install_key};
use crate::plan::{Action, Plan};
use crate::store::{InventoryEntry, Store, StoreError};
use crate::systemd::{SystemdError, UnitManager};

/// Permission bits of installed files: world-readable, like packaged unit files.
const FILE_MODE: u32 = 0o644;

/// What stops an apply part-way.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The target path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file could not be removed.
    #[error("cannot remove {path}: {source}")]
    Remove {
        /// The target path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The inventory could not be updated.
    #[error("cannot update the inventory: {0}")]
    Store(#[from] StoreError),
    /// daemon-reload failed.
    #[error("systemd daemon-reload failed: {0}")]
    Reload(SystemdError),
    /// The plan refers to a file the tree does not have (a bug).
    #[error("internal error: plan writes {0}, which is not in the desired tree")]
    MissingFile(String),
}

/// A unit job that did not succeed. Other units still run: one broken app must not
/// hold back the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFailure {
    /// The unit.
    pub unit: String,
    /// Its app.
    pub app: String,
    /// start, restart or stop.
    pub action: &'static str,
    /// systemd's answer.
    pub error: String,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// The actions that succeeded, in order, as one-line strings.
    pub done: Vec<String>,
    /// Unit jobs that failed.
    pub unit_failures: Vec<UnitFailure>,
}

/// Where an apply writes and what it talks to.
#[derive(Debug)]
pub struct ApplyTarget<'a, U> {
    /// The quadlet dir; apps go into sub-folders of it.
    pub quadlet_dir: &'a Path,
    /// systemd.
    pub units: &'a U,
    /// The inventory.
    pub store: &'a Mutex<Store>,
}

fn lookup<'t>(tree: &'t DesiredTree, key: &str) -> Option<&'t AppFile> {
    let (app, rel) = key.split_once('/')?;
    tree.apps.get(app)?.files.get(rel)
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Runs the plan's actions in order.
pub async fn apply<U: UnitManager>(
    plan: &Plan,
    tree: &DesiredTree,
    target: &ApplyTarget<'_, U>,
) -> Result<ApplyReport, ApplyError> {
    let unit_of: BTreeMap<String, &str> = tree
        .apps
        .values()
        .flat_map(|a| {
            a.units
                .iter()
                .map(move |u| (install_key(&a.name, &u.source_file), u.name.as_str()))
        })
        .collect();
    let mut report = ApplyReport::default();
    record_intent(target.store, plan)?;
    for action in &plan.actions {
        crashpoint::hit("before-action");
        let ok = match action {
            Action::WriteFile { key, app, .. } => {
                let file = lookup(tree, key).ok_or_else(|| ApplyError::MissingFile(key.clone()))?;
                let entry = InventoryEntry {
                    key: key.clone(),
                    app: app.clone(),
                    hash: file.hash,
                    unit: unit_of.get(key).map(|u| (*u).to_owned()),
                    revision: tree.revision.clone(),
                    installed_at: now_rfc3339(),
                };
                target
                    .store
                    .lock()
                    .expect("store lock")
                    .upsert_inventory(&entry)?;
                crashpoint::hit("after-inventory");
                write_file(target.quadlet_dir, key, &file.content)?;
                journal::file_change(&tree.revision, app, key, "write", entry.unit.as_deref());
                crashpoint::hit("after-write");
                true
            }
            Action::RemoveFile { key, app } => {
                remove_file(target.quadlet_dir, key)?;
                crashpoint::hit("after-remove");
                target
                    .store
                    .lock()
                    .expect("store lock")
                    .remove_inventory(key)?;
                journal::file_change(&tree.revision, app, key, "remove", None);
                true
            }
            Action::Reload => {
                target.units.reload().await.map_err(ApplyError::Reload)?;
                crashpoint::hit("after-reload");
                true
            }
            Action::StopUnit { unit, app } => unit_job(
                &mut report,
                &tree.revision,
                "stop",
                unit,
                app,
                target.units.stop(unit).await,
            ),
            Action::StartUnit { unit, app, .. } => unit_job(
                &mut report,
                &tree.revision,
                "start",
                unit,
                app,
                target.units.start(unit).await,
            ),
            Action::RestartUnit { unit, app } => unit_job(
                &mut report,
                &tree.revision,
                "restart",
                unit,
                app,
                target.units.restart(unit).await,
            ),
        };
        crashpoint::hit("after-action");
        if ok {
            report.done.push(action.to_string());
        }
    }
    target
        .store
        .lock()
        .expect("store lock")
        .set_meta(META_APPLY_INTENT, "")?;
    Ok(report)
}

/// Store meta key of the intent record: the units an apply in progress will start or
/// restart, one per line, empty when no apply is in progress.
const META_APPLY_INTENT: &str = "apply_intent";

/// Records what the plan will start or restart before anything changes. If legerd
/// dies mid-apply, the next pass finds the record and restarts those units even when
/// their files already match: a file written but never loaded by a restart would
/// otherwise look converged while the old unit kept running.
fn record_intent(store: &Mutex<Store>, plan: &Plan) -> Result<(), ApplyError> {
    let units: Vec<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::StartUnit { unit, .. } | Action::RestartUnit { unit, .. } => {
                Some(unit.as_str())
            }
            _ => None,
        })
        .collect();
    if units.is_empty() && !plan.changes_files() {
        return Ok(());
    }
    store
        .lock()
        .expect("store lock")
        .set_meta(META_APPLY_INTENT, &units.join("\n"))?;
    Ok(())
}

/// The units of an apply that was interrupted, to restart on the next pass.
pub fn interrupted_units(store: &Mutex<Store>) -> Result<BTreeSet<String>, StoreError> {
    let intent = store.lock().expect("store lock").meta(META_APPLY_INTENT)?;
    Ok(intent
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn unit_job(
    report: &mut ApplyReport,
    revision: &str,
    action: &'static str,
    unit: &str,
    app: &str,
    result: Result<(), SystemdError>,
) -> bool {
    match result {
        Ok(()) => {
            journal::unit_job(revision, app, unit, action, None);
            true
        }
        Err(e) => {
            journal::unit_job(revision, app, unit, action, Some(&e.to_string()));
            report.unit_failures.push(UnitFailure {
                unit: unit.to_owned(),
                app: app.to_owned(),
                action,
                error: e.to_string(),
            });
            false
        }
    }
}

pub(crate) fn write_file(quadlet_dir: &Path, key: &str, bytes: &[u8]) -> Result<(), ApplyError> {
    // A crash between the temporary file and the rename must leave no partial file
    // under a quadlet name: the temporary name ends in `.tmp`, and legerd removes such
    // leftovers when it starts.
    let path = quadlet_dir.join(key);
    let err = |source| ApplyError::Write {
        path: path.clone(),
        source,
    };
    // Each folder legerd creates gets exactly 0755, whatever the umask (legerd runs with
    // UMask=0077): the quadlet generator and a container's mounts read through them.
    let mut dir = quadlet_dir.to_path_buf();
    for component in Path::new(key)
        .parent()
        .into_iter()
        .flat_map(Path::components)
    {
        dir.push(component);
        match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .map_err(err)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e)),
        }
    }
    write_atomic_with(&path, bytes, FILE_MODE, || crashpoint::hit("before-rename")).map_err(err)
}

/// Removes a file and then any folders it leaves empty, up to the quadlet dir.
pub(crate) fn remove_file(quadlet_dir: &Path, key: &str) -> Result<(), ApplyError> {
    let path = quadlet_dir.join(key);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(ApplyError::Remove { path, source }),
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == quadlet_dir || !d.starts_with(quadlet_dir) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

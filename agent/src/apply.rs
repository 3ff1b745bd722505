//! Carries out a plan: files into the quadlet dir, one daemon-reload, unit jobs.
//! The converge stage ([`crate::pass::converge`]) calls it between writing the intent
//! record and the health gate; nothing else changes the host.
//!
//! **Architecture invariant:** the inventory is updated *before* a file is written and
//! *after* a file is removed. Whatever instant legerd dies at, every file of legerd's
//! in the quadlet dir is in the inventory, so the next pass can finish or undo the work
//! and never mistakes its own file for someone else's.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use leger_config::fs::write_atomic_with;

use crate::clock::now_rfc3339;
use crate::crashpoint;
use crate::journal;
use crate::model::{AppFile, DesiredTree, install_key};
use crate::pass::blocking;
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
    pub store: &'a Arc<Mutex<Store>>,
}

fn lookup<'t>(tree: &'t DesiredTree, key: &str) -> Option<&'t AppFile> {
    let (app, rel) = key.split_once('/')?;
    tree.apps.get(app)?.files.get(rel)
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
                let row = entry.clone();
                blocking::store(target.store, move |s| s.upsert_inventory(&row)).await?;
                crashpoint::hit("after-inventory");
                let (dir, k, bytes) = (
                    target.quadlet_dir.to_owned(),
                    key.clone(),
                    Arc::clone(&file.content),
                );
                blocking::run(move || write_file(&dir, &k, &bytes)).await?;
                journal::file_change(&tree.revision, app, key, "write", entry.unit.as_deref());
                crashpoint::hit("after-write");
                true
            }
            Action::RemoveFile { key, app } => {
                let (dir, k) = (target.quadlet_dir.to_owned(), key.clone());
                blocking::run(move || remove_file(&dir, &k)).await?;
                crashpoint::hit("after-remove");
                let k = key.clone();
                blocking::store(target.store, move |s| s.remove_inventory(&k)).await?;
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
    Ok(report)
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
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(err)?;
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

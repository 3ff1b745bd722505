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
use std::num::NonZeroUsize;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use leger_config::fs::write_atomic_with;

use crate::clock::now_rfc3339;
use crate::crashpoint;
use crate::journal;
use crate::model::{AppFile, DesiredTree, QuadletKind, install_key};
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
    /// Most start/restart jobs queued with systemd at once (`systemd.max_jobs_in_flight`).
    pub max_jobs_in_flight: NonZeroUsize,
}

fn lookup<'t>(tree: &'t DesiredTree, key: &str) -> Option<&'t AppFile> {
    let (app, rel) = key.split_once('/')?;
    tree.apps.get(app)?.files.get(rel)
}

/// Runs the plan's actions in order, except that the starts and restarts of one
/// dependency level (all networks, then all volumes, …, then all containers) are queued
/// together, up to `max_jobs_in_flight` at once, and awaited together: systemd runs them
/// side by side, where waiting for each `JobRemoved` before queuing the next left a
/// 100-app first converge waiting in line for about a second per unit. A level starts
/// only once every job of the level before it finished, so a container never starts
/// before the volume or network it uses.
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
    let level_of: BTreeMap<&str, usize> = tree
        .apps
        .values()
        .flat_map(|a| a.units.iter())
        .map(|u| (u.name.as_str(), QuadletKind::start_rank(u.kind)))
        .collect();
    let mut report = ApplyReport::default();
    let actions = &plan.actions;
    let mut i = 0;
    while i < actions.len() {
        if let Some(level) = start_level(&actions[i], &level_of) {
            let len = actions[i..]
                .iter()
                .take_while(|a| start_level(a, &level_of) == Some(level))
                .count();
            run_level(&actions[i..i + len], tree, target, &mut report).await;
            tracing::debug!(stage = "unit jobs", level, "pass stage done");
            i += len;
            continue;
        }
        let action = &actions[i];
        i += 1;
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
                tracing::debug!(stage = "reload", "pass stage done");
                crashpoint::hit("after-reload");
                true
            }
            // Stops stay one at a time: they are rare (pruned apps) and systemd orders
            // a container's stop against its network's only when both are queued by it.
            Action::StopUnit { unit, app } => unit_job(
                &mut report,
                &tree.revision,
                "stop",
                unit,
                app,
                target.units.stop(unit).await,
            ),
            Action::StartUnit { .. } | Action::RestartUnit { .. } => {
                unreachable!("starts and restarts run by level")
            }
        };
        crashpoint::hit("after-action");
        if ok {
            report.done.push(action.to_string());
        }
    }
    Ok(report)
}

/// The dependency level of a start or restart (its kind's start rank); `None` for
/// every other action.
fn start_level(action: &Action, level_of: &BTreeMap<&str, usize>) -> Option<usize> {
    match action {
        Action::StartUnit { unit, .. } | Action::RestartUnit { unit, .. } => {
            Some(level_of.get(unit.as_str()).copied().unwrap_or(usize::MAX))
        }
        _ => None,
    }
}

/// Queues the jobs of one level, at most `max_jobs_in_flight` at a time, and waits for
/// all of them. Each job's result is its own: a failed job fails exactly its unit, and
/// the report keeps the plan's order whatever order the jobs finished in.
async fn run_level<U: UnitManager>(
    level: &[Action],
    tree: &DesiredTree,
    target: &ApplyTarget<'_, U>,
    report: &mut ApplyReport,
) {
    let bound = target.max_jobs_in_flight.get();
    let mut results: Vec<Option<Result<(), SystemdError>>> = Vec::new();
    results.resize_with(level.len(), || None);
    let mut in_flight = FuturesUnordered::new();
    let mut queued = 0;
    while queued < level.len() || !in_flight.is_empty() {
        while queued < level.len() && in_flight.len() < bound {
            in_flight.push(unit_start(target.units, queued, &level[queued]));
            queued += 1;
        }
        if let Some((i, result)) = in_flight.next().await {
            results[i] = Some(result);
        }
    }
    let results = level
        .iter()
        .zip(results)
        .filter_map(|(action, result)| Some((action, result?)));
    for (action, result) in results {
        let (Action::StartUnit { unit, app, .. } | Action::RestartUnit { unit, app }) = action
        else {
            unreachable!("a level holds only starts and restarts")
        };
        let ok = unit_job(report, &tree.revision, action.verb(), unit, app, result);
        crashpoint::hit("after-action");
        if ok {
            report.done.push(action.to_string());
        }
    }
}

/// Queues one start or restart and waits for its result; `i` is its place in the level.
async fn unit_start<U: UnitManager>(
    units: &U,
    i: usize,
    action: &Action,
) -> (usize, Result<(), SystemdError>) {
    crashpoint::hit("before-action");
    let result = match action {
        Action::StartUnit { unit, .. } => units.start(unit).await,
        Action::RestartUnit { unit, .. } => units.restart(unit).await,
        _ => unreachable!("a level holds only starts and restarts"),
    };
    (i, result)
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
    // The quadlet dir itself may not exist yet on a fresh host (or a test's temp root).
    if !quadlet_dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(quadlet_dir)
            .map_err(err)?;
    }
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

//! Restore: one app back from a backup, through the converge stage in restore mode.
//!
//! The backup is verified first (every sha256), and its files become a one-app
//! snapshot that is validated like any revision. The converge stage then observes and
//! plans that app only, writes the intent record, stops the app's units (dependents
//! first) and empties its volumes, applies the files with one reload, starts every unit
//! of the app, and gates them. The pass is recorded in history with trigger `restore`.
//!
//! **Where each volume is imported.** A volume made by one of the app's `.volume`
//! quadlets is removed, then made again by its own `-volume.service` during the apply
//! (quadlet's `podman volume create` with the file's `Label=`, `Driver=`, `Options=`…),
//! and imported right after that level of starts, before any container starts: a
//! volume made by legerd would get podman's defaults and keep them, since the service
//! finds it existing. Any other backed-up volume (a bare `Volume=name:/d`) is made with
//! podman's defaults, as podman itself would make it, and imported before the apply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::apply::{ApplyReport, ApplyTarget, apply};
use crate::backup::{VerifiedBackup, volume_name};
use crate::crashpoint;
use crate::model::{DesiredTree, QuadletKind};
use crate::plan::{Action, Plan};
use crate::systemd::UnitManager;

use super::{Host, blocking};

/// What a restore brings back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSpec {
    /// The app.
    pub app: String,
    /// The verified backup.
    pub backup: Arc<VerifiedBackup>,
}

fn rank(file: &str) -> usize {
    QuadletKind::from_file_name(file).map_or(usize::MAX, QuadletKind::start_rank)
}

impl RestoreSpec {
    /// The app's units in the restored tree.
    pub fn units(&self, tree: &DesiredTree) -> BTreeSet<String> {
        tree.apps
            .get(&self.app)
            .map(|a| a.units.iter().map(|u| u.name.clone()).collect())
            .unwrap_or_default()
    }

    /// The `-volume.service` of each backed-up volume that one of the restored app's
    /// `.volume` quadlets makes, by volume name.
    pub fn volume_units(&self, tree: &DesiredTree) -> BTreeMap<String, String> {
        let Some(app) = tree.apps.get(&self.app) else {
            return BTreeMap::new();
        };
        let backed_up: BTreeSet<&str> = self
            .backup
            .manifest
            .volumes
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        app.units
            .iter()
            .filter(|u| u.kind == QuadletKind::Volume)
            .filter_map(|u| {
                let text = app
                    .files
                    .get(&u.source_file)
                    .and_then(|f| std::str::from_utf8(&f.content).ok());
                let volume = volume_name(&u.source_file, text);
                backed_up
                    .contains(volume.as_str())
                    .then(|| (volume, u.name.clone()))
            })
            .collect()
    }

    /// Stops what runs now and what the backup has, dependents first, then empties
    /// the backup's volumes: a volume must not change under a running container. Units
    /// of other apps that mount one of the volumes and are running are stopped first
    /// (`podman volume rm` refuses a volume in use); the caller starts them again once
    /// the restore has applied. A volume its `.volume` quadlet makes
    /// ([`Self::volume_units`]) is removed and left for [`Self::import_made`]; any other
    /// is made with podman's defaults and imported now.
    pub async fn stop_and_import<U: UnitManager>(
        &self,
        host: &Host<'_, U>,
        tree: &DesiredTree,
        target: &ApplyTarget<'_, U>,
    ) -> Result<RestoreStops, String> {
        let app = self.app.clone();
        let installed = blocking::store(host.store, |s| s.inventory())
            .await
            .map_err(|e| e.to_string())?;
        let volumes: BTreeSet<String> = self
            .backup
            .manifest
            .volumes
            .iter()
            .map(|v| v.name.clone())
            .collect();
        let elsewhere = crate::backup::quiesce::running_users_elsewhere(
            host.units,
            &installed,
            &host.settings.paths.quadlet_dir,
            &app,
            &volumes,
        )
        .await;
        for unit in &elsewhere {
            host.units.stop(unit).await.map_err(|e| {
                format!("stop {unit} (another app's user of the volume) failed: {e}")
            })?;
            tracing::info!(unit = %unit, app = %app, "stopped while its volume is restored");
        }
        let mut stop: Vec<(usize, String)> = installed
            .iter()
            .filter(|e| e.app == app)
            .filter_map(|e| e.unit.clone().map(|u| (rank(&e.key), u)))
            .chain(
                tree.apps
                    .get(&app)
                    .into_iter()
                    .flat_map(|a| a.units.iter())
                    .map(|u| (rank(&u.source_file), u.name.clone())),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        stop.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        stop.dedup_by(|a, b| a.1 == b.1);
        let stops = Plan {
            actions: stop
                .iter()
                .map(|(_, unit)| Action::StopUnit {
                    unit: unit.clone(),
                    app: app.clone(),
                })
                .collect(),
            drift: Vec::new(),
        };
        let report = apply(&stops, tree, target)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(f) = report.unit_failures.first() {
            start_again(host.units, &elsewhere).await;
            return Err(format!("stop {} failed: {}", f.unit, f.error));
        }
        crashpoint::hit("after-restore-stop");
        let backups = host.backups();
        let made = self.volume_units(tree);
        let mut imported = Vec::new();
        for v in &self.backup.manifest.volumes {
            let result = if made.contains_key(&v.name) {
                backups.remove_volume(&v.name).await
            } else {
                backups.import_volume(&self.backup, &v.name).await
            };
            if let Err(e) = result {
                start_again(host.units, &elsewhere).await;
                return Err(e.to_string());
            }
            if !made.contains_key(&v.name) {
                imported.push(v.name.clone());
                crashpoint::hit("after-import");
            }
        }
        Ok(RestoreStops {
            stopped: elsewhere
                .iter()
                .cloned()
                .chain(stop.into_iter().map(|(_, u)| u))
                .collect(),
            imported,
            elsewhere,
        })
    }

    /// Imports each volume its `-volume.service` has just made again (the apply's
    /// level of volume starts has run), before any container starts. A volume whose
    /// service failed is not imported: the restore fails, naming the unit.
    pub async fn import_made<U: UnitManager>(
        &self,
        host: &Host<'_, U>,
        tree: &DesiredTree,
        started: &ApplyReport,
    ) -> Result<Vec<String>, String> {
        let backups = host.backups();
        let mut imported = Vec::new();
        for (volume, unit) in self.volume_units(tree) {
            if let Some(f) = started.unit_failures.iter().find(|f| f.unit == unit) {
                return Err(format!(
                    "start {unit} failed, so volume {volume} was not made again and not restored: {}",
                    f.error
                ));
            }
            backups
                .import_into_made(&self.backup, &volume)
                .await
                .map_err(|e| e.to_string())?;
            imported.push(volume);
            crashpoint::hit("after-import");
        }
        Ok(imported)
    }
}

/// What [`RestoreSpec::stop_and_import`] did.
#[derive(Debug, Clone, Default)]
pub struct RestoreStops {
    /// Every unit stopped, other apps' first.
    pub stopped: Vec<String>,
    /// Volumes imported before the apply (those no `.volume` quadlet makes).
    pub imported: Vec<String>,
    /// Units of other apps stopped because they mount a restored volume: started again
    /// by [`start_again`] once the restore has applied, or on its failure.
    pub elsewhere: Vec<String>,
}

/// Starts units of other apps stopped for a restore. A failure is logged, not the
/// restore's: the unit is another app's, and its own next pass heals it (self-heal).
pub async fn start_again<U: UnitManager>(units: &U, stopped: &[String]) -> Vec<String> {
    let mut started = Vec::new();
    for unit in stopped.iter().rev() {
        match units.start(unit).await {
            Ok(()) => started.push(unit.clone()),
            Err(e) => {
                tracing::warn!(unit = %unit, error = %e, "cannot start a unit stopped for a restore")
            }
        }
    }
    started
}

/// Splits a restore's plan where its containers' starts begin: the first part writes
/// the files, reloads and starts the networks and volumes (whose services make the
/// volumes), the second starts the rest, once the volumes are imported.
pub fn split_before_containers(plan: &Plan, tree: &DesiredTree) -> (Plan, Plan) {
    let rank: BTreeMap<&str, usize> = tree
        .apps
        .values()
        .flat_map(|a| a.units.iter())
        .map(|u| (u.name.as_str(), u.kind.start_rank()))
        .collect();
    let volumes = QuadletKind::Volume.start_rank();
    let at = plan
        .actions
        .iter()
        .position(|a| match a {
            Action::StartUnit { unit, .. } | Action::RestartUnit { unit, .. } => {
                rank.get(unit.as_str()).copied().unwrap_or(usize::MAX) > volumes
            }
            _ => false,
        })
        .unwrap_or(plan.actions.len());
    let (head, tail) = plan.actions.split_at(at);
    let part = |actions: &[Action]| Plan {
        actions: actions.to_vec(),
        drift: Vec::new(),
    };
    (part(head), part(tail))
}

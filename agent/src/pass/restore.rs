//! Restore: one app back from a backup, through the converge stage in restore mode.
//!
//! The backup is verified first (every sha256), and its files become a one-app
//! snapshot that is validated like any revision. The converge stage then observes and
//! plans that app only, writes the intent record, stops the app's units (dependents
//! first) and imports its volumes, applies the files with one reload, starts every unit
//! of the app, and gates them. The pass is recorded in history with trigger `restore`.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::apply::{ApplyTarget, apply};
use crate::backup::VerifiedBackup;
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

    /// Stops what runs now and what the backup has, dependents first, then imports
    /// the backup's volumes: a volume must not change under a running container.
    /// Returns the units stopped and the volumes imported.
    pub async fn stop_and_import<U: UnitManager>(
        &self,
        host: &Host<'_, U>,
        tree: &DesiredTree,
        target: &ApplyTarget<'_, U>,
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let app = self.app.clone();
        let installed = blocking::store(host.store, |s| s.inventory())
            .await
            .map_err(|e| e.to_string())?;
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
            return Err(format!("stop {} failed: {}", f.unit, f.error));
        }
        crashpoint::hit("after-restore-stop");
        let backups = host.backups();
        let mut imported = Vec::new();
        for v in &self.backup.manifest.volumes {
            backups
                .import_volume(&self.backup, &v.name)
                .await
                .map_err(|e| e.to_string())?;
            imported.push(v.name.clone());
            crashpoint::hit("after-import");
        }
        Ok((stop.into_iter().map(|(_, u)| u).collect(), imported))
    }
}

//! Quiesced exports: a volume is exported only while no running container of the app
//! writes to it.
//!
//! The containers and pods that mount a volume about to be exported are stopped right
//! before the export. The apply that follows restarts (or stops) them anyway, and a
//! restart of a stopped unit starts it, so the app sees one disruption, not two: the
//! stop is simply moved in front of the export. A unit the plan does not touch (it
//! mounts a volume whose `.volume` quadlet changed but is not restarted with it) is
//! started again right after the export. If the backup fails, every unit stopped here
//! is started again, so a refused apply leaves the app running as it was. The budget is
//! checked before anything stops ([`Backups::precheck`], with each volume at its last
//! measured export size), so only a volume that outgrew its last export can cost one
//! stop and start before a refusal, and a retried pass never stops the app again.
//!
//! [`quiesce_plan`] is the pure decision; [`take_quiesced`] runs it around
//! [`Backups::take`].

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use leger_api_types::BackupInfo;

use super::{
    Affected, BackupError, Backups, CurrentFile, affected_apps, current_files, volumes_to_export,
};
use crate::model::QuadletKind;
use crate::plan::{Action, Plan};
use crate::store::InventoryEntry;
use crate::systemd::UnitManager;

/// Which units to stop for the exports of one backup, in stop order (containers
/// before the pods they may sit in), and which of them the apply will not start again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quiesce {
    /// Stopped before the first export.
    pub stop: Vec<String>,
    /// Started again right after the backup: the plan neither restarts nor stops them.
    pub start_after: Vec<String>,
}

/// The units of `files` that mount any of `volumes` (containers, pods, kube units), in
/// stop order.
pub fn users_of(files: &[CurrentFile], volumes: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for f in files {
        let (Some(unit), Some(kind)) = (&f.entry.unit, QuadletKind::from_file_name(f.rel())) else {
            continue;
        };
        if kind == QuadletKind::Volume {
            continue;
        }
        let one = Affected {
            keys: [f.entry.key.clone()].into(),
            units: BTreeSet::new(),
        };
        if volumes_to_export(files, &one)
            .iter()
            .any(|v| volumes.contains(v))
        {
            out.push((kind.start_rank(), unit.clone()));
        }
    }
    // Dependents (higher start rank) stop first.
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out.dedup_by(|a, b| a.1 == b.1);
    out.into_iter().map(|(_, u)| u).collect()
}

/// What to stop for the backup `plan` needs, given which apps export volumes (an app
/// whose `leger.toml` says `backup_volumes = false` exports none and stops nothing).
pub fn quiesce_plan(
    plan: &Plan,
    files_of: impl Fn(&str) -> Vec<CurrentFile>,
    exports_volumes: impl Fn(&str) -> bool,
) -> Quiesce {
    let touched: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::RestartUnit { unit, .. }
            | Action::StopUnit { unit, .. }
            | Action::StartUnit { unit, .. } => Some(unit.as_str()),
            _ => None,
        })
        .collect();
    let mut q = Quiesce::default();
    for (app, affected) in affected_apps(plan) {
        if !exports_volumes(&app) {
            continue;
        }
        let files = files_of(&app);
        let volumes = volumes_to_export(&files, &affected);
        if volumes.is_empty() {
            continue;
        }
        for unit in users_of(&files, &volumes) {
            if !touched.contains(unit.as_str()) {
                q.start_after.push(unit.clone());
            }
            q.stop.push(unit);
        }
    }
    q
}

/// [`Backups::take`] with the units that write to exported volumes stopped first (see
/// the module docs).
#[allow(clippy::too_many_arguments)]
pub async fn take_quiesced<U: UnitManager>(
    backups: &Backups,
    units: &U,
    plan: &Plan,
    inventory: &[InventoryEntry],
    quadlet_dir: &Path,
    current: Option<&str>,
    next: &str,
    now: SystemTime,
) -> Result<Vec<BackupInfo>, BackupError> {
    if backups.settings.keep == 0 {
        return Ok(Vec::new());
    }
    // A backup that cannot fit is refused before anything stops. Both read files and
    // walk the backup folder: the blocking pool's work.
    let (b, p, inv, dir, cur) = (
        backups.clone(),
        plan.clone(),
        inventory.to_vec(),
        quadlet_dir.to_owned(),
        current.map(str::to_owned),
    );
    let q = crate::pass::blocking::run(move || {
        b.precheck(&p, &inv, &dir, cur.as_deref())?;
        Ok::<_, BackupError>(quiesce_plan(
            &p,
            |app| current_files(&inv, app, &dir).unwrap_or_default(),
            |app| b.policies.get(app).copied().unwrap_or_default().volumes,
        ))
    })
    .await?;
    let mut stopped = Vec::new();
    let mut result = Ok(Vec::new());
    for unit in &q.stop {
        match units.stop(unit).await {
            Ok(()) => {
                tracing::info!(unit = %unit, "stopped for a consistent volume export");
                stopped.push(unit.clone());
            }
            Err(e) => {
                result = Err(BackupError::Systemd {
                    action: "stop",
                    unit: unit.clone(),
                    source: Box::new(e),
                });
                break;
            }
        }
    }
    if result.is_ok() {
        result = backups
            .take(plan, inventory, quadlet_dir, current, next, now)
            .await;
    }
    // On failure nothing else happens in this pass: start everything stopped here.
    let restart: Vec<&String> = if result.is_ok() {
        stopped
            .iter()
            .filter(|u| q.start_after.contains(u))
            .collect()
    } else {
        stopped.iter().rev().collect()
    };
    for unit in restart {
        if let Err(e) = units.start(unit).await {
            tracing::warn!(unit = %unit, error = %e, "cannot start a unit stopped for a backup");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContentHash;
    use crate::plan::WriteReason;
    use crate::systemd::recording::{Call, RecordingUnitManager};

    fn file(key: &str, unit: &str, text: &str) -> CurrentFile {
        CurrentFile {
            entry: InventoryEntry {
                key: key.into(),
                app: key.split('/').next().unwrap().into(),
                hash: ContentHash::of(text.as_bytes()),
                unit: Some(unit.into()),
                revision: "r1".into(),
                installed_at: "2025-01-01T00:00:00Z".into(),
            },
            content: Some(text.as_bytes().to_vec()),
        }
    }

    fn files() -> Vec<CurrentFile> {
        vec![
            file("app/data.volume", "data-volume.service", "[Volume]\n"),
            file(
                "app/db.container",
                "db.service",
                "[Container]\nImage=busybox\nVolume=data.volume:/d\n",
            ),
            file(
                "app/reader.container",
                "reader.service",
                "[Container]\nImage=busybox\nVolume=data.volume:/d:ro\n",
            ),
            file(
                "app/web.container",
                "web.service",
                "[Container]\nImage=busybox\n",
            ),
        ]
    }

    fn plan(actions: Vec<Action>) -> Plan {
        Plan {
            actions,
            drift: vec![],
        }
    }

    #[test]
    fn quiesce_stops_every_user_of_an_exported_volume_and_only_them() {
        let p = plan(vec![
            Action::WriteFile {
                key: "app/db.container".into(),
                app: "app".into(),
                hash: ContentHash::of(b"v2"),
                reason: WriteReason::Update,
            },
            Action::Reload,
            Action::RestartUnit {
                unit: "db.service".into(),
                app: "app".into(),
            },
        ]);
        let q = quiesce_plan(&p, |_| files(), |_| true);
        assert_eq!(
            q.stop,
            ["db.service", "reader.service"],
            "web mounts nothing"
        );
        assert_eq!(
            q.start_after,
            ["reader.service"],
            "db is restarted by the apply anyway; reader is not"
        );
        let none = quiesce_plan(&p, |_| files(), |_| false);
        assert_eq!(
            none,
            Quiesce::default(),
            "backup_volumes = false stops nothing"
        );
        let web_only = plan(vec![Action::WriteFile {
            key: "app/web.container".into(),
            app: "app".into(),
            hash: ContentHash::of(b"v2"),
            reason: WriteReason::Update,
        }]);
        assert_eq!(
            quiesce_plan(&web_only, |_| files(), |_| true),
            Quiesce::default()
        );
    }

    #[tokio::test]
    async fn take_quiesced_stops_before_the_export_and_restarts_only_what_the_apply_will_not() {
        let t = tempfile::tempdir().unwrap();
        let quadlets = t.path().join("q");
        for f in files() {
            let p = quadlets.join(&f.entry.key);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f.content.unwrap()).unwrap();
        }
        let inventory: Vec<InventoryEntry> = files().into_iter().map(|f| f.entry).collect();
        // The volume does not exist in podman here (no podman in unit tests), so the
        // backup holds the files; the point is the order of unit calls around it.
        let rec = std::sync::Arc::new(crate::podman::RecordingPodman::new());
        rec.set_volume_exists("systemd-data", false);
        let backups = Backups::new(
            t.path().join("b"),
            leger_config::BackupSettings {
                keep: 3,
                max_age: std::time::Duration::from_secs(3600),
                max_bytes: None,
                min_free: None,
            },
        )
        .with_podman(rec);
        let units = RecordingUnitManager::new();
        let p = plan(vec![
            Action::WriteFile {
                key: "app/data.volume".into(),
                app: "app".into(),
                hash: ContentHash::of(b"v2"),
                reason: WriteReason::Update,
            },
            Action::Reload,
            Action::RestartUnit {
                unit: "db.service".into(),
                app: "app".into(),
            },
        ]);
        let taken = take_quiesced(
            &backups,
            &units,
            &p,
            &inventory,
            &quadlets,
            Some("r1"),
            "r2",
            SystemTime::now(),
        )
        .await
        .unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(
            units.calls(),
            [
                Call::Stop("db.service".into()),
                Call::Stop("reader.service".into()),
                Call::Start("reader.service".into()),
            ]
        );
    }
}

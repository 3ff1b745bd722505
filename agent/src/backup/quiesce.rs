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
//! checked before anything stops ([`Backups::precheck`], with each volume measured on
//! disk), so a backup that cannot fit never stops the app, not even before a volume's
//! first export.
//!
//! [`quiesce_plan`] is the pure decision; [`take_quiesced`] runs it around
//! [`Backups::take`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

use leger_api_types::BackupInfo;

use super::{
    BackupError, Backups, CurrentFile, VolumeQuadlets, affected_apps, current_files,
    volumes_to_export,
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
    let index = VolumeQuadlets::of(files);
    let mut out: Vec<(usize, String)> = Vec::new();
    for f in files {
        let (Some(unit), Some(kind)) = (&f.entry.unit, QuadletKind::from_file_name(f.rel())) else {
            continue;
        };
        if kind == QuadletKind::Volume {
            continue;
        }
        if index.volumes_of(f).iter().any(|v| volumes.contains(v)) {
            out.push((kind.start_rank(), unit.clone()));
        }
    }
    // Dependents (higher start rank) stop first.
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out.dedup_by(|a, b| a.1 == b.1);
    out.into_iter().map(|(_, u)| u).collect()
}

/// Every installed app's files with their bytes on disk; an app whose files cannot be
/// read is left out. The rows are grouped by app once: filtering the whole inventory
/// per app was quadratic (15% of a one-app change at 10,000 apps).
fn all_current_files(inventory: &[InventoryEntry], quadlet_dir: &Path) -> Vec<CurrentFile> {
    let mut by_app: BTreeMap<&str, Vec<InventoryEntry>> = BTreeMap::new();
    for e in inventory {
        by_app.entry(e.app.as_str()).or_default().push(e.clone());
    }
    by_app
        .iter()
        .flat_map(|(app, rows)| current_files(rows, app, quadlet_dir).unwrap_or_default())
        .collect()
}

/// What to stop for the backup `plan` needs, given the managed files of every
/// installed app (`all_files`) and which apps export volumes (an app whose `leger.toml`
/// says `backup_volumes = false` exports none and stops nothing).
///
/// Every managed unit that mounts an exported volume stops, whichever app or quadlet it
/// comes from: another app's container writing to a shared volume would make the
/// archive as inconsistent as the app's own. A unit of another app is never touched by
/// this plan's apply, so it is started again right after the export.
pub fn quiesce_plan(
    plan: &Plan,
    all_files: &[CurrentFile],
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
        // All apps' files, so a `Volume=x.volume:/d` naming another app's quadlet
        // resolves to that quadlet's `VolumeName=`.
        let volumes = volumes_to_export(all_files, &affected);
        if volumes.is_empty() {
            continue;
        }
        for unit in users_of(all_files, &volumes) {
            if q.stop.contains(&unit) {
                continue;
            }
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
    // A backup that cannot fit is refused before anything stops.
    backups
        .precheck(plan, inventory, quadlet_dir, current)
        .await?;
    // Every installed app's files, read on the blocking pool: a unit of another app
    // that mounts an exported volume is stopped too.
    let (inv, dir) = (inventory.to_vec(), quadlet_dir.to_owned());
    let all_files: Vec<CurrentFile> =
        crate::pass::blocking::run(move || all_current_files(&inv, &dir)).await;
    let q = quiesce_plan(plan, &all_files, |app| {
        backups
            .policies
            .get(app)
            .copied()
            .unwrap_or_default()
            .volumes
    });
    let q = skip_units_at_rest(units, q).await;
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

/// The managed units of apps other than `app` that mount any of `volumes` and are up
/// now, in stop order: a restore stops them too, since `podman volume rm` refuses a
/// volume a container still uses, and starts them again once the volume is back.
pub async fn running_users_elsewhere<U: UnitManager>(
    units: &U,
    inventory: &[InventoryEntry],
    quadlet_dir: &Path,
    app: &str,
    volumes: &BTreeSet<String>,
) -> Vec<String> {
    let others: BTreeSet<&str> = inventory
        .iter()
        .map(|e| e.app.as_str())
        .filter(|a| *a != app)
        .collect();
    // Every app's files, so a reference to the app's own `.volume` resolves.
    let all_files = all_current_files(inventory, quadlet_dir);
    let users: Vec<String> = users_of(&all_files, volumes)
        .into_iter()
        .filter(|u| {
            all_files.iter().any(|f| {
                f.entry.unit.as_deref() == Some(u) && others.contains(f.entry.app.as_str())
            })
        })
        .collect();
    let q = skip_units_at_rest(
        units,
        Quiesce {
            stop: users.clone(),
            start_after: users,
        },
    )
    .await;
    q.stop
}

/// Leaves out the units the apply will not start (`start_after`) that are not up now:
/// a unit of another app that its operator stopped, or one that failed, must not be
/// started by a backup. A unit whose state cannot be read is taken as running: a
/// consistent archive matters more than one extra start.
async fn skip_units_at_rest<U: UnitManager>(units: &U, mut q: Quiesce) -> Quiesce {
    if q.start_after.is_empty() {
        return q;
    }
    let Ok(states) = units.unit_states(&q.start_after).await else {
        return q;
    };
    let at_rest: BTreeSet<String> = states
        .into_iter()
        .filter(|(_, s)| !s.is_up())
        .map(|(u, _)| u)
        .collect();
    q.stop.retain(|u| !at_rest.contains(u));
    q.start_after.retain(|u| !at_rest.contains(u));
    q
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
        let q = quiesce_plan(&p, &files(), |_| true);
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
        let none = quiesce_plan(&p, &files(), |_| false);
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
            quiesce_plan(&web_only, &files(), |_| true),
            Quiesce::default()
        );
    }

    #[test]
    fn quiesce_stops_other_apps_units_that_mount_the_volume_and_starts_them_after() {
        let mut all = files();
        all.push(file(
            "other/copier.container",
            "copier.service",
            "[Container]\nImage=busybox\nVolume=data.volume:/in:ro\n",
        ));
        all.push(file(
            "other/named.container",
            "named.service",
            "[Container]\nImage=busybox\nVolume=systemd-data:/x\n",
        ));
        all.push(file(
            "third/elsewhere.container",
            "elsewhere.service",
            "[Container]\nImage=busybox\nVolume=systemd-other:/x\nVolume=/srv:/srv\n",
        ));
        let p = plan(vec![
            Action::WriteFile {
                key: "app/db.container".into(),
                app: "app".into(),
                hash: ContentHash::of(b"v2"),
                reason: WriteReason::Update,
            },
            Action::RestartUnit {
                unit: "db.service".into(),
                app: "app".into(),
            },
        ]);
        let q = quiesce_plan(&p, &all, |_| true);
        assert_eq!(
            q.stop,
            [
                "copier.service",
                "db.service",
                "named.service",
                "reader.service"
            ]
        );
        assert_eq!(
            q.start_after,
            ["copier.service", "named.service", "reader.service"],
            "units of other apps are not in this plan: they start right after the export"
        );
        // A VolumeName= in the owning app is followed from another app's reference.
        let mut renamed = all.clone();
        renamed[0] = file(
            "app/data.volume",
            "data-volume.service",
            "[Volume]\nVolumeName=shared-data\n",
        );
        renamed.push(file(
            "third/by-name.container",
            "by-name.service",
            "[Container]\nImage=busybox\nVolume=shared-data:/x\n",
        ));
        let q = quiesce_plan(&p, &renamed, |_| true);
        assert!(q.stop.contains(&"by-name.service".to_owned()), "{q:?}");
        assert!(q.stop.contains(&"copier.service".to_owned()), "{q:?}");
        assert!(!q.stop.contains(&"named.service".to_owned()), "{q:?}");
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
        units.set_state("reader.service", up());
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
                Call::UnitStates(vec!["reader.service".into()]),
                Call::Stop("db.service".into()),
                Call::Stop("reader.service".into()),
                Call::Start("reader.service".into()),
            ]
        );

        // A unit the apply will not start, at rest before the backup, stays at rest.
        let units = RecordingUnitManager::new();
        units.set_state(
            "reader.service",
            crate::model::UnitState {
                load_state: "loaded".into(),
                active_state: "inactive".into(),
                sub_state: "dead".into(),
            },
        );
        take_quiesced(
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
        assert_eq!(
            units.calls(),
            [
                Call::UnitStates(vec!["reader.service".into()]),
                Call::Stop("db.service".into()),
            ]
        );
    }

    fn up() -> crate::model::UnitState {
        crate::model::UnitState {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
        }
    }
}

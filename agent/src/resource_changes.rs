//! Changes podman does not apply by itself: a changed `.network` or `.volume` quadlet.
//!
//! Why: the units quadlet makes for networks and volumes run `podman network create
//! --ignore` / `podman volume create --ignore`, so restarting them keeps the network or
//! volume that already exists, old options and all. Reporting such a change as applied
//! would be a lie. This module works out, from the files a pass updates, what must
//! happen instead:
//! - a changed network: stop its dependents, remove the podman network, and let the
//!   pass's restarts create it again with the new options, all in the same pass;
//! - a changed volume: recreating it loses data, so only when the app's `leger.toml`
//!   says `[volumes] recreate_on_change = true`, and after a backup; otherwise it is
//!   drift that cannot be healed, reported in status, the journal and the plan.
//!
//! It is pure: the tree and the updated install keys in, steps and reports out.

use std::collections::BTreeSet;

use crate::model::{DesiredTree, QuadletKind, Unit};
use crate::quadlet;

/// One step, in the order they must run, before the pass's own restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceStep {
    /// Stop a unit that uses the resource, so podman lets it go.
    StopUnit {
        /// The unit.
        unit: String,
    },
    /// Back an app's volume up before it is removed (`podman volume export`).
    BackupVolume {
        /// The app.
        app: String,
        /// The podman volume.
        volume: String,
    },
    /// `podman network rm`: the restart of its unit creates it again.
    RemoveNetwork {
        /// The podman network.
        network: String,
    },
    /// `podman volume rm`: the restart of its unit creates it again.
    RemoveVolume {
        /// The podman volume.
        volume: String,
    },
}

/// A changed volume legerd may not recreate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDrift {
    /// The quadlet's install key (`db/data.volume`).
    pub file: String,
    /// The podman volume.
    pub volume: String,
    /// What to tell people.
    pub message: String,
}

/// What a pass must do about changed networks and volumes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePlan {
    /// Steps to run after the files are written and systemd reloaded, before the
    /// pass's restarts.
    pub steps: Vec<ResourceStep>,
    /// Volumes that changed but stay as they are.
    pub drift: Vec<VolumeDrift>,
}

/// Works out the steps for the files `updated` (install keys the source changed, not
/// new files: a new network or volume is created fresh anyway).
pub fn plan_resources<'a>(
    tree: &DesiredTree,
    updated: impl IntoIterator<Item = &'a str>,
) -> ResourcePlan {
    let mut plan = ResourcePlan::default();
    let mut stopped: BTreeSet<String> = BTreeSet::new();
    for key in updated {
        let Some((app_name, rel)) = key.split_once('/') else {
            continue;
        };
        let Some(app) = tree.apps.get(app_name) else {
            continue;
        };
        let kind = QuadletKind::from_file_name(rel);
        if !matches!(kind, Some(QuadletKind::Network | QuadletKind::Volume)) {
            continue;
        }
        let Some(file) = app.files.get(rel) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&file.content) else {
            continue;
        };
        let Ok(q) = quadlet::parse(key, text) else {
            continue;
        };
        let Some(own) = app.units.iter().find(|u| u.source_file == rel) else {
            continue;
        };
        let dependents = dependents(tree, key, own);
        let stop = |plan: &mut ResourcePlan, stopped: &mut BTreeSet<String>| {
            for unit in &dependents {
                if stopped.insert(unit.name.clone()) {
                    plan.steps.push(ResourceStep::StopUnit {
                        unit: unit.name.clone(),
                    });
                }
            }
        };
        if q.kind == QuadletKind::Network {
            let network = resource_name(&q, "NetworkName");
            stop(&mut plan, &mut stopped);
            plan.steps.push(ResourceStep::RemoveNetwork { network });
        } else {
            let volume = resource_name(&q, "VolumeName");
            if app.config.volumes.recreate_on_change {
                stop(&mut plan, &mut stopped);
                plan.steps.push(ResourceStep::BackupVolume {
                    app: app.name.clone(),
                    volume: volume.clone(),
                });
                plan.steps.push(ResourceStep::RemoveVolume { volume });
            } else {
                plan.drift.push(VolumeDrift {
                    file: key.to_owned(),
                    message: format!(
                        "{key} changed, but podman keeps the existing volume {volume} with its old options: recreating it would lose its data, so it was left as it is; recreate it by hand, or set [volumes] recreate_on_change = true in {app_name}/leger.toml to let legerd back it up and recreate it"
                    ),
                    volume,
                });
            }
        }
    }
    // Stop containers before the pods that hold them, as systemd would.
    plan.steps.sort_by_key(|s| match s {
        ResourceStep::StopUnit { .. } => 0,
        ResourceStep::BackupVolume { .. } => 1,
        ResourceStep::RemoveNetwork { .. } | ResourceStep::RemoveVolume { .. } => 2,
    });
    plan
}

/// The podman name of a network or volume: `NetworkName=`/`VolumeName=`, else
/// `systemd-<stem>`, as quadlet names it.
fn resource_name(q: &quadlet::QuadletFile, key: &str) -> String {
    match q.get(q.kind.section(), key) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!("systemd-{}", q.stem),
    }
}

/// Units of the whole tree that use `key` (directly, or through a pod), the
/// resource's own unit excluded; containers first, then pods.
fn dependents<'a>(tree: &'a DesiredTree, key: &str, own: &Unit) -> Vec<&'a Unit> {
    let mut out: Vec<&Unit> = tree
        .apps
        .values()
        .flat_map(|a| &a.units)
        .filter(|u| u.name != own.name && u.depends_on_files.contains(key))
        .collect();
    out.sort_by_key(|u| (std::cmp::Reverse(u.kind.start_rank()), u.name.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::assemble;
    use crate::model::Snapshot;
    use crate::quadlet::{KeyTable, Target};
    use std::sync::Arc;

    fn tree(files: &[(&str, &str)]) -> DesiredTree {
        let snapshot = Snapshot {
            revision: "r".into(),
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), Arc::from(c.as_bytes())))
                .collect(),
        };
        let limits = leger_config::Limits {
            max_file_size: 1 << 20,
            max_files: 100,
        };
        assemble(&snapshot, &limits, &Target::offline(KeyTable::newest())).unwrap()
    }

    const NET: &str = "[Network]\nLabel=v=2\n";

    #[test]
    fn plan_resources_recreates_a_changed_network_after_stopping_its_users() {
        let t = tree(&[
            ("net/front.network", NET),
            ("pods/app.pod", "[Pod]\nNetwork=front.network\n"),
            ("web/web.container", "[Container]\nImage=x\nPod=app.pod\n"),
            (
                "api/api.container",
                "[Container]\nImage=x\nNetwork=front.network\n",
            ),
            ("other/o.container", "[Container]\nImage=x\n"),
        ]);
        let p = plan_resources(&t, ["net/front.network"]);
        assert_eq!(
            p.steps,
            vec![
                ResourceStep::StopUnit {
                    unit: "api.service".into()
                },
                ResourceStep::StopUnit {
                    unit: "web.service".into()
                },
                ResourceStep::StopUnit {
                    unit: "app-pod.service".into()
                },
                ResourceStep::RemoveNetwork {
                    network: "systemd-front".into()
                },
            ]
        );
        assert!(p.drift.is_empty());
        // A container file change is not a resource change.
        assert_eq!(
            plan_resources(&t, ["web/web.container"]),
            ResourcePlan::default()
        );
    }

    #[test]
    fn plan_resources_reports_a_changed_volume_as_drift_unless_allowed() {
        let files = [
            ("db/data.volume", "[Volume]\nVolumeName=dbdata\nLabel=v=2\n"),
            (
                "db/db.container",
                "[Container]\nImage=x\nVolume=data.volume:/var/lib/db\n",
            ),
        ];
        let p = plan_resources(&tree(&files), ["db/data.volume"]);
        assert!(p.steps.is_empty());
        assert_eq!(p.drift.len(), 1);
        assert_eq!(p.drift[0].volume, "dbdata");
        assert!(
            p.drift[0]
                .message
                .contains("recreate_on_change = true in db/leger.toml"),
            "{}",
            p.drift[0].message
        );

        let mut allowed = files.to_vec();
        allowed.push(("db/leger.toml", "[volumes]\nrecreate_on_change = true\n"));
        let p = plan_resources(&tree(&allowed), ["db/data.volume"]);
        assert_eq!(
            p.steps,
            vec![
                ResourceStep::StopUnit {
                    unit: "db.service".into()
                },
                ResourceStep::BackupVolume {
                    app: "db".into(),
                    volume: "dbdata".into()
                },
                ResourceStep::RemoveVolume {
                    volume: "dbdata".into()
                },
            ]
        );
        assert!(p.drift.is_empty());
    }
}

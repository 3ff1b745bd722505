//! The resources stage: before the apply, stop the users of a changed network and
//! remove it, so the pass's restarts create it again with the new options; recreate a
//! changed volume only where its app allows it, else report it as drift that cannot be
//! healed. What to do is worked out by [`crate::resource_changes`] (pure); this stage
//! only runs it, through systemd and the podman seam.

use leger_api_types::status::reason;

use super::{Failure, Host};
use crate::journal;
use crate::model::DesiredTree;
use crate::plan::Plan;
use crate::resource_changes::{ResourceStep, VolumeDrift, plan_resources};
use crate::systemd::UnitManager;

/// What the stage did and what it could not do.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One line per step done, for history.
    pub actions: Vec<String>,
    /// Changed volumes left as they are.
    pub drift: Vec<VolumeDrift>,
}

/// Runs the steps for the networks and volumes `plan` updates. The volume backups
/// were taken by the backup stage, which exports the volumes of every changing
/// quadlet before anything changes.
pub async fn run<U: UnitManager>(
    host: &Host<'_, U>,
    tree: &DesiredTree,
    plan: &Plan,
) -> Result<Outcome, Failure> {
    let resources = plan_resources(tree, plan.updated_files());
    let mut out = Outcome::default();
    let fail = |what: String| Failure::new(reason::APPLY_FAILED, what, false);
    for step in &resources.steps {
        match step {
            ResourceStep::StopUnit { unit } => {
                host.units.stop(unit).await.map_err(|e| {
                    fail(format!(
                        "cannot stop {unit} before recreating what it uses: {e}"
                    ))
                })?;
                out.actions.push(format!("stop {unit}"));
            }
            ResourceStep::BackupVolume { volume, .. } => {
                // Taken by the backup stage; said here so history shows the order.
                out.actions.push(format!("backed up volume {volume}"));
            }
            ResourceStep::RemoveNetwork { network } => {
                let exists = host.podman.network_exists(network).await.map_err(|e| {
                    fail(format!("cannot tell whether network {network} exists: {e}"))
                })?;
                if exists {
                    host.podman.network_remove(network).await.map_err(|e| {
                        fail(format!(
                            "cannot remove network {network} to recreate it with its changed options: {e}; a container outside leger may still use it"
                        ))
                    })?;
                    out.actions
                        .push(format!("remove network {network} (recreated)"));
                }
            }
            ResourceStep::RemoveVolume { volume } => {
                let exists = host.podman.volume_exists(volume).await.map_err(|e| {
                    fail(format!("cannot tell whether volume {volume} exists: {e}"))
                })?;
                if exists {
                    host.podman.volume_remove(volume).await.map_err(|e| {
                        fail(format!("cannot remove volume {volume} to recreate it: {e}"))
                    })?;
                    out.actions
                        .push(format!("remove volume {volume} (recreated)"));
                }
            }
        }
    }
    for d in &resources.drift {
        journal::unhealable_drift(&tree.revision, &d.file, &d.message);
    }
    out.drift = resources.drift;
    Ok(out)
}

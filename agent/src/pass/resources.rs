//! The resources stage: before the apply, stop the users of a changed network and
//! remove it, so the pass's restarts create it again with the new options; recreate a
//! changed volume only where its app allows it, else report it as drift that cannot be
//! healed. What to do is worked out by [`crate::resource_changes`] (pure); this stage
//! only runs it, through systemd and the podman seam.
//!
//! The drift that cannot be healed is kept in the store ([`remember`], [`remembered`]):
//! the `.volume` file is written in the pass that finds it, so no later pass sees the
//! change again, and a restarted legerd must still report it until the file changes
//! again or leaves the tree.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use leger_api_types::status::reason;
use serde::{Deserialize, Serialize};

use super::{Failure, Host, blocking};
use crate::journal;
use crate::model::DesiredTree;
use crate::plan::Plan;
use crate::resource_changes::{ResourceStep, VolumeDrift, plan_resources};
use crate::store::{Store, StoreError};
use crate::systemd::UnitManager;

/// Store meta key: JSON map quadlet install key → [`UnhealableVolume`], the changed
/// volumes legerd left as they are.
const META_UNHEALABLE: &str = "unhealable_drift";

/// A changed volume left as it was, with what tells whether someone recreated it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnhealableVolume {
    /// What to tell people (status, plan, journal).
    pub message: String,
    /// The podman volume.
    pub volume: String,
    /// Its creation time when legerd found the change: a volume removed or created
    /// again since (by hand, as the message advises) has the new options.
    pub created: String,
    /// The hash (hex) of the `.volume` file the volume was made from: a later change
    /// back to it (a rollback) is no drift.
    #[serde(default)]
    pub origin: String,
}

/// Install key → the drift that cannot be healed.
pub type UnhealableDrift = BTreeMap<String, UnhealableVolume>;

/// The drift that cannot be healed, as the last pass left it (empty when none or
/// unreadable: the next change to a `.volume` finds it again).
pub fn remembered(store: &Store) -> UnhealableDrift {
    store
        .meta(META_UNHEALABLE)
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Keeps `drift` for the next legerd.
pub async fn remember(
    store: &Arc<Mutex<Store>>,
    drift: &UnhealableDrift,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(drift).expect("a map of strings serializes");
    blocking::store(store, move |s| s.set_meta(META_UNHEALABLE, &text)).await
}

/// Brings `state` up to date after a pass that applied `plan` to `tree` and found
/// `found`, and keeps it for the next legerd when it changed:
/// - an entry goes when its file left the tree or was written again (a new change is
///   judged anew), or when its volume was removed or created again since (healed by
///   hand);
/// - a change found now counts only if its volume exists: a missing one is created
///   with the new options. It is said in the journal.
///
/// A podman that cannot say keeps what is known.
pub async fn keep_drift<U: UnitManager>(
    host: &Host<'_, U>,
    state: &mut UnhealableDrift,
    tree: &DesiredTree,
    plan: &Plan,
    found: Vec<VolumeDrift>,
) {
    let before = state.clone();
    let written: BTreeSet<&str> = plan.updated_files().collect();
    // Entries about a file written again: their volume may still be the one they saw.
    let rewritten: UnhealableDrift = state
        .iter()
        .filter(|(file, _)| written.contains(file.as_str()))
        .map(|(f, d)| (f.clone(), d.clone()))
        .collect();
    state.retain(|file, _| {
        let (app, rel) = file.split_once('/').unwrap_or_default();
        tree.apps
            .get(app)
            .is_some_and(|a| a.files.contains_key(rel))
            && !written.contains(file.as_str())
    });
    let mut healed = Vec::new();
    for (file, d) in state.iter() {
        match host.podman.volume_created(&d.volume).await {
            Ok(now) if now.as_deref() != Some(d.created.as_str()) => healed.push(file.clone()),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(volume = %d.volume, error = %e, "cannot tell whether a drifted volume was recreated")
            }
        }
    }
    for file in healed {
        if let Some(d) = state.remove(&file) {
            tracing::info!(volume = %d.volume, target = %file, "volume recreated since its change: no longer drift");
        }
    }
    // What the installed files are before this pass writes: a volume that exists was
    // made from them, unless an earlier drift entry knows better.
    let installed: BTreeMap<String, String> = if found.is_empty() {
        BTreeMap::new()
    } else {
        blocking::store(host.store, |s| s.inventory())
            .await
            .map(|inv| inv.into_iter().map(|e| (e.key, e.hash.to_hex())).collect())
            .unwrap_or_default()
    };
    for d in found {
        let created = match host.podman.volume_created(&d.volume).await {
            Ok(None) => continue,
            Ok(Some(created)) => created,
            Err(e) => {
                tracing::warn!(volume = %d.volume, error = %e, "cannot inspect a changed volume");
                String::new()
            }
        };
        let origin = match rewritten.get(&d.file) {
            Some(old) if old.created == created => old.origin.clone(),
            _ => installed.get(&d.file).cloned().unwrap_or_default(),
        };
        let now = d
            .file
            .split_once('/')
            .and_then(|(app, rel)| tree.apps.get(app)?.files.get(rel))
            .map(|f| f.hash.to_hex());
        if !origin.is_empty() && now.as_deref() == Some(origin.as_str()) {
            tracing::info!(volume = %d.volume, target = %d.file, "the volume's file is back to what the volume was made from: no drift");
            continue;
        }
        journal::unhealable_drift(&tree.revision, &d.file, &d.message);
        state.insert(
            d.file,
            UnhealableVolume {
                message: d.message,
                volume: d.volume,
                created,
                origin,
            },
        );
    }
    if *state != before
        && let Err(e) = remember(host.store, state).await
    {
        tracing::warn!(error = %e, "cannot keep the drift that cannot be healed");
    }
}

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
///
/// It runs before any file is written. When a step fails (a container outside leger
/// still uses the network, so podman will not remove it), the units it stopped are
/// started again, under their unchanged files: the pass fails and the revision in
/// force keeps running.
pub async fn run<U: UnitManager>(
    host: &Host<'_, U>,
    tree: &DesiredTree,
    plan: &Plan,
) -> Result<Outcome, Failure> {
    let resources = plan_resources(tree, plan.updated_files());
    let mut out = Outcome::default();
    let mut stopped: Vec<String> = Vec::new();
    if let Err(what) = run_steps(host, &resources.steps, &mut out, &mut stopped).await {
        let mut message = what;
        if !stopped.is_empty() {
            // Pods before the containers they hold: the reverse of the stops.
            let mut not_restarted = Vec::new();
            for unit in stopped.iter().rev() {
                if let Err(e) = host.units.start(unit).await {
                    not_restarted.push(format!("{unit} ({e})"));
                }
            }
            message.push_str(&format!(
                "; nothing was written and {} started again",
                stopped.join(", ")
            ));
            if !not_restarted.is_empty() {
                message.push_str(&format!(
                    ", but these did not start: {}",
                    not_restarted.join(", ")
                ));
            }
        }
        return Err(Failure::new(reason::APPLY_FAILED, message, false));
    }
    out.drift = resources.drift;
    Ok(out)
}

/// The check to run before anything stops, the backup stage's quiesce included (it
/// stops the users of the volumes it exports, and only the apply starts them again): a
/// changed network that containers outside leger's stopped units use fails the pass
/// here, with the host untouched.
pub async fn check<U: UnitManager>(
    host: &Host<'_, U>,
    tree: &DesiredTree,
    plan: &Plan,
) -> Result<(), Failure> {
    let resources = plan_resources(tree, plan.updated_files());
    check_network_users(host, &resources.steps)
        .await
        .map_err(|what| Failure::new(reason::APPLY_FAILED, what, false))
}

/// Refuses, before anything is stopped, a network podman would not remove: one that
/// a container outside the units the pass stops uses (started by hand, or by a unit
/// leger does not manage). A pod's infra container goes with its pod; should podman
/// still refuse, [`run`] starts the units it stopped again.
async fn check_network_users<U: UnitManager>(
    host: &Host<'_, U>,
    steps: &[ResourceStep],
) -> Result<(), String> {
    let stopping: BTreeSet<&str> = steps
        .iter()
        .filter_map(|s| match s {
            ResourceStep::StopUnit { unit } => Some(unit.as_str()),
            _ => None,
        })
        .collect();
    for step in steps {
        let ResourceStep::RemoveNetwork { network } = step else {
            continue;
        };
        let exists = host
            .podman
            .network_exists(network)
            .await
            .map_err(|e| format!("cannot tell whether network {network} exists: {e}"))?;
        if !exists {
            continue;
        }
        let users = host.podman.network_users(network).await.map_err(|e| {
            format!("cannot list the containers on network {network} before recreating it: {e}")
        })?;
        let outside: Vec<String> = users
            .into_iter()
            .filter(|u| !u.infra && !u.unit.as_deref().is_some_and(|n| stopping.contains(n)))
            .map(|u| match u.unit {
                Some(unit) => format!("{} (run by {unit})", u.container),
                None => u.container,
            })
            .collect();
        if !outside.is_empty() {
            return Err(format!(
                "network {network} changed, but podman cannot recreate it with the new options while containers leger does not stop use it: {}; stop or disconnect them (`podman network disconnect {network} <container>`), and the next pass applies the change; nothing was stopped or written",
                outside.join(", ")
            ));
        }
    }
    Ok(())
}

/// Runs `steps` in order; `stopped` lists the units stopped so far, for the undo.
async fn run_steps<U: UnitManager>(
    host: &Host<'_, U>,
    steps: &[ResourceStep],
    out: &mut Outcome,
    stopped: &mut Vec<String>,
) -> Result<(), String> {
    for step in steps {
        match step {
            ResourceStep::StopUnit { unit } => {
                host.units.stop(unit).await.map_err(|e| {
                    format!("cannot stop {unit} before recreating what it uses: {e}")
                })?;
                stopped.push(unit.clone());
                out.actions.push(format!("stop {unit}"));
            }
            ResourceStep::BackupVolume { volume, .. } => {
                // Taken by the backup stage; said here so history shows the order.
                out.actions.push(format!("backed up volume {volume}"));
            }
            ResourceStep::RemoveNetwork { network } => {
                let exists =
                    host.podman.network_exists(network).await.map_err(|e| {
                        format!("cannot tell whether network {network} exists: {e}")
                    })?;
                if exists {
                    host.podman.network_remove(network).await.map_err(|e| {
                        format!(
                            "cannot remove network {network} to recreate it with its changed options: {e}; a container outside leger may still use it: find it with `podman ps -a --filter network={network}`, stop or disconnect it, and the next pass applies the change"
                        )
                    })?;
                    out.actions
                        .push(format!("remove network {network} (recreated)"));
                }
            }
            ResourceStep::RemoveVolume { volume } => {
                let exists = host
                    .podman
                    .volume_exists(volume)
                    .await
                    .map_err(|e| format!("cannot tell whether volume {volume} exists: {e}"))?;
                if exists {
                    host.podman.volume_remove(volume).await.map_err(|e| {
                        format!("cannot remove volume {volume} to recreate it: {e}")
                    })?;
                    out.actions
                        .push(format!("remove volume {volume} (recreated)"));
                }
            }
        }
    }
    Ok(())
}

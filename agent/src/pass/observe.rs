//! Observe: the inventory, the managed files on disk, foreign files, unit states, and
//! the intent record of an apply that a crash interrupted.

use std::collections::BTreeSet;
use std::sync::Arc;

use leger_api_types::status::reason;

use super::intent::{self, Intent, Phase};
use super::{Failure, Host, blocking};
use crate::model::{DesiredTree, ManagedFile, Observed, install_key};
use crate::store::InventoryEntry;
use crate::systemd::UnitManager;

/// What the observe stage found.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The planner's input.
    pub observed: Observed,
    /// The inventory as read (the backup stage needs it).
    pub inventory: Vec<InventoryEntry>,
    /// The intent record of an interrupted apply, if any.
    pub intent: Option<Intent>,
    /// Units an interrupted apply of the same revision changed: the health gate judges
    /// them again (after a crash inside the gate, without restarting them).
    pub regate: BTreeSet<String>,
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::new(reason::APPLY_FAILED, e.to_string(), false)
}

/// Observes the host for `tree`. With `scope` (a restore), only that app's inventory
/// rows count: the rest of the host is not the restore's business.
pub async fn observe<U: UnitManager>(
    host: &Host<'_, U>,
    tree: &Arc<DesiredTree>,
    scope: Option<&str>,
) -> Result<Observation, Failure> {
    let scope_owned = scope.map(str::to_owned);
    let mut inventory = blocking::store(host.store, |s| s.inventory())
        .await
        .map_err(failed)?;
    if let Some(app) = &scope_owned {
        inventory.retain(|e| &e.app == app);
    }
    let intent = intent::load(host.store).await.map_err(failed)?;
    let quadlet_dir = host.settings.paths.quadlet_dir.clone();
    let (t, inv) = (Arc::clone(tree), inventory.clone());
    let mut observed = blocking::run(move || crate::observe::observe_files(&t, &inv, &quadlet_dir))
        .await
        .map_err(failed)?;
    if let Some(i) = &intent {
        adopt(host, tree, i, &mut observed, &mut inventory).await?;
    }
    crate::observe::observe_units(tree, &inventory, host.units, &mut observed)
        .await
        .map_err(failed)?;
    let mut regate = BTreeSet::new();
    if let Some(i) = &intent {
        if i.revision == tree.revision {
            // The same revision was being applied: its gate has not passed yet, so the
            // units it changed are judged again even where their files already match.
            regate = i.gated.clone();
        }
        if i.phase == Phase::Applying || i.revision != tree.revision {
            // Files may have been written but never loaded by a restart.
            observed.interrupted = i.units.clone();
        }
        tracing::warn!(
            leger_revision = %i.revision,
            phase = ?i.phase,
            units = i.units.len(),
            "finishing an apply a crash interrupted"
        );
    }
    Ok(Observation {
        observed,
        inventory,
        intent,
        regate,
    })
}

/// A file on disk with no inventory row, whose bytes the intent record says legerd
/// was writing, is legerd's own: the row was lost (power cut before it reached the
/// disk). Adopt it, row first, instead of stalling every pass on a "foreign" file.
async fn adopt<U>(
    host: &Host<'_, U>,
    tree: &DesiredTree,
    intent: &Intent,
    observed: &mut Observed,
    inventory: &mut Vec<InventoryEntry>,
) -> Result<(), Failure> {
    let candidates: Vec<String> = observed
        .foreign
        .iter()
        .filter(|k| intent.files.contains_key(*k))
        .cloned()
        .collect();
    for key in candidates {
        let path = host.settings.paths.quadlet_dir.join(&key);
        let on_disk = blocking::run(move || crate::observe::hash_on_disk(&path))
            .await
            .map_err(failed)?;
        let Some(hash) = on_disk else { continue };
        if intent.files.get(&key) != Some(&hash.to_hex()) {
            continue;
        }
        let Some((app, rel)) = key.split_once('/') else {
            continue;
        };
        let unit = tree.apps.get(app).and_then(|a| {
            a.units
                .iter()
                .find(|u| u.source_file == rel)
                .map(|u| u.name.clone())
        });
        let entry = InventoryEntry {
            key: key.clone(),
            app: app.to_owned(),
            hash,
            unit: unit.clone(),
            revision: intent.revision.clone(),
            installed_at: crate::clock::now_rfc3339(),
        };
        let row = entry.clone();
        blocking::store(host.store, move |s| s.upsert_inventory(&row))
            .await
            .map_err(failed)?;
        tracing::warn!(key = %key, "adopted a file the intent record lists but the inventory lost");
        observed.foreign.remove(&key);
        observed.managed.insert(
            key.clone(),
            ManagedFile {
                app: app.to_owned(),
                installed: hash,
                on_disk: Some(hash),
                unit,
            },
        );
        debug_assert_eq!(install_key(app, rel), key);
        inventory.push(entry);
    }
    Ok(())
}

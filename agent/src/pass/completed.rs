//! Run-to-completion units: which units ran and exited 0 under their current files.
//!
//! A container that runs to completion (a migration, a one-shot job, `Type=oneshot`
//! without `RemainAfterExit=`) ends `inactive`, which also reads as "not running" to
//! self-heal. legerd remembers, per unit, the fingerprint of the files it ran with when
//! the health gate saw it finish; while the fingerprint holds and the unit is not
//! `failed`, it is done, not drift. A change to its files (or a failure) runs it again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::blocking;
use crate::model::{DesiredTree, Observed, Unit};
use crate::store::{Store, StoreError};

/// Store meta key: JSON map unit → fingerprint.
const META_COMPLETED: &str = "completed_units";

/// The fingerprint of the files a unit depends on, as the tree has them.
pub fn fingerprint(tree: &DesiredTree, unit: &Unit) -> String {
    let mut h = Sha256::new();
    for key in &unit.depends_on_files {
        let file = key
            .split_once('/')
            .and_then(|(app, rel)| tree.apps.get(app)?.files.get(rel));
        h.update(key.as_bytes());
        h.update([0]);
        if let Some(f) = file {
            h.update(f.hash.0);
        }
    }
    hex::encode(h.finalize())
}

/// The remembered completions.
pub async fn load(store: &Arc<Mutex<Store>>) -> Result<BTreeMap<String, String>, StoreError> {
    let text = blocking::store(store, |s| s.meta(META_COMPLETED)).await?;
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// Marks the units of `tree` that completed under their current files.
pub fn fill(observed: &mut Observed, tree: &DesiredTree, memory: &BTreeMap<String, String>) {
    for unit in tree.apps.values().flat_map(|a| a.units.iter()) {
        if memory.get(&unit.name) == Some(&fingerprint(tree, unit)) {
            observed.completed.insert(unit.name.clone());
        }
    }
}

/// Remembers `finished` (units the gate saw complete) under `tree`'s files, and forgets
/// units that left the tree. Returns every unit known complete.
pub async fn remember(
    store: &Arc<Mutex<Store>>,
    tree: &DesiredTree,
    finished: &BTreeSet<String>,
) -> Result<BTreeSet<String>, StoreError> {
    let before = load(store).await?;
    let mut memory = before.clone();
    let units: BTreeMap<&str, &Unit> = tree
        .apps
        .values()
        .flat_map(|a| a.units.iter())
        .map(|u| (u.name.as_str(), u))
        .collect();
    memory.retain(|name, _| units.contains_key(name.as_str()));
    for name in finished {
        if let Some(u) = units.get(name.as_str()) {
            memory.insert(name.clone(), fingerprint(tree, u));
        }
    }
    let known: BTreeSet<String> = memory
        .iter()
        .filter(|(name, fp)| {
            units
                .get(name.as_str())
                .is_some_and(|u| fingerprint(tree, u) == **fp)
        })
        .map(|(name, _)| name.clone())
        .collect();
    if memory != before {
        let text = serde_json::to_string(&memory).expect("a map of strings serializes");
        blocking::store(store, move |s| s.set_meta(META_COMPLETED, &text)).await?;
    }
    Ok(known)
}

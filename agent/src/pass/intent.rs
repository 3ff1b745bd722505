//! The intent record: what an apply in progress is about to do, kept in the store
//! until the revision's health gate has passed.
//!
//! If legerd dies mid-apply, the next pass restarts the listed units even though their
//! files already match (a file written but never loaded by a restart would otherwise
//! look converged while the old unit kept running). If it dies inside the health gate
//! (phase `gating`), the next pass runs that revision's gate again instead of recording
//! it good unchecked. A file on disk with no inventory row (the row was lost with the
//! power) whose bytes the record lists is adopted rather than refused as foreign.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::blocking;
use crate::store::{Store, StoreError};

/// Store meta key of the intent record; empty when no apply is in progress.
const META_APPLY_INTENT: &str = "apply_intent";

/// Where the interrupted work stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Files and unit jobs were in progress.
    Applying,
    /// The apply finished; the health gate had not passed yet.
    Gating,
}

/// One apply in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The revision being applied (empty for a record written by an older legerd).
    pub revision: String,
    /// The converge mode, for logs.
    pub mode: String,
    /// Units the apply starts or restarts.
    pub units: BTreeSet<String>,
    /// Units the health gate judges (the ones the revision changed).
    #[serde(default)]
    pub gated: BTreeSet<String>,
    /// Files the apply writes: install key → sha256 hex.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Where it stood.
    pub phase: Phase,
}

/// Writes the record.
pub async fn save(store: &Arc<Mutex<Store>>, intent: &Intent) -> Result<(), StoreError> {
    let text = serde_json::to_string(intent).expect("an intent record serializes");
    blocking::store(store, move |s| s.set_meta(META_APPLY_INTENT, &text)).await
}

/// Forgets the record: the revision passed its gate (or was rolled back).
pub async fn clear(store: &Arc<Mutex<Store>>) -> Result<(), StoreError> {
    blocking::store(store, |s| s.set_meta(META_APPLY_INTENT, "")).await
}

/// The record of an interrupted apply, if any.
pub async fn load(store: &Arc<Mutex<Store>>) -> Result<Option<Intent>, StoreError> {
    let text = blocking::store(store, |s| s.meta(META_APPLY_INTENT)).await?;
    Ok(text.as_deref().and_then(parse))
}

/// Parses a record; the older format is one unit per line.
fn parse(text: &str) -> Option<Intent> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(intent) = serde_json::from_str(text) {
        return Some(intent);
    }
    Some(Intent {
        revision: String::new(),
        mode: "unknown".into(),
        units: text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        gated: BTreeSet::new(),
        files: BTreeMap::new(),
        phase: Phase::Applying,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_reads_the_older_line_format() {
        let i = parse("web.service\ndb.service\n").unwrap();
        assert_eq!(i.phase, Phase::Applying);
        assert_eq!(i.units.len(), 2);
        assert_eq!(parse("  "), None);
    }

    #[test]
    fn intent_round_trips_as_json() {
        let i = Intent {
            revision: "abc".into(),
            mode: "forward".into(),
            units: ["web.service".to_owned()].into(),
            gated: ["web.service".to_owned()].into(),
            files: [("web/web.container".to_owned(), "00".to_owned())].into(),
            phase: Phase::Gating,
        };
        assert_eq!(parse(&serde_json::to_string(&i).unwrap()), Some(i));
    }
}

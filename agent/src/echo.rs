//! Recognises the echo of legerd's own work among drift triggers, so that an apply is
//! not followed by a pass that finds nothing to do.
//!
//! An apply writes quadlet files (inotify reports them as `drift-file`) and restarts
//! units (which pass through `inactive`, reported as `drift-unit:<unit>`). The
//! controller reads triggers only between passes, so by the time it looks at these the
//! apply is over and the inventory holds what legerd wrote. A trigger is dropped only
//! when the host, *as it is now*, shows no drift for it:
//! - a file event: every path it names is what the inventory says legerd installed
//!   (same bytes), or is gone and not in the inventory (legerd removed it), or is an
//!   app folder legerd manages and still there, or gone with nothing managed in it;
//! - a unit event: the unit is up now (`active`, or on its way).
//!
//! Why this never hides drift: a hand edit that is still there differs from the
//! inventory's hash, a deleted managed file is missing, a stopped unit is not up; each
//! keeps its trigger. A change that was undone before legerd looked left nothing to
//! heal. Anything this module cannot read (no store, no D-Bus answer) keeps the
//! trigger. The periodic resync (`reconcile.resync`) stays the safety net.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::model::{ContentHash, UnitState};
use crate::schedule::Trigger;
use crate::store::Store;
use crate::systemd::UnitManager;

/// What a watched path holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathNow {
    /// A file with these bytes' hash.
    File(ContentHash),
    /// A folder.
    Dir,
    /// Nothing (or unreadable: treated as changed unless legerd removed it).
    Absent,
}

/// Reads what `path` holds now. Blocking.
pub fn path_now(path: &Path) -> PathNow {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => PathNow::Dir,
        Ok(_) => {
            std::fs::read(path).map_or(PathNow::Absent, |b| PathNow::File(ContentHash::of(&b)))
        }
        Err(_) => PathNow::Absent,
    }
}

/// True when `key` (a path relative to the quadlet dir) holding `now` is exactly
/// what legerd left there, by the inventory (`key` → hash).
pub fn file_is_own(key: &str, now: &PathNow, inventory: &BTreeMap<String, ContentHash>) -> bool {
    match now {
        PathNow::File(hash) => inventory.get(key) == Some(hash),
        PathNow::Absent => !inventory.contains_key(key) && !manages_under(key, inventory),
        PathNow::Dir => key.is_empty() || manages_under(key, inventory),
    }
}

/// True when the inventory holds a file under the folder `key`.
fn manages_under(key: &str, inventory: &BTreeMap<String, ContentHash>) -> bool {
    let prefix = format!("{key}/");
    inventory
        .range(prefix.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&prefix))
}

/// True when the unit's state shows nothing to heal.
pub fn unit_is_settled(state: &UnitState) -> bool {
    state.is_up()
}

/// Drops the triggers in `triggers` that are the echo of legerd's own work (see the
/// module doc); every other trigger is returned unchanged, in order.
pub async fn drop_echoes<U: UnitManager>(
    triggers: Vec<Trigger>,
    quadlet_dir: &Path,
    store: &Arc<Mutex<Store>>,
    units: &U,
) -> Vec<Trigger> {
    let paths: BTreeSet<PathBuf> = triggers
        .iter()
        .filter_map(|t| match t {
            Trigger::QuadletFilesChanged(p) => Some(p.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    let own_paths: BTreeSet<PathBuf> = if paths.is_empty() {
        BTreeSet::new()
    } else {
        let dir = quadlet_dir.to_owned();
        let store = Arc::clone(store);
        tokio::task::spawn_blocking(move || own_paths(&dir, &store, paths))
            .await
            .unwrap_or_default()
    };
    let unit_names: Vec<String> = triggers
        .iter()
        .filter_map(|t| match t {
            Trigger::UnitLeftActive(u) => Some(u.clone()),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let settled: BTreeSet<String> = if unit_names.is_empty() {
        BTreeSet::new()
    } else {
        match units.unit_states(&unit_names).await {
            Ok(states) => states
                .into_iter()
                .filter(|(_, s)| unit_is_settled(s))
                .map(|(u, _)| u)
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    };
    triggers
        .into_iter()
        .filter(|t| {
            let echo = match t {
                Trigger::QuadletFilesChanged(p) => {
                    !p.is_empty() && p.iter().all(|p| own_paths.contains(p))
                }
                Trigger::UnitLeftActive(u) => settled.contains(u),
                _ => false,
            };
            if echo {
                tracing::debug!(trigger = %t.label(), "own change, not drift");
            }
            !echo
        })
        .collect()
}

/// The paths of `paths` that hold what legerd left there. Blocking.
fn own_paths(dir: &Path, store: &Arc<Mutex<Store>>, paths: BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    let inventory: BTreeMap<String, ContentHash> =
        match store.lock().expect("store lock").inventory() {
            Ok(entries) => entries.into_iter().map(|e| (e.key, e.hash)).collect(),
            Err(_) => return BTreeSet::new(),
        };
    paths
        .into_iter()
        .filter(|p| {
            let Ok(rel) = p.strip_prefix(dir) else {
                return false;
            };
            let Some(key) = rel.to_str() else {
                return false;
            };
            file_is_own(key, &path_now(p), &inventory)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> BTreeMap<String, ContentHash> {
        [
            ("web/web.container".to_owned(), ContentHash::of(b"v2")),
            ("web/conf/nginx.conf".to_owned(), ContentHash::of(b"c")),
        ]
        .into()
    }

    #[test]
    fn files_as_legerd_left_them_are_own() {
        let inv = inv();
        assert!(file_is_own(
            "web/web.container",
            &PathNow::File(ContentHash::of(b"v2")),
            &inv
        ));
        // Removed by legerd (no longer in the inventory).
        assert!(file_is_own("old/old.container", &PathNow::Absent, &inv));
        assert!(file_is_own("old", &PathNow::Absent, &inv));
        // App folders legerd manages, and the quadlet dir itself.
        assert!(file_is_own("web", &PathNow::Dir, &inv));
        assert!(file_is_own("web/conf", &PathNow::Dir, &inv));
        assert!(file_is_own("", &PathNow::Dir, &inv));
    }

    #[test]
    fn drift_is_never_own() {
        let inv = inv();
        // A hand edit that is still there.
        assert!(!file_is_own(
            "web/web.container",
            &PathNow::File(ContentHash::of(b"hand")),
            &inv
        ));
        // A managed file deleted, or its folder.
        assert!(!file_is_own("web/web.container", &PathNow::Absent, &inv));
        assert!(!file_is_own("web", &PathNow::Absent, &inv));
        assert!(!file_is_own("web/conf", &PathNow::Absent, &inv));
        // A file or folder legerd does not manage.
        assert!(!file_is_own(
            "web/extra.container",
            &PathNow::File(ContentHash::of(b"x")),
            &inv
        ));
        assert!(!file_is_own("stray", &PathNow::Dir, &inv));
        // A prefix is not a folder: `we` holds nothing managed.
        assert!(!file_is_own("we", &PathNow::Dir, &inv));
    }

    #[test]
    fn units_up_are_settled_others_are_not() {
        let state = |a: &str| UnitState {
            load_state: "loaded".into(),
            active_state: a.into(),
            sub_state: String::new(),
        };
        assert!(unit_is_settled(&state("active")));
        assert!(unit_is_settled(&state("activating")));
        assert!(!unit_is_settled(&state("inactive")));
        assert!(!unit_is_settled(&state("failed")));
    }

    #[test]
    fn path_now_reads_files_folders_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        assert_eq!(path_now(&f), PathNow::Absent);
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(path_now(&f), PathNow::File(ContentHash::of(b"x")));
        assert_eq!(path_now(dir.path()), PathNow::Dir);
    }
}

//! What legerd is waiting on right now: every external command and every D-Bus call
//! registers itself here for as long as it runs.
//!
//! A pass that outlives its budget is abandoned, and its status must say *where* it was
//! stuck ("`podman volume export db` for 4m12s"), not only that it was slow. The pass
//! cannot tell: it is the future being dropped. So the seams that leave the process
//! (the command runner, the D-Bus unit manager) note each operation on the way out and
//! forget it on the way back, and the controller reads the oldest one when it gives up.
//!
//! It is process-wide on purpose, like [`crate::crashpoint`]: "which call is in flight"
//! is a property of the process, and threading a handle through every seam would add a
//! parameter to each call site for a value only the controller reads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One operation in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// What is running, for people: a command line or a D-Bus method and its unit.
    pub label: String,
    /// How long it has been running.
    pub running_for: Duration,
}

/// Operations in flight by id; ids grow, so the first entry is the oldest.
static IN_FLIGHT: Mutex<BTreeMap<u64, (String, Instant)>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn in_flight() -> MutexGuard<'static, BTreeMap<u64, (String, Instant)>> {
    // A panic while holding this lock cannot leave the map half-updated (one insert or
    // remove), so a poisoned lock is still good.
    IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps an operation registered until dropped, so an operation abandoned by a dropped
/// future (a pass over its budget) unregisters itself too.
#[derive(Debug)]
#[must_use = "the operation is unregistered when the guard drops"]
pub struct Guard {
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        in_flight().remove(&self.id);
    }
}

/// Registers `label` as in flight until the returned guard drops.
pub fn begin(label: impl Into<String>) -> Guard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    in_flight().insert(id, (label.into(), Instant::now()));
    Guard { id }
}

/// The oldest operation still in flight: when a pass is stuck, the one it waits on.
pub fn oldest() -> Option<Operation> {
    in_flight().values().next().map(|(label, since)| Operation {
        label: label.clone(),
        running_for: since.elapsed(),
    })
}

/// Every operation in flight, oldest first.
pub fn all() -> Vec<Operation> {
    in_flight()
        .values()
        .map(|(label, since)| Operation {
            label: label.clone(),
            running_for: since.elapsed(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_registers_until_the_guard_drops() {
        // Other tests of this process may register operations at the same time, so
        // look for this test's own labels only.
        let mine = |label: &str| all().iter().any(|o| o.label == label);
        let a = begin("activity-test a");
        let b = begin("activity-test b");
        assert!(mine("activity-test a") && mine("activity-test b"));
        let order: Vec<String> = all()
            .into_iter()
            .map(|o| o.label)
            .filter(|l| l.starts_with("activity-test"))
            .collect();
        assert_eq!(order, ["activity-test a", "activity-test b"]);
        drop(a);
        assert!(!mine("activity-test a"));
        assert!(mine("activity-test b"));
        drop(b);
        assert!(!mine("activity-test b"));
    }
}

/// An applied revision whose health gate is running.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The revision.
    pub revision: String,
    /// Its apps and their units as they stood right after the apply, so status lists
    /// them while the gate runs (after an early READY, `legerctl status` is the first
    /// thing an operator runs).
    pub apps: Vec<leger_api_types::status::AppStatus>,
}

/// The revision whose health gate is running after its apply, if any. The controller
/// watches it: the first applied revision is when legerd is READY, not when its gate has
/// settled, and meanwhile status and `STATUS=` say it is verifying.
static VERIFYING: std::sync::LazyLock<tokio::sync::watch::Sender<Option<Applied>>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(None).0);

/// Marks the health gate of a revision as running until dropped.
#[derive(Debug)]
#[must_use = "verifying ends when the guard drops"]
pub struct Verifying(());

impl Drop for Verifying {
    fn drop(&mut self) {
        VERIFYING.send_replace(None);
    }
}

/// The apply of `applied.revision` is done and its health gate starts.
pub fn verifying(applied: Applied) -> Verifying {
    VERIFYING.send_replace(Some(applied));
    Verifying(())
}

/// Follows [`verifying`]: `Some` while a health gate runs.
pub fn watch_verifying() -> tokio::sync::watch::Receiver<Option<Applied>> {
    VERIFYING.subscribe()
}

//! Structured events for the systemd journal.
//!
//! Under systemd the tracing-journald layer turns each event field into a journal field
//! (`leger_revision` → `LEGER_REVISION`), so `journalctl MESSAGE_ID=<id>` finds every
//! "revision applied" on a host without grepping text. The ids are fixed forever: a
//! dashboard or alert that matches on them must keep working across releases.

use crate::plan::Drift;

/// `MESSAGE_ID` of "revision applied".
pub const MESSAGE_ID_APPLIED: &str = "fc2e5769da014e6c827e73b17a4eb9e8";
/// `MESSAGE_ID` of "reconcile failed".
pub const MESSAGE_ID_FAILED: &str = "1acaf21b2c9c4ed38206236d1bd2dcd1";
/// `MESSAGE_ID` of "rolled back" (safe-updates issue).
pub const MESSAGE_ID_ROLLED_BACK: &str = "e92ae15451524376bb05ff71f22d147d";
/// `MESSAGE_ID` of "drift corrected".
pub const MESSAGE_ID_DRIFT: &str = "075f71dfa2064dffb43f4f33dd543800";
/// `MESSAGE_ID` of "secret rotated" (secrets issue).
pub const MESSAGE_ID_SECRET_ROTATED: &str = "cf8abde6214d4b5483af05bd9cee82f8";

/// A revision was applied.
pub fn applied(revision: &str, actions: &[String]) {
    tracing::info!(
        message_id = MESSAGE_ID_APPLIED,
        leger_revision = revision,
        leger_outcome = "applied",
        actions = actions.len(),
        "revision {} applied: {}",
        crate::reconciler::short(revision),
        actions.join(", ")
    );
}

/// A pass failed.
pub fn failed(revision: Option<&str>, reason: &str, message: &str) {
    tracing::error!(
        message_id = MESSAGE_ID_FAILED,
        leger_revision = revision.unwrap_or(""),
        leger_outcome = "failed",
        reason,
        "reconcile failed ({reason}): {message}"
    );
}

/// A revision failed its health gate and the last good one was put back.
pub fn rolled_back(bad: &str, good: &str, unit: &str, message: &str) {
    tracing::error!(
        message_id = MESSAGE_ID_ROLLED_BACK,
        leger_revision = bad,
        leger_unit = unit,
        leger_action = "rollback",
        leger_outcome = "rolled_back",
        rolled_back_to = good,
        "revision {} rolled back to {}: {message}",
        crate::reconciler::short(bad),
        crate::reconciler::short(good)
    );
}

/// Drift was seen (and corrected when self-heal is on).
pub fn drift(revision: &str, d: &Drift) {
    if d.corrected {
        tracing::warn!(
            message_id = MESSAGE_ID_DRIFT,
            leger_revision = revision,
            leger_action = "self-heal",
            drift_kind = d.kind.as_str(),
            target = d.target.as_str(),
            "drift corrected: {} {}: {}",
            d.kind.as_str(),
            d.target,
            d.detail
        );
    } else {
        tracing::warn!(
            leger_revision = revision,
            drift_kind = d.kind.as_str(),
            target = d.target.as_str(),
            "drift seen (self_heal is off): {} {}: {}",
            d.kind.as_str(),
            d.target,
            d.detail
        );
    }
}

//! Structured events for the systemd journal.
//!
//! Under systemd the tracing-journald layer turns each event field into a journal field
//! (`leger_revision` → `LEGER_REVISION`), so `journalctl MESSAGE_ID=<id>` finds every
//! "revision applied" on a host without grepping text. The ids are fixed forever: a
//! dashboard or alert that matches on them must keep working across releases.
//! `docs/journal.md` lists them with their fields.
//!
//! Per-unit events carry `LEGER_APP`, `LEGER_UNIT` and `LEGER_ACTION`, so
//! `journalctl LEGER_APP=web` shows everything legerd did to one app. Outside systemd the
//! same events go to stderr as text, fields included.

use crate::model::Revision;
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
        Revision(revision),
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

/// A unit job legerd ran (`start`, `stop`, `restart`), with systemd's error when it
/// failed.
pub fn unit_job(revision: &str, app: &str, unit: &str, action: &str, error: Option<&str>) {
    match error {
        None => tracing::info!(
            leger_revision = revision,
            leger_app = app,
            leger_unit = unit,
            leger_action = action,
            leger_outcome = "ok",
            "{action} {unit} (app {app})"
        ),
        Some(error) => tracing::warn!(
            leger_revision = revision,
            leger_app = app,
            leger_unit = unit,
            leger_action = action,
            leger_outcome = "failed",
            "{action} {unit} (app {app}) failed: {error}"
        ),
    }
}

/// A file legerd wrote into or removed from the quadlet dir (`write`, `remove`).
pub fn file_change(revision: &str, app: &str, key: &str, action: &str, unit: Option<&str>) {
    tracing::info!(
        leger_revision = revision,
        leger_app = app,
        leger_unit = unit.unwrap_or(""),
        leger_action = action,
        leger_outcome = "ok",
        file = key,
        "{action} {key}"
    );
}

/// The app a drift target belongs to: install keys are `app/relpath`; unit names
/// carry no app.
fn drift_app(d: &Drift) -> &str {
    match d.kind {
        crate::plan::DriftKind::File => d.target.split_once('/').map_or("", |(app, _)| app),
        crate::plan::DriftKind::Unit => "",
    }
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
        Revision(bad),
        Revision(good)
    );
}

/// Drift was seen (and corrected when self-heal is on).
pub fn drift(revision: &str, d: &Drift) {
    let unit = match d.kind {
        crate::plan::DriftKind::Unit => d.target.as_str(),
        crate::plan::DriftKind::File => "",
    };
    if d.corrected {
        tracing::warn!(
            message_id = MESSAGE_ID_DRIFT,
            leger_revision = revision,
            leger_app = drift_app(d),
            leger_unit = unit,
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
            leger_app = drift_app(d),
            leger_unit = unit,
            drift_kind = d.kind.as_str(),
            target = d.target.as_str(),
            "drift seen (self_heal is off): {} {}: {}",
            d.kind.as_str(),
            d.target,
            d.detail
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids are a public contract: every one must be in docs/journal.md.
    #[test]
    fn journal_message_ids_are_documented() {
        let doc = include_str!("../../docs/journal.md");
        for id in [
            MESSAGE_ID_APPLIED,
            MESSAGE_ID_FAILED,
            MESSAGE_ID_ROLLED_BACK,
            MESSAGE_ID_DRIFT,
            MESSAGE_ID_SECRET_ROTATED,
        ] {
            assert!(doc.contains(id), "{id} is missing from docs/journal.md");
        }
    }
}

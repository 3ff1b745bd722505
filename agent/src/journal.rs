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

/// `MESSAGE_ID` of "drift that cannot be healed" (a changed volume podman keeps).
pub const MESSAGE_ID_UNHEALABLE_DRIFT: &str = "5b0a7f3c9e2d4c61a8d3f4e2b7c9a016";

/// A change legerd cannot make without losing data: a changed `.volume` whose app does
/// not allow recreating the volume.
pub fn unhealable_drift(revision: &str, file: &str, message: &str) {
    let app = file.split('/').next().unwrap_or_default();
    tracing::warn!(
        message_id = MESSAGE_ID_UNHEALABLE_DRIFT,
        leger_revision = revision,
        leger_app = app,
        target = file,
        "drift that cannot be healed: {message}"
    );
}

/// `MESSAGE_ID` of "change over the API socket" (allowed or refused).
pub const MESSAGE_ID_API_CHANGE: &str = "c40f43cc2a3f4ffc9c5e39f095e331d1";
/// `MESSAGE_ID` of "desired.toml changed on disk".
pub const MESSAGE_ID_DESIRED_CHANGED: &str = "5fac4724b38349069135c267c216804e";
/// `MESSAGE_ID` of "app restored from a backup".
pub const MESSAGE_ID_RESTORED: &str = "c5c552498efb421c91bd4eedc9dfbc02";

/// A write request on the API socket: who (the kernel's `SO_PEERCRED`), what endpoint,
/// on what target (a secret's *name*, an app, never a value), and how it ended:
/// `ok`, `failed` or `denied`.
pub fn api_change(
    caller: &crate::access::Caller,
    endpoint: &str,
    target: &str,
    outcome: &str,
    status: u16,
) {
    let pid = caller
        .pid
        .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    let groups = caller
        .groups
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let message = format!(
        "API {endpoint} on {target} by uid {} gid {} pid {pid}: {outcome} ({status})",
        caller.uid, caller.gid
    );
    if outcome == "ok" {
        tracing::info!(
            message_id = MESSAGE_ID_API_CHANGE,
            leger_caller_uid = caller.uid,
            leger_caller_gid = caller.gid,
            leger_caller_pid = pid.as_str(),
            leger_caller_groups = groups.as_str(),
            leger_endpoint = endpoint,
            leger_target = target,
            leger_outcome = outcome,
            http_status = status,
            "{message}"
        );
    } else {
        tracing::warn!(
            message_id = MESSAGE_ID_API_CHANGE,
            leger_caller_uid = caller.uid,
            leger_caller_gid = caller.gid,
            leger_caller_pid = pid.as_str(),
            leger_caller_groups = groups.as_str(),
            leger_endpoint = endpoint,
            leger_target = target,
            leger_outcome = outcome,
            http_status = status,
            "{message}"
        );
    }
}

/// The top-level tables of two desired.toml texts that differ (`source`, `policy`,
/// `secrets`), or `whole file` when either does not parse as TOML.
pub fn changed_tables(before: &str, after: &str) -> String {
    let parse = |t: &str| t.parse::<toml::Table>().ok();
    match (parse(before), parse(after)) {
        (Some(b), Some(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            let changed: Vec<&str> = keys
                .into_iter()
                .filter(|k| b.get(*k) != a.get(*k))
                .map(String::as_str)
                .collect();
            if changed.is_empty() {
                "formatting only".to_owned()
            } else {
                changed.join(", ")
            }
        }
        _ => "whole file".to_owned(),
    }
}

/// legerd noticed a new desired.toml. There is no caller to name (an editor, legerctl,
/// config management all write the file), so the event says "file changed on disk" and
/// carries the file's owner and mode (an atomic write leaves the writer as owner), the
/// tables that changed and the sha256 of the new text; never the text, which could
/// carry a URL someone should not have put there.
pub fn desired_changed(path: &std::path::Path, before: Option<&str>, after: &str) {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok();
    let owner = meta.as_ref().map_or_else(
        || "unknown".to_owned(),
        |m| format!("{}:{}", m.uid(), m.gid()),
    );
    let mode = meta.as_ref().map_or_else(
        || "unknown".to_owned(),
        |m| format!("{:o}", m.mode() & 0o7777),
    );
    let changed = match before {
        Some(b) => changed_tables(b, after),
        None => "first seen".to_owned(),
    };
    let digest = hex::encode(sha2::Sha256::digest(after.as_bytes()));
    tracing::info!(
        message_id = MESSAGE_ID_DESIRED_CHANGED,
        leger_caller = "file changed on disk",
        leger_endpoint = "desired.toml",
        leger_target = %path.display(),
        leger_file_owner = owner.as_str(),
        leger_file_mode = mode.as_str(),
        leger_changed = changed.as_str(),
        sha256 = digest.as_str(),
        "desired.toml changed on disk ({changed}); file owner {owner}, mode {mode}"
    );
}

/// An app was restored from a backup over the API.
pub fn restored(app: &str, backup: &str, revision: &str, volumes: usize, files: usize) {
    tracing::info!(
        message_id = MESSAGE_ID_RESTORED,
        leger_app = app,
        leger_revision = revision,
        leger_action = "restore",
        leger_outcome = "ok",
        backup,
        volumes,
        files,
        "restored app {app} from backup {backup} (revision {})",
        Revision(revision)
    );
}

/// How many actions the "revision applied" message lists before it only counts the
/// rest. Each action also has its own per-unit or per-file event, so the summary does
/// not need them all; at 300 apps the full list made one 20 KB journal entry.
pub const APPLIED_ACTIONS_LISTED: usize = 20;

/// A revision was applied.
pub fn applied(revision: &str, actions: &[String]) {
    tracing::info!(
        message_id = MESSAGE_ID_APPLIED,
        leger_revision = revision,
        leger_outcome = "applied",
        actions = actions.len(),
        "revision {} applied: {}",
        Revision(revision),
        action_summary(actions, APPLIED_ACTIONS_LISTED)
    );
}

/// The first `limit` actions, comma-separated, then how many more there were.
pub fn action_summary(actions: &[String], limit: usize) -> String {
    let mut text = actions
        .iter()
        .take(limit)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if actions.len() > limit {
        text.push_str(&format!(" and {} more", actions.len() - limit));
    }
    text
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
mod audit_tests {
    use super::changed_tables;

    #[test]
    fn changed_tables_names_the_tables_that_differ() {
        let a = "[source]\nkind = \"git\"\nurl = \"https://x/r.git\"\n[policy]\nsuspend = false\n";
        let b = "[source]\nkind = \"git\"\nurl = \"https://x/r.git\"\n[policy]\nsuspend = true\n";
        assert_eq!(changed_tables(a, b), "policy");
        assert_eq!(changed_tables(a, a), "formatting only");
        assert_eq!(changed_tables(a, "not toml ["), "whole file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_summary_lists_up_to_the_limit_then_counts_the_rest() {
        let actions: Vec<String> = (0..5).map(|i| format!("start u{i}.service")).collect();
        assert_eq!(
            action_summary(&actions[..2], 3),
            "start u0.service, start u1.service"
        );
        assert_eq!(
            action_summary(&actions[..3], 3),
            "start u0.service, start u1.service, start u2.service"
        );
        assert_eq!(
            action_summary(&actions, 3),
            "start u0.service, start u1.service, start u2.service and 2 more"
        );
        assert_eq!(action_summary(&[], 3), "");
        let many: Vec<String> = (0..900).map(|i| format!("start app{i}.service")).collect();
        let text = action_summary(&many, APPLIED_ACTIONS_LISTED);
        assert!(text.ends_with(" and 880 more"), "{text}");
        assert!(text.len() < 600, "{} bytes", text.len());
    }

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
            MESSAGE_ID_API_CHANGE,
            MESSAGE_ID_DESIRED_CHANGED,
            MESSAGE_ID_RESTORED,
        ] {
            assert!(doc.contains(id), "{id} is missing from docs/journal.md");
        }
    }
}

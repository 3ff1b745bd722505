//! The status document legerd serves and `legerctl status --json` prints.
//!
//! Shaped like a Kubernetes object (`apiVersion`, `kind`, `spec`, `status`, as bootc
//! does) so scripts can check the version before they read fields. Adding a field is
//! compatible; renaming or removing one needs a new `apiVersion`.

use serde::{Deserialize, Serialize};

/// The `apiVersion` of every document in this module.
pub const API_VERSION: &str = "leger.run/v1alpha1";

/// The whole status of one legerd instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDocument {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always `"AgentStatus"`.
    pub kind: String,
    /// What the host was asked to run.
    pub spec: StatusSpec,
    /// What legerd observed and did.
    pub status: AgentStatus,
}

/// The desired side of the status: the source as desired.toml says it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusSpec {
    /// `git`, `dir`, or `None` when no valid desired.toml was ever loaded.
    pub source_kind: Option<String>,
    /// URL or path of the source.
    pub source: Option<String>,
    /// Branch, tag or commit for git sources.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Sub-folder holding the apps.
    pub path: Option<String>,
    /// True when `policy.suspend` is set.
    pub suspended: bool,
}

/// The observed side of the status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// legerd's version, for fleet inventories.
    pub agent_version: String,
    /// `system` or `user`.
    pub mode: String,
    /// The newest revision fetched from the source (valid or not).
    pub fetched_revision: Option<String>,
    /// The revision the host currently runs.
    pub applied_revision: Option<String>,
    /// Ready, Reconciling and Stalled.
    pub conditions: Vec<Condition>,
    /// Installed apps with their units.
    pub apps: Vec<AppStatus>,
    /// The most recent reconcile pass.
    pub last_pass: Option<PassRecord>,
    /// An error reading desired.toml; the last good desired state stays in force.
    pub desired_state_error: Option<String>,
    /// In staged mode: the newest validated revision waiting for `legerctl approve`.
    #[serde(default)]
    pub staged_revision: Option<String>,
    /// The revision `policy.pin` holds the host at, if any.
    #[serde(default)]
    pub pinned_revision: Option<String>,
    /// The host's podman, as validation sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub podman: Option<PodmanStatus>,
    /// Changes legerd did not make because they would lose data (a changed `.volume`
    /// podman keeps as it was), one message each, saying what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealable_drift: Vec<String>,
    /// The host's fleet name, groups and restart-slot lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetStatus>,
}

/// The podman legerd validates revisions for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodmanStatus {
    /// The version `podman --version` gave, when legerd could use it.
    pub version: Option<String>,
    /// The podman release whose quadlet key tables validate revisions (`v5.4.2`).
    pub key_tables: String,
    /// Set when the version could not be used: why, and that the quadlet generator's
    /// dry run has the final word on keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase machine-readable reason, such as `ReconciliationSucceeded`.
    pub reason: String,
    /// A sentence for people.
    pub message: String,
    /// RFC 3339 time the status last changed.
    pub last_transition_time: String,
}

/// The tri-state status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet, e.g. before the first pass.
    Unknown,
}

/// Condition type names, written once.
pub mod condition_type {
    /// The host runs the desired revision and every managed unit is active.
    pub const READY: &str = "Ready";
    /// A pass is under way.
    pub const RECONCILING: &str = "Reconciling";
    /// legerd cannot make progress without outside help (bad source, bad revision).
    pub const STALLED: &str = "Stalled";
}

/// Machine-readable reasons, written once so status, metrics and tests agree.
pub mod reason {
    /// The last pass converged the host.
    pub const SUCCEEDED: &str = "ReconciliationSucceeded";
    /// A pass is running.
    pub const PROGRESSING: &str = "Progressing";
    /// Nothing has run yet.
    pub const STARTING: &str = "Starting";
    /// The source could not be fetched (unreachable, auth, missing ref).
    pub const SOURCE_UNAVAILABLE: &str = "SourceUnavailable";
    /// The fetched revision failed validation and was rejected whole.
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// A force-push was refused.
    pub const HISTORY_REWRITTEN: &str = "HistoryRewritten";
    /// A manifest revision failed verification: a digest, size, name, signature or
    /// version check refused it. The running revision stays.
    pub const VERIFICATION_FAILED: &str = "VerificationFailed";
    /// Writing files or driving systemd failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// One or more units did not reach `active`.
    pub const UNIT_FAILED: &str = "UnitFailed";
    /// The plan was refused by a guard (empty source, foreign file).
    pub const PLAN_REFUSED: &str = "PlanRefused";
    /// policy.suspend is set.
    pub const SUSPENDED: &str = "Suspended";
    /// desired.toml is missing.
    pub const NO_DESIRED_STATE: &str = "NoDesiredState";
    /// desired.toml is broken; the last good one is in force.
    pub const DESIRED_STATE_INVALID: &str = "DesiredStateInvalid";
    /// A unit failed the health gate after an apply and there was nothing to roll back to.
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    /// A unit failed the health gate and the last good revision was put back.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// A pinned or approved revision is not in legerd's revision store.
    pub const REVISION_UNAVAILABLE: &str = "RevisionUnavailable";
    /// A secret some units need is missing at every source; those units wait.
    pub const SECRET_MISSING: &str = "SecretMissing";
    /// Resolving or writing Podman secrets failed.
    pub const SECRETS_FAILED: &str = "SecretsFailed";
    /// The backup before an apply could not be written; nothing was changed.
    pub const BACKUP_FAILED: &str = "BackupFailed";
    /// The pass would stop or restart running units and waits for a restart slot from
    /// the fleet lock; nothing was changed.
    pub const WAITING_FOR_FLEET_LOCK: &str = "WaitingForFleetLock";
    /// A pass ran past `reconcile.pass_timeout` and was abandoned; the message names the
    /// operation it was stuck in. The next pass retries with backoff.
    pub const PASS_TIMED_OUT: &str = "PassTimedOut";
    /// podman's quadlet generator could not give its verdict (it hung and was killed, or
    /// could not run); the revision is not rejected, the pass is retried.
    pub const VALIDATOR_UNAVAILABLE: &str = "ValidatorUnavailable";
}

/// One installed app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The app's folder name.
    pub name: String,
    /// The app's units, in start order.
    pub units: Vec<UnitStatus>,
    /// The overlay layer the app came from (`hosts/web-03/apps`); absent without
    /// overlays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// One unit as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitStatus {
    /// e.g. `web.service`.
    pub name: String,
    /// systemd's ActiveState: active, inactive, failed, activating, ...
    pub active_state: String,
    /// systemd's SubState: running, dead, exited, ...
    pub sub_state: String,
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassOutcome {
    /// The plan had actions and all of them succeeded.
    Applied,
    /// Nothing needed doing.
    Noop,
    /// Fetch, validation, planning or apply failed.
    Failed,
    /// Suspended: fetched and planned, changed nothing.
    Suspended,
    /// Staged mode: a new revision was validated and planned, and waits for approval.
    Staged,
    /// Applied, failed the health gate, and the last good revision was put back. A
    /// failure, never reported as success.
    RolledBack,
    /// The pass would stop or restart running units and waits for a restart slot from
    /// the fleet lock; nothing was changed.
    Waiting,
}

impl PassOutcome {
    /// The label used in metrics and history.
    pub fn as_str(self) -> &'static str {
        match self {
            PassOutcome::Applied => "applied",
            PassOutcome::Noop => "noop",
            PassOutcome::Failed => "failed",
            PassOutcome::Suspended => "suspended",
            PassOutcome::Staged => "staged",
            PassOutcome::RolledBack => "rolled_back",
            PassOutcome::Waiting => "waiting",
        }
    }
}

/// One reconcile pass, as recorded in SQLite and shown by `legerctl history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassRecord {
    /// Row id, increasing; 0 for a pass kept only as a counter (an idle poll, see
    /// [`crate::history::HistorySummary`]).
    pub id: i64,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Wall time of the pass in milliseconds.
    pub duration_ms: u64,
    /// What asked for the pass (startup, desired-changed, poll, ...).
    pub trigger: String,
    /// The revision the pass worked on, when one was fetched.
    pub revision: Option<String>,
    /// How it ended.
    pub outcome: PassOutcome,
    /// The actions taken, one short line each (`start web.service`).
    pub actions: Vec<String>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// How many passes this row stands for: a failure or hold repeated with the same
    /// revision, actions and error is one row, not one per retry.
    #[serde(
        default = "crate::history::one",
        skip_serializing_if = "crate::history::is_one"
    )]
    pub runs: u32,
    /// When the first of those passes started (set when `runs` > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_started_at: Option<String>,
}

/// Answer to `POST /v1/reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileResponse {
    /// True: a pass was queued (it runs after the one in progress, if any).
    pub queued: bool,
}

/// What applying the staged revision would do: `GET /v1/staged`, `legerctl diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedChange {
    /// The staged revision.
    pub revision: String,
    /// The revision the host runs now.
    pub applied_revision: Option<String>,
    /// Unit actions applying would take, in order (`restart web.service`).
    pub actions: Vec<StagedAction>,
    /// Every file that would change, with a unified diff.
    pub files: Vec<FileDiff>,
}

/// One unit action of a staged plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedAction {
    /// `start`, `restart` or `stop`.
    pub action: String,
    /// The unit.
    pub unit: String,
    /// Its app.
    pub app: String,
}

/// One changed file of a staged plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDiff {
    /// Install key `app/relpath`.
    pub path: String,
    /// Its app.
    pub app: String,
    /// `added`, `modified` or `removed`.
    pub change: String,
    /// A unified diff (`--- a/… +++ b/…`); empty for files that are not UTF-8 text.
    pub diff: String,
}

/// One revision legerd has seen: `GET /v1/revisions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    /// The revision.
    pub revision: String,
    /// `fetched`, `applied`, `rejected` or `failed`.
    pub state: String,
    /// Why it was rejected or failed.
    pub error: Option<String>,
    /// RFC 3339 time of the latest verdict.
    pub updated_at: String,
    /// True when legerd's revision store holds it, so it can be pinned or rolled back to.
    pub stored: bool,
}

/// An error body returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

impl StatusDocument {
    /// Wraps a spec and status with the fixed `apiVersion` and `kind`.
    pub fn new(spec: StatusSpec, status: AgentStatus) -> Self {
        StatusDocument {
            api_version: API_VERSION.to_owned(),
            kind: "AgentStatus".to_owned(),
            spec,
            status,
        }
    }

    /// Finds a condition by type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.conditions.iter().find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_has_stable_envelope() {
        let doc = StatusDocument::new(StatusSpec::default(), AgentStatus::default());
        let v: serde_json::Value = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["kind"], "AgentStatus");
        assert!(v["status"]["conditions"].is_array());
        assert!(v["spec"].get("ref").is_some());
        let back: StatusDocument = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn outcome_serializes_snake_case() {
        assert_eq!(
            serde_json::to_string(&PassOutcome::Noop).unwrap(),
            "\"noop\""
        );
        assert_eq!(PassOutcome::Applied.as_str(), "applied");
    }
}

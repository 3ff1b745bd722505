//! The fleet side of status, and the deployment report legerd POSTs to
//! `fleet.report_url`.
//!
//! A report is what one host says about itself to a fleet view: which revision it runs,
//! how its apps and units are, whether it waits for or holds a restart slot. It is a
//! document with its own `apiVersion` and `kind` (`DeploymentReport`), documented with
//! a JSON Schema in `docs/report.schema.json`; adding a field is compatible, renaming
//! or removing one needs a new `apiVersion`.

use serde::{Deserialize, Serialize};

use crate::status::{AppStatus, Condition, PassOutcome};

/// The `kind` of a deployment report.
pub const REPORT_KIND: &str = "DeploymentReport";

/// This host's place in the fleet, in status and reports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// The host's fleet name (`fleet.host`, default the hostname).
    pub host: String,
    /// Its groups, in overlay order.
    pub groups: Vec<String>,
    /// The restart-slot lock, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockStatus>,
}

/// Where a host stands with its restart slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    /// No slot held, none wanted.
    #[default]
    Free,
    /// A disruptive pass wants a slot and the lock service has not granted one.
    Waiting,
    /// A slot is held: a disruptive apply is under way, or its health gate failed and
    /// the slot is kept so the rollout stops here.
    Held,
}

/// The lock's state as status and reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockStatus {
    /// The service, e.g. `FleetLock server http://192.0.2.1:8080`.
    pub service: String,
    /// The lock group.
    pub group: String,
    /// Free, waiting or held.
    pub state: LockState,
    /// Since when (RFC 3339) the slot is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<String>,
    /// Why the slot is held: `rollout` (an apply in progress, or its release failed) or
    /// `rolled_back` (kept after a failed health gate, so the rollout stops here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_reason: Option<String>,
    /// The lock service's last answer when it was not a yes, in its own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_answer: Option<String>,
}

/// The answer to `POST /v1/fleet/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    /// What was done, for people.
    pub message: String,
}

/// One deployment report (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentReport {
    /// Always [`crate::status::API_VERSION`].
    pub api_version: String,
    /// Always [`REPORT_KIND`].
    pub kind: String,
    /// RFC 3339 time the report was made.
    pub time: String,
    /// `pass` after a pass that changed something, `heartbeat` otherwise.
    pub trigger: String,
    /// The host, its groups and lock.
    pub fleet: FleetStatus,
    /// legerd's version.
    pub agent_version: String,
    /// The source as a short description (URLs without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The newest revision fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_revision: Option<String>,
    /// The revision the host runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// The outcome of the last pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<PassOutcome>,
    /// Ready, Reconciling, Stalled.
    pub conditions: Vec<Condition>,
    /// Apps with their layer, units and state.
    pub apps: Vec<AppStatus>,
}

//! What `legerctl history` shows besides the rows: the passes kept only as counters.
//!
//! Idle polls and the no-op passes legerd's own writes trigger (its file writes and unit
//! restarts come back as drift events) would drown the rows that matter, so they are
//! counted, not listed.

use serde::{Deserialize, Serialize};

/// `GET /v1/history/summary`: passes counted rather than recorded as rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistorySummary {
    /// No-op passes only a poll (or a retry timer) asked for.
    pub idle_polls: u64,
    /// No-op passes asked for by drift events (mostly the echo of legerd's own writes
    /// and restarts) that found nothing to correct.
    pub quiet_drift_checks: u64,
    /// When counting started (the first counted pass), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// serde's default for [`crate::PassRecord::runs`].
pub fn one() -> u32 {
    1
}

/// Leaves `runs: 1` out of JSON.
pub fn is_one(n: &u32) -> bool {
    *n == 1
}

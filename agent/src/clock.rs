//! Wall-clock timestamps for records and status.
//!
//! One formatter for the whole agent: the store, the apply's inventory rows and the
//! status conditions all compare these strings, so they must never disagree on format.

use std::time::SystemTime;

/// The current time as RFC 3339 (UTC, seconds), the format of every stored timestamp.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

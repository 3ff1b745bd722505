//! Secrets API messages. None of them ever carries a value: values travel one way only,
//! from `legerctl secrets set`'s stdin to legerd.

use serde::{Deserialize, Serialize};

/// One secret as `legerctl secrets list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    /// The secret (and podman secret) name.
    pub name: String,
    /// The version in the local store, if it is there.
    pub local_version: Option<i64>,
    /// Where the value now in podman came from, if legerd wrote one.
    pub source: Option<String>,
    /// That source's version of the value.
    pub version: Option<String>,
    /// The units that consume it.
    pub consumers: Vec<String>,
    /// RFC 3339 time of the last change.
    pub updated_at: Option<String>,
}

/// The answer to `PUT /v1/secrets/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSetResponse {
    /// The name.
    pub name: String,
    /// The new local version.
    pub version: i64,
}

/// The answer to `GET /v1/identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityResponse {
    /// The node's age recipient (`age1...`).
    pub recipient: String,
}

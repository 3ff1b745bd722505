//! Backup and restore API messages (`GET /v1/backups`, `POST /v1/restore`).

use serde::{Deserialize, Serialize};

/// One app's backup, as `legerctl backups` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupInfo {
    /// The backup's id: its folder name, `<UTC time>-<short revision>`.
    pub id: String,
    /// The app.
    pub app: String,
    /// The revision the app was at when it was backed up: what a restore brings back,
    /// and what `legerctl restore` pins.
    pub revision: String,
    /// RFC 3339 time of the backup.
    pub created: String,
    /// Files, relative to the app's folder in the quadlet dir.
    pub files: Vec<String>,
    /// Named podman volumes exported with it.
    pub volumes: Vec<String>,
    /// Bytes on disk (files and volume archives).
    pub size: u64,
}

/// The body of `POST /v1/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// The app to restore.
    pub app: String,
    /// The backup id; the app's newest backup when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResponse {
    /// The app.
    pub app: String,
    /// The backup that was restored.
    pub backup: String,
    /// The backup's revision.
    pub revision: String,
    /// Units stopped before the restore.
    pub stopped: Vec<String>,
    /// Volumes imported.
    pub volumes: Vec<String>,
    /// Files written (relative to the app's folder).
    pub files: Vec<String>,
    /// Files of the app removed because the backup did not have them.
    pub removed: Vec<String>,
    /// Units started afterwards.
    pub started: Vec<String>,
    /// What keeps the restored app at the backup's revision, in a sentence: the pin is
    /// `policy.pin`, which holds the *whole host* (every app), since a pass converges
    /// every app from one revision. `legerctl restore` sets it first; a client calling
    /// the API alone gets told when nothing holds the app there.
    #[serde(default)]
    pub pin: String,
}

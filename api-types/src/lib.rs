//! Types shared by `legerd` and `legerctl`.
//!
//! Keeping them in one crate is what makes `legerctl` refuse exactly the documents
//! `legerd` would refuse, and what keeps `legerctl status --json` in step with the
//! agent that produced it.

pub mod app_config;
pub mod backups;
pub mod desired;
pub mod fleet;
pub mod history;
pub mod manifest;
pub mod overlay;
pub mod plan;
pub mod redact;
pub mod revision;
pub mod secrets;
pub mod ssh_url;
pub mod status;
pub mod summary;

pub use backups::{BackupInfo, RestoreRequest, RestoreResponse};
pub use desired::{
    DesiredState, DesiredStateError, DirSourceSpec, GitSourceSpec, ManifestSourceSpec,
    ManifestVersion, Policy, SecretSourceSpec, SecretsSpec, SourceSpec, UpdateMode,
};
pub use history::HistorySummary;
pub use plan::{PlanDocument, PlanDrift, PlanSecret};
pub use secrets::{IdentityResponse, SecretInfo, SecretSetResponse};
pub use status::*;

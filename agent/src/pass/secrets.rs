//! Prepare secrets: resolve every referenced secret at its sources and decide what
//! changes. Nothing is written to podman here; the converge stage writes after the
//! gates and the backup, and finishes after the health gate.

use std::collections::BTreeMap;
use std::sync::Arc;

use leger_api_types::DesiredState;
use leger_api_types::status::reason;

use super::{Failure, Host};
use crate::model::{DesiredTree, Snapshot};
use crate::secrets::{PreparedSecrets, SecretError, SecretsConverger};

/// The `secrets/*.age` files of a revision, for the git-age source.
pub type AgeFiles = BTreeMap<String, (String, Arc<[u8]>)>;

/// The age files of a snapshot.
pub fn age_files(snapshot: &Snapshot) -> AgeFiles {
    crate::secrets::age_files(snapshot)
}

/// A secrets failure of the pass.
pub fn failed(e: SecretError) -> Failure {
    Failure::new(reason::SECRETS_FAILED, e.to_string(), false)
}

/// Resolves and decides; with no converger (tests, or secrets left to the operator)
/// nothing is decided.
pub async fn prepare<U>(
    host: &Host<'_, U>,
    secrets: Option<&mut SecretsConverger>,
    tree: &DesiredTree,
    desired: &DesiredState,
    age: &AgeFiles,
) -> Result<PreparedSecrets, Failure> {
    match secrets {
        Some(s) => s
            .prepare(tree, &desired.secrets.sources, host.store, age)
            .await
            .map_err(failed),
        None => Ok(PreparedSecrets::default()),
    }
}

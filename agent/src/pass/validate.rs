//! Validation: `assemble` (parse, check, resolve units) plus podman's generator in
//! dry-run mode, on the blocking pool, cached per revision.
//!
//! A revision is validated once: the cache keeps the last two good trees (staged mode
//! alternates between the staged revision and the one the host holds) and every
//! rejection, so a rejected revision is not re-checked on every poll.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use leger_api_types::status::reason;
use leger_config::Settings;

use super::{Failure, Host, blocking};
use crate::assemble::assemble;
use crate::model::{DesiredTree, Revision, Snapshot};
use crate::quadlet::generator::{self, DryRunError, GeneratorUnavailable};
use crate::store::RevisionState;

/// The validation cache.
#[derive(Debug, Default)]
pub struct Validator {
    validated: Vec<Arc<DesiredTree>>,
    rejected: HashMap<String, String>,
}

impl Validator {
    /// Forgets everything: the source changed.
    pub fn reset(&mut self) {
        self.validated.clear();
        self.rejected.clear();
    }

    /// Validates `snapshot`, reusing the last result for a revision seen before. A good
    /// revision is kept in the revision store (for rollbacks and pins) and recorded as
    /// fetched; a rejected one is recorded with its reason.
    pub async fn validate<U>(
        &mut self,
        host: &Host<'_, U>,
        snapshot: Snapshot,
    ) -> Result<Arc<DesiredTree>, Failure> {
        if let Some(tree) = self
            .validated
            .iter()
            .find(|t| t.revision == snapshot.revision)
        {
            return Ok(Arc::clone(tree));
        }
        if let Some(e) = self.rejected.get(&snapshot.revision) {
            return Err(Failure::new(reason::VALIDATION_FAILED, e.clone(), true));
        }
        let revision = snapshot.revision.clone();
        let settings = host.settings.clone();
        let revisions = host.revision_store();
        let result = blocking::run(move || {
            let tree = match assemble(&snapshot, &settings.limits) {
                Ok(tree) => tree,
                Err(e) => return Ok(Err(e.to_string())),
            };
            match dry_run(&tree, &settings) {
                Ok(()) => {}
                Err(DryRunError::Refused(diags)) => return Ok(Err(refused(&diags))),
                Err(DryRunError::Unavailable(e)) => return Err(e),
            }
            if let Err(e) = revisions.save(&snapshot) {
                tracing::warn!(error = %e, "cannot keep the revision for rollbacks and pins");
            }
            Ok(Ok(tree))
        })
        .await;
        // No verdict is not a rejection: retry the pass, do not remember it.
        let result = result.map_err(|e| {
            Failure::new(
                reason::VALIDATOR_UNAVAILABLE,
                format!("revision {} is not validated yet: {e}", Revision(&revision)),
                false,
            )
        })?;
        match result {
            Ok(tree) => {
                let tree = Arc::new(tree);
                self.validated.push(Arc::clone(&tree));
                if self.validated.len() > 2 {
                    self.validated.remove(0);
                }
                let rev = revision.clone();
                let _ = blocking::store(host.store, move |s| {
                    s.record_revision(&rev, RevisionState::Fetched, None)
                })
                .await;
                Ok(tree)
            }
            Err(message) => {
                let message = format!("revision {} rejected: {message}", Revision(&revision));
                let (rev, msg) = (revision.clone(), message.clone());
                let _ = blocking::store(host.store, move |s| {
                    s.record_revision(&rev, RevisionState::Rejected, Some(&msg))
                })
                .await;
                self.rejected.insert(revision, message.clone());
                Err(Failure::new(reason::VALIDATION_FAILED, message, true))
            }
        }
    }
}

/// Assembles and dry-runs a snapshot without caching or recording it (a restore's
/// one-app tree goes through here). Blocking.
pub fn check(snapshot: &Snapshot, settings: &Settings) -> Result<DesiredTree, String> {
    let tree = assemble(snapshot, &settings.limits).map_err(|e| e.to_string())?;
    match dry_run(&tree, settings) {
        Ok(()) => Ok(tree),
        Err(DryRunError::Refused(diags)) => Err(refused(&diags)),
        Err(DryRunError::Unavailable(e)) => Err(e.to_string()),
    }
}

fn refused(diags: &[crate::quadlet::Diagnostic]) -> String {
    let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
    format!(
        "podman's quadlet generator refused it:\n{}",
        lines.join("\n")
    )
}

/// Runs podman's generator in dry-run mode over the tree staged in a scratch dir.
fn dry_run(tree: &DesiredTree, settings: &Settings) -> Result<(), DryRunError> {
    if !settings.quadlet.generator_dry_run || !settings.quadlet.generator.exists() {
        return Ok(());
    }
    let unavailable = |m: String| DryRunError::Unavailable(GeneratorUnavailable(m));
    let staging = settings.paths.state_dir.join("staging");
    std::fs::create_dir_all(&staging)
        .map_err(|e| unavailable(format!("cannot create {}: {e}", staging.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("dryrun-")
        .tempdir_in(&staging)
        .map_err(|e| {
            unavailable(format!(
                "cannot create a staging dir in {}: {e}",
                staging.display()
            ))
        })?;
    stage(tree, dir.path()).map_err(unavailable)?;
    let user = settings.mode == leger_config::Mode::User;
    generator::dry_run(
        &settings.quadlet.generator,
        dir.path(),
        user,
        settings.timeouts.generator,
    )
}

fn stage(tree: &DesiredTree, dir: &Path) -> Result<(), String> {
    for app in tree.apps.values() {
        for (rel, file) in &app.files {
            let path = dir.join(&app.name).join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("staging {}: {e}", path.display()))?;
            }
            std::fs::write(&path, &file.content)
                .map_err(|e| format!("staging {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

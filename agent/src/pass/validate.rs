//! Validation: `assemble` (parse, check, resolve units) plus podman's generator in
//! dry-run mode, on the blocking pool, cached per revision.
//!
//! A revision is validated once: the cache keeps the last two good trees (staged mode
//! alternates between the staged revision and the one the host holds) and every
//! rejection, so a rejected revision is not re-checked on every poll.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use leger_api_types::status::reason;
use leger_config::Settings;

use super::{Failure, Host, blocking};
use crate::assemble::{ParseCache, assemble, assemble_cached};
use crate::host_podman::{self, HostPodman};
use crate::model::{DesiredTree, Revision, Snapshot};
use crate::quadlet::Target;
use crate::quadlet::generator::{self, DryRunError, GeneratorUnavailable};
use crate::store::RevisionState;
use crate::store::Store;
use crate::validated::{self, ValidatedApps};

/// The validation cache.
#[derive(Debug, Default)]
pub struct Validator {
    validated: Vec<Arc<DesiredTree>>,
    rejected: HashMap<String, String>,
    /// What passed the generator's dry run last, per app (incremental validation):
    /// `None` until read from the revision store at the first validation.
    dry_run_record: Option<Option<ValidatedApps>>,
    /// The parse of app folders that passed before: a new revision re-parses only the
    /// changed ones. `None` while a validation has it on the blocking pool.
    parse_cache: Option<ParseCache>,
    /// The host's podman, detected at the first validation and again whenever its
    /// binary changes: the key tables revisions are checked against.
    podman: Option<HostPodman>,
    /// The podman program to ask for its version: `podman` on `PATH` unless set
    /// ([`Validator::with_podman_program`]).
    podman_program: Option<std::path::PathBuf>,
    /// The revision store's copy of the last good revision, still being written (one
    /// fsync per file and folder). It is off the path from a change to its unit being
    /// restarted; the pass waits for it before anything reads or prunes the store
    /// ([`Validator::stored`]).
    storing: Option<tokio::task::JoinHandle<()>>,
}

impl Validator {
    /// Asks `program` (not `podman` on `PATH`) for the host's podman version.
    pub fn with_podman_program(mut self, program: impl Into<std::path::PathBuf>) -> Self {
        self.podman_program = Some(program.into());
        self.podman = None;
        self
    }

    /// Detects the host's podman, or looks again when its binary changed. Another
    /// podman accepts other keys, so every cached verdict is dropped then. `podman
    /// --version` may take up to its time limit, so it runs on the blocking pool. A
    /// pass dropped meanwhile loses the detection, and the next one detects again.
    async fn detect_podman(&mut self) -> &HostPodman {
        let known = self.podman.take();
        let program = self
            .podman_program
            .clone()
            .unwrap_or_else(|| "podman".into());
        let (podman, changed) = blocking::run(move || match known {
            Some(mut p) => {
                let changed = p.refresh();
                (p, changed)
            }
            None => {
                let p = HostPodman::detect(program);
                tracing::info!(podman = %p.describe(), "podman detected");
                (p, false)
            }
        })
        .await;
        if changed {
            self.validated.clear();
            self.rejected.clear();
        }
        self.podman.insert(podman)
    }

    /// The podman section of status, once podman was detected.
    pub fn podman_status(&self) -> Option<leger_api_types::status::PodmanStatus> {
        self.podman.as_ref().map(HostPodman::status)
    }

    /// The key tables of the host's podman now.
    pub async fn keys(&mut self) -> crate::quadlet::KeyTable {
        self.detect_podman().await.keys()
    }

    /// Waits until the last good revision is in the revision store. The pass calls it
    /// before anything reads or prunes the store (recording a revision good, a
    /// rollback) and before it ends, so a finished pass always left its revision there.
    pub async fn stored(&mut self) {
        if let Some(saving) = self.storing.take() {
            match saving.await {
                Ok(()) => {}
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("revision store task was cancelled: {e}"),
            }
        }
    }

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
        // First: a podman upgrade or downgrade voids every cached verdict, the applied
        // revision's included, so it is checked again against the new tables.
        self.detect_podman().await;
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
        self.stored().await;
        let revision = snapshot.revision.clone();
        let settings = host.settings.clone();
        let revisions = host.revision_store();
        let podman = self.detect_podman().await;
        let keys = podman.keys();
        let podman = podman.describe();
        let record = self.dry_run_record.take();
        let mut cache = self.parse_cache.take().unwrap_or_default();
        let store = Arc::clone(host.store);
        // Cheap: the files are shared, not copied.
        let to_store = snapshot.clone();
        let (record, cache, result) = blocking::run(move || {
            // Stats the generator binary: the blocking pool's work too.
            let identity = validated::generator_identity(
                &settings.quadlet.generator,
                &podman,
                settings.mode == leger_config::Mode::User,
            );
            let record_dir = validated::record_dir(&settings.paths.state_dir);
            let record = record.unwrap_or_else(|| ValidatedApps::load(&record_dir));
            let target = host_target(keys, &settings, &store);
            let tree = match check_incremental(
                &snapshot,
                &settings,
                &target,
                record.as_ref(),
                &identity,
                &mut cache,
            ) {
                Ok(Ok((tree, _))) => tree,
                other => return (record, cache, other.map(|r| r.map(|(t, _)| t))),
            };
            if !dry_run_enabled(&settings) {
                return (record, cache, Ok(Ok(tree)));
            }
            let passed = ValidatedApps::of(&tree, identity);
            if record.as_ref() != Some(&passed)
                && let Err(e) = passed.save(&record_dir)
            {
                tracing::warn!(error = %e, "cannot keep the validation record");
            }
            (Some(passed), cache, Ok(Ok(tree)))
        })
        .await;
        self.dry_run_record = Some(record);
        self.parse_cache = Some(cache);
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
                tracing::debug!(stage = "dry run", "pass stage done");
                self.storing = Some(tokio::task::spawn_blocking(move || {
                    if let Err(e) = revisions.save(&to_store) {
                        tracing::warn!(error = %e, "cannot keep the revision for rollbacks and pins");
                    }
                }));
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

/// The host's podman keys and the quadlets installed outside leger's files. Blocking.
pub(super) fn host_target(
    keys: crate::quadlet::KeyTable,
    settings: &Settings,
    store: &Arc<Mutex<Store>>,
) -> Target {
    let managed: BTreeSet<String> = store
        .lock()
        .expect("store lock")
        .inventory()
        .map(|inv| inv.into_iter().map(|e| e.key).collect())
        .unwrap_or_default();
    let user = settings.mode == leger_config::Mode::User;
    let quadlet_dir = &settings.paths.quadlet_dir;
    let dirs = host_podman::quadlet_dirs(quadlet_dir, user);
    Target {
        keys,
        installed: crate::quadlet::Installed::Host(host_podman::installed_quadlets(
            &dirs,
            quadlet_dir,
            &managed,
        )),
    }
}

/// Assembles and dry-runs a snapshot for `target` without caching or recording it (a
/// restore's one-app tree goes through here). Blocking.
pub fn check(
    snapshot: &Snapshot,
    settings: &Settings,
    target: &Target,
) -> Result<DesiredTree, String> {
    let tree = assemble(snapshot, &settings.limits, target).map_err(|e| e.to_string())?;
    match dry_run(&tree, settings, None) {
        Ok(()) => Ok(tree),
        Err(DryRunError::Refused(diags)) => Err(refused(&diags)),
        Err(DryRunError::Unavailable(e)) => Err(e.to_string()),
    }
}

/// [`check`] for a new revision: assembles the whole snapshot (legerd's own checks
/// always see every app; app folders unchanged since `cache` saw them pass are not
/// parsed again), then dry-runs only the apps [`validated::scope`] names given
/// `record`, what passed before under the generator `identity`. Returns the tree and
/// that scope; `Err` when the generator gave no verdict. Blocking.
pub fn check_incremental(
    snapshot: &Snapshot,
    settings: &Settings,
    target: &Target,
    record: Option<&ValidatedApps>,
    identity: &str,
    cache: &mut ParseCache,
) -> Result<Result<(DesiredTree, validated::Scope), String>, GeneratorUnavailable> {
    let tree = match assemble_cached(snapshot, &settings.limits, target, cache) {
        Ok(tree) => tree,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let scope = validated::scope(&tree, record, identity);
    tracing::debug!(
        checked = scope.checked.len(),
        staged = scope.staged.len(),
        apps = tree.apps.len(),
        "generator dry run scope"
    );
    match dry_run(&tree, settings, Some(&scope.staged)) {
        Ok(()) => Ok(Ok((tree, scope))),
        Err(DryRunError::Refused(diags)) => Ok(Err(refused(&diags))),
        Err(DryRunError::Unavailable(e)) => Err(e),
    }
}

fn refused(diags: &[crate::quadlet::Diagnostic]) -> String {
    let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
    format!(
        "podman's quadlet generator refused it:\n{}",
        lines.join("\n")
    )
}

/// True when validation runs podman's generator.
fn dry_run_enabled(settings: &Settings) -> bool {
    settings.quadlet.generator_dry_run && settings.quadlet.generator.exists()
}

/// Runs podman's generator in dry-run mode over the tree, or only the apps `only`
/// (see [`validated::scope`]), staged in a scratch dir. Nothing to stage: no run.
fn dry_run(
    tree: &DesiredTree,
    settings: &Settings,
    only: Option<&BTreeSet<String>>,
) -> Result<(), DryRunError> {
    if !dry_run_enabled(settings) || only.is_some_and(BTreeSet::is_empty) {
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
    stage(tree, only, dir.path()).map_err(unavailable)?;
    let user = settings.mode == leger_config::Mode::User;
    generator::dry_run(
        &settings.quadlet.generator,
        dir.path(),
        user,
        settings.timeouts.generator,
    )
}

fn stage(tree: &DesiredTree, only: Option<&BTreeSet<String>>, dir: &Path) -> Result<(), String> {
    let apps = tree
        .apps
        .values()
        .filter(|a| only.is_none_or(|o| o.contains(&a.name)));
    for app in apps {
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

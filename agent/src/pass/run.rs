//! The pass driver: load, fetch, choose, validate, converge, record, in that order,
//! and the restore between passes. Returns the recorded pass; [`super::retry`] turns
//! it into the next action.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leger_api_types::status::reason;
use leger_api_types::{DesiredState, PassOutcome, PassRecord, RestoreResponse, UpdateMode};

use super::choose::{CandidateKind, Candidates, Choice, Refusal, choose};
use super::converge::{self, Context, ConvergeError, Converged, Mode, Target};
use super::fetch::Fetcher;
use super::gate::GateVerdict;
use super::restore::RestoreSpec;
use super::validate::{self, Validator};
use super::{Failure, Gate, Host, HostState, REVISIONS_KEPT, blocking, record, secrets};
use crate::backup::BackupError;
use crate::clock::now_rfc3339;
use crate::health::{self, GateFailure};
use crate::journal;
use crate::model::{DesiredTree, Revision, Snapshot};
use crate::plan::{Action, PlanPolicy};
use crate::secrets::SecretsConverger;
use crate::store::RevisionState;
use crate::systemd::UnitManager;

/// How a pass ended, for the controller.
#[derive(Debug, Clone)]
pub struct PassResult {
    /// The recorded pass.
    pub record: PassRecord,
    /// The failure cause (a status reason) when the pass failed; drives the backoff.
    pub failure_cause: Option<&'static str>,
    /// A gate asked to be asked again after this long.
    pub retry_after: Option<Duration>,
}

/// Everything one pass borrows.
#[derive(Debug)]
pub struct Pass<'a, 'h, U> {
    /// The seams.
    pub host: &'a Host<'h, U>,
    /// What legerd knows between passes.
    pub state: &'a mut HostState,
    /// The source.
    pub fetcher: &'a mut Fetcher,
    /// The validation cache.
    pub validator: &'a mut Validator,
    /// Podman secrets, when converged.
    pub secrets: Option<&'a mut SecretsConverger>,
    /// Gates that may hold the pass.
    pub gates: &'a [Box<dyn Gate>],
}

/// The outcome of the work, before it is recorded.
struct Worked {
    outcome: Result<PassOutcome, Failure>,
    revision: Option<String>,
    actions: Vec<String>,
    retry_after: Option<Duration>,
}

impl<U: UnitManager> Pass<'_, '_, U> {
    /// Runs one pass. `desired` is the desired state in force, or why there is none.
    /// `trigger` only labels the pass; the work is the same for all.
    pub async fn run(
        mut self,
        desired: Result<&DesiredState, Failure>,
        trigger: &str,
    ) -> PassResult {
        let started_at = now_rfc3339();
        let t0 = Instant::now();
        // A pass that only a poll asked for, after a clean pass: the drift check may be
        // skipped (see `observe_skippable`).
        let quiet_poll =
            trigger == "poll" && self.state.held.is_none() && self.state.last_failure.is_none();
        self.state.held = None;
        let suspended = desired.as_ref().is_ok_and(|d| d.policy.suspend);
        let mut w = Worked {
            outcome: Ok(PassOutcome::Noop),
            revision: None,
            actions: Vec::new(),
            retry_after: None,
        };
        w.outcome = match desired {
            Ok(d) => self.work(d, &mut w, quiet_poll).await,
            Err(f) => Err(f),
        };
        self.finish(w, trigger, started_at, t0, suspended).await
    }

    async fn finish(
        &mut self,
        w: Worked,
        trigger: &str,
        started_at: String,
        t0: Instant,
        suspended: bool,
    ) -> PassResult {
        self.validator.stored().await;
        let (outcome, error, failure_cause) = match w.outcome {
            Ok(o) => {
                self.state.last_failure = None;
                (o, None, None)
            }
            Err(f) => {
                if f.outcome != PassOutcome::RolledBack {
                    journal::failed(w.revision.as_deref(), f.reason, &f.message);
                }
                let out = (f.outcome, Some(f.message.clone()), Some(f.reason));
                self.state.last_failure = Some(f);
                out
            }
        };
        let record = PassRecord {
            id: 0,
            started_at,
            finished_at: now_rfc3339(),
            duration_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            trigger: trigger.to_owned(),
            revision: w.revision,
            outcome,
            actions: w.actions,
            error,
            runs: 1,
            first_started_at: None,
        };
        self.state.reconciling = false;
        let record = record::pass(self.host, self.state, record, t0.elapsed(), suspended).await;
        PassResult {
            record,
            failure_cause,
            retry_after: w.retry_after,
        }
    }

    async fn work(
        &mut self,
        desired: &DesiredState,
        w: &mut Worked,
        quiet_poll: bool,
    ) -> Result<PassOutcome, Failure> {
        let host = self.host;
        self.state.pinned_revision = desired.policy.pin.clone();
        let fetched = match &desired.policy.pin {
            // A pin (or `legerctl rollback`) converges from legerd's own store, without
            // asking the source at all.
            Some(_) => {
                self.state.staged = None;
                None
            }
            None => {
                let applied = self.state.applied_revision.clone();
                let s = self
                    .fetcher
                    .fetch(desired, host.settings, host.metrics, applied)
                    .await
                    .map_err(|e| Failure::new(e.reason(), e.to_string(), true))?;
                self.state.fetched_revision = Some(s.revision.clone());
                w.revision = Some(s.revision.clone());
                tracing::debug!(stage = "fetch", "pass stage done");
                crate::crashpoint::hit("after-fetch");
                Some(s)
            }
        };
        let staged_mode = desired.policy.mode == UpdateMode::Staged;
        if !staged_mode {
            self.state.staged = None;
        }
        let candidates = Candidates {
            pin: desired.policy.pin.as_deref(),
            approved: desired.policy.approved.as_deref(),
            staged_mode,
            fetched: fetched.as_ref().map(|s| s.revision.as_str()),
            applied: self.state.applied_revision.as_deref(),
        };
        let failed = failed_among(host, &candidates).await;
        let choice = choose(&candidates, &failed);
        if staged_mode && let Some(f) = &fetched {
            self.preview(f.clone(), desired).await?;
        }
        let (revision, mode, refused) = match choice {
            Choice::Nothing { refused: None } => return Ok(PassOutcome::Staged),
            Choice::Nothing { refused: Some(r) } => return Err(refusal(&r, None)),
            Choice::Converge {
                revision,
                mode,
                refused,
            } => (revision, mode, refused),
        };
        let snapshot = match fetched {
            Some(s) if s.revision == revision => s,
            _ => load_stored(host, &revision, &mode).await?,
        };
        w.revision = Some(revision.clone());
        let age_files = secrets::age_files(&snapshot);
        let tree = self.validator.validate(host, snapshot).await?;
        tracing::debug!(stage = "validate", "pass stage done");
        crate::crashpoint::hit("after-validate");
        if quiet_poll
            && mode == Mode::Forward
            && refused.is_none()
            && !staged_mode
            && self.observe_skippable(&tree)
        {
            tracing::debug!(
                "poll: the source did not move and no drift event came since the last pass; observe skipped"
            );
            return Ok(PassOutcome::Noop);
        }
        let target = Target { tree, age_files };
        let observing = Instant::now();
        let outcome = self.converge(desired, &mode, &target, w).await?;
        self.state.last_observed = Some(observing);
        if let Some(r) = refused {
            // History names the refused revision, as the pass was about it.
            w.revision = Some(r.revision.clone());
            return Err(refusal(&r, self.state.applied_revision.as_deref()));
        }
        if staged_mode && self.state.staged.is_some() && outcome == PassOutcome::Noop {
            return Ok(PassOutcome::Staged);
        }
        Ok(outcome)
    }

    /// Whether a quiet poll may skip observing: the host runs `tree` already, a full
    /// observe passed within `reconcile.resync` (the safety net for a lost inotify or
    /// D-Bus event), and no unit consumes a secret (a poll is how a rotated secret
    /// value is noticed).
    fn observe_skippable(&self, tree: &DesiredTree) -> bool {
        self.state.applied_revision.as_deref() == Some(tree.revision.as_str())
            && self
                .state
                .last_observed
                .is_some_and(|t| t.elapsed() < self.host.settings.reconcile.resync)
            && tree
                .apps
                .values()
                .all(|a| a.units.iter().all(|u| u.secrets.is_empty()))
    }

    /// Converges, then records the revision good, or judges a failed gate.
    async fn converge(
        &mut self,
        desired: &DesiredState,
        mode: &Mode,
        target: &Target,
        w: &mut Worked,
    ) -> Result<PassOutcome, Failure> {
        let result = converge::converge(&mut self.context(desired), mode, target).await;
        // The revision's units run now; what follows may read or prune the store.
        self.validator.stored().await;
        let tree = &target.tree;
        match result {
            Ok(c) => self.converged(c, tree, w).await,
            Err(ConvergeError::Failed(f)) => {
                record::refresh_apps(self.host, self.state, tree).await;
                Err(f)
            }
            Err(ConvergeError::Unhealthy { failure, actions }) => {
                w.actions = actions;
                let is_new = self.state.applied_revision.as_deref() != Some(tree.revision.as_str());
                if mode.rolls_back() && is_new {
                    return Err(self.roll_back(desired, tree, failure, w).await);
                }
                record::refresh_apps(self.host, self.state, tree).await;
                if *mode == Mode::Rollback {
                    return Err(Failure::new(
                        reason::HEALTH_CHECK_FAILED,
                        format!("{} of app {} {}", failure.unit, failure.app, failure.reason),
                        true,
                    ));
                }
                // The revision ran before: a unit failing on its own, not a bad
                // revision. Retry with backoff; rolling back would not help.
                Err(Failure::new(
                    reason::UNIT_FAILED,
                    format!("{}: {}", failure.unit, failure.reason),
                    false,
                ))
            }
        }
    }

    async fn converged(
        &mut self,
        c: Converged,
        tree: &DesiredTree,
        w: &mut Worked,
    ) -> Result<PassOutcome, Failure> {
        w.actions = c.actions;
        if let Some(GateVerdict::Wait {
            reason,
            message,
            retry_after,
        }) = c.held
        {
            self.state.held = Some((reason, message));
            w.retry_after = retry_after;
            record::refresh_apps(self.host, self.state, tree).await;
            return Ok(match reason {
                reason::SUSPENDED => PassOutcome::Suspended,
                reason::WAITING_FOR_FLEET_LOCK => PassOutcome::Waiting,
                _ => PassOutcome::Noop,
            });
        }
        record::good(self.host, self.state, tree, c.observed_units.as_ref()).await;
        if self
            .state
            .staged
            .as_ref()
            .is_some_and(|st| Some(&st.revision) == self.state.applied_revision.as_ref())
        {
            self.state.staged = None;
        }
        if c.changed {
            journal::applied(&tree.revision, &w.actions);
        }
        if !c.unrelated.is_empty() {
            // The revision is good (its own units passed), but units it did not change
            // are failing: report them, and retry with backoff rather than at once, so a
            // crash-looping unit cannot drive a restart storm.
            return Err(Failure::new(
                reason::UNIT_FAILED,
                format!(
                    "revision {} is applied, but units it did not change are failing: {}",
                    Revision(&tree.revision),
                    c.unrelated.join("; ")
                ),
                false,
            ));
        }
        Ok(if c.changed {
            PassOutcome::Applied
        } else {
            PassOutcome::Noop
        })
    }

    fn context<'c>(&'c mut self, desired: &'c DesiredState) -> Context<'c, 'c, U>
    where
        'c: 'c,
    {
        Context {
            host: self.host,
            secrets: self.secrets.as_deref_mut(),
            gates: self.gates,
            desired,
            state: self.state,
        }
    }

    /// Puts the last good revision back after `bad` failed its gate, through the same
    /// converge stage, and returns the failure the pass reports.
    async fn roll_back(
        &mut self,
        desired: &DesiredState,
        bad: &DesiredTree,
        g: GateFailure,
        w: &mut Worked,
    ) -> Failure {
        let host = self.host;
        let tail = health::last_journal_lines(&**host.podman, &g.unit, host.user_mode(), 8).await;
        let mut message = format!("{} of app {} {}", g.unit, g.app, g.reason);
        if !tail.is_empty() {
            // The marker lets conditions show one telling line of the tail.
            message.push_str(&format!("{}\n{tail}", leger_api_types::summary::LOG_TAIL));
        }
        record::failed(host, &bad.revision, &message).await;
        let Some(good) = self.state.applied_revision.clone() else {
            let _ = super::intent::clear(host.store).await;
            record::refresh_apps(host, self.state, bad).await;
            return Failure::new(
                reason::HEALTH_CHECK_FAILED,
                format!(
                    "revision {} failed its health gate and there is no earlier revision to roll back to: {message}",
                    Revision(&bad.revision)
                ),
                true,
            );
        };
        let cannot = |e: String| {
            Failure::new(
                reason::HEALTH_CHECK_FAILED,
                format!(
                    "revision {} failed its health gate; cannot roll back to {}: {e}. {message}",
                    Revision(&bad.revision),
                    Revision(&good)
                ),
                true,
            )
        };
        let target = match load_stored(host, &good, &Mode::Rollback).await {
            Ok(snapshot) => {
                let age_files = secrets::age_files(&snapshot);
                match self.validator.validate(host, snapshot).await {
                    Ok(tree) => Target { tree, age_files },
                    Err(f) => return cannot(f.message),
                }
            }
            Err(f) => return cannot(f.message),
        };
        let rollback_errors =
            match converge::converge(&mut self.context(desired), &Mode::Rollback, &target).await {
                Ok(c) => {
                    w.actions
                        .extend(c.actions.iter().map(|a| format!("rollback: {a}")));
                    record::good(host, self.state, &target.tree, None).await;
                    String::new()
                }
                Err(ConvergeError::Failed(f)) => {
                    record::refresh_apps(host, self.state, bad).await;
                    return cannot(f.message);
                }
                Err(ConvergeError::Unhealthy { failure, actions }) => {
                    w.actions
                        .extend(actions.iter().map(|a| format!("rollback: {a}")));
                    record::refresh_apps(host, self.state, &target.tree).await;
                    format!("{} {}", failure.unit, failure.reason)
                }
            };
        journal::rolled_back(&bad.revision, &good, &g.unit, &message);
        let mut text = format!(
            "revision {} rolled back to {}: {message}",
            Revision(&bad.revision),
            Revision(&good)
        );
        if !rollback_errors.is_empty() {
            text.push_str(&format!(
                "; the rollback itself had errors: {rollback_errors}"
            ));
        }
        Failure {
            reason: reason::ROLLED_BACK,
            message: text,
            stalled: true,
            outcome: PassOutcome::RolledBack,
        }
    }

    /// Staged mode: validates and plans the fetched revision for review (`legerctl
    /// diff`), without applying it.
    async fn preview(&mut self, fetched: Snapshot, desired: &DesiredState) -> Result<(), Failure> {
        let host = self.host;
        let applied = self.state.applied_revision.clone();
        if applied.as_deref() == Some(fetched.revision.as_str()) {
            self.state.staged = None;
            return Ok(());
        }
        if self.state.staged.as_ref().map(|s| &s.revision) == Some(&fetched.revision) {
            return Ok(());
        }
        let revision = fetched.revision.clone();
        let tree = self.validator.validate(host, fetched).await?;
        let observation = super::observe::observe(host, &tree, None).await?;
        let plan = crate::plan::plan(
            &tree,
            &observation.observed,
            PlanPolicy::from(&desired.policy),
        )
        .map_err(|e| Failure::new(reason::PLAN_REFUSED, e.to_string(), true))?;
        self.state.staged = Some(crate::staged::describe(
            &tree,
            &plan,
            &host.settings.paths.quadlet_dir,
            applied,
        ));
        tracing::info!(leger_revision = %revision, "revision staged; review with `legerctl diff`, apply with `legerctl approve`");
        Ok(())
    }

    /// Restores an app from one of its backups through the converge stage, and records
    /// the pass in history with trigger `restore`. The controller calls it between
    /// passes, so a restore never races an apply.
    pub async fn restore(
        mut self,
        desired: Option<&DesiredState>,
        request: &leger_api_types::RestoreRequest,
    ) -> (PassResult, Result<RestoreResponse, BackupError>) {
        let started_at = now_rfc3339();
        let t0 = Instant::now();
        let mut w = Worked {
            outcome: Ok(PassOutcome::Applied),
            revision: None,
            actions: Vec::new(),
            retry_after: None,
        };
        let answer = self.restore_work(desired, request, &mut w).await;
        w.outcome = match &answer {
            Ok(_) => Ok(PassOutcome::Applied),
            Err(e) => Err(Failure::new(reason::APPLY_FAILED, e.to_string(), false)),
        };
        let result = self.finish(w, "restore", started_at, t0, false).await;
        (result, answer)
    }

    async fn restore_work(
        &mut self,
        desired: Option<&DesiredState>,
        request: &leger_api_types::RestoreRequest,
        w: &mut Worked,
    ) -> Result<RestoreResponse, BackupError> {
        let host = self.host;
        let app = request.app.clone();
        // Checks first, before any unit stops: the app exists, every sha256 matches,
        // and the revision the host will be pinned to is still stored.
        let a = app.clone();
        let installed = blocking::store(host.store, move |s| {
            s.inventory().map(|inv| inv.iter().any(|e| e.app == a))
        })
        .await?;
        let (backups, a) = (host.backups(), app.clone());
        blocking::run(move || backups.check_app_exists(&a, installed)).await?;
        let backup = Arc::new(
            host.backups()
                .verified(&app, request.backup.as_deref())
                .await?,
        );
        let (revisions, revision) = (host.revision_store(), backup.manifest.revision.clone());
        if !blocking::run(move || revisions.contains(&revision)).await {
            return Err(BackupError::RevisionGone {
                backup: backup.id.clone(),
                revision: backup.manifest.revision.clone(),
            });
        }
        let id = backup.id.clone();
        let fail = |message: String| BackupError::Converge {
            app: app.clone(),
            backup: id.clone(),
            message,
        };
        w.revision = Some(backup.manifest.revision.clone());
        let snapshot = backup.snapshot.clone();
        let settings = host.settings.clone();
        let keys = self.validator.keys().await;
        let store = Arc::clone(host.store);
        let tree = blocking::run(move || {
            let target = validate::host_target(keys, &settings, &store);
            validate::check(&snapshot, &settings, &target)
        })
        .await
        .map_err(|e| fail(format!("the backup's files do not validate: {e}")))?;
        let Some(desired) = desired else {
            return Err(fail(
                "there is no desired state; set it with `legerctl set-desired`".to_owned(),
            ));
        };
        let target = Target {
            tree: Arc::new(tree),
            age_files: BTreeMap::new(),
        };
        let mode = Mode::Restore(RestoreSpec {
            app: app.clone(),
            backup: Arc::clone(&backup),
        });
        let result = converge::converge(&mut self.context(desired), &mode, &target).await;
        let c = match result {
            Ok(c) if c.held.is_some() => {
                let why = match c.held {
                    Some(GateVerdict::Wait { message, .. }) => message,
                    _ => String::new(),
                };
                return Err(fail(format!(
                    "a gate holds it ({why}); nothing was restored"
                )));
            }
            Ok(c) => c,
            Err(ConvergeError::Failed(f)) => return Err(fail(f.message)),
            Err(ConvergeError::Unhealthy { failure, actions }) => {
                w.actions = actions;
                return Err(BackupError::StartFailed {
                    app: app.clone(),
                    backup: id.clone(),
                    errors: format!("{}: {}", failure.unit, failure.reason),
                });
            }
        };
        w.actions = c.actions.clone();
        journal::applied(&target.tree.revision, &w.actions);
        let _ = super::intent::clear(host.store).await;
        journal::restored(
            &app,
            &id,
            &backup.manifest.revision,
            c.volumes.len(),
            backup.manifest.files.len(),
        );
        let mut response = RestoreResponse {
            app: app.clone(),
            backup: id,
            revision: backup.manifest.revision.clone(),
            stopped: c.stopped,
            volumes: c.volumes,
            files: backup
                .manifest
                .files
                .iter()
                .map(|f| f.path.clone())
                .collect(),
            removed: Vec::new(),
            started: Vec::new(),
            pin: pin_note(
                &app,
                &backup.manifest.revision,
                desired.policy.pin.as_deref(),
            ),
        };
        for a in &c.plan.actions {
            match a {
                Action::RemoveFile { key, .. } => response.removed.push(
                    key.split_once('/')
                        .map_or(key.clone(), |(_, r)| r.to_owned()),
                ),
                Action::StartUnit { unit, .. } | Action::RestartUnit { unit, .. } => {
                    response.started.push(unit.clone())
                }
                _ => {}
            }
        }
        response.started.extend(c.started_elsewhere);
        Ok(response)
    }
}

/// The restore answer's sentence on what holds `app` at the backup's `revision`: the
/// host-wide `policy.pin`, or nothing (the next pass may converge it back).
fn pin_note(app: &str, revision: &str, pin: Option<&str>) -> String {
    let short = crate::model::Revision(revision).short();
    match pin {
        Some(p) if p == revision => format!(
            "the whole host is pinned to revision {short} (policy.pin), not only {app}: every app stays at that revision until `legerctl unpin`"
        ),
        Some(p) => format!(
            "the host is pinned to revision {}, not to the backup's {short}: the next pass converges {app} back to {}; a pin is host-wide (policy.pin)",
            crate::model::Revision(p).short(),
            crate::model::Revision(p).short()
        ),
        None => format!(
            "nothing is pinned: the next pass converges {app} to the source's revision again if it differs from {short} (its volumes keep the restored data); `legerctl restore` pins the whole host (policy.pin) first"
        ),
    }
}

/// Records a pass the controller abandoned over its budget (see
/// `Reconciler::abandon_pass`): history, journal, metrics, status.
pub async fn record_abandoned<U>(
    host: &Host<'_, U>,
    state: &mut HostState,
    failure: Failure,
    trigger: &str,
    started_at: String,
    elapsed: Duration,
    suspended: bool,
) -> PassResult {
    let revision = state.fetched_revision.clone();
    journal::failed(revision.as_deref(), failure.reason, &failure.message);
    let record = PassRecord {
        id: 0,
        started_at,
        finished_at: now_rfc3339(),
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        trigger: trigger.to_owned(),
        revision,
        outcome: PassOutcome::Failed,
        actions: Vec::new(),
        error: Some(failure.message.clone()),
        runs: 1,
        first_started_at: None,
    };
    let cause = failure.reason;
    state.last_failure = Some(failure);
    state.reconciling = false;
    let record = record::pass(host, state, record, elapsed, suspended).await;
    PassResult {
        record,
        failure_cause: Some(cause),
        retry_after: None,
    }
}

/// The failed revisions among the candidates, with their recorded errors.
pub(super) async fn failed_among<U>(
    host: &Host<'_, U>,
    c: &Candidates<'_>,
) -> BTreeMap<String, String> {
    let revisions: Vec<String> = [c.pin, c.approved, c.fetched]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    blocking::store(host.store, move |s| {
        revisions
            .into_iter()
            .filter_map(|r| match s.revision(&r) {
                Ok(Some(rec)) if rec.state == RevisionState::Failed => {
                    Some((r, rec.error.unwrap_or_default()))
                }
                _ => None,
            })
            .collect()
    })
    .await
}

/// The failure a pass reports when it holds the last good revision instead of a
/// candidate that failed before, saying what to do.
pub(super) fn refusal(r: &Refusal, holding: Option<&str>) -> Failure {
    let rev = Revision(&r.revision);
    let holding = holding.map_or("nothing".to_owned(), |h| Revision(h).to_string());
    let message = match r.kind {
        CandidateKind::Fetched => format!(
            "revision {rev} failed its health gate and was rolled back; waiting for a newer revision. {}",
            r.error
        ),
        CandidateKind::Pin => format!(
            "the pinned revision {rev} failed its health gate; the host stays on {holding}. \
             Pin another revision (`legerctl pin REV`), retry this one with `legerctl pin {} --force`, \
             or follow the source again with `legerctl unpin`. {}",
            r.revision, r.error
        ),
        CandidateKind::Approved => format!(
            "the approved revision {rev} failed its health gate; the host stays on {holding}. \
             Approve another revision, or retry this one with `legerctl approve {} --force`. {}",
            r.revision, r.error
        ),
    };
    Failure::new(reason::ROLLED_BACK, message, true)
}

/// Loads a revision from legerd's own store.
pub(super) async fn load_stored<U>(
    host: &Host<'_, U>,
    revision: &str,
    mode: &Mode,
) -> Result<Snapshot, Failure> {
    let store = host.revision_store();
    let rev = revision.to_owned();
    let what = match mode {
        Mode::Pin => "pinned",
        Mode::Approve => "approved",
        _ => "applied",
    };
    match blocking::run(move || store.load(&rev)).await {
        Ok(Some(snapshot)) => Ok(snapshot),
        Ok(None) => Err(Failure::new(
            reason::REVISION_UNAVAILABLE,
            format!(
                "the {what} revision {revision} is not in legerd's revision store (it keeps the last {REVISIONS_KEPT} \
                 validated revisions); pick one from `legerctl revisions`, or change policy.{}",
                if what == "pinned" {
                    "pin (`legerctl unpin`)"
                } else {
                    "approved (`legerctl approve`)"
                }
            ),
            true,
        )),
        Err(e) => Err(Failure::new(
            reason::REVISION_UNAVAILABLE,
            format!("cannot read the {what} revision {revision}: {e}"),
            true,
        )),
    }
}

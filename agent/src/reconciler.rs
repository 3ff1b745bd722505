//! One reconcile pass: load desired state, fetch, validate, observe, plan, apply,
//! record. The controller decides *when*; this module decides *what*.
//!
//! **Architecture invariant:** a revision is applied whole or not at all. Everything
//! that can reject it (fetch, validation, the generator's dry run, the planner's
//! guards) runs before the first file is written, and a rejected revision leaves the
//! running one untouched.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use leger_api_types::status::{condition_type, reason};
use leger_api_types::{
    AgentStatus, AppStatus, Condition, ConditionStatus, DesiredState, PassOutcome, PassRecord,
    SourceSpec, StatusDocument, StatusSpec, UnitStatus,
};
use leger_api_types::{StagedChange, UpdateMode};
use leger_config::Settings;

use crate::apply::{ApplyTarget, apply, interrupted_units};
use crate::assemble::assemble;
use crate::health::{self, GateFailure};
use crate::journal;
use crate::metrics::{Metrics, PassSummary};
use crate::model::{DesiredTree, Snapshot};
use crate::observe::observe;
use crate::plan::{PlanPolicy, plan};
use crate::quadlet::generator;
use crate::revisions::RevisionStore;
use crate::source::SourceError;
use crate::source::dir::DirSource;
use crate::source::git::GitSource;
use crate::source::manifest::ManifestSource;
use crate::store::{RevisionState, Store};
use crate::systemd::UnitManager;

/// Store meta key holding the last desired.toml that parsed, so a broken file on disk
/// after a restart still leaves legerd with something good to converge to.
const META_LAST_GOOD_DESIRED: &str = "last_good_desired";

/// The source instance for the current desired state.
#[derive(Debug)]
enum ActiveSource {
    Git(GitSource),
    Dir(DirSource),
    Manifest(Box<ManifestSource>),
}

/// How a pass ended, for the controller.
#[derive(Debug, Clone)]
pub struct PassResult {
    /// The recorded pass.
    pub record: PassRecord,
    /// The failure cause (a status reason) when the pass failed; drives the backoff.
    pub failure_cause: Option<&'static str>,
}

/// A failed pass: the reason for status and backoff, and the message.
struct Failure {
    reason: &'static str,
    message: String,
    /// Stalled: legerd cannot make progress without outside help.
    stalled: bool,
    /// How the pass is recorded: `Failed`, or `RolledBack` (a failure too).
    outcome: PassOutcome,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>, stalled: bool) -> Self {
        Failure {
            reason,
            message: message.into(),
            stalled,
            outcome: PassOutcome::Failed,
        }
    }
}

/// How many validated revisions the revision store keeps for rollbacks and pins.
const REVISIONS_KEPT: usize = 10;

/// Carries state from pass to pass.
#[derive(Debug)]
pub struct Reconciler<U> {
    settings: Settings,
    units: Arc<U>,
    store: Arc<Mutex<Store>>,
    desired: Option<DesiredState>,
    desired_text: Option<String>,
    desired_error: Option<String>,
    source: Option<ActiveSource>,
    validated: Vec<Arc<DesiredTree>>,
    rejected: HashMap<String, String>,
    fetched_revision: Option<String>,
    applied_revision: Option<String>,
    managed_units: Arc<RwLock<BTreeSet<String>>>,
    apps: Vec<AppStatus>,
    conditions: Vec<Condition>,
    last_pass: Option<PassRecord>,
    /// Where passes, fetches and applies are counted for `GET /metrics`.
    metrics: Arc<Metrics>,
    secrets: Option<crate::secrets::SecretsConverger>,
    /// In staged mode, what applying the newest validated revision would do.
    staged: Option<StagedChange>,
    /// The revision `policy.pin` holds the host at.
    pinned_revision: Option<String>,
    /// Units waiting for a missing secret, for the Ready condition.
    secrets_blocked: Option<String>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        last_transition_time: now_rfc3339(),
    }
}

impl<U: UnitManager> Reconciler<U> {
    /// A reconciler with no pass run yet.
    pub fn new(settings: Settings, units: Arc<U>, store: Arc<Mutex<Store>>) -> Self {
        let applied_revision = store
            .lock()
            .expect("store lock")
            .last_applied_revision()
            .ok()
            .flatten();
        Reconciler {
            settings,
            units,
            store,
            desired: None,
            desired_text: None,
            desired_error: None,
            source: None,
            validated: Vec::new(),
            rejected: HashMap::new(),
            fetched_revision: None,
            applied_revision,
            managed_units: Arc::default(),
            apps: Vec::new(),
            conditions: vec![
                condition(
                    condition_type::READY,
                    ConditionStatus::Unknown,
                    reason::STARTING,
                    "no pass has run yet",
                ),
                condition(
                    condition_type::RECONCILING,
                    ConditionStatus::True,
                    reason::STARTING,
                    "starting",
                ),
                condition(
                    condition_type::STALLED,
                    ConditionStatus::False,
                    reason::STARTING,
                    "",
                ),
            ],
            last_pass: None,
            metrics: Arc::new(Metrics::new(false)),
            secrets: None,
            secrets_blocked: None,
            staged: None,
            pinned_revision: None,
        }
    }

    /// Converges Podman secrets too. Without it, `Secret=` lines are left to the operator.
    pub fn with_secrets(mut self, secrets: crate::secrets::SecretsConverger) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Reports into `metrics` (the one `GET /metrics` serves) instead of a private set.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The set of managed unit names, shared with the unit event filter.
    pub fn managed_units(&self) -> Arc<RwLock<BTreeSet<String>>> {
        Arc::clone(&self.managed_units)
    }

    /// The `dir` source path in force, so the controller can watch it.
    pub fn dir_source_path(&self) -> Option<&Path> {
        match &self.desired.as_ref()?.source {
            SourceSpec::Dir(d) => Some(&d.path),
            SourceSpec::Git(_) | SourceSpec::Manifest(_) => None,
        }
    }

    /// The poll interval in force.
    pub fn poll_interval(&self) -> Duration {
        match self.desired.as_ref().map(|d| &d.source) {
            Some(SourceSpec::Git(g)) => g.poll_interval,
            Some(SourceSpec::Manifest(m)) => m.poll_interval,
            _ => Duration::from_secs(60),
        }
    }

    /// The applied revision, if any.
    pub fn applied_revision(&self) -> Option<&str> {
        self.applied_revision.as_deref()
    }

    /// Marks the status as reconciling, for the duration of a pass.
    pub fn mark_reconciling(&mut self) {
        self.set_condition(condition(
            condition_type::RECONCILING,
            ConditionStatus::True,
            reason::PROGRESSING,
            "reconcile pass in progress",
        ));
    }

    fn set_condition(&mut self, c: Condition) {
        match self.conditions.iter_mut().find(|x| x.type_ == c.type_) {
            Some(old) => {
                let transition = old.status != c.status;
                let time = if transition {
                    c.last_transition_time.clone()
                } else {
                    old.last_transition_time.clone()
                };
                *old = Condition {
                    last_transition_time: time,
                    ..c
                };
            }
            None => self.conditions.push(c),
        }
    }

    /// Reads desired.toml. A broken or missing file keeps the last good state in force
    /// and is reported; returns true when the desired state changed.
    fn load_desired(&mut self) -> bool {
        let path = &self.settings.paths.desired_file;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                self.desired_error = Some(format!("cannot read {}: {e}", path.display()));
                return false;
            }
        };
        let (text, from_store) = match text {
            Some(t) => (t, false),
            None if self.desired.is_some() => {
                self.desired_error = Some(format!(
                    "{} is missing; keeping the last good desired state. Restore it with `legerctl set-desired`",
                    path.display()
                ));
                return false;
            }
            None => match self
                .store
                .lock()
                .expect("store lock")
                .meta(META_LAST_GOOD_DESIRED)
                .ok()
                .flatten()
            {
                Some(t) => (t, true),
                None => {
                    self.desired_error = None;
                    return false;
                }
            },
        };
        if self.desired_text.as_deref() == Some(text.as_str()) && !from_store {
            return false;
        }
        match DesiredState::from_toml_str(&text) {
            Ok(d) => {
                self.desired_error = None;
                if !from_store {
                    let _ = self
                        .store
                        .lock()
                        .expect("store lock")
                        .set_meta(META_LAST_GOOD_DESIRED, &text);
                }
                let source_changed =
                    self.desired.as_ref().map(|old| &old.source) != Some(&d.source);
                if source_changed {
                    self.source = None;
                    self.validated.clear();
                }
                self.desired_text = Some(text);
                self.desired = Some(d);
                true
            }
            Err(e) => {
                self.desired_text = Some(text);
                let keeping = if self.desired.is_some() {
                    "; keeping the last good desired state"
                } else {
                    ""
                };
                self.desired_error = Some(format!("{}: {e}{keeping}", path.display()));
                tracing::error!(path = %path.display(), error = %e, "desired.toml is invalid");
                false
            }
        }
    }

    async fn fetch(&mut self, desired: &DesiredState) -> Result<Snapshot, SourceError> {
        let source = match self.source.take() {
            Some(s) => s,
            None => match &desired.source {
                SourceSpec::Git(g) => ActiveSource::Git(GitSource::new(
                    g.clone(),
                    &self.settings.paths.state_dir,
                    self.settings.limits.clone(),
                )),
                SourceSpec::Dir(d) => {
                    ActiveSource::Dir(DirSource::new(d.clone(), self.settings.limits.clone()))
                }
                SourceSpec::Manifest(m) => ActiveSource::Manifest(Box::new(ManifestSource::new(
                    m.clone(),
                    &self.settings.paths.state_dir,
                    self.settings.limits.clone(),
                ))),
            },
        };
        let applied = self.applied_revision.clone();
        let kind = match &source {
            ActiveSource::Git(_) => "git",
            ActiveSource::Dir(_) => "dir",
            ActiveSource::Manifest(_) => "manifest",
        };
        let t0 = Instant::now();
        let (source, result) = tokio::task::spawn_blocking(move || {
            let mut source = source;
            let result = match &mut source {
                ActiveSource::Git(g) => g.fetch(applied.as_deref()).map(|f| f.snapshot),
                ActiveSource::Dir(d) => d.fetch(),
                ActiveSource::Manifest(m) => m.fetch(applied.as_deref()).map(|f| f.snapshot),
            };
            (source, result)
        })
        .await
        .expect("fetch task panicked");
        self.metrics
            .record_fetch(kind, result.is_ok(), t0.elapsed());
        self.source = Some(source);
        result
    }

    /// Validates a snapshot, reusing the last result for an unchanged revision.
    fn validate(&mut self, snapshot: &Snapshot) -> Result<Arc<DesiredTree>, Failure> {
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
        let result = assemble(snapshot, &self.settings.limits)
            .map_err(|e| e.to_string())
            .and_then(|tree| self.dry_run(&tree).map(|()| tree));
        let store = Arc::clone(&self.store);
        match result {
            Ok(tree) => {
                let tree = Arc::new(tree);
                // Two entries: staged mode alternates between the staged revision and
                // the one the host holds, and neither should be validated twice.
                self.validated.push(Arc::clone(&tree));
                if self.validated.len() > 2 {
                    self.validated.remove(0);
                }
                if let Err(e) = self.revision_store().save(snapshot) {
                    tracing::warn!(error = %e, "cannot keep the revision for rollbacks and pins");
                }
                let _ = store.lock().expect("store lock").record_revision(
                    &tree.revision,
                    RevisionState::Fetched,
                    None,
                );
                Ok(tree)
            }
            Err(message) => {
                let message = format!("revision {} rejected: {message}", short(&snapshot.revision));
                let _ = store.lock().expect("store lock").record_revision(
                    &snapshot.revision,
                    RevisionState::Rejected,
                    Some(&message),
                );
                self.rejected
                    .insert(snapshot.revision.clone(), message.clone());
                Err(Failure::new(reason::VALIDATION_FAILED, message, true))
            }
        }
    }

    /// Runs podman's generator in dry-run mode over the tree staged in a scratch dir.
    fn dry_run(&self, tree: &DesiredTree) -> Result<(), String> {
        if !self.settings.quadlet.generator_dry_run || !self.settings.quadlet.generator.exists() {
            return Ok(());
        }
        let staging = self.settings.paths.state_dir.join("staging");
        std::fs::create_dir_all(&staging)
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("dryrun-")
            .tempdir_in(&staging)
            .map_err(|e| format!("cannot create a staging dir in {}: {e}", staging.display()))?;
        for app in tree.apps.values() {
            for (rel, file) in &app.files {
                let path = dir.path().join(&app.name).join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("staging {}: {e}", path.display()))?;
                }
                std::fs::write(&path, &file.content)
                    .map_err(|e| format!("staging {}: {e}", path.display()))?;
            }
        }
        let user = self.settings.mode == leger_config::Mode::User;
        generator::dry_run(&self.settings.quadlet.generator, dir.path(), user).map_err(|diags| {
            let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
            format!(
                "podman's quadlet generator refused it:\n{}",
                lines.join("\n")
            )
        })
    }

    /// Runs one pass. `triggers` only label the pass; the work is the same for all.
    pub async fn reconcile(&mut self, triggers: &[String]) -> PassResult {
        let started_at = now_rfc3339();
        let t0 = Instant::now();
        let trigger = triggers.join(",");
        let mut actions = Vec::new();
        let mut revision = None;
        let outcome: Result<PassOutcome, Failure> = async {
            self.load_desired();
            let Some(desired) = self.desired.clone() else {
                return Err(match &self.desired_error {
                    Some(e) => Failure::new(reason::DESIRED_STATE_INVALID, e.clone(), true),
                    None => Failure::new(
                        reason::NO_DESIRED_STATE,
                        format!(
                            "no desired state: {} does not exist. Set it with `legerctl set-desired`",
                            self.settings.paths.desired_file.display()
                        ),
                        true,
                    ),
                });
            };
            self.pinned_revision = desired.policy.pin.clone();
            let snapshot = if let Some(pin) = &desired.policy.pin {
                // A pin (or `legerctl rollback`) converges from legerd's own store,
                // without asking the source at all.
                self.staged = None;
                self.load_stored(pin, "pinned")?
            } else {
                let fetched = self.fetch(&desired).await.map_err(|e| {
                    let r = e.reason();
                    Failure::new(r, e.to_string(), true)
                })?;
                revision = Some(fetched.revision.clone());
                self.fetched_revision = Some(fetched.revision.clone());
                if let Err(refused) = self.refuse_failed_revision(&fetched.revision) {
                    // Keep the host on its last good revision meanwhile: this also finishes
                    // a rollback that a crash interrupted, and heals drift.
                    if let Some(good) = self.applied_revision.clone()
                        && let Ok(report) = self.converge_to_stored(&good, &desired).await
                    {
                        actions = report.done;
                    }
                    return Err(refused);
                }
                if desired.policy.mode == UpdateMode::Staged {
                    match self.stage(fetched, &desired).await? {
                        Some(target) => target,
                        None => return Ok(PassOutcome::Staged),
                    }
                } else {
                    self.staged = None;
                    fetched
                }
            };
            revision = Some(snapshot.revision.clone());
            let tree = self.validate(&snapshot)?;
            let age_files = crate::secrets::age_files(&snapshot);
            drop(snapshot);
            let inventory = self
                .store
                .lock()
                .expect("store lock")
                .inventory()
                .map_err(|e| Failure::new(reason::APPLY_FAILED, e.to_string(), false))?;
            let mut observed = observe(&tree, &inventory, &self.settings.paths.quadlet_dir, &*self.units)
                .await
                .map_err(|e| Failure::new(reason::APPLY_FAILED, e.to_string(), false))?;
            observed.interrupted = interrupted_units(&self.store)
                .map_err(|e| Failure::new(reason::APPLY_FAILED, e.to_string(), false))?;
            let secret_fail = |e: crate::secrets::SecretError| Failure::new(reason::SECRETS_FAILED, e.to_string(), false);
            let prepared = match &mut self.secrets {
                Some(s) => s.prepare(&tree, &desired.secrets.sources, &self.store, &age_files).await.map_err(secret_fail)?,
                None => crate::secrets::PreparedSecrets::default(),
            };
            drop(age_files);
            observed.changed_secrets = prepared.plan.changed.clone();
            observed.blocked_units = prepared.plan.blocked.keys().cloned().collect();
            self.secrets_blocked = prepared.blocked_message();
            let plan = plan(&tree, &observed, PlanPolicy::from(&desired.policy))
                .map_err(|e| Failure::new(reason::PLAN_REFUSED, e.to_string(), true))?;
            for d in &plan.drift {
                journal::drift(&tree.revision, d);
                let _ = self.store.lock().expect("store lock").record_drift(d.kind.as_str(), &d.target, &d.detail);
            }
            if desired.policy.suspend {
                actions = plan.actions.iter().map(|a| format!("(suspended) {a}")).collect();
                return Ok(PassOutcome::Suspended);
            }
            self.backups()
                .take(&plan, &inventory, &self.settings.paths.quadlet_dir, self.applied_revision.as_deref(), &tree.revision, SystemTime::now())
                .await
                .map_err(|e| Failure::new(reason::BACKUP_FAILED, format!("backup before applying {} failed; nothing was changed: {e}", short(&tree.revision)), false))?;
            let target = ApplyTarget {
                quadlet_dir: &self.settings.paths.quadlet_dir,
                units: &*self.units,
                store: &self.store,
            };
            let mut secret_actions = match &self.secrets {
                Some(s) => s.write(&prepared, &self.store).await.map_err(secret_fail)?,
                None => Vec::new(),
            };
            let report = apply(&plan, &tree, &target).await.map_err(|e| {
                Failure::new(reason::APPLY_FAILED, format!("apply of {} failed: {e}", short(&tree.revision)), false)
            });
            let report = report?;
            self.metrics.record_apply(&plan, &report);
            actions = secret_actions.iter().cloned().chain(report.done.iter().cloned()).collect();
            // A unit job that failed is a failed gate; otherwise watch what was started.
            let gate = match report.unit_failures.first() {
                Some(f) => Err(GateFailure {
                    unit: f.unit.clone(),
                    app: f.app.clone(),
                    reason: format!("{} failed: {}", f.action, f.error),
                }),
                None => {
                    let targets = health::units_to_gate(&plan, &tree);
                    let h = &self.settings.health;
                    health::gate(&*self.units, &targets, h.timeout, h.settle).await
                }
            };
            let is_new_revision = self.applied_revision.as_deref() != Some(tree.revision.as_str());
            match gate {
                Ok(()) => {
                    if let Some(s) = &self.secrets {
                        let finished = s.finish(&prepared, &self.store).await.map_err(secret_fail)?;
                        secret_actions.extend(finished.iter().cloned());
                        actions.extend(finished);
                    }
                    crate::crashpoint::hit("before-record");
                    self.record_good(&tree).await;
                    if self.staged.as_ref().is_some_and(|st| Some(&st.revision) == self.applied_revision.as_ref()) {
                        self.staged = None;
                    }
                    if plan.is_empty() && secret_actions.is_empty() {
                        Ok(if self.staged.is_some() { PassOutcome::Staged } else { PassOutcome::Noop })
                    } else {
                        journal::applied(&tree.revision, &actions);
                        Ok(PassOutcome::Applied)
                    }
                }
                // The revision ran before: this is a unit failing on its own, not a
                // bad revision. Retry with backoff; rolling back would not help.
                Err(g) if !is_new_revision => {
                    self.refresh_apps(&tree).await;
                    Err(Failure::new(reason::UNIT_FAILED, format!("{}: {}", g.unit, g.reason), false))
                }
                Err(g) => Err(self.roll_back(&tree, &desired, g, &mut actions).await),
            }
        }
        .await;

        let (outcome_kind, error, failure_cause) = match outcome {
            Ok(o) => {
                self.on_success(o);
                (o, None, None)
            }
            Err(f) => {
                if f.outcome != PassOutcome::RolledBack {
                    journal::failed(revision.as_deref(), f.reason, &f.message);
                }
                self.on_failure(&f);
                (f.outcome, Some(f.message), Some(f.reason))
            }
        };
        let mut record = PassRecord {
            id: 0,
            started_at,
            finished_at: now_rfc3339(),
            duration_ms: u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            trigger,
            revision,
            outcome: outcome_kind,
            actions,
            error,
        };
        if let Ok(id) = self.store.lock().expect("store lock").insert_pass(&record) {
            record.id = id;
        }
        self.metrics.record_pass(&PassSummary {
            outcome: record.outcome,
            duration: t0.elapsed(),
            finished: SystemTime::now(),
            fetched_revision: self.fetched_revision.as_deref(),
            applied_revision: self.applied_revision.as_deref(),
            apps: &self.apps,
            suspended: self.desired.as_ref().is_some_and(|d| d.policy.suspend),
        });
        self.last_pass = Some(record.clone());
        PassResult {
            record,
            failure_cause,
        }
    }

    /// Loads a revision from legerd's own store (`what` says why, for the error).
    fn load_stored(&self, revision: &str, what: &str) -> Result<Snapshot, Failure> {
        match self.revision_store().load(revision) {
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

    /// Staged mode: validates and plans the fetched revision for review, and returns
    /// what the host should converge to now: the approved revision, or the one it
    /// already runs. `None` when there is nothing to converge to yet.
    async fn stage(
        &mut self,
        fetched: Snapshot,
        desired: &DesiredState,
    ) -> Result<Option<Snapshot>, Failure> {
        let applied = self.applied_revision.clone();
        let approved = desired.policy.approved.clone();
        if applied.as_deref() == Some(fetched.revision.as_str()) {
            self.staged = None;
        } else if self.staged.as_ref().map(|s| &s.revision) != Some(&fetched.revision) {
            let tree = self.validate(&fetched)?;
            let inventory = self
                .store
                .lock()
                .expect("store lock")
                .inventory()
                .map_err(|e| Failure::new(reason::APPLY_FAILED, e.to_string(), false))?;
            let observed = observe(
                &tree,
                &inventory,
                &self.settings.paths.quadlet_dir,
                &*self.units,
            )
            .await
            .map_err(|e| Failure::new(reason::APPLY_FAILED, e.to_string(), false))?;
            let plan = plan(&tree, &observed, PlanPolicy::from(&desired.policy))
                .map_err(|e| Failure::new(reason::PLAN_REFUSED, e.to_string(), true))?;
            self.staged = Some(crate::staged::describe(
                &tree,
                &plan,
                &self.settings.paths.quadlet_dir,
                applied.clone(),
            ));
            tracing::info!(leger_revision = %fetched.revision, "revision staged; review with `legerctl diff`, apply with `legerctl approve`");
        }
        match approved {
            Some(a) if Some(&a) != applied.as_ref() => {
                if a == fetched.revision {
                    Ok(Some(fetched))
                } else {
                    self.load_stored(&a, "approved").map(Some)
                }
            }
            _ => match applied {
                Some(a) => self.load_stored(&a, "applied").map(Some),
                None => Ok(None),
            },
        }
    }

    /// What applying the staged revision would do, for `GET /v1/staged`.
    pub fn staged(&self) -> Option<StagedChange> {
        self.staged.clone()
    }

    /// A revision that failed its health gate is not tried again until the source
    /// moves past it: retrying a known-bad revision on every poll would flap the
    /// host between bad and good.
    fn refuse_failed_revision(&self, revision: &str) -> Result<(), Failure> {
        let state = self
            .store
            .lock()
            .expect("store lock")
            .revision(revision)
            .ok()
            .flatten();
        match state {
            Some(r) if r.state == RevisionState::Failed => Err(Failure::new(
                reason::ROLLED_BACK,
                format!(
                    "revision {} failed its health gate and was rolled back; waiting for a newer revision. {}",
                    short(revision),
                    r.error.unwrap_or_default()
                ),
                true,
            )),
            _ => Ok(()),
        }
    }

    /// Records a revision that passed the gate as the host's good revision.
    async fn record_good(&mut self, tree: &DesiredTree) {
        self.refresh_apps(tree).await;
        *self.managed_units.write().expect("units lock") = tree
            .apps
            .values()
            .flat_map(|a| a.units.iter().map(|u| u.name.clone()))
            .collect();
        self.applied_revision = Some(tree.revision.clone());
        let _ = self.store.lock().expect("store lock").record_revision(
            &tree.revision,
            RevisionState::Applied,
            None,
        );
        if let Err(e) = self
            .revision_store()
            .keep_newest(REVISIONS_KEPT, &tree.revision)
        {
            tracing::warn!(error = %e, "cannot prune the revision store");
        }
    }

    fn backups(&self) -> crate::backup::Backups {
        crate::backup::Backups::new(
            self.settings.paths.state_dir.join("backups"),
            self.settings.backups.clone(),
        )
    }

    /// Restores an app from one of its backups. The controller calls it between
    /// passes, so a restore never races an apply.
    pub async fn restore(
        &mut self,
        request: &leger_api_types::RestoreRequest,
    ) -> Result<leger_api_types::RestoreResponse, crate::backup::BackupError> {
        crate::backup::restore(
            &self.backups(),
            &self.settings.paths.quadlet_dir,
            &*self.units,
            &self.store,
            &request.app,
            request.backup.as_deref(),
        )
        .await
    }

    fn revision_store(&self) -> RevisionStore {
        RevisionStore::new(self.settings.paths.state_dir.join("revisions"))
    }

    /// Converges the host to a revision from legerd's own revision store (a rollback,
    /// or holding the last good revision while the source offers only a failed one).
    async fn converge_to_stored(
        &mut self,
        revision: &str,
        desired: &DesiredState,
    ) -> Result<crate::apply::ApplyReport, String> {
        let tree = match self.revision_store().load(revision) {
            Ok(Some(snapshot)) => {
                assemble(&snapshot, &self.settings.limits).map_err(|e| e.to_string())?
            }
            Ok(None) => return Err("it is not in the revision store".to_owned()),
            Err(e) => return Err(e.to_string()),
        };
        let inventory = self
            .store
            .lock()
            .expect("store lock")
            .inventory()
            .map_err(|e| e.to_string())?;
        let mut observed = observe(
            &tree,
            &inventory,
            &self.settings.paths.quadlet_dir,
            &*self.units,
        )
        .await
        .map_err(|e| e.to_string())?;
        observed.interrupted = interrupted_units(&self.store).map_err(|e| e.to_string())?;
        let plan =
            plan(&tree, &observed, PlanPolicy::from(&desired.policy)).map_err(|e| e.to_string())?;
        let target = ApplyTarget {
            quadlet_dir: &self.settings.paths.quadlet_dir,
            units: &*self.units,
            store: &self.store,
        };
        let report = apply(&plan, &tree, &target)
            .await
            .map_err(|e| e.to_string())?;
        self.refresh_apps(&tree).await;
        *self.managed_units.write().expect("units lock") = tree
            .apps
            .values()
            .flat_map(|a| a.units.iter().map(|u| u.name.clone()))
            .collect();
        Ok(report)
    }

    /// Puts the last good revision back after `bad` failed its gate, and returns the
    /// failure the pass reports. The bad revision is marked so it is not retried.
    async fn roll_back(
        &mut self,
        bad: &DesiredTree,
        desired: &DesiredState,
        g: GateFailure,
        actions: &mut Vec<String>,
    ) -> Failure {
        let user = self.settings.mode == leger_config::Mode::User;
        let tail = health::last_journal_lines(&g.unit, user, 8).await;
        let mut message = format!("{} of app {} {}", g.unit, g.app, g.reason);
        if !tail.is_empty() {
            message.push_str(&format!("; last log lines:\n{tail}"));
        }
        let _ = self.store.lock().expect("store lock").record_revision(
            &bad.revision,
            RevisionState::Failed,
            Some(&message),
        );
        let Some(good_rev) = self.applied_revision.clone() else {
            self.refresh_apps(bad).await;
            return Failure::new(
                reason::HEALTH_CHECK_FAILED,
                format!(
                    "revision {} failed its health gate and there is no earlier revision to roll back to: {message}",
                    short(&bad.revision)
                ),
                true,
            );
        };
        let rollback_error = match self.converge_to_stored(&good_rev, desired).await {
            Ok(report) => {
                actions.extend(report.done.iter().map(|a| format!("rollback: {a}")));
                report
                    .unit_failures
                    .iter()
                    .map(|f| format!("{} {}: {}", f.action, f.unit, f.error))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Err(e) => {
                self.refresh_apps(bad).await;
                return Failure::new(
                    reason::HEALTH_CHECK_FAILED,
                    format!(
                        "revision {} failed its health gate; cannot roll back to {}: {e}. {message}",
                        short(&bad.revision),
                        short(&good_rev)
                    ),
                    true,
                );
            }
        };
        let _ = self.store.lock().expect("store lock").record_revision(
            &good_rev,
            RevisionState::Applied,
            None,
        );
        journal::rolled_back(&bad.revision, &good_rev, &g.unit, &message);
        let mut text = format!(
            "revision {} rolled back to {}: {message}",
            short(&bad.revision),
            short(&good_rev)
        );
        if !rollback_error.is_empty() {
            text.push_str(&format!(
                "; the rollback itself had errors: {rollback_error}"
            ));
        }
        Failure {
            reason: reason::ROLLED_BACK,
            message: text,
            stalled: true,
            outcome: PassOutcome::RolledBack,
        }
    }

    fn on_success(&mut self, outcome: PassOutcome) {
        let (status, why, msg) = if outcome == PassOutcome::Suspended {
            (
                ConditionStatus::Unknown,
                reason::SUSPENDED,
                "policy.suspend is set: changes are planned, not applied".to_owned(),
            )
        } else {
            let down: Vec<&str> = self
                .apps
                .iter()
                .flat_map(|a| a.units.iter())
                .filter(|u| u.active_state != "active")
                .map(|u| u.name.as_str())
                .collect();
            if let Some(msg) = &self.secrets_blocked {
                (ConditionStatus::False, reason::SECRET_MISSING, msg.clone())
            } else if down.is_empty() {
                (
                    ConditionStatus::True,
                    reason::SUCCEEDED,
                    format!(
                        "applied revision {}",
                        self.applied_revision.as_deref().map_or("-".into(), short)
                    ),
                )
            } else {
                (
                    ConditionStatus::False,
                    reason::UNIT_FAILED,
                    format!("not active: {}", down.join(", ")),
                )
            }
        };
        self.set_condition(condition(condition_type::READY, status, why, msg));
        self.set_condition(condition(
            condition_type::RECONCILING,
            ConditionStatus::False,
            reason::SUCCEEDED,
            "",
        ));
        self.set_condition(condition(
            condition_type::STALLED,
            ConditionStatus::False,
            reason::SUCCEEDED,
            "",
        ));
    }

    fn on_failure(&mut self, f: &Failure) {
        self.set_condition(condition(
            condition_type::READY,
            ConditionStatus::False,
            f.reason,
            f.message.clone(),
        ));
        self.set_condition(condition(
            condition_type::RECONCILING,
            ConditionStatus::False,
            f.reason,
            "waiting to retry",
        ));
        let stalled = if f.stalled {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        self.set_condition(condition(
            condition_type::STALLED,
            stalled,
            f.reason,
            f.message.clone(),
        ));
    }

    /// Re-reads the state of every desired unit, for status.
    async fn refresh_apps(&mut self, tree: &DesiredTree) {
        let mut apps = Vec::with_capacity(tree.apps.len());
        for app in tree.apps.values() {
            let mut units = Vec::with_capacity(app.units.len());
            for u in &app.units {
                let state = self
                    .units
                    .unit_state(&u.name)
                    .await
                    .unwrap_or_else(|_| crate::model::UnitState::unknown());
                units.push(UnitStatus {
                    name: u.name.clone(),
                    active_state: state.active_state,
                    sub_state: state.sub_state,
                });
            }
            apps.push(AppStatus {
                name: app.name.clone(),
                units,
            });
        }
        self.apps = apps;
    }

    /// Updates one unit's state from a D-Bus event, so status stays current between passes.
    pub fn note_unit_state(&mut self, unit: &str, active_state: &str, sub_state: Option<&str>) {
        for u in self
            .apps
            .iter_mut()
            .flat_map(|a| a.units.iter_mut())
            .filter(|u| u.name == unit)
        {
            u.active_state = active_state.to_owned();
            if let Some(s) = sub_state {
                u.sub_state = s.to_owned();
            }
        }
    }

    /// The status document as of now.
    pub fn status(&self) -> StatusDocument {
        let spec = match &self.desired {
            Some(d) => {
                let (kind, source, reference, path) = match &d.source {
                    SourceSpec::Git(g) => (
                        "git",
                        g.url.clone(),
                        Some(g.reference.clone()),
                        g.path.clone(),
                    ),
                    SourceSpec::Dir(dir) => ("dir", dir.path.display().to_string(), None, None),
                    SourceSpec::Manifest(m) => (
                        "manifest",
                        m.url.clone(),
                        Some(match m.version {
                            leger_api_types::ManifestVersion::Latest => "latest".to_owned(),
                            leger_api_types::ManifestVersion::Pinned(n) => format!("v{n}"),
                        }),
                        None,
                    ),
                };
                StatusSpec {
                    source_kind: Some(kind.to_owned()),
                    source: Some(source),
                    reference,
                    path,
                    suspended: d.policy.suspend,
                }
            }
            None => StatusSpec::default(),
        };
        StatusDocument::new(
            spec,
            AgentStatus {
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                mode: self.settings.mode.as_str().to_owned(),
                fetched_revision: self.fetched_revision.clone(),
                applied_revision: self.applied_revision.clone(),
                conditions: self.conditions.clone(),
                apps: self.apps.clone(),
                last_pass: self.last_pass.clone(),
                desired_state_error: self.desired_error.clone(),
                staged_revision: self.staged.as_ref().map(|s| s.revision.clone()),
                pinned_revision: self.pinned_revision.clone(),
            },
        )
    }

    /// One line for `systemctl status` (sd_notify STATUS=).
    pub fn status_line(&self) -> String {
        let units: usize = self.apps.iter().map(|a| a.units.len()).sum();
        let applied = self
            .applied_revision
            .as_deref()
            .map_or("nothing".to_owned(), |r| format!("applied {}", short(r)));
        let outcome = self
            .last_pass
            .as_ref()
            .map_or("starting", |p| p.outcome.as_str());
        format!(
            "{applied} · {} apps, {units} units · last pass {outcome}",
            self.apps.len()
        )
    }
}

/// The first 12 characters of a revision, for people; a manifest revision keeps its
/// version: `v3@sha256:0123…` reads `v3@0123456789ab`.
pub fn short(revision: &str) -> std::borrow::Cow<'_, str> {
    leger_api_types::revision::short(revision)
}

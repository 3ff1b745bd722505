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
use leger_config::Settings;

use crate::apply::{ApplyTarget, apply};
use crate::assemble::assemble;
use crate::journal;
use crate::model::{DesiredTree, Snapshot};
use crate::observe::observe;
use crate::plan::{PlanPolicy, plan};
use crate::quadlet::generator;
use crate::source::SourceError;
use crate::source::dir::DirSource;
use crate::source::git::GitSource;
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
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>, stalled: bool) -> Self {
        Failure {
            reason,
            message: message.into(),
            stalled,
        }
    }
}

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
    validated: Option<Arc<DesiredTree>>,
    rejected: HashMap<String, String>,
    fetched_revision: Option<String>,
    applied_revision: Option<String>,
    managed_units: Arc<RwLock<BTreeSet<String>>>,
    apps: Vec<AppStatus>,
    conditions: Vec<Condition>,
    last_pass: Option<PassRecord>,
    secrets: Option<crate::secrets::SecretsConverger>,
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
            validated: None,
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
            secrets: None,
            secrets_blocked: None,
        }
    }

    /// Converges Podman secrets too. Without it, `Secret=` lines are left to the operator.
    pub fn with_secrets(mut self, secrets: crate::secrets::SecretsConverger) -> Self {
        self.secrets = Some(secrets);
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
            SourceSpec::Git(_) => None,
        }
    }

    /// The poll interval in force.
    pub fn poll_interval(&self) -> Duration {
        match self.desired.as_ref().map(|d| &d.source) {
            Some(SourceSpec::Git(g)) => g.poll_interval,
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
                    self.validated = None;
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
            },
        };
        let applied = self.applied_revision.clone();
        let (source, result) = tokio::task::spawn_blocking(move || {
            let mut source = source;
            let result = match &mut source {
                ActiveSource::Git(g) => g.fetch(applied.as_deref()).map(|f| f.snapshot),
                ActiveSource::Dir(d) => d.fetch(),
            };
            (source, result)
        })
        .await
        .expect("fetch task panicked");
        self.source = Some(source);
        result
    }

    /// Validates a snapshot, reusing the last result for an unchanged revision.
    fn validate(&mut self, snapshot: &Snapshot) -> Result<Arc<DesiredTree>, Failure> {
        if let Some(tree) = &self.validated
            && tree.revision == snapshot.revision
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
                self.validated = Some(Arc::clone(&tree));
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
            let snapshot = self.fetch(&desired).await.map_err(|e| {
                let r = e.reason();
                Failure::new(r, e.to_string(), true)
            })?;
            revision = Some(snapshot.revision.clone());
            self.fetched_revision = Some(snapshot.revision.clone());
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
            if report.unit_failures.is_empty()
                && let Some(s) = &self.secrets
            {
                secret_actions.extend(s.finish(&prepared, &self.store).await.map_err(secret_fail)?);
            }
            actions = secret_actions.iter().cloned().chain(report.done.iter().cloned()).collect();
            self.refresh_apps(&tree).await;
            *self.managed_units.write().expect("units lock") =
                tree.apps.values().flat_map(|a| a.units.iter().map(|u| u.name.clone())).collect();
            self.applied_revision = Some(tree.revision.clone());
            let _ = self.store.lock().expect("store lock").record_revision(&tree.revision, RevisionState::Applied, None);
            if !report.unit_failures.is_empty() {
                let lines: Vec<String> =
                    report.unit_failures.iter().map(|f| format!("{} {}: {}", f.action, f.unit, f.error)).collect();
                return Err(Failure::new(reason::UNIT_FAILED, lines.join("; "), false));
            }
            if plan.is_empty() && secret_actions.is_empty() {
                Ok(PassOutcome::Noop)
            } else {
                journal::applied(&tree.revision, &actions);
                Ok(PassOutcome::Applied)
            }
        }
        .await;

        let (outcome_kind, error, failure_cause) = match outcome {
            Ok(o) => {
                self.on_success(o);
                (o, None, None)
            }
            Err(f) => {
                journal::failed(revision.as_deref(), f.reason, &f.message);
                self.on_failure(&f);
                (PassOutcome::Failed, Some(f.message), Some(f.reason))
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
        self.last_pass = Some(record.clone());
        PassResult {
            record,
            failure_cause,
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
                        self.applied_revision.as_deref().map_or("-", short)
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

/// The first 12 characters of a revision, for people.
pub fn short(revision: &str) -> &str {
    let r = revision.strip_prefix("sha256:").unwrap_or(revision);
    &r[..r.len().min(12)]
}

//! The reconciler: what one pass needs from the last (desired state, the source, the
//! validation cache, secrets, gates, the host state), handed to the pass stages in
//! [`crate::pass`]. The controller decides *when*; the pass decides *what*; status is
//! projected from the state ([`crate::status`]).
//!
//! **Architecture invariant:** a revision is applied whole or not at all. Everything
//! that can reject it (fetch, validation, the generator's dry run, the planner's
//! guards, the gates, the backup) runs before the first file is written, and a
//! rejected revision leaves the running one untouched.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use leger_api_types::status::reason;
use leger_api_types::{
    DesiredState, RestoreRequest, RestoreResponse, SourceSpec, StagedChange, StatusDocument,
};
use leger_config::Settings;

use crate::backup::BackupError;
use crate::metrics::Metrics;
use crate::pass::blocking;
use crate::pass::fetch::Fetcher;
use crate::pass::gate::default_gates;
use crate::pass::run::Pass;
use crate::pass::validate::Validator;
use crate::pass::{Failure, Gate, Host, HostState, PassResult};
use crate::status::{self, StatusView};
use crate::store::Store;
use crate::systemd::UnitManager;

/// Store meta key holding the last desired.toml that parsed, so a broken file on disk
/// after a restart still leaves legerd with something good to converge to.
const META_LAST_GOOD_DESIRED: &str = "last_good_desired";

/// Carries state from pass to pass.
#[derive(Debug)]
pub struct Reconciler<U> {
    settings: Settings,
    units: Arc<U>,
    store: Arc<Mutex<Store>>,
    /// Where passes, fetches and applies are counted for `GET /metrics`.
    metrics: Arc<Metrics>,
    desired: Option<DesiredState>,
    desired_text: Option<String>,
    desired_error: Option<String>,
    fetcher: Fetcher,
    validator: Validator,
    secrets: Option<crate::secrets::SecretsConverger>,
    /// What may hold a pass before it changes the host (suspend; the fleet lock).
    gates: Vec<Box<dyn Gate>>,
    /// Restart slots around disruptive passes; also among `gates` (a no-op without
    /// `[fleet.lock]`), kept here for status and `legerctl fleet release`.
    fleet: Arc<crate::fleet::FleetGate>,
    /// The host as the passes left it; status is projected from it.
    state: HostState,
    /// Every podman and journal call of a pass (backups, the health gate's container
    /// health, a failed unit's last log lines) goes through this seam.
    podman: Arc<dyn crate::podman::Podman>,
}

/// The `Host` of a pass, built from the reconciler's fields. A macro, not a method: a
/// method would borrow all of `self`, and the pass also needs `&mut self.state`.
macro_rules! host_of {
    ($r:ident) => {
        Host {
            settings: &$r.settings,
            units: &*$r.units,
            store: &$r.store,
            metrics: &$r.metrics,
            podman: &$r.podman,
        }
    };
}

/// The `Pass` over `host`, borrowing the rest of the reconciler's fields mutably.
macro_rules! pass_of {
    ($r:ident, $host:ident) => {
        Pass {
            host: &$host,
            state: &mut $r.state,
            fetcher: &mut $r.fetcher,
            validator: &mut $r.validator,
            secrets: $r.secrets.as_mut(),
            gates: &$r.gates,
        }
    };
}

impl<U: UnitManager> Reconciler<U> {
    /// A reconciler with no pass run yet.
    pub fn new(settings: Settings, units: Arc<U>, store: Arc<Mutex<Store>>) -> Self {
        let (applied_revision, resource_drift) = {
            let s = store.lock().expect("store lock");
            let applied = s.last_applied_revision().ok().flatten();
            (applied, crate::pass::resources::remembered(&s))
        };
        // Said again at each start: the journal of this boot shows it too.
        for (file, d) in &resource_drift {
            let revision = applied_revision.as_deref().unwrap_or_default();
            crate::journal::unhealable_drift(revision, file, &d.message);
        }
        let metrics = Arc::new(Metrics::new(false));
        let fleet = Arc::new(crate::fleet::FleetGate::new(
            &settings.fleet,
            crate::fleet::RetrySettings {
                initial: settings.reconcile.backoff_initial,
                max: settings.reconcile.backoff_max,
            },
            Arc::clone(&store),
            Arc::clone(&metrics),
        ));
        let mut gates = default_gates();
        gates.push(Box::new(crate::fleet::FleetLockGate(Arc::clone(&fleet))));
        let podman = Arc::new(crate::podman::CliPodman::new(crate::command::Runner::new(
            settings.timeouts.command,
        )));
        Reconciler {
            podman,
            settings,
            units,
            store,
            metrics,
            fleet,
            desired: None,
            desired_text: None,
            desired_error: None,
            fetcher: Fetcher::default(),
            validator: Validator::default(),
            secrets: None,
            gates,
            state: HostState {
                applied_revision,
                resource_drift,
                ..HostState::default()
            },
        }
    }

    /// Converges Podman secrets too. Without it, `Secret=` lines are left to the operator.
    pub fn with_secrets(mut self, secrets: crate::secrets::SecretsConverger) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Runs podman and journal calls through `podman` (shared with the secrets
    /// converger in legerd; a recording double in tests).
    pub fn with_podman(mut self, podman: Arc<dyn crate::podman::Podman>) -> Self {
        self.podman = podman;
        self
    }

    /// Asks `program` for the host's podman version instead of `podman` on `PATH` (a
    /// test's stand-in that prints a version; validation then follows it).
    pub fn with_podman_program(mut self, program: impl Into<std::path::PathBuf>) -> Self {
        self.validator = std::mem::take(&mut self.validator).with_podman_program(program);
        self
    }

    /// Reports into `metrics` (the one `GET /metrics` serves) instead of a private set.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.fleet.set_metrics(Arc::clone(&metrics));
        self.metrics = metrics;
        self
    }

    /// The fleet gate, shared with the API (`legerctl fleet release`).
    pub fn fleet_gate(&self) -> Arc<crate::fleet::FleetGate> {
        Arc::clone(&self.fleet)
    }

    /// Adds a gate after the built-in ones (the fleet lock hooks in here).
    pub fn with_gate(mut self, gate: Box<dyn Gate>) -> Self {
        self.gates.push(gate);
        self
    }

    /// What [`crate::echo::drop_echoes`] reads: systemd and the store.
    pub fn echo_parts(&self) -> (&U, &Arc<Mutex<Store>>) {
        (&self.units, &self.store)
    }

    /// The set of managed unit names, shared with the unit event filter.
    pub fn managed_units(&self) -> Arc<RwLock<BTreeSet<String>>> {
        Arc::clone(&self.state.managed_units)
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
        self.state.applied_revision.as_deref()
    }

    /// The host state the passes recorded.
    pub fn state(&self) -> &HostState {
        &self.state
    }

    /// Marks the status as reconciling, for the duration of a pass.
    pub fn mark_reconciling(&mut self) {
        self.state.reconciling = true;
    }

    /// What applying the staged revision would do, for `GET /v1/staged`.
    pub fn staged(&self) -> Option<StagedChange> {
        self.state.staged.clone()
    }

    /// The status document as of now, projected from the state.
    pub fn status(&self, previous: Option<&StatusDocument>) -> StatusDocument {
        let podman = self.validator.podman_status();
        status::project(
            &StatusView {
                mode: self.settings.mode.as_str(),
                desired: self.desired.as_ref(),
                desired_error: self.desired_error.as_deref(),
                state: &self.state,
                podman: podman.as_ref(),
                fleet: Some(&self.fleet.status()),
            },
            previous,
        )
    }

    /// One line for `systemctl status` (sd_notify STATUS=).
    pub fn status_line(&self) -> String {
        status::status_line(&self.state)
    }

    /// Runs one pass. `triggers` only label the pass; the work is the same for all.
    pub async fn reconcile(&mut self, triggers: &[String]) -> PassResult {
        self.load_desired().await;
        let desired = match &self.desired {
            Some(d) => Ok(d.clone()),
            None => Err(match &self.desired_error {
                Some(e) => Failure::new(reason::DESIRED_STATE_INVALID, e.clone(), true),
                None => Failure::new(
                    reason::NO_DESIRED_STATE,
                    format!(
                        "no desired state: {} does not exist. Set it with `legerctl set-desired`",
                        self.settings.paths.desired_file.display()
                    ),
                    true,
                ),
            }),
        };
        let host = host_of!(self);
        let pass = pass_of!(self, host);
        pass.run(desired.as_ref().map_err(Clone::clone), &triggers.join(","))
            .await
    }

    /// Re-reads the states of the units status shows (one D-Bus call), between passes,
    /// so status stays live while passes are suspended or held.
    pub async fn refresh_unit_states(&mut self) {
        let host = host_of!(self);
        crate::pass::record::refresh_unit_states(&host, &mut self.state).await;
    }

    /// Reads desired.toml now (a pass does it too), so the controller can watch a dir
    /// source before the pass fetches from it.
    pub async fn reload_desired(&mut self) {
        self.load_desired().await;
    }

    /// What the next pass would do now (`legerctl plan`): the pass's stages up to the
    /// plan, without gates or apply. The controller calls it between passes.
    pub async fn plan(
        &mut self,
        app: Option<&str>,
    ) -> Result<leger_api_types::PlanDocument, crate::pass::preview::PreviewError> {
        self.load_desired().await;
        let Some(desired) = self.desired.clone() else {
            return Err(crate::pass::preview::PreviewError::Failed(
                self.desired_error.clone().unwrap_or_else(|| {
                    "no desired state: set it with `legerctl set-desired`".to_owned()
                }),
            ));
        };
        let lock = self.fleet.status().lock;
        let host = host_of!(self);
        let pass = pass_of!(self, host);
        crate::pass::preview::plan_now(pass, &desired, app, lock.as_ref()).await
    }

    /// Restores an app from one of its backups through the converge stage. The
    /// controller calls it between passes, so a restore never races an apply.
    pub async fn restore(
        &mut self,
        request: &RestoreRequest,
    ) -> (PassResult, Result<RestoreResponse, BackupError>) {
        self.load_desired().await;
        let host = host_of!(self);
        let pass = pass_of!(self, host);
        pass.restore(self.desired.as_ref(), request).await
    }

    /// Records a pass the controller abandoned because it ran past
    /// `reconcile.pass_timeout`: a failed pass (reason `PassTimedOut`) whose message
    /// names what it was stuck in, so status, history and the journal say which command
    /// or call hung. Nothing is rolled back here: dropping the pass killed the command
    /// it was running, and an interrupted apply left its intent record, so the next pass
    /// (after backoff) finishes the job once the command answers again.
    pub async fn abandon_pass(
        &mut self,
        triggers: &[String],
        started: SystemTime,
        budget: Duration,
        stuck: &str,
    ) -> PassResult {
        let failure = Failure::new(
            reason::PASS_TIMED_OUT,
            format!(
                "pass abandoned after {} (reconcile.pass_timeout); it was stuck in {stuck}. It is retried with backoff",
                humantime::format_duration(budget)
            ),
            false,
        );
        let host = host_of!(self);
        let elapsed = started.elapsed().unwrap_or(budget);
        crate::pass::run::record_abandoned(
            &host,
            &mut self.state,
            failure,
            &triggers.join(","),
            humantime::format_rfc3339_seconds(started).to_string(),
            elapsed,
            self.desired.as_ref().is_some_and(|d| d.policy.suspend),
        )
        .await
    }

    /// The audit event of a desired.toml legerd has not seen before: compared with the
    /// text of the last pass, or at start with the last good text in the store
    /// (`last_good`), so a restart does not log an unchanged file again.
    fn audit_desired_change(&self, text: &str, last_good: Option<&str>) {
        let before = self.desired_text.as_deref().or(last_good);
        if before != Some(text) {
            crate::journal::desired_changed(&self.settings.paths.desired_file, before, text);
        }
    }

    /// Reads desired.toml. A broken or missing file keeps the last good state in force
    /// and is reported; returns true when the desired state changed. The file and the
    /// store are read (and the last good text written) on the blocking pool.
    async fn load_desired(&mut self) -> bool {
        let path = self.settings.paths.desired_file.clone();
        // The last good text: the fallback for a missing file before any desired state
        // is known, and what a restarted legerd compares the file with for the audit.
        let wants_last_good = self.desired_text.is_none() || self.desired.is_none();
        let store = Arc::clone(&self.store);
        let (read, last_good) = blocking::run(move || {
            let read = std::fs::read_to_string(&path);
            let last_good = if wants_last_good {
                store
                    .lock()
                    .expect("store lock")
                    .meta(META_LAST_GOOD_DESIRED)
                    .ok()
                    .flatten()
            } else {
                None
            };
            (read, last_good)
        })
        .await;
        let path = &self.settings.paths.desired_file;
        let text = match read {
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
            None => match last_good.clone() {
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
        if !from_store {
            self.audit_desired_change(&text, last_good.as_deref());
        }
        match DesiredState::from_toml_str(&text) {
            Ok(d) => {
                self.desired_error = None;
                if !from_store {
                    let t = text.clone();
                    let _ = blocking::store(&self.store, move |s| {
                        s.set_meta(META_LAST_GOOD_DESIRED, &t)
                    })
                    .await;
                }
                let source_changed =
                    self.desired.as_ref().map(|old| &old.source) != Some(&d.source);
                if source_changed {
                    self.fetcher.reset();
                    self.validator.reset();
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
}

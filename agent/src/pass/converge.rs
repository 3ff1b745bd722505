//! The converge stage: the single path along which legerd changes the host.
//!
//! Forward apply, approval, pin, hold-last-good, rollback and restore all call
//! [`converge`] with their [`Mode`]. Each runs every step, in this order:
//!
//! 1. observe (with the intent record of an interrupted apply, adopting its files);
//! 2. prepare secrets;
//! 3. plan (the pure planner);
//! 4. gates (all modes but rollback);
//! 5. back up (not for a restore, whose source is a backup already);
//! 6. write the intent record, then secrets into podman;
//! 7. apply (a restore stops the app and imports its volumes first);
//! 8. mark the intent `gating`, then check health on what the revision changed.
//!
//! Recording the revision good (and only then clearing the intent record) is the
//! caller's, in [`super::record`]: a revision is good only after its own gate passed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use leger_api_types::DesiredState;
use leger_api_types::status::reason;

use super::gate::{self, GateInput, GateVerdict};
use super::health::{self, Verdict};
use super::intent::{self, Intent, Phase};
use super::observe::{Observation, observe};
use super::restore::RestoreSpec;
use super::secrets::{self as secrets_stage, AgeFiles};
use super::{Failure, Gate, Host, HostState, backup, blocking, completed};
use crate::apply::{ApplyReport, ApplyTarget, apply};
use crate::crashpoint;
use crate::health::GateFailure;
use crate::journal;
use crate::model::{DesiredTree, Revision, UnitState};
use crate::plan::{Action, Plan, PlanPolicy, plan};
use crate::secrets::SecretsConverger;
use crate::systemd::UnitManager;

/// Why the host converges, which decides what a failed health gate means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The source's newest revision.
    Forward,
    /// The approved revision (staged mode).
    Approve,
    /// `policy.pin` (also `legerctl rollback`).
    Pin,
    /// The host stays on its last good revision: staged mode with nothing new
    /// approved, or a candidate that failed before. Heals drift.
    HoldLastGood,
    /// Back to the last good revision after a new one failed its gate.
    Rollback,
    /// One app back from a backup.
    Restore(RestoreSpec),
}

impl Mode {
    /// A name for logs, the intent record and history.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Forward => "forward",
            Mode::Approve => "approve",
            Mode::Pin => "pin",
            Mode::HoldLastGood => "hold-last-good",
            Mode::Rollback => "rollback",
            Mode::Restore(_) => "restore",
        }
    }

    /// A failed gate on a revision new to the host rolls it back in these modes. A
    /// rollback that fails is not rolled back again, a held revision is the good one,
    /// and a restore was asked for by an operator who gets the error.
    pub fn rolls_back(&self) -> bool {
        matches!(self, Mode::Forward | Mode::Approve | Mode::Pin)
    }

    /// The one app a restore may touch.
    pub fn scope(&self) -> Option<&str> {
        match self {
            Mode::Restore(r) => Some(&r.app),
            _ => None,
        }
    }
}

/// A validated revision to converge to.
#[derive(Debug, Clone)]
pub struct Target {
    /// The validated tree.
    pub tree: Arc<DesiredTree>,
    /// Its `secrets/*.age` files (git-age source).
    pub age_files: AgeFiles,
}

/// What the converge stage did.
#[derive(Debug, Clone, Default)]
pub struct Converged {
    /// The plan it applied (or would have, when held).
    pub plan: Plan,
    /// One line per thing done, in order, for history.
    pub actions: Vec<String>,
    /// True when anything on the host changed (files, units, secrets).
    pub changed: bool,
    /// A gate held the pass: reason, message, retry.
    pub held: Option<GateVerdict>,
    /// Units that failed although the revision did not change them.
    pub unrelated: Vec<String>,
    /// The stops a restore ran before its volumes were imported.
    pub stopped: Vec<String>,
    /// The volumes a restore imported.
    pub volumes: Vec<String>,
    /// Units of other apps a restore stopped (they mount a restored volume) and
    /// started again.
    pub started_elsewhere: Vec<String>,
    /// The unit states observe read, when the pass changed nothing that could move
    /// them: status is refreshed from these instead of asking systemd again.
    pub observed_units: Option<BTreeMap<String, UnitState>>,
}

/// Why converging stopped.
#[derive(Debug, Clone)]
pub enum ConvergeError {
    /// A stage failed; the host is as the stage left it (before the apply: untouched).
    Failed(Failure),
    /// The apply finished but the health gate blames the revision.
    Unhealthy {
        /// What the gate saw.
        failure: GateFailure,
        /// What was done before, for history.
        actions: Vec<String>,
    },
}

impl From<Failure> for ConvergeError {
    fn from(f: Failure) -> Self {
        ConvergeError::Failed(f)
    }
}

/// What a converge may touch besides the host seams.
#[derive(Debug)]
pub struct Context<'a, 'h, U> {
    /// systemd, the store, settings, metrics.
    pub host: &'a Host<'h, U>,
    /// Podman secrets, when legerd converges them.
    pub secrets: Option<&'a mut SecretsConverger>,
    /// The gates that may hold the pass.
    pub gates: &'a [Box<dyn Gate>],
    /// The desired state in force.
    pub desired: &'a DesiredState,
    /// The host state (applied revision, blocked secrets).
    pub state: &'a mut HostState,
}

fn apply_failed(tree: &DesiredTree, e: impl std::fmt::Display) -> Failure {
    Failure::new(
        reason::APPLY_FAILED,
        format!("apply of {} failed: {e}", Revision(&tree.revision)),
        false,
    )
}

/// Converges the host to `target` in `mode`. See the module doc for the steps.
pub async fn converge<U: UnitManager>(
    cx: &mut Context<'_, '_, U>,
    mode: &Mode,
    target: &Target,
) -> Result<Converged, ConvergeError> {
    let host = cx.host;
    let tree = &target.tree;
    let Observation {
        mut observed,
        inventory,
        intent: _,
        regate,
    } = observe(host, tree, mode.scope()).await?;
    let memory = completed::load(host.store)
        .await
        .map_err(|e| Failure::new(reason::APPLY_FAILED, e.to_string(), false))?;
    completed::fill(&mut observed, tree, &memory);
    tracing::debug!(stage = "observe", "pass stage done");
    crashpoint::hit("after-observe");

    let prepared = secrets_stage::prepare(
        host,
        cx.secrets.as_deref_mut(),
        tree,
        cx.desired,
        &target.age_files,
    )
    .await?;
    observed.changed_secrets = prepared.plan.changed.clone();
    observed.blocked_units = prepared.plan.blocked.keys().cloned().collect();
    if mode.scope().is_none() {
        cx.state.secrets_blocked = prepared.blocked_message();
    }
    let mut also = regate.clone();
    let mut policy = PlanPolicy::from(&cx.desired.policy);
    if let Mode::Restore(r) = mode {
        // Every unit of the app starts again after its volumes are back.
        let units = r.units(tree);
        // They are stopped before the apply, so the plan starts (not restarts) them.
        for u in &units {
            if let Some(state) = observed.units.get_mut(u) {
                state.active_state = "inactive".into();
                state.sub_state = "dead".into();
            }
        }
        observed.interrupted.extend(units.iter().cloned());
        also.extend(units);
        policy.prune = true;
        policy.allow_empty = true;
    }

    let plan = plan(tree, &observed, policy)
        .map_err(|e| Failure::new(reason::PLAN_REFUSED, e.to_string(), true))?;
    tracing::debug!(stage = "plan", "pass stage done");
    crashpoint::hit("after-plan");
    for d in &plan.drift {
        journal::drift(&tree.revision, d);
        let (kind, target, detail) = (d.kind.as_str(), d.target.clone(), d.detail.clone());
        let _ = blocking::store(host.store, move |s| s.record_drift(kind, &target, &detail)).await;
    }

    let input = GateInput {
        plan: &plan,
        tree,
        mode,
        desired: cx.desired,
        observed: &observed,
        healthy: None,
    };
    let gated = *mode != Mode::Rollback;
    if gated {
        let verdict = gate::check_all(cx.gates, input).await;
        if verdict != GateVerdict::Proceed {
            return Ok(Converged {
                actions: plan.actions.iter().map(|a| format!("(held) {a}")).collect(),
                plan: plan.clone(),
                held: Some(verdict),
                ..Default::default()
            });
        }
    }
    let result = apply_and_check(
        cx, mode, target, &plan, &inventory, &prepared, &also, &regate,
    )
    .await;
    // The gate has judged what the apply started: systemd may unload those units.
    host.units.release_runs().await;
    if gated {
        let released = GateInput {
            healthy: Some(result.is_ok()),
            ..input
        };
        gate::release_all(cx.gates, released).await;
    }
    let observed_units = std::mem::take(&mut observed.units);
    result.map(|mut c| {
        if !c.changed && regate.is_empty() {
            c.observed_units = Some(observed_units);
        }
        c.plan = plan;
        c
    })
}

#[allow(clippy::too_many_arguments)]
async fn apply_and_check<U: UnitManager>(
    cx: &mut Context<'_, '_, U>,
    mode: &Mode,
    target: &Target,
    plan: &Plan,
    inventory: &[crate::store::InventoryEntry],
    prepared: &crate::secrets::PreparedSecrets,
    also: &BTreeSet<String>,
    regate: &BTreeSet<String>,
) -> Result<Converged, ConvergeError> {
    let host = cx.host;
    let tree = &target.tree;
    let restore = match mode {
        Mode::Restore(r) => Some(r),
        _ => None,
    };
    if restore.is_none() {
        super::resources::check(host, tree, plan).await?;
        backup::take(
            host,
            plan,
            inventory,
            cx.state.applied_revision.as_deref(),
            tree,
        )
        .await?;
    }
    tracing::debug!(stage = "backup", "pass stage done");
    crashpoint::hit("after-backup");

    let blame = health::changed_units(plan, tree, &observed_changed(prepared), also);
    let work = !plan.is_empty() || restore.is_some() || !prepared.plan.upsert.is_empty();
    let mut record = Intent {
        revision: tree.revision.clone(),
        mode: mode.as_str().to_owned(),
        units: unit_jobs(plan),
        gated: blame.clone(),
        files: plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::WriteFile { key, hash, .. } => Some((key.clone(), hash.to_hex())),
                _ => None,
            })
            .collect::<BTreeMap<_, _>>(),
        phase: Phase::Applying,
    };
    if work {
        intent::save(host.store, &record)
            .await
            .map_err(|e| apply_failed(tree, e))?;
        tracing::debug!(stage = "intent", "pass stage done");
        crashpoint::hit("after-intent");
    }

    let mut converged = Converged::default();
    match cx.secrets.as_deref() {
        Some(s) if !prepared.plan.upsert.is_empty() => {
            let done = s
                .write(prepared, host.store)
                .await
                .map_err(secrets_stage::failed)?;
            host.metrics.record_secrets_synced(done.len() as u64);
            converged.actions.extend(done);
        }
        _ => {}
    }

    let apply_target = ApplyTarget {
        quadlet_dir: &host.settings.paths.quadlet_dir,
        units: host.units,
        store: host.store,
        max_jobs_in_flight: host.settings.reconcile.max_jobs_in_flight,
    };
    let mut report = ApplyReport::default();
    let mut elsewhere = Vec::new();
    if let Some(r) = restore {
        let stops = r
            .stop_and_import(host, tree, &apply_target)
            .await
            .map_err(|e| Failure::new(reason::APPLY_FAILED, e, false))?;
        converged
            .actions
            .extend(stops.stopped.iter().map(|u| format!("stop {u}")));
        converged
            .actions
            .extend(stops.imported.iter().map(|v| format!("import volume {v}")));
        converged.stopped = stops.stopped;
        converged.volumes = stops.imported;
        elsewhere = stops.elsewhere;
    }
    if restore.is_none() {
        let resources = super::resources::run(host, tree, plan).await?;
        converged.actions.extend(resources.actions);
        super::resources::keep_drift(
            host,
            &mut cx.state.resource_drift,
            tree,
            plan,
            resources.drift,
        )
        .await;
    }
    crashpoint::hit("before-apply");
    let applied = match restore {
        // The volumes' own services make them again first; they are imported before
        // any container starts (`pass::restore`).
        Some(r) => {
            let (head, tail) = super::restore::split_before_containers(plan, tree);
            let restored = async {
                let mut applied = apply(&head, tree, &apply_target)
                    .await
                    .map_err(|e| apply_failed(tree, e))?;
                let volumes = r
                    .import_made(host, tree, &applied)
                    .await
                    .map_err(|e| Failure::new(reason::APPLY_FAILED, e, false))?;
                applied
                    .done
                    .extend(volumes.iter().map(|v| format!("import volume {v}")));
                converged.volumes.extend(volumes);
                let rest = apply(&tail, tree, &apply_target)
                    .await
                    .map_err(|e| apply_failed(tree, e))?;
                applied.done.extend(rest.done);
                applied.unit_failures.extend(rest.unit_failures);
                Ok::<_, ConvergeError>(applied)
            }
            .await;
            // Other apps' users of the volumes run again, restored or not.
            let started = super::restore::start_again(host.units, &elsewhere).await;
            let mut applied = restored?;
            applied.done.extend(
                started
                    .iter()
                    .map(|u| format!("start {u} (stopped for the restore)")),
            );
            converged.started_elsewhere = started;
            applied
        }
        None => apply(plan, tree, &apply_target)
            .await
            .map_err(|e| apply_failed(tree, e))?,
    };
    host.metrics.record_apply(plan, &applied);
    report.done.extend(applied.done);
    report.unit_failures.extend(applied.unit_failures);
    converged.actions.extend(report.done.iter().cloned());
    converged.changed = work;
    crashpoint::hit("after-apply");

    if work || !regate.is_empty() {
        record.phase = Phase::Gating;
        intent::save(host.store, &record)
            .await
            .map_err(|e| apply_failed(tree, e))?;
    }
    crashpoint::hit("before-gate");
    // Applied: the controller may say READY now; the gate runs on ("verifying").
    let verifying = if work {
        let states = super::record::tree_unit_states(host, tree).await;
        Some(crate::activity::verifying(crate::activity::Applied {
            revision: tree.revision.clone(),
            apps: super::record::app_statuses(tree, &states),
        }))
    } else {
        None
    };
    let Verdict {
        blamed,
        unrelated,
        completed: finished,
    } = health::check(host, plan, tree, &report, &blame, regate).await;
    drop(verifying);
    crashpoint::hit("after-gate");
    converged.unrelated = unrelated;
    if let Some(failure) = blamed {
        return Err(ConvergeError::Unhealthy {
            failure,
            actions: converged.actions,
        });
    }
    if restore.is_none() {
        match completed::remember(host.store, tree, &finished).await {
            Ok(known) => cx.state.completed_units = known,
            Err(e) => tracing::warn!(error = %e, "cannot remember units that ran to completion"),
        }
    }
    if restore.is_none()
        && let Some(s) = cx.secrets.as_deref()
    {
        let finished = s
            .finish(prepared, host.store)
            .await
            .map_err(secrets_stage::failed)?;
        converged.changed |= !finished.is_empty();
        converged.actions.extend(finished);
    }
    Ok(converged)
}

fn observed_changed(prepared: &crate::secrets::PreparedSecrets) -> BTreeSet<String> {
    prepared.plan.changed.clone()
}

/// The units a plan starts or restarts.
fn unit_jobs(plan: &Plan) -> BTreeSet<String> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::StartUnit { unit, .. } | Action::RestartUnit { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect()
}

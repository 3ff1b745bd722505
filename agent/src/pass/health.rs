//! Check health: the health gate ([`crate::health::gate`]) on the units this revision
//! changed, and only those.
//!
//! A revision is blamed only for what it changed: units whose own quadlet, companion
//! files or dependency quadlets it wrote (created or updated, not healed), units whose
//! secret value it changed, and units a crash left mid-apply or mid-gate under this
//! same revision. A unit that was failing already, or that self-heal is starting
//! again, never rolls a new revision back: it is reported (`Ready=False UnitFailed`)
//! while the revision is recorded as applied.

use std::collections::BTreeSet;

use crate::apply::ApplyReport;
use crate::health::{self, GateFailure, GateUnit};
use crate::model::DesiredTree;
use crate::plan::{Action, Plan, WriteReason};
use crate::systemd::UnitManager;

use super::Host;

/// The health stage's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The gate on the units the revision changed: `Err` blames the revision.
    pub blamed: Option<GateFailure>,
    /// Units that failed although the revision did not change them, as
    /// `unit: what was seen`.
    pub unrelated: Vec<String>,
    /// Gated units that ran to completion (exited 0).
    pub completed: BTreeSet<String>,
}

/// The units this revision changed (see the module doc). `also` adds units to judge
/// whatever the plan says (a restore's units, an interrupted gate's units).
pub fn changed_units(
    plan: &Plan,
    tree: &DesiredTree,
    changed_secrets: &BTreeSet<String>,
    also: &BTreeSet<String>,
) -> BTreeSet<String> {
    let written: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::WriteFile {
                key,
                reason: WriteReason::Create | WriteReason::Update,
                ..
            } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    tree.apps
        .values()
        .flat_map(|a| a.units.iter())
        .filter(|u| {
            also.contains(&u.name)
                || u.depends_on_files
                    .iter()
                    .any(|k| written.contains(k.as_str()))
                || !u.secrets.is_disjoint(changed_secrets)
        })
        .map(|u| u.name.clone())
        .collect()
}

/// Judges an apply: the gate on `blame` (units started, restarted or left mid-gate
/// that the revision changed); a single look at every other unit the plan started.
pub async fn check<U: UnitManager>(
    host: &Host<'_, U>,
    plan: &Plan,
    tree: &DesiredTree,
    report: &ApplyReport,
    blame: &BTreeSet<String>,
    regate: &BTreeSet<String>,
) -> Verdict {
    let mut verdict = Verdict::default();
    for f in &report.unit_failures {
        let text = format!("{} failed: {}", f.action, f.error);
        if blame.contains(&f.unit) {
            verdict.blamed.get_or_insert(GateFailure {
                unit: f.unit.clone(),
                app: f.app.clone(),
                reason: text,
            });
        } else {
            verdict.unrelated.push(format!("{}: {text}", f.unit));
        }
    }
    let started = health::units_to_gate(plan, tree);
    let job_failed: BTreeSet<&str> = report
        .unit_failures
        .iter()
        .map(|f| f.unit.as_str())
        .collect();
    let mut targets: Vec<GateUnit> = started
        .iter()
        .filter(|g| blame.contains(&g.unit))
        .cloned()
        .collect();
    for unit in regate {
        if targets.iter().any(|t| &t.unit == unit) {
            continue;
        }
        let app = tree
            .apps
            .values()
            .find(|a| a.units.iter().any(|u| &u.name == unit));
        if let Some(g) = app.and_then(|a| health::gate_unit(tree, &a.name, unit)) {
            targets.push(g);
        }
    }
    if verdict.blamed.is_none() {
        let h = &host.settings.health;
        match health::gate(host.units, &**host.podman, &targets, h.timeout, h.settle).await {
            Err(g) => verdict.blamed = Some(g),
            Ok(()) => {
                // Remembered as done only when systemd's record says it exited by
                // itself: a unit stopped from outside right after the gate is drift.
                for t in &targets {
                    if let Ok(state) = host.units.unit_state(&t.unit).await
                        && state.has_completed()
                        && health::ran_to_completion(host.units, &t.unit).await.is_ok()
                    {
                        verdict.completed.insert(t.unit.clone());
                    }
                }
            }
        }
    }
    for g in started
        .iter()
        .filter(|g| !blame.contains(&g.unit) && !job_failed.contains(g.unit.as_str()))
    {
        if let Ok(state) = host.units.unit_state(&g.unit).await
            && state.active_state == "failed"
        {
            verdict
                .unrelated
                .push(format!("{}: unit failed ({})", g.unit, state.sub_state));
        }
    }
    verdict
}

//! Record: revision states, the host state status projects, history and metrics.
//!
//! **Architecture invariant:** a revision is recorded `applied` (good) only here, only
//! after its own health gate passed, and the intent record is cleared only after that.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use leger_api_types::{AppStatus, PassRecord, UnitStatus};

use super::{Host, HostState, REVISIONS_KEPT, blocking, intent};
use crate::metrics::PassSummary;
use crate::model::{DesiredTree, UnitState};
use crate::store::RevisionState;
use crate::systemd::UnitManager;

/// Records `tree` as the host's good revision, then forgets the intent record.
/// `observed` are unit states this pass already read and did not change since.
pub async fn good<U: UnitManager>(
    host: &Host<'_, U>,
    state: &mut HostState,
    tree: &DesiredTree,
    observed: Option<&BTreeMap<String, UnitState>>,
) {
    crate::crashpoint::hit("before-record");
    match observed {
        Some(units) => apps_from(state, tree, units),
        None => refresh_apps(host, state, tree).await,
    }
    *state.managed_units.write().expect("units lock") = tree
        .apps
        .values()
        .flat_map(|a| a.units.iter().map(|u| u.name.clone()))
        .collect();
    state.applied_revision = Some(tree.revision.clone());
    let revision = tree.revision.clone();
    let _ = blocking::store(host.store, move |s| {
        s.record_revision(&revision, RevisionState::Applied, None)
    })
    .await;
    let revisions = host.revision_store();
    let revision = tree.revision.clone();
    let pruned = blocking::run(move || revisions.keep_newest(REVISIONS_KEPT, &revision)).await;
    if let Err(e) = pruned {
        tracing::warn!(error = %e, "cannot prune the revision store");
    }
    crate::crashpoint::hit("after-record");
    if let Err(e) = intent::clear(host.store).await {
        tracing::warn!(error = %e, "cannot clear the intent record; the next pass repeats its gate");
    }
}

/// Marks `revision` failed: it is not applied again until the source moves past it or
/// an operator forces it.
pub async fn failed<U>(host: &Host<'_, U>, revision: &str, message: &str) {
    let (revision, message) = (revision.to_owned(), message.to_owned());
    let _ = blocking::store(host.store, move |s| {
        s.record_revision(&revision, RevisionState::Failed, Some(&message))
    })
    .await;
}

/// Re-reads the state of every unit of `tree`, for status and metrics, in one batch.
pub async fn refresh_apps<U: UnitManager>(
    host: &Host<'_, U>,
    state: &mut HostState,
    tree: &DesiredTree,
) {
    state.apps = app_statuses(tree, &tree_unit_states(host, tree).await);
}

/// The states of every unit of `tree`, in one call; empty when systemd cannot say.
pub async fn tree_unit_states<U: UnitManager>(
    host: &Host<'_, U>,
    tree: &DesiredTree,
) -> BTreeMap<String, UnitState> {
    let names: Vec<String> = tree
        .apps
        .values()
        .flat_map(|a| a.units.iter().map(|u| u.name.clone()))
        .collect();
    host.units.unit_states(&names).await.unwrap_or_default()
}

/// Puts fresh unit states into status's apps, leaving the app list as the last pass
/// left it. Units systemd did not answer for keep their last known state.
pub fn update_unit_states(apps: &mut [AppStatus], states: &BTreeMap<String, UnitState>) {
    for unit in apps.iter_mut().flat_map(|a| a.units.iter_mut()) {
        if let Some(s) = states.get(&unit.name) {
            unit.active_state.clone_from(&s.active_state);
            unit.sub_state.clone_from(&s.sub_state);
        }
    }
}

/// Sets status's apps from unit states already read (by observe, when the pass changed
/// no unit), so a no-op pass asks systemd once, not twice.
pub fn apps_from(state: &mut HostState, tree: &DesiredTree, states: &BTreeMap<String, UnitState>) {
    state.apps = app_statuses(tree, states);
}

/// Status's apps for `tree`, with the unit states read; a unit systemd did not answer
/// for is `unknown`.
pub fn app_statuses(tree: &DesiredTree, states: &BTreeMap<String, UnitState>) -> Vec<AppStatus> {
    tree.apps
        .values()
        .map(|app| AppStatus {
            name: app.name.clone(),
            units: app
                .units
                .iter()
                .map(|u| {
                    let s = states
                        .get(&u.name)
                        .cloned()
                        .unwrap_or_else(UnitState::unknown);
                    UnitStatus {
                        name: u.name.clone(),
                        active_state: s.active_state,
                        sub_state: s.sub_state,
                    }
                })
                .collect(),
            layer: tree.layers.get(&app.name).cloned(),
        })
        .collect()
}

/// Re-reads the state of every unit status shows, between passes: a unit event came,
/// and status must be live even while passes are suspended or failing before observe.
pub async fn refresh_unit_states<U: UnitManager>(host: &Host<'_, U>, state: &mut HostState) {
    let names: Vec<String> = state
        .apps
        .iter()
        .flat_map(|a| a.units.iter().map(|u| u.name.clone()))
        .collect();
    if names.is_empty() {
        return;
    }
    match host.units.unit_states(&names).await {
        Ok(states) => update_unit_states(&mut state.apps, &states),
        Err(e) => tracing::debug!(error = %e, "cannot refresh unit states for status"),
    }
}

/// Writes the pass into history and metrics, and keeps it as the last pass.
pub async fn pass<U>(
    host: &Host<'_, U>,
    state: &mut HostState,
    mut record: PassRecord,
    duration: Duration,
    suspended: bool,
) -> PassRecord {
    record.trigger = crate::history::summarize_triggers(&record.trigger);
    let row = record.clone();
    // An idle poll or a drift echo is counted (id 0); a repeated failure or hold
    // replaces the row it repeats (see `crate::history`).
    match blocking::store(host.store, move |s| s.record_pass(&row)).await {
        Ok((recorded, _)) => record = recorded,
        Err(e) => tracing::warn!(error = %e, "cannot record the pass in history"),
    }
    host.metrics.record_pass(&PassSummary {
        outcome: record.outcome,
        duration,
        finished: SystemTime::now(),
        fetched_revision: state.fetched_revision.as_deref(),
        applied_revision: state.applied_revision.as_deref(),
        apps: &state.apps,
        suspended,
    });
    state.last_pass = Some(record.clone());
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_unit_states_changes_only_the_units_systemd_answered_for() {
        let unit = |name: &str, active: &str| UnitStatus {
            name: name.into(),
            active_state: active.into(),
            sub_state: if active == "active" {
                "running"
            } else {
                "dead"
            }
            .into(),
        };
        let mut apps = vec![AppStatus {
            name: "web".into(),
            units: vec![
                unit("web.service", "active"),
                unit("cache.service", "active"),
            ],
            layer: None,
        }];
        let states = BTreeMap::from([(
            "web.service".to_owned(),
            UnitState {
                load_state: "loaded".into(),
                active_state: "inactive".into(),
                sub_state: "dead".into(),
            },
        )]);
        update_unit_states(&mut apps, &states);
        assert_eq!(apps[0].units[0], unit("web.service", "inactive"));
        assert_eq!(apps[0].units[1], unit("cache.service", "active"));
    }
}

//! Status is a projection: the status document is computed from the host state the
//! pass records ([`crate::pass::HostState`]) and the desired state in force. Nothing
//! else renders it, and it changes nothing.

use leger_api_types::status::{condition_type, reason};
use leger_api_types::{
    AgentStatus, Condition, ConditionStatus, DesiredState, PassOutcome, SourceSpec, StatusDocument,
    StatusSpec,
};

use crate::clock::now_rfc3339;
use crate::model::Revision;
use crate::pass::HostState;

/// What status is projected from.
#[derive(Debug, Clone, Copy)]
pub struct StatusView<'a> {
    /// `system` or `user`.
    pub mode: &'a str,
    /// The desired state in force.
    pub desired: Option<&'a DesiredState>,
    /// Why desired.toml could not be used, if so.
    pub desired_error: Option<&'a str>,
    /// The host as the passes left it.
    pub state: &'a HostState,
    /// The host's podman as validation sees it, once detected.
    pub podman: Option<&'a leger_api_types::status::PodmanStatus>,
    /// The host's fleet name, groups and restart-slot lock.
    pub fleet: Option<&'a leger_api_types::fleet::FleetStatus>,
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

/// The three conditions as of now.
fn conditions(state: &HostState) -> [Condition; 3] {
    use ConditionStatus::{False, True, Unknown};
    let reconciling = if let Some((why, msg)) = &state.held
        && *why == reason::WAITING_FOR_FLEET_LOCK
    {
        // Waiting for a restart slot is progress, not failure: the lock service's
        // answer says what the host waits for.
        condition(condition_type::RECONCILING, True, why, msg.clone())
    } else if state.reconciling {
        condition(
            condition_type::RECONCILING,
            True,
            reason::PROGRESSING,
            "reconcile pass in progress",
        )
    } else if state.last_pass.is_none() {
        condition(
            condition_type::RECONCILING,
            True,
            reason::STARTING,
            "starting",
        )
    } else {
        match &state.last_failure {
            Some(f) => condition(
                condition_type::RECONCILING,
                False,
                f.reason,
                "waiting to retry",
            ),
            None => condition(condition_type::RECONCILING, False, reason::SUCCEEDED, ""),
        }
    };
    let Some(pass) = &state.last_pass else {
        return [
            condition(
                condition_type::READY,
                Unknown,
                reason::STARTING,
                "no pass has run yet",
            ),
            reconciling,
            condition(condition_type::STALLED, False, reason::STARTING, ""),
        ];
    };
    if let Some(f) = &state.last_failure {
        let stalled = if f.stalled { True } else { False };
        // One line each: the journal tail and the other lines stay in `lastPass.error`
        // (`legerctl status --details`, `legerctl history show ID`).
        let message = leger_api_types::summary::one_line(&f.message);
        return [
            condition(condition_type::READY, False, f.reason, message.clone()),
            reconciling,
            condition(condition_type::STALLED, stalled, f.reason, message),
        ];
    }
    let down: Vec<&str> = state
        .apps
        .iter()
        .flat_map(|a| a.units.iter())
        .filter(|u| {
            u.active_state != "active"
                && !(u.active_state == "inactive" && state.completed_units.contains(&u.name))
        })
        .map(|u| u.name.as_str())
        .collect();
    let ready = if pass.outcome == PassOutcome::Suspended {
        condition(
            condition_type::READY,
            Unknown,
            reason::SUSPENDED,
            "policy.suspend is set: changes are planned, not applied",
        )
    } else if let Some((why, msg)) = &state.held {
        condition(condition_type::READY, Unknown, why, msg.clone())
    } else if let Some(msg) = &state.secrets_blocked {
        condition(
            condition_type::READY,
            False,
            reason::SECRET_MISSING,
            msg.clone(),
        )
    } else if down.is_empty() {
        condition(
            condition_type::READY,
            True,
            reason::SUCCEEDED,
            format!(
                "applied revision {}",
                state
                    .applied_revision
                    .as_deref()
                    .map_or("-".into(), |r| Revision(r).to_string())
            ),
        )
    } else {
        condition(
            condition_type::READY,
            False,
            reason::UNIT_FAILED,
            format!("not active: {}", down.join(", ")),
        )
    };
    [
        ready,
        reconciling,
        condition(condition_type::STALLED, False, reason::SUCCEEDED, ""),
    ]
}

/// Keeps a condition's transition time while its status does not change.
fn keep_transitions(next: &mut [Condition], previous: &[Condition]) {
    for c in next {
        if let Some(old) = previous.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
}

/// The status document. `previous` is the last one published, for transition times.
pub fn project(view: &StatusView<'_>, previous: Option<&StatusDocument>) -> StatusDocument {
    let spec = match view.desired {
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
    let state = view.state;
    let mut conditions = conditions(state).to_vec();
    if let Some(prev) = previous {
        keep_transitions(&mut conditions, &prev.status.conditions);
    }
    StatusDocument::new(
        spec,
        AgentStatus {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            mode: view.mode.to_owned(),
            fetched_revision: state.fetched_revision.clone(),
            applied_revision: state.applied_revision.clone(),
            conditions,
            apps: state.apps.clone(),
            last_pass: state.last_pass.clone(),
            desired_state_error: view.desired_error.map(str::to_owned),
            staged_revision: state.staged.as_ref().map(|s| s.revision.clone()),
            pinned_revision: state.pinned_revision.clone(),
            podman: view.podman.cloned(),
            unhealable_drift: state
                .resource_drift
                .values()
                .map(|d| d.message.clone())
                .collect(),
            fleet: view.fleet.cloned(),
        },
    )
}

/// One line for `systemctl status` (sd_notify STATUS=).
pub fn status_line(state: &HostState) -> String {
    let units: usize = state.apps.iter().map(|a| a.units.len()).sum();
    let applied = state
        .applied_revision
        .as_deref()
        .map_or("nothing".to_owned(), |r| format!("applied {}", Revision(r)));
    let outcome = state
        .last_pass
        .as_ref()
        .map_or("starting", |p| p.outcome.as_str());
    format!(
        "{applied} · {} apps, {units} units · last pass {outcome}",
        state.apps.len()
    )
}

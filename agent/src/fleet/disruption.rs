//! Which passes need a restart slot: the ones that would stop or restart a unit that
//! is running now.
//!
//! **Pure:** a function of the plan and the observed unit states, tested with data.
//! A first install (nothing of the app runs yet) and a self-heal start of a unit that
//! is down take no slot: they cannot interrupt a service that is up, and a fleet whose
//! lock server is down must still be able to install and heal. A rollback is a plan
//! like any other, so it needs a slot exactly when it restarts running units.

use crate::model::Observed;
use crate::plan::{Action, Plan};

/// The running units a plan would interrupt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disruption {
    /// Units that are up now and that the plan stops or restarts, in plan order.
    pub units: Vec<String>,
}

impl Disruption {
    /// True when the pass must hold a restart slot before it applies.
    pub fn needs_slot(&self) -> bool {
        !self.units.is_empty()
    }

    /// `web.service, api.service`, for status and logs.
    pub fn describe(&self) -> String {
        self.units.join(", ")
    }
}

/// The running units `plan` would stop or restart. A unit whose state is unknown
/// counts as running: taking a slot needlessly is cheap, restarting a live service
/// outside one is what the lock exists to prevent.
pub fn disruption(plan: &Plan, observed: &Observed) -> Disruption {
    let mut units = Vec::new();
    for a in &plan.actions {
        let unit = match a {
            Action::StopUnit { unit, .. } | Action::RestartUnit { unit, .. } => unit,
            Action::StartUnit { .. }
            | Action::WriteFile { .. }
            | Action::RemoveFile { .. }
            | Action::Reload => continue,
        };
        let running = observed.units.get(unit).is_none_or(|s| s.is_up());
        if running && !units.contains(unit) {
            units.push(unit.clone());
        }
    }
    Disruption { units }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UnitState;
    use crate::plan::StartReason;

    fn state(active: &str) -> UnitState {
        UnitState {
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: "x".into(),
        }
    }

    fn observed(units: &[(&str, &str)]) -> Observed {
        Observed {
            units: units
                .iter()
                .map(|(u, s)| ((*u).to_owned(), state(s)))
                .collect(),
            ..Observed::default()
        }
    }

    fn plan(actions: Vec<Action>) -> Plan {
        Plan {
            actions,
            drift: vec![],
        }
    }

    fn start(unit: &str, reason: StartReason) -> Action {
        Action::StartUnit {
            unit: unit.into(),
            app: "a".into(),
            reason,
        }
    }

    fn restart(unit: &str) -> Action {
        Action::RestartUnit {
            unit: unit.into(),
            app: "a".into(),
        }
    }

    #[test]
    fn disruption_first_install_needs_no_slot() {
        let p = plan(vec![
            Action::Reload,
            start("web.service", StartReason::Install),
        ]);
        let d = disruption(&p, &observed(&[("web.service", "inactive")]));
        assert!(!d.needs_slot(), "{d:?}");
    }

    #[test]
    fn disruption_self_heal_start_of_a_down_unit_needs_no_slot() {
        let p = plan(vec![start("web.service", StartReason::NotRunning)]);
        assert!(!disruption(&p, &observed(&[("web.service", "failed")])).needs_slot());
    }

    #[test]
    fn disruption_restart_of_a_running_unit_needs_a_slot() {
        let p = plan(vec![
            Action::Reload,
            restart("web.service"),
            restart("web.service"),
        ]);
        let d = disruption(&p, &observed(&[("web.service", "active")]));
        assert_eq!(d.units, ["web.service"]);
        assert!(d.needs_slot());
    }

    #[test]
    fn disruption_restart_of_a_failed_unit_needs_no_slot() {
        let p = plan(vec![restart("web.service")]);
        assert!(!disruption(&p, &observed(&[("web.service", "failed")])).needs_slot());
    }

    #[test]
    fn disruption_prune_of_a_running_unit_needs_a_slot() {
        let p = plan(vec![Action::StopUnit {
            unit: "old.service".into(),
            app: "old".into(),
        }]);
        assert!(disruption(&p, &observed(&[("old.service", "activating")])).needs_slot());
        assert!(!disruption(&p, &observed(&[("old.service", "inactive")])).needs_slot());
    }

    #[test]
    fn disruption_unknown_state_counts_as_running() {
        let p = plan(vec![restart("web.service")]);
        assert!(disruption(&p, &observed(&[])).needs_slot());
    }

    #[test]
    fn disruption_file_writes_alone_need_no_slot() {
        let p = plan(vec![
            Action::WriteFile {
                key: "web/web.env".into(),
                app: "web".into(),
                hash: crate::model::ContentHash::of(b"x"),
                reason: crate::plan::WriteReason::Update,
            },
            Action::Reload,
        ]);
        assert!(!disruption(&p, &observed(&[("web.service", "active")])).needs_slot());
    }
}

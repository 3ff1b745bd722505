//! [`RecordingUnitManager`]: a [`UnitManager`] for tests of the controller that records
//! the order of calls.
//!
//! It never pretends to be systemd: it runs no jobs and has no unit lifecycle. Tests use
//! it to check *order* (files written, then one reload, then restarts); what systemd does
//! with those calls is tested against real systemd on the test bed.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{SystemdError, UnitManager};
use crate::model::UnitState;

/// One call the controller made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `reload()`.
    Reload,
    /// `start(unit)`.
    Start(String),
    /// `restart(unit)`.
    Restart(String),
    /// `stop(unit)`.
    Stop(String),
    /// `unit_state(unit)`.
    UnitState(String),
}

/// Records calls in order; `unit_state` answers from a table the test fills.
#[derive(Debug, Default)]
pub struct RecordingUnitManager {
    /// Every call so far, oldest first.
    calls: Mutex<Vec<Call>>,
    /// What `unit_state` returns per unit; [`UnitState::unknown`] for the rest.
    states: Mutex<BTreeMap<String, UnitState>>,
    /// What `unit_state` returns once a start or restart of the unit was called: the
    /// test's script of answers, not a model of systemd.
    after_job: Mutex<BTreeMap<String, UnitState>>,
}

impl RecordingUnitManager {
    /// An empty recorder: every unit reads as unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what `unit_state(unit)` returns from now on.
    pub fn set_state(&self, unit: &str, state: UnitState) {
        lock(&self.states).insert(unit.to_owned(), state);
    }

    /// Sets what `unit_state(unit)` returns after the next `start` or `restart` of it.
    pub fn set_state_after_job(&self, unit: &str, state: UnitState) {
        lock(&self.after_job).insert(unit.to_owned(), state);
    }

    /// Switches to a scripted state, if the test gave one for this unit.
    fn job_done(&self, unit: &str) {
        if let Some(state) = lock(&self.after_job).get(unit).cloned() {
            lock(&self.states).insert(unit.to_owned(), state);
        }
    }

    /// The calls made so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// The calls made so far without the `unit_state` reads, which most order checks
    /// do not care about.
    pub fn actions(&self) -> Vec<Call> {
        lock(&self.calls)
            .iter()
            .filter(|c| !matches!(c, Call::UnitState(_)))
            .cloned()
            .collect()
    }

    /// Returns the calls so far and forgets them, to check one reconcile at a time.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *lock(&self.calls))
    }

    fn record(&self, call: Call) {
        lock(&self.calls).push(call);
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl UnitManager for RecordingUnitManager {
    async fn reload(&self) -> Result<(), SystemdError> {
        self.record(Call::Reload);
        Ok(())
    }

    async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        self.record(Call::Start(unit.to_owned()));
        self.job_done(unit);
        Ok(())
    }

    async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.record(Call::Restart(unit.to_owned()));
        self.job_done(unit);
        Ok(())
    }

    async fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        self.record(Call::Stop(unit.to_owned()));
        Ok(())
    }

    async fn unit_state(&self, unit: &str) -> Result<UnitState, SystemdError> {
        self.record(Call::UnitState(unit.to_owned()));
        Ok(lock(&self.states)
            .get(unit)
            .cloned()
            .unwrap_or_else(UnitState::unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recording_unit_manager_keeps_call_order() {
        let units = RecordingUnitManager::new();
        let active = UnitState {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
        };
        units.set_state("web.service", active.clone());
        units.reload().await.unwrap();
        units.restart("web.service").await.unwrap();
        assert_eq!(units.unit_state("web.service").await.unwrap(), active);
        assert_eq!(
            units.unit_state("db.service").await.unwrap(),
            UnitState::unknown()
        );
        units.stop("old.service").await.unwrap();
        units.start("db.service").await.unwrap();
        assert_eq!(
            units.actions(),
            vec![
                Call::Reload,
                Call::Restart("web.service".into()),
                Call::Stop("old.service".into()),
                Call::Start("db.service".into()),
            ]
        );
        assert_eq!(units.take_calls().len(), 6);
        assert!(units.calls().is_empty());
    }
}

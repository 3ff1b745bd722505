//! [`RecordingUnitManager`]: a [`UnitManager`] for tests of the controller that records
//! the order of calls.
//!
//! It never pretends to be systemd: it runs no jobs and has no unit lifecycle. Tests use
//! it to check *order* (files written, then one reload, then restarts); what systemd does
//! with those calls is tested against real systemd on the test bed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use super::{SystemdError, UnitManager};
use crate::model::{UnitRun, UnitState};

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
    /// `unit_states(units)`: one batch read.
    UnitStates(Vec<String>),
}

/// Records calls in order; `unit_state` answers from a table the test fills.
#[derive(Debug, Default)]
pub struct RecordingUnitManager {
    /// How many more `unit_state` reads of a unit fail, as reads on a bus that is
    /// restarting do: a configured answer, like `states`.
    failing_reads: Mutex<BTreeMap<String, u32>>,
    /// Every call so far, oldest first.
    calls: Mutex<Vec<Call>>,
    /// What `unit_state` returns per unit; [`UnitState::unknown`] for the rest.
    states: Mutex<BTreeMap<String, UnitState>>,
    /// Configured answers to `last_run`.
    runs: Mutex<BTreeMap<String, UnitRun>>,
    /// How many times `release_runs` was called.
    releases: Mutex<usize>,
    /// What `unit_state` returns once a start or restart of the unit was called: the
    /// test's script of answers, not a model of systemd.
    after_job: Mutex<BTreeMap<String, UnitState>>,
    /// Start and restart calls that have not returned yet, so tests can check how many
    /// jobs the caller keeps in flight and which ones overlap.
    jobs: Mutex<Jobs>,
}

/// Which start/restart calls overlapped.
#[derive(Debug, Default)]
struct Jobs {
    /// Units whose start or restart call has not returned.
    in_flight: BTreeSet<String>,
    /// The most calls that were in flight at once.
    max_in_flight: usize,
    /// Per unit, the other units in flight when its call began.
    overlapped: BTreeMap<String, BTreeSet<String>>,
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
    /// The answer `last_run` gives for `unit` (none configured: no record).
    pub fn set_run(&self, unit: &str, run: UnitRun) {
        lock(&self.runs).insert(unit.to_owned(), run);
    }

    /// How many times the pass let systemd forget the runs it kept.
    pub fn releases(&self) -> usize {
        *lock(&self.releases)
    }

    pub fn set_state_after_job(&self, unit: &str, state: UnitState) {
        lock(&self.after_job).insert(unit.to_owned(), state);
    }

    /// Switches to a scripted state, if the test gave one for this unit.
    fn job_done(&self, unit: &str) {
        if let Some(state) = lock(&self.after_job).get(unit).cloned() {
            lock(&self.states).insert(unit.to_owned(), state);
        }
    }

    /// The most start/restart calls that were in flight at the same time.
    pub fn max_in_flight(&self) -> usize {
        lock(&self.jobs).max_in_flight
    }

    /// The units whose start/restart was in flight when `unit`'s began.
    pub fn in_flight_when_queued(&self, unit: &str) -> BTreeSet<String> {
        lock(&self.jobs)
            .overlapped
            .get(unit)
            .cloned()
            .unwrap_or_default()
    }

    /// Records a start/restart call, then yields to the executor before it returns, so
    /// a caller that queues several jobs at once really has them in flight together.
    async fn job(&self, call: Call, unit: &str) {
        self.record(call);
        {
            let mut jobs = lock(&self.jobs);
            let others = jobs.in_flight.clone();
            jobs.overlapped.insert(unit.to_owned(), others);
            jobs.in_flight.insert(unit.to_owned());
            jobs.max_in_flight = jobs.max_in_flight.max(jobs.in_flight.len());
        }
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        lock(&self.jobs).in_flight.remove(unit);
        self.job_done(unit);
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
            .filter(|c| !matches!(c, Call::UnitState(_) | Call::UnitStates(_)))
            .cloned()
            .collect()
    }

    /// Makes the next `n` `unit_state(unit)` reads fail (with a D-Bus I/O error).
    pub fn fail_state_reads(&self, unit: &str, n: u32) {
        lock(&self.failing_reads).insert(unit.to_owned(), n);
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
        self.job(Call::Start(unit.to_owned()), unit).await;
        Ok(())
    }

    async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.job(Call::Restart(unit.to_owned()), unit).await;
        Ok(())
    }

    async fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        self.record(Call::Stop(unit.to_owned()));
        Ok(())
    }

    async fn last_run(&self, unit: &str) -> Result<super::LastRun, SystemdError> {
        Ok(lock(&self.runs).get(unit).cloned())
    }

    async fn release_runs(&self) {
        *lock(&self.releases) += 1;
    }

    async fn unit_states(
        &self,
        units: &[String],
    ) -> Result<BTreeMap<String, UnitState>, SystemdError> {
        self.record(Call::UnitStates(units.to_vec()));
        let states = lock(&self.states);
        Ok(units
            .iter()
            .map(|u| {
                let state = states.get(u).cloned().unwrap_or_else(UnitState::unknown);
                (u.clone(), state)
            })
            .collect())
    }

    async fn unit_state(&self, unit: &str) -> Result<UnitState, SystemdError> {
        self.record(Call::UnitState(unit.to_owned()));
        if let Some(left) = lock(&self.failing_reads).get_mut(unit)
            && *left > 0
        {
            *left -= 1;
            return Err(SystemdError::Call {
                method: "GetUnit",
                unit: unit.to_owned(),
                source: zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::from(
                    std::io::ErrorKind::BrokenPipe,
                ))),
            });
        }
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

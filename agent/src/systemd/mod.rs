//! systemd over D-Bus (zbus): Reload, Start/Restart/Stop with job results, unit states,
//! and unit state change events.
//!
//! legerd talks to systemd only through the [`UnitManager`] seam, so the controller can be
//! tested with [`recording::RecordingUnitManager`] (order of calls) while
//! [`DbusUnitManager`] is tested against real systemd on the test bed.
//!
//! **Architecture invariant:** this module never shells out to `systemctl` or `busctl`:
//! it speaks D-Bus so it sees job results and signals, not exit codes and text.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::model::{UnitRun, UnitState};

mod events;
mod manager;
mod proxies;
mod reconnect;
pub mod recording;

pub use events::{UnitEvent, unit_name_from_path, unit_object_path};
pub use manager::{DEFAULT_START_SETTLE, DbusUnitManager};

/// What legerd asks of systemd. Every call that changes a unit waits for the outcome of
/// the job it queued, so the caller knows whether the change took effect.
pub trait UnitManager: Send + Sync {
    /// Reloads systemd (`daemon-reload`), which reruns the quadlet generator so new or
    /// changed quadlet files become units. Returns once systemd has reloaded.
    fn reload(&self) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// Starts `unit` and waits until the start job has finished and the unit did not fail
    /// right after.
    fn start(&self, unit: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// Restarts `unit` (starts it when it is stopped), with the same checks as
    /// [`UnitManager::start`].
    fn restart(&self, unit: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// Stops `unit` and waits for the stop job. A unit systemd has not loaded is already
    /// stopped, so that is `Ok`.
    fn stop(&self, unit: &str) -> impl Future<Output = Result<(), SystemdError>> + Send;

    /// The unit's load, active and sub state; [`UnitState::unknown`] when systemd does not
    /// have the unit loaded.
    fn unit_state(
        &self,
        unit: &str,
    ) -> impl Future<Output = Result<UnitState, SystemdError>> + Send;

    /// How `unit`'s last run ended, as systemd recorded it (see [`UnitRun`]); `None`
    /// when systemd has no record of one. The health gate asks only about units at
    /// rest that it judges, never observe: systemd forgets a unit at rest as soon as
    /// it unloads it, so [`UnitManager::start`] and [`UnitManager::restart`] keep the
    /// unit loaded until [`UnitManager::release_runs`]. The default knows nothing.
    fn last_run(&self, unit: &str) -> impl Future<Output = Result<LastRun, SystemdError>> + Send {
        let _ = unit;
        async { Ok(None) }
    }

    /// Lets systemd unload the units kept loaded since their start or restart, once
    /// the health gate has judged them.
    fn release_runs(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The states of many units, in as few round trips as the manager can: observe and
    /// the status refresh read every managed unit on every pass, and one call per unit
    /// made a 100-app no-op pass cost about 2,700 context switches. Units systemd does
    /// not know read as [`UnitState::unknown`], as with [`UnitManager::unit_state`].
    /// The default asks one unit at a time.
    fn unit_states(
        &self,
        units: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, UnitState>, SystemdError>> + Send {
        async move {
            let mut states = BTreeMap::new();
            for unit in units {
                states.insert(unit.clone(), self.unit_state(unit).await?);
            }
            Ok(states)
        }
    }
}

/// How [`UnitManager::last_run`] answers: how a unit's last run ended, or nothing
/// when systemd has no record of it.
pub type LastRun = Option<UnitRun>;

/// Which bus systemd is reached on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusTarget {
    /// The system bus: legerd in system mode.
    System,
    /// The user's session bus (`$DBUS_SESSION_BUS_ADDRESS` or `$XDG_RUNTIME_DIR/bus`):
    /// legerd in rootless mode, driving the user's systemd.
    User,
    /// An explicit D-Bus address such as `unix:path=/run/dbus/system_bus_socket`: tests
    /// reach a test bed machine's system bus from the host this way.
    Address(String),
}

impl fmt::Display for BusTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusTarget::System => f.write_str("system bus"),
            BusTarget::User => f.write_str("user bus"),
            BusTarget::Address(address) => write!(f, "bus at {address}"),
        }
    }
}

/// A failure to drive systemd. Each variant names the unit and the job, so the controller
/// can record which action failed and the log says where to look.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// The bus could not be reached or systemd did not accept the subscription.
    #[error(
        "cannot connect to systemd on the {target}: {source}; check that the bus socket exists and this user may use it"
    )]
    Connect {
        /// The bus that was tried.
        target: BusTarget,
        /// What zbus reported.
        #[source]
        source: zbus::Error,
    },

    /// A D-Bus call to systemd failed (systemd refused it or the connection broke).
    #[error("systemd {method} {unit} failed: {source}")]
    Call {
        /// The Manager method, e.g. `StartUnit`.
        method: &'static str,
        /// The unit it was for; empty for `Reload`.
        unit: String,
        /// What zbus or systemd reported.
        #[source]
        source: zbus::Error,
    },

    /// The job finished with a result other than `done` (`failed`, `timeout`, `canceled`,
    /// `dependency`, ...).
    #[error("{job} job for {unit} finished with result '{result}'; see `journalctl -u {unit}`")]
    JobFailed {
        /// The unit.
        unit: String,
        /// `start`, `restart` or `stop`.
        job: &'static str,
        /// systemd's job result.
        result: String,
    },

    /// The job finished, but the unit failed right after (a container that exited at once).
    #[error(
        "{unit} failed right after its {job} job completed (SubState={sub_state}); see `journalctl -u {unit}`"
    )]
    UnitFailed {
        /// The unit.
        unit: String,
        /// `start` or `restart`.
        job: &'static str,
        /// systemd's SubState at the time, e.g. `failed`.
        sub_state: String,
    },

    /// systemd did not finish the job (or answer the call) in time.
    #[error(
        "{job} of {unit} did not finish within {timeout:?}; the unit may be slow to start (see `systemctl status {unit}`) or the job timeout too short"
    )]
    Timeout {
        /// The unit; empty for `Reload`.
        unit: String,
        /// `start`, `restart`, `stop` or `reload`.
        job: &'static str,
        /// The limit that passed.
        timeout: Duration,
    },

    /// systemd (or the bus) did not answer a call in time.
    #[error(
        "systemd did not answer {method} {unit} within {}; it may be busy reloading, or the bus may be stuck (see `systemctl status dbus`). legerd retries; raise systemd.call_timeout if this host is just slow",
        humantime::format_duration(*timeout)
    )]
    CallTimeout {
        /// The method, e.g. `GetUnit`.
        method: &'static str,
        /// The unit it was for; empty when none.
        unit: String,
        /// The limit that passed.
        timeout: Duration,
    },

    /// The bus stayed unreachable for longer than `systemd.bus_give_up`.
    #[error(
        "lost the {target} and could not reconnect for {}: {last_error}; exiting so that systemd's Restart= (or the operator) can bring legerd back once the bus is up",
        humantime::format_duration(*after)
    )]
    BusLost {
        /// The bus.
        target: BusTarget,
        /// How long legerd kept trying.
        after: Duration,
        /// The last reconnect error.
        last_error: String,
    },

    /// The connection to systemd closed while waiting for a job's signal.
    #[error(
        "the D-Bus connection to systemd closed while waiting for the {job} job of {unit}; reconnect and check the unit's state"
    )]
    Disconnected {
        /// The unit.
        unit: String,
        /// The job being waited for.
        job: &'static str,
    },
}

//! [`DbusUnitManager`]: the [`UnitManager`] that drives a real systemd over D-Bus.

use std::time::Duration;

use futures::{Stream, StreamExt};
use zbus::connection::Builder;
use zbus::proxy::CacheProperties;
use zbus::{Connection, MessageStream, OwnedObjectPath};

use super::events::{self, UnitEvent};
use super::proxies::{ManagerProxy, UnitProxy};
use super::{BusTarget, SystemdError, UnitManager};
use crate::model::UnitState;

/// How long a unit must stay up after its start job is `done` before a start counts as
/// successful, unless it is already finished (`exited`, `inactive`). A quadlet container
/// that exits at once reports `done` first and `failed` a few hundred ms later, and a
/// start that "succeeded" into a dead container is not what the caller wants.
pub const DEFAULT_START_SETTLE: Duration = Duration::from_secs(1);

/// The job mode for every job legerd queues: replace conflicting queued jobs, as
/// `systemctl` does by default.
const JOB_MODE: &str = "replace";

/// The systemd error for a unit that is not loaded.
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// The bus error for an object that went away (a unit garbage-collected between calls).
const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";

/// The job kinds, with the Manager method that queues each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Start,
    Restart,
    Stop,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Job::Start => "start",
            Job::Restart => "restart",
            Job::Stop => "stop",
        }
    }

    fn method(self) -> &'static str {
        match self {
            Job::Start => "StartUnit",
            Job::Restart => "RestartUnit",
            Job::Stop => "StopUnit",
        }
    }
}

/// Drives systemd (system or user instance) over one D-Bus connection.
///
/// It subscribes to systemd's signals on connect, so job results (`JobRemoved`) and unit
/// state changes (`PropertiesChanged`) reach it.
#[derive(Debug, Clone)]
pub struct DbusUnitManager {
    /// The bus connection; zbus runs its reader on the tokio runtime.
    connection: Connection,
    /// `org.freedesktop.systemd1.Manager`.
    manager: ManagerProxy<'static>,
    /// How long to wait for one job (and for Reload).
    job_timeout: Duration,
    /// See [`DEFAULT_START_SETTLE`].
    start_settle: Duration,
}

impl DbusUnitManager {
    /// Connects to systemd on `target` and subscribes to its signals. `job_timeout`
    /// bounds each wait for a job and for Reload: pick it above the units' own start
    /// timeouts (image pulls can be slow).
    pub async fn connect(target: BusTarget, job_timeout: Duration) -> Result<Self, SystemdError> {
        let builder = match &target {
            BusTarget::System => Builder::system(),
            BusTarget::User => Builder::session(),
            BusTarget::Address(address) => Builder::address(address.as_str()),
        };
        let connect = async {
            let connection = builder.build().await?;
            let manager = ManagerProxy::new(&connection).await?;
            manager.subscribe().await?;
            Ok::<_, zbus::Error>((connection, manager))
        };
        let (connection, manager) = match tokio::time::timeout(job_timeout, connect).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(source)) => return Err(SystemdError::Connect { target, source }),
            Err(_) => {
                return Err(SystemdError::Connect {
                    target,
                    source: zbus::Error::Failure(format!(
                        "no answer from systemd within {job_timeout:?}"
                    )),
                });
            }
        };
        Ok(DbusUnitManager {
            connection,
            manager,
            job_timeout,
            start_settle: DEFAULT_START_SETTLE,
        })
    }

    /// Sets how long a started unit must stay up, see [`DEFAULT_START_SETTLE`]. A failure
    /// seen earlier ends the wait at once, so a long settle only delays healthy starts.
    pub fn with_start_settle(mut self, settle: Duration) -> Self {
        self.start_settle = settle;
        self
    }

    /// A stream of every unit's ActiveState changes, for the controller to notice a
    /// managed unit that left `active`. It ends when the connection closes.
    ///
    /// systemd only emits the changes because [`DbusUnitManager::connect`] subscribed.
    pub async fn unit_events(
        &self,
    ) -> Result<impl Stream<Item = UnitEvent> + Send + Unpin + 'static, SystemdError> {
        let call_err = |source| SystemdError::Call {
            method: "AddMatch PropertiesChanged",
            unit: String::new(),
            source,
        };
        let rule = events::properties_changed_rule(None).map_err(call_err)?;
        let messages = MessageStream::for_match_rule(rule, &self.connection, None)
            .await
            .map_err(call_err)?;
        Ok(events::unit_events_from(messages))
    }

    /// Queues `job` for `unit` and waits for its `JobRemoved`.
    async fn run_job(&self, job: Job, unit: &str) -> Result<(), SystemdError> {
        let call_err = |source| SystemdError::Call {
            method: job.method(),
            unit: unit.to_owned(),
            source,
        };
        // Subscribe before queuing: a job that finishes at once (a unit already active)
        // sends JobRemoved before the method reply arrives.
        let mut removed = self.manager.receive_job_removed().await.map_err(call_err)?;
        let queued = match job {
            Job::Start => self.manager.start_unit(unit, JOB_MODE).await,
            Job::Restart => self.manager.restart_unit(unit, JOB_MODE).await,
            Job::Stop => self.manager.stop_unit(unit, JOB_MODE).await,
        };
        let job_path: OwnedObjectPath = match queued {
            Ok(path) => path,
            Err(e) if job == Job::Stop && error_name(&e).as_deref() == Some(NO_SUCH_UNIT) => {
                return Ok(());
            }
            Err(e) => return Err(call_err(e)),
        };

        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job == job_path {
                    return Some(args.result);
                }
            }
            None
        };
        let result = match tokio::time::timeout(self.job_timeout, wait).await {
            Ok(Some(result)) => result,
            Ok(None) => {
                return Err(SystemdError::Disconnected {
                    unit: unit.to_owned(),
                    job: job.name(),
                });
            }
            Err(_) => {
                return Err(SystemdError::Timeout {
                    unit: unit.to_owned(),
                    job: job.name(),
                    timeout: self.job_timeout,
                });
            }
        };
        if result != "done" {
            return Err(SystemdError::JobFailed {
                unit: unit.to_owned(),
                job: job.name(),
                result,
            });
        }
        if job == Job::Stop {
            return Ok(());
        }
        self.check_settled(job, unit).await
    }

    /// After a `done` start or restart: fails when the unit is `failed` now or turns
    /// `failed` within the settle time.
    async fn check_settled(&self, job: Job, unit: &str) -> Result<(), SystemdError> {
        let call_err = |source| SystemdError::Call {
            method: "watch ActiveState",
            unit: unit.to_owned(),
            source,
        };
        let path = events::unit_object_path(unit);
        // Watch first, then read: a change between the two is in the stream.
        let rule = events::properties_changed_rule(Some(&path)).map_err(call_err)?;
        let mut changes = MessageStream::for_match_rule(rule, &self.connection, None)
            .await
            .map_err(call_err)?;
        let now = match self.state_at(path).await {
            Ok(Some(state)) => state,
            // Gone already: nothing is running that could fail.
            Ok(None) => return Ok(()),
            Err(source) => return Err(call_err(source)),
        };
        let failed = |sub_state: String| SystemdError::UnitFailed {
            unit: unit.to_owned(),
            job: job.name(),
            sub_state,
        };
        if now.active_state == "failed" {
            return Err(failed(now.sub_state));
        }
        // A oneshot that exited (volumes, networks) or a unit that already stopped has
        // no process left to fail.
        if now.sub_state == "exited" || now.active_state == "inactive" {
            return Ok(());
        }
        let watch = async {
            while let Some(msg) = changes.next().await {
                let Ok(msg) = msg else { continue };
                if events::active_state_change(&msg).as_deref() == Some("failed") {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(self.start_settle, watch).await {
            Ok(true) => Err(failed("failed".to_owned())),
            Ok(false) | Err(_) => Ok(()),
        }
    }

    /// The state of the unit at `path`; `None` when the object is gone.
    async fn state_at(&self, path: impl Into<String>) -> zbus::Result<Option<UnitState>> {
        let unit = UnitProxy::builder(&self.connection)
            .path(path.into())
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let read = async {
            Ok::<_, zbus::Error>(UnitState {
                load_state: unit.load_state().await?,
                active_state: unit.active_state().await?,
                sub_state: unit.sub_state().await?,
            })
        };
        match read.await {
            Ok(state) => Ok(Some(state)),
            Err(e) if error_name(&e).as_deref() == Some(UNKNOWN_OBJECT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl UnitManager for DbusUnitManager {
    async fn reload(&self) -> Result<(), SystemdError> {
        match tokio::time::timeout(self.job_timeout, self.manager.reload()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(SystemdError::Call {
                method: "Reload",
                unit: String::new(),
                source,
            }),
            Err(_) => Err(SystemdError::Timeout {
                unit: "systemd".to_owned(),
                job: "reload",
                timeout: self.job_timeout,
            }),
        }
    }

    async fn start(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job(Job::Start, unit).await
    }

    async fn restart(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job(Job::Restart, unit).await
    }

    async fn stop(&self, unit: &str) -> Result<(), SystemdError> {
        self.run_job(Job::Stop, unit).await
    }

    /// Uses `GetUnit`, not `LoadUnit`: observing must not change systemd. `LoadUnit`
    /// would load the unit into memory (and make a `not-found` stub for a missing one),
    /// which emits signals that the controller's event stream would see, a feedback loop
    /// of reconciles. The price: a unit whose file exists but that systemd has unloaded
    /// (inactive, garbage-collected) reads as [`UnitState::unknown`], which is accurate
    /// for what the planner needs, its active state.
    async fn unit_state(&self, unit: &str) -> Result<UnitState, SystemdError> {
        let call_err = |source| SystemdError::Call {
            method: "GetUnit",
            unit: unit.to_owned(),
            source,
        };
        let path = match self.manager.get_unit(unit).await {
            Ok(path) => path,
            Err(e) if error_name(&e).as_deref() == Some(NO_SUCH_UNIT) => {
                return Ok(UnitState::unknown());
            }
            Err(e) => return Err(call_err(e)),
        };
        match self.state_at(path.as_str()).await {
            Ok(Some(state)) => Ok(state),
            Ok(None) => Ok(UnitState::unknown()),
            Err(e) => Err(call_err(e)),
        }
    }
}

/// The D-Bus error name of a failed call, when the peer sent one.
fn error_name(error: &zbus::Error) -> Option<String> {
    use zbus::DBusError;
    match error {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_owned()),
        zbus::Error::FDO(fdo) => Some(fdo.name().as_str().to_owned()),
        _ => None,
    }
}

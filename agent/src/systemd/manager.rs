//! [`DbusUnitManager`]: the [`UnitManager`] that drives a real systemd over D-Bus.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use zbus::connection::Builder;
use zbus::proxy::CacheProperties;
use zbus::{Connection, MessageStream, OwnedObjectPath};

use super::events::{self, UnitEvent};
use super::proxies::{ManagerProxy, ServiceProxy, UnitProxy};
use super::{BusTarget, SystemdError, UnitManager};
use crate::activity;
use crate::model::{UnitRun, UnitState};

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

/// systemd's answer to a second `Subscribe()` from the same client.
const ALREADY_SUBSCRIBED: &str = "org.freedesktop.systemd1.AlreadySubscribed";

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

/// One connection to the bus and the Manager proxy on it. Replaced whole when the
/// connection is lost, so a call never mixes a proxy with another connection.
#[derive(Debug, Clone)]
pub(super) struct Link {
    /// The bus connection; zbus runs its reader on the tokio runtime.
    pub(super) connection: Connection,
    /// `org.freedesktop.systemd1.Manager`.
    pub(super) manager: ManagerProxy<'static>,
}

/// Drives systemd (system or user instance) over D-Bus.
///
/// It subscribes to systemd's signals on connect, so job results (`JobRemoved`) and unit
/// state changes (`PropertiesChanged`) reach it. The connection can be replaced while
/// legerd runs ([`DbusUnitManager::supervise`]): a restarted bus or a re-executed
/// systemd is survived by reconnecting and subscribing again.
#[derive(Debug, Clone)]
pub struct DbusUnitManager {
    /// The bus, to reconnect to the same one.
    pub(super) target: BusTarget,
    /// The current connection. A std lock: it is held only to clone or swap the link.
    pub(super) link: Arc<RwLock<Link>>,
    /// Bumped each time the link is replaced or systemd subscribed again, so signal
    /// streams know to subscribe again.
    pub(super) generation: Arc<watch::Sender<u64>>,
    /// How long to wait for one job (and for Reload).
    pub(super) job_timeout: Duration,
    /// How long to wait for the answer to any other call.
    pub(super) call_timeout: Duration,
    /// See [`DEFAULT_START_SETTLE`].
    start_settle: Duration,
    /// Units started or restarted with a reference held (`RefUnit`), so systemd keeps
    /// them loaded, and their run's record readable, until the health gate judged
    /// them; each with the link generation the reference was taken on (a new
    /// connection lost it).
    kept: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl DbusUnitManager {
    /// Connects to systemd on `target` and subscribes to its signals. `job_timeout`
    /// bounds each wait for a job and for Reload: pick it above the units' own start
    /// timeouts (image pulls can be slow). Other calls wait up to
    /// [`leger_config::DEFAULT_CALL_TIMEOUT`].
    pub async fn connect(target: BusTarget, job_timeout: Duration) -> Result<Self, SystemdError> {
        Self::connect_with(target, job_timeout, leger_config::DEFAULT_CALL_TIMEOUT).await
    }

    /// [`DbusUnitManager::connect`] with the time limit of each D-Bus call that is not a
    /// job (`systemd.call_timeout`).
    pub async fn connect_with(
        target: BusTarget,
        job_timeout: Duration,
        call_timeout: Duration,
    ) -> Result<Self, SystemdError> {
        let longest = job_timeout.max(call_timeout);
        let link = open_link(&target, longest, longest).await?;
        Ok(DbusUnitManager {
            target,
            link: Arc::new(RwLock::new(link)),
            generation: Arc::new(watch::channel(0).0),
            job_timeout,
            call_timeout,
            start_settle: DEFAULT_START_SETTLE,
            kept: Arc::default(),
        })
    }

    /// The current link.
    /// The object path of `unit` if systemd has it loaded, by `GetUnit`: never
    /// `LoadUnit`, which would change systemd (and emit signals) just to look.
    async fn loaded_unit(
        &self,
        link: &Link,
        unit: &str,
    ) -> Result<Option<OwnedObjectPath>, SystemdError> {
        match self
            .call(
                "GetUnit",
                unit,
                self.call_timeout,
                link.manager.get_unit(unit),
            )
            .await
        {
            Ok(path) => Ok(Some(path)),
            Err(SystemdError::Call { source, .. })
                if error_name(&source).as_deref() == Some(NO_SUCH_UNIT) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn link(&self) -> Link {
        self.link.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs one D-Bus call with a time limit, registered as in flight meanwhile so a
    /// pass stuck on it says so. zbus calls are safe to drop: a late reply is discarded.
    async fn call<T>(
        &self,
        method: &'static str,
        unit: &str,
        limit: Duration,
        call: impl Future<Output = zbus::Result<T>>,
    ) -> Result<T, SystemdError> {
        let _op = activity::begin(format!("D-Bus {method} {unit}"));
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(SystemdError::Call {
                method,
                unit: unit.to_owned(),
                source,
            }),
            Err(_) => Err(SystemdError::CallTimeout {
                method,
                unit: unit.to_owned(),
                timeout: limit,
            }),
        }
    }

    /// Sets how long a started unit must stay up, see [`DEFAULT_START_SETTLE`]. A failure
    /// seen earlier ends the wait at once, so a long settle only delays healthy starts.
    pub fn with_start_settle(mut self, settle: Duration) -> Self {
        self.start_settle = settle;
        self
    }

    /// A stream of every unit's ActiveState changes on the current connection, for the
    /// controller to notice a managed unit that left `active`. It ends when the
    /// connection closes; [`DbusUnitManager::forward_unit_events`] subscribes again on
    /// the next connection.
    ///
    /// systemd only emits the changes because [`DbusUnitManager::connect`] subscribed.
    pub async fn unit_events(
        &self,
    ) -> Result<impl Stream<Item = UnitEvent> + Send + Unpin + 'static, SystemdError> {
        let link = self.link();
        let rule = events::properties_changed_rule(None).map_err(|source| SystemdError::Call {
            method: "AddMatch PropertiesChanged",
            unit: String::new(),
            source,
        })?;
        let messages = self
            .call(
                "AddMatch PropertiesChanged",
                "",
                self.call_timeout,
                MessageStream::for_match_rule(rule, &link.connection, None),
            )
            .await?;
        Ok(events::unit_events_from(messages))
    }

    /// Keeps `unit` loaded until [`UnitManager::release_runs`] (see
    /// [`DbusUnitManager::kept`]). Best effort: without the reference the gate
    /// cannot read how the run ended once the unit unloads, and reads a unit at rest
    /// as completed, as it would with no record.
    async fn keep(&self, link: &Link, unit: &str) {
        let generation = *self.generation.borrow();
        if self.kept_lock().get(unit) == Some(&generation) {
            return;
        }
        match self
            .call(
                "RefUnit",
                unit,
                self.call_timeout,
                link.manager.ref_unit(unit),
            )
            .await
        {
            Ok(()) => {
                self.kept_lock().insert(unit.to_owned(), generation);
            }
            Err(e) => tracing::debug!(unit, error = %e, "cannot keep the unit loaded"),
        }
    }

    fn kept_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` for `unit` and waits for its `JobRemoved`.
    async fn run_job(&self, job: Job, unit: &str) -> Result<(), SystemdError> {
        let link = self.link();
        if job != Job::Stop {
            self.keep(&link, unit).await;
        }
        // Subscribe before queuing: a job that finishes at once (a unit already active)
        // sends JobRemoved before the method reply arrives.
        let mut removed = self
            .call(
                "AddMatch JobRemoved",
                unit,
                self.call_timeout,
                link.manager.receive_job_removed(),
            )
            .await?;
        let queue = async {
            match job {
                Job::Start => link.manager.start_unit(unit, JOB_MODE).await,
                Job::Restart => link.manager.restart_unit(unit, JOB_MODE).await,
                Job::Stop => link.manager.stop_unit(unit, JOB_MODE).await,
            }
        };
        let job_path: OwnedObjectPath = match self
            .call(job.method(), unit, self.call_timeout, queue)
            .await
        {
            Ok(path) => path,
            Err(SystemdError::Call { source, .. })
                if job == Job::Stop && error_name(&source).as_deref() == Some(NO_SUCH_UNIT) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };

        let _op = activity::begin(format!("systemd {} job of {unit}", job.name()));
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
        self.check_settled(&link, job, unit).await
    }

    /// After a `done` start or restart: fails when the unit is `failed` now or turns
    /// `failed` within the settle time.
    async fn check_settled(&self, link: &Link, job: Job, unit: &str) -> Result<(), SystemdError> {
        let path = events::unit_object_path(unit);
        // Watch first, then read: a change between the two is in the stream.
        let rule =
            events::properties_changed_rule(Some(&path)).map_err(|source| SystemdError::Call {
                method: "watch ActiveState",
                unit: unit.to_owned(),
                source,
            })?;
        let mut changes = self
            .call(
                "watch ActiveState",
                unit,
                self.call_timeout,
                MessageStream::for_match_rule(rule, &link.connection, None),
            )
            .await?;
        let now = match self
            .call(
                "read ActiveState",
                unit,
                self.call_timeout,
                state_at(link, path),
            )
            .await?
        {
            Some(state) => state,
            // Gone already: nothing is running that could fail.
            None => return Ok(()),
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
}

/// Connects to `target` and subscribes to systemd's signals, all within `limit`. The
/// connection's own method timeout is set to `backstop` (the longest explicit limit),
/// for any call that is not wrapped in an explicit one.
pub(super) async fn open_link(
    target: &BusTarget,
    limit: Duration,
    backstop: Duration,
) -> Result<Link, SystemdError> {
    let builder = match target {
        BusTarget::System => Builder::system(),
        BusTarget::User => Builder::session(),
        BusTarget::Address(address) => Builder::address(address.as_str()),
    };
    let connect = async {
        let connection = builder.method_timeout(backstop).build().await?;
        let manager = ManagerProxy::new(&connection).await?;
        subscribe(&manager).await?;
        Ok::<_, zbus::Error>(Link {
            connection,
            manager,
        })
    };
    let _op = activity::begin(format!("D-Bus connect to the {target}"));
    match tokio::time::timeout(limit, connect).await {
        Ok(Ok(link)) => Ok(link),
        Ok(Err(source)) => Err(SystemdError::Connect {
            target: target.clone(),
            source,
        }),
        Err(_) => Err(SystemdError::Connect {
            target: target.clone(),
            source: zbus::Error::Failure(format!(
                "no answer from systemd within {}",
                humantime::format_duration(limit)
            )),
        }),
    }
}

/// `Subscribe()`; a client systemd still counts as subscribed (after a re-exec, systemd
/// restores its subscribers) is fine.
pub(super) async fn subscribe(manager: &ManagerProxy<'static>) -> zbus::Result<()> {
    match manager.subscribe().await {
        Err(e) if error_name(&e).as_deref() == Some(ALREADY_SUBSCRIBED) => Ok(()),
        other => other,
    }
}

/// How the run of the unit at `path` ended; `None` when the object is gone.
async fn run_at(link: &Link, path: String) -> zbus::Result<Option<UnitRun>> {
    let unit = UnitProxy::builder(&link.connection)
        .path(path.clone())
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let service = ServiceProxy::builder(&link.connection)
        .path(path)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let read = async {
        Ok::<_, zbus::Error>(UnitRun {
            result: service.result().await?,
            main_code: service.exec_main_code().await?,
            main_status: service.exec_main_status().await?,
            main_exited: service.exec_main_exit_timestamp_monotonic().await?,
            active_exited: unit.active_exit_timestamp_monotonic().await?,
            started: unit.inactive_exit_timestamp_monotonic().await?,
            remain_after_exit: service.remain_after_exit().await?,
        })
    };
    match read.await {
        Ok(run) => Ok(Some(run)),
        Err(e) if error_name(&e).as_deref() == Some(UNKNOWN_OBJECT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The state of the unit at `path`; `None` when the object is gone.
async fn state_at(link: &Link, path: impl Into<String>) -> zbus::Result<Option<UnitState>> {
    let unit = UnitProxy::builder(&link.connection)
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

impl UnitManager for DbusUnitManager {
    async fn reload(&self) -> Result<(), SystemdError> {
        let link = self.link();
        // The reply comes once systemd has reloaded (and rerun the generators): a job's
        // time, not a call's.
        match self
            .call("Reload", "", self.job_timeout, link.manager.reload())
            .await
        {
            Err(SystemdError::CallTimeout { timeout, .. }) => Err(SystemdError::Timeout {
                unit: "systemd".to_owned(),
                job: "reload",
                timeout,
            }),
            other => other,
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
        let link = self.link();
        let Some(path) = self.loaded_unit(&link, unit).await? else {
            return Ok(UnitState::unknown());
        };
        Ok(self
            .call(
                "read unit state",
                unit,
                self.call_timeout,
                state_at(&link, path.as_str().to_owned()),
            )
            .await?
            .unwrap_or_else(UnitState::unknown))
    }

    /// `GetUnit`, then the unit's and its service's properties. `GetUnit` rather than
    /// `LoadUnit`: a unit systemd unloaded has no record left, and loading it again
    /// would only show an empty one.
    async fn last_run(&self, unit: &str) -> Result<Option<UnitRun>, SystemdError> {
        let link = self.link();
        let Some(path) = self.loaded_unit(&link, unit).await? else {
            return Ok(None);
        };
        self.call(
            "read the unit's last run",
            unit,
            self.call_timeout,
            run_at(&link, path.as_str().to_owned()),
        )
        .await
    }

    /// `UnrefUnit` for every unit kept on the current connection; references taken
    /// on an earlier one went with it.
    async fn release_runs(&self) {
        let generation = *self.generation.borrow();
        let kept = std::mem::take(&mut *self.kept_lock());
        let link = self.link();
        for (unit, _) in kept.into_iter().filter(|(_, g)| *g == generation) {
            if let Err(e) = self
                .call(
                    "UnrefUnit",
                    &unit,
                    self.call_timeout,
                    link.manager.unref_unit(&unit),
                )
                .await
            {
                tracing::debug!(unit, error = %e, "cannot let systemd unload the unit");
            }
        }
    }

    /// One `ListUnitsByNames` call for all of them, where [`UnitManager::unit_state`]
    /// makes two round trips per unit. Unlike `GetUnit`, systemd loads a unit it does
    /// not have in memory to answer; that sends `UnitNew` (and later `UnitRemoved`), not
    /// the `PropertiesChanged` the controller's event stream follows, so observing still
    /// triggers no pass. A unit whose file is missing reads as `not-found`, exactly as
    /// [`UnitState::unknown`].
    async fn unit_states(
        &self,
        units: &[String],
    ) -> Result<BTreeMap<String, UnitState>, SystemdError> {
        let mut states = BTreeMap::new();
        if units.is_empty() {
            return Ok(states);
        }
        let link = self.link();
        let names: Vec<&str> = units.iter().map(String::as_str).collect();
        let what = format!("{} units", names.len());
        let rows = self
            .call(
                "ListUnitsByNames",
                &what,
                self.call_timeout,
                link.manager.list_units_by_names(&names),
            )
            .await?;
        for (name, _, load_state, active_state, sub_state, ..) in rows {
            states.insert(
                name,
                UnitState {
                    load_state,
                    active_state,
                    sub_state,
                },
            );
        }
        // systemd skips names that are not valid unit names: they are not loaded.
        for unit in units {
            states
                .entry(unit.clone())
                .or_insert_with(UnitState::unknown);
        }
        Ok(states)
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

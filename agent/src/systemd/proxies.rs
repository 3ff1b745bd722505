//! zbus proxies for the parts of systemd's D-Bus API legerd uses
//! (org.freedesktop.systemd1(5)).

use zbus::OwnedObjectPath;
use zbus::proxy;

/// One row of `ListUnits`/`ListUnitsByNames` (`ssssssouso`): name, description, load
/// state, active state, sub state, following, unit path, job id, job type, job path.
pub(crate) type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// `org.freedesktop.systemd1.Manager` on `/org/freedesktop/systemd1`.
#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub(crate) trait Manager {
    /// Asks systemd to emit job and unit signals to this client. Without it, systemd sends
    /// `JobRemoved` and `PropertiesChanged` to nobody.
    fn subscribe(&self) -> zbus::Result<()>;

    /// daemon-reload; the reply comes once the reload is complete.
    fn reload(&self) -> zbus::Result<()>;

    /// Queues a start job, returns its path.
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Queues a restart job, returns its path.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Queues a stop job, returns its path.
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// The object path of a loaded unit; `NoSuchUnit` when it is not loaded.
    fn get_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// Keeps the unit loaded while this client holds the reference (or is connected):
    /// systemd otherwise unloads a unit at rest at once, and forgets how its run ended.
    fn ref_unit(&self, name: &str) -> zbus::Result<()>;

    /// Drops a reference [`ManagerProxy::ref_unit`] took.
    fn unref_unit(&self, name: &str) -> zbus::Result<()>;

    /// The state of each named unit in one call, as `ListUnits` rows.
    fn list_units_by_names(&self, names: &[&str]) -> zbus::Result<Vec<UnitRow>>;

    /// A job finished: `result` is `done`, `canceled`, `timeout`, `failed`, `dependency`
    /// or `skipped`.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.systemd1.Unit` on a unit's object path.
#[proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
pub(crate) trait Unit {
    /// `loaded`, `not-found`, `bad-setting`, `masked`, ...
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;

    /// `active`, `inactive`, `failed`, `activating`, ...
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;

    /// Unit-type specific: `running`, `exited`, `dead`, ...
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;

    /// When the unit last left `active` (CLOCK_MONOTONIC, µs; 0: never).
    #[zbus(property)]
    fn active_exit_timestamp_monotonic(&self) -> zbus::Result<u64>;

    /// When the unit last left `inactive`, i.e. when its current run began.
    #[zbus(property)]
    fn inactive_exit_timestamp_monotonic(&self) -> zbus::Result<u64>;
}

/// `org.freedesktop.systemd1.Service` on a service unit's object path: how its main
/// process ended.
#[proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1"
)]
pub(crate) trait Service {
    /// `success`, `exit-code`, `signal`, `timeout`, ...
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;

    /// How the main process ended: 1 exited, 2 killed, 3 dumped (`CLD_*`); 0 none.
    #[zbus(property)]
    fn exec_main_code(&self) -> zbus::Result<i32>;

    /// Its exit status, or the signal that killed it.
    #[zbus(property)]
    fn exec_main_status(&self) -> zbus::Result<i32>;

    /// When it ended (CLOCK_MONOTONIC, µs; 0: not yet or never).
    #[zbus(property)]
    fn exec_main_exit_timestamp_monotonic(&self) -> zbus::Result<u64>;

    /// `RemainAfterExit=`: a finished run stays `active`.
    #[zbus(property)]
    fn remain_after_exit(&self) -> zbus::Result<bool>;
}

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
}

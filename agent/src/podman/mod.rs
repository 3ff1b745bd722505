//! The podman seam: every call legerd makes to podman (secrets, volumes, networks,
//! container health), plus the journal reads that explain a failed unit.
//!
//! One trait, [`Podman`], with two implementations:
//! - [`CliPodman`] runs the `podman` and `journalctl` programs through the command
//!   runner ([`crate::command`]), so every call has a time limit and a hung program is
//!   killed with its process group.
//! - [`RecordingPodman`] records the *order* of calls for in-process tests and returns
//!   the answers a test configured. It never imitates podman: it keeps no secrets or
//!   volumes, and a create does not make a later `exists` true.
//!
//! **Why the CLI, not libpod's REST socket:** it needs no `podman.socket` unit enabled
//! (in system or user mode), it is what operators use to check the result, and its one
//! caveat is easy to meet: secret values go on **stdin** (`podman secret create NAME -`),
//! never on the command line where `ps` would show them.
//!
//! **Why journal reads are here:** they are the other external read of a pass (the last
//! log lines of a unit that failed its gate), with the same need for a time limit and
//! the same test double; a separate seam for one call would be ceremony.
//!
//! **Architecture invariant:** nothing else in legerd spawns `podman` or `journalctl`;
//! a new podman call is a new method here.

use std::collections::BTreeSet;
use std::path::Path;

use futures::future::BoxFuture;

use crate::command::CommandError;

mod cli;
mod recording;

pub use cli::CliPodman;
pub use recording::{PodmanCall, RecordingPodman};

/// A container attached to a network.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetworkUser {
    /// Its name.
    pub container: String,
    /// The unit that runs it: podman's `PODMAN_SYSTEMD_UNIT` label, which quadlet's
    /// units set; `None` for a container started by hand.
    pub unit: Option<String>,
    /// A pod's infra container: it belongs to its pod, not to a unit of its own.
    pub infra: bool,
}

/// The label legerd puts on secrets it creates, so operators can tell them apart.
pub const MANAGED_LABEL: &str = "io.leger.managed=true";

/// A podman (or journalctl) call that did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum PodmanError {
    /// The program could not run, or ran past its time limit and was killed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The program ran and reported a failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line (never a secret value: those go on stdin).
        command: String,
        /// The exit status, as text.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
}

/// Whether legerd reads the system journal or the user's (rootless mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalScope {
    /// `journalctl --unit`.
    System,
    /// `journalctl --user-unit`.
    User,
}

/// Every podman call legerd makes. Methods return boxed futures so the seam can be
/// held as `Arc<dyn Podman>` by the parts that need it (secrets, backups, the health
/// gate) without making each of them generic.
pub trait Podman: Send + Sync + std::fmt::Debug {
    /// The names of every podman secret of this user.
    fn secret_names(&self) -> BoxFuture<'_, Result<BTreeSet<String>, PodmanError>>;

    /// `podman secret create [--replace] --label io.leger.managed=true NAME -` with
    /// `value` on stdin. `value` is borrowed from a `SecretValue` and never copied or
    /// recorded. `replace` must be true exactly when the secret exists (podman refuses
    /// `--replace` for a missing secret and a plain create for an existing one).
    fn secret_create<'a>(
        &'a self,
        name: &'a str,
        value: &'a [u8],
        replace: bool,
    ) -> BoxFuture<'a, Result<(), PodmanError>>;

    /// `podman secret rm NAME`.
    fn secret_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>>;

    /// `podman volume exists NAME`: true or false, an error only when podman cannot say.
    fn volume_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, PodmanError>>;

    /// When volume `name` was created (`podman volume inspect --format {{.CreatedAt}}`),
    /// `None` when there is no such volume: it tells a volume recreated by hand from
    /// the one legerd saw.
    fn volume_created<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, PodmanError>>;

    /// `podman volume create NAME`.
    fn volume_create<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>>;

    /// `podman volume export NAME --output FILE`: the volume as a tar archive.
    fn volume_export<'a>(
        &'a self,
        name: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), PodmanError>>;

    /// `podman volume import NAME FILE`: unpacks a tar archive into the volume.
    fn volume_import<'a>(
        &'a self,
        name: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), PodmanError>>;

    /// `podman volume rm NAME`.
    fn volume_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>>;

    /// `podman volume inspect NAME --format {{.Mountpoint}}`: where the volume's data
    /// sits on this host, so the backup budget can measure a volume before its first
    /// export; `None` when podman gives no path (a driver without one).
    fn volume_mountpoint<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::path::PathBuf>, PodmanError>>;

    /// `podman network exists NAME`.
    fn network_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, PodmanError>>;

    /// `podman network rm NAME`.
    fn network_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>>;

    /// The containers attached to network `name`, running or not (`podman ps -a
    /// --filter network=NAME`), each with the systemd unit that runs it.
    fn network_users<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NetworkUser>, PodmanError>>;

    /// The container's health as podman reports it (`healthy`, `unhealthy`,
    /// `starting`), or `None` when podman cannot say yet (no such container: it is still
    /// being created).
    fn container_health<'a>(
        &'a self,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, PodmanError>>;

    /// The last `lines` journal lines of `unit`, message text only (`-o cat`).
    fn unit_journal<'a>(
        &'a self,
        unit: &'a str,
        scope: JournalScope,
        lines: usize,
    ) -> BoxFuture<'a, Result<String, PodmanError>>;
}

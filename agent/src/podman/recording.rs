//! [`RecordingPodman`]: a [`Podman`] for in-process tests that records the order of
//! calls and returns configured answers.
//!
//! It never pretends to be podman: creating a secret does not add it to the list,
//! exporting a volume writes no archive, and an unconfigured question gets the empty
//! answer (no secrets, nothing exists, health unknown, an empty journal). What podman
//! does with the calls is tested against real podman on the test bed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{JournalScope, NetworkUser, Podman, PodmanError};

/// One call made through the seam. Secret values are never recorded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodmanCall {
    /// `secret_names()`.
    SecretNames,
    /// `secret_create(name, _, replace)`.
    SecretCreate {
        /// The secret.
        name: String,
        /// Whether `--replace` was asked for.
        replace: bool,
    },
    /// `secret_remove(name)`.
    SecretRemove(String),
    /// `volume_exists(name)`.
    VolumeExists(String),
    /// `volume_created(name)`.
    VolumeCreated(String),
    /// `volume_create(name)`.
    VolumeCreate(String),
    /// `volume_export(name, file)`.
    VolumeExport(String, PathBuf),
    /// `volume_import(name, file)`.
    VolumeImport(String, PathBuf),
    /// `volume_remove(name)`.
    VolumeRemove(String),
    /// `volume_mountpoint(name)`.
    VolumeMountpoint(String),
    /// `network_exists(name)`.
    NetworkExists(String),
    /// `network_remove(name)`.
    NetworkRemove(String),
    /// `network_users(name)`.
    NetworkUsers(String),
    /// `container_health(container)`.
    ContainerHealth(String),
    /// `unit_journal(unit, scope, lines)`.
    UnitJournal(String),
}

/// The answers a test configured.
#[derive(Debug, Default)]
struct Answers {
    secret_names: BTreeSet<String>,
    volumes: BTreeSet<String>,
    mountpoints: BTreeMap<String, PathBuf>,
    volume_created: BTreeMap<String, String>,
    networks: BTreeSet<String>,
    network_users: BTreeMap<String, Vec<NetworkUser>>,
    health: BTreeMap<String, String>,
    journal: BTreeMap<String, String>,
    failures: BTreeMap<PodmanCall, String>,
}

/// Records calls in order; answers from what the test set.
#[derive(Debug, Default)]
pub struct RecordingPodman {
    calls: Mutex<Vec<PodmanCall>>,
    answers: Mutex<Answers>,
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl RecordingPodman {
    /// A recorder with every answer empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// What `secret_names` returns from now on.
    pub fn set_secret_names<I: IntoIterator<Item = S>, S: Into<String>>(&self, names: I) {
        lock(&self.answers).secret_names = names.into_iter().map(Into::into).collect();
    }

    /// Makes `volume_exists(name)` answer `exists`.
    pub fn set_volume_exists(&self, name: &str, exists: bool) {
        set_member(&mut lock(&self.answers).volumes, name, exists);
    }

    /// Makes `volume_mountpoint(name)` answer `path` (`None` until set).
    pub fn set_volume_mountpoint(&self, name: &str, path: &Path) {
        lock(&self.answers)
            .mountpoints
            .insert(name.to_owned(), path.to_owned());
    }

    /// Makes `volume_created(name)` answer `created` (and `volume_exists` true).
    pub fn set_volume_created(&self, name: &str, created: &str) {
        let mut a = lock(&self.answers);
        a.volumes.insert(name.to_owned());
        a.volume_created.insert(name.to_owned(), created.to_owned());
    }

    /// Makes `network_exists(name)` answer `exists`.
    pub fn set_network_exists(&self, name: &str, exists: bool) {
        set_member(&mut lock(&self.answers).networks, name, exists);
    }

    /// Makes `network_users(name)` answer `users`.
    pub fn set_network_users(&self, name: &str, users: Vec<NetworkUser>) {
        lock(&self.answers)
            .network_users
            .insert(name.to_owned(), users);
    }

    /// Makes `container_health(container)` answer `status`.
    pub fn set_container_health(&self, container: &str, status: &str) {
        lock(&self.answers)
            .health
            .insert(container.to_owned(), status.to_owned());
    }

    /// Makes `unit_journal(unit, ..)` answer `text`.
    pub fn set_journal(&self, unit: &str, text: &str) {
        lock(&self.answers)
            .journal
            .insert(unit.to_owned(), text.to_owned());
    }

    /// Makes exactly this call fail with `stderr`, as a podman that exits 125 would.
    pub fn fail(&self, call: PodmanCall, stderr: &str) {
        lock(&self.answers).failures.insert(call, stderr.to_owned());
    }

    /// The calls made so far, oldest first.
    pub fn calls(&self) -> Vec<PodmanCall> {
        lock(&self.calls).clone()
    }

    /// Returns the calls so far and forgets them.
    pub fn take_calls(&self) -> Vec<PodmanCall> {
        std::mem::take(&mut *lock(&self.calls))
    }

    /// Records `call`, then returns the configured failure or `answer`.
    fn answer<T>(
        &self,
        call: PodmanCall,
        answer: impl FnOnce(&Answers) -> T,
    ) -> Result<T, PodmanError> {
        lock(&self.calls).push(call.clone());
        let answers = lock(&self.answers);
        if let Some(stderr) = answers.failures.get(&call) {
            return Err(PodmanError::Failed {
                command: format!("{call:?}"),
                status: "exit status: 125".to_owned(),
                stderr: stderr.clone(),
            });
        }
        Ok(answer(&answers))
    }
}

fn set_member(set: &mut BTreeSet<String>, name: &str, member: bool) {
    if member {
        set.insert(name.to_owned());
    } else {
        set.remove(name);
    }
}

impl Podman for RecordingPodman {
    fn secret_names(&self) -> BoxFuture<'_, Result<BTreeSet<String>, PodmanError>> {
        let r = self.answer(PodmanCall::SecretNames, |a| a.secret_names.clone());
        async move { r }.boxed()
    }

    fn secret_create<'a>(
        &'a self,
        name: &'a str,
        _value: &'a [u8],
        replace: bool,
    ) -> BoxFuture<'a, Result<(), PodmanError>> {
        let call = PodmanCall::SecretCreate {
            name: name.to_owned(),
            replace,
        };
        let r = self.answer(call, |_| ());
        async move { r }.boxed()
    }

    fn secret_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>> {
        let r = self.answer(PodmanCall::SecretRemove(name.to_owned()), |_| ());
        async move { r }.boxed()
    }

    fn volume_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, PodmanError>> {
        let r = self.answer(PodmanCall::VolumeExists(name.to_owned()), |a| {
            a.volumes.contains(name)
        });
        async move { r }.boxed()
    }

    fn volume_mountpoint<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PathBuf>, PodmanError>> {
        let r = self.answer(PodmanCall::VolumeMountpoint(name.to_owned()), |a| {
            a.mountpoints.get(name).cloned()
        });
        async move { r }.boxed()
    }

    fn volume_created<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, PodmanError>> {
        let r = self.answer(PodmanCall::VolumeCreated(name.to_owned()), |a| {
            a.volumes
                .contains(name)
                .then(|| a.volume_created.get(name).cloned().unwrap_or_default())
        });
        async move { r }.boxed()
    }

    fn volume_create<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>> {
        let r = self.answer(PodmanCall::VolumeCreate(name.to_owned()), |_| ());
        async move { r }.boxed()
    }

    fn volume_export<'a>(
        &'a self,
        name: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), PodmanError>> {
        let call = PodmanCall::VolumeExport(name.to_owned(), file.to_owned());
        let r = self.answer(call, |_| ());
        async move { r }.boxed()
    }

    fn volume_import<'a>(
        &'a self,
        name: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), PodmanError>> {
        let call = PodmanCall::VolumeImport(name.to_owned(), file.to_owned());
        let r = self.answer(call, |_| ());
        async move { r }.boxed()
    }

    fn volume_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>> {
        let r = self.answer(PodmanCall::VolumeRemove(name.to_owned()), |_| ());
        async move { r }.boxed()
    }

    fn network_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, PodmanError>> {
        let r = self.answer(PodmanCall::NetworkExists(name.to_owned()), |a| {
            a.networks.contains(name)
        });
        async move { r }.boxed()
    }

    fn network_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), PodmanError>> {
        let r = self.answer(PodmanCall::NetworkRemove(name.to_owned()), |_| ());
        async move { r }.boxed()
    }

    fn network_users<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<NetworkUser>, PodmanError>> {
        let r = self.answer(PodmanCall::NetworkUsers(name.to_owned()), |a| {
            a.network_users.get(name).cloned().unwrap_or_default()
        });
        async move { r }.boxed()
    }

    fn container_health<'a>(
        &'a self,
        container: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, PodmanError>> {
        let r = self.answer(PodmanCall::ContainerHealth(container.to_owned()), |a| {
            a.health.get(container).cloned()
        });
        async move { r }.boxed()
    }

    fn unit_journal<'a>(
        &'a self,
        unit: &'a str,
        _scope: JournalScope,
        _lines: usize,
    ) -> BoxFuture<'a, Result<String, PodmanError>> {
        let r = self.answer(PodmanCall::UnitJournal(unit.to_owned()), |a| {
            a.journal.get(unit).cloned().unwrap_or_default()
        });
        async move { r }.boxed()
    }
}

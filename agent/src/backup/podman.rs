//! Volumes through the [`Podman`] seam: exists, export, import, create, rm, inspect, with
//! podman's failures turned into [`BackupError`]s that name the volume.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::BackupError;
use crate::podman::{CliPodman, Podman, PodmanError};

/// The volume calls a backup and a restore make.
#[derive(Debug, Clone)]
pub struct PodmanVolumes {
    podman: Arc<dyn Podman>,
}

impl Default for PodmanVolumes {
    /// The podman CLI with legerd's default command time limit.
    fn default() -> Self {
        PodmanVolumes::new(Arc::new(CliPodman::new(crate::command::Runner::new(
            leger_config::DEFAULT_COMMAND_TIMEOUT,
        ))))
    }
}

impl PodmanVolumes {
    /// Volume calls through `podman`.
    pub fn new(podman: Arc<dyn Podman>) -> Self {
        PodmanVolumes { podman }
    }

    fn err(what: &'static str, volume: &str) -> impl FnOnce(PodmanError) -> BackupError {
        move |e| BackupError::Podman {
            what,
            volume: volume.to_owned(),
            reason: e.to_string(),
        }
    }

    /// True when the volume exists.
    pub async fn exists(&self, volume: &str) -> Result<bool, BackupError> {
        self.podman
            .volume_exists(volume)
            .await
            .map_err(Self::err("exists", volume))
    }

    /// Writes the volume's content as a tar archive to `file`.
    pub async fn export(&self, volume: &str, file: &Path) -> Result<(), BackupError> {
        self.podman
            .volume_export(volume, file)
            .await
            .map_err(Self::err("export", volume))
    }

    /// Unpacks a tar archive into the volume.
    pub async fn import(&self, volume: &str, file: &Path) -> Result<(), BackupError> {
        self.podman
            .volume_import(volume, file)
            .await
            .map_err(Self::err("import", volume))
    }

    /// Removes a volume and its data. Fails while a container uses it, which is what
    /// a restore wants: it never pulls a volume from under a running container.
    pub async fn remove(&self, volume: &str) -> Result<(), BackupError> {
        self.podman
            .volume_remove(volume)
            .await
            .map_err(Self::err("rm", volume))
    }

    /// Where the volume's data sits, when podman says.
    pub async fn mountpoint(&self, volume: &str) -> Result<Option<PathBuf>, BackupError> {
        self.podman
            .volume_mountpoint(volume)
            .await
            .map_err(Self::err("inspect", volume))
    }

    /// Creates an empty volume.
    pub async fn create(&self, volume: &str) -> Result<(), BackupError> {
        self.podman
            .volume_create(volume)
            .await
            .map_err(Self::err("create", volume))
    }
}

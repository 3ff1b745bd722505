//! `podman volume` through the CLI: exists, export, import, create, rm.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::BackupError;

/// The podman CLI for volumes. The CLI, like [`crate::secrets::podman`], so no
/// `podman.socket` is needed and operators can run the same commands by hand.
#[derive(Debug, Clone)]
pub struct PodmanVolumes {
    program: PathBuf,
}

impl Default for PodmanVolumes {
    fn default() -> Self {
        PodmanVolumes {
            program: PathBuf::from("podman"),
        }
    }
}

impl PodmanVolumes {
    async fn run(
        &self,
        what: &'static str,
        volume: &str,
        args: &[&str],
    ) -> Result<std::process::Output, BackupError> {
        Command::new(&self.program)
            .arg("volume")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| BackupError::Podman {
                what,
                volume: volume.to_owned(),
                reason: format!("cannot run {}: {e}", self.program.display()),
            })
    }

    async fn check(
        &self,
        what: &'static str,
        volume: &str,
        args: &[&str],
    ) -> Result<(), BackupError> {
        let out = self.run(what, volume, args).await?;
        if out.status.success() {
            return Ok(());
        }
        Err(BackupError::Podman {
            what,
            volume: volume.to_owned(),
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }

    /// True when the volume exists.
    pub async fn exists(&self, volume: &str) -> Result<bool, BackupError> {
        let out = self.run("exists", volume, &["exists", volume]).await?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(BackupError::Podman {
                what: "exists",
                volume: volume.to_owned(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            }),
        }
    }

    /// Writes the volume's content as a tar archive to `file`.
    pub async fn export(&self, volume: &str, file: &Path) -> Result<(), BackupError> {
        let file = file.to_string_lossy();
        self.check("export", volume, &["export", volume, "--output", &file])
            .await
    }

    /// Unpacks a tar archive into the volume.
    pub async fn import(&self, volume: &str, file: &Path) -> Result<(), BackupError> {
        let file = file.to_string_lossy();
        self.check("import", volume, &["import", volume, &file])
            .await
    }

    /// Removes a volume and its data. Fails while a container uses it, which is what
    /// a restore wants: it never pulls a volume from under a running container.
    pub async fn remove(&self, volume: &str) -> Result<(), BackupError> {
        self.check("rm", volume, &["rm", volume]).await
    }

    /// Creates an empty volume.
    pub async fn create(&self, volume: &str) -> Result<(), BackupError> {
        self.check("create", volume, &["create", volume]).await
    }
}

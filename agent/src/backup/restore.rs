//! The backup side of a restore: finding the backup, checking every file and volume
//! against its manifest before anything changes, and importing volumes.
//!
//! The host side (stop, write, reload, start, with the intent record, crash points,
//! journal events and a history row) is the pass's converge stage in restore mode
//! ([`crate::pass::restore`]): a restore changes the host along the same path as any
//! apply.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use leger_api_types::{RestoreRequest, RestoreResponse};
use tokio::sync::oneshot;

use super::{BackupError, Backups, Manifest, check_name, io_err, sha256_file};
use crate::model::{ContentHash, Snapshot};

/// A restore request on its way to the controller loop, with the channel for the answer.
#[derive(Debug)]
pub struct RestoreJob {
    /// What to restore.
    pub request: RestoreRequest,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<RestoreResponse, BackupError>>,
}

/// A backup whose files and volume archives all match its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBackup {
    /// The backup id.
    pub id: String,
    /// The app's folder in the backup.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The app's files as a one-app snapshot (`app/relpath`), named by the revision the
    /// app was at, ready for validation.
    pub snapshot: Snapshot,
}

impl VerifiedBackup {
    /// The archive of a backed-up volume.
    pub fn volume_archive(&self, volume: &str) -> PathBuf {
        self.dir.join("volumes").join(format!("{volume}.tar"))
    }
}

impl Backups {
    /// Finds the backup of `app` (`backup`, or the newest) and checks every file and
    /// volume archive against its manifest, before anything on the host changes. The
    /// reads and hashes (a volume archive may be gigabytes) run on the blocking pool.
    pub async fn verified(
        &self,
        app: &str,
        backup: Option<&str>,
    ) -> Result<VerifiedBackup, BackupError> {
        let (me, app, backup) = (self.clone(), app.to_owned(), backup.map(str::to_owned));
        crate::pass::blocking::run(move || me.verify(&app, backup.as_deref())).await
    }

    /// [`Backups::verified`], blocking.
    fn verify(&self, app: &str, backup: Option<&str>) -> Result<VerifiedBackup, BackupError> {
        let (id, dir, manifest) = self.find(app, backup)?;
        let mut files = BTreeMap::new();
        for f in &manifest.files {
            check_rel(&f.path)?;
            let path = dir.join("files").join(&f.path);
            let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
            let got = ContentHash::of(&bytes).to_hex();
            if got != f.sha256 {
                return Err(BackupError::Corrupt {
                    path,
                    reason: format!("sha256 {got}, manifest says {}", f.sha256),
                });
            }
            files.insert(format!("{app}/{}", f.path), Arc::<[u8]>::from(bytes));
        }
        for v in &manifest.volumes {
            check_name("volume", &v.name)?;
            let path = dir.join("volumes").join(format!("{}.tar", v.name));
            let (got, _) = sha256_file(&path)?;
            if got != v.sha256 {
                return Err(BackupError::Corrupt {
                    path,
                    reason: format!("sha256 {got}, manifest says {}", v.sha256),
                });
            }
        }
        let snapshot = Snapshot {
            revision: manifest.revision.clone(),
            files,
        };
        Ok(VerifiedBackup {
            id,
            dir,
            manifest,
            snapshot,
        })
    }

    /// Refuses a restore of an app that is neither installed nor backed up, naming
    /// where to look.
    pub fn check_app_exists(&self, app: &str, installed: bool) -> Result<(), BackupError> {
        check_name("app", app)?;
        if !installed && self.list(Some(app))?.is_empty() {
            return Err(BackupError::NotFound(format!(
                "there is no app {app}: it is not installed and has no backup; `legerctl status` lists the apps, `legerctl backups` the backups"
            )));
        }
        Ok(())
    }

    /// Imports a backed-up volume that no `.volume` quadlet makes into an empty volume:
    /// an existing one is removed and made again, with podman's defaults as podman
    /// itself would make it, since `podman volume import` merges into what is there and
    /// a restore must leave the volume exactly as it was at the backup (point in time).
    /// The app's containers are stopped by then, so the removal cannot pull a volume
    /// from under one; a container outside the app still using it makes the removal
    /// fail, and the restore with it.
    pub async fn import_volume(
        &self,
        backup: &VerifiedBackup,
        volume: &str,
    ) -> Result<(), BackupError> {
        self.remove_volume(volume).await?;
        self.podman.create(volume).await?;
        self.import_into_made(backup, volume).await
    }

    /// Removes a volume if it exists, so that its `.volume` quadlet's service makes it
    /// again, with the file's options, and a restore imports into an empty volume.
    pub async fn remove_volume(&self, volume: &str) -> Result<(), BackupError> {
        if self.podman.exists(volume).await? {
            self.podman.remove(volume).await?;
        }
        Ok(())
    }

    /// Imports the backup's archive into a volume made empty by now (by
    /// [`Self::import_volume`] or by its quadlet's service after [`Self::remove_volume`]).
    pub async fn import_into_made(
        &self,
        backup: &VerifiedBackup,
        volume: &str,
    ) -> Result<(), BackupError> {
        self.podman
            .import(volume, &backup.volume_archive(volume))
            .await
    }
}

/// A manifest path must stay inside the app's folder.
pub(super) fn check_rel(rel: &str) -> Result<(), BackupError> {
    let ok = !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(BackupError::InvalidName {
            what: "file in the manifest",
            value: rel.to_owned(),
        })
    }
}

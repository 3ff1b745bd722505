//! Restoring an app from a backup, between passes.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use leger_api_types::{RestoreRequest, RestoreResponse};
use tokio::sync::oneshot;

use super::{BackupError, Backups, check_name, io_err, sha256_file};
use crate::apply::{remove_file, write_file};
use crate::model::{ContentHash, QuadletKind, install_key};
use crate::revisions::RevisionStore;
use crate::store::{InventoryEntry, Store, now_rfc3339};
use crate::systemd::UnitManager;

/// A restore request on its way to the controller loop, with the channel for the answer.
#[derive(Debug)]
pub struct RestoreJob {
    /// What to restore.
    pub request: RestoreRequest,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<RestoreResponse, BackupError>>,
}

fn rank(unit_file: &str) -> usize {
    QuadletKind::from_file_name(unit_file).map_or(usize::MAX, QuadletKind::start_rank)
}

/// Restores `app` from a backup (the newest without `backup`). Must not run during a
/// pass: the controller calls it between passes.
pub async fn restore<U: UnitManager>(
    backups: &Backups,
    quadlet_dir: &Path,
    units: &U,
    store: &Mutex<Store>,
    app: &str,
    backup: Option<&str>,
    revisions: Option<&RevisionStore>,
) -> Result<RestoreResponse, BackupError> {
    check_name("app", app)?;
    let installed_now = store
        .lock()
        .expect("store lock")
        .inventory()?
        .iter()
        .any(|e| e.app == app);
    if !installed_now && backups.list(Some(app))?.is_empty() {
        return Err(BackupError::NotFound(format!(
            "there is no app {app}: it is not installed and has no backup; `legerctl status` lists the apps, `legerctl backups` the backups"
        )));
    }
    let (id, dir, manifest) = backups.find(app, backup)?;
    // The host is pinned to the backup's revision for the restore to stick; a revision
    // legerd no longer stores could not be converged to, so refuse before anything
    // changes.
    if let Some(r) = revisions
        && !r.contains(&manifest.revision)
    {
        return Err(BackupError::RevisionGone {
            backup: id,
            revision: manifest.revision,
        });
    }
    // Check every file before anything changes.
    let mut contents = Vec::with_capacity(manifest.files.len());
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
        contents.push(bytes);
    }
    for v in &manifest.volumes {
        check_name("volume", &v.name)?;
        let path = dir.join("volumes").join(format!("{}.tar", v.name));
        let p = path.clone();
        let (got, _) = tokio::task::spawn_blocking(move || sha256_file(&p))
            .await
            .map_err(|e| BackupError::Io {
                what: "hash",
                path: path.clone(),
                source: io::Error::other(e.to_string()),
            })??;
        if got != v.sha256 {
            return Err(BackupError::Corrupt {
                path,
                reason: format!("sha256 {got}, manifest says {}", v.sha256),
            });
        }
    }
    let installed: Vec<InventoryEntry> = store
        .lock()
        .expect("store lock")
        .inventory()?
        .into_iter()
        .filter(|e| e.app == app)
        .collect();

    // Stop: what runs now and what the backup had, dependents first.
    let mut stop: Vec<(usize, String)> = installed
        .iter()
        .filter_map(|e| e.unit.clone().map(|u| (rank(&e.key), u)))
        .chain(
            manifest
                .files
                .iter()
                .filter_map(|f| f.unit.clone().map(|u| (rank(&f.path), u))),
        )
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    stop.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    stop.dedup_by(|a, b| a.1 == b.1);
    let mut response = RestoreResponse {
        app: app.to_owned(),
        backup: id.clone(),
        revision: manifest.revision.clone(),
        stopped: Vec::new(),
        volumes: Vec::new(),
        files: Vec::new(),
        removed: Vec::new(),
        started: Vec::new(),
    };
    for (_, unit) in &stop {
        units
            .stop(unit)
            .await
            .map_err(|source| BackupError::Systemd {
                action: "stop",
                unit: unit.clone(),
                source: Box::new(source),
            })?;
        response.stopped.push(unit.clone());
    }

    // Point in time: `podman volume import` unpacks over what is there, so a file
    // written after the backup would survive it and a database would come back as a mix
    // of two times. Each volume is removed now (its containers are stopped) and made
    // again empty below, before the import.
    for v in &manifest.volumes {
        if backups.podman.exists(&v.name).await? {
            backups.podman.remove(&v.name).await?;
        }
    }

    let keep: BTreeSet<String> = manifest
        .files
        .iter()
        .map(|f| install_key(app, &f.path))
        .collect();
    for (f, bytes) in manifest.files.iter().zip(&contents) {
        let key = install_key(app, &f.path);
        let entry = InventoryEntry {
            key: key.clone(),
            app: app.to_owned(),
            hash: ContentHash::of(bytes),
            unit: f.unit.clone(),
            revision: manifest.revision.clone(),
            installed_at: now_rfc3339(),
        };
        // Inventory first, then the file: legerd never loses track of a file it wrote.
        store.lock().expect("store lock").upsert_inventory(&entry)?;
        write_file(quadlet_dir, &key, bytes)?;
        response.files.push(f.path.clone());
    }
    for e in installed.iter().filter(|e| !keep.contains(&e.key)) {
        // File first, then the inventory row.
        remove_file(quadlet_dir, &e.key)?;
        store.lock().expect("store lock").remove_inventory(&e.key)?;
        response.removed.push(
            e.key
                .split_once('/')
                .map_or(e.key.clone(), |(_, r)| r.to_owned()),
        );
    }
    units
        .reload()
        .await
        .map_err(|source| BackupError::Systemd {
            action: "reload",
            unit: String::new(),
            source: Box::new(source),
        })?;

    let mut start: Vec<(usize, String)> = manifest
        .files
        .iter()
        .filter_map(|f| f.unit.clone().map(|u| (rank(&f.path), u)))
        .collect();
    start.sort();
    start.dedup_by(|a, b| a.1 == b.1);
    let mut errors = Vec::new();
    // The `.volume` units first: they make the volumes again with the quadlet's own
    // options (driver, labels); a volume no quadlet makes is created plain, as podman
    // would on first use. Then the data goes in, then everything else starts.
    let volume_rank = QuadletKind::Volume.start_rank();
    for (_, unit) in start.iter().filter(|(r, _)| *r == volume_rank) {
        if let Err(e) = units.start(unit).await {
            errors.push(format!("{unit}: {e}"));
        }
    }
    for v in &manifest.volumes {
        if !backups.podman.exists(&v.name).await? {
            backups.podman.create(&v.name).await?;
        }
        let archive = dir.join("volumes").join(format!("{}.tar", v.name));
        backups.podman.import(&v.name, &archive).await?;
        response.volumes.push(v.name.clone());
    }
    for (_, unit) in &start {
        match units.start(unit).await {
            Ok(()) => response.started.push(unit.clone()),
            Err(e) => errors.push(format!("{unit}: {e}")),
        }
    }
    crate::journal::restored(
        app,
        &id,
        &manifest.revision,
        response.volumes.len(),
        response.files.len(),
    );
    if !errors.is_empty() {
        return Err(BackupError::StartFailed {
            app: app.to_owned(),
            backup: id,
            errors: errors.join("; "),
        });
    }
    Ok(response)
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

//! Observes the host: the managed files on disk compared with the inventory, files in
//! the way that legerd does not own, and the state of every relevant unit.
//!
//! This is the only place the planner's input is read from the world, so the planner
//! itself can stay pure.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::{ContentHash, DesiredTree, ManagedFile, Observed, install_key};
use crate::store::InventoryEntry;
use crate::systemd::{SystemdError, UnitManager};

/// Why the host could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A managed file exists but could not be read.
    #[error("cannot read managed file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// systemd could not be asked for a unit's state.
    #[error("cannot read the state of {unit}: {source}")]
    Unit {
        /// The unit.
        unit: String,
        /// The D-Bus error (boxed: zbus errors are large and this path is rare).
        source: Box<SystemdError>,
    },
}

/// Hashes a file, `None` when it does not exist.
fn hash_file(path: &Path) -> Result<Option<ContentHash>, ObserveError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(ContentHash::of(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ObserveError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Observes the files of the inventory and of the desired tree, and the units of both.
pub async fn observe<U: UnitManager>(
    desired: &DesiredTree,
    inventory: &[InventoryEntry],
    quadlet_dir: &Path,
    units: &U,
) -> Result<Observed, ObserveError> {
    let mut observed = observe_files(desired, inventory, quadlet_dir)?;
    observe_units(desired, inventory, units, &mut observed).await?;
    Ok(observed)
}

/// The file half of [`observe`]: hashes every managed file and finds foreign ones.
/// Blocking (it reads and hashes files); the pass runs it on the blocking pool.
pub fn observe_files(
    desired: &DesiredTree,
    inventory: &[InventoryEntry],
    quadlet_dir: &Path,
) -> Result<Observed, ObserveError> {
    let mut observed = Observed::default();
    for entry in inventory {
        let on_disk = hash_file(&quadlet_dir.join(&entry.key))?;
        observed.managed.insert(
            entry.key.clone(),
            ManagedFile {
                app: entry.app.clone(),
                installed: entry.hash,
                on_disk,
                unit: entry.unit.clone(),
            },
        );
    }
    for app in desired.apps.values() {
        for rel in app.files.keys() {
            let key = install_key(&app.name, rel);
            if !observed.managed.contains_key(&key)
                && quadlet_dir.join(&key).symlink_metadata().is_ok()
            {
                observed.foreign.insert(key);
            }
        }
    }
    Ok(observed)
}

/// The unit half of [`observe`]: the state of every unit of the inventory and the tree.
pub async fn observe_units<U: UnitManager>(
    desired: &DesiredTree,
    inventory: &[InventoryEntry],
    units: &U,
    observed: &mut Observed,
) -> Result<(), ObserveError> {
    let mut unit_names: BTreeSet<&str> =
        inventory.iter().filter_map(|e| e.unit.as_deref()).collect();
    for app in desired.apps.values() {
        unit_names.extend(app.units.iter().map(|u| u.name.as_str()));
    }
    for unit in unit_names {
        let state = units
            .unit_state(unit)
            .await
            .map_err(|source| ObserveError::Unit {
                unit: unit.to_owned(),
                source: Box::new(source),
            })?;
        observed.units.insert(unit.to_owned(), state);
    }
    Ok(())
}

/// Hashes a file on disk, `None` when it does not exist (for adopting a file whose
/// inventory row was lost).
pub fn hash_on_disk(path: &Path) -> Result<Option<ContentHash>, ObserveError> {
    hash_file(path)
}

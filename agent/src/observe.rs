//! Observes the host: the managed files on disk compared with the inventory, files in
//! the way that legerd does not own, and the state of every relevant unit.
//!
//! This is the only place the planner's input is read from the world, so the planner
//! itself can stay pure.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// What tells that a file's bytes may have changed without reading them: any write
/// moves ctime (which nobody can set back by hand, unlike mtime), a rename-over changes
/// the inode, and a truncation the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    inode: u64,
    device: u64,
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileIdentity {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// A file whose ctime is this close to the moment it was hashed is hashed again next
/// time: a write in the same clock tick as the read would leave ctime unchanged (git
/// calls such index entries "racily clean").
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The content hashes of managed files with the identity they had when hashed, so an
/// observe re-reads only files that changed since the last pass: an idle 1,000-app host
/// would otherwise read and hash every quadlet on every poll.
#[derive(Debug)]
pub struct FileHashes {
    /// Path → (identity when hashed, hash).
    known: HashMap<PathBuf, (FileIdentity, ContentHash)>,
    /// Files read and hashed since this cache was made (for tests and benchmarks).
    hashed: u64,
    /// See [`RACY_WINDOW`]; tests set it to zero.
    racy_window: Duration,
}

impl Default for FileHashes {
    fn default() -> Self {
        FileHashes {
            known: HashMap::new(),
            hashed: 0,
            racy_window: RACY_WINDOW,
        }
    }
}

impl FileHashes {
    /// An empty cache with the default racy window.
    pub fn new() -> Self {
        FileHashes::default()
    }

    /// An empty cache that trusts a file's identity however recent it is (tests only:
    /// they write files and check at once).
    pub fn without_racy_window() -> Self {
        FileHashes {
            racy_window: Duration::ZERO,
            ..FileHashes::default()
        }
    }

    /// How many files were read and hashed so far.
    pub fn hashed(&self) -> u64 {
        self.hashed
    }

    /// The hash of the file at `path`, `None` when it does not exist. Reads the file
    /// only when its identity differs from when it was last hashed.
    pub fn hash(&mut self, path: &Path) -> Result<Option<ContentHash>, ObserveError> {
        let read_err = |source| ObserveError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.known.remove(path);
                return Ok(None);
            }
            Err(source) => return Err(read_err(source)),
        };
        let id = FileIdentity::of(&meta);
        if let Some((known, hash)) = self.known.get(path)
            && *known == id
        {
            return Ok(Some(*hash));
        }
        let Some(hash) = hash_file(path)? else {
            self.known.remove(path);
            return Ok(None);
        };
        self.hashed += 1;
        let ctime = UNIX_EPOCH + Duration::new(id.ctime.0.max(0) as u64, id.ctime.1 as u32);
        let settled = SystemTime::now()
            .duration_since(ctime)
            .is_ok_and(|age| age >= self.racy_window);
        if settled {
            self.known.insert(path.to_owned(), (id, hash));
        } else {
            self.known.remove(path);
        }
        Ok(Some(hash))
    }

    /// Forgets files not in `keep`, so the cache holds only what is managed now.
    fn retain(&mut self, keep: &HashSet<PathBuf>) {
        self.known.retain(|path, _| keep.contains(path));
    }
}

/// The cache of each quadlet dir, kept between passes. A process has one quadlet dir;
/// tests running side by side in one process each have their own.
static FILE_HASHES: Mutex<BTreeMap<PathBuf, FileHashes>> = Mutex::new(BTreeMap::new());

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
    let taken = FILE_HASHES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(quadlet_dir);
    let mut hashes = taken.unwrap_or_default();
    let observed = observe_files_with(desired, inventory, quadlet_dir, &mut hashes);
    FILE_HASHES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(quadlet_dir.to_owned(), hashes);
    observed
}

/// [`observe_files`] with an explicit cache of file hashes.
pub fn observe_files_with(
    desired: &DesiredTree,
    inventory: &[InventoryEntry],
    quadlet_dir: &Path,
    hashes: &mut FileHashes,
) -> Result<Observed, ObserveError> {
    let mut observed = Observed::default();
    let mut seen = HashSet::with_capacity(inventory.len());
    for entry in inventory {
        let path = quadlet_dir.join(&entry.key);
        let on_disk = hashes.hash(&path)?;
        seen.insert(path);
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
    hashes.retain(&seen);
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
    let names: Vec<String> = unit_names.into_iter().map(str::to_owned).collect();
    let states = units
        .unit_states(&names)
        .await
        .map_err(|source| ObserveError::Unit {
            unit: format!("{} managed units", names.len()),
            source: Box::new(source),
        })?;
    observed.units.extend(states);
    Ok(())
}

/// Hashes a file on disk, `None` when it does not exist (for adopting a file whose
/// inventory row was lost).
pub fn hash_on_disk(path: &Path) -> Result<Option<ContentHash>, ObserveError> {
    hash_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hashes_rehash_only_files_whose_identity_moved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.container");
        std::fs::write(&path, "[Container]\nImage=a\n").unwrap();
        let mut hashes = FileHashes::without_racy_window();
        let first = hashes.hash(&path).unwrap().unwrap();
        assert_eq!(hashes.hash(&path).unwrap(), Some(first));
        assert_eq!(hashes.hashed(), 1, "an unchanged file is not read again");

        // Same size, mtime set back by hand: ctime still moved, so it is re-read. Wait
        // for the file-timestamp clock to tick first, or both writes share one ctime
        // (the racy case the window exists for, switched off here).
        let meta = std::fs::metadata(&path).unwrap();
        let mtime = meta.modified().unwrap();
        let probe = dir.path().join("probe");
        while {
            std::fs::write(&probe, "").unwrap();
            let p = std::fs::metadata(&probe).unwrap();
            (p.ctime(), p.ctime_nsec()) == (meta.ctime(), meta.ctime_nsec())
        } {}
        std::fs::write(&path, "[Container]\nImage=b\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let second = hashes.hash(&path).unwrap().unwrap();
        assert_ne!(second, first);
        assert_eq!(second, ContentHash::of(b"[Container]\nImage=b\n"));
        assert_eq!(hashes.hashed(), 2);

        std::fs::remove_file(&path).unwrap();
        assert_eq!(hashes.hash(&path).unwrap(), None);
    }

    #[test]
    fn file_hashes_do_not_trust_a_file_changed_just_now() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.container");
        std::fs::write(&path, "x").unwrap();
        let mut hashes = FileHashes::new();
        hashes.hash(&path).unwrap();
        hashes.hash(&path).unwrap();
        assert_eq!(hashes.hashed(), 2, "a racily clean file is read every time");
    }
}

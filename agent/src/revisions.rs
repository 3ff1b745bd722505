//! legerd's own store of revisions it validated: the installable files of each, on
//! disk under `<state>/revisions/`.
//!
//! Rolling back must not depend on the source: the git server may be down, the
//! manifest host gone, the local folder already edited. So every revision that passes
//! validation is kept here, and a rollback or a pin re-reads it from here and runs it
//! through [`assemble`](crate::assemble::assemble) again, exactly as if fetched.
//!
//! Layout: each file's bytes once, under `objects/<sha256>`, and per revision a folder
//! `<digest of its name>/` with `FILES` (key → object) and `REVISION` (its name). A new
//! revision that changes one app writes that app's files and one manifest: its cost
//! (fsyncs, inodes) follows what changed, where a full copy per revision made a one-app
//! change at 1,000 apps spend most of its pass creating 2,000 files. Revisions saved
//! by older versions (`<rev>/files/…`, a full copy) are still read.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::model::Snapshot;

/// File holding the revision's real name (names may hold characters a path should not).
const NAME_FILE: &str = "REVISION";

/// Folder holding a full copy of the snapshot's files, in revisions saved before
/// [`MANIFEST_FILE`] (read, never written).
const FILES_DIR: &str = "files";

/// A revision's manifest: every file key with the object holding its bytes (JSON).
const MANIFEST_FILE: &str = "FILES";

/// Folder of the file objects, named by the SHA-256 of their bytes.
const OBJECTS_DIR: &str = "objects";

/// Saving and pruning never overlap: a save that finds an object already stored must
/// not see it pruned before its manifest names it. legerd has one store.
static STORE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

type Manifest = BTreeMap<String, String>;

/// The revision store.
#[derive(Debug, Clone)]
pub struct RevisionStore {
    dir: PathBuf,
}

impl RevisionStore {
    /// A store rooted at `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RevisionStore { dir: dir.into() }
    }

    /// The folder of one revision: a digest of its name, so any revision string is safe.
    fn path_of(&self, revision: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(revision.as_bytes()));
        self.dir.join(&digest[..32])
    }

    /// True when the revision is stored.
    pub fn contains(&self, revision: &str) -> bool {
        self.path_of(revision).join(NAME_FILE).exists()
    }

    /// Saves every file of a validated snapshot (quadlets, companions, and the
    /// `secrets/*.age` files a later pass may need). Idempotent.
    ///
    /// Durable before it returns: new objects are fsynced (and their folder once)
    /// before the manifest names them; the manifest and name are fsynced in a temporary
    /// folder, which is then renamed into place and the store's folder fsynced. A
    /// rollback after a power cut must find either the whole revision or none of it.
    pub fn save(&self, snapshot: &Snapshot) -> io::Result<()> {
        use leger_config::fs::{sync_dir, write_synced};
        let _guard = STORE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dest = self.path_of(&snapshot.revision);
        if dest.join(NAME_FILE).exists() {
            return Ok(());
        }
        let objects = self.dir.join(OBJECTS_DIR);
        if !objects.exists() {
            std::fs::create_dir_all(&objects)?;
            sync_dir(&self.dir)?;
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut manifest = Manifest::new();
        let mut wrote = false;
        for (key, content) in &snapshot.files {
            let object = hex::encode(Sha256::digest(content));
            let path = objects.join(&object);
            if !path.exists() {
                let tmp = objects.join(format!(".saving-{object}"));
                write_synced(&tmp, content)?;
                std::fs::rename(&tmp, &path)?;
                wrote = true;
            }
            manifest.insert(key.clone(), object);
        }
        if wrote {
            sync_dir(&objects)?;
        }
        let tmp = tempfile::Builder::new()
            .prefix(".saving-")
            .tempdir_in(&self.dir)?;
        let json = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
        write_synced(&tmp.path().join(MANIFEST_FILE), &json)?;
        write_synced(&tmp.path().join(NAME_FILE), snapshot.revision.as_bytes())?;
        sync_dir(tmp.path())?;
        let staged = tmp.keep();
        match std::fs::rename(&staged, &dest) {
            Ok(()) => sync_dir(&self.dir),
            // Saved meanwhile by someone else: fine, same content.
            Err(_) if dest.join(NAME_FILE).exists() => std::fs::remove_dir_all(&staged),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staged);
                Err(e)
            }
        }
    }

    /// Loads a stored revision as a snapshot, `None` when it is not stored.
    pub fn load(&self, revision: &str) -> io::Result<Option<Snapshot>> {
        let root = self.path_of(revision);
        if !root.join(NAME_FILE).exists() {
            return Ok(None);
        }
        let mut files = BTreeMap::new();
        match std::fs::read(root.join(MANIFEST_FILE)) {
            Ok(json) => {
                let manifest: Manifest = serde_json::from_slice(&json).map_err(io::Error::other)?;
                let objects = self.dir.join(OBJECTS_DIR);
                for (key, object) in manifest {
                    let bytes = std::fs::read(objects.join(&object)).map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("revision {revision}: object {object} of {key}: {e}"),
                        )
                    })?;
                    files.insert(key, bytes.into());
                }
            }
            // Saved by an older legerd: a full copy.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let files_root = root.join(FILES_DIR);
                if files_root.exists() {
                    read_dir_into(&files_root, &files_root, &mut files)?;
                }
            }
            Err(e) => return Err(e),
        }
        Ok(Some(Snapshot {
            revision: revision.to_owned(),
            files,
        }))
    }

    /// Keeps the `n` most recently saved revisions (and `always`), removing the rest
    /// and the objects no kept revision names.
    pub fn keep_newest(&self, n: usize, always: &str) -> io::Result<()> {
        let _guard = STORE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let always = self.path_of(always);
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut saved = Vec::new();
        for entry in entries {
            let entry = entry?;
            // Files here are records, not revisions ([`crate::validated::RECORD_FILE`]);
            // `objects/` holds their bytes; a `.saving-` folder is a save in progress or
            // a crashed one (it has no name file, so it sorts last and goes).
            if !entry.file_type()?.is_dir() || entry.file_name() == OBJECTS_DIR {
                continue;
            }
            let modified = entry
                .path()
                .join(NAME_FILE)
                .metadata()
                .and_then(|m| m.modified());
            saved.push((modified.ok(), entry.path()));
        }
        saved.sort_by_key(|s| std::cmp::Reverse(s.0));
        let mut kept = Vec::new();
        for (i, (_, path)) in saved.into_iter().enumerate() {
            if i < n || path == always {
                kept.push(path);
            } else {
                std::fs::remove_dir_all(&path)?;
            }
        }
        self.prune_objects(&kept)
    }

    /// Removes the objects none of `kept` names. A kept revision whose manifest cannot
    /// be read stops the pruning: better a few stale objects than a broken revision.
    fn prune_objects(&self, kept: &[PathBuf]) -> io::Result<()> {
        let objects = self.dir.join(OBJECTS_DIR);
        if !objects.exists() {
            return Ok(());
        }
        let mut named = std::collections::BTreeSet::new();
        for revision in kept {
            match std::fs::read(revision.join(MANIFEST_FILE)) {
                Ok(json) => {
                    let manifest: Manifest =
                        serde_json::from_slice(&json).map_err(io::Error::other)?;
                    named.extend(manifest.into_values());
                }
                // An older full copy names no objects.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for entry in std::fs::read_dir(&objects)? {
            let entry = entry?;
            let name = entry.file_name();
            if !named.contains(name.to_string_lossy().as_ref()) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

fn read_dir_into(root: &Path, dir: &Path, out: &mut BTreeMap<String, Arc<[u8]>>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            read_dir_into(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).map_err(io::Error::other)?;
            let key = rel.to_string_lossy().into_owned();
            out.insert(key, std::fs::read(&path)?.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(rev: &str, text: &str) -> Snapshot {
        let mut files: BTreeMap<String, Arc<[u8]>> = BTreeMap::new();
        files.insert("web/web.container".to_owned(), text.as_bytes().into());
        files.insert("web/conf/app.env".to_owned(), b"A=1".as_slice().into());
        files.insert("secrets/db.age".to_owned(), b"age".as_slice().into());
        Snapshot {
            revision: rev.into(),
            files,
        }
    }

    #[test]
    fn revisions_save_load_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let store = RevisionStore::new(t.path().join("revisions"));
        let rev = "v3@sha256:abc/def";
        assert!(store.load(rev).unwrap().is_none());
        store.save(&tree(rev, "[Container]\nImage=x\n")).unwrap();
        store.save(&tree(rev, "ignored: already stored")).unwrap();
        assert!(store.contains(rev));
        let snap = store.load(rev).unwrap().unwrap();
        assert_eq!(snap.revision, rev);
        assert_eq!(
            snap.files.keys().collect::<Vec<_>>(),
            ["secrets/db.age", "web/conf/app.env", "web/web.container"]
        );
        assert_eq!(&*snap.files["web/web.container"], b"[Container]\nImage=x\n");
    }

    fn objects(store: &RevisionStore) -> usize {
        std::fs::read_dir(store.dir.join(OBJECTS_DIR))
            .unwrap()
            .count()
    }

    /// A revision that changes one file stores one new object; the others are the
    /// previous revision's, and both load whole.
    #[test]
    fn revisions_store_only_what_changed() {
        let t = tempfile::tempdir().unwrap();
        let store = RevisionStore::new(t.path().join("revisions"));
        store.save(&tree("a", "[Container]\nImage=x\n")).unwrap();
        assert_eq!(objects(&store), 3);
        store.save(&tree("b", "[Container]\nImage=y\n")).unwrap();
        assert_eq!(objects(&store), 4, "only the changed file is a new object");
        let a = store.load("a").unwrap().unwrap();
        let b = store.load("b").unwrap().unwrap();
        assert_eq!(&*a.files["web/web.container"], b"[Container]\nImage=x\n");
        assert_eq!(&*b.files["web/web.container"], b"[Container]\nImage=y\n");
        assert_eq!(a.files["web/conf/app.env"], b.files["web/conf/app.env"]);
    }

    /// Pruning a revision removes the objects only it named, and keeps the ones a kept
    /// revision shares.
    #[test]
    fn revisions_pruning_keeps_shared_objects() {
        let t = tempfile::tempdir().unwrap();
        let store = RevisionStore::new(t.path().join("revisions"));
        store.save(&tree("a", "one")).unwrap();
        store.save(&tree("b", "two")).unwrap();
        store.keep_newest(0, "b").unwrap();
        assert!(!store.contains("a"));
        assert_eq!(
            objects(&store),
            3,
            "a's own object went, the shared ones stayed"
        );
        let b = store.load("b").unwrap().unwrap();
        assert_eq!(b.files.len(), 3);
        assert_eq!(&*b.files["web/web.container"], b"two");
    }

    /// A revision an older legerd saved as a full copy still loads, and pruning
    /// beside it works.
    #[test]
    fn revisions_saved_as_full_copies_still_load() {
        let t = tempfile::tempdir().unwrap();
        let store = RevisionStore::new(t.path().join("revisions"));
        let old = store.path_of("old");
        std::fs::create_dir_all(old.join(FILES_DIR).join("web")).unwrap();
        std::fs::write(
            old.join(FILES_DIR).join("web/web.container"),
            b"[Container]\n",
        )
        .unwrap();
        std::fs::write(old.join(NAME_FILE), b"old").unwrap();
        store.save(&tree("new", "x")).unwrap();
        store.keep_newest(5, "new").unwrap();
        let snap = store.load("old").unwrap().unwrap();
        assert_eq!(snap.files.keys().collect::<Vec<_>>(), ["web/web.container"]);
        assert_eq!(store.load("new").unwrap().unwrap().files.len(), 3);
    }

    #[test]
    fn revisions_keep_newest_removes_older_ones() {
        let t = tempfile::tempdir().unwrap();
        let store = RevisionStore::new(t.path());
        for rev in ["a", "b", "c"] {
            store.save(&tree(rev, rev)).unwrap();
            // Distinct modification times, without sleeping: set them explicitly.
            let when = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(1_000 + u64::from(rev.as_bytes()[0]));
            let f = std::fs::File::options()
                .write(true)
                .open(store.path_of(rev).join(NAME_FILE))
                .unwrap();
            f.set_modified(when).unwrap();
        }
        // The validation record sits beside the revisions; it is not one.
        let record = t.path().join(crate::validated::RECORD_FILE);
        std::fs::write(&record, b"{}").unwrap();
        store.keep_newest(1, "a").unwrap();
        assert!(store.contains("a"), "always kept");
        assert!(!store.contains("b"));
        assert!(store.contains("c"), "newest kept");
        assert!(record.exists(), "the record is left alone");
    }
}

//! legerd's own store of revisions it validated: the installable files of each, on
//! disk under `<state>/revisions/<rev>/`.
//!
//! Rolling back must not depend on the source: the git server may be down, the
//! manifest host gone, the local folder already edited. So every revision that passes
//! validation is kept here, and a rollback or a pin re-reads it from here and runs it
//! through [`assemble`](crate::assemble::assemble) again, exactly as if fetched.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::model::Snapshot;

/// File holding the revision's real name (names may hold characters a path should not).
const NAME_FILE: &str = "REVISION";

/// Folder holding the snapshot's files, apart from [`NAME_FILE`].
const FILES_DIR: &str = "files";

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
    /// Durable before it returns: every file and folder is fsynced in a temporary
    /// folder, which is then renamed into place and the store's folder fsynced. A
    /// rollback after a power cut must find either the whole revision or none of it.
    pub fn save(&self, snapshot: &Snapshot) -> io::Result<()> {
        use leger_config::fs::{sync_dir, write_synced};
        let dest = self.path_of(&snapshot.revision);
        if dest.join(NAME_FILE).exists() {
            return Ok(());
        }
        if !self.dir.exists() {
            std::fs::create_dir_all(&self.dir)?;
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent)?;
            }
        }
        let tmp = tempfile::Builder::new()
            .prefix(".saving-")
            .tempdir_in(&self.dir)?;
        let mut dirs = std::collections::BTreeSet::new();
        for (key, content) in &snapshot.files {
            let path = tmp.path().join(FILES_DIR).join(key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
                // Every folder between the file and the temporary root holds a new name.
                let mut d = parent;
                while d != tmp.path() && dirs.insert(d.to_owned()) {
                    d = d.parent().unwrap_or(tmp.path());
                }
            }
            write_synced(&path, content)?;
        }
        write_synced(&tmp.path().join(NAME_FILE), snapshot.revision.as_bytes())?;
        // Deepest first, so a folder is synced after the names inside it.
        for d in dirs.iter().rev() {
            sync_dir(d)?;
        }
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
        let files_root = root.join(FILES_DIR);
        if files_root.exists() {
            read_dir_into(&files_root, &files_root, &mut files)?;
        }
        Ok(Some(Snapshot {
            revision: revision.to_owned(),
            files,
        }))
    }

    /// Keeps the `n` most recently saved revisions (and `always`), removing the rest.
    pub fn keep_newest(&self, n: usize, always: &str) -> io::Result<()> {
        let always = self.path_of(always);
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut saved = Vec::new();
        for entry in entries {
            let entry = entry?;
            // Files here are records, not revisions ([`crate::validated::RECORD_FILE`]).
            if !entry.file_type()?.is_dir() {
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
        for (_, path) in saved.into_iter().skip(n) {
            if path != always {
                std::fs::remove_dir_all(&path)?;
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

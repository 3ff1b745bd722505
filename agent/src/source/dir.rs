//! A local folder as the source of desired state: what an operator edits by hand or
//! what another tool (rsync, a config-management run) drops on the host.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use leger_api_types::desired::DirSourceSpec;
use leger_config::Limits;
use leger_config::fs::TEMP_PREFIX;
use sha2::{Digest, Sha256};

use super::SourceError;
use super::tree::{TreeBuilder, checked_path};
use crate::model::Snapshot;

/// Reads a folder into a [`Snapshot`].
///
/// Hidden names (starting with `.`) are skipped, which also covers editor swap files,
/// `.git` and leger's own temporary files ([`TEMP_PREFIX`]). Symlinks are not followed
/// on the host: their targets are resolved against the folder's own files by the
/// shared tree rules, so a link can never pull in `/etc/shadow`.
#[derive(Debug, Clone)]
pub struct DirSource {
    /// The folder and nothing else: a dir source has no options.
    spec: DirSourceSpec,
    /// Size and count limits from the agent's config.
    limits: Limits,
}

impl DirSource {
    /// A source reading `spec.path`.
    pub fn new(spec: DirSourceSpec, limits: Limits) -> Self {
        DirSource { spec, limits }
    }

    /// The folder this source reads, for the watcher.
    pub fn path(&self) -> &Path {
        &self.spec.path
    }

    /// Reads the whole folder. The revision is `sha256:<hex>` of the sorted paths and
    /// contents, so it changes exactly when a file that counts changes.
    pub fn fetch(&self) -> Result<Snapshot, SourceError> {
        let root = &self.spec.path;
        match fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SourceError::Io {
                    what: "source folder is not a folder:",
                    path: root.clone(),
                    source: io::Error::from(io::ErrorKind::NotADirectory),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SourceError::DirNotFound { path: root.clone() });
            }
            Err(source) => {
                return Err(SourceError::Io {
                    what: "reading source folder",
                    path: root.clone(),
                    source,
                });
            }
        }
        let mut tree = TreeBuilder::new(self.limits.clone());
        walk(root, "", &mut tree)?;
        let files = tree.finish()?;
        Ok(Snapshot {
            revision: revision_of(&files),
            files,
        })
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SourceError + 'a {
    move |source| SourceError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Walks `dir` without following symlinks; `prefix` is its path relative to the root.
fn walk(dir: &Path, prefix: &str, tree: &mut TreeBuilder) -> Result<(), SourceError> {
    let mut entries = fs::read_dir(dir)
        .map_err(io_err("reading folder", dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err("reading folder", dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name_bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
        if name_bytes.starts_with(b".") || name_bytes.starts_with(TEMP_PREFIX.as_bytes()) {
            continue;
        }
        let mut raw = prefix.as_bytes().to_vec();
        if !raw.is_empty() {
            raw.push(b'/');
        }
        raw.extend_from_slice(name_bytes);
        let rel = checked_path(&raw)?;
        let path: PathBuf = entry.path();
        let kind = entry.file_type().map_err(io_err("reading", &path))?;
        if kind.is_dir() {
            walk(&path, &rel, tree)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err("reading symlink", &path))?;
            tree.add_symlink(
                rel,
                std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()),
            )?;
        } else if kind.is_file() {
            let size = entry.metadata().map_err(io_err("reading", &path))?.len();
            tree.check_size(&rel, size)?;
            let content = fs::read(&path).map_err(io_err("reading", &path))?;
            tree.add_file(rel, content)?;
        }
        // Sockets, fifos and devices are not content; skip them.
    }
    Ok(())
}

/// A digest over (path, content) pairs in path order. Lengths are written before
/// each field so that moving bytes between a name and a content changes the digest.
fn revision_of(files: &BTreeMap<String, Arc<[u8]>>) -> String {
    let mut h = Sha256::new();
    for (path, content) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((content.len() as u64).to_le_bytes());
        h.update(content);
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_separates_names_from_contents() {
        let a: BTreeMap<String, Arc<[u8]>> = [("ab".to_owned(), Arc::from(&b"c"[..]))].into();
        let b: BTreeMap<String, Arc<[u8]>> = [("a".to_owned(), Arc::from(&b"bc"[..]))].into();
        assert_ne!(revision_of(&a), revision_of(&b));
        assert!(revision_of(&a).starts_with("sha256:"));
    }
}

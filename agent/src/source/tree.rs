//! The rules every source applies to the files it reads, in one place so a git tree and
//! a local folder refuse exactly the same content.
//!
//! A source feeds raw entries (regular files and symlinks, by path relative to the
//! snapshot root) into a [`TreeBuilder`]; [`TreeBuilder::finish`] resolves symlinks
//! *lexically* against the other entries, never against the host's filesystem, so a
//! link can only ever yield bytes that are themselves part of the tree.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use leger_config::Limits;

use super::SourceError;

/// How many symlinks one lookup may pass through, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: usize = 40;

/// Why one path of a tree was refused. Kept apart from the message so tests and the
/// controller can tell the cases apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeProblem {
    /// A symlink whose target is absolute or climbs above the tree root.
    SymlinkEscapes {
        /// The link target as written.
        target: String,
    },
    /// A symlink whose target is not a file of the tree.
    SymlinkDangling {
        /// The link target as written.
        target: String,
    },
    /// A symlink that points at a folder; only files can be linked.
    SymlinkToFolder {
        /// The link target as written.
        target: String,
    },
    /// A chain of symlinks longer than the kernel would follow (or a loop).
    SymlinkLoop,
    /// A file larger than `limits.max_file_size`.
    TooLarge {
        /// The file's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// More files than `limits.max_files`.
    TooManyFiles {
        /// The limit.
        limit: usize,
    },
    /// A path component that is `..`, `.` or empty.
    DotDotName,
    /// A file name that is not valid UTF-8.
    NonUtf8Name,
    /// The configured sub-folder does not exist (or is a file) at this revision.
    FolderNotFound,
}

impl fmt::Display for TreeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeProblem::SymlinkEscapes { target } => write!(
                f,
                "symlink to {target:?} leads out of the tree; link only to files inside it"
            ),
            TreeProblem::SymlinkDangling { target } => write!(
                f,
                "symlink to {target:?} points at nothing in the tree (hidden files do not count)"
            ),
            TreeProblem::SymlinkToFolder { target } => write!(
                f,
                "symlink to {target:?} points at a folder; only links to files are supported"
            ),
            TreeProblem::SymlinkLoop => {
                write!(
                    f,
                    "more than {MAX_SYMLINK_HOPS} symlinks in a row, probably a loop"
                )
            }
            TreeProblem::TooLarge { size, limit } => write!(
                f,
                "file is {size} bytes, over the limit of {limit} bytes (limits.max_file_size)"
            ),
            TreeProblem::TooManyFiles { limit } => write!(
                f,
                "more than {limit} files (limits.max_files); point the source at a smaller folder or raise the limit"
            ),
            TreeProblem::DotDotName => write!(f, "a path component is '..', '.' or empty"),
            TreeProblem::NonUtf8Name => write!(f, "file name is not valid UTF-8"),
            TreeProblem::FolderNotFound => write!(f, "folder does not exist at this revision"),
        }
    }
}

/// A raw entry before symlink resolution.
#[derive(Debug)]
enum RawEntry {
    File(Arc<[u8]>),
    Symlink(String),
}

/// Collects one tree's entries, checking names, sizes and counts as they come in.
#[derive(Debug)]
pub(crate) struct TreeBuilder {
    limits: Limits,
    entries: BTreeMap<String, RawEntry>,
}

/// Turns raw path bytes into a checked, `/`-separated relative path.
pub(crate) fn checked_path(raw: &[u8]) -> Result<String, SourceError> {
    let path = std::str::from_utf8(raw).map_err(|_| SourceError::InvalidTree {
        path: String::from_utf8_lossy(raw).into_owned(),
        problem: TreeProblem::NonUtf8Name,
    })?;
    if path.is_empty()
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(SourceError::InvalidTree {
            path: path.to_owned(),
            problem: TreeProblem::DotDotName,
        });
    }
    Ok(path.to_owned())
}

impl TreeBuilder {
    /// An empty tree bound by `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        TreeBuilder {
            limits,
            entries: BTreeMap::new(),
        }
    }

    /// Refuses a file of `size` bytes before its bytes are read, so a huge blob or
    /// file never reaches memory.
    pub(crate) fn check_size(&self, path: &str, size: u64) -> Result<(), SourceError> {
        if size > self.limits.max_file_size {
            return Err(SourceError::InvalidTree {
                path: path.to_owned(),
                problem: TreeProblem::TooLarge {
                    size,
                    limit: self.limits.max_file_size,
                },
            });
        }
        Ok(())
    }

    fn check_count(&self, path: &str) -> Result<(), SourceError> {
        if self.entries.len() >= self.limits.max_files {
            return Err(SourceError::InvalidTree {
                path: path.to_owned(),
                problem: TreeProblem::TooManyFiles {
                    limit: self.limits.max_files,
                },
            });
        }
        Ok(())
    }

    /// Adds a regular file; `path` must come from [`checked_path`].
    pub(crate) fn add_file(&mut self, path: String, content: Vec<u8>) -> Result<(), SourceError> {
        self.add_shared_file(path, content.into())
    }

    /// [`add_file`](Self::add_file) for bytes already shared, e.g. a git blob the last
    /// snapshot held.
    pub(crate) fn add_shared_file(
        &mut self,
        path: String,
        content: Arc<[u8]>,
    ) -> Result<(), SourceError> {
        self.check_size(&path, content.len() as u64)?;
        self.check_count(&path)?;
        self.entries.insert(path, RawEntry::File(content));
        Ok(())
    }

    /// Adds a symlink with its raw target; `path` must come from [`checked_path`].
    pub(crate) fn add_symlink(&mut self, path: String, target: &[u8]) -> Result<(), SourceError> {
        let target = std::str::from_utf8(target).map_err(|_| SourceError::InvalidTree {
            path: path.clone(),
            problem: TreeProblem::NonUtf8Name,
        })?;
        self.check_count(&path)?;
        self.entries
            .insert(path, RawEntry::Symlink(target.to_owned()));
        Ok(())
    }

    /// Resolves every symlink to the content of the file it names and returns the
    /// snapshot's file map.
    pub(crate) fn finish(self) -> Result<BTreeMap<String, Arc<[u8]>>, SourceError> {
        let mut files = BTreeMap::new();
        for (path, entry) in &self.entries {
            let content = match entry {
                RawEntry::File(bytes) => bytes.clone(),
                RawEntry::Symlink(target) => {
                    self.resolve(path, target)
                        .map_err(|problem| SourceError::InvalidTree {
                            path: path.clone(),
                            problem,
                        })?
                }
            };
            files.insert(path.clone(), content);
        }
        Ok(files)
    }

    /// Follows the link at `link` the way the kernel would, component by component,
    /// but against this tree only: `..` may not climb above the root and an absolute
    /// target is out of the tree by definition.
    fn resolve(&self, link: &str, target: &str) -> Result<Arc<[u8]>, TreeProblem> {
        let escapes = || TreeProblem::SymlinkEscapes {
            target: target.to_owned(),
        };
        if target.starts_with('/') {
            return Err(escapes());
        }
        // The directory holding the link is where a relative target starts.
        let mut resolved: Vec<&str> = link.split('/').collect();
        resolved.pop();
        let mut pending: Vec<&str> = target.split('/').rev().collect();
        let mut hops = 1;
        while let Some(component) = pending.pop() {
            match component {
                "" | "." => {}
                ".." => {
                    resolved.pop().ok_or_else(escapes)?;
                }
                name => {
                    resolved.push(name);
                    let so_far = resolved.join("/");
                    if let Some(RawEntry::Symlink(next)) = self.entries.get(&so_far) {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(TreeProblem::SymlinkLoop);
                        }
                        if next.starts_with('/') {
                            return Err(escapes());
                        }
                        resolved.pop();
                        pending.extend(next.split('/').rev());
                    }
                }
            }
        }
        let full = resolved.join("/");
        match self.entries.get(&full) {
            Some(RawEntry::File(bytes)) => Ok(bytes.clone()),
            Some(RawEntry::Symlink(_)) => unreachable!("symlinks are expanded while walking"),
            None => {
                let prefix = format!("{full}/");
                if full.is_empty() || self.entries.keys().any(|k| k.starts_with(&prefix)) {
                    Err(TreeProblem::SymlinkToFolder {
                        target: target.to_owned(),
                    })
                } else {
                    Err(TreeProblem::SymlinkDangling {
                        target: target.to_owned(),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_file_size: 100,
            max_files: 10,
        }
    }

    fn problem(r: Result<BTreeMap<String, Arc<[u8]>>, SourceError>) -> TreeProblem {
        match r {
            Err(SourceError::InvalidTree { problem, .. }) => problem,
            other => panic!("expected an invalid tree, got {other:?}"),
        }
    }

    #[test]
    fn symlink_inside_resolves_to_target_content() {
        let mut t = TreeBuilder::new(limits());
        t.add_file("app/real.env".into(), b"A=1".to_vec()).unwrap();
        t.add_symlink("app/link.env".into(), b"real.env").unwrap();
        t.add_symlink("other/up.env".into(), b"../app/./link.env")
            .unwrap();
        let files = t.finish().unwrap();
        assert_eq!(&*files["app/link.env"], b"A=1");
        assert_eq!(&*files["other/up.env"], b"A=1");
        assert_eq!(files.len(), 3);
    }

    #[test]
    fn symlink_through_a_folder_link_resolves() {
        let mut t = TreeBuilder::new(limits());
        t.add_file("app/real.env".into(), b"A=1".to_vec()).unwrap();
        t.add_symlink("dirlink".into(), b"app").unwrap();
        assert_eq!(&*t.resolve("x", "dirlink/real.env").unwrap(), b"A=1");
        assert_eq!(
            t.resolve("x", "dirlink/../../etc"),
            Err(TreeProblem::SymlinkEscapes {
                target: "dirlink/../../etc".into()
            })
        );
    }

    #[test]
    fn symlink_escapes_are_refused() {
        for target in ["../x", "/etc/passwd", "a/../../x"] {
            let mut t = TreeBuilder::new(limits());
            t.add_symlink("l".into(), target.as_bytes()).unwrap();
            assert_eq!(
                problem(t.finish()),
                TreeProblem::SymlinkEscapes {
                    target: target.into()
                },
                "{target}"
            );
        }
    }

    #[test]
    fn symlink_loops_dangling_and_folders_are_refused() {
        let mut t = TreeBuilder::new(limits());
        t.add_symlink("a".into(), b"b").unwrap();
        t.add_symlink("b".into(), b"a").unwrap();
        assert_eq!(problem(t.finish()), TreeProblem::SymlinkLoop);

        let mut t = TreeBuilder::new(limits());
        t.add_symlink("a".into(), b"missing").unwrap();
        assert!(matches!(
            problem(t.finish()),
            TreeProblem::SymlinkDangling { .. }
        ));

        let mut t = TreeBuilder::new(limits());
        t.add_file("d/f".into(), b"x".to_vec()).unwrap();
        t.add_symlink("a".into(), b"d").unwrap();
        assert!(matches!(
            problem(t.finish()),
            TreeProblem::SymlinkToFolder { .. }
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let mut t = TreeBuilder::new(limits());
        let e = t.add_file("big".into(), vec![0; 101]).unwrap_err();
        assert!(e.to_string().contains("over the limit of 100 bytes"), "{e}");
        for i in 0..10 {
            t.add_file(format!("f{i}"), vec![]).unwrap();
        }
        let e = t.add_file("f10".into(), vec![]).unwrap_err();
        assert!(e.to_string().contains("more than 10 files"), "{e}");
    }

    #[test]
    fn checked_path_refuses_dots_and_non_utf8() {
        assert_eq!(checked_path(b"a/b.container").unwrap(), "a/b.container");
        for bad in [&b"a/../b"[..], b"..", b"./a", b"a//b", b""] {
            assert!(checked_path(bad).is_err(), "{bad:?}");
        }
        let e = checked_path(b"a/\xff").unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
    }
}

//! Filesystem watches (inotify through `notify`) that turn changes into triggers.
//!
//! Only changes count: access events are dropped, because legerd reads the very files
//! it watches (hashing managed files while observing) and reacting to its own reads
//! would loop forever.

use std::path::{Path, PathBuf};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use crate::schedule::Trigger;

/// Watches `path` and sends `trigger` for each change to a path `filter` accepts.
///
/// The returned watcher stops when dropped.
pub fn watch(
    path: &Path,
    recursive: bool,
    filter: impl Fn(&Path) -> bool + Send + 'static,
    tx: UnboundedSender<Trigger>,
    trigger: Trigger,
) -> notify::Result<RecommendedWatcher> {
    watch_paths(path, recursive, filter, tx, move |_| trigger.clone())
}

/// [`watch`], sending the trigger `make` builds from the changed paths `filter`
/// accepts (the quadlet dir's trigger names them, so legerd's own writes can be told
/// apart: [`crate::echo`]).
pub fn watch_paths(
    path: &Path,
    recursive: bool,
    filter: impl Fn(&Path) -> bool + Send + 'static,
    tx: UnboundedSender<Trigger>,
    make: impl Fn(Vec<PathBuf>) -> Trigger + Send + 'static,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let paths: Vec<PathBuf> = event.paths.into_iter().filter(|p| filter(p)).collect();
        if !paths.is_empty() {
            let _ = tx.send(make(paths));
        }
    })?;
    let mode = if recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    watcher.watch(path, mode)?;
    Ok(watcher)
}

/// Watches desired.toml through its directory, since an atomic write replaces the file
/// (a rename) and a watch on the old inode would never fire again.
pub fn watch_desired_file(
    file: &Path,
    tx: UnboundedSender<Trigger>,
) -> notify::Result<RecommendedWatcher> {
    let dir = file.parent().unwrap_or(Path::new("/")).to_owned();
    let target: PathBuf = file.to_owned();
    watch(
        &dir,
        false,
        move |p| p == target,
        tx,
        Trigger::DesiredChanged,
    )
}

/// True for legerd's own temporary files, whose churn is not drift.
pub fn is_temp_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(leger_config::fs::TEMP_PREFIX))
}

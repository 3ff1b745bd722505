//! Atomic file replacement, shared by legerd (quadlets) and legerctl (desired.toml).
//!
//! A reader must only ever see the old bytes or the new bytes: systemd's generator, the
//! inotify watcher on desired.toml and a crash in the middle all depend on it. So the
//! bytes go to a temporary file in the same directory, are fsynced, renamed over the
//! target, and the directory is fsynced so the rename survives a power cut.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Prefix of temporary files, so a scan of a directory can recognise and skip them
/// (and clean up leftovers from a crash).
pub const TEMP_PREFIX: &str = ".leger-tmp-";

/// Suffix of temporary files. It matters: a temporary `web.container` named
/// `….container` would be picked up by podman's generator if a daemon-reload ran while
/// it existed (or after a crash left it behind).
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically with the given permission bits.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, bytes, mode, || {})
}

/// [`write_atomic`], calling `before_rename` once the temporary file is complete and
/// synced but not yet in place: crash tests stop the process exactly there.
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    before_rename: impl FnOnce(),
) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?
        .to_string_lossy();
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{name}{TEMP_SUFFIX}",
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // Exactly `mode`, whatever the umask: legerd runs with UMask=0077, and a companion
        // file a container mounts must stay readable by the container's user.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        before_rename();
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Flushes a directory's entries to disk, so a file created or renamed in it survives
/// a power cut (fsync of the file alone does not persist its name).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to a new file at `path` and fsyncs it (not atomic: for files inside a
/// folder that is itself renamed into place once complete).
pub fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Removes temporary files a crashed writer left under `dir` (recursively). Returns
/// how many were removed.
pub fn remove_stale_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() {
            removed += remove_stale_temp_files(&entry.path())?;
        } else if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_sets_the_mode_past_the_umask() {
        // 0o666 survives only when the mode is set explicitly: any umask (022 here,
        // 0077 under legerd's unit) would clear the group and other write bits.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("shared.conf");
        write_atomic(&p, b"x", 0o666).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o666
        );
    }

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("desired.toml");
        write_atomic(&p, b"one", 0o640).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .filter_map(Result::ok)
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file may remain");
    }

    #[test]
    fn stale_temp_files_are_removed_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("web")).unwrap();
        let stale = t
            .path()
            .join("web")
            .join(format!("{TEMP_PREFIX}42-web.container{TEMP_SUFFIX}"));
        fs::write(&stale, b"partial").unwrap();
        fs::write(t.path().join("web/web.container"), b"whole").unwrap();
        assert_eq!(remove_stale_temp_files(t.path()).unwrap(), 1);
        assert!(!stale.exists());
        assert!(t.path().join("web/web.container").exists());
    }

    #[test]
    fn temp_file_never_has_a_quadlet_extension() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("web.container");
        write_atomic_with(&p, b"x", 0o644, || {
            let names: Vec<String> = fs::read_dir(t.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), 1);
            assert!(names[0].ends_with(TEMP_SUFFIX), "{names:?}");
        })
        .unwrap();
    }

    #[test]
    fn write_atomic_into_missing_dir_fails_cleanly() {
        let t = tempfile::tempdir().unwrap();
        assert!(write_atomic(&t.path().join("nope/x"), b"x", 0o600).is_err());
    }
}

//! Atomic file replacement, shared by legerd (quadlets) and legerctl (desired.toml).
//!
//! A reader must only ever see the old bytes or the new bytes: systemd's generator, the
//! inotify watcher on desired.toml and a crash in the middle all depend on it. So the
//! bytes go to a temporary file in the same directory, are fsynced, renamed over the
//! target, and the directory is fsynced so the rename survives a power cut.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Prefix of temporary files, so a scan of a directory can recognise and skip them
/// (and clean up leftovers from a crash).
pub const TEMP_PREFIX: &str = ".leger-tmp-";

/// Writes `bytes` to `path` atomically with the given permission bits.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?
        .to_string_lossy();
    let tmp = dir.join(format!("{TEMP_PREFIX}{}-{name}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
    fn write_atomic_into_missing_dir_fails_cleanly() {
        let t = tempfile::tempdir().unwrap();
        assert!(write_atomic(&t.path().join("nope/x"), b"x", 0o600).is_err());
    }
}

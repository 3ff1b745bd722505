//! The size a volume's export will have, measured on disk before the export runs.
//!
//! The budget is checked before anything is written or stopped. A volume that was
//! exported before is estimated at its last archive's size; one never exported has no
//! such size, and estimating it at 0 let its first export run (with the app stopped for
//! it) only to be refused afterwards. So each volume is measured where podman keeps its
//! data (`podman volume inspect` gives the mountpoint): the tar archive `podman volume
//! export` writes is a 512-byte header per entry plus each file's bytes rounded up to
//! 512, and two zero blocks at the end.

use std::io;
use std::path::Path;

/// A tar block.
const BLOCK: u64 = 512;

/// The size of a tar archive of everything under `dir` (not following symlinks), as
/// podman writes it. Long names (an extra header each) are not counted: the estimate is
/// for a budget, and the archive is measured again right after the export.
pub fn archive_estimate(dir: &Path) -> io::Result<u64> {
    let mut total = 2 * BLOCK;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            total += BLOCK;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len().div_ceil(BLOCK) * BLOCK;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_estimate_counts_headers_and_padded_file_bodies() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(archive_estimate(t.path()).unwrap(), 1024, "an empty volume");
        std::fs::write(t.path().join("a"), vec![1u8; 1000]).unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        std::fs::write(t.path().join("sub/b"), vec![2u8; 512]).unwrap();
        std::os::unix::fs::symlink("/usr", t.path().join("link")).unwrap();
        // a: 512 + 1024; sub: 512; sub/b: 512 + 512; link: 512 (not followed); end 1024.
        assert_eq!(archive_estimate(t.path()).unwrap(), 4608);
        assert!(archive_estimate(&t.path().join("missing")).is_err());
    }
}

//! The backup budget: `[backups] max_bytes` (all backups together) and `min_free` (free
//! space left on the state filesystem), checked before a backup is written and again
//! after each volume export, when its real size is known.
//!
//! When a backup would break the budget, complete backups of *other* revisions go
//! first, oldest first; a backup of the revision being saved now is never evicted for
//! itself. If it still does not fit, the backup fails: the apply is refused with
//! `BackupFailed`, unless the app's `leger.toml` says `backup_failure = "warn"`.

use std::path::Path;
use std::time::SystemTime;

use leger_config::BackupSettings;

/// What the budget sees now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes all backups take, including the one being written.
    pub used: u64,
    /// Free bytes on the state filesystem for an unprivileged writer.
    pub free: u64,
}

/// `Ok` when `needed` more bytes fit; otherwise which limit they break.
pub fn fits(settings: &BackupSettings, usage: Usage, needed: u64) -> Result<(), String> {
    if let Some(max) = settings.max_bytes
        && usage.used.saturating_add(needed) > max
    {
        return Err(format!(
            "backups would take {} bytes, over [backups] max_bytes = {max}",
            usage.used.saturating_add(needed)
        ));
    }
    if let Some(min) = settings.min_free
        && usage.free.saturating_sub(needed) < min
    {
        return Err(format!(
            "{} bytes would be left free on the state filesystem, under [backups] min_free = {min}",
            usage.free.saturating_sub(needed)
        ));
    }
    Ok(())
}

/// A complete backup that could be evicted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The backup id.
    pub id: String,
    /// The app.
    pub app: String,
    /// The revision it saved.
    pub revision: String,
    /// When it was taken.
    pub created: SystemTime,
}

/// The next backup to evict: the oldest of another revision than `saving`, never one
/// in `protected` (the backups this pass has written).
pub fn next_eviction<'a>(
    candidates: &'a [Candidate],
    saving: &str,
    protected: &[(String, String)],
) -> Option<&'a Candidate> {
    candidates
        .iter()
        .filter(|c| c.revision != saving)
        .filter(|c| {
            !protected
                .iter()
                .any(|(id, app)| *id == c.id && *app == c.app)
        })
        .min_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)))
}

/// Free bytes for an unprivileged writer on the filesystem holding `path` (or its
/// nearest existing parent).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    let s = rustix::fs::statvfs(p)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(max: Option<u64>, min_free: Option<u64>) -> BackupSettings {
        BackupSettings {
            keep: 10,
            max_age: Duration::from_secs(3600),
            max_bytes: max,
            min_free,
        }
    }

    #[test]
    fn budget_fits_checks_both_limits() {
        let u = Usage {
            used: 700,
            free: 10_000,
        };
        assert!(fits(&settings(Some(1000), None), u, 300).is_ok());
        let e = fits(&settings(Some(1000), None), u, 301).unwrap_err();
        assert!(e.contains("max_bytes = 1000"), "{e}");
        assert!(fits(&settings(None, Some(9_000)), u, 1000).is_ok());
        let e = fits(&settings(None, Some(9_000)), u, 1001).unwrap_err();
        assert!(e.contains("min_free = 9000"), "{e}");
        assert!(fits(&settings(None, None), u, u64::MAX).is_ok());
    }

    #[test]
    fn budget_evicts_the_oldest_of_other_revisions_first() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let c = |id: &str, app: &str, rev: &str, t| Candidate {
            id: id.into(),
            app: app.into(),
            revision: rev.into(),
            created: at(t),
        };
        let list = vec![
            c("a", "web", "r1", 10),
            c("b", "db", "r2", 5),
            c("c", "web", "r3", 1),
            c("d", "web", "r2", 20),
        ];
        assert_eq!(next_eviction(&list, "r2", &[]).unwrap().id, "c");
        assert_eq!(next_eviction(&list, "r3", &[]).unwrap().id, "b");
        let protected = [("c".to_owned(), "web".to_owned())];
        assert_eq!(next_eviction(&list, "r2", &protected).unwrap().id, "a");
        assert!(next_eviction(&list[3..], "r2", &[]).is_none());
    }

    #[test]
    fn free_bytes_walks_up_to_an_existing_folder() {
        let t = tempfile::tempdir().unwrap();
        assert!(free_bytes(&t.path().join("not/yet")).unwrap() > 0);
    }
}

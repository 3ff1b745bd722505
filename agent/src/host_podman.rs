//! The podman installed on the host: its version, read at start and again whenever the
//! podman binary changes, and the quadlets it already has outside leger's tree.
//!
//! Why: each podman release accepts other quadlet keys, so legerd validates a
//! revision against its host's podman ([`KeyTable`]). When `podman --version` cannot
//! be read, legerd does not guess: it checks keys against the newest release it knows
//! and leaves the final word to the generator's dry run, and says so in status.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::command::{CommandLine, Runner};

use crate::model::QuadletKind;
use crate::quadlet::{Basis, Installed, KeyTable, PodmanVersion, Target};

/// What `podman --version` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// A version legerd has tables for.
    Version(KeyTable),
    /// No usable version: the newest tables are used and the generator decides.
    Fallback {
        /// Why, for status: the unparseable output, a missing binary, a podman older
        /// than quadlet.
        reason: String,
    },
}

/// Identity of the podman binary, to notice an upgrade without rerunning podman on
/// every pass.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// The host's podman as legerd last saw it.
#[derive(Debug)]
pub struct HostPodman {
    /// The program to run: `podman` (looked up on `PATH`) or a path.
    program: PathBuf,
    stamp: Option<Stamp>,
    detection: Detection,
}

impl HostPodman {
    /// Detects the version of `program` now.
    pub fn detect(program: impl Into<PathBuf>) -> Self {
        let program = program.into();
        let stamp = stamp_of(&program);
        let detection = run_version(&program);
        HostPodman {
            program,
            stamp,
            detection,
        }
    }

    /// Detects again when the binary changed (an upgrade, an install, a removal).
    /// Returns whether the detection changed.
    pub fn refresh(&mut self) -> bool {
        let stamp = stamp_of(&self.program);
        if stamp == self.stamp {
            return false;
        }
        self.stamp = stamp;
        let detection = run_version(&self.program);
        let changed = detection != self.detection;
        if changed {
            tracing::info!(podman = %describe(&detection), "podman changed");
        }
        self.detection = detection;
        changed
    }

    /// What was detected.
    pub fn detection(&self) -> &Detection {
        &self.detection
    }

    /// The key tables to validate with.
    pub fn keys(&self) -> KeyTable {
        match &self.detection {
            Detection::Version(table) => *table,
            Detection::Fallback { .. } => KeyTable::newest(),
        }
    }

    /// The status section.
    pub fn status(&self) -> leger_api_types::status::PodmanStatus {
        let keys = self.keys();
        match &self.detection {
            Detection::Version(table) => leger_api_types::status::PodmanStatus {
                version: Some(table.version().to_string()),
                key_tables: keys.release().tag.to_owned(),
                fallback: None,
            },
            Detection::Fallback { .. } => leger_api_types::status::PodmanStatus {
                version: None,
                key_tables: keys.release().tag.to_owned(),
                fallback: Some(self.describe()),
            },
        }
    }

    /// One line for status: the version and tables in use, or why none.
    pub fn describe(&self) -> String {
        describe(&self.detection)
    }
}

fn describe(detection: &Detection) -> String {
    match detection {
        Detection::Version(table) => table.to_string(),
        Detection::Fallback { reason } => format!(
            "{reason}; validating keys against the newest known podman ({}) and relying on the quadlet generator's dry run",
            KeyTable::newest().release().tag
        ),
    }
}

/// How long `podman --version` may take: it reads no storage, so anything longer is
/// a hung podman, and validation goes on with the fallback.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

fn run_version(program: &Path) -> Detection {
    let output =
        Runner::new(VERSION_TIMEOUT).run_blocking(&CommandLine::new(program).arg("--version"));
    let text = match output {
        Ok(out) if out.status.success() => out.stdout_text(),
        Ok(out) => {
            return Detection::Fallback {
                reason: format!("`{} --version` failed ({})", program.display(), out.status),
            };
        }
        Err(e) => {
            return Detection::Fallback {
                reason: e.to_string(),
            };
        }
    };
    from_version_output(&text)
}

/// Reads `podman --version` output into a detection.
pub fn from_version_output(text: &str) -> Detection {
    let shown: String = text.trim().chars().take(80).collect();
    match PodmanVersion::from_version_output(text)
        .and_then(|v| KeyTable::for_version(v, Basis::Host))
    {
        Ok(table) => Detection::Version(table),
        Err(e) => Detection::Fallback {
            reason: format!("podman --version printed {shown:?}, which legerd cannot use ({e})"),
        },
    }
}

/// Where `program` is: itself when it is a path, else the first match on `PATH`;
/// `None` when it is not installed.
pub fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn stamp_of(program: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let path = resolve(program)?;
    let meta = std::fs::metadata(&path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
        path,
    })
}

/// The quadlet folders podman's generator reads besides leger's own, for `mode`.
pub fn quadlet_dirs(quadlet_dir: &Path, user: bool) -> Vec<PathBuf> {
    let mut dirs = vec![quadlet_dir.to_path_buf()];
    let others: &[&str] = if user {
        &["/etc/containers/systemd/users"]
    } else {
        &[
            "/run/containers/systemd",
            "/etc/containers/systemd",
            "/usr/share/containers/systemd",
        ]
    };
    for d in others {
        let d = PathBuf::from(d);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// Base names of the quadlets in `dirs` (recursively, as the generator reads them),
/// leaving out the files `managed` names: paths relative to `quadlet_dir`, leger's own.
pub fn installed_quadlets(
    dirs: &[PathBuf],
    quadlet_dir: &Path,
    managed: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in dirs {
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => stack.push(path),
                    Ok(_) if QuadletKind::from_file_name(&name).is_some() => {
                        let ours = path
                            .strip_prefix(quadlet_dir)
                            .ok()
                            .is_some_and(|rel| managed.contains(&*rel.to_string_lossy()));
                        if !ours {
                            out.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// The target legerd validates a revision for on this host.
pub fn host_target(podman: &HostPodman, installed: BTreeSet<String>) -> Target {
    Target {
        keys: podman.keys(),
        installed: Installed::Host(installed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_version_output_falls_back_when_unparseable() {
        assert!(matches!(
            from_version_output("podman version 5.4.2\n"),
            Detection::Version(t) if t.release().tag == "v5.4.2"
        ));
        let Detection::Fallback { reason } = from_version_output("podman version banana") else {
            panic!("banana is no version");
        };
        assert!(reason.contains("\"podman version banana\""), "{reason}");
        let Detection::Fallback { reason } = from_version_output("podman version 3.4.4") else {
            panic!("3.4 has no quadlet");
        };
        assert!(reason.contains("quadlet arrived in podman 4.4"), "{reason}");
    }

    /// A podman that is a script printing a version: only `--version` is faked, as
    /// the detection reads nothing else. Rewriting it stands for an upgrade.
    #[test]
    fn refresh_notices_a_changed_podman_binary() {
        let dir = tempfile::tempdir().unwrap();
        let podman = dir.path().join("podman");
        let write = |text: &str| {
            use std::os::unix::fs::PermissionsExt;
            let tmp = dir.path().join("podman.new");
            std::fs::write(&tmp, format!("#!/bin/sh\necho '{text}'\n")).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, &podman).unwrap();
        };
        write("podman version 5.4.2");
        let mut host = HostPodman::detect(&podman);
        assert_eq!(host.keys().release().tag, "v5.4.2");
        assert!(!host.refresh(), "unchanged binary, no new detection");
        write("podman version 5.8.6");
        assert!(host.refresh());
        assert_eq!(host.keys().release().tag, "v5.8.3");
        write("podman vers10n ???");
        assert!(host.refresh());
        assert!(matches!(host.detection(), Detection::Fallback { .. }));
        assert_eq!(host.keys(), KeyTable::newest());
        assert!(
            host.describe()
                .contains("relying on the quadlet generator's dry run"),
            "{}",
            host.describe()
        );
    }

    #[test]
    fn status_says_when_the_version_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = HostPodman::detect(dir.path().join("no-podman"));
        let st = missing.status();
        assert_eq!(st.version, None);
        assert_eq!(st.key_tables, KeyTable::newest().release().tag);
        let why = st.fallback.unwrap();
        assert!(why.contains("no-podman"), "{why}");
        assert!(
            why.contains("relying on the quadlet generator's dry run"),
            "{why}"
        );

        let podman = dir.path().join("podman");
        std::fs::write(&podman, "#!/bin/sh\necho 'podman version 5.4.2'\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
        let st = HostPodman::detect(&podman).status();
        assert_eq!(st.version.as_deref(), Some("5.4.2"));
        assert_eq!(st.key_tables, "v5.4.2");
        assert_eq!(st.fallback, None);
    }

    #[test]
    fn installed_quadlets_leaves_out_leger_files() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q");
        std::fs::create_dir_all(q.join("web")).unwrap();
        std::fs::create_dir_all(q.join("hand")).unwrap();
        std::fs::write(q.join("web/web.container"), "").unwrap();
        std::fs::write(q.join("hand/shared.network"), "").unwrap();
        std::fs::write(q.join("hand/README"), "").unwrap();
        let managed = BTreeSet::from(["web/web.container".to_string()]);
        let found = installed_quadlets(std::slice::from_ref(&q), &q, &managed);
        assert_eq!(found, BTreeSet::from(["shared.network".to_string()]));
    }
}

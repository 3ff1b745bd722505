//! The sections and keys each podman release's quadlet generator accepts, and the
//! table for the podman a revision is validated for.
//!
//! Why per release: podman adds keys in most releases (`ReloadCmd=` in 5.5, `Label=` in
//! `[Pod]` in 5.6, `.artifact` files in 5.7), so a host's own podman decides what a
//! quadlet may hold. The data (`podman_tables.rs`) is generated from podman's source at
//! each release tag by `contrib/quadlet-keys/generate.py`; a test checks the 5.4.2 table
//! against the real 5.4.2 generator on the test bed.

use std::fmt;

use super::podman_tables::{KEYS, RELEASES, SECTIONS};
use super::version::{PodmanVersion, Release, VersionError};

/// Every podman release with known tables, oldest first.
pub fn releases() -> &'static [Release] {
    RELEASES
}

/// Why this table was chosen: said in messages so a user knows which podman a refusal
/// is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The podman installed where the check runs (legerd's host, or the laptop).
    Host,
    /// A version given by the user (`legerctl validate --podman 5.4`).
    Chosen,
    /// No podman to ask: the newest release legerd knows.
    Newest,
}

/// The quadlet tables used to validate for one podman version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTable {
    /// The version validated for (the host's, or the one chosen).
    version: PodmanVersion,
    /// Index in [`RELEASES`] of the newest known release not newer than `version`.
    release: u16,
    /// Where `version` came from.
    basis: Basis,
}

/// What one podman release says about a key or a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Accepted by the version validated for.
    Yes,
    /// Accepted only by newer podman, from this release on.
    Newer(PodmanVersion),
    /// Accepted only by older podman, up to this release.
    Removed(PodmanVersion),
    /// No podman release accepts it.
    Never,
}

impl KeyTable {
    /// The table for `version`: that of the newest known release not newer than it.
    /// A podman newer than every known release gets the newest table; a podman older
    /// than 4.4 has no quadlet at all.
    pub fn for_version(version: PodmanVersion, basis: Basis) -> Result<Self, VersionError> {
        if version < PodmanVersion::FIRST_WITH_QUADLET {
            return Err(VersionError::BeforeQuadlet(version));
        }
        // A 5.4 written by hand means "5.4.x": the newest 5.4 release, not 5.4.0.
        let lookup = match basis {
            Basis::Chosen if version.patch == 0 && version.rc.is_none() => {
                PodmanVersion::new(version.major, version.minor, u16::MAX, None)
            }
            _ => version,
        };
        let release = RELEASES.partition_point(|r| r.version <= lookup) - 1;
        Ok(KeyTable {
            version,
            release: release as u16,
            basis,
        })
    }

    /// The newest known release's table, for when no podman can be asked.
    pub fn newest() -> Self {
        let last = RELEASES.len() - 1;
        KeyTable {
            version: RELEASES[last].version,
            release: last as u16,
            basis: Basis::Newest,
        }
    }

    /// The version validated for.
    pub fn version(&self) -> PodmanVersion {
        self.version
    }

    /// Why that version.
    pub fn basis(&self) -> Basis {
        self.basis
    }

    /// The release whose tables are used.
    pub fn release(&self) -> &'static Release {
        &RELEASES[usize::from(self.release)]
    }

    /// Whether the generator knows `[section]` at all (`[Artifact]` only from 5.7).
    pub fn section(&self, section: &str) -> Support {
        let runs = SECTIONS.iter().filter(|(s, _, _)| *s == section);
        self.support(runs.map(|(_, a, b)| (*a, *b)))
    }

    /// Whether `key` is accepted in `[section]`. Keys are case-sensitive, as in quadlet.
    pub fn key(&self, section: &str, key: &str) -> Support {
        self.support(key_runs(section, key).map(|(_, _, a, b)| (*a, *b)))
    }

    /// Whether `key` is accepted in `[section]` by the version validated for.
    pub fn is_known(&self, section: &str, key: &str) -> bool {
        self.key(section, key) == Support::Yes
    }

    /// The keys `[section]` accepts in this release, sorted.
    pub fn keys(&self, section: &str) -> Vec<&'static str> {
        let at = self.release;
        let mut out: Vec<&'static str> = section_rows(section)
            .iter()
            .filter(|(_, _, a, b)| *a <= at && at <= *b)
            .map(|(_, k, _, _)| *k)
            .collect();
        out.dedup();
        out
    }

    /// Every key any release accepts in `[section]`: what "did you mean" looks in.
    pub fn all_keys(section: &str) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = section_rows(section).iter().map(|r| r.1).collect();
        out.dedup();
        out
    }

    fn support(&self, runs: impl Iterator<Item = (u16, u16)>) -> Support {
        let at = self.release;
        let mut newer: Option<u16> = None;
        let mut older: Option<u16> = None;
        for (first, last) in runs {
            if first <= at && at <= last {
                return Support::Yes;
            }
            if first > at {
                newer = Some(newer.map_or(first, |n| n.min(first)));
            } else {
                older = Some(older.map_or(last, |o| o.max(last)));
            }
        }
        let version = |i: u16| RELEASES[usize::from(i)].version;
        match (newer, older) {
            (Some(n), _) => Support::Newer(version(n)),
            (None, Some(o)) => Support::Removed(version(o)),
            (None, None) => Support::Never,
        }
    }

    /// Says which podman a message is about: `this host runs 5.4.2`.
    pub fn running(&self) -> String {
        match self.basis {
            Basis::Host => format!("this host runs {}", self.version),
            Basis::Chosen => format!("validating for podman {}", self.version.short()),
            Basis::Newest => format!(
                "validating for podman {}, the newest release legerd knows",
                self.version
            ),
        }
    }
}

impl fmt::Display for KeyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.basis {
            Basis::Host => "the installed podman",
            Basis::Chosen => "chosen with --podman",
            Basis::Newest => "no podman found: the newest release legerd knows",
        };
        write!(
            f,
            "podman {} ({how}; key tables of {})",
            self.version,
            self.release().tag
        )
    }
}

/// The rows of `[section]`, sorted by key.
fn section_rows(section: &str) -> &'static [(&'static str, &'static str, u16, u16)] {
    let start = KEYS.partition_point(|(s, _, _, _)| *s < section);
    let end = KEYS.partition_point(|(s, _, _, _)| *s <= section);
    &KEYS[start..end]
}

fn key_runs<'a>(
    section: &'a str,
    key: &'a str,
) -> impl Iterator<Item = &'static (&'static str, &'static str, u16, u16)> + 'a {
    let rows = section_rows(section);
    let start = rows.partition_point(|(_, k, _, _)| *k < key);
    rows[start..]
        .iter()
        .take_while(move |(_, k, _, _)| *k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(v: &str) -> KeyTable {
        KeyTable::for_version(PodmanVersion::parse(v).unwrap(), Basis::Host).unwrap()
    }

    #[test]
    fn generated_tables_are_sorted_for_binary_search() {
        let mut sorted = KEYS.to_vec();
        sorted.sort();
        assert_eq!(KEYS, sorted.as_slice());
        assert!(RELEASES.windows(2).all(|w| w[0].version < w[1].version));
        assert!(RELEASES.iter().all(|r| r.commit.len() == 40));
    }

    #[test]
    fn key_tables_follow_each_release() {
        let t = table("5.4.2");
        assert_eq!(t.release().tag, "v5.4.2");
        assert!(t.is_known("Container", "Image"));
        assert!(t.is_known("Container", "HealthLogDestination"));
        assert!(t.is_known("Kube", "Yaml"));
        assert!(t.is_known("Build", "ImageTag"));
        // Added after 5.4: rejected by the 5.4.2 generator.
        let v55 = PodmanVersion::new(5, 5, 0, None);
        assert_eq!(t.key("Container", "Memory"), Support::Newer(v55));
        assert_eq!(t.key("Container", "ReloadCmd"), Support::Newer(v55));
        assert!(matches!(t.key("Pod", "Label"), Support::Newer(_)));
        assert!(matches!(t.section("Artifact"), Support::Newer(_)));
        // Case matters; unknown everywhere.
        assert_eq!(t.key("Container", "image"), Support::Never);
        // The sid test bed's 5.8.6 uses the newest 5.8 table.
        let sid = table("5.8.6");
        assert_eq!(sid.release().tag, "v5.8.3");
        assert!(sid.is_known("Container", "ReloadCmd"));
        assert!(sid.is_known("Pod", "Label"));
        assert_eq!(sid.section("Artifact"), Support::Yes);
        // Newer than anything known: the newest table.
        assert_eq!(
            table("9.1.0").release().tag,
            KeyTable::newest().release().tag
        );
    }

    #[test]
    fn for_version_refuses_podman_without_quadlet() {
        let v = PodmanVersion::parse("3.0").unwrap();
        let e = KeyTable::for_version(v, Basis::Chosen).unwrap_err();
        assert_eq!(
            e.to_string(),
            "podman 3.0.0 has no quadlet: quadlet arrived in podman 4.4, so use 4.4 or newer"
        );
        assert!(KeyTable::for_version(PodmanVersion::new(4, 4, 0, None), Basis::Host).is_ok());
    }

    #[test]
    fn chosen_minor_version_means_its_newest_patch() {
        let t = KeyTable::for_version(PodmanVersion::new(5, 4, 0, None), Basis::Chosen).unwrap();
        assert_eq!(t.release().tag, "v5.4.2");
        assert_eq!(t.running(), "validating for podman 5.4");
        let t = KeyTable::for_version(PodmanVersion::new(5, 4, 0, None), Basis::Host).unwrap();
        assert_eq!(t.release().tag, "v5.4.0");
    }
}

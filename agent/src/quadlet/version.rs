//! Podman versions, as `podman --version` prints them and as podman tags its releases.
//!
//! Why legerd cares: each podman release accepts other quadlet keys, so a revision is
//! validated against the tables of the podman that will run it, and a refusal names
//! both versions.

use std::cmp::Ordering;
use std::fmt;

/// A podman version: `5.4.2`, `6.0.0-rc1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PodmanVersion {
    /// Major number.
    pub major: u16,
    /// Minor number.
    pub minor: u16,
    /// Patch number.
    pub patch: u16,
    /// The release candidate number, for a pre-release; it sorts before the release.
    pub rc: Option<u16>,
}

/// A podman release whose quadlet tables legerd knows (see `podman_tables.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// Its version.
    pub version: PodmanVersion,
    /// Its git tag in podman's repository.
    pub tag: &'static str,
    /// The commit the tag pointed at when the tables were generated, so the data can
    /// be checked against podman's source.
    pub commit: &'static str,
}

/// A version string legerd cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not a version at all.
    #[error("'{0}' is not a podman version: write it as X.Y or X.Y.Z, for example 5.4 or 5.8.2")]
    Unparseable(String),
    /// A podman older than 4.4 has no quadlet generator.
    #[error("podman {0} has no quadlet: quadlet arrived in podman 4.4, so use 4.4 or newer")]
    BeforeQuadlet(PodmanVersion),
}

impl PodmanVersion {
    /// Builds a version.
    pub const fn new(major: u16, minor: u16, patch: u16, rc: Option<u16>) -> Self {
        PodmanVersion {
            major,
            minor,
            patch,
            rc,
        }
    }

    /// The first podman with quadlet.
    pub const FIRST_WITH_QUADLET: PodmanVersion = PodmanVersion::new(4, 4, 0, None);

    /// Reads `5.4`, `5.4.2`, `v5.4.2`, `6.0.0-rc1` or `6.0.0-dev` (a development build
    /// counts as the release it leads to).
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let bad = || VersionError::Unparseable(text.to_owned());
        let s = text.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let (numbers, suffix) = match s.split_once(['-', '~', '+']) {
            Some((n, rest)) => (n, Some(rest)),
            None => (s, None),
        };
        let parts: Vec<&str> = numbers.split('.').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let num = |p: &str| -> Result<u16, VersionError> {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let rc = match suffix {
            Some(rest) => rest.strip_prefix("rc").and_then(|n| n.parse::<u16>().ok()),
            None => None,
        };
        Ok(PodmanVersion {
            major: num(parts[0])?,
            minor: num(parts[1])?,
            patch: parts.get(2).map(|p| num(p)).transpose()?.unwrap_or(0),
            rc,
        })
    }

    /// Reads the output of `podman --version` (`podman version 5.4.2`).
    pub fn from_version_output(output: &str) -> Result<Self, VersionError> {
        let line = output.lines().next().unwrap_or_default().trim();
        let word = line
            .strip_prefix("podman version ")
            .or_else(|| line.strip_prefix("podman-remote version "))
            .ok_or_else(|| VersionError::Unparseable(line.to_owned()))?;
        PodmanVersion::parse(word)
    }

    /// How a user writes the first release with a feature: `5.5` for 5.5.0, else the
    /// whole version.
    pub fn short(&self) -> String {
        if self.patch == 0 && self.rc.is_none() {
            format!("{}.{}", self.major, self.minor)
        } else {
            self.to_string()
        }
    }
}

impl Ord for PodmanVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then(match (self.rc, other.rc) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(&b),
            })
    }
}

impl PartialOrd for PodmanVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PodmanVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(rc) = self.rc {
            write!(f, "-rc{rc}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_release_and_pre_release_versions() {
        assert_eq!(
            PodmanVersion::parse("5.4.2"),
            Ok(PodmanVersion::new(5, 4, 2, None))
        );
        assert_eq!(
            PodmanVersion::parse("5.4"),
            Ok(PodmanVersion::new(5, 4, 0, None))
        );
        assert_eq!(
            PodmanVersion::parse("v6.0.0-rc1"),
            Ok(PodmanVersion::new(6, 0, 0, Some(1)))
        );
        assert_eq!(
            PodmanVersion::parse("5.9.0-dev"),
            Ok(PodmanVersion::new(5, 9, 0, None))
        );
        for bad in ["banana", "", "5", "5.x", "5.4.2.1", "-1.0", "5..4"] {
            assert!(
                matches!(PodmanVersion::parse(bad), Err(VersionError::Unparseable(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn from_version_output_reads_podman_version() {
        assert_eq!(
            PodmanVersion::from_version_output("podman version 5.8.6\n"),
            Ok(PodmanVersion::new(5, 8, 6, None))
        );
        assert!(PodmanVersion::from_version_output("Podman, the pod manager").is_err());
        assert!(PodmanVersion::from_version_output("").is_err());
    }

    #[test]
    fn pre_releases_sort_before_their_release() {
        let rc = PodmanVersion::new(6, 0, 0, Some(1));
        assert!(rc < PodmanVersion::new(6, 0, 0, None));
        assert!(rc > PodmanVersion::new(5, 8, 3, None));
        assert_eq!(rc.to_string(), "6.0.0-rc1");
        assert_eq!(PodmanVersion::new(5, 5, 0, None).short(), "5.5");
        assert_eq!(PodmanVersion::new(5, 4, 1, None).short(), "5.4.1");
    }
}

//! Sources of desired state: git (gix), a leger.run HTTP manifest, and a local dir. Each fetch yields a
//! [`Snapshot`](crate::model::Snapshot) of the app folder.
//!
//! All three are blocking; the fetch stage ([`crate::pass::fetch`]) calls them on the
//! blocking pool. They share the content rules in [`tree`] (symlinks, sizes, names), so
//! switching a host from one source to another never changes what is accepted.

pub mod dir;
pub mod git;
pub mod manifest;
pub mod ssh;
mod tree;
mod upload_pack;

use std::path::PathBuf;

use leger_api_types::status::reason;

pub use tree::TreeProblem;

/// Why a source could not produce a snapshot.
///
/// URLs in these errors have their credentials replaced by `***`, so an error can be
/// logged and shown in status as-is.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The remote could not be contacted or did not speak git (network, DNS, missing
    /// repository, server error). Retrying later may succeed.
    #[error(
        "cannot fetch from {url}: {reason}; check that the url is right and the host is reachable"
    )]
    Unreachable {
        /// The source URL, credentials redacted.
        url: String,
        /// What the transport reported.
        reason: String,
    },
    /// The remote asked for credentials and none were accepted.
    #[error(
        "authentication to {url} failed: {reason}; put a token, or user:password, in the file named by credentials_file in desired.toml's [source] (legerctl set-desired git URL --credentials-file FILE); a url never carries credentials"
    )]
    Auth {
        /// The source URL, credentials redacted.
        url: String,
        /// What the transport reported.
        reason: String,
    },
    /// An ssh source could not log in: an unknown or changed host key, a key the server
    /// refused, a key file that is missing or open to others, or ssh past its time
    /// limit. The problem names the file to fix and how.
    #[error("ssh to {url}: {problem}")]
    Ssh {
        /// The source URL.
        url: String,
        /// What went wrong and what to do.
        problem: String,
    },
    /// The configured ref is neither a branch nor a tag of the remote, or a pinned
    /// commit is not reachable from any of them.
    #[error("ref {reference:?} not found in {url}{}", list_refs(.available))]
    RefNotFound {
        /// The source URL, credentials redacted.
        url: String,
        /// The ref as configured.
        reference: String,
        /// Some branch and tag names the remote does have, to spot a typo.
        available: Vec<String>,
    },
    /// The branch moved to a commit that does not descend from the applied one.
    #[error(
        "history of {reference:?} was rewritten: {to} does not descend from the applied commit {from}; set allow_rewrite = true to accept"
    )]
    HistoryRewritten {
        /// The branch.
        reference: String,
        /// The applied commit.
        from: String,
        /// The new commit the branch points to.
        to: String,
    },
    /// A file of the tree breaks the content rules; the whole revision is refused.
    #[error("invalid source content at {path:?}: {problem}")]
    InvalidTree {
        /// The path relative to the snapshot root (or the configured sub-folder).
        path: String,
        /// What is wrong with it.
        problem: TreeProblem,
    },
    /// The folder of a dir source does not exist.
    #[error(
        "source folder {} does not exist; create it or fix source.path in desired.toml",
        path.display()
    )]
    DirNotFound {
        /// The configured folder.
        path: PathBuf,
    },
    /// The local git cache is unusable (corrupt objects, failed writes).
    #[error("git cache {} for {url}: {reason}; delete the folder to start over", path.display())]
    Cache {
        /// The source URL, credentials redacted.
        url: String,
        /// The cache folder.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A manifest revision failed verification (digest, size, name, signature,
    /// version); the whole revision is refused and the running one stays.
    #[error("manifest source {url}: {problem}")]
    Verification {
        /// The source's base URL.
        url: String,
        /// What was refused.
        problem: manifest::ManifestProblem,
    },
    /// Reading or writing a local file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "reading".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn list_refs(available: &[String]) -> String {
    if available.is_empty() {
        "; the remote has no branches or tags".to_owned()
    } else {
        format!("; it has {}", available.join(", "))
    }
}

impl SourceError {
    /// The status reason for this error: content problems are the author's to fix
    /// (`ValidationFailed`), a refused force-push needs a decision
    /// (`HistoryRewritten`), a manifest that fails its checks is `VerificationFailed`,
    /// and everything else means the source is unavailable.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::InvalidTree { .. } => reason::VALIDATION_FAILED,
            SourceError::HistoryRewritten { .. } => reason::HISTORY_REWRITTEN,
            SourceError::Verification { .. } => reason::VERIFICATION_FAILED,
            SourceError::Unreachable { .. }
            | SourceError::Auth { .. }
            | SourceError::Ssh { .. }
            | SourceError::RefNotFound { .. }
            | SourceError::DirNotFound { .. }
            | SourceError::Cache { .. }
            | SourceError::Io { .. } => reason::SOURCE_UNAVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_maps_each_kind() {
        let rewritten = SourceError::HistoryRewritten {
            reference: "main".into(),
            from: "a".into(),
            to: "b".into(),
        };
        assert_eq!(rewritten.reason(), reason::HISTORY_REWRITTEN);
        assert!(rewritten.to_string().contains("allow_rewrite = true"));
        let invalid = SourceError::InvalidTree {
            path: "x".into(),
            problem: TreeProblem::NonUtf8Name,
        };
        assert_eq!(invalid.reason(), reason::VALIDATION_FAILED);
        let missing = SourceError::RefNotFound {
            url: "u".into(),
            reference: "mian".into(),
            available: vec!["main".into()],
        };
        assert_eq!(missing.reason(), reason::SOURCE_UNAVAILABLE);
        assert!(missing.to_string().ends_with("it has main"), "{missing}");
    }
}

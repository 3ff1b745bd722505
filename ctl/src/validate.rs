//! `legerctl validate`: lints a source tree offline with exactly the code legerd uses
//! ([`legerd::assemble::assemble`]), so both refuse the same trees. No legerd, no root
//! and no podman are needed; podman, when installed, is asked only for its version.

use std::path::{Path, PathBuf};

use leger_api_types::DirSourceSpec;
use leger_config::Limits;
use legerd::assemble::assemble;
use legerd::host_podman::{Detection, HostPodman};
use legerd::quadlet::{Basis, Diagnostic, KeyTable, PodmanVersion, Target, VersionError};
use legerd::source::dir::DirSource;
use serde::Serialize;

/// Why the tree could not be validated at all (not: the tree is invalid).
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The folder could not be read.
    #[error("cannot read {dir}: {reason}")]
    Source {
        /// The folder given.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The outcome of validating a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Whether legerd would accept the tree.
    pub valid: bool,
    /// The podman validated for, and why that one.
    pub podman: PodmanUsed,
    /// The apps found, when valid.
    pub apps: Vec<String>,
    /// Every problem, by file and line.
    pub errors: Vec<ReportedError>,
}

/// The podman a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodmanUsed {
    /// The version validated for.
    pub version: String,
    /// `chosen` (`--podman`), `local` (the installed podman) or `newest` (no podman).
    pub basis: &'static str,
    /// The podman release whose key tables were used (`v5.4.2`).
    pub key_tables: String,
    /// What the human output says about it.
    pub summary: String,
}

/// One problem, for scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportedError {
    /// The file, relative to the tree.
    pub file: String,
    /// The line, when the problem sits on one.
    pub line: Option<u32>,
    /// What is wrong and what to do.
    pub message: String,
}

impl From<Diagnostic> for ReportedError {
    fn from(d: Diagnostic) -> Self {
        ReportedError {
            file: d.file,
            line: d.line,
            message: d.message,
        }
    }
}

/// Parses `--podman X.Y[.Z]`: a version with quadlet (4.4 or newer).
pub fn parse_podman_arg(text: &str) -> Result<PodmanVersion, VersionError> {
    let v = PodmanVersion::parse(text)?;
    KeyTable::for_version(v, Basis::Chosen)?;
    Ok(v)
}

/// The key tables for `chosen`, else for the local podman (`podman` on `PATH`), else
/// the newest release legerd knows.
pub fn key_table(chosen: Option<PodmanVersion>, podman: &Path) -> KeyTable {
    if let Some(v) = chosen
        && let Ok(t) = KeyTable::for_version(v, Basis::Chosen)
    {
        return t;
    }
    match HostPodman::detect(podman).detection() {
        Detection::Version(t) => *t,
        Detection::Fallback { .. } => KeyTable::newest(),
    }
}

fn podman_used(keys: &KeyTable) -> PodmanUsed {
    let (basis, summary) = match keys.basis() {
        Basis::Chosen => (
            "chosen",
            format!("validated for podman {} (--podman)", keys.version().short()),
        ),
        Basis::Host => (
            "local",
            format!(
                "validated for podman {}, the one installed here",
                keys.version()
            ),
        ),
        Basis::Newest => (
            "newest",
            format!(
                "validated for podman {}, the newest release legerd knows (no podman here; choose one with --podman)",
                keys.version()
            ),
        ),
    };
    PodmanUsed {
        version: keys.version().to_string(),
        basis,
        key_tables: keys.release().tag.to_owned(),
        summary,
    }
}

/// Validates the apps under `dir` for `keys`, offline.
pub fn validate(dir: &Path, keys: KeyTable, limits: &Limits) -> Result<Report, ValidateError> {
    let abs = std::path::absolute(dir).map_err(|e| ValidateError::Source {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let snapshot = DirSource::new(
        DirSourceSpec {
            path: abs.clone(),
            overlays: Vec::new(),
        },
        limits.clone(),
    )
    .fetch()
    .map_err(|e| ValidateError::Source {
        dir: abs,
        reason: e.to_string(),
    })?;
    let podman = podman_used(&keys);
    Ok(match assemble(&snapshot, limits, &Target::offline(keys)) {
        Ok(tree) => Report {
            valid: true,
            podman,
            apps: tree.apps.keys().cloned().collect(),
            errors: Vec::new(),
        },
        Err(e) => Report {
            valid: false,
            podman,
            apps: Vec::new(),
            errors: e.diagnostics.into_iter().map(ReportedError::from).collect(),
        },
    })
}

/// The human output: one `file:line: message` per problem, then a summary.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for e in &report.errors {
        let d = Diagnostic::new(e.file.clone(), e.line, e.message.clone());
        out.push_str(&format!("{d}\n"));
    }
    if report.valid {
        out.push_str(&format!(
            "valid: {} app{} ({}); {}\n",
            report.apps.len(),
            if report.apps.len() == 1 { "" } else { "s" },
            report.apps.join(", "),
            report.podman.summary
        ));
    } else {
        out.push_str(&format!(
            "invalid: {} problem{} to fix; {}\n",
            report.errors.len(),
            if report.errors.len() == 1 { "" } else { "s" },
            report.podman.summary
        ));
    }
    out
}

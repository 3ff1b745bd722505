//! `legerctl validate`: lints a source tree offline with exactly the code legerd uses
//! ([`legerd::assemble::assemble`]), so both refuse the same trees. No legerd, no root
//! and no podman are needed; podman, when installed, is asked only for its version.

use std::path::{Path, PathBuf};

use leger_api_types::DirSourceSpec;
use leger_config::Limits;
use legerd::assemble::assemble;
use legerd::host_podman::{Detection, HostPodman};
use legerd::model::Snapshot;
use legerd::overlay::Composition;
use legerd::quadlet::{Basis, Diagnostic, KeyTable, PodmanVersion, Target, VersionError};
use legerd::source::dir::DirSource;
use serde::Serialize;

use crate::publish::OverlayCheck;

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
    /// The composition validated, with `--root` (absent for a plain folder of apps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub composition: Option<CompositionUsed>,
}

/// The one host's composition a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompositionUsed {
    /// The host (`None`: no `--host`, so no host folder matches).
    pub host: Option<String>,
    /// Its groups, in overlay order.
    pub groups: Vec<String>,
    /// The common layer, relative to the root (`.` for the root itself).
    pub base: String,
    /// The expanded overlay layers, in the order they apply (missing ones are empty).
    pub layers: Vec<String>,
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
        Detection::Fallback { reason } => {
            // A podman that is installed but unusable (older than quadlet, or an
            // unreadable `--version`) is not "no podman": say why it was not used.
            if legerd::host_podman::resolve(podman).is_some() {
                eprintln!(
                    "legerctl: not using the local podman: {reason}; validating for the newest podman legerd knows instead (choose one with --podman)"
                );
            }
            KeyTable::newest()
        }
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
                "validated for podman {}, the newest release legerd knows (no usable podman here; choose one with --podman)",
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

/// A source tree read from disk and composed for one host the way legerd composes it.
#[derive(Debug, Clone)]
pub struct Composed {
    /// The tree's folder, absolute.
    pub dir: PathBuf,
    /// Every file read: the whole tree with overlays, else the common layer alone.
    pub whole: Snapshot,
    /// The host's composition, when there are overlays.
    pub composition: Option<Composition>,
    /// What legerd on that host would validate and install.
    pub checked: Snapshot,
}

/// Reads `dir` with legerd's dir source (its content rules and `limits`) and composes
/// it for `check`: the common layer `base` (relative to `dir`, default `dir` itself),
/// then the expanded overlay templates. Shared by `validate --root` and `publish`.
pub fn compose_tree(
    dir: &Path,
    base: Option<&str>,
    check: &OverlayCheck,
    limits: &Limits,
) -> Result<Composed, ValidateError> {
    let abs = std::path::absolute(dir).map_err(|e| ValidateError::Source {
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let read = |path: PathBuf| {
        DirSource::new(
            DirSourceSpec {
                path: path.clone(),
                overlays: Vec::new(),
            },
            limits.clone(),
        )
        .fetch()
        .map_err(|e| ValidateError::Source {
            dir: path,
            reason: e.to_string(),
        })
    };
    let composition = Composition::new(
        &check.overlays,
        base,
        check.host.as_deref().unwrap_or("-"),
        &check.groups,
    );
    let Some(c) = composition else {
        // Without overlays legerd fetches only the common layer (git's `path`).
        let whole = read(base.map_or_else(|| abs.clone(), |b| abs.join(b)))?;
        return Ok(Composed {
            dir: abs,
            checked: whole.clone(),
            whole,
            composition: None,
        });
    };
    let whole = read(abs.clone())?;
    Ok(Composed {
        dir: abs,
        checked: legerd::overlay::compose(&whole, &c),
        whole,
        composition: Some(c),
    })
}

/// Validates the apps under `dir` for `keys`, offline.
pub fn validate(dir: &Path, keys: KeyTable, limits: &Limits) -> Result<Report, ValidateError> {
    let mut report = validate_composition(dir, None, &OverlayCheck::default(), keys, limits)?;
    report.composition = None;
    Ok(report)
}

/// Validates exactly the composition `check` describes (one host in its groups), with
/// the common layer `base` under `root`, offline. Problems name the file in the tree
/// (`hosts/h1/apps/web/web.container:3`), not its place in the composition.
pub fn validate_composition(
    root: &Path,
    base: Option<&str>,
    check: &OverlayCheck,
    keys: KeyTable,
    limits: &Limits,
) -> Result<Report, ValidateError> {
    let composed = compose_tree(root, base, check, limits)?;
    let podman = podman_used(&keys);
    let composition = Some(CompositionUsed {
        host: check.host.clone(),
        groups: check.groups.clone(),
        base: base.map_or_else(
            || legerd::overlay::ROOT_LAYER.to_owned(),
            |b| b.trim_matches('/').to_owned(),
        ),
        layers: composed
            .composition
            .as_ref()
            .map(|c| c.layers.clone())
            .unwrap_or_default(),
    });
    let layers = legerd::overlay::layers_of(&composed.checked);
    // Without overlays a `--path` is the tree the diagnostics are relative to.
    let plain_base = match (&composed.composition, base) {
        (None, Some(b)) => Some(b.trim_matches('/').to_owned()),
        _ => None,
    };
    let located = |file: String| -> String {
        let app = file.split('/').next().unwrap_or_default();
        match (layers.get(app), &plain_base) {
            (Some(layer), _) if layer != legerd::overlay::ROOT_LAYER => format!("{layer}/{file}"),
            (None, Some(b)) => format!("{b}/{file}"),
            _ => file,
        }
    };
    Ok(
        match assemble(&composed.checked, limits, &Target::offline(keys)) {
            Ok(tree) => Report {
                valid: true,
                podman,
                apps: tree.apps.keys().cloned().collect(),
                errors: Vec::new(),
                composition,
            },
            Err(e) => Report {
                valid: false,
                podman,
                apps: Vec::new(),
                errors: e
                    .diagnostics
                    .into_iter()
                    .map(|d| {
                        let mut r = ReportedError::from(d);
                        r.file = located(r.file);
                        r
                    })
                    .collect(),
                composition,
            },
        },
    )
}

/// The human output: one `file:line: message` per problem, then a summary.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for e in &report.errors {
        let d = Diagnostic::new(e.file.clone(), e.line, e.message.clone());
        out.push_str(&format!("{d}\n"));
    }
    if let Some(c) = &report.composition {
        out.push_str(&format!(
            "composition: host {}, groups {}; layers {}\n",
            c.host
                .as_deref()
                .unwrap_or("(none: no host folder applies)"),
            if c.groups.is_empty() {
                "(none)".to_owned()
            } else {
                c.groups.join(", ")
            },
            std::iter::once(c.base.as_str())
                .chain(c.layers.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" < ")
        ));
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

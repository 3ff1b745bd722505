//! The leger.run manifest format: a static tree any web server, bucket or CDN can
//! serve, and that `legerd` polls with one conditional request.
//!
//! ```text
//! {base}/latest.json            {"version": 3, "manifest_url": "v3/manifest.json"}
//! {base}/v3/manifest.json       {"version": 3, "generated_at": ..., "files": [...], "metadata": {...}}
//! {base}/v3/manifest.json.sig   minisign detached signature over the exact manifest bytes
//! {base}/v3/web/web.container   the files, next to their manifest
//! ```
//!
//! The types live here, not in `legerd`, so `legerctl publish` writes exactly what
//! `legerd` reads and both refuse the same names. Unknown JSON fields are accepted so
//! a newer publisher can add fields without breaking older agents; an unknown file
//! `type` is refused, because it would change what gets installed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// File name of the pointer to the current version, at the root of the tree.
pub const LATEST_FILE: &str = "latest.json";
/// File name of a version's manifest, inside `v{N}/`.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Suffix of the detached signature next to the manifest.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// `latest.json`: which version is current and where its manifest is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    /// The current version number; versions only go up.
    pub version: u64,
    /// The manifest's URL; a relative URL resolves against `latest.json`'s own URL.
    pub manifest_url: String,
}

/// `v{N}/manifest.json`: every file of one version with its size and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The version number, equal to the `N` of `v{N}/` and to `latest.json`'s.
    pub version: u64,
    /// When the tree was built (RFC 3339); informational only.
    pub generated_at: String,
    /// The files, sorted by name by `legerctl publish`.
    pub files: Vec<ManifestFile>,
    /// Free-form data for people and dashboards; legerd ignores it.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// `app/file`, relative to the manifest's folder; see [`validate_file_name`].
    pub name: String,
    /// Size in bytes, checked before the bytes are used.
    pub size: u64,
    /// Lower-case hex sha256 of the bytes.
    pub sha256: String,
    /// What the file is; must match the name's extension (see [`FileType::for_name`]).
    #[serde(rename = "type")]
    pub type_: FileType,
}

/// What a manifest file is. Quadlet kinds are named after their extension; every
/// other file an app carries (an `EnvironmentFile=`, a mounted config, `leger.toml`)
/// is `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// `.container`
    Container,
    /// `.volume`
    Volume,
    /// `.network`
    Network,
    /// `.pod`
    Pod,
    /// `.kube`
    Kube,
    /// `.image`
    Image,
    /// `.build`
    Build,
    /// A companion file.
    Other,
}

impl FileType {
    /// The type a file of this name must have. Deriving it from the name (instead of
    /// trusting the field) means a manifest cannot smuggle a quadlet in as `other`.
    pub fn for_name(name: &str) -> FileType {
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext {
            "container" => FileType::Container,
            "volume" => FileType::Volume,
            "network" => FileType::Network,
            "pod" => FileType::Pod,
            "kube" => FileType::Kube,
            "image" => FileType::Image,
            "build" => FileType::Build,
            _ => FileType::Other,
        }
    }

    /// True for quadlet files, whose text must be UTF-8.
    pub fn is_quadlet(self) -> bool {
        self != FileType::Other
    }

    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Container => "container",
            FileType::Volume => "volume",
            FileType::Network => "network",
            FileType::Pod => "pod",
            FileType::Kube => "kube",
            FileType::Image => "image",
            FileType::Build => "build",
            FileType::Other => "other",
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a manifest file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// The name starts with `/`.
    #[error("name is absolute; names are relative to the manifest's folder")]
    Absolute,
    /// A component is `..`, `.` or empty (which also catches `a//b` and a trailing `/`).
    #[error("a path component is '..', '.' or empty")]
    DotDot,
    /// The name has no app folder (`web.container` instead of `web/web.container`).
    #[error("name has no app folder; write it as app/file")]
    NoAppFolder,
    /// A backslash or control character, which could mean a different path elsewhere.
    #[error("name contains a backslash or a control character")]
    BadCharacter,
    /// The app folder is hidden (`.git/...`); sources never install hidden folders.
    #[error("app folder starts with '.'")]
    HiddenApp,
}

/// Checks a manifest file name: relative, `/`-separated, at least `app/file`, with no
/// component that could climb out of the app folder.
pub fn validate_file_name(name: &str) -> Result<(), NameProblem> {
    if name.starts_with('/') {
        return Err(NameProblem::Absolute);
    }
    if name.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(NameProblem::BadCharacter);
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(NameProblem::DotDot);
    }
    if parts.len() < 2 {
        return Err(NameProblem::NoAppFolder);
    }
    if parts[0].starts_with('.') {
        return Err(NameProblem::HiddenApp);
    }
    Ok(())
}

/// The folder of version `n`, relative to the tree's base: `v{n}`.
pub fn version_dir(n: u64) -> String {
    format!("v{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_parses_issue_example() {
        let m: Manifest = serde_json::from_str(
            r#"{"version": 3, "generated_at": "2026-01-01T00:00:00Z",
                "files": [{"name": "web/web.container", "size": 12, "sha256": "ab", "type": "container"}],
                "metadata": {"services": ["web"]}, "future_field": 1}"#,
        )
        .unwrap();
        assert_eq!(m.version, 3);
        assert_eq!(m.files[0].type_, FileType::Container);
        assert_eq!(m.metadata["services"][0], "web");
        let l: Latest =
            serde_json::from_str(r#"{"version": 3, "manifest_url": "v3/manifest.json"}"#).unwrap();
        assert_eq!(l.manifest_url, "v3/manifest.json");
    }

    #[test]
    fn manifest_unknown_type_is_named() {
        let e = serde_json::from_str::<Manifest>(
            r#"{"version": 1, "generated_at": "x",
                "files": [{"name": "a/b", "size": 1, "sha256": "ab", "type": "script"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("script"), "{e}");
    }

    #[test]
    fn file_type_follows_extension() {
        assert_eq!(FileType::for_name("web/web.container"), FileType::Container);
        assert_eq!(FileType::for_name("web/conf/nginx.conf"), FileType::Other);
        assert_eq!(FileType::for_name("web/Makefile"), FileType::Other);
        assert_eq!(FileType::for_name("db/data.volume"), FileType::Volume);
        assert!(!FileType::Other.is_quadlet());
    }

    #[test]
    fn file_name_rules_refuse_escapes() {
        assert_eq!(validate_file_name("web/web.container"), Ok(()));
        assert_eq!(validate_file_name("web/conf/nginx.conf"), Ok(()));
        assert_eq!(
            validate_file_name("/etc/passwd"),
            Err(NameProblem::Absolute)
        );
        for bad in ["web/../x", "../web/x", "web/./x", "web//x", "web/", "."] {
            assert_eq!(validate_file_name(bad), Err(NameProblem::DotDot), "{bad}");
        }
        assert_eq!(
            validate_file_name("web.container"),
            Err(NameProblem::NoAppFolder)
        );
        assert_eq!(
            validate_file_name("web\\..\\x"),
            Err(NameProblem::BadCharacter)
        );
        assert_eq!(
            validate_file_name(".git/config"),
            Err(NameProblem::HiddenApp)
        );
    }
}

//! Edits to `desired.toml`, as pure functions of the old text.
//!
//! Every edit ends with [`DesiredState::from_toml_str`] on the exact text that will be
//! written, so legerctl refuses precisely what legerd would refuse. An edit never drops
//! settings silently: switching the source keeps the `[policy]` table, and an existing
//! file whose policy cannot be read stops the edit rather than, say, unsuspending a host.

use std::time::Duration;

use leger_api_types::desired::{validate_git_url, validate_subpath};
use leger_api_types::redact::redact_credentials;
use leger_api_types::{
    DesiredState, DesiredStateError, GitSourceSpec, ManifestVersion, Policy, SecretsSpec,
    SourceSpec,
};

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The new document is invalid; the message names the key and line.
    #[error(transparent)]
    Invalid(#[from] DesiredStateError),
    /// The current file's `[policy]` could not be read, so it could not be kept.
    #[error(
        "the current desired state has an unreadable [policy], which would be lost: {0}; fix it, or replace the whole file with `legerctl set-desired --file FILE`"
    )]
    ExistingPolicy(String),
}

/// Sets the overlay templates of any source kind (`--overlay`, already validated).
pub fn with_overlays(mut source: SourceSpec, overlays: Vec<String>) -> SourceSpec {
    match &mut source {
        SourceSpec::Git(g) => g.overlays = overlays,
        SourceSpec::Dir(d) => d.overlays = overlays,
        SourceSpec::Manifest(m) => m.overlays = overlays,
    }
    source
}

/// Builds a git source from command-line values.
pub fn git_source(
    url: &str,
    reference: Option<&str>,
    path: Option<&str>,
    poll_interval: Option<Duration>,
    allow_rewrite: bool,
) -> SourceSpec {
    let mut g = GitSourceSpec::new(url);
    if let Some(r) = reference {
        g.reference = r.to_owned();
    }
    g.path = path
        .map(|p| p.trim_matches('/').to_owned())
        .filter(|p| !p.is_empty());
    if let Some(i) = poll_interval {
        g.poll_interval = i;
    }
    g.allow_rewrite = allow_rewrite;
    SourceSpec::Git(g)
}

/// Replaces the source of the current document (`None` when there is no file), keeping
/// its `[policy]`, and returns the validated document and the text to write.
pub fn replace_source(
    current: Option<&str>,
    source: SourceSpec,
) -> Result<(DesiredState, String), EditError> {
    let policy = match current {
        None => Policy::default(),
        Some(text) => current_policy(text)?,
    };
    // The `[secrets]` table is kept when it is sound; a broken one is the operator's to fix.
    let secrets = current
        .and_then(|t| toml::from_str::<toml::Table>(t).ok())
        .and_then(|t| t.get("secrets").cloned())
        .and_then(|v| v.try_into::<SecretsSpec>().ok())
        .unwrap_or_default();
    finish(DesiredState {
        source,
        policy,
        secrets,
    })
}

/// Sets `policy.suspend` in the current document and returns the validated document
/// and the text to write. The current document must be valid: suspending a host whose
/// desired state legerd cannot read would hide the real problem.
pub fn set_suspend(current: &str, suspend: bool) -> Result<(DesiredState, String), EditError> {
    edit_policy(current, |p| p.suspend = suspend)
}

/// Changes the `[policy]` of the current (valid) document and returns the validated
/// document and the text to write. Used by suspend/resume, approve, pin and rollback.
pub fn edit_policy(
    current: &str,
    change: impl FnOnce(&mut leger_api_types::Policy),
) -> Result<(DesiredState, String), EditError> {
    let mut desired = DesiredState::from_toml_str(current)?;
    change(&mut desired.policy);
    finish(desired)
}

/// Validates a whole document given by the user; the text is written as-is, comments
/// and all.
pub fn validate_file(text: &str) -> Result<DesiredState, EditError> {
    Ok(DesiredState::from_toml_str(text)?)
}

/// Parses `--interval` the way `desired.toml` does: humantime, greater than zero.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: \"30s\", \"5m\", \"1h\")"))?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// Checks a git URL the way `desired.toml` does, for clap.
pub fn parse_git_url(s: &str) -> Result<String, String> {
    // Credentials are refused later, by the desired.toml parser: clap's own error would
    // repeat the value, token and all, on the terminal.
    validate_git_url(s)?;
    Ok(s.to_owned())
}

/// Checks `--path` the way `desired.toml` does, for clap: relative, no `.` or `..`.
pub fn parse_subpath(s: &str) -> Result<String, String> {
    validate_subpath(s)?;
    Ok(s.to_owned())
}

fn current_policy(text: &str) -> Result<Policy, EditError> {
    if let Ok(d) = DesiredState::from_toml_str(text) {
        return Ok(d.policy);
    }
    // The file is invalid (likely its source, which is being replaced); keep the policy
    // table if that part is sound.
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| EditError::ExistingPolicy(redact_credentials(e.to_string().trim_end())))?;
    match table.get("policy") {
        None => Ok(Policy::default()),
        Some(v) => v.clone().try_into::<Policy>().map_err(|e| {
            EditError::ExistingPolicy(redact_credentials(&format!(
                "policy: {}",
                e.to_string().trim_end()
            )))
        }),
    }
}

fn finish(desired: DesiredState) -> Result<(DesiredState, String), EditError> {
    let text = desired.to_toml_string();
    let checked = DesiredState::from_toml_str(&text)?;
    Ok((checked, text))
}

/// Clap value parser for a manifest base URL.
pub fn parse_manifest_url(s: &str) -> Result<String, String> {
    leger_api_types::desired::validate_manifest_url(s)?;
    Ok(s.to_owned())
}

/// Clap value parser for `--version`: `latest` or a number of 1 or more.
pub fn parse_manifest_version(s: &str) -> Result<ManifestVersion, String> {
    if s == "latest" {
        return Ok(ManifestVersion::Latest);
    }
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(ManifestVersion::Pinned(n)),
        _ => Err(format!(
            "invalid version {s:?}; use latest or a number such as 3"
        )),
    }
}

/// Clap value parser for `--public-key`.
pub fn parse_public_key(s: &str) -> Result<String, String> {
    leger_api_types::desired::validate_public_key(s)?;
    Ok(s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_source_keeps_policy() {
        let old = "[source]\nkind = \"dir\"\npath = \"/srv/apps\"\n[policy]\nsuspend = true\nprune = false\n";
        let src = git_source("https://h/r.git", Some("v1"), Some("/apps/"), None, false);
        let (d, text) = replace_source(Some(old), src).unwrap();
        assert!(d.policy.suspend && !d.policy.prune);
        assert!(
            text.contains("ref = \"v1\"") && text.contains("path = \"apps\""),
            "{text}"
        );
    }

    #[test]
    fn replace_source_over_a_broken_source_keeps_a_sound_policy() {
        let old = "[source]\nkind = \"svn\"\n[policy]\nsuspend = true\n";
        let (d, _) =
            replace_source(Some(old), git_source("/srv/r.git", None, None, None, true)).unwrap();
        assert!(d.policy.suspend);
    }

    #[test]
    fn replace_source_refuses_to_drop_a_broken_policy() {
        let old = "[source]\nkind = \"dir\"\npath = \"/a\"\n[policy]\nsuspnd = true\n";
        let e = replace_source(Some(old), git_source("/srv/r.git", None, None, None, false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("suspnd") && e.contains("--file"), "{e}");
    }

    #[test]
    fn set_suspend_flips_only_the_flag() {
        let old = "[source]\nkind = \"dir\"\npath = \"/a\"\n[policy]\nprune = false\n";
        let (d, text) = set_suspend(old, true).unwrap();
        assert!(d.policy.suspend && !d.policy.prune);
        let (d, _) = set_suspend(&text, false).unwrap();
        assert!(!d.policy.suspend && !d.policy.prune);
    }

    #[test]
    fn parse_interval_refuses_zero_and_garbage() {
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert!(
            parse_interval("0s")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(
            parse_interval("soon")
                .unwrap_err()
                .contains("invalid duration")
        );
    }
}

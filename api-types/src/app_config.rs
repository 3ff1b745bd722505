//! `leger.toml`: an app's own settings, next to its quadlets in the source tree. It is
//! read by legerd and never installed.
//!
//! Like desired.toml it refuses unknown keys: a typo in a health timeout must be an
//! error in the revision, not a silently ignored setting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole `leger.toml` of one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// `enabled = false` removes the app on the hosts whose layer says so (a host
    /// overlay switching off a common app); absent means enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Overrides of the health gate for this app's units.
    #[serde(default)]
    pub health: AppHealth,
    /// How this app's Podman secrets are named at the secret sources.
    #[serde(default)]
    pub secrets: AppSecrets,
}

/// `[secrets]` in `leger.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSecrets {
    /// Podman secret name (as in `Secret=`) → the name to look up at the sources, e.g.
    /// `db-pass = "prod/db/password"`. Unmapped names are looked up as they are.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub names: std::collections::BTreeMap<String, String>,
}

/// `[health]` in `leger.toml`: each key overrides legerd's `[health]` config for the
/// units of this app (a slow-starting database may need a longer timeout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppHealth {
    /// How long a started unit may take to become active (and healthy).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::desired::opt_duration_str"
    )]
    pub timeout: Option<Duration>,
    /// How long it must then stay up.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::desired::opt_duration_str"
    )]
    pub settle: Option<Duration>,
}

impl AppConfig {
    /// False only when `leger.toml` says `enabled = false`.
    pub fn is_enabled(&self) -> bool {
        self.enabled != Some(false)
    }

    /// Parses `leger.toml`; the error names the key and line.
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_config_reads_health_overrides() {
        let c = AppConfig::from_toml_str("[health]\ntimeout = \"2m\"\nsettle = \"3s\"\n").unwrap();
        assert_eq!(c.health.timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.health.settle, Some(Duration::from_secs(3)));
        assert_eq!(AppConfig::from_toml_str("").unwrap(), AppConfig::default());
    }

    #[test]
    fn app_config_reads_secret_names() {
        let c =
            AppConfig::from_toml_str("[secrets.names]\ndb-pass = \"prod/db/password\"\n").unwrap();
        assert_eq!(c.secrets.names["db-pass"], "prod/db/password");
    }

    #[test]
    fn app_config_refuses_unknown_keys_and_bad_durations() {
        let e = AppConfig::from_toml_str("[health]\ntimout = \"2m\"\n").unwrap_err();
        assert!(e.contains("timout"), "{e}");
        let e = AppConfig::from_toml_str("[health]\ntimeout = \"soon\"\n").unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
    }
}

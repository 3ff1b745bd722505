//! `leger.toml`: an app's own settings, next to its quadlets in the source tree. It is
//! read by legerd and never installed.
//!
//! Like desired.toml it refuses unknown keys: a typo in a health timeout must be an
//! error in the revision, not a silently ignored setting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole `leger.toml` of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// What legerd may do to this app's named volumes.
    #[serde(default)]
    pub volumes: AppVolumes,
    /// What a failed backup before an apply does to this app's update: `"refuse"` (the
    /// default: the apply waits, nothing changes, status says `BackupFailed`) or
    /// `"warn"` (the update goes ahead without a backup, and the journal says so).
    #[serde(default, skip_serializing_if = "BackupFailure::is_refuse")]
    pub backup_failure: BackupFailure,
    /// `false` when the app's volumes hold nothing worth keeping (a cache): they are
    /// never exported. Its files are still backed up.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub backup_volumes: bool,
}

/// `[volumes]` in `leger.toml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppVolumes {
    /// Recreate a volume whose `.volume` quadlet changed, after backing it up. Off by
    /// default: podman keeps an existing volume as it is, and recreating it loses its
    /// data unless restored, so legerd only reports the difference as drift.
    #[serde(default)]
    pub recreate_on_change: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `backup_failure` in `leger.toml`.
///
/// **Why `refuse` is the default:** the backup is the only way back from an update that
/// corrupts data (a schema migration), and a full disk is visible and fixable, while
/// data lost without a backup is not. An app whose updates must never wait for disk
/// space (a security fix on a host with little of it) opts into `warn`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupFailure {
    /// The apply is refused with reason `BackupFailed`.
    #[default]
    Refuse,
    /// The apply goes ahead without this app's backup.
    Warn,
}

impl BackupFailure {
    fn is_refuse(&self) -> bool {
        *self == BackupFailure::Refuse
    }
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

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            enabled: None,
            health: AppHealth::default(),
            secrets: AppSecrets::default(),
            volumes: AppVolumes::default(),
            backup_failure: BackupFailure::Refuse,
            backup_volumes: true,
        }
    }
}

/// The longest health timeout or settle time an app may ask for. A huge value (or one
/// that overflows a clock) would stall every pass behind one app.
pub const MAX_HEALTH_WAIT: Duration = Duration::from_secs(6 * 3600);

fn humantime_like(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

impl AppConfig {
    /// False only when `leger.toml` says `enabled = false`.
    pub fn is_enabled(&self) -> bool {
        self.enabled != Some(false)
    }

    /// Parses `leger.toml`; the error names the key and line.
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        let c: AppConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        for (key, value) in [
            ("health.timeout", c.health.timeout),
            ("health.settle", c.health.settle),
        ] {
            if let Some(d) = value
                && d > MAX_HEALTH_WAIT
            {
                return Err(format!(
                    "{key} = {:?} is longer than the most legerd waits ({}h); a pass would hold every other change back that long",
                    humantime_like(d),
                    MAX_HEALTH_WAIT.as_secs() / 3600
                ));
            }
        }
        Ok(c)
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
    fn app_config_reads_volume_recreation() {
        let c = AppConfig::from_toml_str("[volumes]\nrecreate_on_change = true\n").unwrap();
        assert!(c.volumes.recreate_on_change);
        assert!(!AppConfig::default().volumes.recreate_on_change);
        assert!(AppConfig::from_toml_str("[volumes]\nrecreate = true\n").is_err());
    }

    #[test]
    fn app_config_reads_secret_names() {
        let c =
            AppConfig::from_toml_str("[secrets.names]\ndb-pass = \"prod/db/password\"\n").unwrap();
        assert_eq!(c.secrets.names["db-pass"], "prod/db/password");
    }

    #[test]
    fn app_config_reads_backup_choices() {
        let c = AppConfig::from_toml_str("backup_failure = \"warn\"\nbackup_volumes = false\n")
            .unwrap();
        assert_eq!(
            (c.backup_failure, c.backup_volumes),
            (BackupFailure::Warn, false)
        );
        let d = AppConfig::from_toml_str("").unwrap();
        assert_eq!(
            (d.backup_failure, d.backup_volumes),
            (BackupFailure::Refuse, true)
        );
        let e = AppConfig::from_toml_str("backup_failure = \"ignore\"\n").unwrap_err();
        assert!(e.contains("backup_failure") || e.contains("refuse"), "{e}");
    }

    #[test]
    fn app_config_refuses_huge_numbers() {
        for text in [
            "[health]\ntimeout = \"99999999999d\"\n",
            "[health]\nsettle = \"7h\"\n",
            "[health]\ntimeout = 340282366920938463463374607431768211456\n",
            "[health]\ntimeout = \"99999999999999999999999999s\"\n",
        ] {
            let e = AppConfig::from_toml_str(text).unwrap_err();
            assert!(
                e.contains("timeout") || e.contains("settle") || e.contains("number"),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn app_config_refuses_unknown_keys_and_bad_durations() {
        let e = AppConfig::from_toml_str("[health]\ntimout = \"2m\"\n").unwrap_err();
        assert!(e.contains("timout"), "{e}");
        let e = AppConfig::from_toml_str("[health]\ntimeout = \"soon\"\n").unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
    }
}

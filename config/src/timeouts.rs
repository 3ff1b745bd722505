//! The time bounds that keep legerd from waiting forever: on a pass, on an external
//! command, on the generator, on a D-Bus call, and on a bus that is gone.
//!
//! They live together because they constrain each other: a pass budget shorter than
//! one systemd job or one podman command would abandon passes that are merely slow,
//! so [`Timeouts::validate`] refuses that combination with a message naming both keys.

use std::time::Duration;

use crate::ConfigError;

/// Default `reconcile.pass_timeout`: long enough for a pass that restarts many units
/// one after another, each within `systemd.job_timeout`.
pub const DEFAULT_PASS_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Default `reconcile.command_timeout` (podman, journalctl): a volume export of a few
/// GB fits; a podman stuck on a lock does not hold legerd for longer.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Default `quadlet.generator_timeout`: the dry run reads a few files and writes none.
pub const DEFAULT_GENERATOR_TIMEOUT: Duration = Duration::from_secs(60);

/// Default `systemd.call_timeout`: D-Bus's own default reply timeout is 25 s.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `systemd.bus_give_up`: a bus restart or `daemon-reexec` takes seconds; a bus
/// still gone after this is not coming back without help, so legerd exits non-zero and
/// lets `Restart=` (and the operator) take over.
pub const DEFAULT_BUS_GIVE_UP: Duration = Duration::from_secs(5 * 60);

/// Validated time bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `reconcile.pass_timeout`: a pass still running after this is abandoned, with a
    /// status that names the operation it was stuck in.
    pub pass: Duration,
    /// `reconcile.command_timeout`: each podman or journalctl call; the command's
    /// process group is killed when it passes.
    pub command: Duration,
    /// `quadlet.generator_timeout`: the generator's dry run.
    pub generator: Duration,
    /// `systemd.call_timeout`: each D-Bus method call (not a job: jobs wait up to
    /// `systemd.job_timeout`).
    pub call: Duration,
    /// `systemd.bus_give_up`: how long legerd keeps reconnecting to a lost bus before
    /// it exits non-zero.
    pub bus_give_up: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            pass: DEFAULT_PASS_TIMEOUT,
            command: DEFAULT_COMMAND_TIMEOUT,
            generator: DEFAULT_GENERATOR_TIMEOUT,
            call: DEFAULT_CALL_TIMEOUT,
            bus_give_up: DEFAULT_BUS_GIVE_UP,
        }
    }
}

impl Timeouts {
    /// Checks that every bound is positive and that one pass can hold the longest
    /// single wait inside it: one job, one command, the generator, one D-Bus call, or
    /// the health gate of a unit (`health.timeout` + `health.settle`).
    pub fn validate(
        &self,
        job_timeout: Duration,
        health_gate: Duration,
    ) -> Result<(), ConfigError> {
        for (key, value) in [
            ("reconcile.pass_timeout", self.pass),
            ("reconcile.command_timeout", self.command),
            ("quadlet.generator_timeout", self.generator),
            ("systemd.call_timeout", self.call),
            ("systemd.bus_give_up", self.bus_give_up),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Value {
                    key: key.to_owned(),
                    message: "must be greater than zero; nothing may wait forever, and nothing may be given no time at all".to_owned(),
                });
            }
        }
        for (key, value) in [
            ("systemd.job_timeout", job_timeout),
            ("reconcile.command_timeout", self.command),
            ("quadlet.generator_timeout", self.generator),
            ("systemd.call_timeout", self.call),
            ("health.timeout + health.settle", health_gate),
        ] {
            if value >= self.pass {
                return Err(ConfigError::Value {
                    key: "reconcile.pass_timeout".to_owned(),
                    message: format!(
                        "{} is not longer than {key} ({}): one such wait would use up the whole pass; raise reconcile.pass_timeout or lower {key}",
                        humantime::format_duration(self.pass),
                        humantime::format_duration(value)
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: Duration = Duration::from_secs(120);
    const GATE: Duration = Duration::from_secs(70);

    #[test]
    fn timeouts_defaults_are_valid() {
        Timeouts::default().validate(JOB, GATE).unwrap();
    }

    #[test]
    fn timeouts_refuse_a_pass_shorter_than_one_wait() {
        let t = Timeouts {
            pass: Duration::from_secs(60),
            ..Timeouts::default()
        };
        let e = t.validate(JOB, GATE).unwrap_err().to_string();
        assert!(e.contains("reconcile.pass_timeout"), "{e}");
        assert!(e.contains("systemd.job_timeout (2m)"), "{e}");
        let t = Timeouts {
            pass: Duration::from_secs(200),
            command: Duration::from_secs(300),
            ..Timeouts::default()
        };
        let e = t.validate(JOB, GATE).unwrap_err().to_string();
        assert!(e.contains("reconcile.command_timeout (5m)"), "{e}");
    }

    #[test]
    fn timeouts_refuse_zero() {
        let t = Timeouts {
            call: Duration::ZERO,
            ..Timeouts::default()
        };
        let e = t.validate(JOB, GATE).unwrap_err().to_string();
        assert!(e.contains("systemd.call_timeout"), "{e}");
    }
}

//! `--wait[=TIMEOUT]`: after an edit, follow legerd's passes until one that started
//! after the edit has finished, and turn its outcome into an exit code: 0 applied (or
//! nothing to change, or staged/suspended as asked), 1 failed or rolled back, 3 timed
//! out. The decisions are pure functions of status documents; `main.rs` polls.

use std::time::{Duration, SystemTime};

use leger_api_types::{ConditionStatus, PassOutcome, StatusDocument, condition_type};

/// `--wait` without a value.
pub const DEFAULT_WAIT: &str = "10m";

/// Exit code for "the pass did not finish in time".
pub const EXIT_TIMEOUT: u8 = 3;

/// `--wait=TIMEOUT`: a humantime duration greater than zero.
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| {
        format!("{s:?} is not a duration ({e}); write e.g. --wait=90s or --wait=5m")
    })?;
    if d.is_zero() {
        return Err(format!(
            "{s:?} would not wait at all; give a timeout greater than zero, e.g. --wait=2m, or leave --wait out"
        ));
    }
    Ok(d)
}

/// The first whole second after `t`: passes that start from then on certainly saw an
/// edit made at `t`.
pub fn next_second(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs + 1)
}

/// The result of waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The process exit code.
    pub code: u8,
    /// One line for people.
    pub message: String,
}

/// Judges the newest pass in `doc`: `None` while no pass that started at or after
/// `since` has finished. Status times have whole seconds, so `since` should be one
/// ([`next_second`] after the edit); a fraction is cut off.
pub fn judge(doc: &StatusDocument, since: SystemTime) -> Option<Verdict> {
    let pass = doc.status.last_pass.as_ref()?;
    let started = humantime::parse_rfc3339_weak(&pass.started_at).ok()?;
    let since_second = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()))
        .unwrap_or(since);
    if started < since_second {
        return None;
    }
    let rev = pass
        .revision
        .as_deref()
        .map(crate::render::short)
        .unwrap_or("-".into());
    let error = || pass.error.clone().unwrap_or_default();
    let first_line = |s: String| crate::render::summary_line(&s);
    // An idle pass is counted, not listed: it has no id to look up.
    let id = if pass.id == 0 {
        "not listed in history".to_owned()
    } else {
        format!("#{}", pass.id)
    };
    Some(match pass.outcome {
        // Waiting for a restart slot from the fleet lock is not an end: the pass that
        // gets the slot will apply (or fail), so keep waiting for it.
        PassOutcome::Waiting => return None,
        PassOutcome::Applied => Verdict {
            code: 0,
            message: format!("applied {rev} (pass {})", id),
        },
        PassOutcome::Noop => {
            let st = &doc.status;
            match (
                &st.fetched_revision,
                &st.applied_revision,
                &st.pinned_revision,
            ) {
                // The source's newest revision is not what runs and no pin explains it:
                // it failed in an earlier pass and legerd holds the last good one.
                (Some(fetched), Some(applied), None) if fetched != applied => Verdict {
                    code: 1,
                    message: format!(
                        "{} is not applied: it failed before and legerd keeps {} (pass {}); `legerctl history` says why",
                        crate::render::short(fetched),
                        crate::render::short(applied),
                        id
                    ),
                },
                _ => Verdict {
                    code: 0,
                    message: format!(
                        "up to date: the host runs {} (pass {})",
                        st.applied_revision
                            .as_deref()
                            .map(crate::render::short)
                            .unwrap_or(rev.clone()),
                        id
                    ),
                },
            }
        }
        PassOutcome::Staged => Verdict {
            code: 0,
            message: format!(
                "staged {rev}: nothing applied; it waits for `legerctl approve` (pass {})",
                id
            ),
        },
        PassOutcome::Suspended => Verdict {
            code: 0,
            message: format!(
                "suspended: nothing applied until `legerctl resume` (pass {})",
                id
            ),
        },
        PassOutcome::Failed => Verdict {
            code: 1,
            message: format!(
                "failed (pass {}): {}; `legerctl status` has the details",
                id,
                first_line(error())
            ),
        },
        PassOutcome::RolledBack => Verdict {
            code: 1,
            message: format!(
                "rolled back: {rev} failed the health gate and the last good revision runs again (pass {}): {}",
                id,
                first_line(error())
            ),
        },
    })
}

/// What legerd is doing now, for the progress display: the Reconciling condition's
/// message while a pass runs.
pub fn progress(doc: &StatusDocument) -> Option<String> {
    doc.status
        .conditions
        .iter()
        .find(|c| c.type_ == condition_type::RECONCILING && c.status == ConditionStatus::True)
        .map(|c| c.message.lines().next().unwrap_or_default().to_owned())
}

/// Where a running pass is, for the progress display: read from what it waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No pass has started yet, or it waits on nothing legerd names.
    Waiting,
    /// Asking the source for its newest revision.
    Fetching,
    /// Assembling the revision and running podman's generator (dry run).
    Validating,
    /// Exporting volumes before the apply.
    BackingUp,
    /// Writing files and secrets, reloading systemd, starting and restarting units.
    Applying,
    /// The health gate on the units the revision changed.
    HealthGate,
}

impl Stage {
    /// The word shown for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Fetching => "fetching",
            Stage::Validating => "validating",
            Stage::BackingUp => "backing up",
            Stage::Applying => "applying",
            Stage::HealthGate => "health gate",
        }
    }

    /// The stage a Reconciling message (see [`progress`]) describes.
    pub fn of(message: &str) -> Stage {
        let m = message.to_ascii_lowercase();
        if m.starts_with("verifying") || m.contains("health gate") {
            Stage::HealthGate
        } else if m.contains("fetch of") {
            Stage::Fetching
        } else if m.contains("generator") {
            Stage::Validating
        } else if m.contains("volume export") {
            Stage::BackingUp
        } else if m.contains("job of")
            || m.contains("d-bus")
            || m.contains("podman secret")
            || m.contains("podman network")
            || m.contains("podman volume")
        {
            Stage::Applying
        } else {
            Stage::Waiting
        }
    }
}

/// Spinner frames for a terminal.
const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

/// One progress line: `[  12s] applying: waiting on systemd start job of web.service`.
/// On a terminal (`frame` given) it starts with a spinner and is cut to `width`
/// characters, since it is rewritten in place; plain lines keep everything.
pub fn progress_line(
    message: &str,
    elapsed: Duration,
    frame: Option<usize>,
    width: usize,
) -> String {
    let detail = message
        .trim_start_matches("reconcile pass in progress; ")
        .trim_start_matches("reconcile pass in progress");
    let stage = Stage::of(message).as_str();
    let mut line = format!("[{:>4}s] {stage}", elapsed.as_secs());
    if !detail.is_empty() {
        line.push_str(": ");
        line.push_str(detail);
    }
    match frame {
        None => line,
        Some(f) => {
            let line = format!("{} {line}", SPINNER[f % SPINNER.len()]);
            if line.chars().count() > width {
                let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
                cut.push('…');
                cut
            } else {
                line
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stages_are_read_from_what_the_pass_waits_on() {
        use super::Stage;
        let cases = [
            ("waiting for legerd's pass", Stage::Waiting),
            (
                "reconcile pass in progress; waiting on fetch of the git source (running 1s)",
                Stage::Fetching,
            ),
            (
                "reconcile pass in progress; waiting on `/usr/lib/systemd/system-generators/podman-system-generator -dryrun` (running 1s)",
                Stage::Validating,
            ),
            (
                "reconcile pass in progress; waiting on `podman volume export db-data` (running 3s)",
                Stage::BackingUp,
            ),
            (
                "reconcile pass in progress; waiting on systemd start job of web.service (running 2s)",
                Stage::Applying,
            ),
            (
                "reconcile pass in progress; waiting on health gate of 2 unit(s) (running 4s) → `podman inspect web` (running 0s)",
                Stage::HealthGate,
            ),
            (
                "verifying: revision 0123456789ab applied, health gate running",
                Stage::HealthGate,
            ),
        ];
        for (message, stage) in cases {
            assert_eq!(Stage::of(message), stage, "{message}");
        }
    }

    #[test]
    fn progress_lines_are_plain_or_one_spinner_line_cut_to_the_terminal() {
        use super::progress_line;
        use std::time::Duration;
        let m =
            "reconcile pass in progress; waiting on systemd start job of web.service (running 2s)";
        assert_eq!(
            progress_line(m, Duration::from_millis(12_400), None, 40),
            "[  12s] applying: waiting on systemd start job of web.service (running 2s)"
        );
        let tty = progress_line(m, Duration::from_secs(3), Some(1), 40);
        assert!(tty.starts_with("/ [   3s] applying: "), "{tty}");
        assert_eq!(tty.chars().count(), 40, "{tty}");
        assert!(tty.ends_with('…'));
        assert_eq!(
            progress_line("waiting for legerd's pass", Duration::ZERO, None, 80),
            "[   0s] waiting: waiting for legerd's pass"
        );
    }

    use super::*;
    use leger_api_types::{AgentStatus, Condition, PassRecord, StatusSpec};

    fn doc(started_at: &str, outcome: PassOutcome) -> StatusDocument {
        StatusDocument::new(
            StatusSpec::default(),
            AgentStatus {
                last_pass: Some(PassRecord {
                    id: 7,
                    started_at: started_at.into(),
                    finished_at: started_at.into(),
                    duration_ms: 5,
                    trigger: "desired-changed".into(),
                    revision: Some("abc123".into()),
                    outcome,
                    actions: vec![],
                    error: Some("unit web.service failed\npodman said a lot".into()),
                    runs: 1,
                    first_started_at: None,
                }),
                ..AgentStatus::default()
            },
        )
    }

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn next_second_is_the_following_whole_second() {
        assert_eq!(
            next_second(at("2026-11-30T08:00:05.600Z")),
            at("2026-11-30T08:00:06Z")
        );
        assert_eq!(
            next_second(at("2026-11-30T08:00:05Z")),
            at("2026-11-30T08:00:06Z")
        );
    }

    #[test]
    fn parse_wait_refuses_zero_and_garbage() {
        assert_eq!(parse_wait("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_wait("0s").unwrap_err().contains("greater than zero"));
        assert!(parse_wait("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn judge_ignores_passes_that_started_before_the_edit() {
        let edit = at("2026-11-30T08:00:05.600Z");
        assert_eq!(
            judge(&doc("2026-11-30T08:00:04Z", PassOutcome::Applied), edit),
            None
        );
        // Same second as the edit: counted (RFC 3339 in status has whole seconds).
        let v = judge(&doc("2026-11-30T08:00:05Z", PassOutcome::Applied), edit).unwrap();
        assert_eq!(v.code, 0);
        assert!(v.message.contains("applied abc123"), "{v:?}");
    }

    #[test]
    fn judge_maps_outcomes_to_exit_codes_with_one_line() {
        let edit = at("2026-11-30T08:00:00Z");
        let code = |o| judge(&doc("2026-11-30T08:00:01Z", o), edit).unwrap().code;
        assert_eq!(code(PassOutcome::Applied), 0);
        assert_eq!(code(PassOutcome::Noop), 0);
        assert_eq!(code(PassOutcome::Staged), 0);
        assert_eq!(code(PassOutcome::Suspended), 0);
        assert_eq!(code(PassOutcome::Failed), 1);
        let v = judge(&doc("2026-11-30T08:00:01Z", PassOutcome::RolledBack), edit).unwrap();
        assert_eq!(v.code, 1);
        assert!(
            v.message.starts_with("rolled back") && !v.message.contains('\n'),
            "{v:?}"
        );
        assert!(
            v.message
                .contains("unit web.service failed: podman said a lot"),
            "{v:?}"
        );
        let long = format!("summary\n{}\nmore", "x".repeat(500));
        let line = crate::render::summary_line(&long);
        assert!(!line.contains('\n') && line.chars().count() < 200, "{line}");
    }

    #[test]
    fn judge_noop_is_a_failure_while_a_known_bad_revision_is_held_back() {
        let edit = at("2026-11-30T08:00:00Z");
        let mut d = doc("2026-11-30T08:00:01Z", PassOutcome::Noop);
        d.status.applied_revision = Some("good".into());
        d.status.fetched_revision = Some("good".into());
        let v = judge(&d, edit).unwrap();
        assert_eq!(v.code, 0);
        assert!(v.message.contains("runs good"), "{v:?}");
        d.status.fetched_revision = Some("bad".into());
        let v = judge(&d, edit).unwrap();
        assert_eq!(v.code, 1);
        assert!(v.message.starts_with("bad is not applied"), "{v:?}");
        d.status.pinned_revision = Some("good".into());
        assert_eq!(
            judge(&d, edit).unwrap().code,
            0,
            "a pin explains the difference"
        );
    }

    #[test]
    fn progress_shows_the_reconciling_message_while_a_pass_runs() {
        let mut d = doc("2026-11-30T08:00:01Z", PassOutcome::Applied);
        assert_eq!(progress(&d), None);
        d.status.conditions.push(Condition {
            type_: condition_type::RECONCILING.into(),
            status: ConditionStatus::True,
            reason: "Progressing".into(),
            message: "applying abc123".into(),
            last_transition_time: String::new(),
        });
        assert_eq!(progress(&d).as_deref(), Some("applying abc123"));
    }
}

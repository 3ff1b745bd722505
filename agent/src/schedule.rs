//! When the next reconcile pass runs: triggers are merged and debounced, polls are
//! spaced by the interval plus jitter, and failures push retries out by their backoff.
//!
//! Like kube-runtime's scheduler, the earliest due time wins and one pass serves every
//! trigger that arrived before it. The reconciler is never told *why* it runs (that
//! keeps it idempotent); the reasons only go into its tracing span and history.
//!
//! Pure: the caller passes the current time in, so tests need no clock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Something that asks for a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// legerd just started.
    Startup,
    /// desired.toml changed on disk.
    DesiredChanged,
    /// The poll interval elapsed (or a retry after a failure is due).
    Poll,
    /// A file of a `dir` source changed.
    SourceChanged,
    /// Something changed in the quadlet dir (possible drift).
    QuadletDirChanged,
    /// A managed unit left `active`.
    UnitLeftActive(String),
    /// `legerctl reconcile`.
    Manual,
    /// The D-Bus connection was replaced (bus restart, systemd re-exec): unit events of
    /// the gap are lost, so look at the host again.
    BusReconnected,
}

impl Trigger {
    /// Operator intent runs at once even while backing off; everything else waits for
    /// the backoff, so a crash-looping unit cannot drive a restart storm.
    pub fn is_urgent(&self) -> bool {
        matches!(
            self,
            Trigger::Startup | Trigger::DesiredChanged | Trigger::Manual
        )
    }

    /// A short label for history and logs.
    pub fn label(&self) -> String {
        match self {
            Trigger::Startup => "startup".into(),
            Trigger::DesiredChanged => "desired-changed".into(),
            Trigger::Poll => "poll".into(),
            Trigger::SourceChanged => "source-changed".into(),
            Trigger::QuadletDirChanged => "drift-file".into(),
            Trigger::UnitLeftActive(u) => format!("drift-unit:{u}"),
            Trigger::Manual => "manual".into(),
            Trigger::BusReconnected => "bus-reconnected".into(),
        }
    }
}

/// The scheduler's state.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    next_run: Option<Instant>,
    backoff_until: Option<Instant>,
    pending: BTreeSet<String>,
}

impl Schedule {
    /// Records a trigger that arrived at `now`.
    pub fn on_trigger(&mut self, trigger: &Trigger, now: Instant, debounce: Duration) {
        self.pending.insert(trigger.label());
        let mut at = now + debounce;
        if !trigger.is_urgent()
            && let Some(b) = self.backoff_until
        {
            at = at.max(b);
        }
        self.next_run = Some(self.next_run.map_or(at, |n| n.min(at)));
    }

    /// When the next pass is due, if any.
    pub fn next_run(&self) -> Option<Instant> {
        self.next_run
    }

    /// If a pass is due at `now`, returns the merged trigger labels and clears them.
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<String>> {
        match self.next_run {
            Some(t) if t <= now => {
                self.next_run = None;
                let mut labels: Vec<String> =
                    std::mem::take(&mut self.pending).into_iter().collect();
                if labels.is_empty() {
                    labels.push(
                        if self.backoff_until.is_some() {
                            "retry"
                        } else {
                            "poll"
                        }
                        .into(),
                    );
                }
                Some(labels)
            }
            _ => None,
        }
    }

    /// Schedules what follows a pass that ended at `now`: the next poll after success,
    /// or a retry after `backoff` on failure. Triggers that arrived during the pass
    /// keep their earlier due time (still subject to the backoff).
    pub fn after_pass(&mut self, now: Instant, poll_in: Duration, backoff: Option<Duration>) {
        // A failure retries after its backoff, but never later than the next poll
        // would have been: a fix pushed to the source must not wait for a long backoff.
        let (at, backoff_until) = match backoff {
            Some(b) => (now + b.min(poll_in), Some(now + b.min(poll_in))),
            None => (now + poll_in, None),
        };
        self.backoff_until = backoff_until;
        let pending_at = self.next_run.map(|n| match backoff_until {
            Some(b) if !self.pending.iter().any(|p| is_urgent_label(p)) => n.max(b),
            _ => n,
        });
        self.next_run = Some(pending_at.map_or(at, |p| p.min(at)));
    }
}

fn is_urgent_label(label: &str) -> bool {
    matches!(label, "startup" | "desired-changed" | "manual")
}

/// The poll interval with up to `fraction` of it added, from a `random` value in [0, 1).
pub fn jittered(interval: Duration, fraction: f64, random: f64) -> Duration {
    interval + interval.mul_f64(fraction * random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn triggers_merge_and_earliest_wins() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.on_trigger(&Trigger::Startup, t0, DEBOUNCE);
        s.on_trigger(&Trigger::QuadletDirChanged, t0 + ms(100), DEBOUNCE);
        assert_eq!(s.next_run(), Some(t0 + DEBOUNCE));
        assert_eq!(s.take_due(t0 + ms(100)), None);
        let labels = s.take_due(t0 + DEBOUNCE).unwrap();
        assert_eq!(labels, ["drift-file", "startup"]);
        assert_eq!(s.next_run(), None);
    }

    #[test]
    fn success_schedules_next_poll() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.after_pass(t0, Duration::from_secs(60), None);
        assert_eq!(s.next_run(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(s.take_due(t0 + Duration::from_secs(60)).unwrap(), ["poll"]);
    }

    #[test]
    fn backoff_delays_drift_but_not_operator_triggers() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.after_pass(t0, Duration::from_secs(60), Some(Duration::from_secs(8)));
        // A unit event during backoff waits for it.
        s.on_trigger(
            &Trigger::UnitLeftActive("web.service".into()),
            t0 + ms(10),
            DEBOUNCE,
        );
        assert_eq!(s.next_run(), Some(t0 + Duration::from_secs(8)));
        // legerctl reconcile does not.
        s.on_trigger(&Trigger::Manual, t0 + ms(20), DEBOUNCE);
        assert_eq!(s.next_run(), Some(t0 + ms(20) + DEBOUNCE));
        let labels = s.take_due(t0 + ms(220)).unwrap();
        assert_eq!(labels, ["drift-unit:web.service", "manual"]);
    }

    #[test]
    fn retry_is_labelled_and_success_clears_backoff() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.after_pass(t0, Duration::from_secs(60), Some(Duration::from_secs(2)));
        assert_eq!(s.take_due(t0 + Duration::from_secs(2)).unwrap(), ["retry"]);
        s.after_pass(t0 + Duration::from_secs(3), Duration::from_secs(60), None);
        s.on_trigger(
            &Trigger::QuadletDirChanged,
            t0 + Duration::from_secs(4),
            DEBOUNCE,
        );
        assert_eq!(s.next_run(), Some(t0 + Duration::from_secs(4) + DEBOUNCE));
    }

    #[test]
    fn retry_never_waits_longer_than_a_poll() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.after_pass(t0, Duration::from_secs(60), Some(Duration::from_secs(300)));
        assert_eq!(s.next_run(), Some(t0 + Duration::from_secs(60)));
    }

    #[test]
    fn trigger_during_pass_survives_after_pass() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.on_trigger(&Trigger::DesiredChanged, t0, DEBOUNCE);
        s.after_pass(t0 + ms(50), Duration::from_secs(60), None);
        assert_eq!(s.next_run(), Some(t0 + DEBOUNCE));
    }

    #[test]
    fn jitter_stays_within_fraction() {
        let i = Duration::from_secs(100);
        assert_eq!(jittered(i, 0.1, 0.0), i);
        assert_eq!(jittered(i, 0.1, 0.5), Duration::from_secs(105));
        assert!(jittered(i, 0.1, 7.0) <= Duration::from_secs(110));
    }
}

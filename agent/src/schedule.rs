//! When the next reconcile pass runs: triggers are merged and debounced, and the next
//! action a pass returned ([`Next`], decided by [`crate::pass::retry`]) is scheduled.
//!
//! Like kube-runtime's scheduler, the earliest due time wins and one pass serves every
//! trigger that arrived before it. The reconciler is never told *why* it runs (that
//! keeps it idempotent); the reasons only go into its tracing span and history.
//!
//! Pure: the caller passes the current time in, so tests need no clock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::pass::retry::{Next, bypasses_backoff};

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
    /// These paths changed in the quadlet dir (possible drift, or the echo of legerd's
    /// own writes: see [`crate::echo`]).
    QuadletFilesChanged(Vec<std::path::PathBuf>),
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
        bypasses_backoff(&self.label())
    }

    /// Whether the trigger waits out the debounce. The debounce merges bursts (an
    /// editor's several writes, a `git checkout` touching many files); `legerctl
    /// reconcile` is one explicit request with nothing to merge, so it runs at once
    /// (the debounce was 200 ms of every manual one-app change).
    pub fn is_debounced(&self) -> bool {
        !matches!(self, Trigger::Manual)
    }

    /// A short label for history and logs.
    pub fn label(&self) -> String {
        match self {
            Trigger::Startup => "startup".into(),
            Trigger::DesiredChanged => "desired-changed".into(),
            Trigger::Poll => "poll".into(),
            Trigger::SourceChanged => "source-changed".into(),
            Trigger::QuadletFilesChanged(_) => "drift-file".into(),
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
        let mut at = if trigger.is_debounced() {
            now + debounce
        } else {
            now
        };
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

    /// Schedules what follows a pass that ended at `now`: its [`Next`] action. A retry
    /// holds non-urgent triggers back until it is due. Triggers that arrived during the
    /// pass keep their earlier due time (still subject to a retry's backoff).
    pub fn after_pass(&mut self, now: Instant, next: Next) {
        let at = next.delay().map(|d| now + d);
        let backoff_until = if next.is_retry() { at } else { None };
        self.backoff_until = backoff_until;
        let pending_at = self.next_run.map(|n| match backoff_until {
            Some(b) if !self.pending.iter().any(|p| bypasses_backoff(p)) => n.max(b),
            _ => n,
        });
        self.next_run = match (pending_at, at) {
            (Some(p), Some(a)) => Some(p.min(a)),
            (p, a) => p.or(a),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(200);

    fn poll(d: Duration) -> Next {
        Next::RequeueAfter {
            delay: d,
            retry: false,
        }
    }

    fn retry(d: Duration) -> Next {
        Next::RequeueAfter {
            delay: d,
            retry: true,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn triggers_merge_and_earliest_wins() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.on_trigger(&Trigger::Startup, t0, DEBOUNCE);
        s.on_trigger(
            &Trigger::QuadletFilesChanged(vec![]),
            t0 + ms(100),
            DEBOUNCE,
        );
        assert_eq!(s.next_run(), Some(t0 + DEBOUNCE));
        assert_eq!(s.take_due(t0 + ms(100)), None);
        let labels = s.take_due(t0 + DEBOUNCE).unwrap();
        assert_eq!(labels, ["drift-file", "startup"]);
        assert_eq!(s.next_run(), None);
    }

    #[test]
    fn manual_trigger_skips_the_debounce_and_serves_pending_ones() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.on_trigger(&Trigger::QuadletFilesChanged(vec![]), t0, DEBOUNCE);
        assert_eq!(s.next_run(), Some(t0 + DEBOUNCE));
        s.on_trigger(&Trigger::Manual, t0 + ms(50), DEBOUNCE);
        assert_eq!(s.next_run(), Some(t0 + ms(50)));
        let labels = s.take_due(t0 + ms(50)).unwrap();
        assert_eq!(labels, ["drift-file", "manual"]);
    }

    #[test]
    fn success_schedules_next_poll() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.after_pass(t0, poll(Duration::from_secs(60)));
        assert_eq!(s.next_run(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(s.take_due(t0 + Duration::from_secs(60)).unwrap(), ["poll"]);
    }

    #[test]
    fn backoff_delays_drift_but_not_operator_triggers() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.after_pass(t0, retry(Duration::from_secs(8)));
        // A unit event during backoff waits for it.
        s.on_trigger(
            &Trigger::UnitLeftActive("web.service".into()),
            t0 + ms(10),
            DEBOUNCE,
        );
        assert_eq!(s.next_run(), Some(t0 + Duration::from_secs(8)));
        // legerctl reconcile does not (nor the debounce).
        s.on_trigger(&Trigger::Manual, t0 + ms(20), DEBOUNCE);
        assert_eq!(s.next_run(), Some(t0 + ms(20)));
        let labels = s.take_due(t0 + ms(20)).unwrap();
        assert_eq!(labels, ["drift-unit:web.service", "manual"]);
    }

    #[test]
    fn retry_is_labelled_and_success_clears_backoff() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.after_pass(t0, retry(Duration::from_secs(2)));
        assert_eq!(s.take_due(t0 + Duration::from_secs(2)).unwrap(), ["retry"]);
        s.after_pass(t0 + Duration::from_secs(3), poll(Duration::from_secs(60)));
        s.on_trigger(
            &Trigger::QuadletFilesChanged(vec![]),
            t0 + Duration::from_secs(4),
            DEBOUNCE,
        );
        assert_eq!(s.next_run(), Some(t0 + Duration::from_secs(4) + DEBOUNCE));
    }

    #[test]
    fn awaiting_a_change_schedules_nothing() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.after_pass(t0, Next::AwaitChange);
        assert_eq!(s.next_run(), None);
        s.on_trigger(&Trigger::DesiredChanged, t0 + ms(5), DEBOUNCE);
        assert_eq!(s.next_run(), Some(t0 + ms(5) + DEBOUNCE));
    }

    #[test]
    fn trigger_during_pass_survives_after_pass() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.on_trigger(&Trigger::DesiredChanged, t0, DEBOUNCE);
        s.after_pass(t0 + ms(50), poll(Duration::from_secs(60)));
        assert_eq!(s.next_run(), Some(t0 + DEBOUNCE));
    }
}

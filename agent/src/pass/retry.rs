//! What follows a pass: the one place where a pass's result maps to its next action.
//!
//! kube-runtime's controllers return `Action::requeue(d)` or `Action::await_change()`
//! from `reconcile` and `error_policy`. legerd's pass does the same: success requeues
//! after the poll interval plus jitter; a failure requeues after its cause's
//! exponential backoff (per cause, reset by any success, never longer than a poll, so a
//! fix pushed to the source is never held back by a long backoff). With no desired
//! state at all there is nothing to poll: the pass awaits a change of desired.toml.
//!
//! Which triggers may cut a backoff short is decided here too ([`bypasses_backoff`]):
//! operator intent runs at once, drift waits, so a crash-looping unit cannot drive a
//! restart storm.

use std::time::Duration;

use leger_api_types::status::reason;

use crate::backoff::Backoff;

/// The next action after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run again after this long. `retry` is true when it is a failure's backoff, which
    /// non-urgent triggers must wait out too.
    RequeueAfter {
        /// How long to wait.
        delay: Duration,
        /// A retry after a failure.
        retry: bool,
    },
    /// Run again only when something changes (a trigger arrives).
    AwaitChange,
}

impl Next {
    /// The delay, if any.
    pub fn delay(self) -> Option<Duration> {
        match self {
            Next::RequeueAfter { delay, .. } => Some(delay),
            Next::AwaitChange => None,
        }
    }

    /// True for a failure's retry.
    pub fn is_retry(self) -> bool {
        matches!(self, Next::RequeueAfter { retry: true, .. })
    }
}

/// The error policy: backoff per cause, poll with jitter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    backoff: Backoff,
    jitter: f64,
}

impl RetryPolicy {
    /// A policy from `[reconcile]` settings.
    pub fn new(settings: &leger_config::ReconcileSettings) -> Self {
        RetryPolicy {
            backoff: Backoff::new(settings.backoff_initial, settings.backoff_max),
            jitter: settings.jitter,
        }
    }

    /// The next action after a pass that failed with `failure_cause` (a status reason),
    /// or succeeded (`None`). `poll` is the source's poll interval; `random` in [0, 1)
    /// spreads polls of many hosts apart.
    pub fn next(&mut self, failure_cause: Option<&str>, poll: Duration, random: f64) -> Next {
        self.next_within(failure_cause, None, poll, random)
    }

    /// [`RetryPolicy::next`], with a retry sooner than that when a gate that held the
    /// pass asked for one (`retry_after`, e.g. the fleet lock's own backoff).
    pub fn next_within(
        &mut self,
        failure_cause: Option<&str>,
        retry_after: Option<Duration>,
        poll: Duration,
        random: f64,
    ) -> Next {
        match (self.decide(failure_cause, poll, random), retry_after) {
            (Next::RequeueAfter { delay, retry }, Some(d)) => Next::RequeueAfter {
                delay: delay.min(d),
                retry,
            },
            (next, _) => next,
        }
    }

    fn decide(&mut self, failure_cause: Option<&str>, poll: Duration, random: f64) -> Next {
        let poll = jittered(poll, self.jitter, random);
        match failure_cause {
            Some(reason::NO_DESIRED_STATE) => {
                self.backoff.succeeded();
                Next::AwaitChange
            }
            Some(cause) => Next::RequeueAfter {
                delay: self.backoff.failed(cause).min(poll),
                retry: true,
            },
            None => {
                self.backoff.succeeded();
                Next::RequeueAfter {
                    delay: poll,
                    retry: false,
                }
            }
        }
    }
}

/// True for triggers that run at once even while a failure backs off: operator intent
/// (start-up, a changed desired.toml, `legerctl reconcile`). Drift and polls wait.
pub fn bypasses_backoff(trigger_label: &str) -> bool {
    matches!(trigger_label, "startup" | "desired-changed" | "manual")
}

/// The poll interval with up to `fraction` of it added, from a `random` value in [0, 1).
pub fn jittered(interval: Duration, fraction: f64, random: f64) -> Duration {
    interval + interval.mul_f64(fraction * random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(300)),
            jitter: 0.1,
        }
    }

    #[test]
    fn retry_backs_off_per_cause_and_never_past_a_poll() {
        let mut p = policy();
        let poll = Duration::from_secs(10);
        let n = |d| Next::RequeueAfter {
            delay: Duration::from_secs(d),
            retry: true,
        };
        assert_eq!(p.next(Some("SourceUnavailable"), poll, 0.0), n(2));
        assert_eq!(p.next(Some("SourceUnavailable"), poll, 0.0), n(4));
        assert_eq!(p.next(Some("UnitFailed"), poll, 0.0), n(2));
        assert_eq!(p.next(Some("SourceUnavailable"), poll, 0.0), n(8));
        assert_eq!(p.next(Some("SourceUnavailable"), poll, 0.0), n(10));
        let ok = p.next(None, poll, 0.5);
        assert_eq!(ok.delay(), Some(Duration::from_millis(10_500)));
        assert!(!ok.is_retry());
        assert_eq!(p.next(Some("SourceUnavailable"), poll, 0.0), n(2));
    }

    /// A gate that held the pass (the fleet lock) may ask for an earlier look than the
    /// backoff or the poll would give; never a later one, and never instead of
    /// awaiting a change.
    #[test]
    fn retry_takes_a_gates_earlier_retry() {
        let mut p = policy();
        let poll = Duration::from_secs(60);
        let soon = Some(Duration::from_secs(5));
        let next = p.next_within(None, soon, poll, 0.0);
        assert_eq!(next.delay(), Some(Duration::from_secs(5)));
        assert!(!next.is_retry());
        let late = Some(Duration::from_secs(600));
        assert_eq!(
            p.next_within(Some("SourceUnavailable"), late, poll, 0.0)
                .delay(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.next_within(Some(reason::NO_DESIRED_STATE), soon, poll, 0.0),
            Next::AwaitChange
        );
    }

    #[test]
    fn jitter_stays_within_fraction() {
        let i = Duration::from_secs(100);
        assert_eq!(jittered(i, 0.1, 0.0), i);
        assert_eq!(jittered(i, 0.1, 0.5), Duration::from_secs(105));
        assert!(jittered(i, 0.1, 7.0) <= Duration::from_secs(110));
    }

    #[test]
    fn retry_awaits_a_change_without_desired_state() {
        assert_eq!(
            policy().next(Some(reason::NO_DESIRED_STATE), Duration::from_secs(60), 0.3),
            Next::AwaitChange
        );
    }

    #[test]
    fn retry_lets_only_operator_triggers_cut_a_backoff_short() {
        assert!(bypasses_backoff("manual"));
        assert!(bypasses_backoff("desired-changed"));
        assert!(!bypasses_backoff("drift-unit:web.service"));
        assert!(!bypasses_backoff("poll"));
    }
}

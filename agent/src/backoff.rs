//! Per-cause exponential backoff that resets on success.
//!
//! kube-runtime backs off per object but not per cause (kube-rs#1916). Here a source
//! outage and a broken unit back off independently: an unreachable git server must not
//! slow down the retry of a unit that just failed for another reason, and the first
//! success clears every counter.

use std::collections::HashMap;
use std::time::Duration;

/// Retry delays by cause.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempts: HashMap<String, u32>,
}

impl Backoff {
    /// A backoff whose first delay is `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempts: HashMap::new(),
        }
    }

    /// Records a failure of `cause` and returns how long to wait before retrying.
    pub fn failed(&mut self, cause: &str) -> Duration {
        let n = self.attempts.entry(cause.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32
            .checked_shl(n.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Forgets every failure.
    pub fn succeeded(&mut self) {
        self.attempts.clear();
    }

    /// True while any cause has failed since the last success.
    pub fn is_backing_off(&self) -> bool {
        !self.attempts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_cause_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(30));
        assert_eq!(b.failed("source"), Duration::from_secs(2));
        assert_eq!(b.failed("source"), Duration::from_secs(4));
        assert_eq!(b.failed("source"), Duration::from_secs(8));
        // Another cause starts from the beginning.
        assert_eq!(b.failed("unit"), Duration::from_secs(2));
        assert_eq!(b.failed("source"), Duration::from_secs(16));
        assert_eq!(b.failed("source"), Duration::from_secs(30));
        for _ in 0..100 {
            assert_eq!(b.failed("source"), Duration::from_secs(30));
        }
    }

    #[test]
    fn backoff_resets_on_success() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        b.failed("x");
        b.failed("x");
        assert!(b.is_backing_off());
        b.succeeded();
        assert!(!b.is_backing_off());
        assert_eq!(b.failed("x"), Duration::from_secs(1));
    }
}

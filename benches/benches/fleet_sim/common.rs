//! What every part of the fleet simulation shares: the poll schedule, a deterministic
//! random source, percentiles, and a bounded pool of worker threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The poll interval of every simulated host, and legerd's default jitter.
pub const POLL: Duration = Duration::from_secs(60);
pub const JITTER: f64 = 0.1;

/// The 99th percentile of durations in ns; zero for none.
pub fn p99(mut v: Vec<u64>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    Duration::from_nanos(v[(v.len() * 99 / 100).min(v.len() - 1)])
}

/// The mean of durations in ns; zero for none.
pub fn mean(v: &[u64]) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_nanos(v.iter().sum::<u64>() / v.len() as u64)
}

/// A tiny deterministic generator, so runs are comparable.
pub struct Rng(pub u64);
impl Rng {
    /// A value in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `f` over every host index on `threads` threads, in the order given. Why a
/// fixed number of threads: each one is a client that polls, so the open connections
/// (and file descriptors) stay bounded however many hosts are simulated.
pub fn in_order(order: &[usize], threads: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&h) = order.get(i) else { break };
                    f(h);
                }
            });
        }
    });
}

/// Mean interval between two polls of one host with `jitter`.
pub fn mean_interval(poll: Duration, jitter: f64) -> Duration {
    poll.mul_f64(1.0 + jitter / 2.0)
}

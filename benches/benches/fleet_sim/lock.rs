//! A rollout of 10,000 hosts through FleetLock slots: the real `FleetLockClient`, the
//! gate's real retry formula, and the e2e FleetLock server on 127.0.0.1, on a
//! simulated clock.
//!
//! Why some refusals are inferred: with 1 slot and a 60 s retry cap, a rollout of
//! 10,000 hosts is about 33 million refused asks, hours of real requests on this
//! machine. A full semaphore stays full until a holder releases, so after the server
//! has refused a host (for real), every ask before the next release would be refused
//! too. Those asks are counted, and one in `CHECK_EVERY` of them is still sent for
//! real and must be refused, or the bench fails. Every grant and every release is a
//! real request, and so is the first ask after every release.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use legerd::fleet::fleetlock::FleetLockClient;
use legerd::fleet::lock::LockError;
use legerd::fleet::{RetrySettings, retry_delay};
use legerd::pass::retry::jittered;

use crate::common::{JITTER, POLL, Rng, mean, p99};

/// How long one host's disruptive apply holds its slot, from `APPLY_MIN` to
/// `APPLY_MAX` (uniform): stopping and starting the container, legerd's default 10 s
/// health settle, and the health checks; the image is pulled before the slot is taken.
const APPLY_MIN: Duration = Duration::from_secs(15);
const APPLY_MAX: Duration = Duration::from_secs(25);
/// Connection pools shared by all simulated hosts, round robin.
const CLIENT_POOLS: usize = 16;
/// One inferred refusal in this many is sent for real, and must be refused.
const CHECK_EVERY: u64 = 1000;

/// The gate's defaults (`reconcile.backoff_initial`, `backoff_max`).
const RETRY: RetrySettings = RetrySettings {
    initial: Duration::from_secs(2),
    max: Duration::from_secs(300),
};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Ask,
    Release,
}

/// What one rollout cost.
struct Tally {
    real: u64,
    refused_real: u64,
    refused_inferred: u64,
    checked: u64,
    rtt_ns: Vec<u64>,
    end: Duration,
}

/// Rolls `hosts` out through `slots` slots; appends one line to `out`.
pub fn run(rt: &tokio::runtime::Runtime, hosts: usize, slots: usize, out: &mut String) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = leger_e2e::fleet_server::state(slots, None);
    rt.spawn(leger_e2e::fleet_server::serve(listener, Arc::clone(&state)));
    let pools: Vec<FleetLockClient> = (0..CLIENT_POOLS)
        .map(|_| FleetLockClient::new(&url, "pool", "default"))
        .collect();
    let clients: Vec<FleetLockClient> = (0..hosts)
        .map(|h| pools[h % CLIENT_POOLS].for_host(&format!("h{h}")))
        .collect();
    let mut rng = Rng(0xf1ee7 + slots as u64);
    // Each host notices the new revision at its next poll.
    let mut events: BinaryHeap<Reverse<(Duration, usize, Step)>> = (0..hosts)
        .map(|h| Reverse((POLL.mul_f64(rng.next()), h, Step::Ask)))
        .collect();
    let mut attempts = vec![0u32; hosts];
    let mut tally = Tally {
        real: 0,
        refused_real: 0,
        refused_inferred: 0,
        checked: 0,
        rtt_ns: Vec::new(),
        end: Duration::ZERO,
    };
    // True from a real refusal until the next release.
    let mut full = false;
    let t0 = Instant::now();
    rt.block_on(async {
        while let Some(Reverse((at, h, step))) = events.pop() {
            if step == Step::Release {
                let sent = Instant::now();
                clients[h]
                    .steady_state()
                    .await
                    .unwrap_or_else(|e| panic!("h{h} could not release its slot: {e}"));
                tally.rtt_ns.push(sent.elapsed().as_nanos() as u64);
                tally.real += 1;
                full = false;
                tally.end = tally.end.max(at);
                continue;
            }
            let refused = if full {
                tally.refused_inferred += 1;
                if tally.refused_inferred.is_multiple_of(CHECK_EVERY) {
                    tally.checked += 1;
                    tally.real += 1;
                    match clients[h].pre_reboot().await {
                        Err(LockError::Refused { .. }) => {}
                        other => panic!(
                            "a full semaphore must refuse h{h} until a release, got {other:?}"
                        ),
                    }
                }
                true
            } else {
                let sent = Instant::now();
                let answer = clients[h].pre_reboot().await;
                tally.rtt_ns.push(sent.elapsed().as_nanos() as u64);
                tally.real += 1;
                match answer {
                    Ok(()) => false,
                    // Only the protocol's refusal is a refusal; anything else means
                    // the bench measures something broken.
                    Err(LockError::Refused { .. }) => {
                        tally.refused_real += 1;
                        full = true;
                        true
                    }
                    Err(e) => panic!("h{h}: the lock server did not answer: {e}"),
                }
            };
            if refused {
                attempts[h] += 1;
                // The gate's retry delay, capped like the pass: never past a poll.
                let d = retry_delay(RETRY, attempts[h], rng.next()).min(jittered(
                    POLL,
                    JITTER,
                    rng.next(),
                ));
                events.push(Reverse((at + d, h, Step::Ask)));
            } else {
                let apply = APPLY_MIN + (APPLY_MAX - APPLY_MIN).mul_f64(rng.next());
                events.push(Reverse((at + apply, h, Step::Release)));
            }
        }
    });
    let server = state.lock().unwrap();
    let grants = server.log.iter().filter(|e| e.op == "grant").count();
    assert_eq!(grants, hosts, "every host got exactly one slot");
    assert!(server.holders.values().all(Vec::is_empty), "all released");
    drop(server);
    let asks = tally.real - hosts as u64 + tally.refused_inferred - tally.checked;
    let mean_apply = (APPLY_MIN + APPLY_MAX) / 2;
    // Hosts notice the new revision over one poll interval, and each holds its slot
    // for the apply: the rollout cannot be shorter than either bound.
    let bound = (mean_apply.as_secs_f64() * (hosts as f64 / slots as f64).ceil())
        .max(POLL.as_secs_f64() + mean_apply.as_secs_f64());
    let minutes = tally.end.as_secs_f64() / 60.0;
    let _ = writeln!(
        out,
        "  {slots:>4} slot(s): rollout {} simulated (bound {}); {asks} asks + {hosts} releases = {:.1} lock requests per host, {:.0} requests/s on average; {} refused for real, {} refused inferred ({} of them checked for real); client round trip p99 {:?} (mean {:?}) over {} real requests; ran in {:.1?}",
        human(minutes),
        human(bound / 60.0),
        (asks + hosts as u64) as f64 / hosts as f64,
        (asks + hosts as u64) as f64 / tally.end.as_secs_f64().max(1.0),
        tally.refused_real,
        tally.refused_inferred,
        tally.checked,
        p99(tally.rtt_ns.clone()),
        mean(&tally.rtt_ns),
        tally.real,
        t0.elapsed()
    );
}

/// Minutes as `42.0 min` or `55.6 h`.
fn human(minutes: f64) -> String {
    if minutes >= 120.0 {
        format!("{:.1} h", minutes / 60.0)
    } else {
        format!("{minutes:.1} min")
    }
}

/// `APPLY_MIN`..`APPLY_MAX`, for the report's heading.
pub fn apply_range() -> String {
    format!("{}-{}s", APPLY_MIN.as_secs(), APPLY_MAX.as_secs())
}

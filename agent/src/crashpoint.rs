//! Crash points: named places where legerd can be made to die with SIGKILL, so tests
//! prove that a kill at any instant of an apply leaves a host the next start can
//! converge.
//!
//! Off unless the environment variable `LEGERD_CRASH_AT` names a point as
//! `NAME` (its first hit) or `NAME#N` (its N-th hit). It exists for the crash tests on
//! the test bed; nobody sets it in production, and when unset each point costs one
//! relaxed atomic load.
//!
//! `LEGERD_WEDGE_AT=NAME` instead blocks the thread that reaches the point for good (a
//! wedged legerd, for the watchdog test).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The point and hit number to die at, parsed once.
fn target() -> &'static Option<(String, u32)> {
    static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
    TARGET.get_or_init(|| {
        let spec = std::env::var("LEGERD_CRASH_AT").ok()?;
        let (name, n) = match spec.split_once('#') {
            Some((name, n)) => (name.to_owned(), n.parse().ok()?),
            None => (spec, 1),
        };
        Some((name, n))
    })
}

static HITS: AtomicU32 = AtomicU32::new(0);

/// The point to wedge at (`LEGERD_WEDGE_AT=NAME`), parsed once.
fn wedge_target() -> &'static Option<String> {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    TARGET.get_or_init(|| std::env::var("LEGERD_WEDGE_AT").ok())
}

/// Blocks the calling thread for good, as a bug that blocks a runtime worker would:
/// the pass can then never be abandoned, and only the watchdog gets legerd back.
/// The watchdog e2e test uses it; nobody sets `LEGERD_WEDGE_AT` in production.
fn wedge(name: &str) {
    eprintln!("legerd: LEGERD_WEDGE_AT={name}: blocking this thread for good");
    loop {
        std::thread::park();
    }
}

/// Marks a crash point. Kills the process with SIGKILL (as `kill -9` would: nothing
/// after this line runs, no destructor, no flush) when it is the configured one.
pub fn hit(name: &str) {
    if wedge_target().as_deref() == Some(name) {
        wedge(name);
    }
    let Some((want, nth)) = target() else { return };
    if want != name {
        return;
    }
    if HITS.fetch_add(1, Ordering::Relaxed) + 1 == *nth {
        eprintln!("legerd: LEGERD_CRASH_AT={name}#{nth}: killing myself with SIGKILL");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

//! Blocking work off the async runtime's workers.
//!
//! SQLite writes, hashing, the generator, gix and the revision store block a thread
//! for as long as they take. legerd runs two async workers; a pass that blocked one
//! would stall the API (`legerctl status`) and unit events meanwhile. Every such call
//! in the pass goes through here, onto tokio's blocking pool.

use std::sync::{Arc, Mutex};

use crate::store::Store;

/// Runs `f` on the blocking pool and waits for it. A panic in `f` is re-raised here:
/// it is a bug, not an error to report.
pub async fn run<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task was cancelled: {e}"),
    }
}

/// Runs `f` with the store locked, on the blocking pool.
pub async fn store<T, F>(store: &Arc<Mutex<Store>>, f: F) -> T
where
    F: FnOnce(&Store) -> T + Send + 'static,
    T: Send + 'static,
{
    let store = Arc::clone(store);
    run(move || f(&store.lock().expect("store lock"))).await
}

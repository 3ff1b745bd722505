//! The fleet gate of a pass: a disruptive pass takes a restart slot before it applies,
//! and gives it back once the health gate of that apply has passed.
//!
//! When the health gate fails, the host rolls back and **keeps** the slot: with one
//! slot per group, no other host starts the bad revision, so a bad rollout stops at
//! its first host. The slot goes back after the holder's next successful disruptive
//! apply of a new target (a fixed revision), or when an operator runs
//! `legerctl fleet release`.
//!
//! A held slot is recorded in SQLite (the `meta` table) before the apply starts, so a
//! restart of legerd neither forgets it nor releases it early.
//!
//! [`FleetGate`] keeps its state behind a mutex that is never held across a request,
//! so the pass (through [`FleetLockGate`], its [`Gate`]), status and the API's release
//! share one instance.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use leger_api_types::fleet::{FleetStatus, LockState, LockStatus};
use leger_api_types::status::reason;
use leger_config::fleet::FleetSettings;
use serde::{Deserialize, Serialize};

use super::disruption::{Disruption, disruption};
use super::lock::{LockError, SlotLock};
use crate::metrics::Metrics;
use crate::pass::blocking;
use crate::pass::converge::Mode;
use crate::pass::gate::{Gate, GateFuture, GateInput, GateVerdict};
use crate::store::{Store, now_rfc3339};

/// The `meta` key of the held-slot record.
const META_KEY: &str = "fleet_lock";

/// Why a slot is held.
pub mod held_reason {
    /// A disruptive apply is under way, or its release did not get through yet.
    pub const ROLLOUT: &str = "rollout";
    /// Its health gate failed; kept so the rollout stops here.
    pub const ROLLED_BACK: &str = "rolled_back";
}

/// What SQLite keeps about a held slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HeldRecord {
    since: String,
    reason: String,
    /// The service it was taken from, for status.
    service: String,
}

/// What changes between passes.
#[derive(Debug, Default)]
struct GateState {
    held: Option<HeldRecord>,
    /// True between a refused acquire and the next yes.
    waiting: bool,
    /// The lock service's last answer that was not a yes.
    last_answer: Option<String>,
    /// Refused acquires in a row, for the retry backoff.
    attempts: u32,
}

/// How long a waiting host waits before asking again.
#[derive(Debug, Clone, Copy)]
pub struct RetrySettings {
    /// After the first refusal.
    pub initial: Duration,
    /// At most (the pass's poll interval caps it further).
    pub max: Duration,
}

/// How long a host waits after its `attempts`-th refused acquire: doubling from
/// `initial` up to `max`, plus up to half again at random (`random` in [0, 1)), so
/// waiting hosts do not ask in step. The pass's poll interval caps it further.
pub fn retry_delay(retry: RetrySettings, attempts: u32, random: f64) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1).min(16))
        .unwrap_or(u32::MAX);
    let base = retry.initial.saturating_mul(factor).min(retry.max);
    crate::pass::retry::jittered(base, 0.5, random)
}

/// The gate, one per legerd.
#[derive(Debug)]
pub struct FleetGate {
    host: String,
    groups: Vec<String>,
    group: Option<String>,
    lock: Option<SlotLock>,
    store: Arc<Mutex<Store>>,
    metrics: RwLock<Arc<Metrics>>,
    retry: RetrySettings,
    state: Mutex<GateState>,
}

impl FleetGate {
    /// The gate of `settings`, with any held slot read back from the store.
    pub fn new(
        settings: &FleetSettings,
        retry: RetrySettings,
        store: Arc<Mutex<Store>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let lock = settings
            .lock
            .as_ref()
            .map(|l| SlotLock::new(l, &settings.host));
        let held = store
            .lock()
            .expect("store lock")
            .meta(META_KEY)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_str::<HeldRecord>(&v).ok());
        metrics.set_fleet_lock_held(held.is_some());
        FleetGate {
            host: settings.host.clone(),
            groups: settings.groups.clone(),
            group: settings.lock.as_ref().map(|l| l.group.clone()),
            lock,
            store,
            metrics: RwLock::new(metrics),
            retry,
            state: Mutex::new(GateState {
                held,
                ..GateState::default()
            }),
        }
    }

    /// Reports into `metrics` from now on (the one `GET /metrics` serves).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        metrics.set_fleet_lock_held(self.holds_slot());
        metrics.set_fleet_lock_waiting(self.state().waiting);
        *self.metrics.write().expect("metrics lock") = metrics;
    }

    /// True while this host holds a slot.
    pub fn holds_slot(&self) -> bool {
        self.state().held.is_some()
    }

    /// Before an apply: `Ok` to go ahead; `Err((message, retry after))` to wait with
    /// nothing applied. Only a disruptive pass asks; a holder goes ahead at once.
    pub async fn before_apply(&self, d: &Disruption) -> Result<(), (String, Duration)> {
        let Some(lock) = &self.lock else {
            return Ok(());
        };
        if !d.needs_slot() || self.holds_slot() {
            self.stop_waiting();
            return Ok(());
        }
        let result = lock.acquire().await;
        self.count("acquire", &result);
        match result {
            Ok(()) => {
                {
                    let mut s = self.state();
                    s.waiting = false;
                    s.last_answer = None;
                    s.attempts = 0;
                }
                self.metrics().set_fleet_lock_waiting(false);
                self.hold(held_reason::ROLLOUT).await;
                tracing::info!(units = %d.describe(), "took a restart slot from the fleet lock");
                Ok(())
            }
            Err(e) => {
                let attempts = {
                    let mut s = self.state();
                    s.waiting = true;
                    s.last_answer = Some(e.to_string());
                    s.attempts = s.attempts.saturating_add(1);
                    s.attempts
                };
                self.metrics().set_fleet_lock_waiting(true);
                let retry = retry_delay(self.retry, attempts, rand::random());
                Err((
                    format!(
                        "waiting for a restart slot before restarting {}: {e}",
                        d.describe()
                    ),
                    retry,
                ))
            }
        }
    }

    /// After the health gate of an apply passed. A slot taken for a rollout goes back
    /// after its disruptive apply. A slot kept from a failed rollout goes back only
    /// after a pass that applied a new target (a fixed revision, a pin) and passed its
    /// gate, disruptive or not (the unit may still be down from the failure); passes
    /// that only hold the last good revision prove nothing and keep it.
    pub async fn after_healthy(&self, disruptive: bool, new_target: bool, changed: bool) {
        self.stop_waiting();
        let keep = {
            let s = self.state();
            match &s.held {
                None => true,
                Some(h) if h.reason == held_reason::ROLLED_BACK => !(new_target && changed),
                Some(_) => !disruptive,
            }
        };
        if !keep {
            let _ = self.release().await;
        }
    }

    /// After a failed health gate: a held slot is kept, so the rollout stops here.
    pub async fn after_failed_gate(&self) {
        self.stop_waiting();
        let held = self.holds_slot();
        if held {
            self.hold(held_reason::ROLLED_BACK).await;
        }
    }

    /// Gives the slot back (`legerctl fleet release`, or after a good apply). The
    /// record is cleared only once the service said yes.
    pub async fn release(&self) -> Result<String, LockError> {
        let Some(lock) = &self.lock else {
            self.clear().await;
            return Ok("no fleet lock is configured ([fleet.lock]); nothing to release".to_owned());
        };
        let service = lock.describe();
        let result = lock.release().await;
        self.count("release", &result);
        match result {
            Ok(()) => {
                let had = self.holds_slot();
                self.clear().await;
                tracing::info!("released the restart slot");
                Ok(if had {
                    format!("released the restart slot of {} at {service}", self.host)
                } else {
                    format!(
                        "{} held no slot on record; told {service} it is in steady state anyway",
                        self.host
                    )
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release the restart slot; keeping it on record");
                self.state().last_answer = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Fleet status: host, groups, lock state.
    pub fn status(&self) -> FleetStatus {
        let s = self.state();
        FleetStatus {
            host: self.host.clone(),
            groups: self.groups.clone(),
            lock: self.lock.as_ref().map(|l| LockStatus {
                service: l.describe(),
                group: self.group.clone().unwrap_or_default(),
                state: if s.held.is_some() {
                    LockState::Held
                } else if s.waiting {
                    LockState::Waiting
                } else {
                    LockState::Free
                },
                held_since: s.held.as_ref().map(|h| h.since.clone()),
                held_reason: s.held.as_ref().map(|h| h.reason.clone()),
                last_answer: s.last_answer.clone(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().expect("fleet gate lock")
    }

    /// The pass got past the gate (or no longer needs it): no longer waiting.
    fn stop_waiting(&self) {
        self.state().waiting = false;
        self.metrics().set_fleet_lock_waiting(false);
    }

    fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics.read().expect("metrics lock"))
    }

    /// Records the held slot (a SQLite write, on the blocking pool).
    async fn hold(&self, reason: &str) {
        let record = HeldRecord {
            since: self
                .state()
                .held
                .as_ref()
                .map_or_else(now_rfc3339, |h| h.since.clone()),
            reason: reason.to_owned(),
            service: self
                .lock
                .as_ref()
                .map(SlotLock::describe)
                .unwrap_or_default(),
        };
        let json = serde_json::to_string(&record).expect("a record serializes");
        if let Err(e) = blocking::store(&self.store, move |s| s.set_meta(META_KEY, &json)).await {
            tracing::error!(error = %e, "cannot record the held restart slot");
        }
        self.state().held = Some(record);
        self.metrics().set_fleet_lock_held(true);
    }

    /// Forgets the held slot (a SQLite write, on the blocking pool).
    async fn clear(&self) {
        if let Err(e) = blocking::store(&self.store, |s| s.set_meta(META_KEY, "")).await {
            tracing::error!(error = %e, "cannot clear the restart slot record");
        }
        {
            let mut s = self.state();
            s.held = None;
            s.last_answer = None;
        }
        self.metrics().set_fleet_lock_held(false);
    }

    fn count(&self, op: &'static str, result: &Result<(), LockError>) {
        let label = match result {
            Ok(()) => "ok",
            Err(e) => e.result_label(),
        };
        self.metrics().record_fleet_lock(op, label);
    }
}

/// The fleet lock as a [`Gate`] of the pass.
#[derive(Debug, Clone)]
pub struct FleetLockGate(pub Arc<FleetGate>);

impl Gate for FleetLockGate {
    fn name(&self) -> &'static str {
        "fleet-lock"
    }

    fn check<'a>(&'a self, input: GateInput<'a>) -> GateFuture<'a, GateVerdict> {
        Box::pin(async move {
            let d = disruption(input.plan, input.observed);
            match self.0.before_apply(&d).await {
                Ok(()) => GateVerdict::Proceed,
                Err((message, retry)) => GateVerdict::Wait {
                    reason: reason::WAITING_FOR_FLEET_LOCK,
                    message,
                    retry_after: Some(retry),
                },
            }
        })
    }

    /// After the apply: healthy → give a disruptive pass's slot back; unhealthy → keep
    /// it. Called without a verdict (a later gate waited) it keeps what it holds.
    fn release<'a>(&'a self, input: GateInput<'a>) -> GateFuture<'a, ()> {
        Box::pin(async move {
            match input.healthy {
                Some(true) => {
                    let d = disruption(input.plan, input.observed);
                    let new_target = !matches!(input.mode, Mode::HoldLastGood | Mode::Restore(_));
                    self.0
                        .after_healthy(d.needs_slot(), new_target, !input.plan.is_empty())
                        .await;
                }
                Some(false) => self.0.after_failed_gate().await,
                None => {}
            }
        })
    }
}

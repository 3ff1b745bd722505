//! The fleet gate of a pass: a disruptive pass takes a restart slot before it applies,
//! and gives it back once the health gate of that apply has passed.
//!
//! When the health gate fails, the host rolls back and **keeps** the slot: with one
//! slot per group, no other host starts the bad revision, so a bad rollout stops at
//! its first host. The slot goes back after the holder's next successful disruptive
//! apply (a fixed revision), or when an operator runs `legerctl fleet release`.
//!
//! A held slot is recorded in SQLite (the `meta` table) before the apply starts, so a
//! restart of legerd neither forgets it nor releases it early.

use std::sync::{Arc, Mutex};

use leger_api_types::fleet::{FleetStatus, LockState, LockStatus};
use leger_config::fleet::FleetSettings;
use serde::{Deserialize, Serialize};

use super::disruption::Disruption;
use super::lock::{LockError, SlotLock};
use crate::metrics::Metrics;
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
    /// The service it was taken from; a slot of another service is not ours to trust.
    service: String,
}

/// The gate, one per legerd.
#[derive(Debug)]
pub struct FleetGate {
    host: String,
    groups: Vec<String>,
    group: Option<String>,
    lock: Option<SlotLock>,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    held: Option<HeldRecord>,
    /// True between a refused acquire and the next yes.
    waiting: bool,
    /// The lock service's last answer that was not a yes.
    last_answer: Option<String>,
}

impl FleetGate {
    /// The gate of `settings`, with any held slot read back from the store.
    pub fn new(settings: &FleetSettings, store: Arc<Mutex<Store>>, metrics: Arc<Metrics>) -> Self {
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
            metrics,
            held,
            waiting: false,
            last_answer: None,
        }
    }

    /// True while this host holds a slot.
    pub fn holds_slot(&self) -> bool {
        self.held.is_some()
    }

    /// Before an apply: `Ok` to go ahead, `Err(message)` to wait (nothing applied).
    /// Only a disruptive pass asks; a host that holds its slot already goes ahead.
    pub async fn before_apply(&mut self, d: &Disruption) -> Result<(), String> {
        let Some(lock) = &self.lock else {
            return Ok(());
        };
        if !d.needs_slot() || self.held.is_some() {
            return Ok(());
        }
        let result = lock.acquire().await;
        self.count("acquire", &result);
        match result {
            Ok(()) => {
                self.waiting = false;
                self.last_answer = None;
                self.hold(held_reason::ROLLOUT);
                tracing::info!(units = %d.describe(), "took a restart slot from the fleet lock");
                Ok(())
            }
            Err(e) => {
                self.waiting = true;
                self.last_answer = Some(e.to_string());
                Err(format!(
                    "waiting for a restart slot before restarting {}: {e}",
                    d.describe()
                ))
            }
        }
    }

    /// After the health gate of an apply passed. A slot held for a disruptive apply
    /// (or kept from a failed rollout) goes back now; a non-disruptive success keeps a
    /// slot kept after a failure, since nothing proved the fix yet.
    pub async fn after_healthy(&mut self, disruptive: bool) {
        self.waiting = false;
        if self.held.is_some() && disruptive {
            self.release().await.ok();
        }
    }

    /// After a failed health gate: a held slot is kept, so the rollout stops here.
    pub fn after_failed_gate(&mut self) {
        self.waiting = false;
        if self.held.is_some() {
            self.hold(held_reason::ROLLED_BACK);
        }
    }

    /// Gives the slot back (`legerctl fleet release`, or after a good apply). The
    /// record is cleared only once the service said yes.
    pub async fn release(&mut self) -> Result<String, LockError> {
        let Some(lock) = &self.lock else {
            self.clear();
            return Ok("no fleet lock is configured; nothing to release".to_owned());
        };
        let service = lock.describe();
        let result = lock.release().await;
        self.count("release", &result);
        match result {
            Ok(()) => {
                let had = self.held.is_some();
                self.clear();
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
                tracing::warn!(error = %e, "could not release the restart slot; keeping it on record and retrying after the next good apply");
                self.last_answer = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Fleet status: host, groups, lock state.
    pub fn status(&self) -> FleetStatus {
        FleetStatus {
            host: self.host.clone(),
            groups: self.groups.clone(),
            lock: self.lock.as_ref().map(|l| LockStatus {
                service: l.describe(),
                group: self.group.clone().unwrap_or_default(),
                state: if self.held.is_some() {
                    LockState::Held
                } else if self.waiting {
                    LockState::Waiting
                } else {
                    LockState::Free
                },
                held_since: self.held.as_ref().map(|h| h.since.clone()),
                held_reason: self.held.as_ref().map(|h| h.reason.clone()),
                last_answer: self.last_answer.clone(),
            }),
        }
    }

    fn hold(&mut self, reason: &str) {
        let record = HeldRecord {
            since: self
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
        if let Err(e) = self
            .store
            .lock()
            .expect("store lock")
            .set_meta(META_KEY, &json)
        {
            tracing::error!(error = %e, "cannot record the held restart slot");
        }
        self.held = Some(record);
        self.metrics.set_fleet_lock_held(true);
    }

    fn clear(&mut self) {
        if let Err(e) = self
            .store
            .lock()
            .expect("store lock")
            .set_meta(META_KEY, "")
        {
            tracing::error!(error = %e, "cannot clear the restart slot record");
        }
        self.held = None;
        self.last_answer = None;
        self.metrics.set_fleet_lock_held(false);
    }

    fn count(&self, op: &'static str, result: &Result<(), LockError>) {
        let label = match result {
            Ok(()) => "ok",
            Err(e) => e.result_label(),
        };
        self.metrics.record_fleet_lock(op, label);
    }
}

//! Restart slots: a FleetLock server or an etcd semaphore, behind one small enum.
//!
//! Both backends answer the same two questions (may this host take a slot now; give
//! it back) with the same errors, so the gate in the pass does not care which one a
//! fleet runs. **Invariant:** only an answer that is exactly the protocol's "yes"
//! becomes `Ok`; anything else (a refusal, an unreachable server, an answer in another
//! language) is an error, and the caller waits.

use std::time::Duration;

use leger_config::fleet::{FleetLockSettings, LockBackend};

use super::{etcd::EtcdSemaphore, fleetlock::FleetLockClient};

/// Why a slot was not taken or not given back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The lock service answered and said no (all slots are taken, or it refused
    /// this host); `kind` and `value` are its own words.
    #[error("{service} refused: {kind}: {value}")]
    Refused {
        /// Which service, e.g. `FleetLock server http://192.0.2.1:8080`.
        service: String,
        /// The protocol's error kind, e.g. `failed_lock`.
        kind: String,
        /// Its message.
        value: String,
    },
    /// The service could not be reached or timed out; waiting is the only safe answer.
    #[error("{service} is unreachable: {reason}; waiting for it")]
    Unreachable {
        /// Which service.
        service: String,
        /// The transport error.
        reason: String,
    },
    /// The answer was not the protocol's; it is never taken as a go-ahead.
    #[error("{service} did not answer in the {protocol} protocol: {problem}; {hint}")]
    Protocol {
        /// Which service.
        service: String,
        /// `FleetLock` or `etcd v3 JSON`, so the message names what was expected.
        protocol: &'static str,
        /// What was wrong with the answer.
        problem: String,
        /// Which setting to check, and what it must point at.
        hint: &'static str,
    },
}

impl LockError {
    /// The `result` label of `legerd_fleet_lock_requests_total`.
    pub fn result_label(&self) -> &'static str {
        match self {
            LockError::Refused { .. } => "refused",
            LockError::Unreachable { .. } => "unreachable",
            LockError::Protocol { .. } => "protocol_error",
        }
    }
}

/// The configured slot service.
#[derive(Debug, Clone)]
pub enum SlotLock {
    /// A FleetLock server.
    FleetLock(FleetLockClient),
    /// etcd directly.
    Etcd(EtcdSemaphore),
}

/// How long one request to the lock service may take; a hung server means waiting,
/// and the pass must not hang with it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

impl SlotLock {
    /// The lock of `settings` for host `id`.
    pub fn new(settings: &FleetLockSettings, id: &str) -> Self {
        match &settings.backend {
            LockBackend::FleetLock { url } => {
                SlotLock::FleetLock(FleetLockClient::new(url, id, &settings.group))
            }
            LockBackend::Etcd { endpoints, slots } => SlotLock::Etcd(EtcdSemaphore::new(
                endpoints.clone(),
                &settings.group,
                *slots,
                id,
            )),
        }
    }

    /// Takes a slot (re-entrant: a holder asking again gets `Ok`).
    pub async fn acquire(&self) -> Result<(), LockError> {
        match self {
            SlotLock::FleetLock(c) => c.pre_reboot().await,
            SlotLock::Etcd(e) => e.lock().await,
        }
    }

    /// Gives the slot back (a host that holds none gets `Ok`).
    pub async fn release(&self) -> Result<(), LockError> {
        match self {
            SlotLock::FleetLock(c) => c.steady_state().await,
            SlotLock::Etcd(e) => e.unlock().await,
        }
    }

    /// A description for status and errors.
    pub fn describe(&self) -> String {
        match self {
            SlotLock::FleetLock(c) => c.describe(),
            SlotLock::Etcd(e) => e.describe(),
        }
    }
}

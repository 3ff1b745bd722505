//! legerd in a fleet: restart slots (FleetLock or etcd), the gate around disruptive
//! passes, and deployment reports.

pub mod disruption;
pub mod etcd;
pub mod fleetlock;
pub mod gate;
pub mod lock;
pub mod report;

pub use disruption::{Disruption, disruption};
pub use gate::{FleetGate, FleetLockGate, RetrySettings, retry_delay};
pub use lock::{LockError, SlotLock};

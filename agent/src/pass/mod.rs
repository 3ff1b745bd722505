//! One reconcile pass as explicit stages, and the single converge path every host
//! change goes through.
//!
//! ```text
//!  desired.toml ─► fetch ─► choose ─► validate ─► converge(mode) ──────────────► record
//!                           (pure)    (cached)    │ observe → secrets → plan →
//!                                                 │ gates → backup → apply →
//!                                                 │ health → (good | blamed)
//!                                                 └─ blamed: record failed, converge(Rollback)
//! ```
//!
//! - [`choose`]: the pure decision between pin, approved, staged, fetched and holding
//!   the last good revision.
//! - [`validate`]: assemble plus the generator's dry run, cached per revision.
//! - [`observe`]: inventory, disk, units, the intent record of an interrupted apply.
//! - [`secrets`]: resolve and decide secrets (nothing written yet).
//! - `plan`: the pure planner ([`crate::plan`]).
//! - [`gate`]: what may hold a pass before it changes anything (suspend now, the fleet
//!   lock later).
//! - [`backup`]: files and volumes of the apps the plan touches.
//! - apply: [`crate::apply`], bracketed by the [`intent`] record.
//! - [`health`]: the health gate, judging only what the revision changed.
//! - [`record`]: revision states, history, journal, metrics.
//!
//! [`preview`] runs choose, validate, observe, secrets and plan without gates or apply,
//! for `legerctl plan`.
//!
//! [`converge::converge`] runs observe through health for every [`converge::Mode`]:
//! forward apply, approval, pin, hold-last-good, rollback and restore. None of them may
//! skip a stage; the mode only decides what a failed health gate means and, for a
//! restore, adds the volume import between the stops and the writes.
//!
//! [`retry`] turns a pass's result into its next action (requeue after a delay, or
//! await a change): the one place where errors map to retry delays.
//!
//! **Architecture invariant:** nothing under `pass/` depends on the reconciler, the
//! controller or the API. Stages talk to the host only through [`Host`] (the
//! `UnitManager` and `Podman` seams, the store, the settings), so a whole pass runs
//! in-process against recording doubles.

pub mod backup;
pub mod blocking;
pub mod choose;
pub mod completed;
pub mod converge;
pub mod fetch;
pub mod gate;
pub mod health;
pub mod intent;
pub mod observe;
pub mod preview;
pub mod record;
pub mod resources;
pub mod restore;
pub mod retry;
pub mod run;
pub mod secrets;
pub mod state;
pub mod validate;

use std::sync::{Arc, Mutex};

use leger_api_types::PassOutcome;
use leger_config::Settings;

use crate::metrics::Metrics;
use crate::revisions::RevisionStore;
use crate::store::Store;

pub use converge::Mode;
pub use gate::{Gate, GateInput, GateVerdict};
pub use retry::Next;
pub use run::PassResult;
pub use state::HostState;

/// How many validated revisions the revision store keeps for rollbacks and pins.
pub const REVISIONS_KEPT: usize = 10;

/// The seams a pass touches: systemd, the store, metrics, and where things live.
#[derive(Debug)]
pub struct Host<'a, U> {
    /// Paths, limits, health and backup settings.
    pub settings: &'a Settings,
    /// systemd (the recording double in tests).
    pub units: &'a U,
    /// Inventory, history, revision states, the intent record.
    pub store: &'a Arc<Mutex<Store>>,
    /// Where passes, fetches and applies are counted.
    pub metrics: &'a Metrics,
    /// Every podman and journal call (volumes, container health, a unit's last log
    /// lines); the recording double in tests.
    pub podman: &'a Arc<dyn crate::podman::Podman>,
}

impl<U> Host<'_, U> {
    /// legerd's own store of validated revisions, for rollbacks and pins.
    pub fn revision_store(&self) -> RevisionStore {
        RevisionStore::new(self.settings.paths.state_dir.join("revisions"))
    }

    /// The backups of managed files and volumes.
    pub fn backups(&self) -> crate::backup::Backups {
        crate::backup::Backups::new(
            self.settings.paths.state_dir.join("backups"),
            self.settings.backups.clone(),
        )
        .with_podman(Arc::clone(self.podman))
    }

    /// True when legerd manages the user's units (rootless).
    pub fn user_mode(&self) -> bool {
        self.settings.mode == leger_config::Mode::User
    }
}

/// A failed pass: the reason for status and retries, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A status reason (`leger_api_types::status::reason`).
    pub reason: &'static str,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// Stalled: legerd cannot make progress without outside help.
    pub stalled: bool,
    /// How the pass is recorded: `Failed`, or `RolledBack` (a failure too).
    pub outcome: PassOutcome,
}

impl Failure {
    /// A failure recorded as `Failed`.
    pub fn new(reason: &'static str, message: impl Into<String>, stalled: bool) -> Self {
        Failure {
            reason,
            message: message.into(),
            stalled,
            outcome: PassOutcome::Failed,
        }
    }
}

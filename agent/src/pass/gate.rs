//! Gates: what may hold a pass after it has planned and before it changes anything.
//!
//! A gate sees the plan and answers [`GateVerdict::Proceed`] or
//! [`GateVerdict::Wait`] with a reason. Today there is one, [`SuspendGate`]
//! (`policy.suspend`). The fleet lock (a later issue) is the next: it implements
//! [`Gate`], is added to the reconciler's gate list, takes a slot in
//! [`Gate::check`] when the plan is not empty, and gives it back in
//! [`Gate::release`] once the pass is over, whatever its outcome.
//!
//! Gates run for every converge mode except a rollback (putting the last good
//! revision back must never wait for a lock the failed revision could not finish
//! with) and before the backup, so a held pass takes no backup either.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use leger_api_types::DesiredState;
use leger_api_types::status::reason;

use super::converge::Mode;
use crate::model::{DesiredTree, Observed};
use crate::plan::Plan;

/// What a gate sees.
#[derive(Debug, Clone, Copy)]
pub struct GateInput<'a> {
    /// The plan the pass would apply.
    pub plan: &'a Plan,
    /// The revision it would apply.
    pub tree: &'a DesiredTree,
    /// Why it converges.
    pub mode: &'a Mode,
    /// The desired state in force.
    pub desired: &'a DesiredState,
    /// The host as observed before planning (unit states: is a unit running now).
    pub observed: &'a Observed,
    /// In [`Gate::release`]: whether the apply passed its health gate (`Some(true)`)
    /// or not; `None` in [`Gate::check`]. The fleet lock keeps its slot after a failure.
    pub healthy: Option<bool>,
}

/// A gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// Go on.
    Proceed,
    /// Do not change the host now.
    Wait {
        /// A status reason (`Suspended`, later for example `FleetLockHeld`).
        reason: &'static str,
        /// What is waited for, for people.
        message: String,
        /// Run the pass again after this long; `None` keeps the usual poll.
        retry_after: Option<Duration>,
    },
}

/// A boxed future, so gates can be kept as trait objects.
pub type GateFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that may hold a pass before it changes the host.
pub trait Gate: Send + Sync + std::fmt::Debug {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Decides whether the pass may apply `input.plan` now.
    fn check<'a>(&'a self, input: GateInput<'a>) -> GateFuture<'a, GateVerdict>;

    /// Called once the pass that passed [`Gate::check`] is over (applied, failed or
    /// rolled back), to give back what `check` took. The default holds nothing.
    fn release<'a>(&'a self, _input: GateInput<'a>) -> GateFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// `policy.suspend`: plan and report, change nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct SuspendGate;

impl Gate for SuspendGate {
    fn name(&self) -> &'static str {
        "suspend"
    }

    fn check<'a>(&'a self, input: GateInput<'a>) -> GateFuture<'a, GateVerdict> {
        let verdict = if input.desired.policy.suspend {
            GateVerdict::Wait {
                reason: reason::SUSPENDED,
                message: "policy.suspend is set: changes are planned, not applied".to_owned(),
                retry_after: None,
            }
        } else {
            GateVerdict::Proceed
        };
        Box::pin(async move { verdict })
    }
}

/// Runs `gates` in order; the first that waits wins. Gates that already passed are
/// released again when a later one waits, so none keeps a slot for a pass that does
/// not apply.
pub async fn check_all(gates: &[Box<dyn Gate>], input: GateInput<'_>) -> GateVerdict {
    for (i, gate) in gates.iter().enumerate() {
        let verdict = gate.check(input).await;
        if verdict != GateVerdict::Proceed {
            tracing::info!(gate = gate.name(), ?verdict, "a gate holds the pass");
            for passed in &gates[..i] {
                passed.release(input).await;
            }
            return verdict;
        }
    }
    GateVerdict::Proceed
}

/// Releases every gate after a pass that passed them all.
pub async fn release_all(gates: &[Box<dyn Gate>], input: GateInput<'_>) {
    for gate in gates {
        gate.release(input).await;
    }
}

/// The gates every reconciler starts with.
pub fn default_gates() -> Vec<Box<dyn Gate>> {
    vec![Box::new(SuspendGate)]
}

//! What legerd knows about the host between passes. The pass writes it; status is a
//! projection of it ([`crate::status`]), so nothing else renders status.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use leger_api_types::{AppStatus, PassRecord, StagedChange};

use super::Failure;

/// The host as the last pass left it.
#[derive(Debug, Default)]
pub struct HostState {
    /// The revision the source last gave.
    pub fetched_revision: Option<String>,
    /// The revision the host runs: the last one that passed its own health gate.
    pub applied_revision: Option<String>,
    /// The revision `policy.pin` holds the host at.
    pub pinned_revision: Option<String>,
    /// In staged mode, what applying the newest validated revision would do.
    pub staged: Option<StagedChange>,
    /// Apps and their units' states, read at the end of the last pass.
    pub apps: Vec<AppStatus>,
    /// The last pass, as recorded in history.
    pub last_pass: Option<PassRecord>,
    /// Why the last pass failed, if it did.
    pub last_failure: Option<Failure>,
    /// Set while a gate holds the pass (suspend, later the fleet lock): reason, message.
    pub held: Option<(&'static str, String)>,
    /// Units waiting for a missing secret, for the Ready condition.
    pub secrets_blocked: Option<String>,
    /// Units that ran to completion under their current files: inactive, not down.
    pub completed_units: BTreeSet<String>,
    /// Changes legerd cannot make without losing data (a changed `.volume`), by
    /// quadlet install key, until the file changes again or leaves the tree.
    pub resource_drift: super::resources::UnhealableDrift,
    /// A pass is running now.
    pub reconciling: bool,
    /// The set of managed unit names, shared with the unit event filter.
    pub managed_units: Arc<RwLock<BTreeSet<String>>>,
    /// When the last pass that observed the whole host (and converged) began. A poll
    /// within `reconcile.resync` of it, whose source did not move, skips observe: the
    /// quadlet dir watch and the unit events start a full pass for any drift.
    pub last_observed: Option<Instant>,
}

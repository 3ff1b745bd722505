//! Back up: before a plan changes or removes an app, its managed files (and the
//! volumes its changing quadlets use) are copied aside. Runs after the gates, so a
//! held pass takes no backup, and before anything changes: a failed backup fails the
//! pass with nothing changed. The containers that write to an exported volume are
//! stopped for its export ([`crate::backup::quiesce`]).

use std::time::SystemTime;

use leger_api_types::status::reason;

use super::{Failure, Host};
use crate::model::{DesiredTree, Revision};
use crate::plan::Plan;
use crate::store::InventoryEntry;

/// Backs up what `plan` touches. `current` is the revision the host is at.
pub async fn take<U: crate::systemd::UnitManager>(
    host: &Host<'_, U>,
    plan: &Plan,
    inventory: &[InventoryEntry],
    current: Option<&str>,
    tree: &DesiredTree,
) -> Result<(), Failure> {
    if plan.is_empty() {
        return Ok(());
    }
    let backups = host
        .backups()
        .with_policies(crate::backup::policies_of(tree));
    // Quiesced: the units that mount an exported volume stop right before its export;
    // the apply that follows restarts them (one disruption).
    let result = crate::backup::quiesce::take_quiesced(
        &backups,
        host.units,
        plan,
        inventory,
        &host.settings.paths.quadlet_dir,
        current,
        &tree.revision,
        SystemTime::now(),
    )
    .await;
    backups.report(host.metrics).await;
    result.map(|_| ()).map_err(|e| {
        Failure::new(
            reason::BACKUP_FAILED,
            format!(
                "backup before applying {} failed; nothing was changed: {e}",
                Revision(&tree.revision)
            ),
            false,
        )
    })
}

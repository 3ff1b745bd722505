//! What a revision is validated against: the podman that will run it, and the
//! quadlets already installed on the host outside leger.

use std::collections::BTreeSet;

use super::keys::KeyTable;

/// The podman and host a revision is validated for. legerd builds it from the host;
/// `legerctl validate` and `publish` build it offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The key tables of the podman that will run the files.
    pub keys: KeyTable,
    /// Quadlets the host already has, which a revision may use without shipping.
    pub installed: Installed,
}

/// The quadlets installed on the host outside leger's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// No host to look at (a laptop, CI): a reference to a quadlet that is not in the
    /// tree cannot be checked, so it is refused with a hint.
    Offline,
    /// Base names (`shared.network`) of the quadlets found in the host's quadlet
    /// folders, leger's own files excluded.
    Host(BTreeSet<String>),
}

impl Target {
    /// Offline validation for `keys`.
    pub fn offline(keys: KeyTable) -> Self {
        Target {
            keys,
            installed: Installed::Offline,
        }
    }
}

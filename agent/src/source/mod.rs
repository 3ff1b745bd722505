//! Sources of desired state: git (gix) and a local dir. Each fetch yields a
//! [`Snapshot`](crate::model::Snapshot) of the app folder.
//!
//! OWNER: helper "source".

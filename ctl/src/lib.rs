//! legerctl's library: pure rendering of status, history and backups, and the edits
//! `set-desired`, `suspend`, `resume` and `restore` make to `desired.toml`, and the offline
//! `publish` and `keygen` helpers that build a manifest tree.
//!
//! **Architecture invariant:** nothing in legerctl starts, stops or restarts a unit, or
//! calls podman. It edits desired state and reads status; legerd does the rest. The one
//! look past legerd is read-only: `legerctl logs` runs `journalctl`.

pub mod backups;
pub mod edit;
pub mod failed;
pub mod logs;
pub mod publish;
pub mod render;

//! legerctl's library: pure rendering of status, history and backups, and the edits
//! `set-desired`, `suspend`, `resume` and `restore` make to `desired.toml`, and the offline
//! `publish` and `keygen` helpers that build a manifest tree.
//!
//! **Architecture invariant:** nothing in legerctl starts, stops or restarts a unit, or
//! calls podman. It edits desired state and reads status; legerd does the rest. The one
//! look past legerd is read-only: `legerctl logs` runs `journalctl`.

// `cli.rs` names this crate `legerctl::…`, as it did when it was part of the binary; the
// alias keeps those paths valid now that it lives in the library (for docgen's man pages).
extern crate self as legerctl;

pub mod backups;
pub mod cli;
pub mod edit;
pub mod failed;
pub mod logs;
pub mod output;
pub mod plan;
pub mod policy;
pub mod publish;
pub mod render;
pub mod validate;
pub mod wait;

//! SQLite state: inventory, revisions, pass history, drift events.
//!
//! OWNER: helper "store".

//! systemd over D-Bus (zbus): Reload, Start/Restart/Stop with job results, unit states,
//! and unit state change events.
//!
//! OWNER: helper "systemd".

//! legerd: converges Podman quadlets on this host to the desired state.
//!
//! The binary (`main.rs`) is a thin shell over this library, so every stage can be
//! tested without it. See ARCHITECTURE.md for the code map.

pub mod api;
pub mod assemble;
pub mod model;
pub mod quadlet;
pub mod source;
pub mod store;
pub mod systemd;

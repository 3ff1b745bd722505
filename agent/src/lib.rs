//! legerd: converges Podman quadlets on this host to the desired state.
//!
//! The binary (`main.rs`) is a thin shell over this library, so every stage can be
//! tested without it. See ARCHITECTURE.md for the code map.

pub mod api;
pub mod apply;
pub mod assemble;
pub mod backoff;
pub mod backup;
pub mod cli;
pub mod controller;
pub mod crashpoint;
pub mod fswatch;
pub mod health;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod plan;
pub mod quadlet;
pub mod reconciler;
pub mod revisions;
pub mod schedule;
pub mod secrets;
pub mod source;
pub mod staged;
pub mod store;
pub mod systemd;
pub mod unix_socket;

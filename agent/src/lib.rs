//! legerd: converges Podman quadlets on this host to the desired state.
//!
//! The binary (`main.rs`) is a thin shell over this library, so every stage can be
//! tested without it. See ARCHITECTURE.md for the code map.

pub mod access;
pub mod activity;
pub mod api;
pub mod apply;
pub mod assemble;
pub mod backoff;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod command;
pub mod controller;
pub mod crashpoint;
pub mod echo;
pub mod fleet;
pub mod fswatch;
pub mod health;
pub mod history;
pub mod host_podman;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod overlay;
pub mod pass;
pub mod plan;
pub mod podman;
pub mod quadlet;
pub mod reconciler;
pub mod resource_changes;
pub mod revisions;
pub mod schedule;
pub mod secrets;
pub mod source;
pub mod staged;
pub mod status;
pub mod store;
pub mod systemd;
pub mod testkit;
pub mod unix_socket;
pub mod validated;

//! Surviving a lost bus: `systemctl daemon-reexec`, a restart of the bus daemon, or a
//! connection that closed for any other reason.
//!
//! Two things break when the bus goes away:
//! - calls: every call on a closed connection fails at once, so a pass in progress
//!   fails and is retried with backoff; the next pass uses the new connection.
//! - signals: the match rules for `JobRemoved` and `PropertiesChanged` and systemd's
//!   `Subscribe()` lived on the old connection.
//!
//! [`DbusUnitManager::supervise`] notices both the closed connection and systemd coming
//! back under its bus name (after a re-exec), reconnects or subscribes again, and bumps
//! a generation counter; [`DbusUnitManager::forward_unit_events`] follows that counter
//! to subscribe its stream again and asks for a pass, since unit events during the gap
//! are lost. A bus that stays away for `systemd.bus_give_up` ends `supervise` with
//! [`SystemdError::BusLost`]: legerd then exits non-zero, so `Restart=` applies and the
//! failure is visible in `systemctl status`, instead of a daemon that looks alive but
//! can no longer drive anything.

use std::time::{Duration, Instant};

use futures::StreamExt;

use super::SystemdError;
use super::events::UnitEvent;
use super::manager::{DbusUnitManager, Link, open_link, subscribe};

/// systemd's name on the bus.
const SYSTEMD_NAME: &str = "org.freedesktop.systemd1";

/// The longest pause between reconnect attempts: a bus restart takes a second or two,
/// and each attempt is cheap.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// What ended the watch of one connection.
enum LinkEvent {
    /// The connection closed.
    Closed,
    /// systemd took its bus name again: it re-executed or restarted.
    SystemdBack,
}

impl DbusUnitManager {
    /// Keeps the connection to systemd usable for as long as legerd runs; returns only
    /// when the bus has been unreachable for `give_up`, with the error to exit on.
    pub async fn supervise(&self, give_up: Duration) -> SystemdError {
        loop {
            let link = self.link();
            match watch_link(&link).await {
                LinkEvent::Closed => {
                    tracing::warn!(bus = %self.target, "lost the connection to the bus; reconnecting");
                    if let Err(e) = self.reconnect(give_up).await {
                        tracing::error!("{e}");
                        return e;
                    }
                }
                LinkEvent::SystemdBack => {
                    tracing::info!(
                        "systemd re-appeared on the bus (daemon-reexec or restart); subscribing again"
                    );
                    match tokio::time::timeout(self.call_timeout, subscribe(&link.manager)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "cannot subscribe to systemd again; a later reconnect will")
                        }
                        Err(_) => tracing::warn!(
                            "systemd did not answer Subscribe in time; a later reconnect will"
                        ),
                    }
                    self.generation.send_modify(|g| *g += 1);
                }
            }
        }
    }

    /// Opens a new connection and subscribes, retrying with a growing pause until it
    /// works or `give_up` has passed since the loss.
    async fn reconnect(&self, give_up: Duration) -> Result<(), SystemdError> {
        let lost = Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            let backstop = self.job_timeout.max(self.call_timeout);
            match open_link(&self.target, self.call_timeout, backstop).await {
                Ok(link) => {
                    *self.link.write().unwrap_or_else(|p| p.into_inner()) = link;
                    self.generation.send_modify(|g| *g += 1);
                    tracing::info!(
                        bus = %self.target,
                        after_ms = lost.elapsed().as_millis() as u64,
                        "reconnected to the bus and subscribed to systemd again"
                    );
                    return Ok(());
                }
                Err(e) => {
                    let elapsed = lost.elapsed();
                    if elapsed >= give_up {
                        return Err(SystemdError::BusLost {
                            target: self.target.clone(),
                            after: elapsed,
                            last_error: e.to_string(),
                        });
                    }
                    tracing::debug!(error = %e, "bus still unreachable");
                    tokio::time::sleep(pause.min(give_up - elapsed)).await;
                    pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                }
            }
        }
    }

    /// Feeds every unit state change to `on_event`, across reconnects. After the stream
    /// is subscribed again on a new connection (or after systemd came back), calls
    /// `on_resubscribed`: events in the gap are lost, so the caller should look at the
    /// host again. Runs for as long as the manager lives.
    pub async fn forward_unit_events(
        &self,
        mut on_event: impl FnMut(UnitEvent),
        mut on_resubscribed: impl FnMut(),
    ) {
        let mut generation = self.generation.subscribe();
        loop {
            let seen = *generation.borrow_and_update();
            match self.unit_events().await {
                Ok(mut events) => loop {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(event) => on_event(event),
                            None => break,
                        },
                        changed = generation.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            break;
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to unit events; waiting for a new connection")
                }
            }
            // The stream ended with its connection: wait for the next one.
            if generation.wait_for(|g| *g != seen).await.is_err() {
                return;
            }
            on_resubscribed();
        }
    }
}

/// Waits until `link`'s connection closes or systemd takes its bus name again.
async fn watch_link(link: &Link) -> LinkEvent {
    let systemd_back = async {
        let dbus = zbus::fdo::DBusProxy::new(&link.connection).await.ok()?;
        let mut owners = dbus
            .receive_name_owner_changed_with_args(&[(0, SYSTEMD_NAME)])
            .await
            .ok()?;
        while let Some(signal) = owners.next().await {
            if let Ok(args) = signal.args()
                && args.new_owner().is_some()
            {
                return Some(());
            }
        }
        None
    };
    tokio::select! {
        () = link.connection.closed() => LinkEvent::Closed,
        back = systemd_back => match back {
            Some(()) => LinkEvent::SystemdBack,
            // No owner stream (the bus refused the match, or the connection closed).
            None => {
                link.connection.closed().await;
                LinkEvent::Closed
            }
        },
    }
}

//! DbusUnitManager against real systemd 257 + podman quadlets on a test bed machine,
//! reached from the host over the machine's system bus socket.
//!
//! Needs root and systemd-nspawn (see tests/src/lib.rs). Each test boots its own machine.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use leger_e2e::{Testbed, wait_until};
use legerd::model::UnitState;
use legerd::systemd::{BusTarget, DbusUnitManager, SystemdError, UnitManager};

/// Generous: the CI machines have 2 cores shared by two machines.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A container that runs until SIGTERM and exits 0 on it, so stops are fast.
const LONG_RUNNING: &str =
    r#"/bin/sh -c 'trap "exit 0" TERM; while :; do echo up; sleep 1 & wait $!; done'"#;

/// Writes `<name>.container` into the machine's quadlet dir, atomically.
fn write_container(tb: &Testbed, name: &str, exec: &str, service: &str) -> Result<()> {
    let body = format!(
        "[Unit]\nDescription=leger systemd_dbus test {name}\n\n\
         [Container]\nContainerName={name}\nImage=localhost/busybox:latest\nNetwork=none\nExec={exec}\n\n\
         [Service]\n{service}\n"
    );
    let dir = tb.quadlet_dir_host();
    let tmp = dir.join(format!(".{name}.container.tmp"));
    fs::write(&tmp, body).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(format!("{name}.container")))?;
    Ok(())
}

async fn connect(tb: &Testbed) -> Result<DbusUnitManager> {
    Ok(DbusUnitManager::connect(BusTarget::Address(tb.bus_address().to_owned()), TIMEOUT).await?)
}

fn container_id(tb: &Testbed, name: &str) -> Result<String> {
    Ok(tb
        .exec_ok(&["podman", "inspect", "--format", "{{.Id}}", name])?
        .trim()
        .to_owned())
}

fn running_containers(tb: &Testbed) -> Result<Vec<String>> {
    Ok(tb
        .exec_ok(&["podman", "ps", "--format", "{{.Names}}"])?
        .lines()
        .map(str::to_owned)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbus_unit_manager_starts_restarts_and_stops_a_quadlet() -> Result<()> {
    let tb = Testbed::boot("sdbus-life")?;
    write_container(&tb, "web", LONG_RUNNING, "Restart=on-failure")?;
    let units = connect(&tb).await?;

    units.reload().await?;
    units.start("web.service").await?;
    let state = units.unit_state("web.service").await?;
    assert_eq!(
        (state.load_state.as_str(), state.active_state.as_str()),
        ("loaded", "active"),
        "{state:?}"
    );
    let batch = units.unit_states(&["web.service".to_owned()]).await?;
    assert_eq!(batch["web.service"], state);
    wait_until(TIMEOUT, "container web in podman ps", || {
        Ok(running_containers(&tb)?.contains(&"web".to_owned()))
    })?;

    let first = container_id(&tb, "web")?;
    units.restart("web.service").await?;
    assert_eq!(
        units.unit_state("web.service").await?.active_state,
        "active"
    );
    let second = container_id(&tb, "web")?;
    assert_ne!(first, second, "restart must replace the container");

    units.stop("web.service").await?;
    assert_eq!(
        units.unit_state("web.service").await?.active_state,
        "inactive"
    );
    wait_until(TIMEOUT, "container web gone from podman ps", || {
        Ok(!running_containers(&tb)?.contains(&"web".to_owned()))
    })?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbus_unit_manager_reports_a_container_that_exits_and_unknown_units() -> Result<()> {
    let tb = Testbed::boot("sdbus-fail")?;
    write_container(&tb, "crash", "/bin/sh -c 'exit 3'", "Restart=no")?;
    // A long settle: the failure ends the wait, so only a wrong verdict would take long.
    let units = connect(&tb).await?.with_start_settle(TIMEOUT);
    units.reload().await?;

    let started = units.start("crash.service").await;
    if let Err(e) = &started {
        eprintln!("start crash.service: {e}");
    }
    match started {
        Err(SystemdError::UnitFailed { unit, job, .. }) => {
            assert_eq!((unit.as_str(), job), ("crash.service", "start"));
        }
        Err(SystemdError::JobFailed { unit, job, result }) => {
            assert_eq!((unit.as_str(), job), ("crash.service", "start"));
            assert_ne!(result, "done");
        }
        other => panic!("start of a container that exits: {other:?}"),
    }
    assert_eq!(
        units.unit_state("crash.service").await?.active_state,
        "failed"
    );

    assert_eq!(
        units.unit_state("no-such-unit.service").await?,
        UnitState::unknown()
    );
    // One ListUnitsByNames call answers as the per-unit reads do.
    let names = ["crash.service", "no-such-unit.service", "not a unit name"].map(String::from);
    let batch = units.unit_states(&names).await?;
    assert_eq!(batch.len(), 3, "{batch:?}");
    assert_eq!(
        batch["crash.service"],
        units.unit_state("crash.service").await?
    );
    assert_eq!(batch["no-such-unit.service"], UnitState::unknown());
    assert_eq!(batch["not a unit name"], UnitState::unknown());
    units.stop("no-such-unit.service").await?;
    match units.start("no-such-unit.service").await {
        Err(SystemdError::Call { method, unit, .. }) => {
            assert_eq!(
                (method, unit.as_str()),
                ("StartUnit", "no-such-unit.service")
            );
        }
        other => panic!("start of a unit without a file: {other:?}"),
    }
    Ok(())
}

/// The record of a run, on real systemd: a container that exits 0 by itself ran to
/// completion; a long-running one that exits 0 on SIGTERM, stopped with `systemctl
/// stop`, did not. Both rest `inactive`; only the order of "main process exited" and
/// "left active" tells them apart, and only while systemd keeps the unit loaded,
/// which `start` arranges until `release_runs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbus_unit_manager_tells_a_run_to_completion_from_a_stop() -> Result<()> {
    let tb = Testbed::boot("sdbus-runs")?;
    write_container(&tb, "job", "/bin/sh -c 'echo job ran'", "")?;
    write_container(&tb, "srv", LONG_RUNNING, "")?;
    let units = connect(&tb).await?;
    units.reload().await?;

    units.start("job.service").await?;
    units.start("srv.service").await?;
    wait_until(TIMEOUT, "job.service at rest", || {
        Ok(tb
            .exec_ok(&["systemctl", "is-active", "job.service"])
            .is_err())
    })?;
    // Loaded still (systemd would have unloaded it at once), with its record.
    let job = units
        .last_run("job.service")
        .await?
        .context("job.service kept")?;
    assert_eq!(job.ran_to_completion(), Some(Ok(())), "{job:?}");

    tb.exec_ok(&["systemctl", "stop", "srv.service"])?;
    let srv = units
        .last_run("srv.service")
        .await?
        .context("srv.service kept")?;
    assert_eq!(
        (srv.main_code, srv.main_status),
        (1, 0),
        "exit 0 on SIGTERM: {srv:?}"
    );
    let why = srv.ran_to_completion().context("a record")?.unwrap_err();
    assert!(why.contains("stop job"), "{why}: {srv:?}");

    // Let go: systemd unloads both, and nothing is left to read.
    units.release_runs().await;
    let gone = || async {
        Ok::<_, anyhow::Error>(
            units.last_run("job.service").await?.is_none()
                && units.last_run("srv.service").await?.is_none(),
        )
    };
    leger_e2e::wait_until_async(TIMEOUT, "both units unloaded", gone).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_events_report_a_unit_stopped_from_inside() -> Result<()> {
    let tb = Testbed::boot("sdbus-events")?;
    write_container(&tb, "watched", LONG_RUNNING, "Restart=no")?;
    let units = connect(&tb).await?;
    units.reload().await?;
    units.start("watched.service").await?;

    let mut events = units.unit_events().await?;
    tb.exec_ok(&["systemctl", "stop", "watched.service"])?;
    let seen = tokio::time::timeout(TIMEOUT, async {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            let done = event.unit == "watched.service" && event.active_state == "inactive";
            seen.push(event);
            if done {
                return Ok(seen);
            }
        }
        anyhow::bail!("event stream ended; saw {seen:?}")
    })
    .await
    .context("no inactive event for watched.service")??;
    let states: Vec<&str> = seen
        .iter()
        .filter(|e| e.unit == "watched.service")
        .map(|e| e.active_state.as_str())
        .collect();
    assert_eq!(states.last(), Some(&"inactive"), "{seen:?}");
    Ok(())
}

/// After a restart of the machine's bus (which closes legerd's connection), the
/// supervisor reconnects, the forwarded event stream is subscribed again (and says so),
/// unit events arrive on the new connection, and calls work again; after a
/// daemon-reexec, the same on the old connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbus_unit_manager_survives_a_bus_restart_and_daemon_reexec() -> Result<()> {
    let tb = Testbed::boot("sdbus-reconnect")?;
    write_container(&tb, "watched", LONG_RUNNING, "Restart=no")?;
    let units = std::sync::Arc::new(connect(&tb).await?);
    units.reload().await?;
    units.start("watched.service").await?;

    let supervisor = {
        let units = std::sync::Arc::clone(&units);
        tokio::spawn(async move { units.supervise(TIMEOUT).await })
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let resubscribed = tx.clone();
    {
        let units = std::sync::Arc::clone(&units);
        tokio::spawn(async move {
            units
                .forward_unit_events(
                    move |e| {
                        let _ = tx.send(Some(e));
                    },
                    move || {
                        let _ = resubscribed.send(None);
                    },
                )
                .await;
        });
    }

    tb.exec_ok(&["systemctl", "restart", "dbus.service"])?;
    // `None` marks "subscribed again on a new connection".
    tokio::time::timeout(TIMEOUT, async {
        while let Some(item) = rx.recv().await {
            if item.is_none() {
                return;
            }
        }
    })
    .await
    .context("the event stream was not subscribed again after the bus restart")?;

    tb.exec_ok(&["systemctl", "stop", "watched.service"])?;
    tokio::time::timeout(TIMEOUT, async {
        while let Some(item) = rx.recv().await {
            if let Some(e) = item
                && e.unit == "watched.service"
                && e.active_state == "inactive"
            {
                return;
            }
        }
    })
    .await
    .context("no inactive event for watched.service on the new connection")?;
    assert_eq!(
        units.unit_state("watched.service").await?.active_state,
        "inactive"
    );
    units.start("watched.service").await?;

    // daemon-reexec keeps the bus: systemd comes back under its name and is asked to
    // send signals again; the stream is subscribed again too.
    tb.exec_ok(&["systemctl", "daemon-reexec"])?;
    tokio::time::timeout(TIMEOUT, async {
        while let Some(item) = rx.recv().await {
            if item.is_none() {
                return;
            }
        }
    })
    .await
    .context("the event stream was not subscribed again after daemon-reexec")?;
    tb.exec_ok(&["systemctl", "stop", "watched.service"])?;
    tokio::time::timeout(TIMEOUT, async {
        while let Some(item) = rx.recv().await {
            if let Some(e) = item
                && e.unit == "watched.service"
                && e.active_state == "inactive"
            {
                return;
            }
        }
    })
    .await
    .context("no inactive event for watched.service after daemon-reexec")?;
    assert!(!supervisor.is_finished(), "the supervisor gave up");
    Ok(())
}

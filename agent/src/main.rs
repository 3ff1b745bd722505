//! `legerd`: the reconciler daemon. A thin shell: parse flags, set up logging, wire the
//! library's parts together, and turn errors into messages for people.

use std::os::unix::fs::DirBuilderExt;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::{mpsc, watch};

use leger_config::{Environment, Mode, Settings};
use legerd::api::{self, ApiContext};
use legerd::cli::Args;
use legerd::controller::Controller;
use legerd::fswatch;
use legerd::metrics::{self, Metrics};
use legerd::reconciler::Reconciler;
use legerd::schedule::Trigger;
use legerd::store::Store;
use legerd::systemd::{BusTarget, DbusUnitManager};

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("LEGERD_LOG").unwrap_or_else(|_| "info".into());
    let registry = tracing_subscriber::registry().with(filter);
    // Under systemd, stderr is connected to the journal (JOURNAL_STREAM); send
    // structured events there so their fields become journal fields.
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(layer) = tracing_journald::layer()
    {
        // No field prefix: `message_id` must land as MESSAGE_ID and `leger_app` as
        // LEGER_APP, so `journalctl MESSAGE_ID=...` finds them.
        let layer = layer
            .with_syslog_identifier("legerd".into())
            .with_field_prefix(None);
        registry.with(layer).init();
        return;
    }
    // Colours only for a person at a terminal, and never with NO_COLOR set
    // (no-color.org): a file or pipe gets plain text without escape codes.
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal() && !no_color),
        )
        .init();
}

fn load_settings(args: &Args) -> Result<Settings> {
    let mode = if args.user { Mode::User } else { Mode::System };
    let env = Environment::from_process();
    let dirs = if args.config_dirs.is_empty() {
        leger_config::default_dropin_dirs(mode, &env)
    } else {
        args.config_dirs.clone()
    };
    leger_config::load(mode, &dirs, &env).context("cannot load legerd's configuration")
}

fn mkdir(path: &std::path::Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutdown requested; finishing the current pass");
}

async fn run(args: Args) -> Result<bool> {
    let settings = load_settings(&args)?;
    let paths = &settings.paths;
    mkdir(&paths.state_dir, 0o700)?;
    mkdir(&paths.quadlet_dir, 0o755)?;
    if let Some(parent) = paths.desired_file.parent() {
        mkdir(parent, 0o755)?;
    }
    // A crash mid-write can leave a temporary file behind; it is legerd's by its name.
    // A backup without its manifest.json was cut off by a crash: it can never be
    // restored and only takes space in the budget.
    if let Err(e) =
        legerd::backup::Backups::new(paths.state_dir.join("backups"), settings.backups.clone())
            .remove_interrupted()
    {
        tracing::warn!(error = %e, "cannot remove interrupted backups");
    }
    match leger_config::fs::remove_stale_temp_files(&paths.quadlet_dir) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            count = n,
            "removed temporary files left by an interrupted apply"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot clean temporary files in the quadlet dir"),
    }
    let store = Store::open(&paths.state_dir.join("legerd.db")).with_context(|| {
        format!(
            "cannot open the state database in {}",
            paths.state_dir.display()
        )
    })?;
    let store = Arc::new(Mutex::new(store));

    let bus = match (&settings.bus_address, settings.mode) {
        (Some(addr), _) => BusTarget::Address(addr.clone()),
        (None, Mode::System) => BusTarget::System,
        (None, Mode::User) => BusTarget::User,
    };
    let units = DbusUnitManager::connect_with(
        bus,
        settings.reconcile.job_timeout,
        settings.timeouts.call,
    )
    .await
    .context("cannot connect to systemd over D-Bus; is this a systemd host, and is legerd allowed on the bus?")?;
    let units = Arc::new(units);
    // Reconnects after a bus restart or daemon-reexec; gives up (and legerd exits
    // non-zero, so Restart= applies) when the bus stays away for systemd.bus_give_up.
    let (bus_lost_tx, bus_lost_rx) = tokio::sync::oneshot::channel();
    {
        let units = Arc::clone(&units);
        let give_up = settings.timeouts.bus_give_up;
        tokio::spawn(async move {
            let _ = bus_lost_tx.send(units.supervise(give_up).await);
        });
    }

    let (trigger_tx, trigger_rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::new(settings.metrics.per_app_labels));
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    // Metrics are secondary to converging the host: a taken port is logged, not fatal.
    let metrics_tasks = match metrics::start(
        &settings.metrics,
        Arc::clone(&metrics),
        metrics_stop.clone(),
    )
    .await
    {
        Ok(tasks) => tasks,
        Err(e) => {
            tracing::error!("{e}; continuing without the metrics endpoint");
            Vec::new()
        }
    };
    let identity = Arc::new(
        legerd::secrets::NodeIdentity::load_or_create(&paths.state_dir)
            .context("cannot load the node identity for secrets")?,
    );
    // One podman seam for the whole pass: secrets, volumes, health, journal reads.
    let podman: Arc<dyn legerd::podman::Podman> = Arc::new(legerd::podman::CliPodman::new(
        legerd::command::Runner::new(settings.timeouts.command),
    ));
    let reconciler = Reconciler::new(settings.clone(), Arc::clone(&units), Arc::clone(&store))
        .with_metrics(metrics)
        .with_podman(Arc::clone(&podman))
        .with_secrets(legerd::secrets::SecretsConverger::new(
            Arc::clone(&identity),
            podman,
        ));
    let (status_tx, status_rx) = watch::channel(reconciler.status(None));
    // Deployment reports run beside the passes, never inside one (a no-op without
    // fleet.report_url).
    tokio::spawn(legerd::fleet::report::run(
        settings.fleet.clone(),
        status_rx.clone(),
    ));

    // Unit events: a managed unit that left `active` is possible drift. The stream is
    // subscribed again after every reconnect, and a reconnect asks for a pass, since
    // events of the gap are lost.
    let managed = reconciler.managed_units();
    let tx = trigger_tx.clone();
    // Every state change of a managed unit refreshes status's unit states (bounded: a
    // full queue already holds a refresh).
    let (unit_change_tx, unit_change_rx) = mpsc::channel::<()>(1);
    let resubscribed_tx = trigger_tx.clone();
    let event_units = Arc::clone(&units);
    tokio::spawn(async move {
        event_units
            .forward_unit_events(
                |ev| {
                    let is_managed = managed
                        .read()
                        .map(|m| m.contains(&ev.unit))
                        .unwrap_or(false);
                    if is_managed {
                        let _ = unit_change_tx.try_send(());
                    }
                    if is_managed && matches!(ev.active_state.as_str(), "failed" | "inactive") {
                        let _ = tx.send(Trigger::UnitLeftActive(ev.unit));
                    }
                },
                || {
                    let _ = resubscribed_tx.send(Trigger::BusReconnected);
                },
            )
            .await;
    });

    let _desired_watch = fswatch::watch_desired_file(&paths.desired_file, trigger_tx.clone())
        .with_context(|| format!("cannot watch {}", paths.desired_file.display()))?;
    let _quadlet_watch = fswatch::watch_paths(
        &paths.quadlet_dir,
        true,
        |p| !fswatch::is_temp_file(p),
        trigger_tx.clone(),
        Trigger::QuadletFilesChanged,
    )
    .with_context(|| format!("cannot watch {}", paths.quadlet_dir.display()))?;

    let (reconcile_tx, mut reconcile_rx) = mpsc::channel::<()>(1);
    let tx = trigger_tx.clone();
    tokio::spawn(async move {
        while reconcile_rx.recv().await.is_some() {
            let _ = tx.send(Trigger::Manual);
        }
    });
    let listener = api::bind_socket(&paths.socket, settings.socket_group.as_deref())
        .with_context(|| format!("cannot listen on {}", paths.socket.display()))?;
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (staged_tx, staged_rx) = watch::channel(None);
    let (restore_tx, restore_rx) = mpsc::channel(4);
    let (plan_tx, plan_rx) = mpsc::channel(4);
    let ctx = ApiContext {
        status: status_rx,
        store: Arc::clone(&store),
        reconcile: reconcile_tx,
        identity: Some(identity),
        staged: staged_rx,
        revisions: Some(legerd::revisions::RevisionStore::new(
            paths.state_dir.join("revisions"),
        )),
        backups: Some(api::BackupsApi {
            backups: legerd::backup::Backups::new(
                paths.state_dir.join("backups"),
                settings.backups.clone(),
            ),
            restore: restore_tx,
        }),
        access: legerd::access::AccessPolicy::from_settings(
            settings.socket_group.as_deref(),
            settings.admin_group.as_deref(),
        ),
        fleet: Some(reconciler.fleet_gate()),
        plan: Some(plan_tx),
    };
    let api_task = tokio::spawn(api::serve(listener, ctx, async move {
        let _ = api_stop_rx.await;
    }));
    tracing::info!(
        mode = settings.mode.as_str(),
        desired = %paths.desired_file.display(),
        quadlet_dir = %paths.quadlet_dir.display(),
        socket = %paths.socket.display(),
        "legerd started"
    );

    let controller = Controller::new(
        settings.clone(),
        reconciler,
        trigger_rx,
        trigger_tx,
        status_tx,
    )
    .with_staged(staged_tx)
    .with_restores(restore_rx)
    .with_plans(plan_rx)
    .with_unit_changes(unit_change_rx);
    let mut last_ok = true;
    let once = args.once;
    let bus_lost = Arc::new(Mutex::new(None));
    let shutdown = {
        let bus_lost = Arc::clone(&bus_lost);
        async move {
            tokio::select! {
                () = shutdown_signal() => {}
                Ok(e) = bus_lost_rx => {
                    *bus_lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
        }
    };
    controller
        .run(shutdown, |result| {
            last_ok = result.failure_cause.is_none();
            if once {
                println!(
                    "{} {} {}",
                    result.record.outcome.as_str(),
                    result.record.revision.as_deref().unwrap_or("-"),
                    result.record.error.as_deref().unwrap_or("")
                );
            }
            !once
        })
        .await;
    let _ = api_stop_tx.send(());
    let _ = api_task.await;
    metrics_stop.cancel();
    for task in metrics_tasks {
        let _ = task.await;
    }
    let _ = std::fs::remove_file(&paths.socket);
    if let Some(e) = bus_lost.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(anyhow::Error::new(e));
    }
    Ok(last_ok || !once)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("legerd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("legerd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

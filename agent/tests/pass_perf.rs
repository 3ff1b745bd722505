//! Whole passes in-process, for what the performance work promises about calls:
//! the starts of one dependency level are in flight together, up to
//! `systemd.max_jobs_in_flight`, and a level begins only after the level before it
//! finished; a no-op pass reads every unit's state in one call. systemd is the recording
//! double, which only records calls and which ones overlapped; what systemd does with
//! them is tested on the test bed (`tests/tests/parallel_jobs.rs`, `systemd_dbus.rs`).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leger_api_types::PassOutcome;
use legerd::model::UnitState;
use legerd::podman::RecordingPodman;
use legerd::reconciler::Reconciler;
use legerd::store::Store;
use legerd::systemd::recording::{Call, RecordingUnitManager};

const APPS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn active() -> UnitState {
    UnitState {
        load_state: "loaded".into(),
        active_state: "active".into(),
        sub_state: "running".into(),
    }
}

/// Five apps, each with a network, a volume and a container that uses both.
fn write_source(source: &std::path::Path) {
    for app in APPS {
        let dir = source.join(app);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{app}.network")), "[Network]\n").unwrap();
        std::fs::write(dir.join(format!("{app}.volume")), "[Volume]\n").unwrap();
        std::fs::write(
            dir.join(format!("{app}.container")),
            format!(
                "[Container]\nImage=localhost/busybox:latest\nExec=sleep 1000\n\
                 Network={app}.network\nVolume={app}.volume:/data\n"
            ),
        )
        .unwrap();
    }
}

/// A host in a temporary folder with the five-app source, legerd's reconciler over the
/// recording double, and `max_jobs` as `systemd.max_jobs_in_flight`.
fn bed(
    max_jobs: usize,
) -> (
    tempfile::TempDir,
    Reconciler<RecordingUnitManager>,
    Arc<RecordingUnitManager>,
) {
    bed_with(max_jobs, Duration::from_secs(600))
}

/// [`bed`] with `reconcile.resync` set to `resync`.
fn bed_with(
    max_jobs: usize,
    resync: Duration,
) -> (
    tempfile::TempDir,
    Reconciler<RecordingUnitManager>,
    Arc<RecordingUnitManager>,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = legerd::testkit::settings_in(dir.path());
    settings.reconcile.max_jobs_in_flight = NonZeroUsize::new(max_jobs).unwrap();
    settings.reconcile.resync = resync;
    let store = Arc::new(Mutex::new(
        Store::open(&settings.paths.state_dir.join("legerd.db")).unwrap(),
    ));
    let units = Arc::new(RecordingUnitManager::new());
    let source = dir.path().join("src");
    write_source(&source);
    std::fs::create_dir_all(settings.paths.desired_file.parent().unwrap()).unwrap();
    std::fs::write(
        &settings.paths.desired_file,
        format!(
            "[source]\nkind = \"dir\"\npath = \"{}\"\n",
            source.display()
        ),
    )
    .unwrap();
    let reconciler = Reconciler::new(settings, Arc::clone(&units), store)
        .with_podman(Arc::new(RecordingPodman::new()));
    (dir, reconciler, units)
}

#[tokio::test]
async fn pass_starts_each_level_together_within_the_bound() {
    let (_dir, mut reconciler, units) = bed(3);
    let networks: Vec<String> = APPS
        .iter()
        .map(|a| format!("{a}-network.service"))
        .collect();
    let volumes: Vec<String> = APPS.iter().map(|a| format!("{a}-volume.service")).collect();
    let containers: Vec<String> = APPS.iter().map(|a| format!("{a}.service")).collect();
    for unit in networks.iter().chain(&volumes).chain(&containers) {
        units.set_state_after_job(unit, active());
    }
    let r = reconciler.reconcile(&["test".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);

    // Every level is queued whole before the next level's first job.
    let starts: Vec<String> = units
        .actions()
        .into_iter()
        .filter_map(|c| match c {
            Call::Start(u) => Some(u),
            _ => None,
        })
        .collect();
    let expected: Vec<String> = networks
        .iter()
        .chain(&volumes)
        .chain(&containers)
        .cloned()
        .collect();
    assert_eq!(starts, expected);
    // The bound holds, and the double saw real overlap (not one job at a time).
    assert_eq!(units.max_in_flight(), 3);
    // No job overlaps a job of another level: a container starts only after every
    // volume and network finished, and a volume only after every network.
    for container in &containers {
        let overlap = units.in_flight_when_queued(container);
        assert!(
            overlap.iter().all(|u| containers.contains(u)),
            "{container} queued while {overlap:?} ran"
        );
    }
    for volume in &volumes {
        let overlap = units.in_flight_when_queued(volume);
        assert!(
            overlap.iter().all(|u| volumes.contains(u)),
            "{volume} queued while {overlap:?} ran"
        );
    }
    // The report keeps the plan's order.
    let done: Vec<&String> = r
        .record
        .actions
        .iter()
        .filter(|a| a.starts_with("start "))
        .collect();
    assert_eq!(done.len(), 15, "{:?}", r.record.actions);
    assert!(done[0].ends_with("a-network.service"), "{done:?}");
    assert!(done[14].ends_with("e.service"), "{done:?}");
}

#[tokio::test]
async fn pass_with_a_bound_of_one_runs_jobs_one_at_a_time() {
    let (_dir, mut reconciler, units) = bed(1);
    let r = reconciler.reconcile(&["test".to_owned()]).await;
    // The double leaves the units "unknown", so the health gate fails them; what this
    // test checks is only how many jobs were in flight.
    assert!(r.record.actions.iter().any(|a| a.starts_with("start ")));
    assert_eq!(units.max_in_flight(), 1);
}

#[tokio::test]
async fn pass_noop_reads_all_unit_states_in_one_call() {
    let (_dir, mut reconciler, units) = bed(4);
    for app in APPS {
        for unit in [
            format!("{app}-network.service"),
            format!("{app}-volume.service"),
            format!("{app}.service"),
        ] {
            units.set_state_after_job(&unit, active());
        }
    }
    let r = reconciler.reconcile(&["test".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    units.take_calls();

    let r = reconciler.reconcile(&["test".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Noop, "{:?}", r.record);
    let calls = units.take_calls();
    // Observe asks once for all 15 units; status is refreshed from that same answer.
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        matches!(&calls[0], Call::UnitStates(names) if names.len() == 15),
        "{calls:?}"
    );
    let status_units: usize = reconciler.state().apps.iter().map(|a| a.units.len()).sum();
    assert_eq!(status_units, 15);
    assert!(
        reconciler
            .state()
            .apps
            .iter()
            .flat_map(|a| &a.units)
            .all(|u| u.active_state == "active")
    );
}

/// Scripts every unit of the five apps to come up, and applies them.
async fn converged(
    reconciler: &mut Reconciler<RecordingUnitManager>,
    units: &RecordingUnitManager,
) {
    for app in APPS {
        for unit in [
            format!("{app}-network.service"),
            format!("{app}-volume.service"),
            format!("{app}.service"),
        ] {
            units.set_state_after_job(&unit, active());
        }
    }
    let r = reconciler.reconcile(&["startup".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    units.take_calls();
}

#[tokio::test]
async fn pass_quiet_poll_skips_observe_and_drift_events_still_heal() {
    let (dir, mut reconciler, units) = bed_with(4, Duration::from_secs(3600));
    converged(&mut reconciler, &units).await;

    // A poll whose source did not move, right after a clean pass: no systemd call.
    let r = reconciler.reconcile(&["poll".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Noop, "{:?}", r.record);
    assert!(units.take_calls().is_empty());

    // A deleted file: the quadlet dir watch's trigger observes and heals it.
    let file = dir.path().join("quadlets/c/c.container");
    std::fs::remove_file(&file).unwrap();
    let r = reconciler.reconcile(&["drift-file".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert!(file.exists(), "restored");
    units.take_calls();

    // A poll merged with a drift event observes too.
    let r = reconciler
        .reconcile(&["drift-unit:a.service".to_owned(), "poll".to_owned()])
        .await;
    assert_eq!(r.record.outcome, PassOutcome::Noop, "{:?}", r.record);
    let calls = units.take_calls();
    assert!(matches!(&calls[..], [Call::UnitStates(_)]), "{calls:?}");
}

#[tokio::test]
async fn pass_poll_observes_every_time_when_resync_is_zero() {
    let (_dir, mut reconciler, units) = bed_with(4, Duration::ZERO);
    converged(&mut reconciler, &units).await;
    let r = reconciler.reconcile(&["poll".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Noop, "{:?}", r.record);
    let calls = units.take_calls();
    assert!(matches!(&calls[..], [Call::UnitStates(_)]), "{calls:?}");
}

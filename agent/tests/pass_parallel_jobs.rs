//! The unit jobs of a whole pass, in-process: the starts of one dependency level are in
//! flight together, up to `systemd.max_jobs_in_flight`, and a level begins only after
//! the level before it finished. systemd is the recording double, which only records
//! which calls overlapped; what systemd does with parallel jobs is tested on the test bed
//! (`tests/tests/parallel_jobs.rs`).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

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

#[tokio::test]
async fn pass_starts_each_level_together_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = legerd::testkit::settings_in(dir.path());
    settings.reconcile.max_jobs_in_flight = NonZeroUsize::new(3).unwrap();
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
    let networks: Vec<String> = APPS.iter().map(|a| format!("{a}-network.service")).collect();
    let volumes: Vec<String> = APPS.iter().map(|a| format!("{a}-volume.service")).collect();
    let containers: Vec<String> = APPS.iter().map(|a| format!("{a}.service")).collect();
    for unit in networks.iter().chain(&volumes).chain(&containers) {
        units.set_state_after_job(unit, active());
    }
    let mut reconciler = Reconciler::new(settings, Arc::clone(&units), Arc::clone(&store))
        .with_podman(Arc::new(RecordingPodman::new()));

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
    let dir = tempfile::tempdir().unwrap();
    let mut settings = legerd::testkit::settings_in(dir.path());
    settings.reconcile.max_jobs_in_flight = NonZeroUsize::new(1).unwrap();
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
    let mut reconciler = Reconciler::new(settings, Arc::clone(&units), Arc::clone(&store))
        .with_podman(Arc::new(RecordingPodman::new()));
    let r = reconciler.reconcile(&["test".to_owned()]).await;
    // The double leaves the units "unknown", so the health gate fails them; what this
    // test checks is only how many jobs were in flight.
    assert!(r.record.actions.iter().any(|a| a.starts_with("start ")));
    assert_eq!(units.max_in_flight(), 1);
}

//! Whole passes over changed `.network` and `.volume` quadlets (issue 11), in process:
//! real files, a real SQLite store, systemd and podman as recording doubles that
//! check the order of calls and answer as podman does when a network is in use. The
//! real podman behaviour is covered by the e2e `resources` tests on the test bed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use leger_api_types::PassOutcome;
use legerd::model::UnitState;
use legerd::podman::{NetworkUser, PodmanCall, RecordingPodman};
use legerd::reconciler::Reconciler;
use legerd::store::Store;
use legerd::systemd::recording::{Call as UnitCall, RecordingUnitManager};

const WEB: &str =
    "[Container]\nImage=localhost/busybox:latest\nExec=sleep 1000\nNetwork=front.network\n";
const DB: &str =
    "[Container]\nImage=localhost/busybox:latest\nExec=sleep 1000\nVolume=data.volume:/data\n";

/// The recording podman writes no export: the volume backup is off for these apps.
const NO_EXPORT: (&str, &str) = ("db/leger.toml", "backup_volumes = false\n");

fn running() -> UnitState {
    UnitState {
        load_state: "loaded".into(),
        active_state: "active".into(),
        sub_state: "running".into(),
    }
}

struct Bed {
    dir: tempfile::TempDir,
    source: PathBuf,
    settings: leger_config::Settings,
    units: Arc<RecordingUnitManager>,
    podman: Arc<RecordingPodman>,
}

impl Bed {
    fn new() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let settings = legerd::testkit::settings_in(dir.path());
        let source = dir.path().join("src");
        std::fs::create_dir_all(settings.paths.desired_file.parent().unwrap()).unwrap();
        std::fs::write(
            &settings.paths.desired_file,
            format!(
                "[source]\nkind = \"dir\"\npath = \"{}\"\n",
                source.display()
            ),
        )
        .unwrap();
        let units = Arc::new(RecordingUnitManager::new());
        for unit in [
            "web.service",
            "db.service",
            "front-network.service",
            "data-volume.service",
        ] {
            units.set_state_after_job(unit, running());
        }
        Bed {
            dir,
            source,
            settings,
            units,
            podman: Arc::new(RecordingPodman::new()),
        }
    }

    /// A legerd process on the bed's state (a new one is a restart).
    fn legerd(&self) -> Reconciler<RecordingUnitManager> {
        let store = Arc::new(Mutex::new(
            Store::open(&self.settings.paths.state_dir.join("legerd.db")).unwrap(),
        ));
        Reconciler::new(self.settings.clone(), Arc::clone(&self.units), store)
            .with_podman(self.podman.clone())
    }

    fn source(&self, files: &[(&str, &str)]) {
        let _ = std::fs::remove_dir_all(&self.source);
        for (path, text) in files {
            let p = self.source.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    fn installed(&self, key: &str) -> String {
        std::fs::read_to_string(self.settings.paths.quadlet_dir.join(key)).unwrap()
    }
}

async fn applied(legerd: &mut Reconciler<RecordingUnitManager>) {
    let r = legerd.reconcile(&["test".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
}

/// podman still refuses to remove the network after its users stopped (a container
/// the check could not tell apart, such as a hand-made pod's): the pass fails before
/// any file is written, with what to do, and the users it stopped run again under the
/// revision in force.
#[tokio::test]
async fn a_network_podman_keeps_fails_the_pass_before_any_file_and_restarts_its_users() {
    let bed = Bed::new();
    let mut legerd = bed.legerd();
    bed.source(&[
        ("net/front.network", "[Network]\nLabel=v=1\n"),
        ("web/web.container", WEB),
    ]);
    applied(&mut legerd).await;
    let good = legerd.applied_revision().unwrap().to_owned();

    bed.source(&[
        ("net/front.network", "[Network]\nLabel=v=2\n"),
        ("web/web.container", WEB),
    ]);
    bed.podman.set_network_exists("systemd-front", true);
    bed.podman.fail(
        PodmanCall::NetworkRemove("systemd-front".into()),
        "Error: \"systemd-front\" has associated containers with it. Use -f to forcibly delete containers and pods: network is being used",
    );
    bed.units.take_calls();
    let r = legerd.reconcile(&["test".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Failed, "{:?}", r.record);
    let error = r.record.error.unwrap();
    for says in [
        "cannot remove network systemd-front to recreate it with its changed options",
        "network is being used",
        "podman ps -a --filter network=systemd-front",
        "nothing was written and web.service started again",
    ] {
        assert!(error.contains(says), "{says:?} not in: {error}");
    }
    // Nothing written: the old network file is in place, and systemd saw no reload.
    assert_eq!(bed.installed("net/front.network"), "[Network]\nLabel=v=1\n");
    let calls = bed.units.take_calls();
    assert!(!calls.contains(&UnitCall::Reload), "{calls:?}");
    let stop = calls
        .iter()
        .position(|c| *c == UnitCall::Stop("web.service".into()))
        .expect("web stopped first");
    let start = calls
        .iter()
        .position(|c| *c == UnitCall::Start("web.service".into()))
        .unwrap_or_else(|| panic!("web started again: {calls:?}"));
    assert!(stop < start, "{calls:?}");
    assert_eq!(legerd.applied_revision(), Some(good.as_str()));
    let status = legerd.status(None);
    let web = status.status.apps.iter().find(|a| a.name == "web").unwrap();
    assert!(
        web.units.iter().all(|u| u.active_state == "active"),
        "{web:?}"
    );
}

/// A container started by hand on the network: refused before anything is stopped,
/// naming the container and what to do; once it is gone, the next pass recreates the
/// network.
#[tokio::test]
async fn a_network_a_hand_made_container_uses_is_refused_before_anything_stops() {
    let bed = Bed::new();
    let mut legerd = bed.legerd();
    bed.source(&[
        ("net/front.network", "[Network]\nLabel=v=1\n"),
        ("web/web.container", WEB),
    ]);
    applied(&mut legerd).await;
    let good = legerd.applied_revision().unwrap().to_owned();
    bed.source(&[
        ("net/front.network", "[Network]\nLabel=v=2\n"),
        ("web/web.container", WEB),
    ]);
    bed.podman.set_network_exists("systemd-front", true);
    let user = |container: &str, unit: Option<&str>, infra| NetworkUser {
        container: container.into(),
        unit: unit.map(Into::into),
        infra,
    };
    bed.podman.set_network_users(
        "systemd-front",
        vec![
            user("web", Some("web.service"), false),
            user("debug", None, false),
            user("other", Some("other.service"), false),
            user("abc-infra", None, true),
        ],
    );
    bed.units.take_calls();
    let r = legerd.reconcile(&["test".to_owned()]).await;
    assert_eq!(r.record.outcome, PassOutcome::Failed, "{:?}", r.record);
    assert_eq!(
        r.record.error.as_deref(),
        Some(
            "network systemd-front changed, but podman cannot recreate it with the new options while containers leger does not stop use it: debug, other (run by other.service); stop or disconnect them (`podman network disconnect systemd-front <container>`), and the next pass applies the change; nothing was stopped or written"
        )
    );
    let calls = bed.units.take_calls();
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, UnitCall::Stop(_) | UnitCall::Reload)),
        "{calls:?}"
    );
    assert!(
        !bed.podman
            .calls()
            .contains(&PodmanCall::NetworkRemove("systemd-front".into()))
    );
    assert_eq!(bed.installed("net/front.network"), "[Network]\nLabel=v=1\n");
    assert_eq!(legerd.applied_revision(), Some(good.as_str()));

    // The hand-made containers are gone: the next pass recreates the network.
    bed.podman.set_network_users(
        "systemd-front",
        vec![user("web", Some("web.service"), false)],
    );
    applied(&mut legerd).await;
    assert!(
        bed.podman
            .calls()
            .contains(&PodmanCall::NetworkRemove("systemd-front".into()))
    );
    assert_eq!(bed.installed("net/front.network"), "[Network]\nLabel=v=2\n");
}

/// A changed volume legerd may not recreate stays reported after a restart, in status
/// and in the plan, until its file leaves the tree or the volume is created again by
/// hand, as the message advises. A volume that does not exist yet is no drift.
#[tokio::test]
async fn unhealable_volume_drift_is_reported_after_a_restart_until_it_is_healed() {
    let bed = Bed::new();
    let mut legerd = bed.legerd();
    let volume = |label: &str| format!("[Volume]\nLabel=v={label}\n");
    bed.source(&[
        ("db/data.volume", &volume("1")),
        ("db/db.container", DB),
        NO_EXPORT,
    ]);
    applied(&mut legerd).await;

    // Changed before podman ever created the volume: it will have the new options.
    bed.source(&[
        ("db/data.volume", &volume("2")),
        ("db/db.container", DB),
        NO_EXPORT,
    ]);
    applied(&mut legerd).await;
    assert!(legerd.status(None).status.unhealable_drift.is_empty());

    // Changed while the volume exists: drift, never recreated.
    bed.podman
        .set_volume_created("systemd-data", "2026-11-30 10:00:00");
    bed.source(&[
        ("db/data.volume", &volume("3")),
        ("db/db.container", DB),
        NO_EXPORT,
    ]);
    applied(&mut legerd).await;
    let drift = legerd.status(None).status.unhealable_drift;
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(
        drift[0].starts_with(
            "db/data.volume changed, but podman keeps the existing volume systemd-data"
        ),
        "{drift:?}"
    );
    assert!(
        !bed.podman
            .calls()
            .contains(&PodmanCall::VolumeRemove("systemd-data".into())),
        "never recreated without recreate_on_change"
    );
    // The file back to what the volume was made from (a rollback would do this): no
    // drift; changed again: drift again.
    bed.source(&[
        ("db/data.volume", &volume("2")),
        ("db/db.container", DB),
        NO_EXPORT,
    ]);
    applied(&mut legerd).await;
    assert!(legerd.status(None).status.unhealable_drift.is_empty());
    bed.source(&[
        ("db/data.volume", &volume("3")),
        ("db/db.container", DB),
        NO_EXPORT,
    ]);
    applied(&mut legerd).await;
    assert_eq!(legerd.status(None).status.unhealable_drift, drift);
    drop(legerd);

    // A new legerd on the same state: still reported, in status and in the plan.
    let mut legerd = bed.legerd();
    assert_eq!(legerd.status(None).status.unhealable_drift, drift);
    applied_or_noop(&mut legerd).await;
    assert_eq!(legerd.status(None).status.unhealable_drift, drift);
    let plan = legerd.plan(None).await.unwrap();
    assert_eq!(plan.unhealable, drift);
    assert_eq!(legerd.plan(Some("db")).await.unwrap().unhealable, drift);

    // Recreated by hand: the next pass sees a new volume and forgets the drift, for
    // the next legerd too.
    bed.podman
        .set_volume_created("systemd-data", "2026-11-30 11:00:00");
    applied_or_noop(&mut legerd).await;
    assert!(legerd.status(None).status.unhealable_drift.is_empty());
    drop(legerd);
    let mut legerd = bed.legerd();
    assert!(legerd.status(None).status.unhealable_drift.is_empty());

    // Changed again, then the file leaves the tree: no longer reported.
    bed.source(&[
        ("db/data.volume", &volume("4")),
        ("db/db.container", DB),
        NO_EXPORT,
    ]);
    applied(&mut legerd).await;
    assert_eq!(legerd.status(None).status.unhealable_drift.len(), 1);
    bed.source(&[
        (
            "db/db.container",
            "[Container]\nImage=localhost/busybox:latest\nExec=sleep 1000\n",
        ),
        NO_EXPORT,
    ]);
    applied(&mut legerd).await;
    assert!(legerd.status(None).status.unhealable_drift.is_empty());
    drop(legerd);
    let legerd = bed.legerd();
    assert!(legerd.status(None).status.unhealable_drift.is_empty());
    drop(bed.dir);
}

/// A pass that changes nothing or applies: the restarted legerd's first pass.
async fn applied_or_noop(legerd: &mut Reconciler<RecordingUnitManager>) {
    let r = legerd.reconcile(&["startup".to_owned()]).await;
    assert!(r.record.error.is_none(), "{:?}", r.record);
}

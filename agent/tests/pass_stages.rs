//! Whole passes in-process: the real stages (fetch from a dir source, validate,
//! observe, plan, gates, backup, apply, health, record) against real files and a real
//! SQLite store, with systemd replaced by the recording double. The double only
//! records the order of calls and answers unit states from the test's script; what
//! systemd does with the calls is tested on the test bed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use leger_api_types::{PassOutcome, RestoreRequest};
use legerd::model::{UnitRun, UnitState};
use legerd::pass::PassResult;
use legerd::pass::intent::{self, Intent, Phase};
use legerd::podman::{PodmanCall, RecordingPodman};
use legerd::reconciler::Reconciler;
use legerd::store::{RevisionState, Store};
use legerd::systemd::recording::{Call, RecordingUnitManager};

const WEB: &str = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 1000\n";
const DB: &str = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 2000\n";

fn state(active: &str, sub: &str) -> UnitState {
    UnitState {
        load_state: "loaded".into(),
        active_state: active.into(),
        sub_state: sub.into(),
    }
}

fn active() -> UnitState {
    state("active", "running")
}

/// A host in a temporary folder: a dir source, desired.toml, the quadlet dir, the
/// store, and legerd's reconciler over the recording double.
struct Bed {
    _dir: tempfile::TempDir,
    source: PathBuf,
    desired_file: PathBuf,
    quadlets: PathBuf,
    store: Arc<Mutex<Store>>,
    units: Arc<RecordingUnitManager>,
    podman: Arc<RecordingPodman>,
    reconciler: Reconciler<RecordingUnitManager>,
}

impl Bed {
    fn new() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let settings = legerd::testkit::settings_in(dir.path());
        let store = Arc::new(Mutex::new(
            Store::open(&settings.paths.state_dir.join("legerd.db")).unwrap(),
        ));
        let units = Arc::new(RecordingUnitManager::new());
        let podman = Arc::new(RecordingPodman::new());
        let source = dir.path().join("src");
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(settings.paths.desired_file.parent().unwrap()).unwrap();
        let bed = Bed {
            source,
            desired_file: settings.paths.desired_file.clone(),
            quadlets: settings.paths.quadlet_dir.clone(),
            reconciler: Reconciler::new(settings, Arc::clone(&units), Arc::clone(&store))
                .with_podman(podman.clone()),
            store,
            units,
            podman,
            _dir: dir,
        };
        bed.policy("");
        bed
    }

    /// Rewrites desired.toml with `policy` lines under `[policy]`.
    fn policy(&self, policy: &str) {
        std::fs::write(
            &self.desired_file,
            format!(
                "[source]\nkind = \"dir\"\npath = \"{}\"\n\n[policy]\n{policy}\n",
                self.source.display()
            ),
        )
        .unwrap();
    }

    /// Replaces the source's content.
    fn source(&self, files: &[(&str, &str)]) {
        std::fs::remove_dir_all(&self.source).unwrap();
        for (path, text) in files {
            let p = self.source.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    async fn pass(&mut self) -> PassResult {
        self.units.take_calls();
        self.reconciler.reconcile(&["test".to_owned()]).await
    }

    fn quadlet(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(self.quadlets.join(key)).ok()
    }

    fn revision_state(&self, revision: &str) -> Option<RevisionState> {
        self.store.lock().unwrap().revision_state(revision).unwrap()
    }

    fn inventory_keys(&self) -> Vec<String> {
        let inv = self.store.lock().unwrap().inventory().unwrap();
        inv.into_iter().map(|e| e.key).collect()
    }

    /// Applies a first revision with web and db, both scripted to come up.
    async fn converged(&mut self) -> String {
        self.units.set_state_after_job("web.service", active());
        self.units.set_state_after_job("db.service", active());
        self.source(&[("web/web.container", WEB), ("db/db.container", DB)]);
        let r = self.pass().await;
        assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
        r.record.revision.unwrap()
    }
}

fn revision(r: &PassResult) -> String {
    r.record.revision.clone().unwrap()
}

#[tokio::test]
async fn pass_forward_apply_writes_reloads_starts_and_records() {
    let mut bed = Bed::new();
    let rev = bed.converged().await;
    let last = bed.reconciler.state().last_pass.clone().unwrap();
    assert_eq!(last.trigger, "test");
    assert_eq!(bed.quadlet("web/web.container").as_deref(), Some(WEB));
    assert_eq!(bed.quadlet("db/db.container").as_deref(), Some(DB));
    assert_eq!(
        bed.inventory_keys(),
        ["db/db.container", "web/web.container"]
    );
    assert_eq!(bed.revision_state(&rev), Some(RevisionState::Applied));
    assert_eq!(bed.reconciler.applied_revision(), Some(rev.as_str()));
    // The revision store's copy is written while the pass applies; a finished pass has
    // waited for it.
    let state_dir = legerd::testkit::settings_in(bed._dir.path())
        .paths
        .state_dir;
    let stored = legerd::revisions::RevisionStore::new(state_dir.join("revisions"));
    assert!(stored.contains(&rev), "revision {rev} not in the store");
    assert_eq!(
        intent::load(&bed.store).await.unwrap(),
        None,
        "intent cleared"
    );
    let history = bed.store.lock().unwrap().passes(10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].outcome, PassOutcome::Applied);

    // The same revision again: nothing to do, nothing called but state reads.
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Noop);
    assert!(bed.units.actions().is_empty(), "{:?}", bed.units.actions());
}

#[tokio::test]
async fn pass_forward_apply_calls_systemd_in_order() {
    let mut bed = Bed::new();
    bed.units.set_state_after_job("web.service", active());
    bed.units.set_state_after_job("db.service", active());
    bed.source(&[("web/web.container", WEB), ("db/db.container", DB)]);
    let r = bed.pass().await;
    assert_eq!(
        r.record.outcome,
        PassOutcome::Applied,
        "{:?}",
        r.record.error
    );
    assert_eq!(
        bed.units.actions(),
        [
            Call::Reload,
            Call::Start("db.service".into()),
            Call::Start("web.service".into()),
        ]
    );
    assert!(
        r.record
            .actions
            .iter()
            .filter(|a| a.starts_with("create"))
            .count()
            == 2,
        "{:?}",
        r.record.actions
    );
}

#[tokio::test]
async fn pass_rollback_restores_the_last_good_revision_and_does_not_retry() {
    let mut bed = Bed::new();
    let good = bed.converged().await;
    // The new revision breaks web; db is untouched.
    let broken = "[Container]\nImage=localhost/busybox:latest\nExec=false\n";
    bed.source(&[("web/web.container", broken), ("db/db.container", DB)]);
    bed.units
        .set_state_after_job("web.service", state("failed", "failed"));
    bed.podman.set_journal("web.service", "about to crash");
    let r = bed.pass().await;
    let bad = revision(&r);
    // The rollback message quotes the unit's last journal lines, read through the seam.
    assert!(
        bed.podman
            .calls()
            .contains(&PodmanCall::UnitJournal("web.service".into()))
    );
    assert!(
        r.record
            .error
            .as_deref()
            .unwrap_or("")
            .contains("about to crash"),
        "{:?}",
        r.record.error
    );
    assert_eq!(r.record.outcome, PassOutcome::RolledBack, "{:?}", r.record);
    assert_eq!(r.failure_cause, Some("RolledBack"));
    assert_eq!(bed.revision_state(&bad), Some(RevisionState::Failed));
    assert_eq!(bed.revision_state(&good), Some(RevisionState::Applied));
    assert_eq!(bed.quadlet("web/web.container").as_deref(), Some(WEB));
    assert_eq!(bed.reconciler.applied_revision(), Some(good.as_str()));
    // Forward: reload, restart web; rollback: reload, start the failed web. db never.
    assert_eq!(
        bed.units.actions(),
        [
            Call::Reload,
            Call::Restart("web.service".into()),
            Call::Reload,
            Call::Start("web.service".into()),
        ]
    );
    assert!(
        r.record.actions.iter().any(|a| a.starts_with("rollback: ")),
        "{:?}",
        r.record.actions
    );
    let status = bed.reconciler.status(None);
    let ready = status.condition("Ready").unwrap();
    assert_eq!(ready.reason, "RolledBack");
    assert!(ready.message.contains("web.service"), "{}", ready.message);

    // The next poll holds the good revision: the bad one is not applied again.
    bed.units.set_state("web.service", active());
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Failed);
    assert_eq!(r.record.revision.as_deref(), Some(bad.as_str()));
    assert!(bed.units.actions().is_empty(), "{:?}", bed.units.actions());
    assert_eq!(bed.quadlet("web/web.container").as_deref(), Some(WEB));
}

#[tokio::test]
async fn pass_pin_converges_from_the_revision_store_without_the_source() {
    let mut bed = Bed::new();
    let first = bed.converged().await;
    let web2 = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 3000\n";
    bed.source(&[("web/web.container", web2), ("db/db.container", DB)]);
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Applied);
    // Pin the first revision and break the source: the pin never asks it.
    bed.policy(&format!("pin = \"{first}\""));
    std::fs::remove_dir_all(&bed.source).unwrap();
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(revision(&r), first);
    assert_eq!(bed.quadlet("web/web.container").as_deref(), Some(WEB));
    assert_eq!(
        bed.units.actions(),
        [Call::Reload, Call::Restart("web.service".into())]
    );
    let status = bed.reconciler.status(None);
    assert_eq!(
        status.status.pinned_revision.as_deref(),
        Some(first.as_str())
    );
}

#[tokio::test]
async fn pass_failed_pin_returns_to_last_good_and_does_not_flap() {
    let mut bed = Bed::new();
    let first = bed.converged().await;
    let web2 = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 3000\n";
    bed.source(&[("web/web.container", web2), ("db/db.container", DB)]);
    let second = revision(&bed.pass().await);
    // Pin the first revision back, but this time web fails under it.
    bed.units
        .set_state_after_job("web.service", state("failed", "failed"));
    bed.policy(&format!("pin = \"{first}\""));
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::RolledBack, "{:?}", r.record);
    assert_eq!(bed.revision_state(&first), Some(RevisionState::Failed));
    assert_eq!(bed.reconciler.applied_revision(), Some(second.as_str()));
    assert_eq!(bed.quadlet("web/web.container").as_deref(), Some(web2));

    // Every later pass holds the last good revision: no reload, no restart, no backup.
    bed.units.set_state("web.service", active());
    let backups = bed.reconciler_backups();
    for _ in 0..3 {
        let r = bed.pass().await;
        assert_eq!(r.failure_cause, Some("RolledBack"));
        assert!(bed.units.actions().is_empty(), "{:?}", bed.units.actions());
    }
    assert_eq!(bed.reconciler_backups(), backups, "no backup per poll");
    let ready = bed.reconciler.status(None);
    let ready = ready.condition("Ready").unwrap();
    assert!(
        ready.message.contains("pinned revision") && ready.message.contains("--force"),
        "{}",
        ready.message
    );
}

impl Bed {
    /// How many backup folders exist.
    fn reconciler_backups(&self) -> usize {
        let root = self.quadlets.parent().unwrap().join("state/backups");
        std::fs::read_dir(root).map_or(0, |d| d.count())
    }
}

#[tokio::test]
async fn pass_staged_mode_waits_for_approval_then_applies_it() {
    let mut bed = Bed::new();
    bed.units.set_state_after_job("web.service", active());
    bed.source(&[("web/web.container", WEB)]);
    bed.policy("mode = \"staged\"");
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Staged);
    assert!(bed.units.actions().is_empty());
    assert_eq!(bed.quadlet("web/web.container"), None);
    let staged = bed.reconciler.staged().expect("a staged change");
    let rev = staged.revision.clone();

    bed.policy(&format!("mode = \"staged\"\napproved = \"{rev}\""));
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(bed.reconciler.applied_revision(), Some(rev.as_str()));
    assert_eq!(
        bed.units.actions(),
        [Call::Reload, Call::Start("web.service".into())]
    );
    assert!(bed.reconciler.staged().is_none());
}

#[tokio::test]
async fn pass_suspended_plans_and_changes_nothing() {
    let mut bed = Bed::new();
    bed.source(&[("web/web.container", WEB)]);
    bed.policy("suspend = true");
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Suspended);
    assert!(bed.units.actions().is_empty());
    assert!(r.record.actions.iter().all(|a| a.starts_with("(held) ")));
    assert_eq!(bed.quadlet("web/web.container"), None);
}

#[tokio::test]
async fn pass_blames_only_the_units_the_revision_changed() {
    let mut bed = Bed::new();
    let _first = bed.converged().await;
    // db fails on its own; self-heal will try to start it again.
    bed.units.set_state("db.service", state("failed", "failed"));
    bed.units
        .set_state_after_job("db.service", state("failed", "failed"));
    let web2 = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 3000\n";
    bed.source(&[("web/web.container", web2), ("db/db.container", DB)]);
    let r = bed.pass().await;
    let second = revision(&r);
    // The revision is applied, not rolled back; db is reported by name.
    assert_eq!(bed.revision_state(&second), Some(RevisionState::Applied));
    assert_eq!(bed.reconciler.applied_revision(), Some(second.as_str()));
    assert_eq!(r.failure_cause, Some("UnitFailed"));
    assert_eq!(bed.quadlet("web/web.container").as_deref(), Some(web2));
    let status = bed.reconciler.status(None);
    let ready = status.condition("Ready").unwrap();
    assert_eq!(ready.reason, "UnitFailed");
    assert!(ready.message.contains("db.service"), "{}", ready.message);
    // web restarted for its change; db was only started again by self-heal.
    assert_eq!(
        bed.units.actions(),
        [
            Call::Reload,
            Call::Start("db.service".into()),
            Call::Restart("web.service".into()),
        ]
    );
}

#[tokio::test]
async fn pass_finishes_an_apply_interrupted_by_a_crash() {
    let mut bed = Bed::new();
    let first = bed.converged().await;
    // A crash after the new web.container was written and its inventory row updated,
    // before the restart: the files match the next revision already.
    let web2 = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 3000\n";
    bed.source(&[("web/web.container", web2), ("db/db.container", DB)]);
    let r = bed.pass().await;
    let second = revision(&r);
    assert_eq!(r.record.outcome, PassOutcome::Applied);
    // Rewind the records to the crash: the store says `first` is applied (recorded
    // last), and the intent record lists web.service, phase applying.
    bed.store
        .lock()
        .unwrap()
        .record_revision(&first, RevisionState::Applied, None)
        .unwrap();
    intent::save(
        &bed.store,
        &Intent {
            revision: second.clone(),
            mode: "forward".into(),
            units: ["web.service".to_owned()].into(),
            gated: ["web.service".to_owned()].into(),
            files: Default::default(),
            phase: Phase::Applying,
        },
    )
    .await
    .unwrap();
    let mut restarted = Bed {
        reconciler: Reconciler::new(
            legerd::testkit::settings_in(bed._dir.path()),
            Arc::clone(&bed.units),
            Arc::clone(&bed.store),
        )
        .with_podman(bed.podman.clone()),
        ..bed
    };
    let r = restarted.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    // The files already matched, yet web restarts: it may never have loaded them.
    assert_eq!(
        restarted.units.actions(),
        [Call::Reload, Call::Restart("web.service".into())]
    );
    assert_eq!(
        restarted.revision_state(&second),
        Some(RevisionState::Applied)
    );
    assert_eq!(intent::load(&restarted.store).await.unwrap(), None);
}

#[tokio::test]
async fn pass_reruns_a_gate_a_crash_cut_short() {
    let mut bed = Bed::new();
    let first = bed.converged().await;
    let web2 = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 3000\n";
    bed.source(&[("web/web.container", web2), ("db/db.container", DB)]);
    let second = revision(&bed.pass().await);
    // Rewind to a crash inside the gate: applied is still `first`, the intent record
    // is in phase gating. web never comes up (the gate times out after 5s).
    bed.store
        .lock()
        .unwrap()
        .record_revision(&first, RevisionState::Applied, None)
        .unwrap();
    intent::save(
        &bed.store,
        &Intent {
            revision: second.clone(),
            mode: "forward".into(),
            units: ["web.service".to_owned()].into(),
            gated: ["web.service".to_owned()].into(),
            files: Default::default(),
            phase: Phase::Gating,
        },
    )
    .await
    .unwrap();
    bed.units
        .set_state("web.service", state("activating", "start"));
    let mut restarted = Bed {
        reconciler: Reconciler::new(
            legerd::testkit::settings_in(bed._dir.path()),
            Arc::clone(&bed.units),
            Arc::clone(&bed.store),
        )
        .with_podman(bed.podman.clone()),
        ..bed
    };
    let r = restarted.pass().await;
    // The gate ran again (no restart first) and rolled the revision back.
    assert_eq!(r.record.outcome, PassOutcome::RolledBack, "{:?}", r.record);
    assert_eq!(
        restarted.revision_state(&second),
        Some(RevisionState::Failed)
    );
    assert_eq!(restarted.quadlet("web/web.container").as_deref(), Some(WEB));
    let actions = restarted.units.actions();
    assert_eq!(
        actions,
        [Call::Reload, Call::Restart("web.service".into())],
        "only the rollback's jobs"
    );
}

#[tokio::test]
async fn pass_adopts_a_file_whose_inventory_row_was_lost() {
    let mut bed = Bed::new();
    bed.units.set_state_after_job("web.service", active());
    bed.source(&[("web/web.container", WEB)]);
    // A power cut: the file reached the disk, its inventory row did not; the intent
    // record lists the file's hash.
    let key = "web/web.container";
    std::fs::create_dir_all(bed.quadlets.join("web")).unwrap();
    std::fs::write(bed.quadlets.join(key), WEB).unwrap();
    intent::save(
        &bed.store,
        &Intent {
            revision: "older".into(),
            mode: "forward".into(),
            units: ["web.service".to_owned()].into(),
            gated: Default::default(),
            files: [(
                key.to_owned(),
                legerd::model::ContentHash::of(WEB.as_bytes()).to_hex(),
            )]
            .into(),
            phase: Phase::Applying,
        },
    )
    .await
    .unwrap();
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(bed.inventory_keys(), [key]);

    // Without the intent record the same file is someone else's and never touched.
    let mut other = Bed::new();
    other.source(&[("web/web.container", WEB)]);
    std::fs::create_dir_all(other.quadlets.join("web")).unwrap();
    std::fs::write(other.quadlets.join(key), "hand-made").unwrap();
    let r = other.pass().await;
    assert_eq!(r.failure_cause, Some("PlanRefused"));
    assert_eq!(other.quadlet(key).as_deref(), Some("hand-made"));
}

#[tokio::test]
async fn pass_restore_goes_through_converge_and_history() {
    let mut bed = Bed::new();
    bed.converged().await;
    // A change to web takes a backup of web first.
    let web2 = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 3000\n";
    bed.source(&[("web/web.container", web2), ("db/db.container", DB)]);
    assert_eq!(bed.pass().await.record.outcome, PassOutcome::Applied);
    bed.units.take_calls();
    let (result, answer) = bed
        .reconciler
        .restore(&RestoreRequest {
            app: "web".into(),
            backup: None,
        })
        .await;
    let answer = answer.expect("restored");
    assert_eq!(answer.stopped, ["web.service"]);
    assert_eq!(answer.started, ["web.service"]);
    assert_eq!(bed.quadlet("web/web.container").as_deref(), Some(WEB));
    assert_eq!(
        bed.units.actions(),
        [
            Call::Stop("web.service".into()),
            Call::Reload,
            Call::Start("web.service".into()),
        ]
    );
    assert_eq!(result.record.trigger, "restore");
    assert_eq!(result.record.outcome, PassOutcome::Applied);
    let history = bed.store.lock().unwrap().passes(1).unwrap();
    assert_eq!(history[0].trigger, "restore");
    assert_eq!(intent::load(&bed.store).await.unwrap(), None);
}

#[tokio::test]
async fn pass_run_to_completion_unit_is_healthy_and_not_drift() {
    let mut bed = Bed::new();
    let job = "[Container]\nImage=localhost/busybox:latest\nExec=echo migrated\n";
    bed.units.set_state_after_job("web.service", active());
    bed.units
        .set_state_after_job("migrate.service", state("inactive", "dead"));
    bed.source(&[("web/web.container", WEB), ("web/migrate.container", job)]);
    // systemd's record: the main process exited 0, then the unit left active.
    bed.units.set_run("migrate.service", finished_run());
    let r = bed.pass().await;
    // The gate accepts a unit that ran and exited 0.
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert!(
        bed.units.releases() > 0,
        "the kept units are let go after the gate"
    );
    assert!(
        bed.units
            .actions()
            .contains(&Call::Start("migrate.service".into()))
    );
    let ready = bed.reconciler.status(None);
    let ready = ready.condition("Ready").unwrap();
    assert_eq!(
        ready.status,
        leger_api_types::ConditionStatus::True,
        "{ready:?}"
    );

    // It is not started again on the next passes: it is done, not drift; not even a
    // reload when systemd garbage-collected the finished unit.
    bed.units.set_state("migrate.service", UnitState::unknown());
    for _ in 0..2 {
        let r = bed.pass().await;
        assert_eq!(r.record.outcome, PassOutcome::Noop, "{:?}", r.record);
        assert!(bed.units.actions().is_empty(), "{:?}", bed.units.actions());
    }
    // A change to its file runs it again.
    let job2 = "[Container]\nImage=localhost/busybox:latest\nExec=echo migrated twice\n";
    bed.source(&[("web/web.container", WEB), ("web/migrate.container", job2)]);
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert_eq!(
        bed.units.actions(),
        [Call::Reload, Call::Start("migrate.service".into())]
    );
    // A failure is drift again: self-heal starts it.
    bed.units
        .set_state("migrate.service", state("failed", "failed"));
    bed.pass().await;
    assert_eq!(bed.units.actions(), [Call::Start("migrate.service".into())]);
}

/// How systemd records a run that ended by itself with exit 0.
fn finished_run() -> UnitRun {
    UnitRun {
        result: "success".into(),
        main_code: 1,
        main_status: 0,
        main_exited: 2_000,
        active_exited: 2_001,
        started: 1_000,
        remain_after_exit: false,
    }
}

/// A long-running container stopped from outside (`systemctl stop`) during its gate
/// rests `inactive` like a finished job, and even exits 0 when it traps SIGTERM. The
/// gate reads systemd's record of the run: stopped, not completed. The revision that
/// changed it is not recorded good, and the unit is never remembered as done, so
/// self-heal starts it again.
#[tokio::test]
async fn pass_unit_stopped_from_outside_during_its_gate_is_not_completed() {
    let mut bed = Bed::new();
    let good = bed.converged().await;
    let web2 = "[Container]\nImage=localhost/busybox:latest\nExec=sleep 1001\n";
    bed.source(&[("web/web.container", web2), ("db/db.container", DB)]);
    bed.units
        .set_state_after_job("web.service", state("inactive", "dead"));
    bed.units.set_run(
        "web.service",
        UnitRun {
            active_exited: 2_000,
            main_exited: 2_210,
            ..finished_run()
        },
    );
    let r = bed.pass().await;
    assert_ne!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    let error = r.record.error.clone().unwrap_or_default();
    assert!(error.contains("web.service"), "{error}");
    assert!(error.contains("stop job"), "{error}");
    assert_eq!(
        bed.revision_state(&revision(&r)),
        Some(RevisionState::Failed)
    );
    assert_eq!(bed.reconciler.applied_revision(), Some(good.as_str()));
    assert!(
        !bed.reconciler
            .state()
            .completed_units
            .contains("web.service"),
        "{:?}",
        bed.reconciler.state().completed_units
    );
    // Still at rest on the next pass: drift, started again.
    bed.units.set_state_after_job("web.service", active());
    bed.pass().await;
    assert!(
        bed.units
            .actions()
            .contains(&Call::Start("web.service".into())),
        "{:?}",
        bed.units.actions()
    );
}

#[tokio::test]
async fn pass_converges_secrets_through_the_podman_seam_and_counts_them() {
    let mut bed = Bed::new();
    let state_dir = bed.quadlets.parent().unwrap().join("state");
    let identity = Arc::new(legerd::secrets::NodeIdentity::load_or_create(&state_dir).unwrap());
    let value = legerd::secrets::SecretValue::from(b"s3cret".to_vec());
    let ciphertext = identity.encrypt(&value).unwrap();
    bed.store
        .lock()
        .unwrap()
        .put_local_secret("db-pass", &ciphertext)
        .unwrap();
    let metrics = Arc::new(legerd::metrics::Metrics::new(false));
    let podman: Arc<dyn legerd::podman::Podman> = bed.podman.clone();
    bed.reconciler = Reconciler::new(
        legerd::testkit::settings_in(bed._dir.path()),
        Arc::clone(&bed.units),
        Arc::clone(&bed.store),
    )
    .with_podman(Arc::clone(&podman))
    .with_metrics(Arc::clone(&metrics))
    .with_secrets(legerd::secrets::SecretsConverger::new(identity, podman));
    bed.units.set_state_after_job("web.service", active());
    let web =
        "[Container]\nImage=localhost/busybox:latest\nSecret=db-pass,type=env,target=DB_PASS\n";
    bed.source(&[("web/web.container", web)]);
    let r = bed.pass().await;
    assert_eq!(r.record.outcome, PassOutcome::Applied, "{:?}", r.record);
    assert!(
        bed.podman.calls().contains(&PodmanCall::SecretCreate {
            name: "db-pass".into(),
            replace: false
        }),
        "{:?}",
        bed.podman.calls()
    );
    assert!(
        r.record
            .actions
            .contains(&"create secret db-pass".to_owned())
    );
    assert_eq!(
        bed.units.actions(),
        [Call::Reload, Call::Start("web.service".into())]
    );
    let text = metrics.render();
    assert!(
        text.lines().any(|l| l == "legerd_secrets_synced_total 1"),
        "{text}"
    );
    // Never the value: not in history, not in metrics.
    assert!(!format!("{:?}", r.record).contains("s3cret"));
    assert!(!text.contains("s3cret"));
}

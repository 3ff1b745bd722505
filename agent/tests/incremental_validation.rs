//! Incremental validation against podman's real quadlet generator (the test bed's, from
//! its rootfs cache): a one-app change dry-runs only that app and what it references,
//! and a change to a shared network is still refused through the apps that use it.
//!
//! The generator is wrapped by a script that lists what it was given before running
//! the real binary: the real generator judges, the script only records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use legerd::assemble::ParseCache;
use legerd::model::{Snapshot, UnitState};
use legerd::pass::validate::check_incremental;
use legerd::podman::RecordingPodman;
use legerd::quadlet::{Installed, KeyTable, Target};
use legerd::reconciler::Reconciler;
use legerd::store::Store;
use legerd::systemd::recording::RecordingUnitManager;
use legerd::testkit::settings_in;
use legerd::validated::{ValidatedApps, generator_identity};

fn real_generator() -> Option<PathBuf> {
    let dir = std::env::var_os("LEGER_TESTBED_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/leger-testbed"), PathBuf::from);
    std::env::var_os("LEGER_QUADLET_GENERATOR")
        .map(PathBuf::from)
        .into_iter()
        .chain([dir.join("base-trixie/usr/libexec/podman/quadlet")])
        .find(|p| p.exists())
}

/// A generator that appends `RUN` and the staged files to `log`, then runs `real`.
fn recording_generator(dir: &Path, real: &Path, log: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("quadlet-recording");
    let script = format!(
        "#!/bin/sh\n{{ echo RUN; cd \"$QUADLET_UNIT_DIRS\" && find . -type f | sort; }} >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        real.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The staged files of each generator run so far.
fn runs(log: &Path) -> Vec<BTreeSet<String>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for line in text.lines() {
        if line == "RUN" {
            out.push(BTreeSet::new());
        } else if let Some(last) = out.last_mut() {
            last.insert(line.trim_start_matches("./").to_owned());
        }
    }
    out
}

fn snapshot(rev: &str, files: &[(String, String)]) -> Snapshot {
    Snapshot {
        revision: rev.into(),
        files: files
            .iter()
            .map(|(p, c)| (p.clone(), Arc::from(c.as_bytes())))
            .collect(),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// infra defines a network used by web and api; solo1..solo4 stand alone.
fn files(network: &str, web_tag: u32, solo1_tag: u32) -> Vec<(String, String)> {
    let user =
        |tag: u32| format!("[Container]\nImage=localhost/web:{tag}\nNetwork=shared.network\n");
    let mut f = vec![
        ("infra/shared.network".to_owned(), network.to_owned()),
        ("web/web.container".to_owned(), user(web_tag)),
        ("api/api.container".to_owned(), user(1)),
    ];
    for i in 1..=4 {
        let tag = if i == 1 { solo1_tag } else { 1 };
        f.push((
            format!("solo{i}/solo{i}.container"),
            format!("[Container]\nImage=localhost/solo:{tag}\n"),
        ));
    }
    f
}

#[test]
fn one_app_change_dry_runs_that_app_and_a_broken_shared_network_is_refused() {
    let Some(real) = real_generator() else {
        eprintln!("skipped: no test-bed generator; run contrib/testbed/testbed.sh prepare");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("generator.log");
    let mut settings = settings_in(root.path());
    settings.quadlet.generator = recording_generator(root.path(), &real, &log);
    settings.quadlet.generator_dry_run = true;
    // legerd's fallback when it cannot tell the host's podman: the newest key tables,
    // and the generator's dry run as the judge of what that podman accepts.
    let target = Target {
        keys: KeyTable::newest(),
        installed: Installed::Host(BTreeSet::new()),
    };
    let identity = generator_identity(&settings.quadlet.generator, "test", false);
    let net = "[Network]\n";
    let check = |rev: &str, f: &[(String, String)], record: Option<&ValidatedApps>| {
        check_incremental(
            &snapshot(rev, f),
            &settings,
            &target,
            record,
            &identity,
            &mut ParseCache::default(),
        )
        .expect("the generator gives a verdict")
    };

    // The first revision: every app.
    let (tree, scope) = check("r1", &files(net, 1, 1), None).unwrap();
    assert_eq!(scope.checked.len(), 7);
    assert_eq!(runs(&log).len(), 1);
    assert_eq!(runs(&log)[0].len(), 7, "{:?}", runs(&log));
    let record = ValidatedApps::of(&tree, identity.clone());

    // One standalone app changed: the generator sees that app alone.
    let (tree, scope) = check("r2", &files(net, 1, 2), Some(&record)).unwrap();
    assert_eq!(scope.checked, set(&["solo1"]));
    assert_eq!(runs(&log)[1], set(&["solo1/solo1.container"]));
    let record = ValidatedApps::of(&tree, identity.clone());

    // A network user changed: it is staged with the network it resolves.
    let (tree, scope) = check("r3", &files(net, 2, 2), Some(&record)).unwrap();
    assert_eq!(scope.checked, set(&["web"]));
    assert_eq!(
        runs(&log)[2],
        set(&["infra/shared.network", "web/web.container"])
    );
    let record = ValidatedApps::of(&tree, identity.clone());

    // The record kept on disk (as across a restart): the same revision needs no run.
    record.save(root.path()).unwrap();
    let reloaded = ValidatedApps::load(root.path()).unwrap();
    let (_, scope) = check("r3", &files(net, 2, 2), Some(&reloaded)).unwrap();
    assert!(scope.is_empty());
    assert_eq!(runs(&log).len(), 3, "no generator run for a validated tree");

    // The shared network changed in a way podman 5.4's generator refuses (legerd's
    // newest tables know the key): refused, and both users were dry-run with it.
    let broken = "[Network]\nNetworkDeleteOnStop=true\n";
    let err = check("r4", &files(broken, 2, 2), Some(&reloaded)).unwrap_err();
    assert_eq!(
        runs(&log)[3],
        set(&[
            "api/api.container",
            "infra/shared.network",
            "web/web.container"
        ])
    );
    assert!(err.contains("shared.network"), "{err}");
    assert!(
        err.contains("web.container") && err.contains("api.container"),
        "the generator refuses the network's users too: {err}"
    );
}

/// Whole passes: legerd restarted on a host whose revision it validated dry-runs
/// nothing, and a one-app change then dry-runs that app alone (the record lives in the
/// revision store, read by the new process). systemd is the recording double.
#[tokio::test]
async fn a_restarted_legerd_dry_runs_only_what_changed_since_its_record() {
    let Some(real) = real_generator() else {
        eprintln!("skipped: no test-bed generator; run contrib/testbed/testbed.sh prepare");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("generator.log");
    let mut settings = settings_in(root.path());
    settings.quadlet.generator = recording_generator(root.path(), &real, &log);
    settings.quadlet.generator_dry_run = true;
    let source = root.path().join("src");
    let write = |app: &str, tag: u32| {
        let dir = source.join(app);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("{app}.container")),
            format!("[Container]\nImage=localhost/busybox:{tag}\nExec=sleep 1000\n"),
        )
        .unwrap();
    };
    for app in ["x", "y", "z"] {
        write(app, 1);
    }
    std::fs::create_dir_all(settings.paths.desired_file.parent().unwrap()).unwrap();
    std::fs::write(
        &settings.paths.desired_file,
        format!(
            "[source]\nkind = \"dir\"\npath = \"{}\"\n",
            source.display()
        ),
    )
    .unwrap();
    let legerd = || {
        let store = Arc::new(Mutex::new(
            Store::open(&settings.paths.state_dir.join("legerd.db")).unwrap(),
        ));
        let units = Arc::new(RecordingUnitManager::new());
        for app in ["x", "y", "z"] {
            units.set_state_after_job(
                &format!("{app}.service"),
                UnitState {
                    load_state: "loaded".into(),
                    active_state: "active".into(),
                    sub_state: "running".into(),
                },
            );
        }
        Reconciler::new(settings.clone(), units, store)
            .with_podman(Arc::new(RecordingPodman::new()))
    };

    let mut first = legerd();
    pass(&mut first).await;
    assert_eq!(runs(&log).len(), 1);
    assert_eq!(runs(&log)[0].len(), 3);
    drop(first);

    // A new process on the same state: the applied revision is not dry-run again.
    let mut second = legerd();
    pass(&mut second).await;
    assert_eq!(runs(&log).len(), 1, "{:?}", runs(&log));

    // One app changed: only it.
    write("y", 2);
    pass(&mut second).await;
    assert_eq!(runs(&log).len(), 2);
    assert_eq!(runs(&log)[1], set(&["y/y.container"]));
}

/// One pass that must not fail.
async fn pass(r: &mut Reconciler<RecordingUnitManager>) {
    let r = r.reconcile(&["test".to_owned()]).await;
    assert!(r.record.error.is_none(), "{:?}", r.record);
}

/// A podman upgrade or downgrade, seen by a running legerd through its binary changing
/// (`--version` is the only thing faked; the sid test bed's real 5.8 generator judges):
/// the revision in force is validated again against the new release's key tables, the
/// dry-run record is keyed by that release, and a downgrade that makes a key too new
/// refuses the revision and the next one with both versions named.
#[tokio::test]
async fn a_podman_upgrade_or_downgrade_validates_again_against_its_tables() {
    let dir = std::env::var_os("LEGER_TESTBED_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/leger-testbed"), PathBuf::from);
    let real = dir.join("base-sid/usr/libexec/podman/quadlet");
    if !real.exists() {
        eprintln!(
            "skipped: no sid test-bed generator; run LEGER_TESTBED_SUITE=sid contrib/testbed/testbed.sh prepare"
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("generator.log");
    let mut settings = settings_in(root.path());
    settings.quadlet.generator = recording_generator(root.path(), &real, &log);
    settings.quadlet.generator_dry_run = true;
    // The podman binary: replaced whole on each "upgrade", as a package manager does.
    let podman = root.path().join("podman");
    let install_podman = |version: &str| {
        use std::os::unix::fs::PermissionsExt;
        let new = root.path().join("podman.new");
        std::fs::write(
            &new,
            format!("#!/bin/sh\necho 'podman version {version}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&new, &podman).unwrap();
    };
    let source = root.path().join("src");
    let write = |app: &str, extra: &str| {
        let d = source.join(app);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("{app}.container")),
            format!("[Container]\nImage=localhost/busybox:1\nExec=sleep 1000\n{extra}"),
        )
        .unwrap();
    };
    write("web", "ReloadCmd=/bin/true\n");
    write("solo", "");
    std::fs::create_dir_all(settings.paths.desired_file.parent().unwrap()).unwrap();
    std::fs::write(
        &settings.paths.desired_file,
        format!(
            "[source]\nkind = \"dir\"\npath = \"{}\"\n",
            source.display()
        ),
    )
    .unwrap();
    let store = Arc::new(Mutex::new(
        Store::open(&settings.paths.state_dir.join("legerd.db")).unwrap(),
    ));
    let units = Arc::new(RecordingUnitManager::new());
    for app in ["web", "solo"] {
        units.set_state_after_job(
            &format!("{app}.service"),
            UnitState {
                load_state: "loaded".into(),
                active_state: "active".into(),
                sub_state: "running".into(),
            },
        );
    }
    let record_dir = legerd::validated::record_dir(&settings.paths.state_dir);
    let recorded_for = || ValidatedApps::load(&record_dir).map(|r| r.generator);
    install_podman("5.4.2");
    let mut legerd = Reconciler::new(settings.clone(), units, store)
        .with_podman(Arc::new(RecordingPodman::new()))
        .with_podman_program(&podman);

    // podman 5.4.2: ReloadCmd= is too new; the generator is not even asked.
    let error = failed_pass(&mut legerd).await;
    assert!(
        error.contains("web/web.container:4: ReloadCmd= in [Container] needs podman ≥ 5.5; this host runs 5.4.2"),
        "{error}"
    );
    assert_eq!(runs(&log).len(), 0);

    // Upgraded to 5.8.6: the same revision is validated again, and converges.
    install_podman("5.8.6");
    pass(&mut legerd).await;
    assert_eq!(runs(&log).len(), 1);
    assert_eq!(
        runs(&log)[0],
        set(&["solo/solo.container", "web/web.container"])
    );
    let record = recorded_for().expect("a record after a dry run");
    assert!(
        record.contains("5.8.6"),
        "the record is keyed by podman: {record}"
    );
    // Nothing changed: no dry run.
    pass(&mut legerd).await;
    assert_eq!(runs(&log).len(), 1);

    // Downgraded to 5.4.2: the applied revision is checked again and refused...
    install_podman("5.4.2");
    let error = failed_pass(&mut legerd).await;
    assert!(
        error.contains("needs podman ≥ 5.5; this host runs 5.4.2"),
        "{error}"
    );
    // ... and so is the next one, though only another app changed.
    write("solo", "# v2\n");
    let error = failed_pass(&mut legerd).await;
    assert!(
        error.contains("web/web.container:4: ReloadCmd= in [Container] needs podman ≥ 5.5; this host runs 5.4.2"),
        "{error}"
    );
    assert_eq!(runs(&log).len(), 1, "refused before the generator");
    assert!(legerd.state().applied_revision.is_some());
}

/// One pass that must fail; its error.
async fn failed_pass(r: &mut Reconciler<RecordingUnitManager>) -> String {
    let r = r.reconcile(&["test".to_owned()]).await;
    r.record.error.expect("the pass fails")
}

/// A podman whose `--version` legerd cannot read: keys are checked against the newest
/// release, the trixie test bed's real 5.4.2 generator gives the verdict, and status
/// says so.
#[tokio::test]
async fn an_unreadable_podman_version_leaves_the_verdict_to_the_generator() {
    let Some(real) = real_generator() else {
        eprintln!("skipped: no test-bed generator; run contrib/testbed/testbed.sh prepare");
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut settings = settings_in(root.path());
    settings.quadlet.generator = real;
    settings.quadlet.generator_dry_run = true;
    let podman = root.path().join("podman");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&podman, "#!/bin/sh\necho 'podman version banana'\n").unwrap();
        std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let source = root.path().join("src/web");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(
        source.join("web.container"),
        "[Container]\nImage=localhost/busybox:1\nReloadCmd=/bin/true\n",
    )
    .unwrap();
    std::fs::create_dir_all(settings.paths.desired_file.parent().unwrap()).unwrap();
    std::fs::write(
        &settings.paths.desired_file,
        format!(
            "[source]\nkind = \"dir\"\npath = \"{}\"\n",
            source.parent().unwrap().display()
        ),
    )
    .unwrap();
    let store = Arc::new(Mutex::new(
        Store::open(&settings.paths.state_dir.join("legerd.db")).unwrap(),
    ));
    let mut legerd = Reconciler::new(settings, Arc::new(RecordingUnitManager::new()), store)
        .with_podman(Arc::new(RecordingPodman::new()))
        .with_podman_program(&podman);
    let error = failed_pass(&mut legerd).await;
    // Not legerd's version message (it cannot know the version): the generator's.
    assert!(!error.contains("needs podman"), "{error}");
    assert!(error.contains("ReloadCmd"), "{error}");
    assert!(error.contains("web.container"), "{error}");
    let status = legerd.status(None).status.podman.expect("podman in status");
    assert_eq!(status.version, None);
    let why = status.fallback.expect("the fallback is said");
    assert!(why.contains("\"podman version banana\""), "{why}");
    assert!(
        why.contains("relying on the quadlet generator's dry run"),
        "{why}"
    );
}

//! End-to-end convergence scenarios: legerd runs as a systemd service inside a real
//! systemd 257 + podman 5.4 machine and converges quadlets from git or a folder.

mod common;

use std::time::Instant;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};

const WEB: &str = "apps/web/web.container";
const API: &str = "apps/api/api.container";

/// Boots a machine with a two-app fleet repo and legerd converged on it.
fn two_apps(name: &str) -> Result<(Testbed, Fleet)> {
    let tb = Testbed::boot(name)?;
    let fleet = Fleet::create(
        &tb,
        &[
            (WEB, &container("web", "web v1")),
            (API, &container("api", "api v1")),
            ("apps/web/README.md", "stray file: never installed\n"),
            ("README.md", "top-level readme\n"),
        ],
    )?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    Ok((tb, fleet))
}

#[test]
fn git_two_apps_converge() -> Result<()> {
    let (tb, fleet) = two_apps("e2e-converge")?;
    wait_running(&tb, "web.service", "web")?;
    wait_running(&tb, "api.service", "api")?;
    let head = fleet.head()?;
    wait_applied(&tb, &head)?;
    let doc = status(&tb)?;
    assert_eq!(condition(&doc, "Ready").unwrap().0, "True", "{doc:#}");
    // The journal event carries the revision as a structured field.
    let events = tb.exec_ok(&[
        "journalctl",
        "-o",
        "json",
        "MESSAGE_ID=fc2e5769da014e6c827e73b17a4eb9e8",
    ])?;
    assert!(
        events.contains(&format!("\"LEGER_REVISION\":\"{head}\"")),
        "{events}"
    );
    assert_eq!(doc["apiVersion"], "leger.run/v1alpha1");
    // Only quadlets are installed: not the README next to them.
    let qdir = tb.quadlet_dir_host();
    assert!(qdir.join("web/web.container").exists());
    assert!(!qdir.join("web/README.md").exists());
    assert!(!qdir.join("README.md").exists());
    Ok(())
}

#[test]
fn git_change_restarts_only_that_app() -> Result<()> {
    let (tb, fleet) = two_apps("e2e-change")?;
    let web1 = wait_running(&tb, "web.service", "web")?;
    let api1 = wait_running(&tb, "api.service", "api")?;
    let rev = fleet.commit(&[(WEB, &container("web", "web v2"))], &[], "web v2")?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    wait_until(WAIT, "web restarted with a new container", || {
        Ok(container_id(&tb, "web")?.is_some_and(|id| id != web1))
    })?;
    assert_eq!(
        container_id(&tb, "api")?,
        Some(api1),
        "api must keep its container"
    );
    wait_until(WAIT, "web v2 output", || {
        Ok(tb.unit_logs("web.service")?.contains("web v2"))
    })?;
    Ok(())
}

/// An env file is read when its unit starts, never by the quadlet generator: changing
/// only it restarts the unit with the new values and needs no daemon-reload (which
/// reruns every generator over every quadlet: most of a one-change's time).
#[test]
fn git_env_file_change_restarts_without_daemon_reload() -> Result<()> {
    const QUADLET: &str = "[Container]\nContainerName=web\nImage=localhost/busybox:latest\n\
        Network=none\nEnvironmentFile=web.env\n\
        Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do echo \"web N=$N\"; sleep 2 & wait $!; done'\n";
    const ENV: &str = "apps/web/web.env";
    let tb = Testbed::boot("e2e-env-change")?;
    let fleet = Fleet::create(&tb, &[(WEB, QUADLET), (ENV, "N=1\n")])?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    wait_applied(&tb, &fleet.head()?)?;
    wait_until(WAIT, "web N=1 output", || {
        Ok(tb.unit_logs("web.service")?.contains("web N=1"))
    })?;
    let reloads = || -> Result<usize> {
        let log = tb.exec_ok(&["journalctl", "-q", "-o", "cat", "_PID=1"])?;
        Ok(log
            .lines()
            .filter(|l| l.starts_with("Reloading finished"))
            .count())
    };
    let before = reloads()?;
    assert!(before > 0, "the first converge reloaded systemd");

    let rev = fleet.commit(&[(ENV, "N=2\n")], &[], "N=2")?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    wait_until(WAIT, "web N=2 output", || {
        Ok(tb.unit_logs("web.service")?.contains("web N=2"))
    })?;
    assert_eq!(
        reloads()?,
        before,
        "an env-only change must not reload systemd"
    );
    Ok(())
}

#[test]
fn git_deleted_app_is_pruned() -> Result<()> {
    let (tb, fleet) = two_apps("e2e-prune")?;
    wait_running(&tb, "web.service", "web")?;
    wait_running(&tb, "api.service", "api")?;
    let rev = fleet.commit(&[], &["apps/api"], "remove api")?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    wait_until(WAIT, "api container gone", || {
        Ok(container_id(&tb, "api")?.is_none())
    })?;
    assert_ne!(active_state(&tb, "api.service")?, "active");
    assert!(
        !tb.quadlet_dir_host().join("api").exists(),
        "api's folder must be removed"
    );
    assert!(container_id(&tb, "web")?.is_some());
    Ok(())
}

#[test]
fn git_invalid_quadlet_rejects_revision_whole() -> Result<()> {
    let (tb, fleet) = two_apps("e2e-invalid")?;
    let web1 = wait_running(&tb, "web.service", "web")?;
    let good = fleet.head()?;
    wait_applied(&tb, &good)?;
    fleet.commit(
        &[
            (
                "apps/bad/bad.container",
                "[Container]\nImage=localhost/busybox:latest\nNotAKey=1\n",
            ),
            (WEB, &container("web", "web v2")),
        ],
        &[],
        "bad quadlet",
    )?;
    reconcile(&tb)?;
    wait_until(WAIT, "Stalled=True ValidationFailed", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Stalled")
            .is_some_and(|(s, r, _)| s == "True" && r == "ValidationFailed"))
    })?;
    let doc = status(&tb)?;
    let (_, _, message) = condition(&doc, "Stalled").unwrap();
    assert!(
        message.contains("bad/bad.container:3") && message.contains("NotAKey"),
        "{message}"
    );
    // The revision was rejected whole: web was not updated, bad was not installed.
    assert_eq!(applied_revision(&tb)?, Some(good));
    assert_eq!(container_id(&tb, "web")?, Some(web1));
    assert!(!tb.quadlet_dir_host().join("bad").exists());
    Ok(())
}

#[test]
fn drift_file_and_unit_are_healed() -> Result<()> {
    let (tb, _fleet) = two_apps("e2e-drift")?;
    wait_running(&tb, "web.service", "web")?;
    let file = tb.quadlet_dir_host().join("web/web.container");
    let original = std::fs::read(&file)?;
    std::fs::remove_file(&file)?;
    wait_until(WAIT, "deleted quadlet restored", || {
        Ok(std::fs::read(&file).ok().as_deref() == Some(&original[..]))
    })?;
    std::fs::write(
        &file,
        "[Container]\nImage=localhost/busybox:latest\n# edited by hand\n",
    )?;
    wait_until(WAIT, "edited quadlet restored", || {
        Ok(std::fs::read(&file).ok().as_deref() == Some(&original[..]))
    })?;

    wait_running(&tb, "api.service", "api")?;
    tb.exec_ok(&["systemctl", "stop", "api.service"])?;
    wait_running(&tb, "api.service", "api")?;
    let history = legerctl(&tb, &["history", "-n", "50"])?;
    assert!(history.contains("drift"), "{history}");
    Ok(())
}

#[test]
fn unmanaged_quadlet_is_never_touched() -> Result<()> {
    let tb = Testbed::boot("e2e-unmanaged")?;
    let manual = tb.quadlet_dir_host().join("manual.container");
    let text = container("manual", "by hand");
    std::fs::write(&manual, &text)?;
    let fleet = Fleet::create(&tb, &[(WEB, &container("web", "web v1"))])?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    wait_running(&tb, "web.service", "web")?;
    // A pass that installs one app and prunes another must leave the hand-placed file be.
    let rev = fleet.commit(
        &[("apps/other/other.container", &container("other", "o"))],
        &["apps/web"],
        "swap",
    )?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    assert_eq!(std::fs::read_to_string(&manual)?, text);
    assert_ne!(
        active_state(&tb, "manual.service")?,
        "active",
        "legerd must not start it either"
    );
    Ok(())
}

#[test]
fn pinned_commit_ignores_pushes_until_moved() -> Result<()> {
    let tb = Testbed::boot("e2e-pin")?;
    let fleet = Fleet::create(&tb, &[(WEB, &container("web", "web v1"))])?;
    let first = fleet.head()?;
    legerctl(
        &tb,
        &[
            "set-desired",
            "git",
            &fleet.url_inside(),
            "--path",
            "apps",
            "--ref",
            &first,
        ],
    )?;
    start_legerd(&tb)?;
    let web1 = wait_running(&tb, "web.service", "web")?;
    let second = fleet.commit(&[(WEB, &container("web", "web v2"))], &[], "v2")?;
    reconcile(&tb)?;
    // Wait for a pass that started after the push, then check nothing moved.
    reconcile_and_wait_for_pass(&tb)?;
    assert_eq!(applied_revision(&tb)?, Some(first));
    assert_eq!(container_id(&tb, "web")?, Some(web1.clone()));
    legerctl(
        &tb,
        &[
            "set-desired",
            "git",
            &fleet.url_inside(),
            "--path",
            "apps",
            "--ref",
            &second,
        ],
    )?;
    wait_applied(&tb, &second)?;
    wait_until(WAIT, "web restarted at the new pin", || {
        Ok(container_id(&tb, "web")?.is_some_and(|id| id != web1))
    })?;
    Ok(())
}

#[test]
fn dir_source_edit_converges() -> Result<()> {
    let tb = Testbed::boot("e2e-dir")?;
    let apps = tb.share_dir_host().join("apps");
    std::fs::create_dir_all(apps.join("web"))?;
    std::fs::write(apps.join("web/web.container"), container("web", "dir v1"))?;
    legerctl(
        &tb,
        &[
            "set-desired",
            "dir",
            &format!("{}/apps", leger_e2e::SHARE_DIR_INSIDE),
        ],
    )?;
    start_legerd(&tb)?;
    let web1 = wait_running(&tb, "web.service", "web")?;
    let edited = Instant::now();
    std::fs::write(apps.join("web/web.container"), container("web", "dir v2"))?;
    wait_until(WAIT, "web restarted after the edit", || {
        Ok(container_id(&tb, "web")?.is_some_and(|id| id != web1))
    })?;
    let elapsed = edited.elapsed();
    // A figure for the closing note, not an assertion: timing is not deterministic.
    eprintln!("dir source: edit → new container running in {elapsed:?}");
    // The pass records its trigger once its restart has settled.
    wait_until(
        WAIT,
        "a pass triggered by inotify on the dir source",
        || Ok(legerctl(&tb, &["history", "--json"])?.contains("source-changed")),
    )?;
    Ok(())
}

#[test]
fn bad_desired_and_unreachable_source_keep_running_revision() -> Result<()> {
    let (tb, fleet) = two_apps("e2e-badinput")?;
    let web1 = wait_running(&tb, "web.service", "web")?;
    wait_applied(&tb, &fleet.head()?)?;
    // A hand-broken desired.toml: legerd keeps the last good one and says so.
    let root = std::path::PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    std::fs::write(
        root.join("etc/leger/desired.toml"),
        "[source]\nkind = \"git\"\nurll = \"x\"\n",
    )?;
    wait_until(WAIT, "desired state error in status", || {
        Ok(status(&tb)?["status"]["desiredStateError"]
            .as_str()
            .is_some_and(|e| e.contains("urll")))
    })?;
    assert_eq!(container_id(&tb, "web")?, Some(web1.clone()));
    // An unreachable source: Stalled with SourceUnavailable, nothing restarted.
    legerctl(
        &tb,
        &[
            "set-desired",
            "git",
            "/srv/leger/missing.git",
            "--path",
            "apps",
        ],
    )?;
    wait_until(WAIT, "Stalled=True SourceUnavailable", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Stalled")
            .is_some_and(|(s, r, _)| s == "True" && r == "SourceUnavailable"))
    })?;
    assert_eq!(container_id(&tb, "web")?, Some(web1));
    assert_eq!(active_state(&tb, "api.service")?, "active");
    Ok(())
}

/// Runs `args` inside as the rootless user, with its runtime dir (and so its user bus).
fn as_user(tb: &Testbed, uid: &str, args: &[&str]) -> Result<String> {
    let runtime = format!("XDG_RUNTIME_DIR=/run/user/{uid}");
    let mut full = vec![
        "runuser",
        "-u",
        "leger",
        "--",
        "env",
        &runtime,
        "HOME=/home/leger",
    ];
    full.extend_from_slice(args);
    tb.exec_ok(&full)
}

#[test]
fn user_mode_converges_rootless() -> Result<()> {
    let tb = Testbed::boot("e2e-user")?;
    // podman's rootless units wait (up to 90 s) for the system's network-online.target,
    // which nothing pulls in on this machine; a real host reaches it at boot.
    tb.exec_ok(&["systemctl", "start", "network-online.target"])?;
    tb.exec_ok(&["useradd", "-m", "-s", "/bin/sh", "leger"])?;
    let uid = tb.exec_ok(&["id", "-u", "leger"])?.trim().to_owned();
    // loginctl only works from a real process inside (see the test bed README).
    tb.exec_ok(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "loginctl",
        "enable-linger",
        "leger",
    ])?;
    let bus = format!("/run/user/{uid}/bus");
    wait_until(WAIT, "the user's bus", || {
        Ok(tb.exec(&["test", "-S", &bus])?.status.success())
    })?;
    as_user(
        &tb,
        &uid,
        &[
            "podman",
            "import",
            "--quiet",
            "--change",
            "CMD [\"/bin/sh\"]",
            "/opt/leger-images/busybox-rootfs.tar",
            "localhost/busybox:latest",
        ],
    )?;

    // The share dir is a private tempdir on the host: let the user read the apps.
    let share = tb.share_dir_host();
    std::fs::set_permissions(share, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let apps = share.join("apps");
    std::fs::create_dir_all(apps.join("web"))?;
    std::fs::write(
        apps.join("web/web.container"),
        container("uweb", "rootless v1"),
    )?;
    let apps_inside = format!("{}/apps", leger_e2e::SHARE_DIR_INSIDE);
    as_user(
        &tb,
        &uid,
        &[
            "/opt/leger/legerctl",
            "--user",
            "set-desired",
            "dir",
            &apps_inside,
        ],
    )?;

    let root = std::path::PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    let unit = include_str!("../../contrib/systemd/legerd-user.service")
        .replace("ExecStart=/usr/bin/legerd", "ExecStart=/opt/leger/legerd");
    std::fs::create_dir_all(root.join("etc/systemd/user"))?;
    std::fs::write(root.join("etc/systemd/user/legerd.service"), unit)?;
    as_user(&tb, &uid, &["systemctl", "--user", "daemon-reload"])?;
    as_user(
        &tb,
        &uid,
        &["systemctl", "--user", "start", "legerd.service"],
    )?;

    let user_state = |unit: &str| -> Result<String> {
        Ok(as_user(
            &tb,
            &uid,
            &["systemctl", "--user", "show", "-P", "ActiveState", unit],
        )?
        .trim()
        .to_owned())
    };
    let user_container = || -> Result<Option<String>> {
        let out = as_user(
            &tb,
            &uid,
            &[
                "podman",
                "ps",
                "--filter",
                "name=uweb",
                "--format",
                "{{.ID}}",
            ],
        )?;
        Ok(out.lines().next().map(ToOwned::to_owned))
    };
    wait_until(WAIT, "rootless web.service active", || {
        Ok(user_state("web.service")? == "active")
    })?;
    let first = user_container()?.expect("rootless container runs");
    let installed = "/home/leger/.config/containers/systemd/web/web.container";
    assert!(
        tb.exec(&["test", "-f", installed])?.status.success(),
        "the quadlet goes into the user's quadlet dir"
    );
    let status = as_user(
        &tb,
        &uid,
        &["/opt/leger/legerctl", "--user", "status", "--json"],
    )?;
    assert!(status.contains("\"mode\":\"user\""), "{status}");

    std::fs::write(
        apps.join("web/web.container"),
        container("uweb", "rootless v2"),
    )?;
    wait_until(WAIT, "rootless container replaced after the edit", || {
        Ok(user_container()?.is_some_and(|id| id != first))
    })?;
    // The system manager was never asked to run it.
    assert_ne!(active_state(&tb, "web.service")?, "active");
    Ok(())
}

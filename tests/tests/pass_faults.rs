//! End-to-end: the faults the pass handles, on the test bed with legerd as a real
//! service: a revision is blamed only for what it changed; a container that runs to
//! completion is healthy and not drift; a failing pin does not flap.

mod common;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};

/// Inside the machine: while this file exists, the flag-bound containers keep running.
const FLAG_DIR: &str = "/var/lib/e2e-flag";

/// A container that runs while the flag exists and fails (exit 4) once it is gone.
fn flag_bound(name: &str, word: &str) -> String {
    format!(
        "[Container]\nContainerName={name}\nImage=localhost/busybox:latest\nNetwork=none\n\
         Volume={FLAG_DIR}:/flag\n\
         Exec=/bin/sh -c 'trap \"exit 0\" TERM; while [ -e /flag/ok ]; do echo \"{word}\"; sleep 1 & wait $!; done; echo flag gone; exit 4'\n"
    )
}

fn set_flag(tb: &Testbed, present: bool) -> Result<()> {
    tb.exec_ok(&["mkdir", "-p", FLAG_DIR])?;
    if present {
        tb.exec_ok(&["touch", &format!("{FLAG_DIR}/ok")])?;
    } else {
        tb.exec_ok(&["rm", "-f", &format!("{FLAG_DIR}/ok")])?;
    }
    Ok(())
}

fn start_on(tb: &Testbed, fleet: &Fleet) -> Result<()> {
    legerctl(
        tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(tb)
}

/// The state legerd recorded for `revision` (`legerctl revisions --json`).
fn revision_state(tb: &Testbed, revision: &str) -> Result<String> {
    let list: serde_json::Value =
        serde_json::from_str(&legerctl(tb, &["revisions", "--json", "-n", "100"])?)?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["revision"] == revision)
        .and_then(|r| r["state"].as_str())
        .unwrap_or("")
        .to_owned())
}

#[test]
fn a_failing_unit_the_revision_did_not_change_never_rolls_it_back() -> Result<()> {
    let tb = Testbed::boot("e2e-blame")?;
    set_flag(&tb, true)?;
    let fleet = Fleet::create(
        &tb,
        &[
            ("apps/web/web.container", &container("web", "web v1")),
            ("apps/flaky/flaky.container", &flag_bound("flaky", "flaky")),
        ],
    )?;
    start_on(&tb, &fleet)?;
    wait_applied(&tb, &fleet.head()?)?;
    wait_running(&tb, "flaky.service", "flaky")?;

    // flaky breaks on its own, with no change from the source.
    set_flag(&tb, false)?;
    wait_until(WAIT, "flaky.service failed", || {
        Ok(active_state(&tb, "flaky.service")? == "failed")
    })?;

    // A new revision that changes only web is applied, not rolled back.
    let rev2 = fleet.commit(
        &[("apps/web/web.container", &container("web", "web v2"))],
        &[],
        "web v2",
    )?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev2)?;
    wait_until(WAIT, "web prints v2", || {
        Ok(tb.unit_logs("web.service")?.contains("web v2"))
    })?;
    assert_eq!(revision_state(&tb, &rev2)?, "applied");
    let history: serde_json::Value = serde_json::from_str(&legerctl(&tb, &["history", "--json"])?)?;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["revision"] == rev2.as_str())
            .all(|p| p["outcome"] != "rolled_back"),
        "{history:#}"
    );
    // flaky is reported by name while the revision stays applied.
    wait_until(WAIT, "Ready=False UnitFailed naming flaky.service", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Ready").is_some_and(|(s, r, m)| {
            s == "False" && r == "UnitFailed" && m.contains("flaky.service")
        }))
    })?;
    assert_eq!(applied_revision(&tb)?, Some(rev2));
    Ok(())
}

#[test]
fn a_container_that_runs_to_completion_is_healthy_and_not_drift() -> Result<()> {
    let tb = Testbed::boot("e2e-oneshot")?;
    let job = |word: &str| {
        format!(
            "[Container]\nContainerName=migrate\nImage=localhost/busybox:latest\nNetwork=none\n\
             Exec=/bin/sh -c 'echo migration {word} ran'\n"
        )
    };
    let fleet = Fleet::create(
        &tb,
        &[
            ("apps/web/web.container", &container("web", "web v1")),
            ("apps/web/migrate.container", &job("one")),
        ],
    )?;
    start_on(&tb, &fleet)?;
    let first = fleet.head()?;
    wait_applied(&tb, &first)?;
    let runs = |tb: &Testbed, word: &str| -> Result<usize> {
        Ok(tb
            .unit_logs("migrate.service")?
            .matches(&format!("migration {word} ran"))
            .count())
    };
    wait_until(
        WAIT,
        "the migration ran once",
        || Ok(runs(&tb, "one")? >= 1),
    )?;
    // The gate accepted its exit 0: the revision is applied, Ready is True.
    assert_eq!(revision_state(&tb, &first)?, "applied");
    wait_until(WAIT, "Ready=True", || {
        Ok(condition(&status(&tb)?, "Ready").is_some_and(|(s, _, _)| s == "True"))
    })?;

    // Later passes do not start it again: it is done, not drift.
    for _ in 0..2 {
        reconcile_and_wait_for_pass(&tb)?;
    }
    assert_eq!(runs(&tb, "one")?, 1, "started once only");
    let doc = status(&tb)?;
    assert_eq!(doc["status"]["lastPass"]["outcome"], "noop", "{doc:#}");
    assert_eq!(
        condition(&doc, "Ready").map(|c| c.0),
        Some("True".to_owned()),
        "{doc:#}"
    );

    // A change to it runs it again, once.
    let second = fleet.commit(&[("apps/web/migrate.container", &job("two"))], &[], "v2")?;
    reconcile(&tb)?;
    wait_applied(&tb, &second)?;
    wait_until(WAIT, "the new migration ran", || Ok(runs(&tb, "two")? == 1))?;
    assert_eq!(runs(&tb, "one")?, 1);
    Ok(())
}

#[test]
fn a_failing_pin_returns_to_the_last_good_revision_and_does_not_flap() -> Result<()> {
    let tb = Testbed::boot("e2e-pinfail")?;
    set_flag(&tb, true)?;
    let fleet = Fleet::create(
        &tb,
        &[("apps/web/web.container", &flag_bound("web", "web v1"))],
    )?;
    start_on(&tb, &fleet)?;
    let first = fleet.head()?;
    wait_applied(&tb, &first)?;
    let second = fleet.commit(
        &[("apps/web/web.container", &container("web", "web v2"))],
        &[],
        "v2",
    )?;
    reconcile(&tb)?;
    wait_applied(&tb, &second)?;

    // The first revision no longer works on this host; pin it anyway.
    set_flag(&tb, false)?;
    legerctl(&tb, &["pin", &first])?;
    wait_until(WAIT, "the pin failed and was rolled back", || {
        Ok(revision_state(&tb, &first)? == "failed")
    })?;
    wait_applied(&tb, &second)?;
    let web = wait_running(&tb, "web.service", "web")?;
    let backups = legerctl(&tb, &["backups", "--json"])?;

    // Later passes hold the last good revision: no restart, no new backup.
    for _ in 0..3 {
        reconcile_and_wait_for_pass(&tb)?;
    }
    assert_eq!(
        container_id(&tb, "web")?,
        Some(web),
        "web was not restarted"
    );
    assert_eq!(
        legerctl(&tb, &["backups", "--json"])?,
        backups,
        "no backup per pass"
    );
    let doc = status(&tb)?;
    let (ready, reason, message) = condition(&doc, "Ready").unwrap();
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "RolledBack"));
    assert!(
        message.contains("pinned revision") && message.contains("--force"),
        "status says what failed and what to do: {message}"
    );

    // legerctl refuses to pin a failed revision again unless forced.
    let out = tb.exec(&["/opt/leger/legerctl", "pin", &first])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--force"), "{err}");
    Ok(())
}

/// A long-running container stopped from outside (`systemctl stop`) before the gate
/// looks at it rests `inactive`, and exits 0 since it traps SIGTERM: the very picture
/// of a finished one-shot job. systemd's record of the run (its main process exited
/// *after* the stop job took it out of `active`) says it was stopped, so the gate does
/// not count it as completed: the revision fails its gate, saying the unit was
/// stopped, and the last good revision runs again. Read as "completed", the revision
/// was recorded good and the container remembered as done, left down for good.
///
/// The stop lands while the same apply still starts a slow unit (`ExecStartPre=` sleeps),
/// so the gate's first look finds web already at rest, not on its way down.
#[test]
fn a_container_stopped_from_outside_before_its_gate_is_not_completed() -> Result<()> {
    let tb = Testbed::boot("e2e-stopgate")?;
    let fleet = Fleet::create(
        &tb,
        &[("apps/web/web.container", &container("web", "web v1"))],
    )?;
    start_on(&tb, &fleet)?;
    let first = fleet.head()?;
    wait_applied(&tb, &first)?;

    let slow = format!(
        "{}\n[Service]\nExecStartPre=/bin/sleep 15\n",
        container("slow", "slow")
    );
    let second = fleet.commit(
        &[
            ("apps/web/web.container", &container("web", "web v2")),
            ("apps/slow/slow.container", &slow),
        ],
        &[],
        "web v2, and a slow starter",
    )?;
    reconcile(&tb)?;
    wait_until(WAIT, "web v2 runs while slow.service starts", || {
        Ok(tb.unit_logs("web.service")?.contains("web v2")
            && active_state(&tb, "slow.service")? == "activating")
    })?;
    tb.exec_ok(&["systemctl", "stop", "web.service"])?;
    assert_eq!(active_state(&tb, "web.service")?, "inactive");

    wait_until(WAIT, "the pass rolled the stopped revision back", || {
        Ok(condition(&status(&tb)?, "Ready").is_some_and(|(_, r, _)| r == "RolledBack"))
    })?;
    assert_eq!(revision_state(&tb, &second)?, "failed");
    let (_, _, message) = condition(&status(&tb)?, "Ready").expect("a Ready condition");
    assert!(message.contains("web.service"), "{message}");
    let details = legerctl(&tb, &["status", "--details"])?;
    assert!(details.contains("stop job"), "{details}");
    // The last good revision runs again: web is up, not left down as "done".
    assert_eq!(applied_revision(&tb)?, Some(first.clone()));
    wait_until(WAIT, "web.service active again", || {
        Ok(active_state(&tb, "web.service")? == "active")
    })?;
    assert_eq!(revision_state(&tb, &first)?, "applied");
    Ok(())
}

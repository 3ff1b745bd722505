//! End-to-end: the starts of one dependency level run in parallel on real systemd, and
//! a job that fails fails exactly its own unit.

mod common;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};
use serde_json::Value;

/// A quadlet whose container exits at once: its start fails.
fn crashing(name: &str) -> String {
    format!(
        "[Container]\nContainerName={name}\nImage=localhost/busybox:latest\nNetwork=none\n\
         Exec=/bin/sh -c 'echo about to crash; exit 3'\n"
    )
}

/// The `LEGER_OUTCOME` of every start job journalled for `revision`, by unit.
fn start_outcomes(tb: &Testbed, revision: &str) -> Result<Vec<(String, String)>> {
    let out = tb.exec_ok(&[
        "journalctl",
        "-o",
        "json",
        "-u",
        "legerd.service",
        "LEGER_ACTION=start",
        &format!("LEGER_REVISION={revision}"),
    ])?;
    let mut outcomes: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["LEGER_UNIT"].as_str().unwrap_or_default().to_owned(),
                v["LEGER_OUTCOME"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    outcomes.sort();
    Ok(outcomes)
}

#[test]
fn failing_unit_in_a_level_fails_only_itself() -> Result<()> {
    let tb = Testbed::boot("e2e-parallel")?;
    let (fleet, _good, _) = web_converged(&tb)?;

    // Three containers in one level: two healthy, one that crashes at once.
    let rev = fleet.commit(
        &[
            ("apps/one/one.container", &container("one", "one v1")),
            ("apps/two/two.container", &container("two", "two v1")),
            ("apps/bad/bad.container", &crashing("bad")),
        ],
        &[],
        "three apps, one broken",
    )?;
    reconcile(&tb)?;
    wait_until(WAIT, "the three start jobs journalled", || {
        Ok(start_outcomes(&tb, &rev)?.len() >= 3)
    })?;
    assert_eq!(
        start_outcomes(&tb, &rev)?,
        [
            ("bad.service".to_owned(), "failed".to_owned()),
            ("one.service".to_owned(), "ok".to_owned()),
            ("two.service".to_owned(), "ok".to_owned()),
        ]
    );
    // The health gate blames only the broken unit.
    wait_until(WAIT, "Ready=False naming bad.service", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Ready").is_some_and(|(s, _, m)| s == "False" && m.contains("bad")))
    })?;
    let (_, _, message) = condition(&status(&tb)?, "Ready").unwrap();
    assert!(message.contains("bad.service"), "{message}");
    assert!(!message.contains("one.service"), "{message}");
    assert!(!message.contains("two.service"), "{message}");
    Ok(())
}

/// Every pass in legerd's history, oldest first.
fn passes(tb: &Testbed) -> Result<Vec<Value>> {
    let h: Value = serde_json::from_str(&legerctl(tb, &["history", "-n", "100", "--json"])?)?;
    let mut passes = h.as_array().cloned().unwrap_or_default();
    passes.sort_by_key(|p| p["id"].as_i64());
    Ok(passes)
}

/// No echo: the files an apply writes and the restart it makes (the unit is briefly
/// `inactive`) are legerd's own work, not drift, so no pass follows for them. A pass
/// asked for after the apply is the marker: an echo would have run before it, or
/// merged into it, with a `drift-*` trigger.
#[test]
fn an_apply_is_not_followed_by_a_pass_for_its_own_changes() -> Result<()> {
    let tb = Testbed::boot("e2e-echo")?;
    let (fleet, _good, old_web) = web_converged(&tb)?;
    let rev = fleet.commit(
        &[("apps/web/web.container", &container("web", "web v2"))],
        &[],
        "web v2",
    )?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    let new_web = wait_running(&tb, "web.service", "web")?;
    assert_ne!(
        new_web, old_web,
        "web was restarted, so it went through inactive"
    );
    reconcile_and_wait_for_pass(&tb)?;

    let passes = passes(&tb)?;
    let apply = passes
        .iter()
        .position(|p| {
            p["revision"].as_str() == Some(&*rev)
                && !p["actions"].as_array().is_none_or(Vec::is_empty)
        })
        .expect("the apply is in the history");
    let after: Vec<&str> = passes[apply + 1..]
        .iter()
        .map(|p| p["trigger"].as_str().unwrap_or_default())
        .collect();
    assert!(after.contains(&"manual"), "the marker pass: {after:?}");
    assert!(
        after.iter().all(|t| !t.contains("drift")),
        "no pass for legerd's own writes and restart: {after:?}"
    );
    // Drift right after an apply is still drift.
    tb.exec_ok(&["systemctl", "stop", "web.service"])?;
    wait_running(&tb, "web.service", "web")?;
    Ok(())
}

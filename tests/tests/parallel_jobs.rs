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

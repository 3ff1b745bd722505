//! End-to-end: `legerctl plan` on the test bed shows what the next pass would do while
//! legerd is suspended, and changes nothing on the host.

mod common;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};

/// The unit's `ActiveEnterTimestampMonotonic`: moves on every (re)start.
fn started_at(tb: &Testbed, unit: &str) -> Result<String> {
    tb.exec_ok(&[
        "systemctl",
        "show",
        "-P",
        "ActiveEnterTimestampMonotonic",
        unit,
    ])
    .map(|s| s.trim().to_owned())
}

#[test]
fn plan_while_suspended_shows_the_restart_resume_would_do_and_changes_nothing() -> Result<()> {
    let tb = Testbed::boot("e2e-plan")?;
    let (fleet, good, web) = web_converged(&tb)?;
    legerctl(&tb, &["suspend"])?;
    // A pass that saw the suspension, so none can apply what is pushed next.
    wait_until(WAIT, "a suspended pass", || {
        Ok(status(&tb)?["status"]["lastPass"]["outcome"].as_str() == Some("suspended"))
    })?;
    let second = fleet.commit(
        &[("apps/web/web.container", &container("web", "web v2"))],
        &[],
        "web v2",
    )?;
    let before = started_at(&tb, "web.service")?;
    let installed = "/etc/containers/systemd/web/web.container";
    let file_before = tb.exec_ok(&["cat", installed])?;

    let (code, text, err) = legerctl_out(&tb, &["plan"])?;
    assert_eq!(code, 0, "plan reads fine:\n{text}{err}");
    assert!(
        text.contains(&format!("revision {second}")),
        "plan targets the new commit:\n{text}"
    );
    assert!(
        text.contains("held:") && text.contains("legerctl resume"),
        "{text}"
    );
    assert!(
        text.contains("restart") && text.contains("web.service"),
        "the restart resume would do:\n{text}"
    );
    assert!(text.contains("+Exec=") && text.contains("web v2"), "{text}");
    assert!(!text.contains("\x1b["), "no colours when not on a terminal");

    let (code, json, err) = legerctl_out(&tb, &["plan", "web", "--json"])?;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(v["apiVersion"], "leger.run/v1alpha1");
    assert_eq!(v["kind"], "Plan");
    assert_eq!(v["revision"], second.as_str());
    assert_eq!(v["appliedRevision"], good.as_str());
    assert_eq!(v["actions"][0]["action"], "restart");
    assert_eq!(v["actions"][0]["unit"], "web.service");

    let (code, _, err) = legerctl_out(&tb, &["plan", "nope"])?;
    assert_ne!(code, 0, "an unknown app is an error");
    assert!(
        err.contains("\"nope\"") && err.contains("legerctl status"),
        "{err}"
    );

    // Nothing changed: same unit start, same container, same file, same revision.
    assert_eq!(started_at(&tb, "web.service")?, before);
    assert_eq!(container_id(&tb, "web")?.as_deref(), Some(web.as_str()));
    assert_eq!(tb.exec_ok(&["cat", installed])?, file_before);
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(good.as_str()));

    // Resuming does what the plan said.
    legerctl(&tb, &["resume"])?;
    wait_applied(&tb, &second)?;
    assert_ne!(
        started_at(&tb, "web.service")?,
        before,
        "web.service restarted"
    );
    let (_, after, _) = legerctl_out(&tb, &["plan"])?;
    assert!(after.contains("no changes"), "{after}");
    Ok(())
}

/// The state status shows for `unit`.
fn shown_state(tb: &Testbed, unit: &str) -> Result<Option<String>> {
    let doc = status(tb)?;
    Ok(doc["status"]["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["units"].as_array().into_iter().flatten())
        .find(|u| u["name"] == unit)
        .and_then(|u| u["activeState"].as_str().map(str::to_owned)))
}

/// Passes that cannot refresh status (suspended, and the source unreachable so every
/// pass fails at its fetch, before observe) must not leave status's unit states stale:
/// unit events refresh them between passes.
#[test]
fn status_unit_states_stay_live_while_suspended() -> Result<()> {
    let tb = Testbed::boot("e2e-live-units")?;
    let (_fleet, _, _) = web_converged(&tb)?;
    legerctl(&tb, &["suspend"])?;
    wait_until(WAIT, "a suspended pass", || {
        Ok(status(&tb)?["status"]["lastPass"]["outcome"].as_str() == Some("suspended"))
    })?;
    let repo = tb.share_dir_host().join("fleet.git");
    std::fs::rename(&repo, repo.with_extension("away"))?;

    tb.exec_ok(&["systemctl", "stop", "web.service"])?;
    wait_until(WAIT, "web inactive in status", || {
        Ok(shown_state(&tb, "web.service")?.as_deref() == Some("inactive"))
    })?;
    tb.exec_ok(&["systemctl", "start", "web.service"])?;
    wait_until(WAIT, "web active in status", || {
        Ok(shown_state(&tb, "web.service")?.as_deref() == Some("active"))
    })?;
    // The passes meanwhile failed at their fetch: they did not refresh status.
    wait_until(WAIT, "a pass failed at the fetch", || {
        Ok(status(&tb)?["status"]["lastPass"]["outcome"].as_str() == Some("failed"))
    })?;
    tb.exec_ok(&["systemctl", "stop", "web.service"])?;
    wait_until(WAIT, "web inactive in status again", || {
        Ok(shown_state(&tb, "web.service")?.as_deref() == Some("inactive"))
    })?;
    Ok(())
}

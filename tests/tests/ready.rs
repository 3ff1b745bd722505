//! End-to-end: `systemctl start legerd` (Type=notify) returns once the first pass has
//! applied its revision, while the health gate goes on and status says it verifies.

mod common;

use std::path::PathBuf;

use anyhow::Result;
use common::*;
use leger_e2e::Testbed;

#[test]
fn ready_once_the_first_revision_is_applied_while_its_gate_goes_on() -> Result<()> {
    let tb = Testbed::boot("e2e-ready")?;
    // A settle time far longer than starting takes: if READY waited for the gate,
    // `systemctl start` could not return before the first pass is recorded.
    let root = PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    std::fs::create_dir_all(root.join("etc/leger/config.d"))?;
    std::fs::write(
        root.join("etc/leger/config.d/60-e2e-settle.toml"),
        "[health]\nsettle = \"60s\"\n",
    )?;
    let fleet = Fleet::create(
        &tb,
        &[("apps/web/web.container", &container("web", "web v1"))],
    )?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd_until_ready(&tb)?; // returns on READY=1

    let doc = status(&tb)?;
    assert!(
        doc["status"]["lastPass"].is_null(),
        "READY came before the first pass ended: {doc:#}"
    );
    let (_, _, message) = condition(&doc, "Reconciling").expect("a Reconciling condition");
    assert!(message.starts_with("verifying: revision"), "{message}");
    assert_eq!(
        active_state(&tb, "web.service")?,
        "active",
        "the apply is done"
    );
    let line = tb.exec_ok(&["systemctl", "show", "-P", "StatusText", "legerd.service"])?;
    assert!(line.contains("verifying"), "STATUS= says so: {line}");

    // The gate goes on and records the revision good when it settles.
    let head = fleet.head()?;
    wait_applied(&tb, &head)?;
    let history: serde_json::Value =
        serde_json::from_str(&legerctl(&tb, &["history", "--changes", "-o", "json"])?)?;
    let first = &history["items"][0];
    assert_eq!(
        (first["outcome"].as_str(), first["revision"].as_str()),
        (Some("applied"), Some(head.as_str())),
        "{history:#}"
    );
    assert!(
        first["durationMs"].as_u64().unwrap_or(0) >= 60_000,
        "the pass went on through the settle time after READY: {first:#}"
    );
    Ok(())
}

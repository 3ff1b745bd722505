//! End-to-end at scale: one host with 1,000 apps (998 volumes and two containers).
//!
//! - The first converge outlasts the unit's start timeout (cut to 10 s here), and
//!   legerd still comes up: it extends the start timeout while its first pass works.
//! - With polls and the periodic resync an hour away, a deleted quadlet file and a
//!   stopped unit are both healed by the passes their own events trigger, each within
//!   one pass, with nothing else to observe the drift.
//!
//! Figures (converge time, pass durations) are printed, never asserted: performance is
//! measured in `benches/`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::*;
use leger_e2e::{Testbed, wait_until};
use serde_json::Value;

const VOLUMES: usize = 998;

/// Long enough for a 1,000-app first converge on a loaded 2-core machine.
const CONVERGE: Duration = Duration::from_secs(20 * 60);

/// Every pass record in `legerctl history --json`, newest first, wherever the document
/// puts them: objects with an `id`, a `trigger` and an `outcome`.
fn passes(tb: &Testbed) -> Result<Vec<Value>> {
    let out = legerctl(tb, &["history", "-n", "100", "--json"])?;
    let doc: Value = serde_json::from_str(&out).context("history --json is not JSON")?;
    let mut found = Vec::new();
    collect_passes(&doc, &mut found);
    Ok(found)
}

fn collect_passes(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) if m.contains_key("id") && m.contains_key("trigger") => {
            out.push(v.clone());
        }
        Value::Object(m) => m.values().for_each(|x| collect_passes(x, out)),
        Value::Array(a) => a.iter().for_each(|x| collect_passes(x, out)),
        _ => {}
    }
}

fn systemd_usec(tb: &Testbed, property: &str) -> Result<u64> {
    let v = tb.exec_ok(&["systemctl", "show", "-P", property, "legerd.service"])?;
    v.trim()
        .parse()
        .with_context(|| format!("{property}={v} is not a number"))
}

#[test]
fn thousand_apps_converge_past_the_start_timeout_and_drift_heals_from_events() -> Result<()> {
    let tb = Testbed::boot("e2e-scale")?;
    let names: Vec<String> = (0..VOLUMES).map(|i| format!("vol-{i:04}")).collect();
    let volume_files: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("apps/{n}/{n}.volume"), "[Volume]\n".to_owned()))
        .collect();
    let mut files: Vec<(&str, &str)> = volume_files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let web = container("web", "web v1");
    let api = container("api", "api v1");
    files.push(("apps/web/web.container", &web));
    files.push(("apps/api/api.container", &api));
    let fleet = Fleet::create(&tb, &files)?;

    // Polls and the full resync an hour away: only drift events can start a pass.
    write_inside(
        &tb,
        "/etc/leger/config.d/60-scale.toml",
        "[reconcile]\nresync = \"1h\"\n[health]\ntimeout = \"10m\"\n",
        0o644,
    )?;
    // A start timeout far shorter than the first converge.
    write_inside(
        &tb,
        "/etc/systemd/system/legerd.service.d/60-scale.conf",
        "[Service]\nTimeoutStartSec=10s\n",
        0o644,
    )?;
    legerctl(
        &tb,
        &[
            "set-desired",
            "git",
            &fleet.url_inside(),
            "--path",
            "apps",
            "--interval",
            "1h",
        ],
    )?;
    let t0 = Instant::now();
    // Blocks until READY=1, after the first pass.
    start_legerd(&tb).context("legerd did not survive its first 1,000-app converge")?;
    wait_until(CONVERGE, "1,000 apps applied", || {
        Ok(applied_revision(&tb)?.as_deref() == Some(fleet.head()?.as_str()))
    })?;
    println!(
        "first converge of {} apps: {:.1}s",
        VOLUMES + 2,
        t0.elapsed().as_secs_f64()
    );
    let activating = systemd_usec(&tb, "ActiveEnterTimestampMonotonic")?
        .saturating_sub(systemd_usec(&tb, "ExecMainStartTimestampMonotonic")?);
    println!(
        "legerd.service was activating for {}s",
        activating / 1_000_000
    );
    assert!(
        activating > 10_000_000,
        "the first pass took {activating}us, no longer than the 10s start timeout: the test proves nothing"
    );
    assert_eq!(
        tb.exec_ok(&["systemctl", "show", "-P", "NRestarts", "legerd.service"])?
            .trim(),
        "0"
    );

    let active: BTreeSet<String> = tb
        .exec_ok(&[
            "systemctl",
            "list-units",
            "--no-legend",
            "--plain",
            "--state=active",
            "vol-*-volume.service",
        ])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(active.len(), VOLUMES, "active volume units");
    wait_running(&tb, "web.service", "web")?;
    wait_running(&tb, "api.service", "api")?;

    // Settle: whatever the converge itself triggered has run.
    reconcile_and_wait_for_pass(&tb)?;
    let before = passes(&tb)?
        .first()
        .and_then(|p| p["id"].as_i64())
        .unwrap_or(0);

    // Drift: a stopped unit and a deleted quadlet file, at once. The stop does not
    // wait for its job: legerd may start api again before the stop job is over.
    let api_before = container_id(&tb, "api")?;
    let file = tb.quadlet_dir_host().join("web/web.container");
    let original = std::fs::read(&file)?;
    tb.exec_ok(&["systemctl", "stop", "--no-block", "api.service"])?;
    std::fs::remove_file(&file)?;
    wait_until(WAIT, "the deleted quadlet restored", || {
        Ok(std::fs::read(&file).ok().as_deref() == Some(&original[..]))
    })?;
    wait_until(WAIT, "api running again in a new container", || {
        Ok(active_state(&tb, "api.service")? == "active"
            && container_id(&tb, "api")?.is_some_and(|id| Some(&id) != api_before.as_ref()))
    })?;
    wait_running(&tb, "web.service", "web")?;

    // A pass is recorded after its health gate: wait until the heal is in history.
    let healed_by = |p: &Value, needle: &str| {
        p["actions"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|s| s.contains(needle)))
        })
    };
    let mut after: Vec<Value> = Vec::new();
    wait_until(WAIT, "both heals recorded in history", || {
        after = passes(&tb)?
            .into_iter()
            .filter(|p| p["id"].as_i64().is_some_and(|id| id > before))
            .collect();
        Ok(after.iter().any(|p| healed_by(p, "web.container"))
            && after.iter().any(|p| healed_by(p, "api.service")))
    })
    .with_context(|| {
        format!(
            "history: {}",
            legerctl(&tb, &["history"]).unwrap_or_default()
        )
    })?;
    for p in &after {
        println!(
            "pass #{} trigger={} outcome={} took {}ms",
            p["id"], p["trigger"], p["outcome"], p["durationMs"]
        );
        let trigger = p["trigger"].as_str().unwrap_or_default();
        assert!(
            !trigger.contains("poll") && !trigger.contains("resync"),
            "the drift was healed by a {trigger} pass, not by its own event: {p}"
        );
        assert_ne!(p["outcome"], "failed", "{p}");
    }
    // One pass per drift event at most (they may share one), plus at most one more
    // that legerd's own heal caused.
    assert!(
        !after.is_empty() && after.len() <= 3,
        "{} passes after the drift: {after:?}",
        after.len()
    );
    Ok(())
}

//! End-to-end: the health gate and automatic rollback on the test bed.

mod common;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};

const WEB: &str = "apps/web/web.container";

/// A quadlet whose container exits at once: its unit fails right after starting.
fn crashing(name: &str) -> String {
    format!(
        "[Container]\nContainerName={name}\nImage=localhost/busybox:latest\nNetwork=none\n\
         Exec=/bin/sh -c 'echo about to crash; exit 3'\n"
    )
}

#[test]
fn bad_revision_is_rolled_back_and_not_retried() -> Result<()> {
    let tb = Testbed::boot("e2e-rollback")?;
    let (fleet, good, _) = web_converged(&tb)?;
    let installed = tb.quadlet_dir_host().join("web/web.container");
    let good_text = std::fs::read_to_string(&installed)?;

    let bad = fleet.commit(&[(WEB, &crashing("web"))], &[], "crash")?;
    reconcile(&tb)?;
    wait_until(WAIT, "Ready=False RolledBack", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Ready").is_some_and(|(s, r, _)| s == "False" && r == "RolledBack"))
    })?;
    let doc = status(&tb)?;
    let (_, _, message) = condition(&doc, "Ready").unwrap();
    assert!(message.contains("web.service"), "names the unit: {message}");
    assert!(
        message.contains("about to crash"),
        "quotes its last log lines: {message}"
    );
    // The previous revision runs again, files and container.
    assert_eq!(applied_revision(&tb)?, Some(good.clone()));
    assert_eq!(std::fs::read_to_string(&installed)?, good_text);
    let after_rollback = wait_running(&tb, "web.service", "web")?;
    // Reported as a rollback, never as success.
    let history = legerctl(&tb, &["history", "--json"])?;
    let passes: serde_json::Value = serde_json::from_str(&history)?;
    // Later passes (drift triggers from the rollback's own writes) may already have
    // recorded the held revision as failed: look at every pass on the bad revision.
    let on_bad: Vec<&serde_json::Value> = passes
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["revision"] == bad.as_str())
        .collect();
    assert!(
        on_bad.iter().any(|p| p["outcome"] == "rolled_back"),
        "{passes:#}"
    );
    assert!(
        on_bad.iter().all(|p| p["outcome"] != "applied"),
        "{passes:#}"
    );
    let events = tb.exec_ok(&[
        "journalctl",
        "-o",
        "json",
        "MESSAGE_ID=e92ae15451524376bb05ff71f22d147d",
    ])?;
    assert!(
        events.contains(&format!("\"LEGER_REVISION\":\"{bad}\"")),
        "{events}"
    );

    // The next poll does not retry the bad revision.
    reconcile_and_wait_for_pass(&tb)?;
    let doc = status(&tb)?;
    assert!(
        doc["status"]["lastPass"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("waiting for a newer revision"),
        "{doc:#}"
    );
    assert_eq!(
        container_id(&tb, "web")?,
        Some(after_rollback.clone()),
        "nothing restarted"
    );

    // A fixed revision after it applies.
    let fixed = fleet.commit(&[(WEB, &container("web", "web v3"))], &[], "fix")?;
    reconcile(&tb)?;
    wait_applied(&tb, &fixed)?;
    wait_until(WAIT, "web v3 running", || {
        Ok(tb.unit_logs("web.service")?.contains("web v3"))
    })?;
    let doc = status(&tb)?;
    assert_eq!(condition(&doc, "Ready").unwrap().0, "True", "{doc:#}");
    Ok(())
}

#[test]
fn missing_image_is_rolled_back() -> Result<()> {
    let tb = Testbed::boot("e2e-noimage")?;
    let (fleet, good, _) = web_converged(&tb)?;
    let text = container("web", "web v2")
        .replace("localhost/busybox:latest", "localhost/does-not-exist:1");
    fleet.commit(&[(WEB, &text)], &[], "missing image")?;
    reconcile(&tb)?;
    wait_until(WAIT, "Ready=False RolledBack", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Ready").is_some_and(|(s, r, _)| s == "False" && r == "RolledBack"))
    })?;
    assert_eq!(applied_revision(&tb)?, Some(good));
    wait_running(&tb, "web.service", "web")?;

    // What an operator sees: every condition in one line, podman's pull log only
    // behind `status --details` and `history show ID`.
    let human = legerctl(&tb, &["status"])?;
    println!("status:\n{human}");
    let doc = status(&tb)?;
    for c in doc["status"]["conditions"].as_array().unwrap() {
        let m = c["message"].as_str().unwrap_or("");
        assert!(!m.contains('\n'), "one line in the document too: {m:?}");
    }
    for line in human.lines() {
        assert!(line.chars().count() <= 500, "a long status line: {line}");
    }
    assert!(human.contains("does-not-exist"), "names the image: {human}");
    let details = legerctl(&tb, &["status", "--details"])?;
    println!("status --details:\n{details}");
    let history = legerctl(&tb, &["history"])?;
    println!("history:\n{history}");
    let rolled = history
        .lines()
        .find(|l| l.contains("rolled"))
        .unwrap_or_else(|| panic!("a rolled-back row: {history}"));
    assert!(
        rolled.chars().count() <= 500,
        "a short row (was 1,500 characters): {rolled}"
    );
    let id = rolled.split_whitespace().next().unwrap();
    let show = legerctl(&tb, &["history", "show", id])?;
    println!("history show {id}:\n{show}");
    assert!(show.contains("does-not-exist"), "{show}");
    assert!(
        show.len() > rolled.len(),
        "the whole error is behind show: {show}"
    );
    Ok(())
}

/// A container quadlet with extra `[Container]` lines.
fn container_with(name: &str, extra: &str) -> String {
    format!(
        "[Container]\nContainerName={name}\nImage=localhost/busybox:latest\n{extra}\
         Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do sleep 2 & wait $!; done'\n"
    )
}

#[test]
fn changed_volume_or_network_restarts_exactly_its_dependents() -> Result<()> {
    let tb = Testbed::boot("e2e-deps")?;
    let files = |vol: &str, net: &str| {
        vec![
            (
                "apps/stack/data.volume".to_owned(),
                format!("[Volume]\nLabel=v={vol}\n"),
            ),
            (
                "apps/stack/net.network".to_owned(),
                format!("[Network]\nLabel=n={net}\n"),
            ),
            (
                "apps/stack/db.container".to_owned(),
                container_with("db", "Volume=data.volume:/data\nNetwork=net.network\n"),
            ),
            (
                "apps/stack/web.container".to_owned(),
                container_with("web", "Network=net.network\n"),
            ),
            (
                "apps/stack/cache.container".to_owned(),
                container_with("cache", "Network=none\n"),
            ),
        ]
    };
    let initial = files("1", "1");
    let pairs: Vec<(&str, &str)> = initial
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let fleet = Fleet::create(&tb, &pairs)?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    let db = wait_running(&tb, "db.service", "db")?;
    let web = wait_running(&tb, "web.service", "web")?;
    let cache = wait_running(&tb, "cache.service", "cache")?;
    wait_applied(&tb, &fleet.head()?)?;

    // The volume changes: db (its only user) restarts; web and cache do not.
    let v2 = files("2", "1");
    let rev = fleet.commit(&[(v2[0].0.as_str(), v2[0].1.as_str())], &[], "volume")?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    let db2 = wait_running(&tb, "db.service", "db")?;
    assert_ne!(db2, db, "db uses the volume");
    assert_eq!(container_id(&tb, "web")?, Some(web.clone()));
    assert_eq!(container_id(&tb, "cache")?, Some(cache.clone()));

    // The network changes: db and web restart; cache does not.
    let n2 = files("2", "2");
    let rev = fleet.commit(&[(n2[1].0.as_str(), n2[1].1.as_str())], &[], "network")?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    assert_ne!(wait_running(&tb, "db.service", "db")?, db2);
    assert_ne!(wait_running(&tb, "web.service", "web")?, web);
    assert_eq!(container_id(&tb, "cache")?, Some(cache));
    // The pass that applied the network change (later passes may be no-ops that the
    // apply's own inotify events trigger).
    let history: serde_json::Value =
        serde_json::from_str(&legerctl(&tb, &["history", "--json", "-n", "20"])?)?;
    let applied = history
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["revision"] == rev.as_str() && p["outcome"] == "applied")
        .expect("a pass applied the network change");
    assert!(
        applied["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "restart net-network.service"),
        "{applied:#}"
    );
    Ok(())
}

#[test]
fn app_health_settle_from_leger_toml_is_honoured() -> Result<()> {
    let tb = Testbed::boot("e2e-apphealth")?;
    let (fleet, good, _) = web_converged(&tb)?;
    // A container that dies after 5 s: legerd's configured settle (2 s in these tests)
    // would call it healthy; the app's leger.toml asks for 12 s and catches it.
    let dies_late = "[Container]\nContainerName=web\nImage=localhost/busybox:latest\nNetwork=none\n\
                     Exec=/bin/sh -c 'echo up; sleep 5; echo dying; exit 1'\n";
    fleet.commit(
        &[
            (WEB, dies_late),
            ("apps/web/leger.toml", "[health]\nsettle = \"12s\"\n"),
        ],
        &[],
        "dies after 5s",
    )?;
    reconcile(&tb)?;
    wait_until(WAIT, "Ready=False RolledBack", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Ready").is_some_and(|(s, r, _)| s == "False" && r == "RolledBack"))
    })?;
    let (_, _, message) = condition(&status(&tb)?, "Ready").unwrap();
    assert!(
        message.contains("did not stay up for 12s"),
        "the app's settle applies: {message}"
    );
    assert!(
        !tb.quadlet_dir_host().join("web/leger.toml").exists(),
        "leger.toml is never installed"
    );
    assert_eq!(applied_revision(&tb)?, Some(good));
    Ok(())
}

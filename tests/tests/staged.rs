//! End-to-end: staged mode (diff, approve), pin and rollback on the test bed.

mod common;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};

const WEB: &str = "apps/web/web.container";
const API: &str = "apps/api/api.container";

#[test]
fn staged_mode_waits_for_approval_then_rollback_and_pin() -> Result<()> {
    let tb = Testbed::boot("e2e-staged")?;
    let fleet = Fleet::create(
        &tb,
        &[
            (WEB, &container("web", "web v1")),
            (API, &container("api", "api v1")),
        ],
    )?;
    let desired = format!(
        "[source]\nkind = \"git\"\nurl = \"{}\"\npath = \"apps\"\n\n[policy]\nmode = \"staged\"\n",
        fleet.url_inside()
    );
    std::fs::write(tb.share_dir_host().join("desired.toml"), desired)?;
    legerctl(&tb, &["set-desired", "--file", "/srv/leger/desired.toml"])?;
    start_legerd(&tb)?;

    // Nothing runs before approval: the first revision is staged too.
    let first = fleet.head()?;
    wait_until(WAIT, "first revision staged", || {
        Ok(status(&tb)?["status"]["stagedRevision"].as_str() == Some(first.as_str()))
    })?;
    assert_eq!(applied_revision(&tb)?, None);
    assert_ne!(active_state(&tb, "web.service")?, "active");
    legerctl(&tb, &["approve"])?;
    let web1 = wait_running(&tb, "web.service", "web")?;
    let api1 = wait_running(&tb, "api.service", "api")?;
    wait_applied(&tb, &first)?;

    // A new revision is staged, shown by diff (exit 1), not applied.
    let second = fleet.commit(&[(WEB, &container("web", "web v2"))], &[], "web v2")?;
    reconcile(&tb)?;
    wait_until(WAIT, "second revision staged", || {
        Ok(status(&tb)?["status"]["stagedRevision"].as_str() == Some(second.as_str()))
    })?;
    let (code, diff, _) = legerctl_out(&tb, &["diff"])?;
    assert_eq!(code, 1, "diff exits 1 when there are changes:\n{diff}");
    assert!(
        diff.contains("-Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do echo \"web v1\""),
        "{diff}"
    );
    assert!(
        diff.contains("+Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do echo \"web v2\""),
        "{diff}"
    );
    assert!(
        diff.contains("restart") && diff.contains("web.service"),
        "{diff}"
    );
    assert!(!diff.contains("\x1b["), "no colors when not on a terminal");
    let (code, api_diff, _) = legerctl_out(&tb, &["diff", "api"])?;
    assert_eq!(code, 0, "api has no changes:\n{api_diff}");
    let (_, json, _) = legerctl_out(&tb, &["diff", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(v["revision"], second.as_str());
    // `plan` in staged mode: what approving the staged revision would do.
    let plan: serde_json::Value = serde_json::from_str(&legerctl(&tb, &["plan", "-o", "json"])?)?;
    assert_eq!(
        (plan["kind"].as_str(), plan["mode"].as_str()),
        (Some("Plan"), Some("approve")),
        "{plan:#}"
    );
    assert_eq!(plan["revision"], second.as_str());
    assert_eq!(plan["actions"][0]["unit"], "web.service", "{plan:#}");
    assert!(
        plan["notes"][0]
            .as_str()
            .unwrap_or_default()
            .contains("legerctl approve"),
        "{plan:#}"
    );
    assert_eq!(applied_revision(&tb)?, Some(first.clone()));
    assert_eq!(
        container_id(&tb, "web")?,
        Some(web1.clone()),
        "staged: nothing restarted"
    );

    legerctl(&tb, &["approve"])?;
    wait_applied(&tb, &second)?;
    wait_until(WAIT, "web restarted at v2", || {
        Ok(container_id(&tb, "web")?.is_some_and(|id| id != web1))
    })?;
    assert_eq!(container_id(&tb, "api")?, Some(api1.clone()));
    let (code, _, _) = legerctl_out(&tb, &["diff"])?;
    assert_eq!(code, 0, "nothing staged after approval");

    // Rollback: back to the first revision from legerd's store, without fetching.
    let out = legerctl(&tb, &["rollback"])?;
    assert!(out.contains(&first), "{out}");
    wait_applied(&tb, &first)?;
    wait_until(WAIT, "web v1 again", || {
        Ok(tb
            .exec_ok(&["cat", "/etc/containers/systemd/web/web.container"])?
            .contains("web v1"))
    })?;
    wait_running(&tb, "web.service", "web")?;
    assert_eq!(status(&tb)?["status"]["pinnedRevision"], first.as_str());

    // Unpin: the approved revision applies again.
    legerctl(&tb, &["unpin"])?;
    wait_applied(&tb, &second)?;
    Ok(())
}

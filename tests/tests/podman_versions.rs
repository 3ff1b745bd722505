//! legerd on two podman releases: trixie's 5.4.2 and sid's 5.8 (`LEGER_TESTBED_SUITE`).
//! The same revision, using a key podman added in 5.5, converges on the newer podman
//! and is refused on 5.4.2 with both versions named; a `.quadlets` bundle converges
//! on 5.4.2; podman's own `podman quadlet rm` of a managed file is drift that legerd
//! restores.

mod common;

use anyhow::Result;
use leger_e2e::{Testbed, wait_until};

use common::{
    Fleet, WAIT, applied_revision, condition, container, legerctl, start_legerd, status,
    wait_applied, wait_running,
};

const WEB: &str = "apps/web/web.container";

/// A web container with `ReloadCmd=`, which podman accepts from 5.5 on.
fn web_with_reload() -> String {
    format!("{}ReloadCmd=/bin/true\n", container("web", "web v1"))
}

fn boot_with_fleet(name: &str, suite: Option<&str>) -> Result<(Testbed, Fleet)> {
    let tb = Testbed::boot_suite(name, suite)?;
    let fleet = Fleet::create(&tb, &[(WEB, &web_with_reload())])?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    Ok((tb, fleet))
}

#[test]
fn post_5_4_key_converges_on_sid_and_is_refused_on_trixie() -> Result<()> {
    {
        let (tb, fleet) = boot_with_fleet("e2e-podver-sid", Some("sid"))?;
        wait_running(&tb, "web.service", "web")?;
        wait_applied(&tb, &fleet.head()?)?;
        let doc = status(&tb)?;
        let podman = &doc["status"]["podman"];
        let version = podman["version"].as_str().unwrap_or_default().to_owned();
        assert!(version.starts_with("5.8."), "sid's podman: {podman}");
        assert!(podman["fallback"].is_null(), "{podman}");
        // The generated unit really carries the reload command.
        let unit = tb.exec_ok(&["systemctl", "cat", "web.service"])?;
        assert!(unit.contains("ExecReload="), "{unit}");
    }
    {
        let (tb, fleet) = boot_with_fleet("e2e-podver-trixie", None)?;
        wait_until(WAIT, "Stalled=True ValidationFailed", || {
            Ok(condition(&status(&tb)?, "Stalled")
                .is_some_and(|(s, r, _)| s == "True" && r == "ValidationFailed"))
        })?;
        let (_, _, message) = condition(&status(&tb)?, "Stalled").unwrap();
        assert!(
            message.contains(
                "web/web.container:9: ReloadCmd= in [Container] needs podman ≥ 5.5; this host runs 5.4.2"
            ),
            "{message}"
        );
        assert_eq!(applied_revision(&tb)?, None);
        assert!(!tb.quadlet_dir_host().join("web").exists());
        // Without the key, the next revision converges there too, here as a
        // `.quadlets` bundle, which legerd splits itself (5.4.2 predates bundles).
        let bundle = format!(
            "# FileName=web\n{}---\n# FileName=data\n[Volume]\n",
            container("web", "web v1")
        );
        let rev = fleet.commit(
            &[("apps/web/site.quadlets", &bundle)],
            &[WEB],
            "bundle, no reload",
        )?;
        legerctl(&tb, &["reconcile"])?;
        wait_applied(&tb, &rev)?;
        wait_running(&tb, "web.service", "web")?;
        assert!(tb.quadlet_dir_host().join("web/data.volume").exists());
        assert!(!tb.quadlet_dir_host().join("web/site.quadlets").exists());
        let doc = status(&tb)?;
        assert_eq!(doc["status"]["podman"]["version"], "5.4.2");
    }
    Ok(())
}

#[test]
fn podman_quadlet_rm_of_a_managed_file_is_healed_on_sid() -> Result<()> {
    let tb = Testbed::boot_suite("e2e-podver-rm", Some("sid"))?;
    let fleet = Fleet::create(&tb, &[(WEB, &container("web", "web v1"))])?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    wait_running(&tb, "web.service", "web")?;
    let file = tb.quadlet_dir_host().join("web/web.container");
    let original = std::fs::read(&file)?;
    // podman's own listing sees leger's file in its app folder.
    let list = tb.exec_ok(&["podman", "quadlet", "list"])?;
    assert!(list.contains("web.container"), "{list}");
    let removed = tb.exec_ok(&["podman", "quadlet", "rm", "--force", "web.container"])?;
    assert!(
        removed.contains("web.container"),
        "podman quadlet rm said: {removed}"
    );
    // legerd may restore it within milliseconds, so its absence is not asserted here;
    // the drift pass below is the proof it was gone.
    wait_until(WAIT, "removed quadlet restored", || {
        Ok(std::fs::read(&file).ok().as_deref() == Some(&original[..]))
    })
    .map_err(|e| {
        let logs = tb.unit_logs("legerd.service").unwrap_or_default();
        let history = legerctl(&tb, &["history"]).unwrap_or_default();
        e.context(format!(
            "--- legerd ---\n{logs}\n--- history ---\n{history}"
        ))
    })?;
    wait_running(&tb, "web.service", "web")?;
    // The pass that restored it is recorded as a drift pass that applied something.
    wait_until(WAIT, "a drift pass that applied", || {
        let history = legerctl(&tb, &["history", "-n", "50"])?;
        Ok(history
            .lines()
            .any(|l| l.contains("drift-file") && l.contains("applied")))
    })?;
    Ok(())
}

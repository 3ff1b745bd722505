//! Changes podman does not apply by itself. A changed `.network` really changes the
//! network (legerd stops its users, removes it, and the restart creates it again); a
//! changed `.volume` is reported as drift that cannot be healed, unless the app's
//! leger.toml lets legerd recreate it after a backup.

mod common;

use anyhow::Result;
use leger_e2e::{Testbed, wait_until};

use common::{
    Fleet, WAIT, applied_revision, container_id, legerctl, legerctl_out, reconcile,
    reconcile_and_wait_for_pass, start_legerd, status, wait_applied, wait_running,
};

fn web() -> String {
    "[Container]\nContainerName=web\nImage=localhost/busybox:latest\nNetwork=front.network\nVolume=data.volume:/data\n\
     Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do sleep 2 & wait $!; done'\n"
        .to_owned()
}

fn labels(tb: &Testbed, what: &str, name: &str) -> Result<String> {
    tb.exec_ok(&["podman", what, "inspect", "--format", "{{.Labels}}", name])
}

#[test]
fn changed_network_takes_effect_and_changed_volume_is_reported() -> Result<()> {
    let tb = Testbed::boot("e2e-resources")?;
    let fleet = Fleet::create(
        &tb,
        &[
            ("apps/web/web.container", &web()),
            ("apps/web/front.network", "[Network]\nLabel=v=1\n"),
            ("apps/web/data.volume", "[Volume]\nLabel=v=1\n"),
        ],
    )?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    wait_running(&tb, "web.service", "web")?;
    assert!(labels(&tb, "network", "systemd-front")?.contains("v:1"));
    assert!(labels(&tb, "volume", "systemd-data")?.contains("v:1"));

    let rev = fleet.commit(
        &[
            ("apps/web/front.network", "[Network]\nLabel=v=2\n"),
            ("apps/web/data.volume", "[Volume]\nLabel=v=2\n"),
        ],
        &[],
        "labels v2",
    )?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    wait_running(&tb, "web.service", "web")?;
    let net = labels(&tb, "network", "systemd-front")?;
    assert!(net.contains("v:2"), "the network was recreated: {net}");
    // The volume keeps its data and its old label, and status says so.
    assert!(labels(&tb, "volume", "systemd-data")?.contains("v:1"));
    let doc = status(&tb)?;
    let drift = doc["status"]["unhealableDrift"].to_string();
    assert!(
        drift
            .contains("web/data.volume changed, but podman keeps the existing volume systemd-data"),
        "{drift}"
    );
    let shown = legerctl(&tb, &["status"])?;
    assert!(
        shown.contains("Not applied: web/data.volume changed"),
        "{shown}"
    );
    let journal = tb.exec_ok(&[
        "journalctl",
        "-o",
        "cat",
        "MESSAGE_ID=5b0a7f3c9e2d4c61a8d3f4e2b7c9a016",
    ])?;
    assert!(journal.contains("systemd-data"), "{journal}");
    let history = legerctl(&tb, &["history", "-n", "5"])?;
    assert!(history.contains("applied"), "{history}");
    let plan = legerctl(&tb, &["plan"])?;
    assert!(
        plan.contains("Cannot be healed by a pass:\n  web/data.volume changed"),
        "{plan}"
    );

    // A restarted legerd still reports it: status, legerctl status, plan, and the
    // journal of its start.
    let said = journal.lines().count();
    tb.exec_ok(&["systemctl", "restart", "legerd.service"])?;
    wait_until(WAIT, "legerd answering after its restart", || {
        Ok(legerctl_out(&tb, &["status", "--json"])?.0 == 0)
    })?;
    let again = status(&tb)?["status"]["unhealableDrift"].to_string();
    assert_eq!(again, drift, "kept across the restart");
    let shown = legerctl(&tb, &["status"])?;
    assert!(
        shown.contains("Not applied: web/data.volume changed"),
        "{shown}"
    );
    let plan = legerctl(&tb, &["plan", "web"])?;
    assert!(
        plan.contains("Cannot be healed by a pass:\n  web/data.volume changed"),
        "{plan}"
    );
    wait_until(
        WAIT,
        "the restarted legerd to say it in the journal",
        || {
            let journal = tb.exec_ok(&[
                "journalctl",
                "-o",
                "cat",
                "MESSAGE_ID=5b0a7f3c9e2d4c61a8d3f4e2b7c9a016",
            ])?;
            Ok(journal.lines().count() > said)
        },
    )?;

    // A container started by hand on the network: the change is refused before web
    // is touched, and applied once that container is gone.
    let applied = fleet.head()?;
    let web_id = wait_running(&tb, "web.service", "web")?;
    tb.exec_ok(&[
        "podman",
        "run",
        "-d",
        "--name",
        "outsider",
        "--network",
        "systemd-front",
        "localhost/busybox:latest",
        "sleep",
        "1000",
    ])?;
    let rev = fleet.commit(
        &[("apps/web/front.network", "[Network]\nLabel=v=3\n")],
        &[],
        "network v3",
    )?;
    reconcile_and_wait_for_pass(&tb)?;
    let doc = status(&tb)?;
    let error = doc["status"]["lastPass"]["error"].to_string();
    assert!(
        error.contains("network systemd-front changed, but podman cannot recreate it")
            && error.contains("outsider")
            && error.contains("nothing was stopped or written"),
        "{doc}"
    );
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(applied.as_str()));
    assert_eq!(container_id(&tb, "web")?.as_deref(), Some(web_id.as_str()));
    assert!(labels(&tb, "network", "systemd-front")?.contains("v:2"));
    let installed = std::fs::read_to_string(tb.quadlet_dir_host().join("web/front.network"))?;
    assert!(installed.contains("v=2"), "{installed}");
    tb.exec_ok(&["podman", "rm", "-f", "-t", "0", "outsider"])?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    wait_running(&tb, "web.service", "web")?;
    assert!(labels(&tb, "network", "systemd-front")?.contains("v:3"));

    // The volume recreated by hand, as the message advises: no longer reported.
    assert!(!status(&tb)?["status"]["unhealableDrift"].is_null());
    legerctl(&tb, &["suspend"])?;
    tb.exec_ok(&["systemctl", "stop", "web.service"])?;
    tb.exec_ok(&["podman", "volume", "rm", "systemd-data"])?;
    tb.exec_ok(&["systemctl", "restart", "data-volume.service"])?;
    tb.exec_ok(&["systemctl", "start", "web.service"])?;
    assert!(labels(&tb, "volume", "systemd-data")?.contains("v:2"));
    legerctl(&tb, &["resume"])?;
    reconcile(&tb)?;
    wait_until(WAIT, "the healed volume drift to leave status", || {
        Ok(status(&tb)?["status"]["unhealableDrift"].is_null())
    })?;
    let shown = legerctl(&tb, &["status"])?;
    assert!(!shown.contains("Not applied"), "{shown}");

    // Allowed by leger.toml: backed up, removed, created again with the new label.
    let rev = fleet.commit(
        &[
            ("apps/web/data.volume", "[Volume]\nLabel=v=3\n"),
            (
                "apps/web/leger.toml",
                "[volumes]\nrecreate_on_change = true\n",
            ),
        ],
        &[],
        "volume v3, recreation allowed",
    )?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    wait_running(&tb, "web.service", "web")?;
    wait_until(WAIT, "volume recreated with v:3", || {
        Ok(labels(&tb, "volume", "systemd-data")?.contains("v:3"))
    })?;
    let doc = status(&tb)?;
    assert!(doc["status"]["unhealableDrift"].is_null(), "{doc}");
    let backups = legerctl(&tb, &["backups", "web"])?;
    assert!(!backups.trim().is_empty(), "a backup came first: {backups}");
    Ok(())
}

//! The harness itself on a real machine: the mounts, exec and services other e2e tests
//! rely on. Needs root and systemd-nspawn.

use std::fs;
use std::time::Duration;

use anyhow::Result;
use leger_e2e::{AGENT_DIR_INSIDE, Testbed, wait_until};

#[test]
fn testbed_boot_mounts_share_and_agent_dirs_and_runs_services() -> Result<()> {
    let tb = Testbed::boot("harness-self")?;
    assert_eq!(tb.exec_ok(&["hostname"])?.trim(), tb.name());

    // Share dir: read-write both ways.
    fs::write(tb.share_dir_host().join("from-host"), "hello")?;
    let inside = format!("{}/from-host", tb.share_dir_inside());
    assert_eq!(tb.exec_ok(&["cat", &inside])?, "hello");
    tb.exec_ok(&[
        "sh",
        "-c",
        &format!("echo back > {}/from-inside", tb.share_dir_inside()),
    ])?;
    assert_eq!(
        fs::read_to_string(tb.share_dir_host().join("from-inside"))?,
        "back\n"
    );

    // Agent dir: the built binaries, read-only.
    let ls = tb.exec_ok(&["ls", AGENT_DIR_INSIDE])?;
    assert!(ls.lines().any(|l| l == "deps"), "{ls}");
    let touch = tb.exec(&["touch", &format!("{AGENT_DIR_INSIDE}/x")])?;
    assert!(!touch.status.success(), "agent dir must be read-only");

    // exec_ok carries stderr on failure.
    let err = tb.exec_ok(&["ls", "/no/such/dir"]).unwrap_err();
    assert!(format!("{err:#}").contains("No such file"), "{err:#}");

    // A transient service inside, with its environment.
    tb.run_service(
        "harness-svc",
        &[("GREETING", "hi-from-service")],
        &["/bin/sh", "-c", "echo $GREETING; exec sleep infinity"],
    )?;
    wait_until(
        Duration::from_secs(60),
        "harness-svc output in its journal",
        || Ok(tb.unit_logs("harness-svc")?.contains("hi-from-service")),
    )?;
    assert_eq!(
        tb.exec_ok(&["systemctl", "is-active", "harness-svc"])?
            .trim(),
        "active"
    );
    assert!(tb.logs()?.contains("harness-svc"));
    Ok(())
}

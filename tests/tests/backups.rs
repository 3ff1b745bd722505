//! Backups end to end: legerd runs inside a real systemd + podman machine, backs an
//! app up (files and its named volume, via `podman volume export`) before a revision
//! removes it, and `legerctl restore` brings the volume's data and the files back.

mod common;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};

const VOLUME: &str = "apps/notes/notes.volume";
const CONTAINER: &str = "apps/notes/notes.container";
/// quadlet's default name for `notes.volume`.
const VOLUME_NAME: &str = "systemd-notes";
/// Another app, so removing notes leaves the source non-empty.
const OTHER: &str = "apps/other/other.container";

/// A container that writes `v1` into its volume on first start, then idles.
fn notes() -> String {
    "[Unit]\nDescription=e2e notes\n\n[Container]\nContainerName=notes\nImage=localhost/busybox:latest\nNetwork=none\n\
     Volume=notes.volume:/data\n\
     Exec=/bin/sh -c 'test -f /data/x || echo v1 > /data/x; trap \"exit 0\" TERM; while :; do sleep 2 & wait $!; done'\n"
        .to_owned()
}

/// `/x` in the volume as a throwaway container sees it; `None` when it cannot be read.
fn volume_file(tb: &Testbed) -> Result<Option<String>> {
    let out = tb.exec(&[
        "podman",
        "run",
        "--rm",
        "--network=none",
        "-v",
        &format!("{VOLUME_NAME}:/d"),
        "localhost/busybox:latest",
        "cat",
        "/d/x",
    ])?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

fn volume_exists(tb: &Testbed) -> Result<bool> {
    Ok(tb
        .exec(&["podman", "volume", "exists", VOLUME_NAME])?
        .status
        .success())
}

#[test]
fn backups_restore_brings_back_a_removed_apps_volume_data() -> Result<()> {
    let tb = Testbed::boot("e2e-backups")?;
    let fleet = Fleet::create(
        &tb,
        &[
            (VOLUME, "[Volume]\n"),
            (CONTAINER, &notes()),
            (OTHER, &container("other", "other v1")),
        ],
    )?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    wait_running(&tb, "notes.service", "notes")?;
    let v1 = fleet.head()?;
    wait_applied(&tb, &v1)?;
    wait_until(WAIT, "the container wrote v1 into its volume", || {
        Ok(volume_file(&tb)?.as_deref() == Some("v1"))
    })?;
    assert_eq!(
        legerctl(&tb, &["backups"])?.trim(),
        "no backups",
        "installing an app backs nothing up"
    );

    // A revision removes the app: legerd backs it up first, then prunes it.
    let v2 = fleet.commit(&[], &["apps/notes"], "remove notes")?;
    reconcile(&tb)?;
    wait_applied(&tb, &v2)?;
    assert!(!tb.quadlet_dir_host().join("notes").exists());
    assert_ne!(active_state(&tb, "notes.service")?, "active");
    // Without a restore the data is really gone once the volume is cleaned up.
    tb.exec_ok(&["podman", "volume", "rm", "--force", VOLUME_NAME])?;
    assert!(!volume_exists(&tb)?);
    assert_eq!(volume_file(&tb)?, None, "the data is gone");
    tb.exec_ok(&["podman", "volume", "rm", "--force", VOLUME_NAME])?;

    let list: serde_json::Value =
        serde_json::from_str(&legerctl(&tb, &["backups", "notes", "--json"])?)?;
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{list:?}");
    let all: serde_json::Value = serde_json::from_str(&legerctl(&tb, &["backups", "--json"])?)?;
    assert_eq!(
        all.as_array().unwrap().len(),
        1,
        "the other app was not changed: {all}"
    );
    let backup = &list[0];
    assert_eq!(backup["app"], "notes");
    assert_eq!(backup["revision"], v1.as_str(), "the revision it backs up");
    assert_eq!(backup["volumes"], serde_json::json!([VOLUME_NAME]));
    let mut files: Vec<&str> = backup["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["notes.container", "notes.volume"]);
    let id = backup["id"].as_str().unwrap().to_owned();
    let table = legerctl(&tb, &["backups"])?;
    assert!(
        table.contains(&id) && table.contains("notes") && table.contains(VOLUME_NAME),
        "{table}"
    );
    let manifest = tb.exec_ok(&[
        "cat",
        &format!("/var/lib/leger/backups/{id}/notes/manifest.json"),
    ])?;
    assert!(
        manifest.contains("\"sha256\"") && manifest.contains(&v2),
        "{manifest}"
    );

    // Restore: the volume comes back with v1, the files and units too, and the host
    // is pinned to the backup's revision.
    // --wait follows the pass after the restore (which applied the backup's revision
    // itself): the host is up to date at that revision, exit 0.
    let (code, out, err) = legerctl_out(&tb, &["restore", "notes", "--wait=120s"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("up to date: the host runs {}", &v1[..12])),
        "{out}{err}"
    );
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v1.as_str()));
    assert!(
        out.contains(&format!("restored notes from backup {id}")) && out.contains("legerctl unpin"),
        "{out}"
    );
    assert!(
        out.contains(VOLUME_NAME) && out.contains("notes.service"),
        "{out}"
    );
    assert_eq!(volume_file(&tb)?.as_deref(), Some("v1"), "the data is back");
    let desired = legerctl(&tb, &["get-desired"])?;
    assert!(desired.contains(&format!("pin = \"{v1}\"")), "{desired}");
    Ok(())
}

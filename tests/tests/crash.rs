//! End-to-end: legerd killed with SIGKILL at 40 and more distinct points of a pass
//! (inside the apply and inside the health gate); each time, the next start converges,
//! runs the interrupted revision's gate again, and the quadlet dir never holds a
//! partial file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use common::*;
use leger_e2e::{Testbed, wait_until};

/// The source tree of revision `i`: every revision changes a companion of web and the
/// quadlet of db; `extra` exists in even revisions only, so odd ones prune it.
fn revision(i: u32) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    files.insert(
        "apps/web/web.container".into(),
        "[Container]\nContainerName=web\nImage=localhost/busybox:latest\nNetwork=none\nEnvironmentFile=web.env\n\
         Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do echo \"web N=$N\"; sleep 2 & wait $!; done'\n"
            .into(),
    );
    files.insert("apps/web/web.env".into(), format!("N={i}\n"));
    files.insert("apps/db/data.volume".into(), "[Volume]\n".into());
    files.insert(
        "apps/db/db.container".into(),
        format!(
            "[Container]\nContainerName=db\nImage=localhost/busybox:latest\nNetwork=none\nVolume=data.volume:/data\n\
             Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do echo \"db {i}\"; sleep 2 & wait $!; done'\n"
        ),
    );
    if i.is_multiple_of(2) {
        files.insert(
            "apps/extra/extra.container".into(),
            container("extra", "extra"),
        );
    }
    files
}

/// The crash point for each revision 1.., chosen so that revision's pass reaches it.
/// Odd revisions: stop extra, update db, update web, remove extra, reload, restart db,
/// restart web; the gate judges db and web. Even ones: create extra, update db, update
/// web, reload, restart db, start extra, restart web; the gate judges db, extra and web.
/// Around the apply: fetch, validate, observe, plan, backup, the intent record, the
/// gate (each unit up, settled), recording the revision and clearing the intent.
const POINTS: &[&str] = &[
    "after-remove#1",
    "after-inventory#1",
    "before-rename#1",
    "after-write#1",
    "after-inventory#2",
    "before-rename#3",
    "after-write#2",
    "after-reload#1",
    "before-action#1",
    "after-action#1",
    "before-action#6",
    "after-action#5",
    "before-action#7",
    "after-action#6",
    "after-remove#1",
    "before-action#4",
    "after-action#7",
    "after-write#3",
    "before-rename#2",
    "after-reload#1",
    "before-action#5",
    "after-inventory#3",
    "before-record#1",
    "gate-unit-up#3",
    "before-action#2",
    "before-action#3",
    "after-action#2",
    "after-action#3",
    "after-action#4",
    "after-backup#1",
    "after-intent#1",
    "before-gate#1",
    "gate-unit-up#1",
    "gate-unit-up#2",
    "gate-settled#1",
    "after-gate#1",
    "after-record#1",
    "after-observe#1",
    "after-plan#1",
    "before-apply#1",
    "after-apply#1",
    "after-fetch#1",
    "after-validate#1",
];

/// Every file under `dir`, relative, with its content.
fn files_under(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for entry in walk(dir)? {
        let rel = entry.strip_prefix(dir)?.to_string_lossy().into_owned();
        out.insert(rel, std::fs::read_to_string(&entry).unwrap_or_default());
    }
    Ok(out)
}

fn walk(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

#[test]
fn kill_at_any_point_of_an_apply_then_converge() -> Result<()> {
    let distinct: std::collections::BTreeSet<&str> = POINTS.iter().copied().collect();
    println!(
        "killing legerd at {} distinct crash points ({} kills)",
        distinct.len(),
        POINTS.len()
    );
    assert!(distinct.len() >= 40, "{} distinct points", distinct.len());
    let tb = Testbed::boot("e2e-crash")?;
    let initial = revision(0);
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
    wait_applied(&tb, &fleet.head()?)?;
    let qdir = tb.quadlet_dir_host();

    for (n, point) in POINTS.iter().enumerate() {
        let i = u32::try_from(n).expect("few points") + 1;
        let files = revision(i);
        let previous = revision(i - 1);
        let removed: Vec<&str> = previous
            .keys()
            .filter(|k| !files.contains_key(*k))
            .map(String::as_str)
            .collect();
        let pairs: Vec<(&str, &str)> = files
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let removed_dirs: Vec<&str> = removed
            .iter()
            .map(|r| r.rsplit_once('/').map_or(*r, |(d, _)| d))
            .collect();
        // Stop legerd before the commit: a legerd still running could fetch and apply
        // the new revision itself, and the crash legerd would then have nothing to do.
        tb.exec_ok(&["systemctl", "stop", "legerd.service"])?;
        let rev = fleet.commit(&pairs, &removed_dirs, &format!("revision {i}"))?;
        let crash_unit = format!("legerd-crash-{i}");
        tb.exec_ok(&[
            "systemd-run",
            &format!("--unit={crash_unit}"),
            "--property=Type=exec",
            &format!("--setenv=LEGERD_CRASH_AT={point}"),
            "/opt/leger/legerd",
        ])?;
        wait_until(WAIT, &format!("legerd killed at {point}"), || {
            let state = tb.exec_ok(&["systemctl", "show", "-P", "ActiveState", &crash_unit])?;
            Ok(matches!(state.trim(), "failed" | "inactive"))
        })
        .map_err(|e| {
            // Say where the pass was instead of only that it never got there.
            let logs = tb.unit_logs(&crash_unit).unwrap_or_default();
            let status = legerctl(&tb, &["status", "--details"]).unwrap_or_default();
            e.context(format!(
                "revision {i}: the pass never reached {point}\n--- {crash_unit} ---\n{logs}\n--- status ---\n{status}"
            ))
        })?;
        let how = tb.exec_ok(&["systemctl", "show", "-P", "ExecMainStatus", &crash_unit])?;
        if how.trim() != "9" {
            let logs = tb.unit_logs(&crash_unit).unwrap_or_default();
            bail!(
                "revision {i}: legerd did not die at {point} (ExecMainStatus={}):\n{logs}",
                how.trim()
            );
        }
        // Whatever the instant, no quadlet-named file is partial: each one is either
        // the old or the new content (temporary files end in .tmp).
        for (rel, content) in files_under(&qdir)? {
            if rel.contains(".leger-tmp-") {
                assert!(rel.ends_with(".tmp"), "{rel}");
                continue;
            }
            let key = format!("apps/{rel}");
            let old = previous.get(&key);
            let new = files.get(&key);
            assert!(
                old == Some(&content) || new == Some(&content),
                "after a kill at {point}: {rel} is neither the old nor the new content:\n{content}"
            );
        }

        tb.exec_ok(&["systemctl", "reset-failed", &crash_unit])?;
        tb.exec_ok(&["systemctl", "start", "legerd.service"])
            .with_context(|| format!("restart after a kill at {point}"))?;
        wait_applied(&tb, &rev).with_context(|| format!("converging after a kill at {point}"))?;
        let expected: BTreeMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.trim_start_matches("apps/").to_owned(), v.clone()))
            .collect();
        assert_eq!(
            files_under(&qdir)?,
            expected,
            "after a kill at {point}: the quadlet dir matches revision {i}"
        );
        wait_until(
            WAIT,
            &format!("web runs N={i} after a kill at {point}"),
            || Ok(tb.unit_logs("web.service")?.contains(&format!("web N={i}"))),
        )?;
        wait_until(
            WAIT,
            &format!("db runs {i} after a kill at {point}"),
            || Ok(tb.unit_logs("db.service")?.contains(&format!("db {i}"))),
        )?;
        for unit in ["web.service", "db.service", "data-volume.service"] {
            assert_eq!(
                active_state(&tb, unit)?,
                "active",
                "{unit} after a kill at {point}"
            );
        }
        let extra = active_state(&tb, "extra.service")?;
        assert_eq!(
            extra == "active",
            i % 2 == 0,
            "extra.service is {extra} after a kill at {point}"
        );
    }
    Ok(())
}

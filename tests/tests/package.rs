//! The Debian package end to end: `dpkg -i` the deb `contrib/package.sh deb` built on a
//! fresh test-bed machine, then only what the README tells an operator to do:
//! `systemctl enable --now legerd`, `legerctl secrets set`, `legerctl set-desired git
//! --wait`.
//! legerd runs under the shipped, hardened unit and converges an app with a secret, a
//! backed-up volume and a health-checked container; the unit's exposure score stays
//! within 5.0. Removing the package stops and disables legerd and leaves the app, its
//! quadlets and /var/lib/leger alone; purging removes legerd's state, not the app.
//!
//! The deb comes from `LEGER_E2E_DEB` or the newest `target/package/leger_*.deb`
//! (`contrib/run-tests.sh` builds it first). The machine has no network: the deb is
//! copied in through the share dir.

mod common;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use common::{Fleet, WAIT, condition};
use leger_e2e::{Testbed, wait_until};
use serde_json::Value;

const CONTAINER: &str = "apps/web/web.container";
const VOLUME: &str = "apps/web/web.volume";
/// quadlet's default name for `web.volume`.
const VOLUME_NAME: &str = "systemd-web";
/// The highest `systemd-analyze security` exposure the issue allows for legerd.service.
const MAX_EXPOSURE: f64 = 5.0;

/// A container that consumes `db-pass` (printing only its sha256), keeps data in its
/// volume, and has a podman health check the health gate waits for.
fn web_container() -> String {
    "[Unit]\nDescription=e2e web\n\n[Container]\nContainerName=web\nImage=localhost/busybox:latest\nNetwork=none\n\
     Secret=db-pass,type=env,target=DB_PASS\n\
     Volume=web.volume:/data\n\
     HealthCmd=/bin/sh -c 'test -f /data/x'\nHealthInterval=2s\nHealthStartPeriod=1s\n\
     Exec=/bin/sh -c 'echo \"hash=$(printf %%s \"$(busybox env | busybox sed -n s/^DB_PASS=//p)\" | busybox sha256sum)\"; test -f /data/x || echo v1 > /data/x; trap \"exit 0\" TERM; while :; do sleep 2 & wait $!; done'\n"
        .to_owned()
}

/// The deb to test, as the README builds it.
fn built_deb() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("LEGER_E2E_DEB") {
        return Ok(PathBuf::from(p));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/package");
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "no {}: build the package first with `contrib/package.sh deb`",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("leger_") && n.ends_with(".deb"))
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    debs.sort();
    match debs.pop() {
        Some((_, p)) => Ok(p),
        None => bail!(
            "no leger_*.deb in {}: build it first with `contrib/package.sh deb`",
            dir.display()
        ),
    }
}

/// The packaged legerctl, as an operator runs it.
fn legerctl(tb: &Testbed, args: &[&str]) -> Result<String> {
    let mut full = vec!["legerctl"];
    full.extend_from_slice(args);
    tb.exec_ok(&full)
}

fn status(tb: &Testbed) -> Result<Value> {
    serde_json::from_str(&legerctl(tb, &["status", "--json"])?).context("status --json")
}

fn applied(tb: &Testbed) -> Result<Option<String>> {
    Ok(status(tb)?["status"]["appliedRevision"]
        .as_str()
        .map(str::to_owned))
}

fn wait_applied(tb: &Testbed, rev: &str) -> Result<()> {
    wait_until(WAIT, &format!("revision {rev} applied"), || {
        Ok(applied(tb)?.as_deref() == Some(rev))
    })
}

fn unit_state(tb: &Testbed, unit: &str) -> Result<String> {
    Ok(tb
        .exec_ok(&["systemctl", "show", "-P", "ActiveState", unit])?
        .trim()
        .to_owned())
}

fn web_container_id(tb: &Testbed) -> Result<String> {
    Ok(tb
        .exec_ok(&["podman", "inspect", "--format", "{{.Id}}", "web"])?
        .trim()
        .to_owned())
}

/// `Overall exposure level for legerd.service: 2.7 OK` → 2.7.
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    // After "legerd.service: "; the line ends in a smiley that may itself hold a colon.
    line.split(": ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn sha256_hex(value: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn deb_installs_and_converges_an_app_under_the_hardened_unit() -> Result<()> {
    let deb = built_deb()?;
    let tb = Testbed::boot("e2e-package")?;
    std::fs::copy(&deb, tb.share_dir_host().join("leger.deb"))
        .with_context(|| format!("cannot copy {}", deb.display()))?;
    let inside = |name: &str| format!("{}/{name}", tb.share_dir_inside());

    // Install: groups, directories, units, config, man pages are there; legerd is not
    // started before the operator says what to run.
    tb.exec_ok(&["dpkg", "-i", &inside("leger.deb")])?;
    tb.exec_ok(&["getent", "group", "leger", "leger-admin"])?;
    let dirs = tb.exec_ok(&["stat", "-c", "%n %a", "/var/lib/leger", "/run/leger"])?;
    assert!(
        dirs.contains("/var/lib/leger 700") && dirs.contains("/run/leger 755"),
        "{dirs}"
    );
    tb.exec_ok(&["test", "-f", "/usr/lib/leger/config.d/10-defaults.toml"])?;
    tb.exec_ok(&["test", "-f", "/usr/share/man/man8/legerd.8.gz"])?;
    assert_ne!(unit_state(&tb, "legerd.service")?, "active");

    // The shipped unit's sandbox.
    // The summary line goes to stderr.
    let report = tb.exec_ok(&[
        "sh",
        "-c",
        "systemd-analyze security --no-pager legerd.service 2>&1",
    ])?;
    let score = exposure(&report).with_context(|| format!("no score in:\n{report}"))?;
    eprintln!("systemd-analyze security legerd.service: exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{report}"
    );

    // The README's steps, nothing else.
    tb.exec_ok(&["systemctl", "enable", "--now", "legerd"])?;
    assert_eq!(unit_state(&tb, "legerd.service")?, "active");
    let secret = "pw-package-e2e-5b0f1c";
    std::fs::write(tb.share_dir_host().join("value.tmp"), secret)?;
    tb.exec_ok(&[
        "sh",
        "-c",
        &format!("legerctl secrets set db-pass < {}", inside("value.tmp")),
    ])?;
    std::fs::remove_file(tb.share_dir_host().join("value.tmp"))?;
    let fleet = Fleet::create(
        &tb,
        &[(VOLUME, "[Volume]\n"), (CONTAINER, &web_container())],
    )?;
    // --wait: returns once the pass has applied (after the health gate), exit 0.
    let v1 = fleet.head()?;
    let out = legerctl(
        &tb,
        &[
            "set-desired",
            "git",
            &fleet.url_inside(),
            "--path",
            "apps",
            "--wait=90s",
        ],
    )?;
    assert!(out.contains(&v1[..12]), "{out}");
    wait_applied(&tb, &v1)?;

    // Converged: running, healthy, with the secret's value and data in its volume.
    assert_eq!(unit_state(&tb, "web.service")?, "active");
    let health = tb.exec_ok(&[
        "podman",
        "inspect",
        "--format",
        "{{.State.Health.Status}}",
        "web",
    ])?;
    assert_eq!(health.trim(), "healthy");
    let journal = tb.exec_ok(&["journalctl", "-u", "web.service", "--no-pager", "-o", "cat"])?;
    assert!(
        journal.contains(&format!("hash={}", sha256_hex(secret))),
        "web did not get the secret's value:\n{journal}"
    );
    let doc = status(&tb)?;
    let (ready, reason, _) = condition(&doc, "Ready").context("no Ready condition")?;
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("True", "ReconciliationSucceeded"),
        "{doc}"
    );

    // A change to the volume's quadlet: legerd exports the volume first (podman runs
    // under the same sandbox).
    let v2 = fleet.commit(&[(VOLUME, "[Volume]\nLabel=generation=2\n")], &[], "label")?;
    legerctl(&tb, &["reconcile"])?;
    wait_applied(&tb, &v2)?;
    let backups: Value = serde_json::from_str(&legerctl(&tb, &["backups", "web", "--json"])?)?;
    assert_eq!(
        backups[0]["volumes"],
        serde_json::json!([VOLUME_NAME]),
        "{backups}"
    );

    // A member of group leger reads status without root.
    tb.exec_ok(&["useradd", "--create-home", "--groups", "leger", "alice"])?;
    let as_alice = tb.exec_ok(&[
        "runuser", "-u", "alice", "--", "legerctl", "status", "--json",
    ])?;
    assert!(as_alice.contains(&v2), "{as_alice}");

    // A broken revision: `reconcile --wait` exits 1 and says why; the app keeps running.
    fleet.commit(
        &[(
            "apps/bad/bad.container",
            "[Container]\nImage=localhost/busybox:latest\nNotAKey=1\n",
        )],
        &[],
        "broken",
    )?;
    let o = tb.exec(&["legerctl", "reconcile", "--wait=90s"])?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("failed") && err.contains("NotAKey"), "{err}");
    assert_eq!(applied(&tb)?.as_deref(), Some(v2.as_str()));
    assert_eq!(unit_state(&tb, "web.service")?, "active");

    // Remove: legerd stopped and disabled; the app, its quadlets and the state stay.
    let web_id = web_container_id(&tb)?;
    tb.exec_ok(&["dpkg", "-r", "leger"])?;
    assert_ne!(unit_state(&tb, "legerd.service")?, "active");
    let wants = tb.exec(&[
        "test",
        "-e",
        "/etc/systemd/system/multi-user.target.wants/legerd.service",
    ])?;
    assert!(!wants.status.success(), "legerd is still enabled");
    assert_eq!(unit_state(&tb, "web.service")?, "active");
    assert_eq!(web_container_id(&tb)?, web_id, "the app was not restarted");
    assert!(tb.quadlet_dir_host().join("web/web.container").exists());
    tb.exec_ok(&["test", "-f", "/var/lib/leger/legerd.db"])?;

    // Purge: legerd's state goes; the app still runs.
    tb.exec_ok(&["dpkg", "--purge", "leger"])?;
    assert!(
        tb.exec(&["test", "-e", "/var/lib/leger"])?
            .status
            .success()
            .eq(&false)
    );
    assert_eq!(unit_state(&tb, "web.service")?, "active");
    assert_eq!(web_container_id(&tb)?, web_id);
    Ok(())
}

#[test]
fn exposure_reads_systemd_analyzes_summary_line() {
    let report = "  NAME  DESCRIPTION  EXPOSURE\n✗ PrivateNetwork= ... 0.5\n\n→ Overall exposure level for legerd.service: 2.7 OK 🙂\n";
    assert_eq!(exposure(report), Some(2.7));
    let ascii = "→ Overall exposure level for legerd.service: 4.9 OK :-)\n";
    assert_eq!(exposure(ascii), Some(4.9));
    assert_eq!(exposure("no summary"), None);
}

/// Bad input to the one packaging command: what was wrong, the formats there are, and
/// the usage exit code 2, before anything is built.
#[test]
fn package_sh_refuses_an_unknown_format_or_a_missing_one() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contrib/package.sh");
    for (args, says) in [
        (
            &["banana"][..],
            "unknown package format 'banana': use deb or rpm",
        ),
        (
            &[][..],
            "expected one argument, the package format (deb or rpm); got 0",
        ),
        (&["deb", "rpm"][..], "got 2"),
    ] {
        let o = std::process::Command::new(&script)
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains("usage:") && err.contains("deb|rpm"), "{err}");
        assert!(o.stdout.is_empty(), "no package path printed: {o:?}");
    }
}

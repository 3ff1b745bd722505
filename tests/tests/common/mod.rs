//! Shared steps of the end-to-end scenarios: a git "fleet" repository in the share dir,
//! legerd installed and started as a real systemd service inside the machine, and
//! readers for status, units and containers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use leger_e2e::{AGENT_DIR_INSIDE, Testbed, wait_until};
use serde_json::Value;

/// How long to wait for anything systemd or podman does. Generous: CI machines are
/// small and may be loaded.
pub const WAIT: Duration = Duration::from_secs(90);

/// A unit quadlet for a long-running busybox container that prints `word`.
pub fn container(name: &str, word: &str) -> String {
    format!(
        "[Unit]\nDescription=e2e {name}\n\n[Container]\nContainerName={name}\nImage=localhost/busybox:latest\nNetwork=none\n\
         Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do echo \"{word}\"; sleep 2 & wait $!; done'\n"
    )
}

/// A git repository on the host, bare in the share dir so legerd reads it inside at
/// `/srv/leger/fleet.git`, with a work tree next to it to commit from.
#[derive(Debug)]
pub struct Fleet {
    work: PathBuf,
    bare: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=leger-e2e",
            "-c",
            "user.email=e2e@leger.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Fleet {
    /// Creates the repository with `files` (path → content) in its first commit.
    pub fn create(tb: &Testbed, files: &[(&str, &str)]) -> Result<Fleet> {
        let work = tb.share_dir_host().join("work");
        let bare = tb.share_dir_host().join("fleet.git");
        std::fs::create_dir_all(&work)?;
        git(&work, &["init", "-q", "-b", "main"])?;
        let fleet = Fleet { work, bare };
        fleet.write(files)?;
        git(&fleet.work, &["add", "-A"])?;
        git(&fleet.work, &["commit", "-qm", "initial"])?;
        git(
            tb.share_dir_host(),
            &["clone", "-q", "--bare", "work", "fleet.git"],
        )?;
        git(
            &fleet.work,
            &[
                "remote",
                "add",
                "origin",
                fleet.bare.to_str().expect("utf-8 path"),
            ],
        )?;
        Ok(fleet)
    }

    /// The URL legerd uses inside the machine.
    pub fn url_inside(&self) -> String {
        format!("{}/fleet.git", leger_e2e::SHARE_DIR_INSIDE)
    }

    fn write(&self, files: &[(&str, &str)]) -> Result<()> {
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().expect("parent"))?;
            std::fs::write(&p, content)?;
        }
        Ok(())
    }

    /// Commits `files` (written) and `remove` (deleted), pushes, and returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], remove: &[&str], message: &str) -> Result<String> {
        self.write(files)?;
        for r in remove {
            git(&self.work, &["rm", "-rq", r])?;
        }
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "-qm", message])?;
        git(&self.work, &["push", "-q", "origin", "main"])?;
        self.head()
    }

    /// The current commit id.
    pub fn head(&self) -> Result<String> {
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// Writes a file into the machine's root filesystem (from the host side).
pub fn write_inside(tb: &Testbed, path: &str, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    let host = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(host.parent().expect("a parent"))?;
    std::fs::write(&host, text)?;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Runs legerctl inside the machine and returns its stdout.
pub fn legerctl(tb: &Testbed, args: &[&str]) -> Result<String> {
    let bin = format!("{AGENT_DIR_INSIDE}/legerctl");
    let mut full = vec![bin.as_str()];
    full.extend_from_slice(args);
    tb.exec_ok(&full)
}

/// Runs legerctl inside and returns (exit code, stdout, stderr), whatever the code.
pub fn legerctl_out(tb: &Testbed, args: &[&str]) -> Result<(i32, String, String)> {
    let bin = format!("{AGENT_DIR_INSIDE}/legerctl");
    let mut full = vec![bin.as_str()];
    full.extend_from_slice(args);
    let out = tb.exec(&full)?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Installs contrib/systemd/legerd.service (pointing at the built binary), starts it,
/// and waits until its first pass has ended, health gate included, whatever its
/// outcome. `systemctl start` itself returns at READY=1, once the first revision is
/// applied and while its gate still runs; a scenario that stopped or removed something
/// then would have the gate judge the revision by it.
pub fn start_legerd(tb: &Testbed) -> Result<()> {
    start_legerd_until_ready(tb)?;
    wait_until(FIRST_PASS, "legerd's first pass to end", || {
        Ok(!status(tb)?["status"]["lastPass"].is_null())
    })
}

/// How long a first pass may take in a scenario: 1,000 apps on a loaded machine.
const FIRST_PASS: Duration = Duration::from_secs(15 * 60);

/// Installs and starts legerd.service; returns at READY=1 (see [`start_legerd`]).
pub fn start_legerd_until_ready(tb: &Testbed) -> Result<()> {
    let unit = include_str!("../../../contrib/systemd/legerd.service").replace(
        "ExecStart=/usr/bin/legerd",
        &format!("ExecStart={AGENT_DIR_INSIDE}/legerd"),
    );
    // Short debounce and backoff keep the scenarios quick; the defaults are for fleets.
    let config = "[reconcile]\ndebounce = \"100ms\"\nbackoff_initial = \"1s\"\nbackoff_max = \"5s\"\n\
         [health]\ntimeout = \"30s\"\nsettle = \"2s\"\n";
    let root = PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    std::fs::create_dir_all(root.join("etc/leger/config.d"))?;
    std::fs::write(root.join("etc/leger/config.d/50-e2e.toml"), config)?;
    std::fs::write(root.join("etc/systemd/system/legerd.service"), unit)?;
    tb.exec_ok(&["systemctl", "daemon-reload"])?;
    tb.exec_ok(&["systemctl", "start", "legerd.service"])?;
    Ok(())
}

/// `legerctl status --json`.
pub fn status(tb: &Testbed) -> Result<Value> {
    let out = legerctl(tb, &["status", "--json"])?;
    serde_json::from_str(&out).context("status --json is not JSON")
}

/// The condition `type_` of a status document: (status, reason, message).
pub fn condition(doc: &Value, type_: &str) -> Option<(String, String, String)> {
    doc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
}

/// The applied revision in status.
pub fn applied_revision(tb: &Testbed) -> Result<Option<String>> {
    Ok(status(tb)?["status"]["appliedRevision"]
        .as_str()
        .map(ToOwned::to_owned))
}

/// systemd's ActiveState of a unit inside.
pub fn active_state(tb: &Testbed, unit: &str) -> Result<String> {
    Ok(tb
        .exec_ok(&["systemctl", "show", "-P", "ActiveState", unit])?
        .trim()
        .to_owned())
}

/// The id of a running container, `None` when there is none of that name.
pub fn container_id(tb: &Testbed, name: &str) -> Result<Option<String>> {
    let out = tb.exec(&[
        "podman",
        "inspect",
        "-f",
        "{{.Id}} {{.State.Running}}",
        name,
    ])?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(id), Some("true")) => Ok(Some(id.to_owned())),
        _ => Ok(None),
    }
}

/// Waits until `unit` is active and its container `name` runs; returns the container id.
pub fn wait_running(tb: &Testbed, unit: &str, name: &str) -> Result<String> {
    wait_until(
        WAIT,
        &format!("{unit} active with container {name}"),
        || Ok(active_state(tb, unit)? == "active" && container_id(tb, name)?.is_some()),
    )?;
    Ok(container_id(tb, name)?.expect("checked above"))
}

/// Asks legerd for a pass now.
pub fn reconcile(tb: &Testbed) -> Result<()> {
    legerctl(tb, &["reconcile"]).map(drop)
}

/// Waits until status shows `rev` as applied.
pub fn wait_applied(tb: &Testbed, rev: &str) -> Result<()> {
    wait_until(WAIT, &format!("revision {rev} applied"), || {
        Ok(applied_revision(tb)?.as_deref() == Some(rev))
    })
}

/// A fleet with one app `web` (`apps/web/web.container`, printing "web v1"), legerd
/// started on it and converged. Returns the fleet, the applied revision and the id of
/// the running web container.
pub fn web_converged(tb: &Testbed) -> Result<(Fleet, String, String)> {
    let fleet = Fleet::create(
        tb,
        &[("apps/web/web.container", &container("web", "web v1"))],
    )?;
    legerctl(
        tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(tb)?;
    let web = wait_running(tb, "web.service", "web")?;
    let good = fleet.head()?;
    wait_applied(tb, &good)?;
    Ok((fleet, good, web))
}

/// Asks for a pass and waits until one that started after the request has finished.
pub fn reconcile_and_wait_for_pass(tb: &Testbed) -> Result<()> {
    let last_id = |tb: &Testbed| -> Result<i64> {
        Ok(status(tb)?["status"]["lastPass"]["id"]
            .as_i64()
            .unwrap_or(0))
    };
    let before = last_id(tb)?;
    reconcile(tb)?;
    wait_until(WAIT, "a pass after the request", || {
        Ok(last_id(tb)? > before)
    })
}

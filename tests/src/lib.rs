//! leger's end-to-end test harness: boots a real systemd + D-Bus + podman machine with
//! `contrib/testbed/testbed.sh` and lets a test drive it from the host.
//!
//! Why a machine and not mocks: legerd's side effects (quadlet generation, systemd jobs,
//! podman containers) only behave truthfully on the real thing. Each [`Testbed`] is one
//! `systemd-nspawn -b` container with its own name, bus socket, quadlet dir and share dir,
//! so tests boot side by side (nextest runs at most two at a time, see
//! `.config/nextest.toml`). Dropping it saves the machine's journal under
//! `target/testbed-logs/` and takes the machine down.
//!
//! These tests need root and systemd-nspawn; [`Testbed::boot`] says so when either is missing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod fleet_net;
pub mod fleet_server;

/// Where the share dir appears inside every machine.
pub const SHARE_DIR_INSIDE: &str = "/srv/leger";

/// Where the agent dir (the built binaries) appears inside every machine, read-only.
pub const AGENT_DIR_INSIDE: &str = "/opt/leger";

/// How often [`wait_until`] polls: often enough for fast tests, rare enough not to load
/// the 2-core CI machines.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One booted test machine. Dropping it takes the machine down.
#[derive(Debug)]
pub struct Testbed {
    /// Machine name (`LEGER_TESTBED_NAME`): also the hostname inside and the log file name.
    name: String,
    /// The test bed script, so `Drop` can take down exactly this machine.
    script: PathBuf,
    /// The variables `testbed.sh up` wrote to `$RUN/env` (without `export `).
    env: BTreeMap<String, String>,
    /// PID 1 of the machine as seen from the host: `nsenter` enters its namespaces.
    leader_pid: u32,
    /// Where `Drop` saves the machine's journal.
    log_dir: PathBuf,
    /// The host side of `/srv/leger`; removed after the machine is down (field order:
    /// `Drop::drop` runs before fields are dropped).
    share_dir: tempfile::TempDir,
}

impl Testbed {
    /// Boots a machine named `name` (lower-case letters, digits, `-`; unique among the
    /// tests that may run at once) with a fresh share dir and the directory of the built
    /// binaries mounted at `/opt/leger`.
    ///
    /// A machine left over under the same name (from a test that was killed) is taken
    /// down first, so a test never inherits another run's state.
    ///
    /// `LEGER_E2E_PREFIX`, when set, is put before every machine name, so two checkouts
    /// (two developers' worktrees, or a developer and CI) can run the suite side by side
    /// on one host without taking each other's machines down.
    pub fn boot(name: &str) -> Result<Testbed> {
        Testbed::boot_suite(name, None)
    }

    /// Boots like [`Testbed::boot`], from the root filesystem of Debian `suite`
    /// (`LEGER_TESTBED_SUITE`): `Some("sid")` gives a newer podman (5.8) and systemd
    /// than trixie's 5.4.2, for tests of version-dependent behaviour. Each suite has its
    /// own cached rootfs, so flavours boot side by side. `None` is the default suite.
    pub fn boot_suite(name: &str, suite: Option<&str>) -> Result<Testbed> {
        let prefixed = format!(
            "{}{name}",
            std::env::var("LEGER_E2E_PREFIX").unwrap_or_default()
        );
        let name = prefixed.as_str();
        ensure_can_boot()?;
        let script = testbed_script()?;
        let target_profile_dir = target_profile_dir()?;
        let log_dir = target_profile_dir
            .parent()
            .map(|target| target.join("testbed-logs"))
            .unwrap_or_else(|| target_profile_dir.join("testbed-logs"));
        let share_dir = tempfile::Builder::new()
            .prefix(&format!("leger-share-{name}-"))
            .tempdir_in("/var/tmp")
            .context("cannot create a share dir under /var/tmp")?;

        // Down first: a stale machine of this name would keep its old share dir.
        let command = |arg: &str| {
            let mut c = script_command(&script, name);
            if let Some(suite) = suite {
                c.env("LEGER_TESTBED_SUITE", suite);
            }
            c.arg(arg);
            c
        };
        let down = command("down").output()?;
        if !down.status.success() {
            bail!(
                "testbed.sh down {name} (clearing a stale machine) failed: {}",
                String::from_utf8_lossy(&down.stderr).trim()
            );
        }

        let up = command("up")
            .env("LEGER_TESTBED_SHARE_DIR", share_dir.path())
            .env("LEGER_TESTBED_AGENT_DIR", &target_profile_dir)
            .output()
            .with_context(|| format!("cannot run {}", script.display()))?;
        if !up.status.success() {
            bail!(
                "testbed.sh up {name} failed ({}):\n{}",
                up.status,
                String::from_utf8_lossy(&up.stderr).trim()
            );
        }

        let env_file = testbed_dir().join(format!("run-{name}")).join("env");
        let env = read_env_file(&env_file)?;
        let leader_pid = env
            .get("LEGER_TESTBED_LEADER_PID")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("{}: no LEGER_TESTBED_LEADER_PID", env_file.display()))?;
        Ok(Testbed {
            name: name.to_owned(),
            script,
            env,
            leader_pid,
            log_dir,
            share_dir,
        })
    }

    /// PID 1 of the machine as the host sees it, e.g. to move a veth into its network
    /// namespace.
    pub fn leader_pid(&self) -> u32 {
        self.leader_pid
    }

    /// The machine name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The machine's system bus as a D-Bus address usable from the host
    /// (`unix:path=…/bus/system_bus_socket`).
    pub fn bus_address(&self) -> &str {
        self.env_var("LEGER_TESTBED_BUS_ADDRESS")
    }

    /// The host side of `/etc/containers/systemd` inside: write quadlets here.
    pub fn quadlet_dir_host(&self) -> PathBuf {
        PathBuf::from(self.env_var("LEGER_TESTBED_QUADLET_DIR"))
    }

    /// The host side of [`Testbed::share_dir_inside`]: bare git repos and app dirs go here.
    pub fn share_dir_host(&self) -> &Path {
        self.share_dir.path()
    }

    /// Where the share dir appears inside the machine.
    pub fn share_dir_inside(&self) -> &'static str {
        SHARE_DIR_INSIDE
    }

    /// Any variable of the env file `testbed.sh up` wrote, or "" when it is missing.
    pub fn env_var(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or("")
    }

    /// Runs `args` inside the machine (all its namespaces, a clean environment, as root),
    /// like `testbed.sh exec`. Fails only when the command cannot be started.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        let Some((program, rest)) = args.split_first() else {
            bail!("Testbed::exec needs a command");
        };
        Command::new("nsenter")
            .args(["-t", &self.leader_pid.to_string(), "-a", "-r", "-w"])
            .args([
                "env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "TERM=dumb",
                "LANG=C.UTF-8",
            ])
            .arg(program)
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot nsenter into {} to run {args:?}", self.name))
    }

    /// Runs `args` inside and returns its stdout; a non-zero exit is an error that carries
    /// stderr.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.exec(args)?;
        if !out.status.success() {
            bail!(
                "{args:?} in {} failed ({}): {}{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        String::from_utf8(out.stdout).with_context(|| format!("{args:?}: stdout is not UTF-8"))
    }

    /// Starts `command` as a transient system service `unit` inside the machine
    /// (`systemd-run --unit`), with `env` set. Long-running processes such as legerd must
    /// run under the machine's systemd, not under `nsenter`: they then live in a unit's
    /// cgroup, log to its journal and stop with the machine.
    pub fn run_service(&self, unit: &str, env: &[(&str, &str)], command: &[&str]) -> Result<()> {
        let mut args: Vec<String> = vec![
            "systemd-run".into(),
            format!("--unit={unit}"),
            "--property=Type=exec".into(),
            "--collect".into(),
            "--quiet".into(),
        ];
        args.extend(env.iter().map(|(k, v)| format!("--setenv={k}={v}")));
        args.push("--".into());
        args.extend(command.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.exec_ok(&args).map(drop)
    }

    /// The journal of the current boot inside the machine.
    pub fn logs(&self) -> Result<String> {
        self.exec_ok(&["journalctl", "-b", "--no-pager", "-o", "short-precise"])
    }

    /// The journal of one unit inside the machine.
    pub fn unit_logs(&self, unit: &str) -> Result<String> {
        self.exec_ok(&["journalctl", "-b", "--no-pager", "-o", "cat", "-u", unit])
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let log_file = self.log_dir.join(format!("{}.log", self.name));
        match self.logs() {
            Ok(journal) => {
                let saved =
                    fs::create_dir_all(&self.log_dir).and_then(|()| fs::write(&log_file, journal));
                if let Err(e) = saved {
                    eprintln!(
                        "testbed {}: cannot save journal to {}: {e}",
                        self.name,
                        log_file.display()
                    );
                }
            }
            Err(e) => eprintln!("testbed {}: cannot read journal: {e:#}", self.name),
        }
        match script_command(&self.script, &self.name)
            .arg("down")
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "testbed {}: down failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("testbed {}: cannot run testbed.sh down: {e}", self.name),
        }
    }
}

/// Polls `check` until it returns `Ok(true)`, for at most `timeout`. On timeout the error
/// names `what` and the last error `check` returned, so a failing test says what it was
/// waiting for. `check` errors count as "not yet": state is often briefly unreadable.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() >= timeout {
            return Err(timed_out(timeout, what, last_error));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// [`wait_until`] for async checks (zbus calls), without blocking the runtime.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let start = Instant::now();
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if start.elapsed() >= timeout {
            return Err(timed_out(timeout, what, last_error));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn timed_out(timeout: Duration, what: &str, last_error: Option<anyhow::Error>) -> anyhow::Error {
    match last_error {
        Some(e) => {
            anyhow::anyhow!("timed out after {timeout:?} waiting for {what} (last error: {e:#})")
        }
        None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Fails with instructions when this process cannot boot a machine.
fn ensure_can_boot() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!(
            "these tests boot a systemd-nspawn machine and need root: run them with \
             `sudo -E cargo nextest run ...` or through `.ci/run`"
        );
    }
    Ok(())
}

/// `contrib/testbed/testbed.sh` of this checkout, or `LEGER_TESTBED_SCRIPT`.
fn testbed_script() -> Result<PathBuf> {
    let script = match std::env::var_os("LEGER_TESTBED_SCRIPT") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/testbed/testbed.sh"),
    };
    if !script.is_file() {
        bail!(
            "test bed script {} not found: set LEGER_TESTBED_SCRIPT",
            script.display()
        );
    }
    Ok(script)
}

/// The cache and state dir the script uses.
fn testbed_dir() -> PathBuf {
    std::env::var_os("LEGER_TESTBED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/leger-testbed"))
}

/// `target/<profile>/`: the test binary runs from `target/<profile>/deps/`, and the
/// binaries the tests drive (legerd, legerctl) sit one level up.
fn target_profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the test binary's path")?;
    let deps = exe
        .parent()
        .with_context(|| format!("{} has no parent dir", exe.display()))?;
    let profile = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().unwrap_or(deps)
    } else {
        deps
    };
    Ok(profile.to_path_buf())
}

fn script_command(script: &Path, name: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .env("LEGER_TESTBED_NAME", name)
        .stdin(Stdio::null());
    cmd
}

/// Parses the `export KEY=value` lines `testbed.sh` writes.
fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the test bed env file {}", path.display()))?;
    Ok(parse_env(&text))
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_env_reads_exports() {
        let env = parse_env(
            "export LEGER_TESTBED_NAME=tb1\nexport LEGER_TESTBED_BUS_ADDRESS=unix:path=/x/bus\n\
             export LEGER_TESTBED_AGENT_DIR=\nnot an export\n",
        );
        assert_eq!(env["LEGER_TESTBED_NAME"], "tb1");
        assert_eq!(env["LEGER_TESTBED_BUS_ADDRESS"], "unix:path=/x/bus");
        assert_eq!(env["LEGER_TESTBED_AGENT_DIR"], "");
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn wait_until_reports_what_on_timeout() {
        let err = wait_until(Duration::from_millis(250), "the moon", || {
            anyhow::bail!("not risen")
        })
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("the moon"), "{msg}");
        assert!(msg.contains("not risen"), "{msg}");
    }

    #[test]
    fn wait_until_returns_once_true() {
        let mut calls = 0;
        wait_until(Duration::from_secs(10), "third call", || {
            calls += 1;
            Ok(calls == 3)
        })
        .unwrap();
        assert_eq!(calls, 3);
    }
}

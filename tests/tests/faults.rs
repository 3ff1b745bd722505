//! Faults of unattended operation, end to end: a podman, a quadlet generator or a git
//! that hangs; a pass that outlives its budget; `systemctl daemon-reexec`; a restart of
//! the bus; a bus that is gone for good.
//!
//! The hangs are real programs: wrapper scripts placed in the machine in front of the
//! real ones (`/usr/local/bin` comes first on a service's PATH; the generator is named
//! in legerd's config). Each waits while a flag file exists, ignoring SIGTERM, then
//! runs the real program, so removing the flag is "the command answers again".

mod common;

use std::time::Duration;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};

/// Where the flag files live inside the machine.
const FLAGS: &str = "/run/leger-e2e";

/// Puts a wrapper at `path` that hangs (ignoring SIGTERM) while `FLAGS/<flag>` exists,
/// then runs `real`.
fn install_hanging_wrapper(tb: &Testbed, path: &str, flag: &str, real: &str) -> Result<()> {
    let script = format!(
        "#!/bin/sh\n# leger e2e: hangs while {FLAGS}/{flag} exists, then runs {real}.\n\
         trap '' TERM\nwhile [ -e {FLAGS}/{flag} ]; do sleep 0.2; done\nexec {real} \"$@\"\n"
    );
    write_inside(tb, path, &script, 0o755)
}

fn hang(tb: &Testbed, flag: &str) -> Result<()> {
    tb.exec_ok(&["mkdir", "-p", FLAGS])?;
    tb.exec_ok(&["touch", &format!("{FLAGS}/{flag}")]).map(drop)
}

fn answer_again(tb: &Testbed, flag: &str) -> Result<()> {
    tb.exec_ok(&["rm", "-f", &format!("{FLAGS}/{flag}")])
        .map(drop)
}

/// Extra legerd config, applied over the e2e defaults of `start_legerd`.
fn configure(tb: &Testbed, toml: &str) -> Result<()> {
    write_inside(tb, "/etc/leger/config.d/60-faults.toml", toml, 0o644)
}

/// The command lines of every process inside the machine that runs `needle`.
fn processes_running(tb: &Testbed, needle: &str) -> Result<Vec<String>> {
    let all = tb.exec_ok(&[
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done",
    ])?;
    Ok(all
        .lines()
        .filter(|l| l.contains(needle) && !l.contains("/proc/[0-9]"))
        .map(str::to_owned)
        .collect())
}

/// Waits until the Ready condition has `reason` and a message containing every needle;
/// returns the message.
fn wait_ready_reason(tb: &Testbed, reason: &str, needles: &[&str]) -> Result<String> {
    let mut seen = String::new();
    wait_until(
        WAIT,
        &format!("Ready reason {reason} naming {needles:?}"),
        || {
            let doc = status(tb)?;
            let Some((_, r, m)) = condition(&doc, "Ready") else {
                return Ok(false);
            };
            let hit = r == reason && needles.iter().all(|n| m.contains(n));
            if hit {
                seen = m;
            }
            Ok(hit)
        },
    )?;
    Ok(seen)
}

/// `web` consuming the local secret `tok`, so every pass lists podman's secrets.
fn web_with_secret(word: &str) -> String {
    format!("{}Secret=tok,type=env,target=TOK\n", container("web", word))
}

/// A podman and a generator that hang are killed at their time limit; status names the
/// command; the revision is not rejected; once the command answers again the host
/// converges by itself.
#[test]
fn hung_podman_and_generator_are_killed_named_and_recovered() -> Result<()> {
    let tb = Testbed::boot("e2e-hang")?;
    install_hanging_wrapper(&tb, "/usr/local/bin/podman", "podman", "/usr/bin/podman")?;
    install_hanging_wrapper(
        &tb,
        "/usr/local/libexec/leger-e2e-quadlet",
        "generator",
        "/usr/libexec/podman/quadlet",
    )?;
    configure(
        &tb,
        "[reconcile]\ncommand_timeout = \"4s\"\n\
         [quadlet]\ngenerator = \"/usr/local/libexec/leger-e2e-quadlet\"\ngenerator_timeout = \"4s\"\n",
    )?;
    let fleet = Fleet::create(&tb, &[("apps/web/web.container", &web_with_secret("v1"))])?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    tb.exec_ok(&[
        "sh",
        "-c",
        "printf %s e2e-token | /opt/leger/legerctl secrets set tok",
    ])?;
    wait_running(&tb, "web.service", "web")?;
    let v1 = fleet.head()?;
    wait_applied(&tb, &v1)?;

    // The generator hangs: the dry run is killed, the pass fails as
    // ValidatorUnavailable naming the generator, and v2 is not rejected.
    hang(&tb, "generator")?;
    let v2 = fleet.commit(
        &[("apps/web/web.container", &web_with_secret("v2"))],
        &[],
        "v2",
    )?;
    reconcile(&tb)?;
    let msg = wait_ready_reason(
        &tb,
        "ValidatorUnavailable",
        &["leger-e2e-quadlet", "did not finish within 4s"],
    )?;
    assert!(msg.contains("was killed"), "{msg}");
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v1.as_str()));
    wait_until(WAIT, "the hung generator is gone", || {
        Ok(processes_running(&tb, "leger-e2e-quadlet")?.is_empty())
    })?;
    answer_again(&tb, "generator")?;
    // No new commit, no operator: the retry after backoff applies v2.
    wait_applied(&tb, &v2)?;

    // podman hangs: `podman secret ls` is killed, the pass fails naming it.
    hang(&tb, "podman")?;
    let v3 = fleet.commit(
        &[("apps/web/web.container", &web_with_secret("v3"))],
        &[],
        "v3",
    )?;
    reconcile(&tb)?;
    let msg = wait_ready_reason(
        &tb,
        "SecretsFailed",
        &["podman secret ls", "did not finish within 4s"],
    )?;
    assert!(!msg.contains("e2e-token"), "{msg}");
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v2.as_str()));
    wait_until(WAIT, "the hung podman wrapper is killed", || {
        Ok(processes_running(&tb, "/usr/local/bin/podman")?.is_empty())
    })?;
    answer_again(&tb, "podman")?;
    wait_applied(&tb, &v3)?;
    wait_running(&tb, "web.service", "web")?;
    Ok(())
}

/// A pass stuck where nothing of its own times out (a local git fetch runs
/// `git-upload-pack`) is abandoned at `reconcile.pass_timeout`; meanwhile status keeps
/// answering and says what the pass waits on; afterwards status names it; convergence
/// resumes once git answers.
#[test]
fn pass_over_budget_is_abandoned_naming_what_it_waited_on() -> Result<()> {
    let tb = Testbed::boot("e2e-budget")?;
    install_hanging_wrapper(
        &tb,
        "/usr/local/bin/git-upload-pack",
        "git",
        "/usr/bin/git-upload-pack",
    )?;
    configure(
        &tb,
        "[reconcile]\npass_timeout = \"20s\"\ncommand_timeout = \"5s\"\n\
         [systemd]\njob_timeout = \"10s\"\ncall_timeout = \"5s\"\n\
         [quadlet]\ngenerator_timeout = \"5s\"\n\
         [health]\ntimeout = \"8s\"\nsettle = \"1s\"\n",
    )?;
    let (fleet, v1, _) = web_converged(&tb)?;

    hang(&tb, "git")?;
    let v2 = fleet.commit(
        &[("apps/web/web.container", &container("web", "web v2"))],
        &[],
        "v2",
    )?;
    // A new commit on history legerd has cached is copied in process, without
    // upload-pack; a source it never fetched is fetched by upload-pack. The same
    // repository under its `file://` url is such a source: its fetch hangs.
    legerctl(
        &tb,
        &[
            "set-desired",
            "git",
            &format!("file://{}", fleet.url_inside()),
            "--path",
            "apps",
        ],
    )?;
    reconcile(&tb)?;
    // While the pass hangs, `legerctl status` answers and says what it waits on.
    wait_until(WAIT, "Reconciling names the stuck fetch", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Reconciling")
            .is_some_and(|(s, _, m)| s == "True" && m.contains("fetch of the git source")))
    })?;
    // And so does `systemctl status legerd`.
    wait_until(WAIT, "STATUS= names the stuck fetch", || {
        Ok(tb
            .exec_ok(&["systemctl", "show", "-P", "StatusText", "legerd.service"])?
            .contains("waiting on fetch of the git source"))
    })?;
    let msg = wait_ready_reason(
        &tb,
        "PassTimedOut",
        &["reconcile.pass_timeout", "fetch of the git source"],
    )?;
    assert!(msg.contains("abandoned after 20s"), "{msg}");
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v1.as_str()));
    let history = legerctl(&tb, &["history", "--json"])?;
    assert!(history.contains("fetch of the git source"), "{history}");
    // An abandoned fetch's upload-pack does not hang on for good (it traps SIGTERM):
    // the retry's fetch kills it (SIGKILL) before it starts its own, so hung
    // upload-packs do not pile up, one per retry, each holding a thread of legerd.
    wait_until(Duration::from_secs(180), "a second pass abandoned", || {
        let doc: serde_json::Value = serde_json::from_str(&legerctl(&tb, &["history", "--json"])?)?;
        let timed_out: u64 = doc
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("abandoned after"))
            })
            .map(|p| p["runs"].as_u64().unwrap_or(1))
            .sum();
        Ok(timed_out >= 2)
    })?;
    let hung = processes_running(&tb, "upload-pack")?;
    assert!(hung.len() <= 1, "one hung upload-pack at most: {hung:#?}");

    answer_again(&tb, "git")?;
    wait_applied(&tb, &v2)?;
    wait_running(&tb, "web.service", "web")?;
    Ok(())
}

/// legerd's main PID, to tell "survived" from "was restarted".
fn legerd_pid(tb: &Testbed) -> Result<String> {
    Ok(tb
        .exec_ok(&["systemctl", "show", "-P", "MainPID", "legerd.service"])?
        .trim()
        .to_owned())
}

/// After a daemon-reexec and after a restart of the bus, the same legerd process still
/// applies a new revision and still hears a unit stop (the poll interval is an hour, so
/// only the re-subscribed unit events can bring the unit back in time).
#[test]
fn dbus_reexec_and_bus_restart_are_survived() -> Result<()> {
    let tb = Testbed::boot("e2e-dbus")?;
    let fleet = Fleet::create(
        &tb,
        &[("apps/web/web.container", &container("web", "web v1"))],
    )?;
    legerctl(
        &tb,
        &[
            "set-desired",
            "git",
            &fleet.url_inside(),
            "--path",
            "apps",
            "--interval",
            "1h",
        ],
    )?;
    start_legerd(&tb)?;
    wait_running(&tb, "web.service", "web")?;
    wait_applied(&tb, &fleet.head()?)?;
    let pid = legerd_pid(&tb)?;

    let mut version = 1;
    for (what, disrupt) in [
        ("daemon-reexec", &["systemctl", "daemon-reexec"][..]),
        ("bus restart", &["systemctl", "restart", "dbus.service"][..]),
    ] {
        let before = tb
            .unit_logs("legerd.service")?
            .matches("subscribing again")
            .count()
            + tb.unit_logs("legerd.service")?
                .matches("subscribed to systemd again")
                .count();
        tb.exec_ok(disrupt)?;
        if what == "bus restart" {
            wait_until(WAIT, "legerd reconnected to the bus", || {
                let logs = tb.unit_logs("legerd.service")?;
                Ok(logs.matches("subscribed to systemd again").count()
                    + logs.matches("subscribing again").count()
                    > before)
            })?;
        }
        version += 1;
        let rev = fleet.commit(
            &[(
                "apps/web/web.container",
                &container("web", &format!("web v{version}")),
            )],
            &[],
            what,
        )?;
        // The first pass after a disruption may still meet the old connection; the
        // retry after backoff uses the new one. No operator help beyond one request.
        reconcile(&tb)?;
        wait_applied(&tb, &rev)?;
        wait_running(&tb, "web.service", "web")?;

        // A unit stopped by hand comes back through the re-subscribed unit events.
        tb.exec_ok(&["systemctl", "stop", "web.service"])?;
        wait_running(&tb, "web.service", "web")?;
        assert_eq!(legerd_pid(&tb)?, pid, "legerd was restarted by the {what}");
    }
    Ok(())
}

/// A bus that stays away longer than `systemd.bus_give_up` makes legerd exit non-zero,
/// so systemd's `Restart=on-failure` applies.
#[test]
fn bus_gone_for_good_makes_legerd_exit_non_zero() -> Result<()> {
    let tb = Testbed::boot("e2e-busgone")?;
    configure(&tb, "[systemd]\nbus_give_up = \"3s\"\n")?;
    web_converged(&tb)?;
    tb.exec_ok(&["systemctl", "stop", "dbus.socket", "dbus.service"])?;
    wait_until(WAIT, "legerd gave up on the bus and exited 1", || {
        let logs = tb.exec_ok(&[
            "journalctl",
            "-b",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "legerd.service",
        ])?;
        Ok(logs.contains("could not reconnect for") && logs.contains("status=1/FAILURE"))
    })?;
    Ok(())
}

/// A legerd whose pass is wedged where the pass budget cannot reach it (a thread
/// blocked inside the pass, made with the test-only `LEGERD_WEDGE_AT`) stops pinging
/// the watchdog, and systemd restarts it.
#[test]
fn wedged_legerd_is_restarted_by_the_watchdog() -> Result<()> {
    let tb = Testbed::boot("e2e-watchdog")?;
    let (fleet, _, _) = web_converged(&tb)?;
    configure(
        &tb,
        "[reconcile]\npass_timeout = \"20s\"\ncommand_timeout = \"5s\"\n\
         [systemd]\njob_timeout = \"10s\"\ncall_timeout = \"5s\"\n\
         [quadlet]\ngenerator_timeout = \"5s\"\n\
         [health]\ntimeout = \"8s\"\nsettle = \"1s\"\n",
    )?;
    write_inside(
        &tb,
        "/etc/systemd/system/legerd.service.d/60-wedge.conf",
        "[Service]\nEnvironment=LEGERD_WEDGE_AT=after-write\nWatchdogSec=10s\n",
        0o644,
    )?;
    tb.exec_ok(&["systemctl", "daemon-reload"])?;
    // Nothing to write at start: the first pass completes and READY=1 arms the watchdog.
    tb.exec_ok(&["systemctl", "restart", "legerd.service"])?;
    let pid = legerd_pid(&tb)?;
    fleet.commit(
        &[("apps/web/web.container", &container("web", "web v2"))],
        &[],
        "v2",
    )?;
    reconcile(&tb)?;
    // Budget 20 s + 30 s slack, then up to WatchdogSec: about a minute.
    wait_until(
        std::time::Duration::from_secs(240),
        "systemd's watchdog restarts legerd",
        || {
            let logs = tb.unit_logs("legerd.service")?;
            let restarts: u32 = tb
                .exec_ok(&["systemctl", "show", "-P", "NRestarts", "legerd.service"])?
                .trim()
                .parse()
                .unwrap_or(0);
            Ok(logs.contains("Watchdog timeout") && restarts >= 1)
        },
    )?;
    let logs = tb.unit_logs("legerd.service")?;
    assert!(
        logs.contains("no longer pinging the watchdog"),
        "legerd did not say why it stopped pinging:\n{logs}"
    );
    assert_ne!(legerd_pid(&tb)?, pid);
    Ok(())
}

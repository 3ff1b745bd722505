//! The command runner against real child processes: output, exit codes, stdin, and the
//! kill on timeout of a program that ignores SIGTERM and of what it forked.

use std::path::Path;
use std::time::{Duration, Instant};

use legerd::command::{CommandError, CommandLine, Runner};

/// Long enough that a loaded 2-core machine never hits it by accident; the tests that
/// want a timeout use a command that would run for an hour.
const GENEROUS: Duration = Duration::from_secs(60);

fn sh(script: &str) -> CommandLine {
    CommandLine::new("/bin/sh").args(["-c", script])
}

/// True while a process with this pid exists (and is not a zombie we own).
fn alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

/// Waits (generously) until `pid` is gone.
fn gone_within(pid: &str, limit: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[tokio::test]
async fn runner_collects_output_and_exit_status() {
    let out = Runner::new(GENEROUS)
        .run(&sh("echo out; echo err >&2; exit 3"), None)
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr_summary(), "err");
}

#[tokio::test]
async fn runner_feeds_stdin() {
    let out = Runner::new(GENEROUS)
        .run(&CommandLine::new("cat"), Some(b"value on stdin"))
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"value on stdin");
}

#[tokio::test]
async fn runner_passes_the_environment() {
    let out = Runner::new(GENEROUS)
        .run(
            &sh("echo $LEGER_TEST_VAR").env("LEGER_TEST_VAR", "set"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "set\n");
}

#[tokio::test]
async fn runner_reports_a_missing_program() {
    let e = Runner::new(GENEROUS)
        .run(&CommandLine::new("/nonexistent/podman").arg("ps"), None)
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("/nonexistent/podman ps"), "{e}");
}

#[tokio::test]
async fn runner_kills_a_sleep_that_outlives_its_timeout() {
    let cmd = CommandLine::new("sleep").arg("3600");
    let e = Runner::new(Duration::from_millis(300))
        .run(&cmd, None)
        .await
        .unwrap_err();
    assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("`sleep 3600` did not finish within 300ms"),
        "{text}"
    );
}

/// A wrapper that ignores SIGTERM and forks a child that does too: the runner must
/// escalate to SIGKILL and take the whole process group.
#[tokio::test]
async fn runner_kills_a_process_group_that_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "trap '' TERM; sleep 3600 & echo $$ $! > {}; wait",
        pids.display()
    );
    let e = Runner::new(Duration::from_millis(500))
        .with_kill_grace(Duration::from_millis(200))
        .run(&sh(&script), None)
        .await
        .unwrap_err();
    assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
    let text = std::fs::read_to_string(&pids).unwrap();
    for pid in text.split_whitespace() {
        assert!(
            gone_within(pid, GENEROUS),
            "process {pid} survived the timeout"
        );
    }
}

/// Dropping the future (a pass abandoned over its budget) kills the command too.
#[tokio::test]
async fn runner_kills_the_command_when_the_future_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 3600", pid_file.display());
    let cmd = sh(&script);
    let runner = Runner::new(GENEROUS);
    let run = runner.run(&cmd, None);
    let waited = tokio::time::timeout(Duration::from_secs(600), async {
        tokio::pin!(run);
        loop {
            tokio::select! {
                _ = &mut run => panic!("sleep 3600 finished"),
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if pid_file.exists() && !std::fs::read_to_string(&pid_file).unwrap().is_empty() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "the script never started");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        gone_within(&pid, GENEROUS),
        "process {pid} outlived the dropped future"
    );
}

#[test]
fn runner_blocking_collects_output() {
    let out = Runner::new(GENEROUS)
        .run_blocking(&sh("echo hi; echo there >&2"))
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout_text(), "hi\n");
    assert_eq!(out.stderr_summary(), "there");
}

#[test]
fn runner_blocking_kills_a_process_group_that_ignores_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = format!(
        "trap '' TERM; sleep 3600 & echo $$ $! > {}; wait",
        pids.display()
    );
    let e = Runner::new(Duration::from_millis(500))
        .with_kill_grace(Duration::from_millis(200))
        .run_blocking(&sh(&script))
        .unwrap_err();
    assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
    for pid in std::fs::read_to_string(&pids).unwrap().split_whitespace() {
        assert!(gone_within(pid, GENEROUS), "process {pid} survived");
    }
}

/// A program that exits but leaves a helper holding its stdout open: the runner must
/// not wait for the pipe forever.
#[test]
fn runner_blocking_does_not_wait_on_a_helper_holding_the_pipe() {
    let e = Runner::new(Duration::from_millis(500))
        .with_kill_grace(Duration::from_millis(200))
        .run_blocking(&sh("sleep 3600 & exit 0"))
        .unwrap_err();
    assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
}

#[test]
fn runner_blocking_reports_a_missing_program() {
    let e = Runner::new(GENEROUS)
        .run_blocking(&CommandLine::new(Path::new("/nonexistent/quadlet")))
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

/// While a command runs it is listed as in flight, by its command line.
#[tokio::test]
async fn runner_registers_the_running_command() {
    let cmd = CommandLine::new("sleep").arg("3599.5");
    let runner = Runner::new(Duration::from_millis(1500));
    let run = runner.run(&cmd, None);
    tokio::pin!(run);
    let seen = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            if legerd::activity::all()
                .iter()
                .any(|o| o.label == "`sleep 3599.5`")
            {
                return;
            }
            tokio::select! {
                r = &mut run => panic!("finished early: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    })
    .await;
    assert!(seen.is_ok());
    let _ = run.await;
    assert!(
        !legerd::activity::all()
            .iter()
            .any(|o| o.label == "`sleep 3599.5`")
    );
}

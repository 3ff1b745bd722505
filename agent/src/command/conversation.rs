//! A command that legerd talks to while it runs, such as `ssh` carrying git's
//! protocol: its stdin and stdout belong to the caller, and a watchdog thread holds
//! the time limit.
//!
//! Why a watchdog and not [`Runner::run_blocking`]: the caller is blocked inside
//! someone else's code (gix reading a pack from the pipe), so nothing on its thread
//! can notice the deadline. The watchdog kills the command's process group when the
//! limit passes; the pipe then ends and the caller's read returns an error. It is the
//! same limit and the same kill (SIGTERM, then SIGKILL after the grace) as every other
//! command legerd runs.
//!
//! The watchdog owns the child and is the only one to reap it, so it never signals a
//! process group whose id could already belong to someone else.

use std::io::{self, Read};
use std::process::{Child, ChildStdin, ChildStdout, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{CommandError, CommandLine, GroupKiller, Runner, wait_until};
use crate::activity;

/// How much of the end of stderr a conversation keeps: enough for ssh's messages,
/// bounded whatever the other side sends.
const STDERR_KEPT: usize = 16 * 1024;

/// A running command with piped stdin and stdout; see the module doc.
///
/// Dropping it without [`finish`](Self::finish) still stops the command: the watchdog
/// gives it the grace to exit, then kills its process group.
#[derive(Debug)]
pub struct Conversation {
    /// The command's stdin, for the caller to take.
    pub stdin: Option<ChildStdin>,
    /// The command's stdout, for the caller to take.
    pub stdout: Option<ChildStdout>,
    /// Told when the caller is done; dropping it tells the same.
    done: Option<mpsc::Sender<()>>,
    /// The thread that waits for the command and kills it at the deadline.
    watchdog: Option<JoinHandle<Watched>>,
    /// The end of stderr, once the pipe closes.
    stderr: mpsc::Receiver<Vec<u8>>,
    /// The command line and its limit, for [`CommandError::TimedOut`].
    command: String,
    timeout: Duration,
    kill_grace: Duration,
    /// Names the command while it runs, for a pass abandoned over its budget.
    _op: activity::Guard,
}

/// How a conversation ended.
#[derive(Debug)]
pub struct Ended {
    /// The exit status; `None` if the command could not be reaped even after SIGKILL.
    pub status: Option<ExitStatus>,
    /// The end of what it wrote to stderr (at most 16 KiB).
    pub stderr: Vec<u8>,
    /// Set when the time limit passed and the command was killed.
    pub timed_out: Option<CommandError>,
}

impl Ended {
    /// stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// What the watchdog saw.
#[derive(Debug)]
struct Watched {
    status: Option<ExitStatus>,
    timed_out: bool,
}

impl Runner {
    /// Starts `cmd` with stdin and stdout piped to the caller and stderr kept, killed
    /// (with its process group) when this runner's timeout passes.
    pub fn converse(&self, cmd: &CommandLine) -> Result<Conversation, CommandError> {
        let command = cmd.display();
        let op = activity::begin(format!("`{command}`"));
        let mut std_cmd = cmd.std_command();
        std_cmd.stdin(Stdio::piped());
        let mut child = std_cmd.spawn().map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = read_tail_in_thread(child.stderr.take().expect("stderr is piped"));
        let (done, done_rx) = mpsc::channel();
        let deadline = Instant::now() + self.timeout;
        let grace = self.kill_grace;
        let watchdog = std::thread::Builder::new()
            .name("command watchdog".into())
            .spawn(move || watch(child, deadline, grace, &done_rx))
            .map_err(|source| CommandError::Io {
                command: command.clone(),
                source,
            })?;
        Ok(Conversation {
            stdin,
            stdout,
            done: Some(done),
            watchdog: Some(watchdog),
            stderr,
            command,
            timeout: self.timeout,
            kill_grace: self.kill_grace,
            _op: op,
        })
    }
}

impl Conversation {
    /// Closes the pipes, waits for the command to exit (within the grace; it is killed
    /// after it) and returns its status and the end of its stderr.
    pub fn finish(mut self) -> Ended {
        self.stdin = None;
        self.stdout = None;
        self.done.take();
        let watched = self
            .watchdog
            .take()
            .and_then(|w| w.join().ok())
            .unwrap_or(Watched {
                status: None,
                timed_out: false,
            });
        let stderr = self
            .stderr
            .recv_timeout(self.kill_grace)
            .unwrap_or_default();
        if watched.timed_out {
            tracing::warn!(command = %self.command, timeout_ms = self.timeout.as_millis() as u64, "command timed out; killed");
        }
        Ended {
            status: watched.status,
            stderr,
            timed_out: watched.timed_out.then(|| CommandError::TimedOut {
                command: self.command.clone(),
                timeout: self.timeout,
            }),
        }
    }
}

/// Waits for `child` until the caller is done or `deadline` passes. Done: the command
/// gets `grace` to exit by itself. Deadline: it is stopped at once. Either way a
/// command still running is terminated, then killed, with its process group.
fn watch(
    mut child: Child,
    deadline: Instant,
    grace: Duration,
    done: &mpsc::Receiver<()>,
) -> Watched {
    let mut group = GroupKiller::new(Some(child.id()));
    let mut pause = Duration::from_millis(1);
    let timed_out = loop {
        if let Ok(Some(status)) = child.try_wait() {
            group.disarm();
            return Watched {
                status: Some(status),
                timed_out: false,
            };
        }
        let now = Instant::now();
        if now >= deadline {
            break true;
        }
        match done.recv_timeout(pause.min(deadline - now)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break false,
            Err(RecvTimeoutError::Timeout) => pause = (pause * 2).min(Duration::from_millis(50)),
        }
    };
    if !timed_out && let Some(Ok(status)) = wait_until(&mut child, Instant::now() + grace) {
        group.disarm();
        return Watched {
            status: Some(status),
            timed_out: false,
        };
    }
    group.terminate();
    let mut status = wait_until(&mut child, Instant::now() + grace);
    if status.is_none() {
        group.kill();
        // Bounded too: a process stuck in the kernel (D state) cannot die yet.
        status = wait_until(&mut child, Instant::now() + grace);
    }
    group.kill();
    let status = status.and_then(io::Result::ok);
    if status.is_some() {
        group.disarm();
    }
    Watched { status, timed_out }
}

/// Reads a pipe to its end on a thread, keeping its last [`STDERR_KEPT`] bytes.
fn read_tail_in_thread(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > STDERR_KEPT {
                        kept.drain(..kept.len() - STDERR_KEPT);
                    }
                }
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn conversation_passes_pipes_and_keeps_stderr() {
        let runner = Runner::new(Duration::from_secs(60));
        let mut c = runner
            .converse(
                &CommandLine::new("sh").args(["-c", "read x; echo \"got $x\"; echo oops >&2"]),
            )
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        writeln!(stdin, "hello").unwrap();
        drop(stdin);
        let mut out = String::new();
        c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "got hello\n");
        let ended = c.finish();
        assert!(ended.status.unwrap().success());
        assert_eq!(ended.stderr_text(), "oops\n");
        assert!(ended.timed_out.is_none());
    }

    #[test]
    fn conversation_past_its_limit_is_killed_and_the_read_ends() {
        let runner =
            Runner::new(Duration::from_millis(300)).with_kill_grace(Duration::from_millis(200));
        // The shell forks `sleep`, which holds stdout: only a group kill ends the read.
        let mut c = runner
            .converse(&CommandLine::new("sh").args(["-c", "trap '' TERM; sleep 600; true"]))
            .unwrap();
        let mut out = Vec::new();
        c.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        let ended = c.finish();
        let e = ended.timed_out.expect("timed out");
        assert!(e.to_string().contains("was killed"), "{e}");
        assert!(!ended.status.unwrap().success());
    }
}

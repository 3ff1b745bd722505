//! The one way legerd runs an external program (podman, journalctl, the quadlet
//! generator): with a time limit, in its own process group, and killed when the limit
//! passes.
//!
//! An unattended agent must never wait forever. A `podman` stuck on a storage lock or a
//! generator that hangs would otherwise hold the pass, and every pass after it, for
//! good. So every command gets a deadline; when it passes the whole process group gets
//! SIGTERM, then SIGKILL after a short grace (a program that ignores SIGTERM still
//! goes), and the caller gets [`CommandError::TimedOut`] naming the command line.
//!
//! **Why a process group:** podman forks helpers (conmon, storage mounts) and a shell
//! wrapper forks its payload; killing only the direct child would leave them holding
//! our pipes, and reading the pipes to the end would block again.
//!
//! Each running command is registered in [`crate::activity`], so a pass abandoned over
//! its budget can say which command it was stuck in.
//!
//! The command line shown in errors is the program and its arguments; legerd never puts
//! a secret on a command line (values go on stdin), so it is safe to show.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::activity;

mod conversation;
pub use conversation::{Conversation, Ended};

/// How long a timed-out command gets between SIGTERM and SIGKILL: long enough for
/// podman to release a lock, short enough not to matter next to the timeout itself.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// A program and its arguments and environment; what [`Runner`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl CommandLine {
    /// `program` (a path, or a name looked up on `PATH`) with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        CommandLine {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child (the rest is inherited).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments, in order.
    pub fn arguments(&self) -> &[OsString] {
        &self.args
    }

    /// The environment variables set for the child, in order.
    pub fn environment(&self) -> &[(OsString, OsString)] {
        &self.env
    }

    /// The command line for people: `podman volume export db --output /x`.
    pub fn display(&self) -> String {
        let mut out = self.program.display().to_string();
        for a in &self.args {
            out.push(' ');
            out.push_str(&a.to_string_lossy());
        }
        out
    }

    fn std_command(&self) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(&self.program);
        c.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout can kill everything it forked.
            .process_group(0);
        c
    }
}

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit status (a non-zero exit is not an error here; callers decide).
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The end of stderr, trimmed and bounded, for an error message.
    pub fn stderr_summary(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let text = text.trim();
        let mut cut = text.len().saturating_sub(500);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text[cut..].to_owned()
    }
}

/// Why a command did not produce an [`Output`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started (missing, not executable).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// What the OS said; `NotFound` for a missing program.
        #[source]
        source: io::Error,
    },
    /// The program ran past its time limit and was killed (SIGTERM, then SIGKILL).
    #[error(
        "`{command}` did not finish within {} and was killed; check what it waits on (a lock, storage, the network), or raise the timeout in legerd's config",
        humantime::format_duration(*timeout)
    )]
    TimedOut {
        /// The command line.
        command: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// Talking to the running program failed (its pipes, waiting for it).
    #[error("`{command}`: {source}")]
    Io {
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl CommandError {
    /// True when the program does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CommandError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Runs commands with a time limit. Cheap to copy; each seam keeps its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runner {
    timeout: Duration,
    kill_grace: Duration,
}

impl Runner {
    /// A runner that kills a command after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Runner {
            timeout,
            kill_grace: DEFAULT_KILL_GRACE,
        }
    }

    /// Sets the wait between SIGTERM and SIGKILL, see [`DEFAULT_KILL_GRACE`].
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// The time limit of each command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `cmd`, feeding it `stdin` (or nothing: stdin is `/dev/null`), and collects
    /// its output. Dropping the future kills the command's process group.
    pub async fn run(
        &self,
        cmd: &CommandLine,
        stdin: Option<&[u8]>,
    ) -> Result<Output, CommandError> {
        let command = cmd.display();
        let _op = activity::begin(format!("`{command}`"));
        let mut std_cmd = cmd.std_command();
        std_cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut c = tokio::process::Command::from(std_cmd);
        c.kill_on_drop(true);
        let mut child = c.spawn().map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
        let mut group = GroupKiller::new(child.id());
        let io_err = |source| CommandError::Io {
            command: command.clone(),
            source,
        };
        let mut pipe_in = child.stdin.take();
        let mut pipe_out = child.stdout.take().expect("stdout is piped");
        let mut pipe_err = child.stderr.take().expect("stderr is piped");
        let work = async {
            let feed = async {
                if let (Some(pipe), Some(bytes)) = (pipe_in.as_mut(), stdin) {
                    pipe.write_all(bytes).await?;
                    pipe.shutdown().await?;
                }
                drop(pipe_in.take());
                Ok::<_, io::Error>(())
            };
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (fed, read_out, read_err, status) = tokio::join!(
                feed,
                pipe_out.read_to_end(&mut out),
                pipe_err.read_to_end(&mut err),
                child.wait()
            );
            let status = status?;
            read_out?;
            read_err?;
            // A program that exits without reading all of stdin closes the pipe under
            // us; its exit status says more than the broken pipe.
            if let Err(e) = fed
                && e.kind() != io::ErrorKind::BrokenPipe
            {
                return Err(e);
            }
            Ok(Output {
                status,
                stdout: out,
                stderr: err,
            })
        };
        let finished = tokio::time::timeout(self.timeout, work).await;
        match finished {
            Ok(Ok(output)) => {
                group.disarm();
                Ok(output)
            }
            Ok(Err(e)) => Err(io_err(e)),
            Err(_) => {
                group.terminate();
                if tokio::time::timeout(self.kill_grace, child.wait())
                    .await
                    .is_err()
                {
                    group.kill();
                    // Bounded too: a process stuck in the kernel (D state) cannot die
                    // yet; tokio reaps it whenever it does.
                    let _ = tokio::time::timeout(self.kill_grace, child.wait()).await;
                }
                // Helpers left in the group after the leader exited go too.
                group.kill();
                group.disarm();
                tracing::warn!(command = %command, timeout_ms = self.timeout.as_millis() as u64, "command timed out; killed");
                Err(CommandError::TimedOut {
                    command,
                    timeout: self.timeout,
                })
            }
        }
    }

    /// [`Runner::run`] for blocking code (the generator's dry run runs in a blocking
    /// task): the same limit and the same kill, with threads instead of a runtime.
    pub fn run_blocking(&self, cmd: &CommandLine) -> Result<Output, CommandError> {
        let command = cmd.display();
        let _op = activity::begin(format!("`{command}`"));
        let deadline = Instant::now() + self.timeout;
        let mut std_cmd = cmd.std_command();
        std_cmd.stdin(Stdio::null());
        let mut child = std_cmd.spawn().map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
        let mut group = GroupKiller::new(Some(child.id()));
        let io_err = |source| CommandError::Io {
            command: command.clone(),
            source,
        };
        let out = read_in_thread(child.stdout.take().expect("stdout is piped"));
        let err = read_in_thread(child.stderr.take().expect("stderr is piped"));
        let timed_out = |group: &mut GroupKiller, child: &mut std::process::Child| {
            group.terminate();
            if wait_until(child, Instant::now() + self.kill_grace).is_none() {
                group.kill();
                // Bounded too: a process stuck in the kernel (D state) cannot die yet.
                let _ = wait_until(child, Instant::now() + self.kill_grace);
            }
            group.kill();
            group.disarm();
            tracing::warn!(command = %command, timeout_ms = self.timeout.as_millis() as u64, "command timed out; killed");
            CommandError::TimedOut {
                command: command.clone(),
                timeout: self.timeout,
            }
        };
        let status = match wait_until(&mut child, deadline) {
            Some(Ok(status)) => status,
            Some(Err(e)) => return Err(io_err(e)),
            None => return Err(timed_out(&mut group, &mut child)),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        // A helper that outlived the program may still hold the pipes open.
        let (Ok(stdout), Ok(stderr)) = (out.recv_timeout(remaining), err.recv_timeout(remaining))
        else {
            return Err(timed_out(&mut group, &mut child));
        };
        group.disarm();
        Ok(Output {
            status,
            stdout: stdout.map_err(io_err)?,
            stderr: stderr.map_err(io_err)?,
        })
    }
}

/// Reads a pipe to its end on a thread; the result arrives on the channel.
fn read_in_thread(
    mut pipe: impl Read + Send + 'static,
) -> std::sync::mpsc::Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = tx.send(pipe.read_to_end(&mut buf).map(|_| buf));
    });
    rx
}

/// Waits for `child` until `deadline`; `None` when it is still running then.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> Option<io::Result<ExitStatus>> {
    // std has no wait with a timeout; a short poll is cheap next to any real command.
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(Ok(status)),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Signals a command's process group; unless disarmed, SIGKILLs it when dropped, so a
/// dropped future (a pass abandoned over its budget) leaves no process behind.
#[derive(Debug)]
struct GroupKiller {
    pgid: Option<rustix::process::Pid>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> Self {
        GroupKiller {
            pgid: pid
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw),
        }
    }

    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH: everything in the group is gone already.
            let _ = rustix::process::kill_process_group(pgid, signal);
        }
    }

    fn terminate(&self) {
        self.signal(rustix::process::Signal::TERM);
    }

    fn kill(&self) {
        self.signal(rustix::process::Signal::KILL);
    }

    /// The command finished (or was reaped): its group id may be reused, never signal it.
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_display_shows_program_and_arguments() {
        let c = CommandLine::new("podman")
            .args(["volume", "export"])
            .arg("db")
            .env("X", "1");
        assert_eq!(c.display(), "podman volume export db");
        assert_eq!(c.environment(), [("X".into(), "1".into())]);
    }

    #[test]
    fn stderr_summary_keeps_the_end() {
        let o = Output {
            status: ExitStatus::default(),
            stdout: Vec::new(),
            stderr: format!("{}é tail\n", "x".repeat(600)).into_bytes(),
        };
        let s = o.stderr_summary();
        assert!(s.ends_with("é tail"), "{s}");
        assert!(s.len() <= 501, "{}", s.len());
    }
}

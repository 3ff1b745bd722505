//! A time limit for the `git upload-pack` gix runs for a local repository.
//!
//! gix spawns it with `std::process` inside its file transport, outside the command
//! runner ([`crate::command`]), and reads its stdout on the fetching thread with no
//! time limit. A hung upload-pack (a stuck filesystem, a lock) would hold that
//! blocking-pool thread for good: the pass budget abandons the pass, but the thread
//! and the child stay, one more on every retry. [`Deadline`] bounds it like the runner
//! bounds its commands: past the limit it kills legerd's own upload-pack children, the
//! blocked read sees the pipe close, and the fetch fails with an error that says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Armed for the length of one local fetch; disarmed when dropped.
#[derive(Debug)]
pub struct Deadline {
    /// Dropping it wakes the watcher early: the fetch ended in time.
    stop: Option<mpsc::Sender<()>>,
    /// The watcher, joined on drop so no kill can land after the fetch ended.
    watcher: Option<JoinHandle<()>>,
    /// Set when the limit passed and an upload-pack was killed.
    fired: Arc<AtomicBool>,
    /// The limit, for the error message.
    limit: Duration,
}

impl Deadline {
    /// Starts watching: once `limit` passes, every `upload-pack` child of legerd is
    /// killed (SIGKILL). Passes run one at a time, so an upload-pack still running when
    /// a fetch begins was left by an abandoned pass: it is killed first. So at most one
    /// runs, and those the limit kills are this fetch's.
    pub fn arm(limit: Duration) -> Deadline {
        let left = kill_upload_packs();
        if left > 0 {
            tracing::warn!(
                killed = left,
                "killed the git upload-pack an abandoned pass left running"
            );
        }
        let (stop, wake) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&fired);
        let watcher = std::thread::Builder::new()
            .name("upload-pack-deadline".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = wake.recv_timeout(limit) {
                    let killed = kill_upload_packs();
                    if killed > 0 {
                        tracing::warn!(killed, limit = %humantime::format_duration(limit), "killed a git upload-pack that outlived its time limit");
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            })
            .ok();
        Deadline {
            stop: Some(stop),
            watcher,
            fired,
            limit,
        }
    }

    /// The fetch's failure, when the limit killed its upload-pack: the pipe error gix
    /// reports says nothing about why.
    pub fn explain(&self, url: &str) -> Option<String> {
        self.fired.load(Ordering::SeqCst).then(|| {
            format!(
                "`git upload-pack` for {url} did not finish within {} and was killed; check what it waits on (a lock, a stuck disk), or raise reconcile.pass_timeout",
                humantime::format_duration(self.limit)
            )
        })
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

/// Kills the children of this process whose command line runs `upload-pack` (gix runs
/// `git-upload-pack`, or `git upload-pack` when that is not on `PATH`), and everything
/// they started (`pack-objects` holds the same pipe). gix spawns them in legerd's own
/// process group, so the tree is walked rather than a group killed. Returns how many
/// upload-packs it killed.
fn kill_upload_packs() -> usize {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    // pid → (parent, runs upload-pack)
    let mut procs = std::collections::BTreeMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        // `pid (comm) state ppid ...`: comm may hold spaces, so read after the last ')'.
        let Some(parent) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_whitespace().nth(1)?.parse::<i32>().ok()
            })
        else {
            continue;
        };
        let upload_pack = std::fs::read(dir.join("cmdline")).is_ok_and(|c| {
            c.split(|b| *b == 0)
                .any(|arg| arg.ends_with(b"upload-pack"))
        });
        procs.insert(pid, (parent, upload_pack));
    }
    let roots: Vec<i32> = procs
        .iter()
        .filter(|(_, (parent, up))| *parent == me && *up)
        .map(|(pid, _)| *pid)
        .collect();
    let mut doomed = roots.clone();
    let mut i = 0;
    while i < doomed.len() {
        let p = doomed[i];
        doomed.extend(
            procs
                .iter()
                .filter(|(_, (parent, _))| *parent == p)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    for pid in &doomed {
        if let Some(p) = rustix::process::Pid::from_raw(*pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
    roots.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;

    /// A hung upload-pack (a script that traps SIGTERM and waits on a child) is killed
    /// once the limit passes, with what it started, and the deadline says why; one
    /// that ends in time is left alone.
    #[test]
    fn deadline_kills_a_hung_upload_pack_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("git-upload-pack");
        let pid_file = dir.path().join("child.pid");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ntrap '' TERM\nsleep 600 &\necho $! > {}\nwait\n",
                pid_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut deadline = Deadline::arm(Duration::from_millis(500));
        let mut hung = std::process::Command::new(&script).spawn().unwrap();
        let status = hung.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{status:?}");
        // The watcher has fired: joining it returns at once, with its flag set.
        deadline.watcher.take().unwrap().join().unwrap();
        let why = deadline.explain("/srv/fleet.git").unwrap();
        assert!(why.contains("did not finish within 500ms"), "{why}");
        // Its child, holding the same pipe, went too.
        let child: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let done = state.is_empty() || state.contains(") Z");
            if !done {
                std::thread::sleep(Duration::from_millis(50));
            }
            done
        });
        assert!(gone, "sleep {child} still runs");

        // Ended in time: nothing fires.
        let quick = Deadline::arm(Duration::from_secs(60));
        assert_eq!(quick.explain("/srv/fleet.git"), None);
        drop(quick);
    }
}

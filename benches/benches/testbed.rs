//! The test-bed benchmark (issue 14): legerd on a real systemd-nspawn machine (systemd,
//! D-Bus, podman, the quadlet generator), with N busybox apps in a git source polled
//! every 60 s. For each N it prints:
//! - `first converge`: `legerctl set-desired` until all N units are active (seen from
//!   outside, so up to one check interval late);
//! - `no-op pass CPU`: the CPU of legerd's cgroup (`cpu.stat` `usage_usec`, children
//!   included) for one full pass (`legerctl reconcile`: fetch, observe, plan), median
//!   of 5;
//! - `one change → active`: a commit that changes one app, `legerctl reconcile`, until
//!   systemd's `ActiveEnterTimestamp` of its unit (exact, from systemd), median of 3;
//! - over one poll interval of idling (65 s from just after a poll pass, during which
//!   nothing asks legerd anything; checked to hold exactly one poll pass): the cgroup's CPU
//!   (that is one quiet poll plus a minute of idle), context switches per second of
//!   legerd's threads (`/proc/PID/task/*/status`, voluntary and not, per thread), and
//!   VmRSS.
//!
//! Run as root (it boots machines), with the workspace's binaries built:
//! `cargo build --workspace --bins && sudo LEGER_E2E_PREFIX=me- cargo bench --profile dev
//! -p leger-benches --bench testbed`. `LEGER_BENCH_SIZES=10,100,1000` picks N (default
//! 10,100). `LEGER_BENCH_LEGERD=/path/to/legerd` measures another legerd binary (a
//! release build); legerctl always comes from the build being benchmarked. Results
//! also go to `target/testbed-bench.txt`. `LEGER_BENCH_HOT_CODE=<file>` runs the same
//! scenario with legerd under callgrind and writes its profile instead of figures
//! (`contrib/symbol-order/refresh.sh`). See docs/performance.md.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use leger_benches::git;
use leger_e2e::{AGENT_DIR_INSIDE, SHARE_DIR_INSIDE, Testbed, wait_until};
use serde_json::Value;

/// Long enough for 1,000 container starts on a loaded 2-core machine.
const CONVERGE_WAIT: Duration = Duration::from_secs(1800);
const WAIT: Duration = Duration::from_secs(180);
/// The source's poll interval, as in the measurements.
const POLL: Duration = Duration::from_secs(60);

/// App `i`'s quadlet: a long-running busybox container that prints `word`.
fn quadlet(i: usize, word: &str) -> String {
    format!(
        "[Container]\nContainerName=app{i}\nImage=localhost/busybox:latest\nNetwork=none\n\
         Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do echo \"{word}\"; sleep 60 & wait $!; done'\n"
    )
}

fn legerctl(tb: &Testbed, args: &[&str]) -> Result<String> {
    let bin = format!("{AGENT_DIR_INSIDE}/legerctl");
    let mut full = vec![bin.as_str()];
    full.extend_from_slice(args);
    tb.exec_ok(&full)
}

fn last_pass(tb: &Testbed) -> Result<Value> {
    let doc: Value = serde_json::from_str(&legerctl(tb, &["status", "--json"])?)?;
    Ok(doc["status"]["lastPass"].clone())
}

/// One reading of legerd's counters.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_usec: u64,
    rss_kib: u64,
    /// The anonymous part of VmRSS (heap, stacks); the rest is mapped files (text).
    anon_kib: u64,
    threads: u64,
}

fn sample(tb: &Testbed) -> Result<Sample> {
    let script = "pid=$(systemctl show -P MainPID legerd.service); \
        cpu=$(awk '/^usage_usec/{print $2}' /sys/fs/cgroup/system.slice/legerd.service/cpu.stat); \
        rss=$(awk '/^VmRSS/{print $2}' /proc/$pid/status); \
        anon=$(awk '/^RssAnon/{print $2}' /proc/$pid/status); \
        thr=$(ls /proc/$pid/task | wc -l); echo $cpu $rss $anon $thr";
    let out = tb.exec_ok(&["sh", "-c", script])?;
    let v: Vec<u64> = out
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("unreadable counters: {out:?}"))?;
    let [cpu_usec, rss_kib, anon_kib, threads] = v[..] else {
        bail!("unreadable counters: {out:?}");
    };
    Ok(Sample {
        at: Instant::now(),
        cpu_usec,
        rss_kib,
        anon_kib,
        threads,
    })
}

/// Each legerd thread (`tid:comm`) with its context switches so far.
fn threads(tb: &Testbed) -> Result<Vec<(String, u64)>> {
    let script = "pid=$(systemctl show -P MainPID legerd.service); \
        for t in /proc/$pid/task/*; do \
        echo \"${t##*/}:$(cat $t/comm) $(awk '/ctxt_switches/{s+=$2} END{print s}' $t/status)\"; done";
    let out = tb.exec_ok(&["sh", "-c", script])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let (name, count) = l.rsplit_once(' ')?;
            Some((name.to_owned(), count.parse().ok()?))
        })
        .collect())
}

fn active_count(tb: &Testbed) -> Result<usize> {
    let out = tb.exec_ok(&[
        "systemctl",
        "list-units",
        "--type=service",
        "--state=active",
        "--plain",
        "--no-legend",
        "app*.service",
    ])?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count())
}

/// systemd's `ActiveEnterTimestamp` of `unit`, µs since the epoch (0: never active).
fn active_enter_usec(tb: &Testbed, unit: &str) -> Result<u64> {
    let path = format!(
        "/org/freedesktop/systemd1/unit/{}",
        unit.replace('.', "_2e").replace('-', "_2d")
    );
    let out = tb.exec_ok(&[
        "busctl",
        "get-property",
        "org.freedesktop.systemd1",
        &path,
        "org.freedesktop.systemd1.Unit",
        "ActiveEnterTimestamp",
    ])?;
    out.trim()
        .trim_start_matches("t ")
        .parse()
        .with_context(|| format!("unreadable timestamp {out:?}"))
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The figures of one N.
struct Figures {
    n: usize,
    first_converge: Duration,
    noop_cpu_us: u64,
    /// legerd's CPU for one `legerctl status --json`.
    status_cpu_us: u64,
    one_change: Duration,
    idle_window: Duration,
    idle_cpu_us: u64,
    /// The largest 1 s step of the cgroup's CPU in the window: the poll.
    poll_step_us: u64,
    /// The median 1 s step: idling.
    idle_step_us: u64,
    idle_ctx_per_s: f64,
    rss_kib: u64,
    anon_kib: u64,
    threads: u64,
}

/// A machine with N apps committed to a git source, and legerd installed as a unit
/// (not yet started). `legerd` replaces the build's own binary; `valgrind` runs it under
/// callgrind (see [`hot_code`]).
struct Bench {
    tb: Testbed,
    work: std::path::PathBuf,
}

fn setup(n: usize, legerd: Option<&Path>, valgrind: bool) -> Result<Bench> {
    let tb = Testbed::boot(&format!("bench{n}"))?;
    let share = tb.share_dir_host().to_owned();
    let work = share.join("work");
    std::fs::create_dir_all(&work)?;
    git(&work, &["init", "-q", "-b", "main"]);
    for i in 0..n {
        let dir = work.join(format!("apps/app{i}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("app{i}.container")), quadlet(i, "v1"))?;
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "apps"]);
    git(&share, &["clone", "-q", "--bare", "work", "fleet.git"]);
    git(&work, &["remote", "add", "origin", "../fleet.git"]);

    let mut exec_start = match legerd {
        Some(bin) => {
            // A hard link where it can: the machine then runs the very file (inode)
            // given, which tracing tools (uprobes) may have marked.
            if std::fs::hard_link(bin, share.join("legerd")).is_err() {
                std::fs::copy(bin, share.join("legerd"))?;
            }
            format!("{SHARE_DIR_INSIDE}/legerd")
        }
        None => format!("{AGENT_DIR_INSIDE}/legerd"),
    };
    if valgrind {
        // The host's valgrind: its tools are static, its launcher needs only libc.
        std::fs::create_dir_all(share.join("valgrind/bin"))?;
        let copied = Command::new("cp")
            .args(["-a", "/usr/libexec/valgrind"])
            .arg(share.join("valgrind/libexec"))
            .status()?;
        if !copied.success() {
            bail!("cannot copy /usr/libexec/valgrind (is valgrind installed?)");
        }
        // Debian's `valgrind` is a shell wrapper around `valgrind.bin`.
        std::fs::copy("/usr/bin/valgrind.bin", share.join("valgrind/bin/valgrind"))?;
        exec_start = format!(
            "/usr/bin/env VALGRIND_LIB={SHARE_DIR_INSIDE}/valgrind/libexec \
             {SHARE_DIR_INSIDE}/valgrind/bin/valgrind --tool=callgrind --demangle=no \
             --callgrind-out-file=/var/lib/leger/callgrind.out {exec_start}"
        );
    }
    let exec_start = format!("ExecStart={exec_start}");
    // `LEGERD_LOG` (e.g. `legerd=debug,info`) is passed on to legerd, for the pass's
    // stage events in the one-change timeline; unset, legerd logs as shipped.
    // `LEGER_BENCH_ENV` (`K=V K2=V2`) adds environment, e.g. a glibc malloc setting.
    let mut env: Vec<String> = std::env::var("LEGER_BENCH_ENV")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if let Ok(filter) = std::env::var("LEGERD_LOG") {
        env.push(format!("LEGERD_LOG={filter}"));
    }
    // Added at the end of [Service], after the shipped unit's own `Environment=`, so
    // that the bench's setting of the same variable wins.
    let extra: String = env.iter().map(|kv| format!("Environment={kv}\n")).collect();
    let mut unit = include_str!("../../contrib/systemd/legerd.service")
        .replace("ExecStart=/usr/bin/legerd", &exec_start)
        .replace("\n[Install]", &format!("\n{extra}\n[Install]"));
    if valgrind {
        // valgrind writes the code it translates, and makes syscalls legerd never does;
        // it is slow to start, and the watchdog must not count its translating.
        for line in [
            "MemoryDenyWriteExecute=yes",
            "SystemCallFilter=@system-service @mount",
        ] {
            unit = unit.replace(line, "");
        }
        unit = unit.replace("WatchdogSec=2min", "WatchdogSec=0");
    }
    // The measurement settings: health settle 2 s; a generous job timeout for
    // many starts at once on a loaded machine.
    // No poll jitter: the idle window must hold exactly one poll.
    let config = "[health]\ntimeout = \"5m\"\nsettle = \"2s\"\n[reconcile]\njitter = 0.0\n";
    let root = std::path::PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    std::fs::create_dir_all(root.join("etc/leger/config.d"))?;
    std::fs::write(root.join("etc/leger/config.d/50-bench.toml"), config)?;
    std::fs::write(root.join("etc/systemd/system/legerd.service"), unit)?;
    tb.exec_ok(&["systemctl", "daemon-reload"])?;
    Ok(Bench { tb, work })
}

/// `legerctl set-desired` of the bench's source.
fn set_desired(tb: &Testbed) -> Result<()> {
    let url = format!("{SHARE_DIR_INSIDE}/fleet.git");
    legerctl(
        tb,
        &[
            "set-desired",
            "git",
            &url,
            "--path",
            "apps",
            "--interval",
            &format!("{}s", POLL.as_secs()),
        ],
    )?;
    Ok(())
}

/// The figures of one N. With `hot_code`, legerd runs under callgrind, whose profile is
/// written there, and the figures mean nothing (see [`hot_code`]).
fn measure(n: usize, legerd: Option<&Path>, hot_code: Option<&Path>) -> Result<Option<Figures>> {
    let Bench { tb, work } = setup(n, legerd, hot_code.is_some())?;
    if let Err(e) = tb.exec_ok(&["systemctl", "start", "legerd.service"]) {
        let log = tb.exec(&[
            "journalctl",
            "-q",
            "--no-pager",
            "-n",
            "40",
            "-u",
            "legerd.service",
        ])?;
        bail!("{e:#}\n{}", String::from_utf8_lossy(&log.stdout));
    }
    // callgrind runs legerd some fifty times slower.
    let (converge_wait, wait) = match hot_code {
        Some(_) => (CONVERGE_WAIT * 4, WAIT * 10),
        None => (CONVERGE_WAIT, WAIT),
    };

    // First converge: set-desired → all N active.
    let t0 = Instant::now();
    set_desired(&tb)?;
    wait_until(converge_wait, &format!("{n} units active"), || {
        Ok(active_count(&tb)? == n)
    })?;
    let first_converge = t0.elapsed();
    let head = git_head(&work)?;
    wait_until(wait, "the first revision applied", || {
        Ok(last_pass(&tb)?["revision"].as_str() == Some(&*head))
    })?;

    // No-op pass: a full pass (manual, so it observes), five times. The pass's end is
    // read from the journal, not from `legerctl status` (whose rendering is legerd CPU
    // too, measured on its own below).
    let mut noop = Vec::new();
    for _ in 0..5 {
        let finished = passes_finished(&tb)?;
        let before = sample(&tb)?;
        legerctl(&tb, &["reconcile"])?;
        wait_until(wait, "the manual pass", || {
            Ok(passes_finished(&tb)? > finished)
        })?;
        noop.push(sample(&tb)?.cpu_usec - before.cpu_usec);
    }
    // One `legerctl status --json` (what the bench itself asked before).
    let mut status = Vec::new();
    for _ in 0..5 {
        let before = sample(&tb)?;
        legerctl(&tb, &["status", "--json"])?;
        status.push(sample(&tb)?.cpu_usec - before.cpu_usec);
    }

    if let Some(out) = std::env::var_os("LEGER_BENCH_PERF") {
        profile_noop(&tb, Path::new(&out))?;
    }

    // One change → active, three times (apps 0, 1, 2), median.
    let mut changes = Vec::new();
    for i in 0..3.min(n) {
        std::fs::write(
            work.join(format!("apps/app{i}/app{i}.container")),
            quadlet(i, "v2"),
        )?;
        git(&work, &["commit", "-qam", "one app changed"]);
        git(&work, &["push", "-q", "origin", "main"]);
        let changed = git_head(&work)?;
        let unit = format!("app{i}.service");
        let t0 = now_usec();
        legerctl(&tb, &["reconcile"])?;
        wait_until(wait, &format!("{unit} restarted"), || {
            Ok(active_enter_usec(&tb, &unit)? > t0)
        })?;
        changes.push(active_enter_usec(&tb, &unit)? - t0);
        wait_until(wait, "the change applied", || {
            Ok(last_pass(&tb)?["revision"].as_str() == Some(&*changed))
        })?;
        // Where the time went: legerd's events and systemd's jobs, to the µs.
        let since = format!("@{}.{:06}", t0 / 1_000_000, t0 % 1_000_000);
        let journal = tb.exec_ok(&[
            "journalctl",
            "-q",
            "-o",
            "short-precise",
            "--no-pager",
            "--since",
            &since,
            "_SYSTEMD_UNIT=legerd.service",
            "+",
            "_PID=1",
            "+",
            &format!("_SYSTEMD_UNIT={unit}"),
        ])?;
        eprintln!("N={n} one change, {unit}, from the reconcile call at {since}:\n{journal}");
    }
    let one_change = Duration::from_micros(median(changes));

    // Idle: from just after one poll pass to the next. Passes are counted in the
    // journal (`pass finished`): an idle poll is only counted in history (id 0), so
    // lastPass's id does not move.
    let poll_after = |finished: usize| -> Result<usize> {
        let mut seen = finished;
        wait_until(wait, "a poll pass", || {
            seen = passes_finished(&tb)?;
            Ok(seen > finished && last_pass(&tb)?["trigger"].as_str() == Some("poll"))
        })?;
        Ok(seen)
    };
    // Nothing may ask legerd anything inside the window (`legerctl status` would be
    // the wakeups measured), so the window is a plain wait, checked afterwards to
    // hold exactly one poll pass.
    let first = poll_after(passes_finished(&tb)?)?;
    let s1 = sample(&tb)?;
    let t1 = threads(&tb)?;
    // The cgroup's CPU every second, read inside the machine (cgroup files, not
    // legerd): the poll's second stands out from the idle ones.
    let script = format!(
        "for i in $(seq {}); do awk '/^usage_usec/{{print $2}}' \
         /sys/fs/cgroup/system.slice/legerd.service/cpu.stat; sleep 1; done",
        POLL.as_secs() + 5
    );
    let readings: Vec<u64> = tb
        .exec_ok(&["sh", "-c", &script])?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let steps: Vec<u64> = readings.windows(2).map(|w| w[1] - w[0]).collect();
    let s2 = sample(&tb)?;
    // Before anything asks legerd again (the check below runs `legerctl status`,
    // whose code would fault in more text).
    if let Some(out) = hot_code {
        scrape(&tb)?;
        // callgrind writes its profile when legerd exits.
        tb.exec_ok(&["systemctl", "stop", "legerd.service"])?;
        let root = std::path::PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
        std::fs::copy(root.join("var/lib/leger/callgrind.out"), out)
            .context("callgrind wrote no profile")?;
        return Ok(None);
    }
    memory_map(&tb, n)?;
    let p = last_pass(&tb)?;
    if passes_finished(&tb)? != first + 1 || p["trigger"].as_str() != Some("poll") {
        bail!("the idle window held other passes than one poll: last pass {p}");
    }
    // Each thread's context switches over the window (threads that started in it count
    // from zero; a thread that ended inside it is lost: the blocking pool's threads
    // of the previous poll, about one switch each). Who woke up goes to stderr.
    let mut switches = 0;
    for (name, after) in threads(&tb)? {
        let before = t1.iter().find(|(n, _)| *n == name).map_or(0, |(_, c)| *c);
        let d = after.saturating_sub(before);
        eprintln!("N={n} thread {name}: {d} context switches in the window");
        switches += d;
    }
    let window = s2.at - s1.at;
    let figures = Figures {
        n,
        first_converge,
        noop_cpu_us: median(noop),
        status_cpu_us: median(status),
        one_change,
        idle_window: window,
        idle_cpu_us: s2.cpu_usec - s1.cpu_usec,
        poll_step_us: steps.iter().copied().max().unwrap_or(0),
        idle_step_us: median(steps),
        idle_ctx_per_s: switches as f64 / window.as_secs_f64(),
        rss_kib: s2.rss_kib,
        anon_kib: s2.anon_kib,
        threads: s2.threads,
    };
    let _ = tb.exec(&["systemctl", "stop", "legerd.service"]);
    Ok(Some(figures))
}

/// `LEGER_BENCH_HOT_CODE=<file>`: run the measurements' scenario with legerd under
/// valgrind's callgrind, plus what an operator does besides (`legerctl status`, a
/// metrics scrape), and write callgrind's profile to `<file>.<N>` instead of figures.
/// `contrib/symbol-order/refresh.sh` turns it into the link order that packs the code
/// legerd runs together (docs/performance.md, "Idle RSS: hot code first").
fn hot_code(n: usize, legerd: Option<&Path>, out: &Path) -> Result<()> {
    measure(n, legerd, Some(out)).map(drop)
}

/// What an operator asks a running legerd besides passes.
fn scrape(tb: &Testbed) -> Result<()> {
    legerctl(tb, &["status"])?;
    legerctl(tb, &["status", "--json"])?;
    tb.exec_ok(&["curl", "-sf", "http://127.0.0.1:9464/metrics"])?;
    Ok(())
}

/// Where legerd's idle RSS goes, from `/proc/PID/smaps` read on the host: each mapping's
/// Rss summed by kind (the binary's own segments by permission, the heap, other
/// anonymous memory, thread stacks, shared libraries), printed to stderr.
/// `LEGER_BENCH_PAGEMAP=<file>` also writes which pages of the binary's mappings are
/// resident (`start offset perms present-page-indices`, from `/proc/PID/pagemap`), to
/// attribute resident text to symbols (`nm`) offline.
fn memory_map(tb: &Testbed, n: usize) -> Result<()> {
    let pid = host_pid(tb)?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    // Thread stacks are anonymous mappings; each thread's stack pointer names its own.
    let mut stack_sps = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        // `syscall` holds: number, six arguments, stack pointer, program counter.
        let sys = std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
        if let Some(sp) = sys.split_whitespace().nth(7)
            && let Ok(sp) = u64::from_str_radix(sp.trim_start_matches("0x"), 16)
        {
            stack_sps.push(sp);
        }
    }
    let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
    let mut binary_maps = Vec::new();
    let mut current: Option<(String, u64, u64, u64, String)> = None;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or_default();
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
        {
            let perms = parts.next().unwrap_or_default().to_owned();
            let offset = u64::from_str_radix(parts.next().unwrap_or("0"), 16).unwrap_or(0);
            let path = parts.nth(2).unwrap_or_default().to_owned();
            let kind = if path.ends_with("/legerd") {
                binary_maps.push((lo, hi, offset, perms.clone()));
                format!("binary {perms}")
            } else if path == "[heap]" {
                "heap".to_owned()
            } else if path.is_empty() {
                if stack_sps.iter().any(|sp| (lo..hi).contains(sp)) {
                    "thread stacks".to_owned()
                } else {
                    "other anonymous (malloc arenas, mmaps)".to_owned()
                }
            } else if path.starts_with('[') {
                path.clone()
            } else {
                format!("file {perms}")
            };
            current = Some((kind, lo, hi, offset, perms));
        } else if first == "Rss:"
            && let Some((kind, ..)) = &current
        {
            let kib: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *kinds.entry(kind.clone()).or_default() += kib;
        }
    }
    for (kind, kib) in &kinds {
        eprintln!("N={n} idle RSS: {kib:>6} KiB {kind}");
    }
    if let Some(out) = std::env::var_os("LEGER_BENCH_PAGEMAP") {
        use std::io::{Read, Seek, SeekFrom};
        let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap"))?;
        let mut text = String::new();
        for (lo, hi, offset, perms) in binary_maps {
            let pages = (hi - lo) / 4096;
            let mut buf = vec![0u8; (pages * 8) as usize];
            pagemap.seek(SeekFrom::Start(lo / 4096 * 8))?;
            pagemap.read_exact(&mut buf)?;
            let present: Vec<String> = buf
                .chunks_exact(8)
                .enumerate()
                .filter(|(_, e)| u64::from_le_bytes((*e).try_into().unwrap()) >> 63 == 1)
                .map(|(i, _)| i.to_string())
                .collect();
            text += &format!("{lo:x} {offset:x} {perms} {}\n", present.join(","));
        }
        std::fs::write(out, text)?;
    }
    Ok(())
}

/// How many passes legerd logged as finished, read from the journal (asks legerd
/// nothing).
fn passes_finished(tb: &Testbed) -> Result<usize> {
    let log = tb.exec_ok(&["journalctl", "-q", "-o", "cat", "-u", "legerd.service"])?;
    Ok(log
        .lines()
        .filter(|l| l.starts_with("pass finished"))
        .count())
}

/// legerd's PID on the host, found by its cgroup (`…/<machine>/payload/…/legerd.service`).
fn host_pid(tb: &Testbed) -> Result<u32> {
    let wanted = format!("{}/payload/system.slice/legerd.service", tb.name());
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if comm.trim() == "legerd" && cgroup.lines().any(|l| l.ends_with(&wanted)) {
            return Ok(pid);
        }
    }
    bail!("no legerd process in {wanted}")
}

/// `LEGER_BENCH_PERF=<file>`: `perf record -g` of legerd over 20 no-op passes, for
/// `perf report -i <file>`: where a no-op pass's CPU goes.
fn profile_noop(tb: &Testbed, out: &Path) -> Result<()> {
    let pid = host_pid(tb)?.to_string();
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-F", "4000", "-g", "-p", &pid, "-o"])
        .arg(out)
        .spawn()?;
    // perf attaches within a moment; a pass before that is only a missed sample.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..20 {
        let finished = passes_finished(tb)?;
        legerctl(tb, &["reconcile"])?;
        wait_until(WAIT, "the manual pass", || {
            Ok(passes_finished(tb)? > finished)
        })?;
    }
    // SIGINT: perf writes its file and exits.
    Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status()?;
    perf.wait()?;
    Ok(())
}

fn git_head(work: &Path) -> Result<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(work)
        .args(["rev-parse", "HEAD"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() -> Result<()> {
    // Only root can boot the machines; /proc/self belongs to the effective user.
    if std::fs::metadata("/proc/self").map(|m| m.uid())? != 0 {
        eprintln!("testbed bench: skipped, run it as root (it boots machines)");
        return Ok(());
    }
    let sizes: Vec<usize> = std::env::var("LEGER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100]);
    let legerd = std::env::var_os("LEGER_BENCH_LEGERD").map(std::path::PathBuf::from);
    if let Some(out) = std::env::var_os("LEGER_BENCH_HOT_CODE") {
        for n in sizes {
            let mut file = out.clone();
            file.push(format!(".{n}"));
            hot_code(n, legerd.as_deref(), Path::new(&file)).with_context(|| format!("N = {n}"))?;
        }
        return Ok(());
    }
    let mut lines = vec![
        format!(
            "legerd: {}",
            legerd
                .as_deref()
                .map_or("the build's own".to_owned(), |p| p.display().to_string())
        ),
        "| N | first converge | no-op pass CPU | status --json CPU | one change → active | idle window | CPU in window (1 poll + idle) | poll's second | idle second (median) | ctx switches/s | VmRSS (anon) | threads |".to_owned(),
        "|---|---|---|---|---|---|---|---|---|---|---|---|".to_owned(),
    ];
    for n in sizes {
        let f = measure(n, legerd.as_deref(), None)
            .with_context(|| format!("N = {n}"))?
            .context("no figures")?;
        let line = format!(
            "| {} | {:.1} s | {:.1} ms | {:.1} ms | {:.2} s | {:.0} s | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} | {:.1} MB ({:.1} MB) | {} |",
            f.n,
            f.first_converge.as_secs_f64(),
            f.noop_cpu_us as f64 / 1000.0,
            f.status_cpu_us as f64 / 1000.0,
            f.one_change.as_secs_f64(),
            f.idle_window.as_secs_f64(),
            f.idle_cpu_us as f64 / 1000.0,
            f.poll_step_us as f64 / 1000.0,
            f.idle_step_us as f64 / 1000.0,
            f.idle_ctx_per_s,
            f.rss_kib as f64 / 1024.0,
            f.anon_kib as f64 / 1024.0,
            f.threads,
        );
        println!("{line}");
        lines.push(line);
    }
    let text = lines.join("\n") + "\n";
    println!("{text}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/testbed-bench.txt");
    std::fs::write(&out, text)?;
    Ok(())
}

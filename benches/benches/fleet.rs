//! A fleet of 10,000 hosts against one source and one FleetLock server, with legerd's
//! real client code and real HTTP servers on 127.0.0.1, on a compressed clock.
//!
//! Why compressed: 10,000 hosts polling every 60 s is 167 requests/s for hours; the
//! bench runs the requests for real (the real `ManifestSource`, `GitSource` and
//! `FleetLockClient`, the real schedule jitter and lock retry formulas) but in the
//! order of a simulated clock, as fast as the machine allows. What the servers measure
//! (handler time, requests, bytes on the wire) is real; what depends on the clock
//! (requests/s at the poll rate, time until every host has a new version, rollout
//! time) is computed from the simulated times of those real requests.
//!
//! Environment: `LEGER_SIM_HOSTS` (default 10,000) sets the fleet size,
//! `LEGER_SIM_GIT_HOSTS` (default 300) the hosts measured for the git source,
//! `LEGER_SIM_GIT_TAGS` (default 50) the tags in its repository,
//! `LEGER_SIM_SLOTS` (default `1,10,100,500`) the FleetLock slot counts. The figures go
//! to stdout and `target/fleet-sim.txt`. Criterion benchmarks of one idle poll follow.
//!
//! Any error other than the lock protocol's refusal (an unreachable server, a failed
//! fetch, a failed accept) stops the bench with a panic: a simulation that goes on
//! would measure broken connections.

#[path = "fleet_sim/common.rs"]
mod common;
/// The agent tests' smart-HTTP git server, shared rather than copied (the bench
/// uses part of it).
#[allow(dead_code)]
#[path = "../../agent/tests/support/git_http.rs"]
mod git_http;
#[path = "fleet_sim/git.rs"]
mod git_sim;
#[path = "fleet_sim/lock.rs"]
mod lock_sim;
#[path = "fleet_sim/manifest.rs"]
mod manifest_sim;
#[path = "fleet_sim/wire.rs"]
mod wire;

use std::fmt::Write as _;

use criterion::Criterion;
use leger_api_types::desired::{GitSourceSpec, ManifestSourceSpec};
use legerd::source::git::GitSource;
use legerd::source::manifest::ManifestSource;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn main() {
    let hosts: usize = env_or("LEGER_SIM_HOSTS", 10_000);
    let git_hosts: usize = env_or("LEGER_SIM_GIT_HOSTS", 300);
    let git_tags: usize = env_or("LEGER_SIM_GIT_TAGS", 50);
    let slots: Vec<usize> = std::env::var("LEGER_SIM_SLOTS")
        .unwrap_or_else(|_| "1,10,100,500".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("LEGER_SIM_SLOTS: {s:?} is not a number"))
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut report = String::new();
    // Each part prints as it finishes, so a long run shows its progress.
    let keep = |o: &mut String, f: &dyn Fn(&mut String)| {
        let mut part = String::new();
        f(&mut part);
        print!("{part}");
        o.push_str(&part);
    };
    keep(&mut report, &|o| manifest_sim::run(&rt, hosts, o));
    keep(&mut report, &|o| {
        git_sim::run(git_hosts, git_tags, hosts, o)
    });
    let _ = writeln!(
        report,
        "FleetLock rollout, {hosts} hosts, each holding its slot {} (scaled: the simulated clock), retry 2s doubling to 5m + up to 50% jitter, capped by the 60s poll:",
        lock_sim::apply_range()
    );
    print!("{}", report.lines().last().unwrap_or_default());
    println!();
    for n in slots {
        keep(&mut report, &|o| lock_sim::run(&rt, hosts, n, o));
    }
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fleet-sim.txt");
    let _ = std::fs::write(target, &report);

    let mut c = Criterion::default().configure_from_args();
    idle_poll_bench(&rt, &mut c);
    c.final_summary();
}

/// One idle poll of each real source client (the unit cost behind the figures).
fn idle_poll_bench(rt: &tokio::runtime::Runtime, c: &mut Criterion) {
    let (url, _served, _wire) = manifest_sim::start(rt);
    let state = tempfile::tempdir().unwrap();
    let mut source = ManifestSource::new(
        ManifestSourceSpec::new(&url),
        state.path(),
        manifest_sim::limits(),
    );
    source.fetch(None).unwrap();
    c.bench_function("fleet/idle_manifest_poll", |b| {
        b.iter(|| std::hint::black_box(source.fetch(None).unwrap()))
    });

    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("fleet.git");
    std::fs::create_dir_all(&work).unwrap();
    leger_benches::git(&work, &["init", "-q"]);
    for (rel, bytes) in leger_benches::source_files(20, None) {
        let path = work.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    leger_benches::git(&work, &["add", "-A"]);
    leger_benches::git(&work, &["commit", "-q", "-m", "v1"]);
    let server = git_http::GitHttpServer::start(root.path());
    let mut source = GitSource::new(
        GitSourceSpec::new(server.url("fleet.git")),
        state.path(),
        leger_benches::bench_limits(),
    );
    source.fetch(None).unwrap();
    let mut group = c.benchmark_group("fleet");
    group.sample_size(20);
    group.bench_function("idle_git_poll", |b| {
        b.iter(|| std::hint::black_box(source.fetch(None).unwrap()))
    });
    group.finish();
}

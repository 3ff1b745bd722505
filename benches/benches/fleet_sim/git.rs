//! The same polling, for a git source: the real `GitSource` (gix over smart HTTP, as
//! legerd fetches) against `git http-backend` run as a CGI per request on 127.0.0.1
//! (the agent tests' server). An idle git poll cannot be a 304: it asks for the ref
//! advertisement every time, and this measures what that costs.
//!
//! Fewer hosts than the manifest simulation (`LEGER_SIM_GIT_HOSTS`, default 300):
//! each host keeps a real bare cache repository on disk and every request starts a
//! `git http-backend` process, so 10,000 would be minutes of process starts for the
//! same per-poll figures. The fleet-wide rates are those figures times 10,000 hosts
//! over the mean poll interval, and are marked as extrapolated.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use leger_api_types::desired::GitSourceSpec;
use leger_benches::{app_files, git};
use legerd::source::git::GitSource;

use crate::common::{JITTER, POLL, in_order, mean, mean_interval, p99};
use crate::git_http::GitHttpServer;

/// Client threads (hosts polling at once).
const THREADS: usize = 4;
/// Apps in the repository.
const APPS: usize = 20;

fn write_apps(work: &Path, generation: u32) {
    for i in 0..APPS {
        for (rel, bytes) in app_files(i, generation) {
            let path = work.join("apps").join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
}

/// The per-poll counters of one round.
#[derive(Debug, Clone, Copy)]
struct Round {
    advertisements: usize,
    ls_refs: usize,
    packs: usize,
    request_bytes: u64,
    response_bytes: u64,
}

fn counters(server: &GitHttpServer) -> Round {
    let c = &server.counts;
    Round {
        advertisements: c.advertisements.load(Ordering::SeqCst),
        ls_refs: c.ls_refs.load(Ordering::SeqCst),
        packs: c.fetches.load(Ordering::SeqCst),
        request_bytes: c.request_bytes.load(Ordering::SeqCst),
        response_bytes: c.response_bytes.load(Ordering::SeqCst),
    }
}

fn since(a: Round, b: Round) -> Round {
    Round {
        advertisements: b.advertisements - a.advertisements,
        ls_refs: b.ls_refs - a.ls_refs,
        packs: b.packs - a.packs,
        request_bytes: b.request_bytes - a.request_bytes,
        response_bytes: b.response_bytes - a.response_bytes,
    }
}

/// The simulation; appends its figures to `out`. `fleet` is the size extrapolated to.
///
/// `tags` release tags sit next to `main` (a tag per release is common; legerd asks
/// only for the branch, and this shows whether tags still cost on every poll).
pub fn run(hosts: usize, tags: usize, fleet: usize, out: &mut String) {
    let root = tempfile::tempdir().unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    write_apps(&work, 1);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "v1"]);
    for t in 0..tags {
        git(&work, &["tag", &format!("v0.{t}")]);
    }
    let served = root.path().join("srv");
    std::fs::create_dir_all(&served).unwrap();
    git(
        root.path(),
        &["clone", "-q", "--bare", "work", "srv/fleet.git"],
    );
    let server = GitHttpServer::start(&served);
    let url = server.url("fleet.git");
    let state = tempfile::tempdir().unwrap();
    let sources: Vec<Mutex<GitSource>> = (0..hosts)
        .map(|i| {
            let mut spec = GitSourceSpec::new(&url);
            spec.path = Some("apps".into());
            Mutex::new(GitSource::new(
                spec,
                &state.path().join(format!("h{i}")),
                leger_benches::bench_limits(),
            ))
        })
        .collect();
    let order: Vec<usize> = (0..hosts).collect();
    let fetch = |h: usize| {
        sources[h]
            .lock()
            .unwrap()
            .fetch(None)
            .unwrap_or_else(|e| panic!("host {h}: the git fetch failed: {e}"))
    };
    // First clone everywhere.
    let c0 = counters(&server);
    in_order(&order, THREADS, |h| {
        fetch(h);
    });
    let clone = since(c0, counters(&server));

    // One idle round.
    server.counts.handler_ns.lock().unwrap().clear();
    let c1 = counters(&server);
    let t0 = Instant::now();
    in_order(&order, THREADS, |h| {
        let got = fetch(h);
        assert!(
            got.stats.contacted_remote && !got.stats.received_pack,
            "host {h}: an idle poll asks for refs and gets no pack"
        );
    });
    let idle_wall = t0.elapsed();
    let idle = since(c1, counters(&server));
    let idle_ns = server.counts.handler_ns.lock().unwrap().clone();
    assert_eq!(idle.packs, 0, "no pack is asked for on an idle poll");

    // A new commit that changes one app.
    write_apps(&work, 1);
    for (rel, bytes) in app_files(0, 2) {
        std::fs::write(work.join("apps").join(rel), bytes).unwrap();
    }
    git(&work, &["commit", "-q", "-am", "v2"]);
    git(
        &work,
        &[
            "push",
            "-q",
            &served.join("fleet.git").to_string_lossy(),
            "main",
        ],
    );
    server.counts.handler_ns.lock().unwrap().clear();
    let c2 = counters(&server);
    in_order(&order, THREADS, |h| {
        let got = fetch(h);
        assert!(got.stats.received_pack, "host {h}: the new commit arrives");
    });
    let change = since(c2, counters(&server));
    let change_ns = server.counts.handler_ns.lock().unwrap().clone();

    let n = hosts as f64;
    let per = |r: Round| {
        (
            (r.advertisements + r.ls_refs + r.packs) as f64 / n,
            (r.request_bytes + r.response_bytes) as f64 / n,
        )
    };
    let (idle_req, idle_bytes) = per(idle);
    let (clone_req, clone_bytes) = per(clone);
    let (change_req, change_bytes) = per(change);
    let interval = mean_interval(POLL, JITTER).as_secs_f64();
    let five_min = mean_interval(POLL * 5, JITTER).as_secs_f64();
    let rate = fleet as f64 * idle_req / interval;
    let busy = rate * mean(&idle_ns).as_secs_f64();
    let _ = writeln!(
        out,
        "git source over smart HTTP (gix, as legerd; git http-backend as CGI on 127.0.0.1), {hosts} hosts measured, a repository of {APPS} apps, branch main + {tags} tags:"
    );
    let _ = writeln!(
        out,
        "  idle poll: {idle_req:.2} requests ({} advertisements, {} ls-refs, {} packs), {:.0} bytes on the wire ({:.0} request + {:.0} answer, headers included); server time per request mean {:?}, p99 {:?} (a git process each); client work per idle poll here {:?}",
        idle.advertisements,
        idle.ls_refs,
        idle.packs,
        idle_bytes,
        idle.request_bytes as f64 / n,
        idle.response_bytes as f64 / n,
        mean(&idle_ns),
        p99(idle_ns.clone()),
        idle_wall * THREADS as u32 / hosts as u32,
    );
    let _ = writeln!(
        out,
        "  first clone: {clone_req:.2} requests, {clone_bytes:.0} bytes per host; a one-app change: {change_req:.2} requests, {change_bytes:.0} bytes per host, server p99 {:?}",
        p99(change_ns),
    );
    let _ = writeln!(
        out,
        "  extrapolated to {fleet} hosts: poll 60s: {rate:.0} requests/s, {:.0} kB/s, about {busy:.1} server cores busy with this CGI server; poll 5m: {:.0} requests/s, {:.0} kB/s, {:.1} cores (a manifest source's idle poll is one 304)",
        rate * idle_bytes / idle_req / 1000.0,
        fleet as f64 * idle_req / five_min,
        fleet as f64 * idle_bytes / five_min / 1000.0,
        fleet as f64 * idle_req / five_min * mean(&idle_ns).as_secs_f64(),
    );
}

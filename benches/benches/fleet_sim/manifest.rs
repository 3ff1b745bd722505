//! 10,000 hosts polling one manifest source (the real `ManifestSource`) served by a
//! real axum server on 127.0.0.1 that answers conditional GETs with 304.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use leger_api_types::desired::ManifestSourceSpec;
use leger_config::Limits;
use legerd::pass::retry::jittered;
use legerd::source::manifest::{ManifestSource, manifest_for};
use sha2::{Digest, Sha256};

use crate::common::{JITTER, POLL, Rng, in_order, mean_interval, p99};
use crate::wire::{CountingListener, Wire};

/// Client threads: each is one host polling at a time, so at most this many
/// connections are open.
const THREADS: usize = 4;

/// The manifest tree and what the server saw.
#[derive(Default)]
pub struct Served {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    requests: AtomicU64,
    not_modified: AtomicU64,
    bytes: AtomicU64,
    handler_ns: Mutex<Vec<u64>>,
}

async fn serve(State(s): State<Arc<Served>>, req: Request) -> Response {
    let t0 = Instant::now();
    s.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let found = s.files.lock().unwrap().get(&path).cloned();
    let response = match found {
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap(),
        Some(bytes) => {
            let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..16]);
            if req
                .headers()
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == etag.as_bytes())
            {
                s.not_modified.fetch_add(1, Ordering::Relaxed);
                Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .header(header::ETAG, etag)
                    .body(Body::empty())
                    .unwrap()
            } else {
                s.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                Response::builder()
                    .header(header::ETAG, etag)
                    .body(Body::from(bytes))
                    .unwrap()
            }
        }
    };
    s.handler_ns
        .lock()
        .unwrap()
        .push(t0.elapsed().as_nanos() as u64);
    response
}

/// Publishes version `version` with files that differ by `generation`.
pub fn publish(s: &Served, version: u64, generation: &str) {
    let mut files = BTreeMap::new();
    files.insert(
        "web/web.container".to_owned(),
        format!("[Container]\nImage=localhost/busybox:latest\nExec=echo {generation}\n")
            .into_bytes(),
    );
    files.insert(
        "web/web.env".to_owned(),
        format!("G={generation}\n").into_bytes(),
    );
    let manifest = manifest_for(version, "2026-01-01T00:00:00Z".into(), &files);
    let mut tree = s.files.lock().unwrap();
    for (name, bytes) in files {
        tree.insert(format!("v{version}/{name}"), bytes);
    }
    tree.insert(
        format!("v{version}/manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    );
    tree.insert(
        "latest.json".into(),
        format!("{{\"version\":{version},\"manifest_url\":\"v{version}/manifest.json\"}}")
            .into_bytes(),
    );
}

/// Starts the server with version 1 published; returns its URL, its state and the
/// wire counters.
pub fn start(rt: &tokio::runtime::Runtime) -> (String, Arc<Served>, Arc<Wire>) {
    let served = Arc::new(Served::default());
    publish(&served, 1, "one");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let wire = Arc::new(Wire::default());
    let listener = CountingListener::new(listener, Arc::clone(&wire));
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(Arc::clone(&served));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, served, wire)
}

pub fn limits() -> Limits {
    Limits {
        max_file_size: 1 << 20,
        max_files: 100,
    }
}

/// The simulation; appends its figures to `out`.
pub fn run(rt: &tokio::runtime::Runtime, hosts: usize, out: &mut String) {
    let (url, served, wire) = start(rt);
    let state = tempfile::tempdir().unwrap();
    let sources: Vec<Mutex<ManifestSource>> = (0..hosts)
        .map(|i| {
            Mutex::new(ManifestSource::new(
                ManifestSourceSpec::new(&url),
                &state.path().join(format!("h{i}")),
                limits(),
            ))
        })
        .collect();
    let fetch = |h: usize| {
        sources[h]
            .lock()
            .unwrap()
            .fetch(None)
            .unwrap_or_else(|e| panic!("host {h}: the manifest fetch failed: {e}"));
    };
    let mut rng = Rng(0x5eed);
    // Each host's next poll, on the simulated clock, with legerd's jitter.
    let mut next: Vec<Duration> = (0..hosts).map(|_| POLL.mul_f64(rng.next())).collect();
    let by_time = |next: &[Duration]| {
        let mut order: Vec<usize> = (0..hosts).collect();
        order.sort_by_key(|&h| next[h]);
        order
    };
    // First install everywhere.
    in_order(&by_time(&next), THREADS, fetch);
    for n in next.iter_mut() {
        *n += jittered(POLL, JITTER, rng.next());
    }
    // One idle round: everyone polls once and gets a 304.
    let before = (
        served.requests.load(Ordering::Relaxed),
        served.bytes.load(Ordering::Relaxed),
        served.not_modified.load(Ordering::Relaxed),
        wire.snapshot(),
    );
    served.handler_ns.lock().unwrap().clear();
    let t0 = Instant::now();
    in_order(&by_time(&next), THREADS, fetch);
    let idle_wall = t0.elapsed();
    let idle_requests = served.requests.load(Ordering::Relaxed) - before.0;
    let idle_bytes = served.bytes.load(Ordering::Relaxed) - before.1;
    let idle_304 = served.not_modified.load(Ordering::Relaxed) - before.2;
    let after = wire.snapshot();
    let (wire_in, wire_out, conns) = (
        after.0 - before.3.0,
        after.1 - before.3.1,
        after.2 - before.3.2,
    );
    let idle_p99 = p99(served.handler_ns.lock().unwrap().clone());
    assert_eq!(idle_304, idle_requests, "every idle poll is answered 304");

    // A new version appears at a random point of the next round.
    let round_start = *next.iter().min().unwrap();
    let published_at = round_start + POLL.mul_f64(rng.next());
    publish(&served, 2, "two");
    // Hosts whose poll came before it see nothing new; they poll again later.
    let mut seen: Vec<Option<Duration>> = vec![None; hosts];
    let before_new = (served.requests.load(Ordering::Relaxed), wire.snapshot());
    served.handler_ns.lock().unwrap().clear();
    let mut pending: Vec<usize> = (0..hosts).collect();
    let t0 = Instant::now();
    while !pending.is_empty() {
        for &h in &pending {
            while next[h] < published_at {
                next[h] += jittered(POLL, JITTER, rng.next());
            }
        }
        pending.sort_by_key(|&h| next[h]);
        in_order(&pending, THREADS, fetch);
        for &h in &pending {
            seen[h] = Some(next[h] - published_at);
        }
        pending.retain(|&h| seen[h].is_none());
    }
    let new_wall = t0.elapsed();
    let new_requests = served.requests.load(Ordering::Relaxed) - before_new.0;
    let new_wire = wire.snapshot();
    let new_p99 = p99(served.handler_ns.lock().unwrap().clone());
    let all_have = seen.iter().flatten().max().copied().unwrap_or_default();
    let interval = mean_interval(POLL, JITTER);
    let per_poll = |n: u64| n as f64 / hosts as f64;
    let rate = hosts as f64 * per_poll(idle_requests) / interval.as_secs_f64();
    let _ = writeln!(
        out,
        "manifest source, {hosts} hosts, poll {}s + up to {:.0}% jitter (mean interval {:.0}s):",
        POLL.as_secs(),
        JITTER * 100.0,
        interval.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  idle poll: {:.2} requests, {:.2} connections, all 304; {:.0} bytes on the wire ({:.0} request + {:.0} answer, headers included, TCP/IP overhead not), {:.1} body bytes",
        per_poll(idle_requests),
        per_poll(conns),
        per_poll(wire_in + wire_out),
        per_poll(wire_in),
        per_poll(wire_out),
        per_poll(idle_bytes),
    );
    let _ = writeln!(
        out,
        "  at the poll rate: {rate:.0} requests/s, {:.1} kB/s in + out; server handler p99 {:?}; client work per idle poll here {:?} ({THREADS} threads on this machine; legerd builds its HTTP client per poll)",
        rate * per_poll(wire_in + wire_out) / per_poll(idle_requests).max(1e-9) / 1000.0,
        idle_p99,
        idle_wall * THREADS as u32 / hosts as u32,
    );
    let _ = writeln!(
        out,
        "  new version: every host had it {:.1}s (simulated) after it was published (bound: poll + jitter = {:.0}s); {new_requests} requests ({:.2} per host), {:.0} bytes on the wire per host, server p99 {:?}; ran in {:.1?}",
        all_have.as_secs_f64(),
        POLL.mul_f64(1.0 + JITTER).as_secs_f64(),
        per_poll(new_requests),
        per_poll((new_wire.0 - before_new.1.0) + (new_wire.1 - before_new.1.1)),
        new_p99,
        new_wall
    );
}

//! A fleet of 10,000 hosts against one source and one FleetLock server, with legerd's
//! real client code and real HTTP servers on 127.0.0.1, on a compressed clock.
//!
//! Why compressed: 10,000 hosts polling every 60 s is 167 requests/s for hours; the
//! bench runs every request for real (the real `ManifestSource`, the real
//! `FleetLockClient`, the real schedule jitter and lock retry formulas) but in the order
//! of a simulated clock, as fast as the machine allows. What the server measures (its
//! handler time, requests, bytes) is real; what depends on the clock (requests/s at the
//! poll rate, time until every host has a new version, rollout time) is computed from
//! the simulated times of those real requests.
//!
//! `LEGER_SIM_HOSTS` (default 10,000) sets the fleet size; the figures go to stdout and
//! `target/fleet-sim.txt`. A criterion benchmark of one idle manifest poll follows.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use criterion::Criterion;
use leger_api_types::desired::ManifestSourceSpec;
use leger_config::Limits;
use legerd::fleet::fleetlock::FleetLockClient;
use legerd::fleet::{RetrySettings, retry_delay};
use legerd::pass::retry::jittered;
use legerd::source::manifest::{ManifestSource, manifest_for};
use sha2::{Digest, Sha256};

/// The poll interval of every simulated host, and legerd's default jitter.
const POLL: Duration = Duration::from_secs(60);
const JITTER: f64 = 0.1;
/// How long one host's disruptive apply holds its slot: restart plus the default
/// 10 s health settle plus start time.
const APPLY: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Served {
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

fn publish(s: &Served, version: u64, generation: &str) {
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

fn p99(mut v: Vec<u64>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    Duration::from_nanos(v[(v.len() * 99 / 100).min(v.len() - 1)])
}

/// A tiny deterministic generator, so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `f` over every host index on `threads` threads, in the order given.
fn in_order(order: &[usize], threads: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&h) = order.get(i) else { break };
                    f(h);
                }
            });
        }
    });
}

fn manifest_sim(rt: &tokio::runtime::Runtime, hosts: usize, out: &mut String) {
    let served = Arc::new(Served::default());
    publish(&served, 1, "one");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(Arc::clone(&served));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let state = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_file_size: 1 << 20,
        max_files: 100,
    };
    let sources: Vec<Mutex<ManifestSource>> = (0..hosts)
        .map(|i| {
            Mutex::new(ManifestSource::new(
                ManifestSourceSpec::new(&url),
                &state.path().join(format!("h{i}")),
                limits.clone(),
            ))
        })
        .collect();
    let mut rng = Rng(0x5eed);
    // Each host's next poll, on the simulated clock, with legerd's jitter.
    let mut next: Vec<Duration> = (0..hosts).map(|_| POLL.mul_f64(rng.next())).collect();
    let by_time = |next: &[Duration]| {
        let mut order: Vec<usize> = (0..hosts).collect();
        order.sort_by_key(|&h| next[h]);
        order
    };
    let threads = 4;
    let poll_all = |order: &[usize]| {
        let t0 = Instant::now();
        in_order(order, threads, |h| {
            sources[h].lock().unwrap().fetch(None).expect("fetch");
        });
        t0.elapsed()
    };
    // First install everywhere.
    poll_all(&by_time(&next));
    for n in next.iter_mut() {
        *n += jittered(POLL, JITTER, rng.next());
    }
    // One idle round: everyone polls once and gets a 304.
    let before = (
        served.requests.load(Ordering::Relaxed),
        served.bytes.load(Ordering::Relaxed),
    );
    served.handler_ns.lock().unwrap().clear();
    let idle_wall = poll_all(&by_time(&next));
    let idle_requests = served.requests.load(Ordering::Relaxed) - before.0;
    let idle_bytes = served.bytes.load(Ordering::Relaxed) - before.1;
    let idle_p99 = p99(served.handler_ns.lock().unwrap().clone());
    // A new version appears at a random point of the next round.
    let round_start = *next.iter().min().unwrap();
    let published_at = round_start + POLL.mul_f64(rng.next());
    publish(&served, 2, "two");
    // Hosts whose poll came before it see nothing new; they poll again later.
    let mut seen: Vec<Option<Duration>> = vec![None; hosts];
    let before_new = served.requests.load(Ordering::Relaxed);
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
        in_order(&pending, threads, |h| {
            sources[h].lock().unwrap().fetch(None).expect("fetch");
        });
        for &h in &pending {
            seen[h] = Some(next[h] - published_at);
        }
        pending.retain(|&h| seen[h].is_none());
    }
    let new_wall = t0.elapsed();
    let new_requests = served.requests.load(Ordering::Relaxed) - before_new;
    let new_p99 = p99(served.handler_ns.lock().unwrap().clone());
    let all_have = seen.iter().flatten().max().copied().unwrap_or_default();
    let mean_interval = POLL.mul_f64(1.0 + JITTER / 2.0);
    let _ = writeln!(
        out,
        "manifest source, {hosts} hosts, poll {}s + {:.0}% jitter:",
        POLL.as_secs(),
        JITTER * 100.0
    );
    let _ = writeln!(
        out,
        "  idle round: {idle_requests} requests ({:.2} per poll), {idle_bytes} body bytes ({:.1} per poll), server handler p99 {:?}; at the poll rate {:.0} requests/s; {:?} of client work per idle poll here",
        idle_requests as f64 / hosts as f64,
        idle_bytes as f64 / hosts as f64,
        idle_p99,
        hosts as f64 * (idle_requests as f64 / hosts as f64) / mean_interval.as_secs_f64(),
        idle_wall / hosts as u32 * threads as u32,
    );
    let _ = writeln!(
        out,
        "  new version: every host had it {:.1}s (simulated) after it was published; {new_requests} requests ({:.2} per host), server p99 {:?}; ran in {:?}",
        all_have.as_secs_f64(),
        new_requests as f64 / hosts as f64,
        new_p99,
        new_wall
    );
}

fn fleetlock_sim(rt: &tokio::runtime::Runtime, hosts: usize, slots: usize, out: &mut String) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = leger_e2e::fleet_server::state(slots, None);
    rt.spawn(leger_e2e::fleet_server::serve(listener, Arc::clone(&state)));
    let retry = RetrySettings {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(300),
    };
    let mut rng = Rng(0xf1ee7 + slots as u64);
    // (time, host, kind) where kind 0 = ask for a slot, 1 = give it back.
    let mut events: BinaryHeap<Reverse<(Duration, usize, u8)>> = (0..hosts)
        .map(|h| Reverse((POLL.mul_f64(rng.next()), h, 0)))
        .collect();
    let mut attempts = vec![0u32; hosts];
    let clients: Vec<FleetLockClient> = (0..hosts)
        .map(|h| FleetLockClient::new(&url, &format!("h{h}"), "default"))
        .collect();
    let (mut requests, mut refused, mut end) = (0u64, 0u64, Duration::ZERO);
    let t0 = Instant::now();
    rt.block_on(async {
        while let Some(Reverse((at, h, kind))) = events.pop() {
            requests += 1;
            if kind == 1 {
                clients[h].steady_state().await.expect("release");
                end = end.max(at);
                continue;
            }
            match clients[h].pre_reboot().await {
                Ok(()) => events.push(Reverse((at + APPLY, h, 1))),
                Err(_) => {
                    refused += 1;
                    attempts[h] += 1;
                    // The gate's retry delay, capped like the pass: never past a poll.
                    let d = retry_delay(retry, attempts[h], rng.next()).min(jittered(
                        POLL,
                        JITTER,
                        rng.next(),
                    ));
                    events.push(Reverse((at + d, h, 0)));
                }
            }
        }
    });
    let grants = state
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|e| e.op == "grant")
        .count();
    assert_eq!(grants, hosts, "every host got exactly one slot");
    // Hosts notice the new revision over one poll interval, and each holds its slot for
    // APPLY: the rollout cannot be shorter than either bound.
    let ideal = (APPLY.as_secs_f64() * (hosts as f64 / slots as f64).ceil())
        .max(POLL.as_secs_f64() + APPLY.as_secs_f64());
    let _ = writeln!(
        out,
        "  {slots:>4} slot(s): rollout of {hosts} hosts took {:.1} min simulated (lower bound {:.1} min: max(ceil(hosts/slots) x {}s, poll + apply)); {requests} lock requests ({refused} refused, {:.1} per host), {:.0} requests/s on average; ran in {:?}",
        end.as_secs_f64() / 60.0,
        ideal / 60.0,
        APPLY.as_secs(),
        requests as f64 / hosts as f64,
        requests as f64 / end.as_secs_f64().max(1.0),
        t0.elapsed()
    );
}

fn main() {
    let hosts: usize = std::env::var("LEGER_SIM_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut out = String::new();
    manifest_sim(&rt, hosts, &mut out);
    let _ = writeln!(
        out,
        "FleetLock rollout, {hosts} hosts, each holding its slot {}s:",
        APPLY.as_secs()
    );
    for slots in [100, 500] {
        fleetlock_sim(&rt, hosts, slots, &mut out);
    }
    print!("{out}");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fleet-sim.txt");
    let _ = std::fs::write(target, &out);

    let mut c = Criterion::default().configure_from_args();
    idle_poll_bench(&rt, &mut c);
    c.final_summary();
}

/// One idle poll of the real manifest client (the unit cost behind the figures).
fn idle_poll_bench(rt: &tokio::runtime::Runtime, c: &mut Criterion) {
    let served = Arc::new(Served::default());
    publish(&served, 1, "one");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(Arc::clone(&served));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let state = tempfile::tempdir().unwrap();
    let mut source = ManifestSource::new(
        ManifestSourceSpec::new(&url),
        state.path(),
        Limits {
            max_file_size: 1 << 20,
            max_files: 100,
        },
    );
    source.fetch(None).unwrap();
    c.bench_function("fleet/idle_manifest_poll", |b| {
        b.iter(|| std::hint::black_box(source.fetch(None).unwrap()))
    });
}

//! The manifest source's costs: what an unchanged poll sends and receives (requests and
//! bytes, counted at a real HTTP server on 127.0.0.1, and its time), and the time to
//! verify a signed 100-app manifest (signature, parse, entry checks, every digest).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use criterion::{Criterion, criterion_group, criterion_main};
use leger_api_types::desired::ManifestSourceSpec;
use leger_api_types::manifest::{Latest, Manifest};
use leger_config::Limits;
use legerd::source::manifest::{ManifestSource, check_entries, manifest_for, verify_file};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Served {
    files: std::sync::Mutex<BTreeMap<String, Vec<u8>>>,
    requests: AtomicU64,
    bytes: AtomicU64,
}

async fn serve(State(s): State<Arc<Served>>, req: Request) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let Some(bytes) = s.files.lock().unwrap().get(&path).cloned() else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap();
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..16]);
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .body(Body::empty())
            .unwrap();
    }
    s.bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
    Response::builder()
        .header(header::ETAG, etag)
        .body(Body::from(bytes))
        .unwrap()
}

/// 100 apps with a container and an env file each.
fn apps(n: usize) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..n {
        files.insert(
            format!("app{i:03}/app{i:03}.container"),
            format!("[Container]\nImage=docker.io/library/nginx:1.27\nEnvironmentFile=app{i:03}.env\nPublishPort={}:80\n", 8000 + i)
                .into_bytes(),
        );
        files.insert(
            format!("app{i:03}/app{i:03}.env"),
            format!("APP={i}\n").into_bytes(),
        );
    }
    files
}

fn limits() -> Limits {
    Limits {
        max_file_size: 1024 * 1024,
        max_files: 10_000,
    }
}

fn signed_tree(files: &BTreeMap<String, Vec<u8>>) -> (minisign::KeyPair, Vec<u8>, String) {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let manifest = manifest_for(1, "2026-01-01T00:00:00Z".into(), files);
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let sig = minisign::sign(
        None,
        &kp.sk,
        std::io::Cursor::new(&bytes),
        Some("bench"),
        None,
    )
    .unwrap()
    .into_string();
    (kp, bytes, sig)
}

fn unchanged_poll(c: &mut Criterion) {
    let served = Arc::new(Served::default());
    let files = apps(100);
    let (kp, manifest, sig) = signed_tree(&files);
    {
        let mut map = served.files.lock().unwrap();
        for (name, bytes) in &files {
            map.insert(format!("v1/{name}"), bytes.clone());
        }
        map.insert("v1/manifest.json".into(), manifest);
        map.insert("v1/manifest.json.sig".into(), sig.into_bytes());
        let latest = Latest {
            version: 1,
            manifest_url: "v1/manifest.json".into(),
        };
        map.insert("latest.json".into(), serde_json::to_vec(&latest).unwrap());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(Arc::clone(&served));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let state = tempfile::tempdir().unwrap();
    let mut spec = ManifestSourceSpec::new(format!("http://{addr}/"));
    spec.public_keys = vec![kp.pk.to_base64()];
    let mut src = ManifestSource::new(spec, state.path(), limits());
    let first = src.fetch(None).unwrap();
    let (req0, bytes0) = (
        served.requests.load(Ordering::SeqCst),
        served.bytes.load(Ordering::SeqCst),
    );
    let idle = src.fetch(Some(&first.snapshot.revision)).unwrap();
    eprintln!(
        "manifest first install (100 apps, 200 files): {} requests, {} body bytes",
        first.stats.requests, first.stats.bytes
    );
    eprintln!(
        "manifest unchanged poll: {} request(s) at the server, {} answered 304, {} body bytes",
        served.requests.load(Ordering::SeqCst) - req0,
        idle.stats.not_modified,
        served.bytes.load(Ordering::SeqCst) - bytes0
    );
    let mut group = c.benchmark_group("manifest");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("unchanged_poll_100_apps", |b| {
        b.iter(|| black_box(src.fetch(Some(&first.snapshot.revision)).unwrap()))
    });
    group.finish();
}

fn verify_100_apps(c: &mut Criterion) {
    let files = apps(100);
    let (kp, manifest_bytes, sig) = signed_tree(&files);
    let pk = minisign_verify::PublicKey::from_base64(&kp.pk.to_base64()).unwrap();
    let limits = limits();
    c.bench_function("manifest/verify_100_apps", |b| {
        b.iter(|| {
            let sig = minisign_verify::Signature::decode(&sig).unwrap();
            pk.verify(&manifest_bytes, &sig, false).unwrap();
            let m: Manifest = serde_json::from_slice(&manifest_bytes).unwrap();
            check_entries(&m, &limits).unwrap();
            for f in &m.files {
                verify_file(f, &files[&f.name]).unwrap();
            }
            black_box(m)
        })
    });
}

criterion_group!(benches, unchanged_poll, verify_100_apps);
criterion_main!(benches);

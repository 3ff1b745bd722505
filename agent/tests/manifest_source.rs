//! The manifest source against a real HTTP server on 127.0.0.1 (axum, in-process),
//! which counts every request it answers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use leger_api_types::desired::{ManifestSourceSpec, ManifestVersion};
use leger_api_types::manifest::{Latest, NameProblem};
use leger_api_types::status::reason;
use leger_config::Limits;
use legerd::source::SourceError;
use legerd::source::manifest::{ManifestProblem, ManifestSource, manifest_for};
use sha2::{Digest, Sha256};

/// What the test server serves and how it misbehaves.
#[derive(Default)]
struct Served {
    files: Mutex<HashMap<String, Vec<u8>>>,
    requests: AtomicU32,
    not_modified: AtomicU32,
    bytes: AtomicU64,
    delay_ms: AtomicU64,
    /// Redirect `/latest.json` to this URL.
    redirect: Mutex<Option<String>>,
    last_auth: Mutex<Option<String>>,
}

async fn serve(State(s): State<Arc<Served>>, req: Request) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    *s.last_auth.lock().unwrap() = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let path = req.uri().path().trim_start_matches('/').to_owned();
    if path == "latest.json"
        && let Some(to) = s.redirect.lock().unwrap().clone()
    {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, to)
            .body(Body::empty())
            .unwrap();
    }
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
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .body(Body::empty())
            .unwrap();
    }
    s.bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
    Response::builder()
        .header(header::ETAG, HeaderValue::from_str(&etag).unwrap())
        .body(Body::from(bytes))
        .unwrap()
}

/// A server on its own runtime thread; dropping `stop` takes it down.
struct Server {
    served: Arc<Served>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        Server::start_on(Arc::new(Served::default()), "127.0.0.1:0".parse().unwrap())
    }

    fn start_on(served: Arc<Served>, addr: SocketAddr) -> Server {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let state = Arc::clone(&served);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(serve).with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = ready_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        Server {
            served,
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.served
            .files
            .lock()
            .unwrap()
            .insert(path.to_owned(), bytes.into());
    }

    fn requests(&self) -> u32 {
        self.served.requests.load(Ordering::SeqCst)
    }

    /// Publishes version `n` of `files` the way `legerctl publish` lays it out.
    fn publish(&self, n: u64, files: &[(&str, &[u8])], key: Option<&minisign::KeyPair>) {
        let map: BTreeMap<String, Vec<u8>> = files
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect();
        let manifest = manifest_for(n, "2026-01-01T00:00:00Z".into(), &map);
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        for (name, content) in &map {
            self.put(&format!("v{n}/{name}"), content.clone());
        }
        if let Some(kp) = key {
            self.put(&format!("v{n}/manifest.json.sig"), sign(kp, &bytes));
        }
        self.put(&format!("v{n}/manifest.json"), bytes);
        self.point_latest(n);
    }

    fn point_latest(&self, n: u64) {
        let latest = Latest {
            version: n,
            manifest_url: format!("v{n}/manifest.json"),
        };
        self.put("latest.json", serde_json::to_vec(&latest).unwrap());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sign(kp: &minisign::KeyPair, bytes: &[u8]) -> String {
    minisign::sign(
        Some(&kp.pk),
        &kp.sk,
        std::io::Cursor::new(bytes),
        Some("leger test"),
        None,
    )
    .unwrap()
    .into_string()
}

fn limits() -> Limits {
    Limits {
        max_file_size: 64 * 1024,
        max_files: 50,
    }
}

fn source(spec: ManifestSourceSpec, state: &tempfile::TempDir) -> ManifestSource {
    ManifestSource::new(spec, state.path(), limits()).with_timeout(Duration::from_secs(20))
}

fn problem(r: Result<legerd::source::manifest::ManifestFetch, SourceError>) -> ManifestProblem {
    match r {
        Err(e @ SourceError::Verification { .. }) => {
            assert_eq!(e.reason(), reason::VERIFICATION_FAILED);
            let SourceError::Verification { problem, .. } = e else {
                unreachable!()
            };
            problem
        }
        other => panic!("expected a verification failure, got {other:?}"),
    }
}

const WEB: &[u8] = b"[Container]\nImage=docker.io/library/nginx:1.27\n";
const ENV: &[u8] = b"MODE=prod\n";
const DB: &[u8] = b"[Volume]\n";

#[test]
fn manifest_first_install_fetches_every_file_once() {
    let server = Server::start();
    server.publish(
        1,
        &[
            ("web/web.container", WEB),
            ("web/web.env", ENV),
            ("db/db.volume", DB),
        ],
        None,
    );
    let state = tempfile::tempdir().unwrap();
    let mut src = source(ManifestSourceSpec::new(server.base()), &state);
    let f = src.fetch(None).unwrap();
    assert!(
        f.snapshot.revision.starts_with("v1@sha256:"),
        "{}",
        f.snapshot.revision
    );
    let manifest = &server.served.files.lock().unwrap()["v1/manifest.json"];
    assert_eq!(
        f.snapshot.revision,
        format!("v1@sha256:{}", hex::encode(Sha256::digest(manifest)))
    );
    assert_eq!(f.snapshot.files.len(), 3);
    assert_eq!(&*f.snapshot.files["web/web.container"], WEB);
    assert_eq!(&*f.snapshot.files["web/web.env"], ENV);
    assert_eq!((f.stats.requests, f.stats.files_downloaded), (5, 3));
    assert_eq!(server.requests(), 5);
    assert!(
        src.blob_dir()
            .join(hex::encode(Sha256::digest(WEB)))
            .exists()
    );
}

#[test]
fn manifest_unchanged_poll_is_one_request_answered_304() {
    let server = Server::start();
    server.publish(1, &[("web/web.container", WEB)], None);
    let state = tempfile::tempdir().unwrap();
    let mut src = source(ManifestSourceSpec::new(server.base()), &state);
    let first = src.fetch(None).unwrap();
    let before = server.requests();
    let bytes_before = server.served.bytes.load(Ordering::SeqCst);
    let again = src.fetch(Some(&first.snapshot.revision)).unwrap();
    assert_eq!(server.requests() - before, 1);
    assert_eq!(server.served.not_modified.load(Ordering::SeqCst), 1);
    assert_eq!(server.served.bytes.load(Ordering::SeqCst), bytes_before);
    assert_eq!(
        (
            again.stats.requests,
            again.stats.not_modified,
            again.stats.bytes
        ),
        (1, 1, 0)
    );
    assert_eq!(again.snapshot, first.snapshot);
}

#[test]
fn manifest_new_version_downloads_only_changed_files() {
    let server = Server::start();
    server.publish(1, &[("web/web.container", WEB), ("web/web.env", ENV)], None);
    let state = tempfile::tempdir().unwrap();
    let mut src = source(ManifestSourceSpec::new(server.base()), &state);
    let v1 = src.fetch(None).unwrap();
    server.publish(
        2,
        &[
            ("web/web.container", WEB),
            ("web/web.env", b"MODE=canary\n"),
        ],
        None,
    );
    let v2 = src.fetch(Some(&v1.snapshot.revision)).unwrap();
    assert!(v2.snapshot.revision.starts_with("v2@sha256:"));
    assert_eq!(&*v2.snapshot.files["web/web.env"], b"MODE=canary\n");
    // latest.json, manifest.json, and the one changed file.
    assert_eq!((v2.stats.requests, v2.stats.files_downloaded), (3, 1));
}

#[test]
fn manifest_tampered_file_is_refused_naming_both_digests() {
    let server = Server::start();
    server.publish(1, &[("web/web.container", WEB)], None);
    let tampered = b"[Container]\nImage=docker.io/library/nginx:6.66\n".to_vec();
    assert_eq!(tampered.len(), WEB.len());
    server.put("v1/web/web.container", tampered.clone());
    let state = tempfile::tempdir().unwrap();
    let mut src = source(ManifestSourceSpec::new(server.base()), &state);
    let p = problem(src.fetch(None));
    let text = p.to_string();
    assert!(text.contains("web/web.container"), "{text}");
    assert!(text.contains(&hex::encode(Sha256::digest(WEB))), "{text}");
    assert!(
        text.contains(&hex::encode(Sha256::digest(&tampered))),
        "{text}"
    );
    assert!(
        !src.blob_dir()
            .join(hex::encode(Sha256::digest(&tampered)))
            .exists()
    );

    // A longer file is cut at the declared size plus one and refused on size.
    server.put("v1/web/web.container", [WEB, b"more"].concat());
    assert!(matches!(
        problem(src.fetch(None)),
        ManifestProblem::Size { .. }
    ));
}

#[test]
fn manifest_tampered_file_keeps_the_verified_revision_on_later_polls() {
    let server = Server::start();
    server.publish(1, &[("web/web.container", WEB)], None);
    let state = tempfile::tempdir().unwrap();
    let mut src = source(ManifestSourceSpec::new(server.base()), &state);
    let v1 = src.fetch(None).unwrap();
    server.publish(2, &[("web/web.container", DB)], None);
    server.put("v2/web/web.container", b"[Volume]X".to_vec());
    assert!(matches!(
        problem(src.fetch(Some(&v1.snapshot.revision))),
        ManifestProblem::Digest { .. }
    ));
    // Still refused on the next poll: a failure never turns into a cached 304.
    assert!(matches!(
        problem(src.fetch(Some(&v1.snapshot.revision))),
        ManifestProblem::Digest { .. }
    ));
}

#[test]
fn manifest_signature_verifies_against_configured_key() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let other = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let server = Server::start();
    server.publish(1, &[("web/web.container", WEB)], Some(&kp));
    let state = tempfile::tempdir().unwrap();
    let mut spec = ManifestSourceSpec::new(server.base());
    spec.public_keys = vec![other.pk.to_base64(), kp.pk.to_base64()];
    let f = source(spec.clone(), &state).fetch(None).unwrap();
    assert_eq!(f.stats.requests, 4, "latest, manifest, sig, one file");

    // Signed by a key that is not configured.
    let mut wrong = spec.clone();
    wrong.public_keys = vec![other.pk.to_base64()];
    assert!(matches!(
        problem(source(wrong, &state).fetch(None)),
        ManifestProblem::BadSignature { keys: 1, .. }
    ));

    // The manifest changed after signing (an extra file listed).
    let mut bytes = server.served.files.lock().unwrap()["v1/manifest.json"].clone();
    bytes.extend_from_slice(b"\n");
    server.put("v1/manifest.json", bytes);
    assert!(matches!(
        problem(source(spec, &state).fetch(None)),
        ManifestProblem::BadSignature { .. }
    ));
}

#[test]
fn manifest_missing_signature_with_keys_set_is_refused() {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let server = Server::start();
    server.publish(1, &[("web/web.container", WEB)], None);
    let state = tempfile::tempdir().unwrap();
    let mut spec = ManifestSourceSpec::new(server.base());
    spec.public_keys = vec![kp.pk.to_base64()];
    let p = problem(source(spec, &state).fetch(None));
    assert!(matches!(p, ManifestProblem::MissingSignature { .. }), "{p}");
    assert!(p.to_string().contains("manifest.json.sig"), "{p}");
}

#[test]
fn manifest_downgrade_is_refused_unless_pinned() {
    let server = Server::start();
    server.publish(1, &[("web/web.container", WEB)], None);
    server.publish(2, &[("web/web.container", DB)], None);
    let state = tempfile::tempdir().unwrap();
    let mut src = source(ManifestSourceSpec::new(server.base()), &state);
    let v2 = src.fetch(None).unwrap();
    server.point_latest(1);
    let p = problem(src.fetch(Some(&v2.snapshot.revision)));
    assert_eq!(p, ManifestProblem::Downgrade { from: 2, to: 1 });
    // A fresh source (a restarted agent) refuses it too, from the applied revision.
    let p = problem(
        source(ManifestSourceSpec::new(server.base()), &state).fetch(Some(&v2.snapshot.revision)),
    );
    assert_eq!(p, ManifestProblem::Downgrade { from: 2, to: 1 });
    // A pin goes back on purpose, and polls its own manifest conditionally.
    let mut pinned = ManifestSourceSpec::new(server.base());
    pinned.version = ManifestVersion::Pinned(1);
    let mut src = source(pinned, &state);
    let v1 = src.fetch(Some(&v2.snapshot.revision)).unwrap();
    assert!(v1.snapshot.revision.starts_with("v1@"));
    assert_eq!(&*v1.snapshot.files["web/web.container"], WEB);
    let again = src.fetch(Some(&v1.snapshot.revision)).unwrap();
    assert_eq!((again.stats.requests, again.stats.not_modified), (1, 1));
}

#[test]
fn manifest_404_is_source_unavailable() {
    let server = Server::start();
    let state = tempfile::tempdir().unwrap();
    let e = source(ManifestSourceSpec::new(server.base()), &state)
        .fetch(None)
        .unwrap_err();
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE);
    assert!(e.to_string().contains("404"), "{e}");
}

#[test]
fn manifest_server_down_then_recovers() {
    let mut server = Server::start();
    server.publish(1, &[("web/web.container", WEB)], None);
    let served = Arc::clone(&server.served);
    let addr = server.addr;
    let state = tempfile::tempdir().unwrap();
    let mut src = source(ManifestSourceSpec::new(server.base()), &state);
    let v1 = src.fetch(None).unwrap();
    server.stop();
    let e = src.fetch(Some(&v1.snapshot.revision)).unwrap_err();
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE, "{e}");
    let server = Server::start_on(served, addr);
    server.publish(2, &[("web/web.container", DB)], None);
    let v2 = src.fetch(Some(&v1.snapshot.revision)).unwrap();
    assert!(v2.snapshot.revision.starts_with("v2@"));
}

#[test]
fn manifest_slow_server_times_out() {
    let server = Server::start();
    server.publish(1, &[("web/web.container", WEB)], None);
    server.served.delay_ms.store(10_000, Ordering::SeqCst);
    let state = tempfile::tempdir().unwrap();
    let mut src = ManifestSource::new(
        ManifestSourceSpec::new(server.base()),
        state.path(),
        limits(),
    )
    .with_timeout(Duration::from_millis(500));
    let t0 = std::time::Instant::now();
    let e = src.fetch(None).unwrap_err();
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE);
    assert!(e.to_string().contains("did not answer in time"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(9), "{:?}", t0.elapsed());
    server.served.delay_ms.store(0, Ordering::SeqCst);
}

#[test]
fn manifest_huge_responses_hit_the_limits() {
    let server = Server::start();
    server.put("latest.json", vec![b' '; 1024 * 1024]);
    let state = tempfile::tempdir().unwrap();
    let p = problem(source(ManifestSourceSpec::new(server.base()), &state).fetch(None));
    assert!(
        matches!(p, ManifestProblem::TooLarge { limit: 65536, .. }),
        "{p}"
    );

    // A file whose declared size is over limits.max_file_size is refused before download.
    server.publish(1, &[("web/big.env", &vec![b'x'; 70 * 1024])], None);
    let before = server.requests();
    let p = problem(source(ManifestSourceSpec::new(server.base()), &state).fetch(None));
    assert!(p.to_string().contains("web/big.env"), "{p}");
    assert_eq!(server.requests() - before, 2, "latest and manifest only");
}

#[test]
fn manifest_path_traversal_names_are_refused() {
    let server = Server::start();
    for (name, want) in [
        ("web/../../etc/cron.d/x", NameProblem::DotDot),
        ("/etc/passwd", NameProblem::Absolute),
        ("x.container", NameProblem::NoAppFolder),
    ] {
        server.publish(1, &[(name, ENV)], None);
        server.put("v1/etc/cron.d/x", ENV.to_vec());
        let state = tempfile::tempdir().unwrap();
        let before = server.requests();
        let p = problem(source(ManifestSourceSpec::new(server.base()), &state).fetch(None));
        assert_eq!(
            p,
            ManifestProblem::BadName {
                name: name.into(),
                problem: want
            }
        );
        assert_eq!(server.requests() - before, 2, "no file is downloaded");
    }
}

#[test]
fn manifest_unknown_type_and_non_utf8_quadlet_are_refused() {
    let server = Server::start();
    server.publish(1, &[("web/web.container", b"[Container]\n\xff\xfe")], None);
    let state = tempfile::tempdir().unwrap();
    let p = problem(source(ManifestSourceSpec::new(server.base()), &state).fetch(None));
    assert!(matches!(p, ManifestProblem::NonUtf8 { .. }), "{p}");

    let text = String::from_utf8(server.served.files.lock().unwrap()["v1/manifest.json"].clone())
        .unwrap()
        .replace("\"container\"", "\"script\"");
    server.put("v1/manifest.json", text);
    let p = problem(source(ManifestSourceSpec::new(server.base()), &state).fetch(None));
    assert!(
        matches!(p, ManifestProblem::Malformed { .. }) && p.to_string().contains("script"),
        "{p}"
    );
}

#[test]
fn manifest_cross_origin_redirect_is_refused_unless_allowed() {
    let target = Server::start();
    target.publish(1, &[("web/web.container", WEB)], None);
    let server = Server::start();
    *server.served.redirect.lock().unwrap() = Some(format!(
        "http://localhost:{}/latest.json",
        target.addr.port()
    ));
    let state = tempfile::tempdir().unwrap();
    let p = problem(source(ManifestSourceSpec::new(server.base()), &state).fetch(None));
    assert!(matches!(p, ManifestProblem::RedirectRefused { .. }), "{p}");
    let mut spec = ManifestSourceSpec::new(server.base());
    spec.allow_cross_origin_redirects = true;
    // Allowed: latest.json comes from the other host; its relative manifest_url follows it.
    let f = source(spec, &state).fetch(None).unwrap();
    assert!(f.snapshot.revision.starts_with("v1@"));
}

#[test]
fn manifest_bearer_token_is_sent_and_never_shown() {
    let server = Server::start();
    let state = tempfile::tempdir().unwrap();
    let token = state.path().join("token");
    std::fs::write(&token, "s3cr3t-token\n").unwrap();
    let mut spec = ManifestSourceSpec::new(server.base());
    spec.token_file = Some(token);
    let e = source(spec, &state).fetch(None).unwrap_err();
    assert_eq!(
        server.served.last_auth.lock().unwrap().as_deref(),
        Some("Bearer s3cr3t-token")
    );
    assert!(!format!("{e} {e:?}").contains("s3cr3t"), "{e:?}");
}

//! A smart-HTTP git server on 127.0.0.1: `git http-backend` run as a CGI per request,
//! behind a plain `TcpListener`. It counts requests by kind, so a test can assert that
//! an idle poll asks for refs and never for a pack.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Requests seen so far, by kind.
#[derive(Debug, Default)]
pub struct Counts {
    /// `GET …/info/refs?service=git-upload-pack`: the initial advertisement.
    pub advertisements: AtomicUsize,
    /// `POST …/git-upload-pack` carrying `command=ls-refs` (protocol v2).
    pub ls_refs: AtomicUsize,
    /// `POST …/git-upload-pack` carrying `command=fetch` (v2) or `want` lines (v0):
    /// a request for a pack.
    pub fetches: AtomicUsize,
    /// Requests refused with 401.
    pub unauthorized: AtomicUsize,
    /// Bytes read from clients: request lines, headers and bodies as sent.
    pub request_bytes: AtomicU64,
    /// Bytes written to clients: status lines, headers and bodies.
    pub response_bytes: AtomicU64,
    /// Time from a request's last byte read to its answer's last byte written, in ns
    /// (the `git http-backend` run included): the fleet bench's server latency.
    pub handler_ns: Mutex<Vec<u64>>,
}

/// The server; it stops when dropped.
#[derive(Debug)]
pub struct GitHttpServer {
    addr: SocketAddr,
    /// Request counters, shared with the connection threads.
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone)]
struct Config {
    root: PathBuf,
    /// The expected `Authorization` header value, when basic auth is on.
    authorization: Option<String>,
    counts: Arc<Counts>,
}

impl GitHttpServer {
    /// Serves every repository under `root` without authentication.
    pub fn start(root: &Path) -> Self {
        Self::spawn(root, None)
    }

    /// Serves `root`, answering 401 unless the request carries these basic-auth credentials.
    pub fn start_with_basic_auth(root: &Path, user: &str, password: &str) -> Self {
        let token = base64(format!("{user}:{password}").as_bytes());
        Self::spawn(root, Some(format!("Basic {token}")))
    }

    fn spawn(root: &Path, authorization: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let config = Config {
            root: root.to_owned(),
            authorization,
            counts: counts.clone(),
        };
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let config = config.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream, &config) {
                        eprintln!("git_http: {e}");
                    }
                });
            }
        });
        GitHttpServer {
            addr,
            counts,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>/<repo>`, `repo` relative to the served root.
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }

    /// Pack requests so far.
    pub fn fetches(&self) -> usize {
        self.counts.fetches.load(Ordering::SeqCst)
    }

    /// Ref listings so far (advertisements plus v2 `ls-refs`).
    pub fn ref_listings(&self) -> usize {
        self.counts.advertisements.load(Ordering::SeqCst)
            + self.counts.ls_refs.load(Ordering::SeqCst)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>, counts: &Counts) -> std::io::Result<Request> {
    let mut read = 0;
    let mut line = String::new();
    read += reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = target
        .split_once('?')
        .map(|(p, q)| (p.to_owned(), q.to_owned()))
        .unwrap_or((target.clone(), String::new()));
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        read += reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            read += reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            read += chunk.len();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().map_err(std::io::Error::other)?;
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        read += len;
    }
    counts
        .request_bytes
        .fetch_add(read as u64, Ordering::Relaxed);
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn serve(stream: TcpStream, config: &Config) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let req = read_request(&mut reader, &config.counts)?;
    let started = std::time::Instant::now();
    let mut out = stream;

    if let Some(expected) = &config.authorization
        && req.headers.get("authorization") != Some(expected)
    {
        config.counts.unauthorized.fetch_add(1, Ordering::SeqCst);
        out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }

    count(&req, &config.counts);

    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &config.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &config.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", &req.path)
        .env("QUERY_STRING", &req.query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        // http-backend inflates gzip request bodies itself.
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = req.headers.get(header) {
            cmd.env(var, v);
        }
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let body = req.body;
    let writer = std::thread::spawn(move || stdin.write_all(&body));
    let output = child.wait_with_output()?;
    writer.join().expect("stdin writer")?;

    let cgi = output.stdout;
    let split = cgi
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| cgi.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .unwrap_or((cgi.len(), 0));
    let (head, body) = (&cgi[..split.0], &cgi[split.0 + split.1..]);
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(head).lines() {
        if let Some(s) = line.strip_prefix("Status:") {
            status = s.trim().to_owned();
        } else if !line.is_empty() {
            headers.push(line.to_owned());
        }
    }
    write!(response, "HTTP/1.1 {status}\r\n")?;
    for h in headers {
        write!(response, "{h}\r\n")?;
    }
    write!(
        response,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    response.extend_from_slice(body);
    // Counted before the write: a client may act on the answer's last byte before
    // this thread runs again, and a test reading the count then must see it.
    let counts = &config.counts;
    counts
        .response_bytes
        .fetch_add(response.len() as u64, Ordering::SeqCst);
    out.write_all(&response)?;
    out.flush()?;
    counts
        .handler_ns
        .lock()
        .unwrap()
        .push(started.elapsed().as_nanos() as u64);
    Ok(())
}

fn count(req: &Request, counts: &Counts) {
    if req.method == "GET" && req.path.ends_with("/info/refs") {
        counts.advertisements.fetch_add(1, Ordering::SeqCst);
    } else if req.method == "POST" && req.path.ends_with("/git-upload-pack") {
        let body = &req.body;
        let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        if has(b"command=ls-refs") {
            counts.ls_refs.fetch_add(1, Ordering::SeqCst);
        } else if has(b"command=fetch") || has(b"want ") {
            counts.fetches.fetch_add(1, Ordering::SeqCst);
        } else {
            panic!(
                "git_http: unrecognised upload-pack request (compressed body?): {:?}",
                String::from_utf8_lossy(&body[..body.len().min(64)])
            );
        }
    }
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_known_values() {
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(base64(b"ab"), "YWI=");
}

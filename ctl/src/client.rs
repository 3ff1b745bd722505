//! A small client for legerd's API socket, with errors that say what to do.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use leger_api_types::ApiError;
use leger_config::Mode;

/// A generous timeout: legerd answers from memory, but the host may be loaded.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Talks to legerd over its socket.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    socket: PathBuf,
    mode: Mode,
}

impl Client {
    /// A client for the socket at `socket`; `mode` picks the start hint in errors.
    pub fn new(socket: PathBuf, mode: Mode) -> Result<Self> {
        let http = reqwest::Client::builder()
            .unix_socket(socket.clone())
            .timeout(TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, socket, mode })
    }

    /// GETs a path and returns the body.
    pub async fn get(&self, path: &str) -> Result<String> {
        self.send(self.http.get(url(path)), path).await
    }

    /// GETs a path, waiting up to `timeout` (a plan waits for the running pass).
    pub async fn get_within(&self, path: &str, timeout: Duration) -> Result<String> {
        self.send(self.http.get(url(path)).timeout(timeout), path)
            .await
    }

    /// POSTs to a path and returns the body.
    pub async fn post(&self, path: &str) -> Result<String> {
        self.send(self.http.post(url(path)), path).await
    }

    /// POSTs a JSON body to a path and returns the answer, waiting up to `timeout`
    /// (a restore waits for the current pass and for volume imports).
    pub async fn post_json(&self, path: &str, body: String, timeout: Duration) -> Result<String> {
        let req = self
            .http
            .post(url(path))
            .header("content-type", "application/json")
            .timeout(timeout)
            .body(body);
        self.send(req, path).await
    }

    /// PUTs a body to a path and returns the answer.
    pub async fn put(&self, path: &str, body: Vec<u8>) -> Result<String> {
        self.send(self.http.put(url(path)).body(body), path).await
    }

    /// DELETEs a path and returns the answer.
    pub async fn delete(&self, path: &str) -> Result<String> {
        self.send(self.http.delete(url(path)), path).await
    }

    async fn send(&self, req: reqwest::RequestBuilder, path: &str) -> Result<String> {
        if !self.socket.exists() {
            return Err(self.not_running("no socket at"));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.explain(e)),
        };
        let status = resp.status();
        let body = resp
            .text()
            .await
            .with_context(|| format!("cannot read legerd's answer to {path}"))?;
        if !status.is_success() {
            let msg = serde_json::from_str::<ApiError>(&body)
                .map(|e| e.error)
                .unwrap_or(body);
            return Err(anyhow!("legerd refused {path} ({status}): {msg}"));
        }
        Ok(body)
    }

    fn explain(&self, e: reqwest::Error) -> anyhow::Error {
        match io_kind(&e) {
            Some(io::ErrorKind::NotFound) => self.not_running("no socket at"),
            Some(io::ErrorKind::ConnectionRefused) => {
                self.not_running("nothing listening on the socket at")
            }
            Some(io::ErrorKind::PermissionDenied) => anyhow!(
                "permission denied on {}: reading legerd's status needs root or membership in group `leger` (`usermod -aG leger $USER`, then log in again)",
                self.socket.display()
            ),
            _ => anyhow::Error::new(e).context(format!(
                "cannot talk to legerd at {}",
                self.socket.display()
            )),
        }
    }

    fn not_running(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "legerd is not running ({what} {}): start it with `{}`",
            self.socket.display(),
            start_hint(self.mode)
        )
    }
}

/// The command that starts legerd in a mode.
pub fn start_hint(mode: Mode) -> &'static str {
    match mode {
        Mode::System => "systemctl start legerd",
        Mode::User => "systemctl --user start legerd",
    }
}

/// The host part is ignored on a Unix socket; `legerd` reads well in logs.
fn url(path: &str) -> String {
    format!("http://legerd{path}")
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

//! A setec client (tailscale/setec): `POST {url}/api/get` with `{"Name"}` answers
//! `{"Value":"<base64>","Version":N}`; with `"Version":N,"UpdateIfChanged":true` it
//! answers 304 while N is still the active version, so a poll moves no secret bytes.
//! Every call carries `Sec-X-Tailscale-No-Browsers: setec`, which setec requires.

use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{SecretError, SecretValue};

/// The header setec demands on every call, so a browser cannot be tricked into one.
pub const NO_BROWSERS_HEADER: &str = "Sec-X-Tailscale-No-Browsers";

/// The last value seen for a name, to poll conditionally.
#[derive(Debug, Clone)]
pub struct Cached {
    /// setec's version number.
    pub version: u64,
    /// The value of that version.
    pub value: SecretValue,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetRequest<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    update_if_changed: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetResponse {
    value: super::SecretText,
    version: u64,
}

/// Reads a bearer token file, trimmed, on the blocking pool (a file on a slow or
/// network disk must not stall an async worker).
pub async fn read_token(path: &Path) -> Result<Zeroizing<String>, SecretError> {
    let path = path.to_owned();
    crate::pass::blocking::run(move || {
        let t = Zeroizing::new(std::fs::read_to_string(&path).map_err(|source| {
            SecretError::TokenFile {
                path: path.clone(),
                source,
            }
        })?);
        Ok(Zeroizing::new(t.trim().to_owned()))
    })
    .await
}

/// Gets `name`; `Ok(None)` when setec does not know it.
pub async fn get(
    http: &reqwest::Client,
    url: &str,
    token_file: Option<&Path>,
    name: &str,
    cached: Option<&Cached>,
) -> Result<Option<Cached>, SecretError> {
    let fail = |reason: String| SecretError::Remote {
        source_kind: "setec",
        url: url.to_owned(),
        reason,
    };
    let body = GetRequest {
        name,
        version: cached.map(|c| c.version),
        update_if_changed: cached.is_some(),
    };
    let mut req = http
        .post(format!("{url}/api/get"))
        .header(NO_BROWSERS_HEADER, "setec")
        .json(&body);
    if let Some(path) = token_file {
        let token = read_token(path).await?;
        req = req.bearer_auth(token.as_str());
    }
    let resp = req
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {}", without_url(&e))))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return match cached {
            Some(c) => Ok(Some(c.clone())),
            None => Err(fail("answered 304 to an unconditional get".into())),
        };
    }
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let bytes = read_answer(resp, name, fail).await?;
    let parsed: GetResponse = serde_json::from_slice(&bytes).map_err(|_| {
        fail(format!(
            "the answer for {name} is not {{\"Value\",\"Version\"}} JSON"
        ))
    })?;
    let value = base64::engine::general_purpose::STANDARD
        .decode(parsed.value.0.as_bytes())
        .map_err(|_| fail(format!("the Value for {name} is not base64")))?;
    Ok(Some(Cached {
        version: parsed.version,
        value: SecretValue::from(value),
    }))
}

/// A reqwest error's text without the URL (which the error already names once).
/// Reads a secret server's answer: the body, zeroized on drop, or for a non-success
/// status an error quoting at most 200 characters of it. Error bodies of setec and
/// leger.run describe the request, never a value.
pub(super) async fn read_answer(
    resp: reqwest::Response,
    name: &str,
    fail: impl Fn(String) -> SecretError,
) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let status = resp.status();
    let bytes = Zeroizing::new(
        resp.bytes()
            .await
            .map_err(|e| fail(format!("reading the answer failed: {}", without_url(&e))))?
            .to_vec(),
    );
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        return Err(fail(format!(
            "answered {status} for {name}: {}",
            text.trim().chars().take(200).collect::<String>()
        )));
    }
    Ok(bytes)
}

pub(super) fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// An in-process setec server for tests: the documented API with versions, the 304,
/// the header check and an optional bearer token.
#[cfg(test)]
pub(crate) mod testserver {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use base64::Engine;
    use serde::Deserialize;

    /// Name → versions (1-based), the last one active; plus the calls seen.
    #[derive(Debug, Default)]
    pub struct Setec {
        pub secrets: BTreeMap<String, Vec<Vec<u8>>>,
        pub token: Option<String>,
        pub not_modified: usize,
        pub full: usize,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct Req {
        name: String,
        #[serde(default)]
        version: u64,
        #[serde(default)]
        update_if_changed: bool,
    }

    async fn get(
        State(s): State<Arc<Mutex<Setec>>>,
        headers: HeaderMap,
        Json(req): Json<Req>,
    ) -> Response {
        let mut s = s.lock().unwrap();
        if headers
            .get(super::NO_BROWSERS_HEADER)
            .and_then(|v| v.to_str().ok())
            != Some("setec")
        {
            return (StatusCode::FORBIDDEN, "browsers not allowed").into_response();
        }
        if let Some(t) = &s.token {
            let want = format!("Bearer {t}");
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
                return (StatusCode::UNAUTHORIZED, "access denied").into_response();
            }
        }
        let Some(versions) = s.secrets.get(&req.name).cloned() else {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        };
        let active = versions.len() as u64;
        if req.update_if_changed && req.version == active {
            s.not_modified += 1;
            return StatusCode::NOT_MODIFIED.into_response();
        }
        s.full += 1;
        let v = &versions[(active - 1) as usize];
        Json(serde_json::json!({
            "Value": base64::engine::general_purpose::STANDARD.encode(v),
            "Version": active,
        }))
        .into_response()
    }

    /// Serves on 127.0.0.1; returns the base URL.
    pub async fn start(state: Arc<Mutex<Setec>>) -> String {
        let app = axum::Router::new()
            .route("/api/get", axum::routing::post(get))
            .with_state(state);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::testserver::{Setec, start};
    use super::*;

    #[tokio::test]
    async fn setec_gets_then_polls_with_304() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok\n").unwrap();
        let state = Arc::new(Mutex::new(Setec {
            token: Some("tok".into()),
            ..Setec::default()
        }));
        state
            .lock()
            .unwrap()
            .secrets
            .insert("prod/db".into(), vec![b"one".to_vec()]);
        let url = start(Arc::clone(&state)).await;
        let http = reqwest::Client::new();

        let c = get(&http, &url, Some(&token), "prod/db", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((c.version, c.value.expose()), (1, &b"one"[..]));
        let again = get(&http, &url, Some(&token), "prod/db", Some(&c))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.version, 1);
        assert_eq!(state.lock().unwrap().not_modified, 1);

        state
            .lock()
            .unwrap()
            .secrets
            .get_mut("prod/db")
            .unwrap()
            .push(b"two".to_vec());
        let next = get(&http, &url, Some(&token), "prod/db", Some(&c))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((next.version, next.value.expose()), (2, &b"two"[..]));

        assert!(
            get(&http, &url, Some(&token), "nope", None)
                .await
                .unwrap()
                .is_none()
        );
        let e = get(&http, &url, None, "prod/db", None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("401") && e.contains(&url), "{e}");
    }

    #[tokio::test]
    async fn setec_down_is_an_error_naming_the_url() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let e = get(&reqwest::Client::new(), &url, None, "db", None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("setec source") && e.contains(&url), "{e}");
    }
}

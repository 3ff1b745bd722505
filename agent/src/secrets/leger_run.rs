//! A leger.run secrets client: `GET {base}/secrets/get/{name}` with a bearer token.
//!
//! The answer is JSON with the plaintext value (the service decrypts server-side):
//! `{"name","value","version"}`, either bare or wrapped as `{"data":{...}}`. 404 means
//! the service does not hold the name.

use std::path::Path;

use serde::Deserialize;

use super::setec::{read_token, without_url};
use super::{SecretError, SecretValue};

#[derive(Deserialize)]
struct Item {
    value: super::SecretText,
    #[serde(default)]
    version: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Wrapped { data: Item },
    Bare(Item),
}

/// Gets `name`: `Ok(None)` when the service does not hold it.
pub async fn get(
    http: &reqwest::Client,
    url: &str,
    token_file: &Path,
    name: &str,
) -> Result<Option<(SecretValue, String)>, SecretError> {
    let fail = |reason: String| SecretError::Remote {
        source_kind: "leger-run",
        url: url.to_owned(),
        reason,
    };
    let token = read_token(token_file).await?;
    let resp = http
        .get(format!("{url}/secrets/get/{name}"))
        .bearer_auth(token.as_str())
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {}", without_url(&e))))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let bytes = super::setec::read_answer(resp, name, fail).await?;
    let item = match serde_json::from_slice::<Answer>(&bytes) {
        Ok(Answer::Wrapped { data }) | Ok(Answer::Bare(data)) => data,
        Err(_) => {
            return Err(fail(format!(
                "the answer for {name} is not {{\"value\",\"version\"}} JSON"
            )));
        }
    };
    let version = match &item.version {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "-".to_owned(),
    };
    Ok(Some((
        SecretValue::from(item.value.0.as_bytes().to_vec()),
        version,
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};

    use super::*;

    async fn serve(secrets: BTreeMap<String, String>) -> String {
        async fn handler(
            State(s): State<Arc<BTreeMap<String, String>>>,
            headers: HeaderMap,
            UrlPath(name): UrlPath<String>,
        ) -> Response {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer tok") {
                return (StatusCode::UNAUTHORIZED, "{\"error\":\"unauthorized\"}").into_response();
            }
            match s.get(&name) {
                Some(v) => axum::Json(serde_json::json!({
                    "success": true,
                    "data": {"name": name, "value": v, "version": 3}
                }))
                .into_response(),
                None => (StatusCode::NOT_FOUND, "{\"error\":\"not found\"}").into_response(),
            }
        }
        let app = axum::Router::new()
            .route("/secrets/get/{name}", axum::routing::get(handler))
            .with_state(Arc::new(secrets));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn leger_run_gets_with_bearer_token() {
        let url = serve(BTreeMap::from([("api-key".to_owned(), "k-123".to_owned())])).await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok\n").unwrap();
        let http = reqwest::Client::new();
        let (v, version) = get(&http, &url, &token, "api-key").await.unwrap().unwrap();
        assert_eq!((v.expose(), version.as_str()), (&b"k-123"[..], "3"));
        assert!(get(&http, &url, &token, "other").await.unwrap().is_none());
        std::fs::write(&token, "wrong").unwrap();
        let e = get(&http, &url, &token, "api-key")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("401") && e.contains("leger-run"), "{e}");
        let e = get(&http, &url, &dir.path().join("missing"), "api-key")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("token_file"), "{e}");
    }
}

//! A small fleet server for the tests: a FleetLock server and a deployment-report sink.
//!
//! No FleetLock server is packaged in the registries here, so this one follows the
//! protocol exactly as zincati, airlock and fleetlock speak it: `POST /v1/pre-reboot`
//! and `POST /v1/steady-state` with the header `fleet-lock-protocol: true` and the body
//! `{"client_params":{"id","group"}}`; slots per group; a re-entrant pre-reboot for a
//! holder; 409 with `{"kind","value"}` when every slot is taken. Every decision goes
//! into a log, so a test can check that each host restarted inside its own slot.
//!
//! It also accepts `POST /report` (deployment reports, bearer token checked) and
//! serves what it saw at `GET /log`, `GET /holders` and `GET /reports`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One decision of the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u128,
    /// `grant`, `regrant` (a holder asked again), `refuse`, `release`, `release_unheld`.
    pub op: String,
    /// The host.
    pub id: String,
    /// The group.
    pub group: String,
}

/// What the server keeps.
#[derive(Debug, Default)]
pub struct FleetServerState {
    /// Slots per group when a group is first seen.
    pub slots: usize,
    /// Holders per group.
    pub holders: BTreeMap<String, Vec<String>>,
    /// Every decision, in order.
    pub log: Vec<LockEvent>,
    /// Reports received, in order.
    pub reports: Vec<Value>,
    /// The bearer token reports must carry, if any.
    pub report_token: Option<String>,
    /// Requests refused for breaking the protocol.
    pub protocol_errors: usize,
}

/// Shared state handle.
pub type Shared = Arc<Mutex<FleetServerState>>;

/// A fresh state with `slots` slots per group.
pub fn state(slots: usize, report_token: Option<String>) -> Shared {
    Arc::new(Mutex::new(FleetServerState {
        slots,
        report_token,
        ..FleetServerState::default()
    }))
}

/// The server's routes.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/pre-reboot", post(pre_reboot))
        .route("/v1/steady-state", post(steady_state))
        .route("/report", post(report))
        .route("/log", get(log))
        .route("/holders", get(holders))
        .route("/reports", get(reports))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: Shared) {
    axum::serve(listener, router(state))
        .await
        .expect("the fleet test server runs");
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn error(status: StatusCode, kind: &str, value: String) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "kind": kind, "value": value })))
}

type Answer = (StatusCode, Json<Value>);

/// Checks the header and body; returns (id, group).
fn params(state: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<(String, String), Answer> {
    let refuse = |kind: &str, value: String| {
        state.lock().expect("state").protocol_errors += 1;
        Err(error(StatusCode::BAD_REQUEST, kind, value))
    };
    if headers
        .get("fleet-lock-protocol")
        .and_then(|v| v.to_str().ok())
        != Some("true")
    {
        return refuse(
            "missing_header",
            "header fleet-lock-protocol: true is required".into(),
        );
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return refuse("bad_body", format!("body is not JSON: {e}")),
    };
    let id = v["client_params"]["id"].as_str().unwrap_or_default();
    let group = v["client_params"]["group"].as_str().unwrap_or_default();
    if id.is_empty() || group.is_empty() {
        return refuse(
            "bad_body",
            "client_params.id and client_params.group are required".into(),
        );
    }
    Ok((id.to_owned(), group.to_owned()))
}

async fn pre_reboot(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let (id, group) = match params(&state, &headers, &body) {
        Ok(p) => p,
        Err(a) => return a,
    };
    let mut s = state.lock().expect("state");
    let slots = s.slots;
    let holders = s.holders.entry(group.clone()).or_default();
    let (op, answer) = if holders.contains(&id) {
        ("regrant", (StatusCode::OK, Json(json!({}))))
    } else if holders.len() >= slots {
        let value = format!(
            "all {slots} slots of group {group} are taken (holders: {})",
            holders.join(", ")
        );
        ("refuse", error(StatusCode::CONFLICT, "failed_lock", value))
    } else {
        holders.push(id.clone());
        ("grant", (StatusCode::OK, Json(json!({}))))
    };
    s.log.push(LockEvent {
        at_ms: now_ms(),
        op: op.into(),
        id,
        group,
    });
    answer
}

async fn steady_state(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    let (id, group) = match params(&state, &headers, &body) {
        Ok(p) => p,
        Err(a) => return a,
    };
    let mut s = state.lock().expect("state");
    let holders = s.holders.entry(group.clone()).or_default();
    let before = holders.len();
    holders.retain(|h| *h != id);
    let op = if holders.len() < before {
        "release"
    } else {
        "release_unheld"
    };
    s.log.push(LockEvent {
        at_ms: now_ms(),
        op: op.into(),
        id,
        group,
    });
    (StatusCode::OK, Json(json!({})))
}

async fn report(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let mut s = state.lock().expect("state");
    if let Some(token) = &s.report_token {
        let want = format!("Bearer {token}");
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return StatusCode::UNAUTHORIZED;
        }
    }
    s.reports.push(body);
    StatusCode::NO_CONTENT
}

async fn log(State(state): State<Shared>) -> Json<Vec<LockEvent>> {
    Json(state.lock().expect("state").log.clone())
}

async fn holders(State(state): State<Shared>) -> Json<BTreeMap<String, Vec<String>>> {
    Json(state.lock().expect("state").holders.clone())
}

async fn reports(State(state): State<Shared>) -> Json<Vec<Value>> {
    Json(state.lock().expect("state").reports.clone())
}

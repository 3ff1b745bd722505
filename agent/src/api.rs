//! legerd's local API: HTTP/JSON on a Unix socket, for `legerctl`.
//!
//! A Unix socket rather than TCP because the kernel then tells who is calling: the
//! socket is mode 0660, owned by root and group `leger`, and every request is also
//! checked against the caller's `SO_PEERCRED` credentials ([`crate::access`]): reading
//! needs group `leger`, changing anything group `leger-admin`. Every change is a journal
//! event with the caller's uid, gid and pid ([`crate::journal::api_change`]). Nothing here
//! changes the host behind the reconcile loop's back: a restore is a request the loop
//! runs between passes.
//!
//! **Architecture invariant:** handlers never block the runtime. Status comes from a
//! `watch` channel, history and backup lists from disk inside `spawn_blocking`,
//! reconcile requests go through `try_send`, restores and plans through a channel to the loop.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::Path as UrlPath;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use leger_api_types::{
    ApiError, BackupInfo, IdentityResponse, PassRecord, ReconcileResponse, RestoreRequest,
    RestoreResponse, SecretInfo, SecretSetResponse, StatusDocument,
};
use leger_api_types::{RevisionInfo, StagedChange};
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use crate::access::{AccessPolicy, Caller, Role};
use crate::backup::{BackupError, Backups, RestoreJob};
use crate::pass::preview::{PlanJob, PreviewError};
use crate::revisions::RevisionStore;
use crate::secrets::{NodeIdentity, SecretValue, validate_name};
use crate::store::Store;

/// How many passes `GET /v1/history` returns without `?limit=`.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;
/// The largest `?limit=` accepted, so one request cannot make legerd read the whole table.
pub const MAX_HISTORY_LIMIT: usize = 1000;
/// The largest request body accepted, in bytes. The only bodies are a secret value and a
/// small JSON document; podman refuses secrets over 512,000 bytes, so a larger body is a
/// mistake or an attack, refused before it is buffered whole.
pub const MAX_BODY_BYTES: usize = 512_000;

/// What the handlers need from the rest of legerd.
#[derive(Debug, Clone)]
pub struct ApiContext {
    /// The latest status document, published by the reconcile loop after every change.
    pub status: watch::Receiver<StatusDocument>,
    /// The store, for history. Shared with the reconcile loop, hence the mutex.
    pub store: Arc<Mutex<Store>>,
    /// Asks the reconcile loop for a pass; a bounded queue of pending requests.
    pub reconcile: mpsc::Sender<()>,
    /// The node identity, for the secrets endpoints; `None` answers them with 503.
    pub identity: Option<Arc<NodeIdentity>>,
    /// In staged mode, what applying the staged revision would do.
    pub staged: watch::Receiver<Option<StagedChange>>,
    /// legerd's revision store, to say which revisions can be pinned.
    pub revisions: Option<RevisionStore>,
    /// Backups and restores; `None` answers them with 503.
    pub backups: Option<BackupsApi>,
    /// Who may read and who may write, checked on every request.
    pub access: AccessPolicy,
    /// The fleet gate, for `legerctl fleet release`; `None` answers with 503.
    pub fleet: Option<Arc<crate::fleet::FleetGate>>,
    /// Plan requests to the controller loop (`legerctl plan`); `None` answers with 503.
    pub plan: Option<mpsc::Sender<PlanJob>>,
}

/// The credentials of the connection a request came on, taken when it was accepted.
#[derive(Debug, Clone)]
pub struct Peer(pub Option<Caller>);

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        Peer(Caller::of_stream(stream.io()))
    }
}

/// What a write request acted on, when the URL does not say it (a restore's app and
/// backup are in its body). Handlers put it on the response; the audit event reads it.
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// What the backup endpoints need.
#[derive(Debug, Clone)]
pub struct BackupsApi {
    /// The backup folder (`<state>/backups`), read for `GET /v1/backups`.
    pub backups: Backups,
    /// Restore requests to the controller loop, which runs them between passes.
    pub restore: mpsc::Sender<RestoreJob>,
}

/// Binds the API socket at `path`, ready for [`serve`].
///
/// Creates the parent directory (0755) if needed and removes a stale socket left by a
/// crashed legerd; a socket another process still answers on is an error, so two
/// legerds cannot steal each other's socket. The socket gets mode 0660 and, when `group`
/// is given, that group, looked up in `/etc/group`. A group that does not exist is
/// logged as a warning: the socket still works for root.
pub fn bind_socket(path: &Path, group: Option<&str>) -> io::Result<UnixListener> {
    let listener = crate::unix_socket::bind(path, "API socket", "paths.socket", 0o660)?;
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("cannot {what} for API socket {}: {e}", path.display()),
        )
    };
    if let Some(group) = group {
        match lookup_group(group, Path::new("/etc/group"))? {
            Some(gid) => rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|e| ctx(&format!("chown to group {group}"), e.into()))?,
            None => tracing::warn!(
                socket = %path.display(),
                group,
                "group not found in /etc/group; only root can use the API socket (create the group or set api.socket_group)"
            ),
        }
    }
    Ok(listener)
}

/// Finds a group's id in a `group(5)` file.
pub fn lookup_group(name: &str, group_file: &Path) -> io::Result<Option<u32>> {
    let text = match std::fs::read_to_string(group_file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", group_file.display()),
            ));
        }
    };
    Ok(text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let n = fields.next()?;
        let _password = fields.next()?;
        let gid = fields.next()?;
        (n == name).then(|| gid.parse().ok()).flatten()
    }))
}

/// The API's routes, without a listener, so tests and `serve` share them.
pub fn router(ctx: ApiContext) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/history", get(history))
        .route("/v1/history/summary", get(history_summary))
        .route("/v1/history/{id}", get(history_pass))
        .route("/v1/reconcile", post(reconcile))
        .route("/v1/staged", get(staged))
        .route("/v1/plan", get(plan))
        .route("/v1/revisions", get(revisions))
        .route("/v1/revisions/{revision}/retry", post(retry_revision))
        .route("/v1/identity", get(identity))
        .route("/v1/secrets", get(list_secrets))
        .route("/v1/secrets/{name}", put(set_secret).delete(remove_secret))
        .route("/v1/backups", get(list_backups))
        .route("/v1/restore", post(restore))
        .route("/v1/fleet/release", post(fleet_release))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

/// The route of a request path and the target it names, for the audit event:
/// `/v1/secrets/db-pass` is route `/v1/secrets/{name}` on target `db-pass`,
/// `/v1/revisions/abc/retry` is `/v1/revisions/{revision}/retry` on `abc`, and a path
/// with nothing in it to name (`/v1/reconcile`, `/v1/fleet/release`) is its own route
/// with target `-`.
pub fn route_and_target(path: &str) -> (String, String) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let named = |route: &str, target: &str| (route.to_owned(), target.to_owned());
    match parts.as_slice() {
        ["v1", "secrets", name] if !name.is_empty() => named("/v1/secrets/{name}", name),
        ["v1", "revisions", revision, "retry"] if !revision.is_empty() => {
            named("/v1/revisions/{revision}/retry", revision)
        }
        ["v1", "history", id] if !id.is_empty() && *id != "summary" => {
            named("/v1/history/{id}", id)
        }
        _ => (path.to_owned(), "-".to_owned()),
    }
}

/// Checks every request against the caller's credentials, and writes the audit event of
/// every write request (allowed or refused).
async fn authorize(State(ctx): State<ApiContext>, request: Request, next: Next) -> Response {
    let role = Role::of(request.method());
    let (route, path) = route_and_target(request.uri().path());
    let endpoint = format!("{} {route}", request.method());
    // Absent when the router is served without connect info: refused like a missing
    // credential, never let through.
    let caller = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .and_then(|ConnectInfo(Peer(c))| c.clone());
    let Some(caller) = caller else {
        tracing::warn!(endpoint, "refused a request without peer credentials");
        return ApiFailure(
            StatusCode::FORBIDDEN,
            "permission denied: legerd could not read the caller's credentials".to_owned(),
        )
        .into_response();
    };
    if let Err(denied) = ctx.access.check(&caller, role) {
        if role == Role::Write {
            crate::journal::api_change(&caller, &endpoint, &path, "denied", 403);
        }
        return ApiFailure(StatusCode::FORBIDDEN, denied.0).into_response();
    }
    let response = next.run(request).await;
    if role == Role::Write {
        let target = response
            .extensions()
            .get::<AuditTarget>()
            .map_or(path, |t| t.0.clone());
        let status = response.status();
        let outcome = if status.is_success() { "ok" } else { "failed" };
        crate::journal::api_change(&caller, &endpoint, &target, outcome, status.as_u16());
    }
    response
}

/// Serves the API on `listener` until `shutdown` completes, then lets requests in
/// flight finish, removes the socket file, and returns.
pub async fn serve(
    listener: UnixListener,
    ctx: ApiContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let path = listener.local_addr()?.as_pathname().map(Path::to_path_buf);
    axum::serve(
        listener,
        router(ctx).into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    // Remove the socket so `legerctl` reports "not running" rather than "refused".
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// An error answer: a status code and an [`ApiError`] body.
#[derive(Debug)]
struct ApiFailure(StatusCode, String);

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

async fn status(State(ctx): State<ApiContext>) -> Json<StatusDocument> {
    Json(ctx.status.borrow().clone())
}

/// `?limit=N&changes=true&failed=true&app=APP` on `/v1/history`.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
    #[serde(default)]
    changes: bool,
    #[serde(default)]
    failed: bool,
    app: Option<String>,
}

async fn history(
    State(ctx): State<ApiContext>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Vec<PassRecord>>, ApiFailure> {
    let Query(q) = query.map_err(|e| {
        ApiFailure(
            StatusCode::BAD_REQUEST,
            format!("invalid query: {}", e.body_text()),
        )
    })?;
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(ApiFailure(
            StatusCode::BAD_REQUEST,
            format!("limit {limit} is out of range; use 1 to {MAX_HISTORY_LIMIT}"),
        ));
    }
    let app = q.app.map(|name| {
        // The app's units now, so a pass naming only `web.service` counts as web's.
        let units = ctx
            .status
            .borrow()
            .status
            .apps
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.units.iter().map(|u| u.name.clone()).collect())
            .unwrap_or_default();
        crate::history::AppFilter { name, units }
    });
    let filter = crate::history::Filter {
        changes: q.changes,
        failed: q.failed,
        app,
    };
    let passes = read_history(&ctx, move |s| s.passes_matching(limit, &filter)).await?;
    Ok(Json(passes))
}

/// Runs a history read on the blocking pool.
async fn read_history<T: Send + 'static>(
    ctx: &ApiContext,
    f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiFailure> {
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || {
        let store = store
            .lock()
            .map_err(|_| "the store lock is poisoned; restart legerd".to_owned())?;
        f(&store).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| {
        ApiFailure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("history task failed: {e}"),
        )
    })?
    .map_err(|e| ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, e))
}

/// `GET /v1/history/summary`: the passes counted rather than listed.
async fn history_summary(
    State(ctx): State<ApiContext>,
) -> Result<Json<leger_api_types::HistorySummary>, ApiFailure> {
    read_history(&ctx, |s| s.history_summary()).await.map(Json)
}

/// `GET /v1/history/{id}`: one pass with its whole error text.
async fn history_pass(
    State(ctx): State<ApiContext>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<PassRecord>, ApiFailure> {
    let n: i64 = id.parse().map_err(|_| {
        ApiFailure(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a pass id; take one from `legerctl history`"),
        )
    })?;
    read_history(&ctx, move |s| s.pass(n))
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiFailure(
                StatusCode::NOT_FOUND,
                format!(
                    "no pass {n} in history: it never existed, or a later repeat of it replaced it; see `legerctl history`"
                ),
            )
        })
}

async fn staged(State(ctx): State<ApiContext>) -> Result<Json<StagedChange>, ApiFailure> {
    ctx.staged.borrow().clone().map(Json).ok_or_else(|| {
        ApiFailure(
            StatusCode::NOT_FOUND,
            "nothing is staged: legerd is not in staged mode (policy.mode = \"staged\"), or the host runs the newest revision".to_owned(),
        )
    })
}

/// `GET /v1/plan`: what the next pass would do now. The controller loop answers it
/// between passes; nothing on the host changes.
async fn plan(
    State(ctx): State<ApiContext>,
    query: Result<Query<AppQuery>, QueryRejection>,
) -> Result<Json<leger_api_types::PlanDocument>, ApiFailure> {
    let Query(q) = query.map_err(|e| {
        ApiFailure(
            StatusCode::BAD_REQUEST,
            format!("invalid query: {}", e.body_text()),
        )
    })?;
    let gone = || {
        ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop is not running; check legerd's log in the journal".to_owned(),
        )
    };
    let tx = ctx.plan.clone().ok_or_else(gone)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    tx.send(PlanJob { app: q.app, reply })
        .await
        .map_err(|_| gone())?;
    match answer.await.map_err(|_| gone())? {
        Ok(doc) => Ok(Json(doc)),
        Err(e @ PreviewError::UnknownApp(_)) => {
            Err(ApiFailure(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e @ PreviewError::Failed(_)) => Err(ApiFailure(StatusCode::CONFLICT, e.to_string())),
    }
}

async fn revisions(
    State(ctx): State<ApiContext>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Vec<RevisionInfo>>, ApiFailure> {
    let Query(q) = query.map_err(|e| {
        ApiFailure(
            StatusCode::BAD_REQUEST,
            format!("invalid query: {}", e.body_text()),
        )
    })?;
    let limit = q
        .limit
        .unwrap_or(DEFAULT_HISTORY_LIMIT)
        .clamp(1, MAX_HISTORY_LIMIT);
    let (store, revisions) = (ctx.store.clone(), ctx.revisions.clone());
    // SQLite and a look into the revision store per row: the blocking pool's work.
    let records = tokio::task::spawn_blocking(move || {
        let records = store
            .lock()
            .map_err(|_| "the store lock is poisoned; restart legerd".to_owned())?
            .revisions(limit)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(
            records
                .into_iter()
                .map(|r| {
                    let stored = revisions.as_ref().is_some_and(|s| s.contains(&r.revision));
                    (r, stored)
                })
                .collect::<Vec<_>>(),
        )
    })
    .await
    .map_err(|e| {
        ApiFailure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("revisions task failed: {e}"),
        )
    })?
    .map_err(|e| ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(
        records
            .into_iter()
            .map(|(r, stored)| RevisionInfo {
                stored,
                revision: r.revision,
                state: r.state.as_str().to_owned(),
                error: r.error,
                updated_at: r.updated_at,
            })
            .collect(),
    ))
}

/// Gives the restart slot back by hand. It talks to the lock service directly rather
/// than through the pass loop: an operator releasing a slot kept after a failed
/// rollout must not wait for a pass, and the gate's state is safe to share.
async fn fleet_release(
    State(ctx): State<ApiContext>,
) -> Result<Json<leger_api_types::fleet::ReleaseResponse>, ApiFailure> {
    let Some(fleet) = ctx.fleet else {
        return Err(ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "this legerd does not serve fleet commands".to_owned(),
        ));
    };
    match fleet.release().await {
        Ok(message) => Ok(Json(leger_api_types::fleet::ReleaseResponse { message })),
        Err(e) => Err(ApiFailure(
            StatusCode::BAD_GATEWAY,
            format!("the slot is still held on record: {e}"),
        )),
    }
}

/// `POST /v1/revisions/{revision}/retry`: forgets that a revision failed its health
/// gate (`legerctl pin|approve --force`), so legerd may apply it once more.
async fn retry_revision(
    State(ctx): State<ApiContext>,
    axum::extract::Path(revision): axum::extract::Path<String>,
) -> Result<Json<ReconcileResponse>, ApiFailure> {
    let store = ctx.store.clone();
    let rev = revision.clone();
    let forgot = tokio::task::spawn_blocking(move || {
        let s = store
            .lock()
            .map_err(|_| "the store lock is poisoned; restart legerd".to_owned())?;
        s.forget_failure(
            &rev,
            "its earlier health gate failure was forgotten by an operator (--force)",
        )
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| {
        ApiFailure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("retry task failed: {e}"),
        )
    })?
    .map_err(|e| ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    if !forgot {
        return Err(ApiFailure(
            StatusCode::CONFLICT,
            format!("revision {revision} is not marked failed; nothing to retry"),
        ));
    }
    let _ = ctx.reconcile.try_send(());
    Ok(Json(ReconcileResponse { queued: true }))
}

async fn reconcile(State(ctx): State<ApiContext>) -> Result<Json<ReconcileResponse>, ApiFailure> {
    match ctx.reconcile.try_send(()) {
        // A full queue means a pass is already pending, which is what was asked for.
        Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {
            Ok(Json(ReconcileResponse { queued: true }))
        }
        Err(mpsc::error::TrySendError::Closed(())) => Err(ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop is not running; check legerd's log in the journal".to_owned(),
        )),
    }
}

fn identity_of(ctx: &ApiContext) -> Result<Arc<NodeIdentity>, ApiFailure> {
    ctx.identity.clone().ok_or_else(|| {
        ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets are not enabled in this legerd".to_owned(),
        )
    })
}

/// Runs a store call off the runtime.
async fn with_store<T: Send + 'static>(
    ctx: &ApiContext,
    f: impl FnOnce(&Store) -> Result<T, String> + Send + 'static,
) -> Result<T, ApiFailure> {
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || {
        let store = store
            .lock()
            .map_err(|_| "the store lock is poisoned; restart legerd".to_owned())?;
        f(&store)
    })
    .await
    .map_err(|e| {
        ApiFailure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store task failed: {e}"),
        )
    })?
    .map_err(|e| ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, e))
}

async fn identity(State(ctx): State<ApiContext>) -> Result<Json<IdentityResponse>, ApiFailure> {
    Ok(Json(IdentityResponse {
        recipient: identity_of(&ctx)?.recipient(),
    }))
}

async fn list_secrets(State(ctx): State<ApiContext>) -> Result<Json<Vec<SecretInfo>>, ApiFailure> {
    let list = with_store(&ctx, |s| {
        let local = s.local_secrets().map_err(|e| e.to_string())?;
        let owned = s.owned_secrets().map_err(|e| e.to_string())?;
        let mut out: std::collections::BTreeMap<String, SecretInfo> = Default::default();
        for l in local {
            out.insert(
                l.name.clone(),
                SecretInfo {
                    name: l.name,
                    local_version: Some(l.version),
                    source: None,
                    version: None,
                    consumers: Vec::new(),
                    updated_at: Some(l.updated_at),
                },
            );
        }
        for (name, o) in owned {
            let e = out.entry(name.clone()).or_insert_with(|| SecretInfo {
                name,
                local_version: None,
                source: None,
                version: None,
                consumers: Vec::new(),
                updated_at: None,
            });
            e.source = Some(o.source);
            e.version = Some(o.version);
            e.consumers = o.consumers;
            if e.updated_at.as_ref().is_none_or(|u| *u < o.written_at) {
                e.updated_at = Some(o.written_at);
            }
        }
        Ok(out.into_values().collect())
    })
    .await?;
    Ok(Json(list))
}

/// Moves a request body into a [`SecretValue`] and overwrites the body's buffer with
/// zeros when this is its only owner (hyper hands over the collected body whole), so the
/// plaintext is not left in freed memory.
pub fn take_secret(body: Bytes) -> SecretValue {
    use zeroize::Zeroize;
    let value = SecretValue::from(body.to_vec());
    if let Ok(mut owned) = body.try_into_mut() {
        owned.as_mut().zeroize();
    }
    value
}

fn check_name(name: &str) -> Result<(), ApiFailure> {
    validate_name(name).map_err(|e| ApiFailure(StatusCode::BAD_REQUEST, e.to_string()))
}

/// `PUT /v1/secrets/{name}`: the body is the value. It is encrypted to the node identity
/// before it reaches SQLite and the buffer is zeroized.
async fn set_secret(
    State(ctx): State<ApiContext>,
    UrlPath(name): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SecretSetResponse>, ApiFailure> {
    let body = body.map_err(|e| {
        ApiFailure(
            e.status(),
            format!(
                "cannot read the secret value: {}; a value is at most {MAX_BODY_BYTES} bytes",
                e.body_text()
            ),
        )
    })?;
    // Copied into a zeroizing buffer at once; the request's own buffer is wiped too.
    let value = take_secret(body);
    check_name(&name)?;
    let id = identity_of(&ctx)?;
    if value.expose().is_empty() {
        return Err(ApiFailure(
            StatusCode::BAD_REQUEST,
            "the value is empty; pipe it on stdin: `printf %s VALUE | legerctl secrets set NAME`"
                .to_owned(),
        ));
    }
    let ciphertext = id
        .encrypt(&value)
        .map_err(|e| ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    drop(value);
    let n = name.clone();
    let version = with_store(&ctx, move |s| {
        s.put_local_secret(&n, &ciphertext)
            .map_err(|e| e.to_string())
    })
    .await?;
    tracing::info!(secret = %name, version, "local secret set");
    let _ = ctx.reconcile.try_send(());
    Ok(Json(SecretSetResponse { name, version }))
}

async fn remove_secret(
    State(ctx): State<ApiContext>,
    UrlPath(name): UrlPath<String>,
) -> Result<StatusCode, ApiFailure> {
    check_name(&name)?;
    let n = name.clone();
    let existed = with_store(&ctx, move |s| {
        s.remove_local_secret(&n).map_err(|e| e.to_string())
    })
    .await?;
    if !existed {
        return Err(ApiFailure(
            StatusCode::NOT_FOUND,
            format!("no local secret {name}; see `legerctl secrets list`"),
        ));
    }
    tracing::info!(secret = %name, "local secret removed");
    let _ = ctx.reconcile.try_send(());
    Ok(StatusCode::NO_CONTENT)
}

fn backups_of(ctx: &ApiContext) -> Result<&BackupsApi, ApiFailure> {
    ctx.backups.as_ref().ok_or_else(|| {
        ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "backups are not enabled in this legerd".to_owned(),
        )
    })
}

/// `?app=APP` on `/v1/backups` and `/v1/plan`.
#[derive(Debug, Deserialize)]
struct AppQuery {
    app: Option<String>,
}

async fn list_backups(
    State(ctx): State<ApiContext>,
    query: Result<Query<AppQuery>, QueryRejection>,
) -> Result<Json<Vec<BackupInfo>>, ApiFailure> {
    let Query(q) = query.map_err(|e| {
        ApiFailure(
            StatusCode::BAD_REQUEST,
            format!("invalid query: {}", e.body_text()),
        )
    })?;
    let backups = backups_of(&ctx)?.backups.clone();
    let list = tokio::task::spawn_blocking(move || backups.list(q.app.as_deref()))
        .await
        .map_err(|e| {
            ApiFailure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("backup list task failed: {e}"),
            )
        })?
        .map_err(|e| ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(list))
}

/// `POST /v1/restore`: queued to the controller loop, answered when it is done.
async fn restore(
    State(ctx): State<ApiContext>,
    body: Result<Json<RestoreRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let target = body.as_ref().ok().map(|Json(r)| match &r.backup {
        Some(b) => format!("{}@{b}", r.app),
        None => r.app.clone(),
    });
    let mut response = restore_request(ctx, body).await.into_response();
    if let Some(t) = target {
        response.extensions_mut().insert(AuditTarget(t));
    }
    response
}

async fn restore_request(
    ctx: ApiContext,
    body: Result<Json<RestoreRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<RestoreResponse>, ApiFailure> {
    let Json(request) = body.map_err(|e| {
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            e.status()
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiFailure(
            status,
            format!(
                "invalid restore request: {}; send {{\"app\": \"APP\", \"backup\": \"ID\"}}",
                e.body_text()
            ),
        )
    })?;
    let tx = backups_of(&ctx)?.restore.clone();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let gone = || {
        ApiFailure(
            StatusCode::SERVICE_UNAVAILABLE,
            "the reconcile loop is not running; check legerd's log in the journal".to_owned(),
        )
    };
    tx.send(RestoreJob { request, reply })
        .await
        .map_err(|_| gone())?;
    match answer.await.map_err(|_| gone())? {
        Ok(r) => Ok(Json(r)),
        Err(e @ BackupError::NotFound(_)) => Err(ApiFailure(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ (BackupError::RevisionGone { .. } | BackupError::Corrupt { .. })) => {
            Err(ApiFailure(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e @ BackupError::InvalidName { .. }) => {
            Err(ApiFailure(StatusCode::BAD_REQUEST, e.to_string()))
        }
        Err(e) => Err(ApiFailure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn not_found() -> ApiFailure {
    ApiFailure(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /v1/status, /v1/history, /v1/plan, /v1/reconcile, /v1/identity, /v1/secrets, /v1/backups, /v1/restore"
            .to_owned(),
    )
}

async fn method_not_allowed() -> ApiFailure {
    ApiFailure(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed: /v1/status, /v1/history and /v1/backups take GET, /v1/reconcile and /v1/restore take POST"
            .to_owned(),
    )
}

//! Prometheus metrics: what a fleet dashboard and its alerts read from every host.
//!
//! One [`Metrics`] holds every series; the reconciler reports into it with three calls
//! ([`Metrics::record_fetch`], [`Metrics::record_apply`], [`Metrics::record_pass`]), and
//! [`router`] serves it as OpenMetrics text on `GET /metrics`. The series and what to
//! alert on are listed in `docs/metrics.md`.
//!
//! **Architecture invariant:** every label value comes from a fixed set (outcomes, kinds,
//! unit states) or names the single current revision, so a host's series count does not
//! grow with time. Per-app series exist only when `metrics.per_app_labels` is on.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leger_api_types::{AppStatus, PassOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::path::Path;
use std::sync::Arc;

use leger_config::MetricsSettings;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::apply::ApplyReport;
use crate::plan::{Action, DriftKind, Plan};

/// The content type of OpenMetrics text, which is what `prometheus-client` writes.
/// Prometheus asks for it first, so `info` series and `# EOF` are understood.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `legerd_reconcile_total{outcome}` values. Suspended passes count as `noop`: they
/// change nothing, and `legerd_suspended` says why.
pub const RECONCILE_OUTCOMES: [&str; 4] = ["applied", "noop", "failed", "rolled_back"];

/// `legerd_backups_total{outcome}` values: a backup written, one that failed (and
/// refused the apply), one skipped because the app said `backup_failure = "warn"`, and
/// an old one evicted to stay within `[backups] max_bytes` and `min_free`.
pub const BACKUP_OUTCOMES: [&str; 4] = ["taken", "failed", "skipped", "evicted"];

/// `legerd_units{state}` values: systemd's ActiveState, plus `unknown` (could not be
/// read) and `other` (a state newer than this list), so the label stays bounded.
pub const UNIT_STATES: [&str; 10] = [
    "active",
    "reloading",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "maintenance",
    "refreshing",
    "unknown",
    "other",
];

/// `legerd_source_fetch_total{kind,outcome}` outcomes.
const FETCH_OUTCOMES: [&str; 2] = ["ok", "failed"];
/// Source kinds.
const SOURCE_KINDS: [&str; 3] = ["git", "dir", "manifest"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LockLabels {
    op: &'static str,
    result: &'static str,
}

/// `legerd_fleet_lock_requests_total{op}` values.
pub const FLEET_LOCK_OPS: [&str; 2] = ["acquire", "release"];
/// `legerd_fleet_lock_requests_total{result}` values.
pub const FLEET_LOCK_RESULTS: [&str; 4] = ["ok", "refused", "unreachable", "protocol_error"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, Ord, PartialOrd, EncodeLabelSet)]
struct RevisionLabels {
    revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, Ord, PartialOrd, EncodeLabelSet)]
struct AppStateLabels {
    app: String,
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Pass durations: 50 ms to about 14 min, doubling. A pass with systemd jobs takes
/// seconds; one stuck on a job timeout takes minutes.
fn pass_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

/// Fetch durations: 10 ms to about 80 s, doubling.
fn fetch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

/// What one pass ended with, for [`Metrics::record_pass`].
#[derive(Debug, Clone)]
pub struct PassSummary<'a> {
    /// How the pass ended.
    pub outcome: PassOutcome,
    /// How long it took.
    pub duration: Duration,
    /// When it ended; the timestamp of the last success.
    pub finished: SystemTime,
    /// The revision the source last gave.
    pub fetched_revision: Option<&'a str>,
    /// The revision the host runs.
    pub applied_revision: Option<&'a str>,
    /// Apps and their units' states as status shows them.
    pub apps: &'a [AppStatus],
    /// `policy.suspend` in force.
    pub suspended: bool,
}

/// Every series legerd exports. Shared (`Arc`) between the reconciler, which writes,
/// and the HTTP handler, which reads.
#[derive(Debug)]
pub struct Metrics {
    /// Holds the descriptors and renders them; the fields below are handles into it.
    registry: Registry,
    /// `legerd_reconcile_total{outcome}`.
    reconcile_total: Family<OutcomeLabels, Counter>,
    /// `legerd_reconcile_duration_seconds`.
    reconcile_duration: Histogram,
    /// `legerd_source_fetch_total{kind,outcome}`.
    fetch_total: Family<FetchLabels, Counter>,
    /// `legerd_source_fetch_duration_seconds{kind}`.
    fetch_duration: HistogramFamily<KindLabels>,
    /// `legerd_source_revision_info{revision}`: one series, the last fetched revision.
    source_revision: InfoGauge<RevisionLabels>,
    /// `legerd_applied_revision_info{revision}`: one series, the running revision.
    applied_revision: InfoGauge<RevisionLabels>,
    /// `legerd_last_success_timestamp_seconds`.
    last_success: Gauge<f64, AtomicU64>,
    /// `legerd_last_reconcile_failed`: 1 while the last pass failed.
    last_failed: Gauge,
    /// `legerd_drift_corrected_total{kind}`.
    drift_corrected: Family<KindLabels, Counter>,
    /// `legerd_units{state}`.
    units: Family<StateLabels, Gauge>,
    /// `legerd_unit_restarts_total`: restarts legerd made because a unit's files changed.
    unit_restarts: Counter,
    /// `legerd_rollbacks_total`.
    rollbacks: Counter,
    /// `legerd_secrets_synced_total`.
    secrets_synced: Counter,
    /// `legerd_suspended`.
    suspended: Gauge,
    /// `legerd_apps`.
    apps: Gauge,
    /// `legerd_app_units{app,state}`, only with `metrics.per_app_labels`.
    app_units: Option<InfoGauge<AppStateLabels>>,
    /// `legerd_backups_total{outcome}`.
    backups_total: Family<OutcomeLabels, Counter>,
    /// `legerd_backup_bytes`: what all backups take on disk now.
    backup_bytes: Gauge,
    /// `legerd_fleet_lock_requests_total{op,result}`.
    fleet_lock_requests: Family<LockLabels, Counter>,
    /// `legerd_fleet_lock_held`: 1 while this host holds a restart slot.
    fleet_lock_held: Gauge,
    /// `legerd_fleet_lock_waiting`: 1 while a pass waits at the fleet-lock gate.
    fleet_lock_waiting: Gauge,
}

/// A gauge family whose label sets are replaced as a whole (the current revision, the
/// current apps). New series are set before stale ones are removed, so a scrape in
/// between never sees the family empty.
#[derive(Debug)]
struct InfoGauge<L> {
    family: Family<L, Gauge>,
    current: Mutex<Vec<L>>,
}

impl<L> InfoGauge<L>
where
    L: Clone + std::hash::Hash + Eq + std::fmt::Debug + EncodeLabelSet + Send + Sync + 'static,
{
    fn new() -> Self {
        InfoGauge {
            family: Family::default(),
            current: Mutex::new(Vec::new()),
        }
    }

    fn replace(&self, series: Vec<(L, i64)>) {
        let mut current = self.current.lock().expect("metrics lock");
        for (labels, value) in &series {
            self.family.get_or_create(labels).set(*value);
        }
        for old in current.iter() {
            if !series.iter().any(|(l, _)| l == old) {
                self.family.remove(old);
            }
        }
        *current = series.into_iter().map(|(l, _)| l).collect();
    }
}

impl Metrics {
    /// All series registered, counters at zero. Every bounded label value is created
    /// up front so `rate()` and `increase()` see a zero before the first event.
    pub fn new(per_app_labels: bool) -> Self {
        let mut registry = Registry::with_prefix("legerd");
        registry.register(
            "build",
            "legerd's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );

        let reconcile_total = Family::<OutcomeLabels, Counter>::default();
        for outcome in RECONCILE_OUTCOMES {
            reconcile_total.get_or_create_owned(&OutcomeLabels { outcome });
        }
        registry.register(
            "reconcile",
            "Reconcile passes by outcome (applied, noop, failed, rolled_back)",
            reconcile_total.clone(),
        );
        let reconcile_duration = pass_histogram();
        registry.register_with_unit(
            "reconcile_duration",
            "How long reconcile passes take",
            Unit::Seconds,
            reconcile_duration.clone(),
        );

        let fetch_total = Family::<FetchLabels, Counter>::default();
        let fetch_duration: HistogramFamily<KindLabels> =
            Family::new_with_constructor(fetch_histogram);
        for kind in SOURCE_KINDS {
            for outcome in FETCH_OUTCOMES {
                fetch_total.get_or_create_owned(&FetchLabels { kind, outcome });
            }
            fetch_duration.get_or_create_owned(&KindLabels { kind });
        }
        registry.register(
            "source_fetch",
            "Source fetches by source kind (git, dir) and outcome (ok, failed)",
            fetch_total.clone(),
        );
        registry.register_with_unit(
            "source_fetch_duration",
            "How long source fetches take, by source kind",
            Unit::Seconds,
            fetch_duration.clone(),
        );

        let source_revision = InfoGauge::new();
        registry.register(
            "source_revision_info",
            "The revision the source last gave (value always 1)",
            source_revision.family.clone(),
        );
        let applied_revision = InfoGauge::new();
        registry.register(
            "applied_revision_info",
            "The revision this host runs (value always 1)",
            applied_revision.family.clone(),
        );

        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "last_success_timestamp",
            "Unix time the last pass that did not fail ended",
            Unit::Seconds,
            last_success.clone(),
        );
        let last_failed = Gauge::default();
        registry.register(
            "last_reconcile_failed",
            "1 when the last reconcile pass failed, else 0",
            last_failed.clone(),
        );

        let drift_corrected = Family::<KindLabels, Counter>::default();
        for kind in [DriftKind::File.as_str(), DriftKind::Unit.as_str()] {
            drift_corrected.get_or_create_owned(&KindLabels { kind });
        }
        registry.register(
            "drift_corrected",
            "Drift legerd corrected, by kind (file: a managed file changed by hand; unit: a managed unit stopped)",
            drift_corrected.clone(),
        );

        let units = Family::<StateLabels, Gauge>::default();
        for state in UNIT_STATES {
            units.get_or_create_owned(&StateLabels { state });
        }
        registry.register(
            "units",
            "Managed units by systemd ActiveState",
            units.clone(),
        );

        let unit_restarts = Counter::default();
        registry.register(
            "unit_restarts",
            "Unit restarts legerd made because the unit's files changed",
            unit_restarts.clone(),
        );
        let rollbacks = Counter::default();
        registry.register(
            "rollbacks",
            "Automatic rollbacks to the previous revision",
            rollbacks.clone(),
        );
        let secrets_synced = Counter::default();
        registry.register(
            "secrets_synced",
            "Podman secrets legerd created or updated",
            secrets_synced.clone(),
        );
        let suspended = Gauge::default();
        registry.register(
            "suspended",
            "1 while policy.suspend is set: legerd plans but changes nothing",
            suspended.clone(),
        );
        let apps = Gauge::default();
        registry.register("apps", "Apps in the applied revision", apps.clone());

        let app_units = per_app_labels.then(|| {
            let g = InfoGauge::new();
            registry.register(
                "app_units",
                "Managed units by app and systemd ActiveState (metrics.per_app_labels)",
                g.family.clone(),
            );
            g
        });

        let backups_total = Family::<OutcomeLabels, Counter>::default();
        for outcome in BACKUP_OUTCOMES {
            backups_total.get_or_create_owned(&OutcomeLabels { outcome });
        }
        registry.register(
            "backups",
            "App backups before applies by outcome (taken, failed, skipped, evicted)",
            backups_total.clone(),
        );
        let backup_bytes = Gauge::default();
        registry.register(
            "backup_bytes",
            "Bytes all backups take on the state filesystem",
            backup_bytes.clone(),
        );
        let fleet_lock_requests = Family::<LockLabels, Counter>::default();
        for op in FLEET_LOCK_OPS {
            for result in FLEET_LOCK_RESULTS {
                fleet_lock_requests.get_or_create_owned(&LockLabels { op, result });
            }
        }
        registry.register(
            "fleet_lock_requests",
            "Requests to the fleet lock by op (acquire, release) and result (ok, refused, unreachable, protocol_error)",
            fleet_lock_requests.clone(),
        );
        let fleet_lock_held = Gauge::default();
        registry.register(
            "fleet_lock_held",
            "1 while this host holds a restart slot of the fleet lock (kept after a failed rollout)",
            fleet_lock_held.clone(),
        );
        let fleet_lock_waiting = Gauge::default();
        registry.register(
            "fleet_lock_waiting",
            "1 while this host waits for a restart slot of the fleet lock (refused or the lock service unreachable); nothing is applied meanwhile",
            fleet_lock_waiting.clone(),
        );

        Metrics {
            registry,
            reconcile_total,
            reconcile_duration,
            fetch_total,
            fetch_duration,
            source_revision,
            applied_revision,
            last_success,
            last_failed,
            drift_corrected,
            units,
            unit_restarts,
            rollbacks,
            secrets_synced,
            suspended,
            apps,
            app_units,
            backups_total,
            backup_bytes,
            fleet_lock_requests,
            fleet_lock_held,
            fleet_lock_waiting,
        }
    }

    /// One app backup ended with `outcome`, one of [`BACKUP_OUTCOMES`].
    pub fn record_backup(&self, outcome: &'static str) {
        debug_assert!(BACKUP_OUTCOMES.contains(&outcome));
        self.backups_total
            .get_or_create_owned(&OutcomeLabels { outcome })
            .inc();
    }

    /// What the backup folder takes now.
    pub fn set_backup_bytes(&self, bytes: u64) {
        self.backup_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// One request to the fleet lock; `op` and `result` come from
    /// [`FLEET_LOCK_OPS`] and [`FLEET_LOCK_RESULTS`].
    pub fn record_fleet_lock(&self, op: &'static str, result: &'static str) {
        self.fleet_lock_requests
            .get_or_create(&LockLabels { op, result })
            .inc();
    }

    /// Whether this host holds a restart slot.
    pub fn set_fleet_lock_held(&self, held: bool) {
        self.fleet_lock_held.set(i64::from(held));
    }

    /// Whether a pass waits at the fleet-lock gate, so a fleet dashboard counts the
    /// hosts a stopped rollout holds back, not just recent refusals.
    pub fn set_fleet_lock_waiting(&self, waiting: bool) {
        self.fleet_lock_waiting.set(i64::from(waiting));
    }

    /// One source fetch. `kind` is `git` or `dir`.
    pub fn record_fetch(&self, kind: &'static str, ok: bool, duration: Duration) {
        let outcome = if ok { "ok" } else { "failed" };
        self.fetch_total
            .get_or_create(&FetchLabels { kind, outcome })
            .inc();
        self.fetch_duration
            .get_or_create(&KindLabels { kind })
            .observe(duration.as_secs_f64());
    }

    /// What an apply did: corrected drift and restarts that succeeded.
    pub fn record_apply(&self, plan: &Plan, report: &ApplyReport) {
        for d in plan.drift.iter().filter(|d| d.corrected) {
            self.drift_corrected
                .get_or_create(&KindLabels {
                    kind: d.kind.as_str(),
                })
                .inc();
        }
        let planned = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::RestartUnit { .. }))
            .count();
        let failed = report
            .unit_failures
            .iter()
            .filter(|f| f.action == "restart")
            .count();
        self.unit_restarts
            .inc_by(planned.saturating_sub(failed) as u64);
    }

    /// The end of a pass: outcome, duration, revisions and unit states.
    pub fn record_pass(&self, pass: &PassSummary<'_>) {
        let outcome = match pass.outcome {
            PassOutcome::Applied => "applied",
            PassOutcome::Noop
            | PassOutcome::Suspended
            | PassOutcome::Staged
            | PassOutcome::Waiting => "noop",
            PassOutcome::Failed => "failed",
            PassOutcome::RolledBack => "rolled_back",
        };
        if pass.outcome == PassOutcome::RolledBack {
            self.rollbacks.inc();
        }
        self.reconcile_total
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.reconcile_duration.observe(pass.duration.as_secs_f64());
        // A rollback is a failure too, never a success (doco-cd#1616).
        let failed = matches!(pass.outcome, PassOutcome::Failed | PassOutcome::RolledBack);
        self.last_failed.set(i64::from(failed));
        if !failed {
            let at = pass
                .finished
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success.set(at.as_secs_f64());
        }
        self.source_revision.replace(
            pass.fetched_revision
                .map(|r| {
                    (
                        RevisionLabels {
                            revision: r.to_owned(),
                        },
                        1,
                    )
                })
                .into_iter()
                .collect(),
        );
        self.applied_revision.replace(
            pass.applied_revision
                .map(|r| {
                    (
                        RevisionLabels {
                            revision: r.to_owned(),
                        },
                        1,
                    )
                })
                .into_iter()
                .collect(),
        );
        self.suspended.set(i64::from(pass.suspended));
        self.apps.set(pass.apps.len() as i64);

        let mut by_state: BTreeMap<&'static str, i64> =
            UNIT_STATES.iter().map(|s| (*s, 0)).collect();
        let mut by_app: BTreeMap<AppStateLabels, i64> = BTreeMap::new();
        for app in pass.apps {
            for unit in &app.units {
                let state = unit_state_label(&unit.active_state);
                *by_state.entry(state).or_default() += 1;
                *by_app
                    .entry(AppStateLabels {
                        app: app.name.clone(),
                        state,
                    })
                    .or_default() += 1;
            }
        }
        for (state, n) in by_state {
            self.units.get_or_create(&StateLabels { state }).set(n);
        }
        if let Some(app_units) = &self.app_units {
            app_units.replace(by_app.into_iter().collect());
        }
    }

    /// `n` podman secrets were created or updated (the secrets feature calls this).
    pub fn record_secrets_synced(&self, n: u64) {
        self.secrets_synced.inc_by(n);
    }

    /// Every series as OpenMetrics text, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Maps systemd's ActiveState to a label from [`UNIT_STATES`].
fn unit_state_label(active_state: &str) -> &'static str {
    UNIT_STATES
        .iter()
        .find(|s| **s == active_state)
        .copied()
        .unwrap_or("other")
}

/// `GET /metrics`, without a listener, so tests and `serve` share it.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
}

/// Serves [`router`] on `listener` (TCP or Unix) until `shutdown` resolves.
pub async fn serve<L>(
    listener: L,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the listeners `settings` asks for and serves `GET /metrics` on each until
/// `stop` is cancelled. Binding happens before this returns, so a taken port fails
/// legerd's start with a clear error instead of leaving it silently unscraped.
pub async fn start(
    settings: &MetricsSettings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> io::Result<Vec<JoinHandle<io::Result<()>>>> {
    let mut tasks = Vec::new();
    if let Some(addr) = settings.listen {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen for metrics on {addr}: {e}; set metrics.listen to a free address, or \"\" to switch it off"),
            )
        })?;
        tracing::info!(listen = %addr, "serving metrics on http://{addr}/metrics");
        let stop = stop.clone();
        tasks.push(tokio::spawn(serve(
            listener,
            Arc::clone(&metrics),
            async move { stop.cancelled().await },
        )));
    }
    if let Some(path) = &settings.socket {
        let listener = bind_unix(path)?;
        tracing::info!(socket = %path.display(), "serving metrics on a Unix socket");
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let result = serve(listener, metrics, async move { stop.cancelled().await }).await;
            let _ = std::fs::remove_file(&path);
            result
        }));
    }
    Ok(tasks)
}

/// Binds the metrics Unix socket, replacing a stale one. Mode 0666: the metrics hold
/// nothing secret, and the TCP endpoint serves the same text to any local user anyway.
fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    crate::unix_socket::bind(path, "metrics socket", "metrics.socket", 0o666)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::UnitFailure;
    use crate::plan::Drift;
    use leger_api_types::UnitStatus;

    /// Parses OpenMetrics text back into `series{labels} -> value`, checking the shape
    /// of every line on the way, so a rendering bug fails here and not in Prometheus.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        assert!(text.ends_with("# EOF\n"), "no # EOF terminator:\n{text}");
        let mut out = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') {
                let mut parts = line.splitn(4, ' ');
                let _hash = parts.next();
                let kw = parts.next().unwrap_or_default();
                assert!(
                    ["TYPE", "HELP", "UNIT", "EOF"].contains(&kw),
                    "bad comment line {line:?}"
                );
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad series name in {line:?}"
            );
            assert!(
                out.insert(series.to_owned(), value).is_none(),
                "duplicate {line:?}"
            );
        }
        out
    }

    fn app(name: &str, states: &[&str]) -> AppStatus {
        AppStatus {
            name: name.to_owned(),
            layer: None,
            units: states
                .iter()
                .enumerate()
                .map(|(i, s)| UnitStatus {
                    name: format!("{name}-{i}.service"),
                    active_state: (*s).to_owned(),
                    sub_state: String::new(),
                })
                .collect(),
        }
    }

    fn pass<'a>(
        outcome: PassOutcome,
        applied: Option<&'a str>,
        apps: &'a [AppStatus],
    ) -> PassSummary<'a> {
        PassSummary {
            outcome,
            duration: Duration::from_millis(300),
            finished: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            fetched_revision: applied,
            applied_revision: applied,
            apps,
            suspended: false,
        }
    }

    #[test]
    fn metrics_render_every_series_of_the_issue_before_any_pass() {
        let m = parse(&Metrics::new(false).render());
        let names: std::collections::BTreeSet<&str> = m
            .keys()
            .map(|k| &k[..k.find('{').unwrap_or(k.len())])
            .collect();
        for want in [
            "legerd_build_info",
            "legerd_reconcile_total",
            "legerd_reconcile_duration_seconds_count",
            "legerd_reconcile_duration_seconds_bucket",
            "legerd_source_fetch_total",
            "legerd_source_fetch_duration_seconds_count",
            "legerd_last_success_timestamp_seconds",
            "legerd_last_reconcile_failed",
            "legerd_drift_corrected_total",
            "legerd_units",
            "legerd_unit_restarts_total",
            "legerd_rollbacks_total",
            "legerd_secrets_synced_total",
            "legerd_suspended",
            "legerd_apps",
            "legerd_backups_total",
            "legerd_backup_bytes",
            "legerd_fleet_lock_requests_total",
            "legerd_fleet_lock_held",
            "legerd_fleet_lock_waiting",
        ] {
            assert!(names.contains(want), "{want} missing from {names:?}");
        }
        assert_eq!(
            m[&format!(
                "legerd_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )],
            1.0
        );
        assert_eq!(m["legerd_reconcile_total{outcome=\"rolled_back\"}"], 0.0);
        assert!(
            !names.contains("legerd_app_units"),
            "per-app series are off by default"
        );
    }

    #[test]
    fn metrics_record_pass_counts_outcomes_and_keeps_one_revision_series() {
        let metrics = Metrics::new(false);
        let apps = [app("web", &["active", "failed"]), app("db", &["active"])];
        metrics.record_pass(&pass(PassOutcome::Applied, Some("aaa"), &apps));
        metrics.record_pass(&pass(PassOutcome::Noop, Some("aaa"), &apps));
        metrics.record_pass(&pass(PassOutcome::Applied, Some("bbb"), &apps));
        let m = parse(&metrics.render());
        assert_eq!(m["legerd_reconcile_total{outcome=\"applied\"}"], 2.0);
        assert_eq!(m["legerd_reconcile_total{outcome=\"noop\"}"], 1.0);
        assert_eq!(m["legerd_reconcile_total{outcome=\"failed\"}"], 0.0);
        assert_eq!(m["legerd_reconcile_duration_seconds_count"], 3.0);
        assert_eq!(m["legerd_applied_revision_info{revision=\"bbb\"}"], 1.0);
        let revisions = m
            .keys()
            .filter(|k| k.starts_with("legerd_applied_revision_info"))
            .count();
        assert_eq!(revisions, 1, "the old revision series must go: {m:?}");
        assert_eq!(m["legerd_source_revision_info{revision=\"bbb\"}"], 1.0);
        assert_eq!(m["legerd_units{state=\"active\"}"], 2.0);
        assert_eq!(m["legerd_units{state=\"failed\"}"], 1.0);
        assert_eq!(m["legerd_units{state=\"inactive\"}"], 0.0);
        assert_eq!(m["legerd_apps"], 2.0);
        assert_eq!(m["legerd_last_success_timestamp_seconds"], 1_700_000_000.0);
        assert_eq!(m["legerd_last_reconcile_failed"], 0.0);
    }

    #[test]
    fn metrics_failed_pass_keeps_last_success_and_sets_failed() {
        let metrics = Metrics::new(false);
        metrics.record_pass(&pass(PassOutcome::Applied, Some("aaa"), &[]));
        let mut failed = pass(PassOutcome::Failed, Some("aaa"), &[]);
        failed.finished += Duration::from_secs(60);
        metrics.record_pass(&failed);
        let m = parse(&metrics.render());
        assert_eq!(m["legerd_last_reconcile_failed"], 1.0);
        assert_eq!(m["legerd_last_success_timestamp_seconds"], 1_700_000_000.0);
        assert_eq!(m["legerd_reconcile_total{outcome=\"failed\"}"], 1.0);
    }

    #[test]
    fn metrics_suspended_pass_counts_as_noop() {
        let metrics = Metrics::new(false);
        let mut p = pass(PassOutcome::Suspended, None, &[]);
        p.suspended = true;
        metrics.record_pass(&p);
        let m = parse(&metrics.render());
        assert_eq!(m["legerd_reconcile_total{outcome=\"noop\"}"], 1.0);
        assert_eq!(m["legerd_suspended"], 1.0);
        assert!(
            !m.keys()
                .any(|k| k.starts_with("legerd_applied_revision_info"))
        );
    }

    #[test]
    fn metrics_unknown_unit_state_is_bounded_to_other() {
        let metrics = Metrics::new(false);
        let apps = [app("web", &["some-future-state"])];
        metrics.record_pass(&pass(PassOutcome::Noop, None, &apps));
        let m = parse(&metrics.render());
        assert_eq!(m["legerd_units{state=\"other\"}"], 1.0);
        assert!(!m.keys().any(|k| k.contains("some-future-state")));
    }

    #[test]
    fn metrics_per_app_labels_follow_the_apps() {
        let metrics = Metrics::new(true);
        metrics.record_pass(&pass(
            PassOutcome::Applied,
            None,
            &[app("web", &["active", "active"]), app("db", &["failed"])],
        ));
        metrics.record_pass(&pass(
            PassOutcome::Applied,
            None,
            &[app("web", &["active"])],
        ));
        let m = parse(&metrics.render());
        assert_eq!(m["legerd_app_units{app=\"web\",state=\"active\"}"], 1.0);
        assert!(
            !m.keys().any(|k| k.contains("app=\"db\"")),
            "a removed app's series must go: {m:?}"
        );
    }

    #[test]
    fn metrics_record_fetch_and_apply() {
        let metrics = Metrics::new(false);
        metrics.record_fetch("git", true, Duration::from_millis(20));
        metrics.record_fetch("git", false, Duration::from_millis(20));
        metrics.record_fetch("dir", true, Duration::from_millis(1));
        let plan = Plan {
            actions: vec![
                Action::RestartUnit {
                    unit: "a.service".into(),
                    app: "a".into(),
                },
                Action::RestartUnit {
                    unit: "b.service".into(),
                    app: "b".into(),
                },
            ],
            drift: vec![
                Drift {
                    kind: DriftKind::File,
                    target: "a/a.container".into(),
                    detail: String::new(),
                    corrected: true,
                },
                Drift {
                    kind: DriftKind::Unit,
                    target: "b.service".into(),
                    detail: String::new(),
                    corrected: false,
                },
            ],
        };
        let report = ApplyReport {
            done: vec![],
            unit_failures: vec![UnitFailure {
                unit: "b.service".into(),
                app: "b".into(),
                action: "restart",
                error: "x".into(),
            }],
        };
        metrics.record_apply(&plan, &report);
        metrics.record_pass(&pass(PassOutcome::RolledBack, Some("bbb"), &[]));
        metrics.record_secrets_synced(3);
        let m = parse(&metrics.render());
        assert_eq!(
            m["legerd_source_fetch_total{kind=\"git\",outcome=\"ok\"}"],
            1.0
        );
        assert_eq!(
            m["legerd_source_fetch_total{kind=\"git\",outcome=\"failed\"}"],
            1.0
        );
        assert_eq!(
            m["legerd_source_fetch_total{kind=\"dir\",outcome=\"ok\"}"],
            1.0
        );
        assert_eq!(
            m["legerd_source_fetch_duration_seconds_count{kind=\"git\"}"],
            2.0
        );
        assert_eq!(m["legerd_drift_corrected_total{kind=\"file\"}"], 1.0);
        assert_eq!(m["legerd_drift_corrected_total{kind=\"unit\"}"], 0.0);
        assert_eq!(m["legerd_unit_restarts_total"], 1.0);
        assert_eq!(m["legerd_rollbacks_total"], 1.0);
        assert_eq!(m["legerd_reconcile_total{outcome=\"rolled_back\"}"], 1.0);
        assert_eq!(m["legerd_secrets_synced_total"], 3.0);
    }

    #[test]
    fn metrics_fleet_lock_waiting_follows_the_gate() {
        let metrics = Metrics::new(false);
        let text = metrics.render();
        assert!(
            text.contains("# HELP legerd_fleet_lock_waiting 1 while this host waits"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE legerd_fleet_lock_waiting gauge"),
            "{text}"
        );
        assert_eq!(parse(&text)["legerd_fleet_lock_waiting"], 0.0);
        metrics.set_fleet_lock_waiting(true);
        assert_eq!(parse(&metrics.render())["legerd_fleet_lock_waiting"], 1.0);
        metrics.set_fleet_lock_waiting(false);
        assert_eq!(parse(&metrics.render())["legerd_fleet_lock_waiting"], 0.0);
    }

    /// Every sample name legerd can serve, with every optional series switched on.
    fn served_names() -> std::collections::BTreeSet<String> {
        let metrics = Metrics::new(true);
        let apps = [app("web", &["active"])];
        metrics.record_pass(&pass(PassOutcome::Applied, Some("aaa"), &apps));
        metrics.record_fetch("git", true, Duration::from_millis(1));
        parse(&metrics.render())
            .keys()
            .map(|k| k[..k.find('{').unwrap_or(k.len())].to_owned())
            .collect()
    }

    /// The `legerd_…` names a text mentions.
    fn mentioned_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(i) = rest.find("legerd_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
        out
    }

    /// The dashboards and alert rules in `contrib/monitoring` read only series legerd
    /// serves: a renamed or removed metric fails here, not silently on a dashboard.
    #[test]
    fn metrics_monitoring_files_use_only_served_series() {
        let served = served_names();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/monitoring");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if path.extension().is_some_and(|e| e == "json") {
                // A dashboard Grafana cannot import is as broken as a wrong name.
                let d: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let panels = d["panels"].as_array().expect("panels");
                let mut ids: Vec<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), panels.len(), "{}: panel ids", path.display());
                for p in panels {
                    for t in p["targets"].as_array().into_iter().flatten() {
                        assert!(
                            t["expr"]
                                .as_str()
                                .is_some_and(|e| e.contains("legerd_") || e.contains("up{")),
                            "{}: panel {} has a target without a query",
                            path.display(),
                            p["title"]
                        );
                    }
                }
            }
            for name in mentioned_names(&text) {
                assert!(
                    served.contains(&name),
                    "{} uses {name}, which legerd does not serve; served: {served:?}",
                    path.display()
                );
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} names found in {dir:?}");
    }

    /// Every family legerd serves is documented in `docs/metrics.md`.
    #[test]
    fn metrics_every_family_is_documented() {
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"),
        )
        .unwrap();
        let documented = mentioned_names(&docs);
        let text = Metrics::new(true).render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let family = line.split(' ').nth(2).unwrap();
            let kind = line.split(' ').nth(3).unwrap();
            let name = match kind {
                "counter" => format!("{family}_total"),
                "info" => format!("{family}_info"),
                _ => family.to_owned(),
            };
            assert!(
                documented.contains(&name),
                "{name} is served but not in docs/metrics.md"
            );
        }
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_openmetrics_over_tcp() {
        let metrics = Arc::new(Metrics::new(false));
        metrics.record_pass(&pass(PassOutcome::Applied, Some("aaa"), &[]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), async move {
            let _ = stop_rx.await;
        }));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("headers and body");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        let m = parse(body);
        assert_eq!(m["legerd_reconcile_total{outcome=\"applied\"}"], 1.0);
        let _ = stop_tx.send(());
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn metrics_start_serves_on_a_unix_socket_and_removes_it_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/metrics.sock");
        let settings = MetricsSettings {
            listen: None,
            socket: Some(path.clone()),
            per_app_labels: false,
        };
        let stop = CancellationToken::new();
        let tasks = start(&settings, Arc::new(Metrics::new(false)), stop.clone())
            .await
            .unwrap();
        assert_eq!(tasks.len(), 1);
        let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (_, body) = response.split_once("\r\n\r\n").expect("headers and body");
        assert_eq!(parse(body)["legerd_last_reconcile_failed"], 0.0);
        stop.cancel();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(!path.exists(), "the socket is removed on stop");
    }

    #[tokio::test]
    async fn metrics_start_names_the_address_when_it_is_taken() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let settings = MetricsSettings {
            listen: Some(addr),
            socket: None,
            per_app_labels: false,
        };
        let e = start(
            &settings,
            Arc::new(Metrics::new(false)),
            CancellationToken::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&addr.to_string()) && e.contains("metrics.listen"),
            "{e}"
        );
    }
}

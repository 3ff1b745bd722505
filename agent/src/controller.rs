//! The controller loop: merges triggers, runs one pass at a time, backs off on
//! failure, and publishes status.
//!
//! Shaped like kube-runtime's controller: many trigger streams feed one channel, a
//! scheduler ([`Schedule`]) debounces them, and the reconciler never runs twice at
//! once. A shutdown request is honoured between passes, so SIGTERM lets the current
//! pass finish instead of leaving an apply half-done.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::RecommendedWatcher;
use tokio::sync::mpsc;
use tracing::Instrument;

use leger_api_types::{StagedChange, StatusDocument};
use leger_config::Settings;

use crate::activity;
use crate::backup::RestoreJob;
use crate::fswatch;
use crate::pass::PassResult;
use crate::pass::preview::PlanJob;
use crate::pass::retry::RetryPolicy;
use crate::reconciler::Reconciler;
use crate::schedule::{Schedule, Trigger};
use crate::systemd::UnitManager;

/// Everything the loop needs.
#[derive(Debug)]
pub struct Controller<U> {
    settings: Settings,
    reconciler: Reconciler<U>,
    triggers: mpsc::UnboundedReceiver<Trigger>,
    /// Kept to create watches (dir sources) that feed the same channel.
    trigger_tx: mpsc::UnboundedSender<Trigger>,
    status: tokio::sync::watch::Sender<StatusDocument>,
    /// Where the staged change is published, when the API serves it.
    staged: Option<tokio::sync::watch::Sender<Option<StagedChange>>>,
    dir_watch: Option<(PathBuf, RecommendedWatcher)>,
    /// Restore requests from the API, run between passes.
    restores: Option<mpsc::Receiver<RestoreJob>>,
    /// Plan requests (`legerctl plan`), answered between passes.
    plans: Option<mpsc::Receiver<PlanJob>>,
    /// A managed unit changed state: status's unit states are read again between
    /// passes, so they stay live while passes are suspended.
    unit_changes: Option<mpsc::Receiver<()>>,
}

/// Tells the service manager about progress. A no-op outside systemd.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    let _ = sd_notify::notify(states);
}

impl<U: UnitManager + 'static> Controller<U> {
    /// A controller fed by `triggers`; `trigger_tx` must send into the same channel.
    pub fn new(
        settings: Settings,
        reconciler: Reconciler<U>,
        triggers: mpsc::UnboundedReceiver<Trigger>,
        trigger_tx: mpsc::UnboundedSender<Trigger>,
        status: tokio::sync::watch::Sender<StatusDocument>,
    ) -> Self {
        Controller {
            settings,
            reconciler,
            triggers,
            trigger_tx,
            status,
            dir_watch: None,
            staged: None,
            restores: None,
            plans: None,
            unit_changes: None,
        }
    }

    /// Publishes the staged change (for `GET /v1/staged`) after every pass.
    pub fn with_staged(mut self, staged: tokio::sync::watch::Sender<Option<StagedChange>>) -> Self {
        self.staged = Some(staged);
        self
    }

    /// Serves restore requests (`POST /v1/restore`) from `rx`, one at a time between
    /// passes: a restore that ran during an apply would fight it over the same files.
    pub fn with_restores(mut self, rx: mpsc::Receiver<RestoreJob>) -> Self {
        self.restores = Some(rx);
        self
    }

    /// Answers plan requests (`GET /v1/plan`) from `rx` between passes: a plan borrows
    /// the pass's source, validation cache and secrets.
    pub fn with_plans(mut self, rx: mpsc::Receiver<PlanJob>) -> Self {
        self.plans = Some(rx);
        self
    }

    /// Refreshes status's unit states when `rx` says a managed unit changed state.
    pub fn with_unit_changes(mut self, rx: mpsc::Receiver<()>) -> Self {
        self.unit_changes = Some(rx);
        self
    }

    /// Runs until `shutdown` resolves. `on_pass` sees every finished pass (tests,
    /// `--once`); return `false` from it to stop the loop.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut on_pass: impl FnMut(&PassResult) -> bool,
    ) {
        let debounce = self.settings.reconcile.debounce;
        let mut retry = RetryPolicy::new(&self.settings.reconcile);
        let mut schedule = Schedule::default();
        schedule.on_trigger(&Trigger::Startup, Instant::now(), Duration::ZERO);
        let mut ready_sent = false;
        let pass_budget = self.settings.timeouts.pass;
        let clock = Arc::new(PassClock::default());
        let _watchdog = spawn_watchdog(Arc::clone(&clock), pass_budget + WATCHDOG_SLACK);
        tokio::pin!(shutdown);
        loop {
            let due = schedule.next_run();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(t) = self.triggers.recv() => {
                    // legerd's own writes and restarts come back here too; they are
                    // told apart by what the host holds now, not by time, so a hand
                    // edit right after an apply is still drift.
                    let mut batch = vec![t];
                    while let Ok(t) = self.triggers.try_recv() {
                        batch.push(t);
                    }
                    let (units, store) = self.reconciler.echo_parts();
                    let quadlet_dir = &self.settings.paths.quadlet_dir;
                    for t in crate::echo::drop_echoes(batch, quadlet_dir, store, units).await {
                        tracing::debug!(trigger = %t.label(), "trigger");
                        schedule.on_trigger(&t, Instant::now(), debounce);
                    }
                    continue;
                }
                Some(job) = next_job(&mut self.restores) => {
                let span = tracing::info_span!("restore", app = %job.request.app);
                let (_, result) = self.reconciler.restore(&job.request).instrument(span).await;
                if let Err(e) = &result {
                    tracing::error!(app = %job.request.app, error = %e, "restore failed");
                }
                self.publish_status();
                let _ = job.reply.send(result);
                continue;
            }
                Some(()) = next_job(&mut self.unit_changes) => {
                    // Events that queued meanwhile need no second read.
                    if let Some(rx) = self.unit_changes.as_mut() {
                        while rx.try_recv().is_ok() {}
                    }
                    self.reconciler.refresh_unit_states().await;
                    self.publish_status();
                    continue;
                }
                Some(job) = next_job(&mut self.plans) => {
                    let span = tracing::info_span!("plan");
                    let answer = self.reconciler.plan(job.app.as_deref()).instrument(span).await;
                    let _ = job.reply.send(answer);
                    continue;
                }
                () = sleep_until(due) => {}
            }
            let Some(labels) = schedule.take_due(Instant::now()) else {
                continue;
            };

            // Watch a dir source before the pass fetches from it: an edit made during
            // the pass (READY comes before its health gate ends) is then a trigger, not
            // something only the next poll sees.
            self.reconciler.reload_desired().await;
            self.update_dir_watch();
            self.reconciler.mark_reconciling();
            self.publish_status();
            let span = tracing::info_span!("reconcile", trigger = %labels.join(","));
            clock.started(Instant::now());
            let result = {
                let started_at = std::time::SystemTime::now();
                let pass = self.reconciler.reconcile(&labels).instrument(span);
                match run_within_budget(pass, pass_budget, &self.status, &mut ready_sent).await {
                    Ok(result) => result,
                    Err(stuck) => {
                        tracing::error!(budget = %humantime::format_duration(pass_budget), stuck = %stuck, "pass abandoned over its budget");
                        self.reconciler
                            .abandon_pass(&labels, started_at, pass_budget, &stuck)
                            .await
                    }
                }
            };
            clock.finished();
            let now = Instant::now();
            let next = retry.next_within(
                result.failure_cause,
                result.retry_after,
                self.reconciler.poll_interval(),
                rand::random(),
            );
            schedule.after_pass(now, next);
            tracing::info!(
                outcome = result.record.outcome.as_str(),
                duration_ms = result.record.duration_ms,
                next_in_ms = schedule
                    .next_run()
                    .map(|n| n.saturating_duration_since(now).as_millis() as u64),
                "pass finished"
            );
            if let Some(tx) = &self.staged {
                tx.send_replace(self.reconciler.staged());
            }
            self.publish_status();
            let line = status_line(
                &self.reconciler.status_line(),
                next.is_retry(),
                schedule
                    .next_run()
                    .map(|n| n.saturating_duration_since(now)),
            );
            notify(&[sd_notify::NotifyState::Status(&line)]);
            if !ready_sent {
                // READY once the first pass is over, whatever its outcome, unless its
                // apply already said so (see `run_within_budget`): units that order
                // after legerd then see a host that has been converged once.
                notify(&[sd_notify::NotifyState::Ready]);
                ready_sent = true;
            }
            self.update_dir_watch();
            if !on_pass(&result) {
                break;
            }
        }
        notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("stopping"),
        ]);
    }

    /// Publishes the status projected from the reconciler's state.
    fn publish_status(&self) {
        let previous = self.status.borrow().clone();
        self.status
            .send_replace(self.reconciler.status(Some(&previous)));
    }

    /// Keeps an inotify watch on the `dir` source in force, if any.
    fn update_dir_watch(&mut self) {
        let wanted = self.reconciler.dir_source_path().map(ToOwned::to_owned);
        if self.dir_watch.as_ref().map(|(p, _)| p) == wanted.as_ref() {
            return;
        }
        self.dir_watch = None;
        if let Some(path) = wanted {
            match fswatch::watch(
                &path,
                true,
                |p| !fswatch::is_temp_file(p),
                self.trigger_tx.clone(),
                Trigger::SourceChanged,
            ) {
                Ok(w) => self.dir_watch = Some((path, w)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot watch the dir source; relying on polls")
                }
            }
        }
    }
}

/// The `STATUS=` line: the reconciler's summary plus when the next pass is due, so
/// `systemctl status legerd` answers "when will it look again?".
pub fn status_line(summary: &str, retrying: bool, next: Option<Duration>) -> String {
    match next {
        Some(d) => {
            let what = if retrying { "retry" } else { "next poll" };
            // Round up: "next poll in 0s" would read as "now".
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            format!("{summary} · {what} in {secs}s")
        }
        None => summary.to_owned(),
    }
}

/// How long past its budget a pass may still be running before the watchdog stops
/// pinging: the controller abandons a pass at its budget, so a pass older than this
/// means the loop itself is wedged (a thread blocked where it must not be).
const WATCHDOG_SLACK: Duration = Duration::from_secs(30);

/// How often the Reconciling condition is refreshed with what a running pass waits on.
const PROGRESS_REFRESH: Duration = Duration::from_secs(2);

/// How far each refresh of the first pass pushes systemd's start timeout: many
/// refreshes long, so a loaded host that misses a few does not lose the start.
const START_EXTENSION_USEC: u32 = 60_000_000;

/// Runs `pass` for at most `budget`. Meanwhile the published status (and systemd's
/// STATUS= line) says what the pass is waiting on, so `legerctl status` names a hung
/// command before the budget is up. On timeout the pass is dropped, which kills any
/// command it was running, and the error describes what it was stuck in.
///
/// When the pass has applied a revision and its health gate starts, status says it is
/// verifying, and the first time READY=1 goes out (`ready_sent`): `systemctl start
/// legerd` returns once the first revision is applied, not after the gate's settle
/// time, and the gate goes on (a failed gate still rolls back).
///
/// Until READY: a first converge of many apps (or of large images) can outlast the
/// unit's `TimeoutStartSec=`, and systemd would kill legerd mid-apply and start it
/// again, forever. So while the loop is alive and the pass within its budget, each
/// refresh extends the start timeout a little (`EXTEND_TIMEOUT_USEC`); a wedged loop
/// stops extending and times out as before.
async fn run_within_budget<F: Future<Output = PassResult>>(
    pass: F,
    budget: Duration,
    status: &tokio::sync::watch::Sender<StatusDocument>,
    ready_sent: &mut bool,
) -> Result<PassResult, String> {
    tokio::pin!(pass);
    let deadline = tokio::time::Instant::now() + budget;
    let mut refresh = tokio::time::interval(PROGRESS_REFRESH);
    let mut verifying = activity::watch_verifying();
    refresh.tick().await;
    loop {
        tokio::select! {
            result = &mut pass => return Ok(result),
            () = tokio::time::sleep_until(deadline) => {
                // Read before the pass is dropped: dropping it unregisters its operations.
                return Err(describe_stuck(&activity::all()));
            }
            Ok(()) = verifying.changed() => {
                let Some(applied) = verifying.borrow_and_update().clone() else {
                    continue;
                };
                let revision = applied.revision;
                let line = verifying_line(&revision);
                status.send_modify(|doc| {
                    note_reconciling(doc, &line);
                    // The applied revision's apps, so status lists what now runs while
                    // its gate goes on; the pass's end publishes the final word.
                    doc.status.apps = applied.apps;
                });
                notify(&[sd_notify::NotifyState::Status(&line)]);
                if !*ready_sent {
                    notify(&[sd_notify::NotifyState::Ready]);
                    *ready_sent = true;
                    tracing::info!(leger_revision = %revision, "first revision applied: ready; its health gate goes on");
                }
            }
            _ = refresh.tick() => {
                let waiting = describe_stuck(&activity::all());
                let line = match verifying.borrow().as_ref() {
                    Some(a) => format!("{} · waiting on {waiting}", verifying_line(&a.revision)),
                    None => format!("reconcile pass in progress; waiting on {waiting}"),
                };
                status.send_modify(|doc| note_reconciling(doc, &line));
                // `systemctl status legerd` says it too, until the pass ends.
                notify(&[sd_notify::NotifyState::Status(&line)]);
                if !*ready_sent {
                    notify(&[sd_notify::NotifyState::ExtendTimeoutUsec(START_EXTENSION_USEC)]);
                }
            }
        }
    }
}

/// What status and `STATUS=` say while an applied revision's health gate runs.
fn verifying_line(revision: &str) -> String {
    format!(
        "verifying: revision {} applied, health gate running",
        crate::model::Revision(revision)
    )
}

/// The operations a pass is waiting on, outermost first: "health gate of web.service
/// (running 1m2s) → `podman inspect … systemd-web` (running 58s)".
pub fn describe_stuck(ops: &[activity::Operation]) -> String {
    if ops.is_empty() {
        return "no external command or D-Bus call was in flight (legerd's own work)".to_owned();
    }
    ops.iter()
        .map(|o| {
            let secs = Duration::from_secs(o.running_for.as_secs());
            format!("{} (running {})", o.label, humantime::format_duration(secs))
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// Puts what the running pass is doing into the Reconciling condition's message.
fn note_reconciling(doc: &mut StatusDocument, message: &str) {
    use leger_api_types::status::condition_type;
    if let Some(c) = doc
        .status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == condition_type::RECONCILING)
    {
        message.clone_into(&mut c.message);
    }
}

/// When the running pass started, for the watchdog.
#[derive(Debug, Default)]
struct PassClock {
    started: Mutex<Option<Instant>>,
}

impl PassClock {
    fn started(&self, at: Instant) {
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    fn finished(&self) {
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn running_since(&self) -> Option<Instant> {
        *self.started.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the loop still makes progress: idle, or in a pass younger than `limit`.
pub fn making_progress(pass_started: Option<Instant>, now: Instant, limit: Duration) -> bool {
    pass_started.is_none_or(|t| now.saturating_duration_since(t) <= limit)
}

/// Sends `WATCHDOG=1` at half the `WatchdogSec=` period while the loop makes progress,
/// when the unit sets one. It runs beside the loop, not in it, so a pass may take longer
/// than the watchdog period (a unit job waits up to `systemd.job_timeout`). It stops
/// pinging when a pass has run past its budget plus [`WATCHDOG_SLACK`]: the controller
/// abandons passes at their budget, so such a pass means the loop is wedged, and
/// systemd's restart is the way out. Dropping the guard stops it.
fn spawn_watchdog(clock: Arc<PassClock>, limit: Duration) -> Option<AbortOnDrop> {
    let period = sd_notify::watchdog_enabled()?;
    tracing::debug!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        let mut warned = false;
        loop {
            tick.tick().await;
            if making_progress(clock.running_since(), Instant::now(), limit) {
                notify(&[sd_notify::NotifyState::Watchdog]);
                warned = false;
            } else if !warned {
                tracing::error!(
                    stuck = %describe_stuck(&activity::all()),
                    "a pass has run past its budget without being abandoned; no longer pinging the watchdog so systemd restarts legerd"
                );
                warned = true;
            }
        }
    });
    Some(AbortOnDrop(task))
}

/// Aborts a background task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next request on an optional channel; never resolves when there is none.
async fn next_job<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_says_when_the_next_pass_is() {
        assert_eq!(
            status_line(
                "applied 3f2a1c0 · 12 apps",
                false,
                Some(Duration::from_millis(57_200))
            ),
            "applied 3f2a1c0 · 12 apps · next poll in 58s"
        );
        assert_eq!(
            status_line("nothing", true, Some(Duration::from_secs(4))),
            "nothing · retry in 4s"
        );
        assert_eq!(status_line("nothing", false, None), "nothing");
    }

    fn reconciling_message(doc: &StatusDocument) -> String {
        doc.status
            .conditions
            .iter()
            .find(|c| c.type_ == "Reconciling")
            .map(|c| c.message.clone())
            .unwrap_or_default()
    }

    /// A status document whose Reconciling condition says a pass runs.
    fn reconciling_doc() -> StatusDocument {
        use leger_api_types::{AgentStatus, Condition, ConditionStatus, StatusSpec};
        StatusDocument::new(
            StatusSpec::default(),
            AgentStatus {
                conditions: vec![Condition {
                    type_: "Reconciling".into(),
                    status: ConditionStatus::True,
                    reason: "Progressing".into(),
                    message: "reconcile pass in progress".into(),
                    last_transition_time: String::new(),
                }],
                ..AgentStatus::default()
            },
        )
    }

    /// A pass that never finishes is given up at its budget, the error names what it
    /// was waiting on, and meanwhile the published status says so.
    #[tokio::test]
    async fn run_within_budget_abandons_a_stuck_pass_naming_its_operation() {
        let (tx, rx) = tokio::sync::watch::channel(reconciling_doc());
        let stuck = async {
            let _op = activity::begin("`budget-test hang`");
            std::future::pending::<PassResult>().await
        };
        let budget = PROGRESS_REFRESH * 2 + Duration::from_millis(500);
        let err = run_within_budget(stuck, budget, &tx, &mut false)
            .await
            .unwrap_err();
        assert!(err.contains("`budget-test hang` (running "), "{err}");
        let message = reconciling_message(&rx.borrow());
        assert!(
            message.contains("waiting on") && message.contains("`budget-test hang`"),
            "{message}"
        );
        // Dropping the pass unregistered its operation.
        assert!(
            !activity::all()
                .iter()
                .any(|o| o.label == "`budget-test hang`")
        );
    }

    /// An applied revision whose health gate starts makes legerd READY at once and
    /// status say it is verifying, while the pass (the gate) goes on.
    #[tokio::test]
    async fn run_within_budget_is_ready_and_verifying_once_the_revision_is_applied() {
        use leger_api_types::{PassOutcome, PassRecord};
        let (tx, rx) = tokio::sync::watch::channel(reconciling_doc());
        let mut seen = rx.clone();
        let pass = async move {
            let _gate = activity::verifying(activity::Applied {
                revision: "0123456789abcdef0123".into(),
                apps: vec![leger_api_types::status::AppStatus {
                    name: "web".into(),
                    units: vec![],
                    layer: None,
                }],
            });
            // The gate "runs" until the controller has published that it is verifying.
            seen.wait_for(|d| reconciling_message(d).starts_with("verifying"))
                .await
                .unwrap();
            PassResult {
                record: PassRecord {
                    id: 1,
                    started_at: String::new(),
                    finished_at: String::new(),
                    duration_ms: 0,
                    trigger: "startup".into(),
                    revision: None,
                    outcome: PassOutcome::Applied,
                    actions: vec![],
                    error: None,
                    runs: 1,
                    first_started_at: None,
                },
                failure_cause: None,
                retry_after: None,
            }
        };
        let mut ready = false;
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            run_within_budget(pass, Duration::from_secs(120), &tx, &mut ready),
        )
        .await
        .expect("the pass ends once verifying was published");
        assert!(result.is_ok());
        assert!(ready, "READY went out when the revision was applied");
        assert_eq!(
            reconciling_message(&rx.borrow()),
            "verifying: revision 0123456789ab applied, health gate running"
        );
        let names: Vec<String> = rx
            .borrow()
            .status
            .apps
            .iter()
            .map(|a| a.name.clone())
            .collect();
        assert_eq!(
            names,
            ["web"],
            "status lists the applied apps during the gate"
        );
    }

    #[test]
    fn making_progress_while_idle_or_within_the_limit() {
        let now = Instant::now();
        let limit = Duration::from_secs(60);
        assert!(making_progress(None, now, limit));
        assert!(making_progress(Some(now), now + limit, limit));
        assert!(!making_progress(
            Some(now),
            now + limit + Duration::from_secs(1),
            limit
        ));
    }

    #[test]
    fn describe_stuck_names_every_operation_in_flight() {
        let ops = [
            activity::Operation {
                label: "health gate".into(),
                running_for: Duration::from_millis(62_400),
            },
            activity::Operation {
                label: "podman volume export db".into(),
                running_for: Duration::from_secs(58),
            },
        ];
        assert_eq!(
            describe_stuck(&ops),
            "health gate (running 1m 2s) → podman volume export db (running 58s)"
        );
        assert!(describe_stuck(&[]).contains("no external command"));
    }
}

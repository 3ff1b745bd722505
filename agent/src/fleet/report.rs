//! Deployment reports: legerd tells a fleet view (`fleet.report_url`) which revision
//! this host runs, how its apps are, and where it stands with the fleet lock.
//!
//! The reporter is a task of its own that watches the status document the controller
//! publishes: it never runs inside a pass, so a slow or dead report server can never
//! hold up convergence. It sends after every pass that changed the outcome, a
//! revision or the conditions, and a heartbeat every `fleet.report_interval`. A report
//! that fails is kept and retried with backoff; a newer state replaces it, so the
//! server always gets the latest. The bearer token is read from
//! `fleet.report_token_file` for every send (so it can be rotated) and never logged.

use std::path::PathBuf;
use std::time::Duration;

use leger_api_types::StatusDocument;
use leger_api_types::fleet::{DeploymentReport, REPORT_KIND};
use leger_api_types::status::API_VERSION;
use leger_config::fleet::FleetSettings;
use tokio::sync::watch;

use crate::clock::now_rfc3339;
use crate::source::git::redact_url;

/// How long one report may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// The first retry after a failed send; doubles up to the report interval.
const RETRY_INITIAL: Duration = Duration::from_secs(5);

/// What decides whether a pass is worth a report: the outcome of the last pass, the
/// revisions and the conditions (type, status, reason), and the lock state.
pub fn fingerprint(doc: &StatusDocument) -> String {
    let st = &doc.status;
    let mut s = format!(
        "{:?}|{:?}|{:?}|",
        st.last_pass.as_ref().map(|p| p.outcome),
        st.fetched_revision,
        st.applied_revision
    );
    for c in &st.conditions {
        s.push_str(&format!("{}={:?}:{};", c.type_, c.status, c.reason));
    }
    if let Some(lock) = st.fleet.as_ref().and_then(|f| f.lock.as_ref()) {
        s.push_str(&format!("lock={:?}", lock.state));
    }
    s
}

/// The report for a status document.
pub fn build(doc: &StatusDocument, fleet: &FleetSettings, trigger: &str) -> DeploymentReport {
    let st = &doc.status;
    let source = match (&doc.spec.source_kind, &doc.spec.source) {
        (Some(kind), Some(src)) => Some(format!("{kind} {}", redact_url(src))),
        _ => None,
    };
    DeploymentReport {
        api_version: API_VERSION.to_owned(),
        kind: REPORT_KIND.to_owned(),
        time: now_rfc3339(),
        trigger: trigger.to_owned(),
        fleet: st
            .fleet
            .clone()
            .unwrap_or_else(|| leger_api_types::fleet::FleetStatus {
                host: fleet.host.clone(),
                groups: fleet.groups.clone(),
                lock: None,
            }),
        agent_version: st.agent_version.clone(),
        source,
        fetched_revision: st.fetched_revision.clone(),
        applied_revision: st.applied_revision.clone(),
        last_outcome: st.last_pass.as_ref().map(|p| p.outcome),
        conditions: st.conditions.clone(),
        apps: st.apps.clone(),
    }
}

/// Sends reports to one URL.
#[derive(Debug, Clone)]
pub struct ReportClient {
    url: String,
    token_file: Option<PathBuf>,
    http: reqwest::Client,
}

impl ReportClient {
    /// A client for `url`, with the bearer token read from `token_file`.
    pub fn new(url: &str, token_file: Option<PathBuf>) -> Self {
        ReportClient {
            url: url.to_owned(),
            token_file,
            http: reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .connect_timeout(SEND_TIMEOUT)
                .build()
                .expect("a plain reqwest client always builds"),
        }
    }

    /// POSTs one report; any answer but 2xx is an error (without the token in it).
    pub async fn send(&self, report: &DeploymentReport) -> Result<(), String> {
        let mut req = self.http.post(&self.url).json(report);
        if let Some(path) = &self.token_file {
            let p = path.clone();
            let token = crate::pass::blocking::run(move || std::fs::read_to_string(&p))
                .await
                .map_err(|e| {
                    format!(
                        "cannot read fleet.report_token_file {}: {e}",
                        path.display()
                    )
                })?;
            req = req.bearer_auth(token.trim());
        }
        let response = req.send().await.map_err(|e| {
            format!(
                "cannot reach {}: {}",
                self.url,
                super::fleetlock::error_chain(&e)
            )
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("{} answered HTTP {}", self.url, response.status()))
        }
    }
}

/// Runs until `status` closes: a report after every pass that changed something, a
/// heartbeat every `fleet.report_interval`, failed sends retried with backoff.
pub async fn run(fleet: FleetSettings, mut status: watch::Receiver<StatusDocument>) {
    let Some(url) = fleet.report_url.clone() else {
        return;
    };
    let client = ReportClient::new(&url, fleet.report_token_file.clone());
    let interval = fleet.report_interval;
    let mut sent: Option<String> = None;
    let mut retry = RETRY_INITIAL;
    let mut due = tokio::time::Instant::now();
    let mut trigger = "startup";
    loop {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                let fp = fingerprint(&status.borrow());
                // A pass in progress is not a result yet; its end publishes again.
                let running = status.borrow().status.conditions.iter().any(|c| {
                    c.type_ == "Reconciling" && c.reason == leger_api_types::status::reason::PROGRESSING
                });
                if running || sent.as_deref() == Some(fp.as_str()) {
                    continue;
                }
                trigger = "pass";
                due = tokio::time::Instant::now();
            }
            () = tokio::time::sleep_until(due) => {}
        }
        if tokio::time::Instant::now() < due {
            continue;
        }
        let (report, fp) = {
            let doc = status.borrow();
            (build(&doc, &fleet, trigger), fingerprint(&doc))
        };
        match client.send(&report).await {
            Ok(()) => {
                sent = Some(fp);
                retry = RETRY_INITIAL;
                trigger = "heartbeat";
                due = tokio::time::Instant::now() + interval;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = retry.as_secs(), "deployment report not delivered; retrying later");
                due = tokio::time::Instant::now() + retry;
                retry = (retry * 2).min(interval.max(RETRY_INITIAL));
            }
        }
    }
}

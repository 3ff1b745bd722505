//! Deployment reports against the fleet test server on 127.0.0.1: sent after a pass
//! that changed something, as heartbeats, with the bearer token from a file, retried
//! after a failure, and never carrying credentials from the source URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use leger_api_types::fleet::FleetStatus;
use leger_api_types::{
    AgentStatus, AppStatus, PassOutcome, PassRecord, StatusDocument, StatusSpec, UnitStatus,
};
use leger_config::fleet::FleetSettings;
use leger_e2e::fleet_server;
use tokio::sync::watch;

fn doc(applied: &str, outcome: PassOutcome) -> StatusDocument {
    StatusDocument::new(
        StatusSpec {
            source_kind: Some("git".into()),
            source: Some("https://deploy:s3cret-token@git.example.org/fleet.git".into()),
            ..StatusSpec::default()
        },
        AgentStatus {
            agent_version: "0.1.0".into(),
            applied_revision: Some(applied.into()),
            apps: vec![AppStatus {
                name: "web".into(),
                units: vec![UnitStatus {
                    name: "web.service".into(),
                    active_state: "active".into(),
                    sub_state: "running".into(),
                }],
                layer: Some("hosts/h1/apps".into()),
            }],
            last_pass: Some(PassRecord {
                id: 1,
                started_at: "t".into(),
                finished_at: "t".into(),
                duration_ms: 1,
                trigger: "poll".into(),
                revision: Some(applied.into()),
                outcome,
                actions: vec![],
                error: None,
                runs: 1,
                first_started_at: None,
            }),
            fleet: Some(FleetStatus {
                host: "h1".into(),
                groups: vec!["eu".into()],
                lock: None,
            }),
            ..AgentStatus::default()
        },
    )
}

async fn wait_reports(state: &fleet_server::Shared, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = state.lock().unwrap().reports.clone();
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "only {} reports arrived",
            r.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn fleet_report_after_changes_and_as_heartbeat_with_a_bearer_token() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/report", listener.local_addr().unwrap());
    let state = fleet_server::state(1, Some("tok-123".into()));
    tokio::spawn(fleet_server::serve(listener, Arc::clone(&state)));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let fleet = FleetSettings {
        host: "h1".into(),
        groups: vec!["eu".into()],
        report_url: Some(url),
        report_token_file: Some(token),
        report_interval: Duration::from_millis(800),
        lock: None,
    };
    let (tx, rx) = watch::channel(doc("rev-1", PassOutcome::Applied));
    tokio::spawn(legerd::fleet::report::run(fleet, rx));
    let first = wait_reports(&state, 1).await;
    let r = &first[0];
    assert_eq!(r["apiVersion"], "leger.run/v1alpha1");
    assert_eq!(r["kind"], "DeploymentReport");
    assert_eq!(r["fleet"]["host"], "h1");
    assert_eq!(r["appliedRevision"], "rev-1");
    assert_eq!(r["apps"][0]["layer"], "hosts/h1/apps");
    assert_eq!(r["apps"][0]["units"][0]["activeState"], "active");
    let text = r.to_string();
    assert!(!text.contains("s3cret-token"), "{text}");
    // A change is reported at once; the same state again is not.
    tx.send_replace(doc("rev-2", PassOutcome::Applied));
    let r = wait_reports(&state, 2).await;
    assert_eq!(r[1]["appliedRevision"], "rev-2");
    assert_eq!(r[1]["trigger"], "pass");
    // The same state published again (a no-op pass) is no news: the next report is the
    // heartbeat, which follows without any change.
    tx.send_replace(doc("rev-2", PassOutcome::Applied));
    let r = wait_reports(&state, 3).await;
    assert_eq!(r[2]["trigger"], "heartbeat");
    assert_eq!(r[2]["appliedRevision"], "rev-2");
    // A change of the conditions alone (same revision, same outcome) is reported.
    let mut changed = doc("rev-2", PassOutcome::Applied);
    changed
        .status
        .conditions
        .push(leger_api_types::status::Condition {
            type_: "Ready".into(),
            status: leger_api_types::status::ConditionStatus::False,
            reason: "UnitsFailed".into(),
            message: "web.service failed".into(),
            last_transition_time: "t".into(),
        });
    let before = state.lock().unwrap().reports.len();
    tx.send_replace(changed);
    let r = wait_reports(&state, before + 1).await;
    assert_eq!(r[before]["trigger"], "pass", "{:?}", r[before]);
    assert_eq!(r[before]["conditions"][0]["reason"], "UnitsFailed");
}

/// A refused report (a wrong token: HTTP 401) is retried, and the token file is read
/// for every send, so fixing or rotating it needs no restart of legerd.
#[tokio::test]
async fn fleet_report_refused_is_retried_and_the_token_file_is_reread() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/report", listener.local_addr().unwrap());
    let state = fleet_server::state(1, Some("new-token".into()));
    tokio::spawn(fleet_server::serve(listener, Arc::clone(&state)));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "old-token\n").unwrap();
    let fleet = FleetSettings {
        host: "h1".into(),
        groups: vec![],
        report_url: Some(url.clone()),
        report_token_file: Some(token.clone()),
        report_interval: Duration::from_secs(3600),
        lock: None,
    };
    let client = legerd::fleet::report::ReportClient::new(&url, Some(token.clone()));
    let report = legerd::fleet::report::build(&doc("rev-1", PassOutcome::Applied), &fleet, "pass");
    let e = client.send(&report).await.unwrap_err();
    assert!(e.contains("answered HTTP 401"), "{e}");
    assert!(!e.contains("old-token"), "{e}");
    let (_tx, rx) = watch::channel(doc("rev-1", PassOutcome::Applied));
    tokio::spawn(legerd::fleet::report::run(fleet, rx));
    // Refused for now; the operator puts the right token in place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(state.lock().unwrap().reports.is_empty());
    std::fs::write(&token, "new-token\n").unwrap();
    let r = wait_reports(&state, 1).await;
    assert_eq!(r[0]["appliedRevision"], "rev-1");
    // A token file that cannot be read says which file and key.
    std::fs::remove_file(&token).unwrap();
    let e = client.send(&report).await.unwrap_err();
    assert!(
        e.contains("fleet.report_token_file") && e.contains("token"),
        "{e}"
    );
}

#[tokio::test]
async fn fleet_report_failures_are_retried_with_the_latest_state() {
    // Nobody listens yet: the first sends fail.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let fleet = FleetSettings {
        host: "h1".into(),
        groups: vec![],
        report_url: Some(format!("http://{addr}/report")),
        report_token_file: None,
        report_interval: Duration::from_secs(3600),
        lock: None,
    };
    let (tx, rx) = watch::channel(doc("rev-1", PassOutcome::Applied));
    tokio::spawn(legerd::fleet::report::run(fleet, rx));
    tx.send_replace(doc("rev-2", PassOutcome::RolledBack));
    // The server comes up; the retry (5 s backoff) delivers the newest state.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let state = fleet_server::state(1, None);
    tokio::spawn(fleet_server::serve(listener, Arc::clone(&state)));
    let r = wait_reports(&state, 1).await;
    assert_eq!(r[0]["appliedRevision"], "rev-2");
    assert_eq!(r[0]["lastOutcome"], "rolled_back");
}

//! `DeploymentReport` as serde writes it, against the published JSON Schema in
//! `docs/report.schema.json` (draft 2020-12, format assertions on).
//!
//! The published schema leaves objects open, so a report reader keeps working when a
//! field is added. This test closes every object (`additionalProperties: false`)
//! before validating: a field the Rust type sends but the schema does not document
//! fails here, and so does a renamed one.

use leger_api_types::fleet::{DeploymentReport, FleetStatus, LockState, LockStatus, REPORT_KIND};
use leger_api_types::status::{API_VERSION, condition_type};
use leger_api_types::{AppStatus, Condition, ConditionStatus, PassOutcome, UnitStatus};
use serde_json::Value;

const SCHEMA: &str = include_str!("../../docs/report.schema.json");
const LOCATION: &str = "https://leger.run/schemas/deployment-report-v1alpha1.json";

/// Sets `additionalProperties: false` on every object schema that lists properties.
fn close(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in map.values_mut() {
                close(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close),
        _ => {}
    }
}

struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new() -> Self {
        let mut schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
        assert_eq!(schema["$id"], LOCATION);
        close(&mut schema);
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        compiler.add_resource(LOCATION, schema).unwrap();
        let index = compiler
            .compile(LOCATION, &mut schemas)
            .unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
        Validator { schemas, index }
    }

    fn check(&self, report: &Value) -> Result<(), String> {
        self.schemas
            .validate(report, self.index)
            .map_err(|e| format!("{e:#}"))
    }
}

fn condition(type_: &str, status: ConditionStatus, reason: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: "a message".into(),
        last_transition_time: "2026-11-30T10:00:00Z".into(),
    }
}

/// A report with every optional field set.
fn full(trigger: &str, outcome: PassOutcome, lock: LockStatus) -> DeploymentReport {
    DeploymentReport {
        api_version: API_VERSION.into(),
        kind: REPORT_KIND.into(),
        time: "2026-11-30T10:00:01Z".into(),
        trigger: trigger.into(),
        fleet: FleetStatus {
            host: "web-03".into(),
            groups: vec!["eu".into(), "canary".into()],
            lock: Some(lock),
        },
        agent_version: "0.1.0".into(),
        source: Some("git https://git.example.org/fleet.git main".into()),
        fetched_revision: Some("0123456789abcdef0123456789abcdef01234567+o0a1b2c3d4e5f".into()),
        applied_revision: Some("0123456789abcdef0123456789abcdef01234567+o0a1b2c3d4e5f".into()),
        last_outcome: Some(outcome),
        conditions: vec![
            condition(condition_type::READY, ConditionStatus::True, "Succeeded"),
            condition(
                condition_type::RECONCILING,
                ConditionStatus::False,
                "WaitingForFleetLock",
            ),
            condition(condition_type::STALLED, ConditionStatus::Unknown, "Unknown"),
        ],
        apps: vec![AppStatus {
            name: "web".into(),
            units: vec![UnitStatus {
                name: "web.service".into(),
                active_state: "active".into(),
                sub_state: "running".into(),
            }],
            layer: Some("hosts/web-03/apps".into()),
        }],
    }
}

fn held(reason: &str) -> LockStatus {
    LockStatus {
        service: "FleetLock server http://192.0.2.1:8080".into(),
        group: "default".into(),
        state: LockState::Held,
        held_since: Some("2026-11-30T09:59:00Z".into()),
        held_reason: Some(reason.into()),
        last_answer: Some("failed_lock: all 1 slots of group default are taken".into()),
    }
}

fn json(report: &DeploymentReport) -> Value {
    serde_json::to_value(report).unwrap()
}

#[test]
fn report_with_every_field_and_variant_validates_against_the_schema() {
    let v = Validator::new();
    let outcomes = [
        PassOutcome::Applied,
        PassOutcome::Noop,
        PassOutcome::Failed,
        PassOutcome::Suspended,
        PassOutcome::Staged,
        PassOutcome::RolledBack,
        PassOutcome::Waiting,
    ];
    let locks = [
        held("rollout"),
        held("rolled_back"),
        LockStatus {
            state: LockState::Waiting,
            held_since: None,
            held_reason: None,
            ..held("rollout")
        },
        LockStatus {
            state: LockState::Free,
            held_since: None,
            held_reason: None,
            last_answer: None,
            ..held("rollout")
        },
    ];
    for trigger in ["startup", "pass", "heartbeat"] {
        for outcome in outcomes {
            for lock in &locks {
                let report = json(&full(trigger, outcome, lock.clone()));
                v.check(&report)
                    .unwrap_or_else(|e| panic!("{e}\nreport: {report:#}"));
            }
        }
    }
}

#[test]
fn report_with_only_required_fields_validates() {
    let v = Validator::new();
    let mut report = full("heartbeat", PassOutcome::Noop, held("rollout"));
    report.fleet.lock = None;
    report.source = None;
    report.fetched_revision = None;
    report.applied_revision = None;
    report.last_outcome = None;
    report.conditions.clear();
    report.apps[0].layer = None;
    let report = json(&report);
    for key in [
        "source",
        "fetchedRevision",
        "appliedRevision",
        "lastOutcome",
    ] {
        assert!(report.get(key).is_none(), "{key} is left out when unset");
    }
    v.check(&report).unwrap();
}

/// A change that breaks a report.
type Breakage = fn(&mut Value);

/// The check above can fail: reports that break the schema in the ways a code
/// change would (a renamed or undocumented field, a new enum value, a bad time) are
/// refused.
#[test]
fn report_schema_refuses_what_the_type_must_not_send() {
    let v = Validator::new();
    let good = json(&full("pass", PassOutcome::Applied, held("rolled_back")));
    v.check(&good).unwrap();
    let broken: [(&str, Breakage); 6] = [
        ("agentVersion", |r| {
            let version = r.as_object_mut().unwrap().remove("agentVersion").unwrap();
            r["agent_version"] = version;
        }),
        ("layer", |r| r["apps"][0]["layerName"] = "x".into()),
        ("heldReason", |r| {
            r["fleet"]["lock"]["heldReason"] = "operator".into()
        }),
        ("lastOutcome", |r| r["lastOutcome"] = "skipped".into()),
        ("time", |r| r["time"] = "yesterday".into()),
        ("apiVersion", |r| r["apiVersion"] = "leger.run/v2".into()),
    ];
    for (what, breakage) in broken {
        let mut report = good.clone();
        breakage(&mut report);
        assert!(
            v.check(&report).is_err(),
            "a report with a bad {what} is refused: {report:#}"
        );
    }
}

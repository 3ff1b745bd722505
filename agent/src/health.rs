//! The health gate: after an apply, every unit that was started or restarted must
//! reach `active` (and `healthy`, when its container has a health check) within a
//! timeout, and then stay up for a settle period.
//!
//! A start job that returns "done" proves little: a container that exits after a
//! second, or a service that crash-loops under `Restart=on-failure`, would pass it.
//! The gate watches long enough to catch both, and its verdict decides between
//! recording the revision as good and rolling it back.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{DesiredTree, QuadletKind, install_key};
use crate::plan::{Action, Plan};
use crate::podman::{JournalScope, Podman};
use crate::quadlet;
use crate::systemd::UnitManager;

/// How often the gate looks at the units.
const POLL: Duration = Duration::from_millis(250);

/// One unit the gate watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateUnit {
    /// The unit.
    pub unit: String,
    /// Its app.
    pub app: String,
    /// The container to ask podman about, when the quadlet sets `HealthCmd=`.
    pub health_container: Option<String>,
    /// The app's `leger.toml` overrides of the timeout and settle time.
    pub overrides: leger_api_types::app_config::AppHealth,
}

/// Why the gate failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateFailure {
    /// The first unit that failed.
    pub unit: String,
    /// Its app.
    pub app: String,
    /// What was seen.
    pub reason: String,
}

/// The units a plan starts or restarts, with what the gate needs to know about them.
pub fn units_to_gate(plan: &Plan, tree: &DesiredTree) -> Vec<GateUnit> {
    plan.actions
        .iter()
        .filter_map(|action| match action {
            Action::StartUnit { unit, app, .. } | Action::RestartUnit { unit, app } => {
                gate_unit(tree, app, unit)
            }
            _ => None,
        })
        .collect()
}

/// What the gate needs to know about `unit` of `app`; `None` when the tree lacks it.
pub fn gate_unit(tree: &DesiredTree, app: &str, unit: &str) -> Option<GateUnit> {
    let a = tree.apps.get(app)?;
    let spec = a.units.iter().find(|u| u.name == unit)?;
    let health_container = (spec.kind == QuadletKind::Container)
        .then(|| health_container(tree, app, &spec.source_file))
        .flatten();
    Some(GateUnit {
        unit: unit.to_owned(),
        app: app.to_owned(),
        health_container,
        overrides: a.config.health,
    })
}

/// The container name of a `.container` quadlet that sets `HealthCmd=`.
fn health_container(tree: &DesiredTree, app: &str, file: &str) -> Option<String> {
    let content = &tree.apps.get(app)?.files.get(file)?.content;
    let text = std::str::from_utf8(content).ok()?;
    let parsed = quadlet::parse(&install_key(app, file), text).ok()?;
    parsed.get("Container", "HealthCmd")?;
    let stem = file.rsplit('/').next()?.strip_suffix(".container")?;
    // quadlet's default container name is `systemd-<stem>`.
    Some(
        parsed
            .get("Container", "ContainerName")
            .map_or_else(|| format!("systemd-{stem}"), str::to_owned),
    )
}

/// Waits until every unit is up (and healthy), then watches them for `settle`.
/// `timeout` and `settle` are legerd's defaults; a unit's app may override them.
pub async fn gate<U: UnitManager>(
    units: &U,
    podman: &dyn Podman,
    targets: &[GateUnit],
    timeout: Duration,
    settle: Duration,
) -> Result<(), GateFailure> {
    // Nothing started, nothing to watch: a no-op pass must not wait out a settle time.
    if targets.is_empty() {
        return Ok(());
    }
    // An app's leger.toml may override both: each unit gets its own timeout, and
    // the settle period is the longest any of them asks for.
    let start = Instant::now();
    let settle = targets
        .iter()
        .map(|t| t.overrides.settle.unwrap_or(settle))
        .max()
        .unwrap_or(settle);
    let _op = crate::activity::begin(format!("health gate of {} unit(s)", targets.len()));
    // Units found at rest after a run to completion: settled, nothing to read again.
    let mut completed = BTreeSet::new();
    for t in targets {
        let timeout = t.overrides.timeout.unwrap_or(timeout);
        let deadline = start + timeout;
        loop {
            let state = read_state(units, t, deadline).await?;
            let up = match state.active_state.as_str() {
                "active" => match &t.health_container {
                    None => true,
                    Some(c) => match container_health(podman, c, deadline).await.as_deref() {
                        Some("healthy") => true,
                        Some("unhealthy") => {
                            return Err(fail(t, format!("container {c} is unhealthy")));
                        }
                        _ => false,
                    },
                },
                "failed" => return Err(fail(t, format!("unit failed ({})", state.sub_state))),
                // At rest after its start job succeeded: a run to completion (a
                // migration, a one-shot job) passes; a unit stopped from outside
                // does not, and will not come back by itself.
                _ if state.has_completed() => match ran_to_completion(units, &t.unit).await {
                    Ok(()) => {
                        completed.insert(t.unit.clone());
                        true
                    }
                    Err(why) => {
                        return Err(fail(
                            t,
                            format!("not active (ActiveState={}): {why}", state.active_state),
                        ));
                    }
                },
                _ => false,
            };
            if up {
                crate::crashpoint::hit("gate-unit-up");
                break;
            }
            if Instant::now() >= deadline {
                return Err(fail(
                    t,
                    format!(
                        "not {} within {} (ActiveState={}, SubState={})",
                        if t.health_container.is_some() {
                            "active and healthy"
                        } else {
                            "active"
                        },
                        humantime::format_duration(timeout),
                        state.active_state,
                        state.sub_state
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let settle_until = Instant::now() + settle;
    loop {
        for t in targets {
            let state = read_state(units, t, settle_until).await?;
            let down = match state.active_state.as_str() {
                "active" | "reloading" => None,
                _ if completed.contains(&t.unit) && state.has_completed() => None,
                _ if state.has_completed() => match ran_to_completion(units, &t.unit).await {
                    Ok(()) => {
                        completed.insert(t.unit.clone());
                        None
                    }
                    Err(why) => Some(why),
                },
                _ => Some(String::new()),
            };
            if let Some(why) = down {
                return Err(fail(
                    t,
                    format!(
                        "did not stay up for {}: ActiveState={} ({}){}{why}",
                        humantime::format_duration(settle),
                        state.active_state,
                        state.sub_state,
                        if why.is_empty() { "" } else { ": " },
                    ),
                ));
            }
        }
        if Instant::now() >= settle_until {
            crate::crashpoint::hit("gate-settled");
            return Ok(());
        }
        tokio::time::sleep(POLL.min(settle_until.saturating_duration_since(Instant::now()))).await;
    }
}

/// For a unit at rest (`inactive`): `Ok` when it ran to completion, `Err` saying what
/// happened instead (stopped from outside, killed). Exact while systemd still has the
/// record of the run, which the unit manager keeps from the start job on
/// ([`UnitManager::last_run`]). With no record (a gate run again after legerd
/// restarted, by when systemd had unloaded the unit) or an unreadable one, a unit at
/// rest after a successful start job is read as completed, as quadlet containers that
/// exit non-zero end `failed` instead.
pub async fn ran_to_completion<U: UnitManager>(units: &U, unit: &str) -> Result<(), String> {
    match units.last_run(unit).await {
        Ok(Some(run)) => run.ran_to_completion().unwrap_or(Ok(())),
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::warn!(unit, error = %e, "cannot read how the unit's run ended; reading it as completed");
            Ok(())
        }
    }
}

/// Reads `t`'s state, looking again every [`POLL`] while the read fails and `until`
/// has not passed. A failed read (the bus restarting, systemd re-executing) says nothing
/// about the revision, and a blip of a few hundred milliseconds must not roll a good
/// revision back; a unit still unreadable at `until` fails the gate.
async fn read_state<U: UnitManager>(
    units: &U,
    t: &GateUnit,
    until: Instant,
) -> Result<crate::model::UnitState, GateFailure> {
    loop {
        match units.unit_state(&t.unit).await {
            Ok(state) => return Ok(state),
            Err(e) if Instant::now() < until => {
                tracing::debug!(unit = %t.unit, error = %e, "cannot read the unit's state; looking again");
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(fail(t, format!("cannot read its state: {e}"))),
        }
    }
}

fn fail(t: &GateUnit, reason: String) -> GateFailure {
    GateFailure {
        unit: t.unit.clone(),
        app: t.app.clone(),
        reason,
    }
}

/// podman's view of a container's health: `healthy`, `unhealthy`, `starting`, or
/// `None` when podman cannot say (yet). A podman that does not answer before the unit's
/// deadline is "cannot say": the gate then fails on its own timeout, naming the unit.
async fn container_health(
    podman: &dyn Podman,
    container: &str,
    deadline: Instant,
) -> Option<String> {
    let left = deadline.saturating_duration_since(Instant::now()).max(POLL);
    match tokio::time::timeout(left, podman.container_health(container)).await {
        Ok(Ok(health)) => health,
        Ok(Err(e)) => {
            tracing::warn!(container, error = %e, "cannot read the container's health");
            None
        }
        Err(_) => None,
    }
}

/// The last lines a unit wrote to the journal, for a status message that says why.
/// Empty when the journal cannot be read: the message is still useful without them.
pub async fn last_journal_lines(
    podman: &dyn Podman,
    unit: &str,
    user: bool,
    lines: usize,
) -> String {
    let scope = if user {
        JournalScope::User
    } else {
        JournalScope::System
    };
    // Read more than asked: podman's own event lines (`container died … m=+0.04`)
    // crowd the unit's journal and say less than the program's last words.
    match podman.unit_journal(unit, scope, lines * 4).await {
        Ok(text) => {
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains(" m=+") && !l.starts_with("conmon ") && !is_container_id(l))
                .collect();
            kept[kept.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => {
            tracing::warn!(unit, error = %e, "cannot read the unit's journal");
            String::new()
        }
    }
}

/// podman prints the bare 64-hex id of a container it starts.
fn is_container_id(line: &str) -> bool {
    line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{App, AppFile, Unit, UnitRun, UnitState};
    use crate::plan::StartReason;
    use crate::podman::RecordingPodman;
    use crate::systemd::recording::RecordingUnitManager;
    use std::collections::{BTreeMap, BTreeSet};

    fn tree(text: &str) -> DesiredTree {
        let mut files = BTreeMap::new();
        files.insert(
            "web.container".to_owned(),
            AppFile::new(text.as_bytes().to_vec()),
        );
        let unit = Unit {
            name: "web.service".into(),
            kind: QuadletKind::Container,
            source_file: "web.container".into(),
            depends_on_files: BTreeSet::new(),
            secrets: BTreeSet::new(),
            pod: None,
        };
        let app = App {
            name: "web".into(),
            config: Default::default(),
            files,
            units: vec![unit],
        };
        DesiredTree {
            revision: "r".into(),
            apps: [("web".to_owned(), app)].into(),
            layers: Default::default(),
            uses: Default::default(),
        }
    }

    fn start_plan() -> Plan {
        Plan {
            actions: vec![
                Action::Reload,
                Action::StartUnit {
                    unit: "web.service".into(),
                    app: "web".into(),
                    reason: StartReason::Install,
                },
            ],
            drift: Vec::new(),
        }
    }

    #[test]
    fn gate_units_find_health_checked_containers() {
        let t = tree("[Container]\nImage=x\nHealthCmd=true\n");
        let g = units_to_gate(&start_plan(), &t);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].health_container.as_deref(), Some("systemd-web"));
        let t = tree("[Container]\nImage=x\nContainerName=w\nHealthCmd=true\n");
        assert_eq!(
            units_to_gate(&start_plan(), &t)[0]
                .health_container
                .as_deref(),
            Some("w")
        );
        let t = tree("[Container]\nImage=x\n");
        assert_eq!(units_to_gate(&start_plan(), &t)[0].health_container, None);
    }

    fn state(active: &str, sub: &str) -> UnitState {
        UnitState {
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: sub.into(),
        }
    }

    #[tokio::test]
    async fn gate_passes_active_units_and_fails_failed_ones() {
        let m = RecordingUnitManager::new();
        let targets = [GateUnit {
            unit: "web.service".into(),
            app: "web".into(),
            health_container: None,
            overrides: Default::default(),
        }];
        m.set_state("web.service", state("active", "running"));
        assert_eq!(
            gate(
                &m,
                &RecordingPodman::new(),
                &targets,
                Duration::from_secs(5),
                Duration::from_millis(300)
            )
            .await,
            Ok(())
        );
        m.set_state("web.service", state("failed", "failed"));
        let e = gate(
            &m,
            &RecordingPodman::new(),
            &targets,
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert_eq!(e.unit, "web.service");
        assert!(e.reason.contains("failed"), "{}", e.reason);
    }

    #[tokio::test]
    async fn gate_times_out_on_a_unit_that_never_comes_up() {
        let m = RecordingUnitManager::new();
        m.set_state("web.service", state("activating", "start"));
        let targets = [GateUnit {
            unit: "web.service".into(),
            app: "web".into(),
            health_container: None,
            overrides: Default::default(),
        }];
        let e = gate(
            &m,
            &RecordingPodman::new(),
            &targets,
            Duration::from_millis(600),
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert!(e.reason.contains("not active within"), "{}", e.reason);
    }

    #[tokio::test]
    async fn gate_honours_an_apps_timeout_override() {
        let m = RecordingUnitManager::new();
        m.set_state("db.service", state("activating", "start"));
        let targets = [GateUnit {
            unit: "db.service".into(),
            app: "db".into(),
            health_container: None,
            overrides: leger_api_types::app_config::AppHealth {
                timeout: Some(Duration::from_millis(300)),
                settle: None,
            },
        }];
        // legerd's default would wait an hour; the app's leger.toml says 300ms.
        let e = gate(
            &m,
            &RecordingPodman::new(),
            &targets,
            Duration::from_secs(3600),
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert!(e.reason.contains("within 300ms"), "{}", e.reason);
    }

    /// A bus blip (reads failing for a moment) is not a failed unit; reads that keep
    /// failing until the deadline are.
    #[tokio::test]
    async fn gate_looks_again_when_a_unit_state_cannot_be_read() {
        let m = RecordingUnitManager::new();
        m.set_state("web.service", state("active", "running"));
        let targets = [GateUnit {
            unit: "web.service".into(),
            app: "web".into(),
            health_container: None,
            overrides: Default::default(),
        }];
        m.fail_state_reads("web.service", 2);
        let p = RecordingPodman::new();
        gate(&m, &p, &targets, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap();
        m.fail_state_reads("web.service", u32::MAX);
        let e = gate(&m, &p, &targets, Duration::from_millis(600), Duration::ZERO)
            .await
            .unwrap_err();
        assert!(e.reason.contains("cannot read its state"), "{}", e.reason);
    }

    /// A unit at rest passes only when systemd's record of its run says it exited by
    /// itself; stopped from outside, it fails the gate saying so, at once.
    #[tokio::test]
    async fn gate_tells_a_run_to_completion_from_a_stop() {
        let targets = [GateUnit {
            unit: "job.service".into(),
            app: "web".into(),
            health_container: None,
            overrides: Default::default(),
        }];
        let p = RecordingPodman::new();
        let m = RecordingUnitManager::new();
        m.set_state("job.service", state("inactive", "dead"));
        let run = |main_exited, active_exited| UnitRun {
            result: "success".into(),
            main_code: 1,
            main_status: 0,
            main_exited,
            active_exited,
            started: 100,
            remain_after_exit: false,
        };
        m.set_run("job.service", run(200, 210));
        let settle = Duration::from_millis(600);
        gate(&m, &p, &targets, Duration::from_secs(60), settle)
            .await
            .unwrap();
        // No record (systemd unloaded it): read as completed, as before.
        let m = RecordingUnitManager::new();
        m.set_state("job.service", state("inactive", "dead"));
        gate(&m, &p, &targets, Duration::from_secs(60), settle)
            .await
            .unwrap();
        // Stopped: it left active before its main process exited.
        m.set_run("job.service", run(400, 300));
        let e = gate(&m, &p, &targets, Duration::from_secs(3600), settle)
            .await
            .unwrap_err();
        assert!(e.reason.contains("stop job"), "{}", e.reason);
        // Up when the gate began, stopped during the settle time.
        m.set_state("job.service", state("active", "running"));
        let (m2, t2) = (&m, &targets);
        let stop_later = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            m2.set_state("job.service", state("inactive", "dead"));
        };
        let (result, ()) = tokio::join!(
            gate(
                m2,
                &p,
                t2,
                Duration::from_secs(60),
                Duration::from_secs(3600)
            ),
            stop_later
        );
        let e = result.unwrap_err();
        assert!(e.reason.contains("did not stay up"), "{}", e.reason);
        assert!(e.reason.contains("stop job"), "{}", e.reason);
    }

    #[tokio::test]
    async fn gate_with_nothing_started_returns_at_once() {
        let m = RecordingUnitManager::new();
        let t0 = std::time::Instant::now();
        gate(
            &m,
            &RecordingPodman::new(),
            &[],
            Duration::from_secs(60),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
        // Not a timing assertion on the machine's speed: an hour-long settle was skipped.
        assert!(t0.elapsed() < Duration::from_secs(600));
    }
}

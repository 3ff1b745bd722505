//! `legerctl plan`: what the next pass would do now, without doing it.
//!
//! It runs the pass's own stages (fetch, choose, validate, observe, prepare secrets,
//! plan) and stops before the gates: nothing is written, no unit is touched, no gate is
//! asked (the fleet lock's gate would take a restart slot). So the answer is the same
//! while suspended, and in staged mode it shows what approving the staged revision
//! would do. The controller runs it between passes, like a restore, because it borrows
//! the pass's source, validation cache and secrets.
//!
//! Secrets appear by name only; values stay in the secrets stage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use leger_api_types::fleet::{LockState, LockStatus};
use leger_api_types::{DesiredState, PlanDocument, PlanDrift, PlanSecret, UpdateMode};

use super::choose::{Candidates, Choice, choose};
use super::converge::Mode;
use super::observe::observe;
use super::run::{Pass, failed_among, load_stored, refusal};
use super::{Failure, completed, secrets};
use crate::fleet::disruption::{Disruption, disruption};
use crate::model::{DesiredTree, Revision};
use crate::plan::{Plan, PlanPolicy, plan};
use crate::resource_changes::{ResourceStep, plan_resources};
use crate::systemd::UnitManager;

/// A plan request from the API, answered by the controller loop between passes.
#[derive(Debug)]
pub struct PlanJob {
    /// Only this app.
    pub app: Option<String>,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<Result<PlanDocument, PreviewError>>,
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewError {
    /// The app asked for is neither installed nor in the target revision.
    UnknownApp(String),
    /// A stage failed (no desired state, fetch, validation, the planner's guards).
    Failed(String),
}

impl std::fmt::Display for PreviewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreviewError::UnknownApp(m) | PreviewError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<Failure> for PreviewError {
    fn from(f: Failure) -> Self {
        PreviewError::Failed(f.message)
    }
}

/// The target of the plan and what to tell about the choice. Pure.
///
/// Like [`choose`], except in staged mode with a staged revision (fetched, neither
/// applied nor approved, not failed before): the plan is what approving it would do,
/// since "the next pass keeps the host as it is" is not what a reviewer asks.
pub fn target(c: &Candidates<'_>, failed: &BTreeMap<String, String>) -> (Choice, Option<String>) {
    if c.staged_mode
        && c.pin.is_none()
        && let Some(f) = c.fetched
        && Some(f) != c.applied
        && Some(f) != c.approved
        && !failed.contains_key(f)
    {
        let holding = c
            .applied
            .map_or("nothing".to_owned(), |a| Revision(a).to_string());
        let note = format!(
            "revision {} is staged: this is what approving it would do (`legerctl approve`); until then passes keep the host on {holding}",
            Revision(f)
        );
        let choice = Choice::Converge {
            revision: f.to_owned(),
            mode: Mode::Approve,
            refused: None,
        };
        return (choice, Some(note));
    }
    (choose(c, failed), None)
}

/// What a plan shows about the host besides the planner's actions.
#[derive(Debug)]
pub struct Extras<'a> {
    /// Podman secrets to be written.
    pub upsert: &'a BTreeSet<String>,
    /// Secrets whose value changed (their consumers restart).
    pub changed: &'a BTreeSet<String>,
    /// Unhealable resource drift remembered from earlier passes, by install key.
    pub remembered_drift: &'a super::resources::UnhealableDrift,
}

/// Fills `doc` from a plan for `tree`. Pure but for reading the files on disk the
/// diffs compare against (as `legerctl diff` does).
pub fn describe(
    doc: &mut PlanDocument,
    tree: &DesiredTree,
    plan: &Plan,
    extras: &Extras<'_>,
    quadlet_dir: &Path,
) {
    let change = crate::staged::describe(tree, plan, quadlet_dir, None);
    doc.actions = change.actions;
    doc.files = change.files;
    doc.secrets = extras
        .upsert
        .iter()
        .map(|name| PlanSecret {
            name: name.clone(),
            change: if extras.changed.contains(name) {
                "changed"
            } else {
                "created"
            }
            .to_owned(),
            apps: tree
                .apps
                .values()
                .filter(|a| a.units.iter().any(|u| u.secrets.contains(name)))
                .map(|a| a.name.clone())
                .collect(),
        })
        .collect();
    let resources = plan_resources(tree, plan.updated_files());
    doc.resources = resources
        .steps
        .iter()
        .filter_map(|s| match s {
            ResourceStep::RemoveNetwork { network } => {
                Some(format!("recreate network {network} (its users stop first)"))
            }
            ResourceStep::RemoveVolume { volume } => Some(format!(
                "recreate volume {volume} (backed up first; its data is replaced by an empty volume)"
            )),
            _ => None,
        })
        .collect();
    let mut unhealable: BTreeMap<&str, &str> = extras
        .remembered_drift
        .iter()
        .map(|(k, d)| (k.as_str(), d.message.as_str()))
        .collect();
    for d in &resources.drift {
        unhealable.insert(&d.file, &d.message);
    }
    doc.unhealable = unhealable.values().map(|m| (*m).to_owned()).collect();
    doc.drift = plan
        .drift
        .iter()
        .map(|d| PlanDrift {
            kind: d.kind.as_str().to_owned(),
            target: d.target.clone(),
            detail: d.detail.clone(),
            corrected: d.corrected,
        })
        .collect();
}

/// Keeps only what concerns `app`; an app that is neither installed (`installed`) nor
/// in the target revision is an error, so a typo does not read as "nothing to do".
pub fn only_app(
    doc: &mut PlanDocument,
    app: &str,
    tree_apps: &BTreeSet<String>,
    installed: &BTreeSet<String>,
) -> Result<(), PreviewError> {
    if !tree_apps.contains(app) && !installed.contains(app) {
        let mut known: Vec<&str> = tree_apps
            .iter()
            .chain(installed.iter())
            .map(String::as_str)
            .collect();
        known.sort_unstable();
        known.dedup();
        let list = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        return Err(PreviewError::UnknownApp(format!(
            "no app named {app:?}: it is neither installed nor in the revision the next pass would apply; apps: {list} (see `legerctl status`)"
        )));
    }
    let prefix = format!("{app}/");
    doc.app = Some(app.to_owned());
    doc.actions.retain(|a| a.app == app);
    doc.files.retain(|f| f.app == app);
    doc.secrets.retain(|s| s.apps.iter().any(|a| a == app));
    doc.unhealable.retain(|m| m.starts_with(&prefix));
    doc.drift.retain(|d| {
        d.target.starts_with(&prefix) || doc.actions.iter().any(|a| a.unit == d.target)
    });
    Ok(())
}

/// What the fleet lock means for this plan: nothing when it interrupts no running unit
/// (first installs and self-heal starts take no slot); otherwise that the pass needs a
/// restart slot, and whether this host holds one, waits for one or will ask for one.
pub fn slot_note(lock: &LockStatus, d: &Disruption) -> Option<String> {
    if !d.needs_slot() {
        return None;
    }
    let group = if lock.group.is_empty() {
        String::new()
    } else {
        format!(", group {}", lock.group)
    };
    let now = match lock.state {
        LockState::Held => {
            let since = lock
                .held_since
                .as_deref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default();
            if lock.held_reason.as_deref() == Some("rolled_back") {
                format!(
                    "this host holds one{since}, kept after a failed health gate (`legerctl fleet release` gives it back)"
                )
            } else {
                format!("this host holds one{since}")
            }
        }
        LockState::Waiting => {
            "this host is waiting for one: the pass changes nothing until the lock grants it"
                .to_owned()
        }
        LockState::Free => {
            "this host holds none: the pass asks for one first, and waits while the fleet's slots are taken"
                .to_owned()
        }
    };
    Some(format!(
        "fleet lock: this pass would stop or restart running units ({}), so it needs a restart slot from {}{group}; {now}",
        d.describe(),
        lock.service
    ))
}

/// Plans the next pass now. `app` narrows the answer to one app.
/// `lock` is the fleet lock's status when `[fleet.lock]` is configured: a plan that
/// would interrupt running units then says it needs a restart slot, and whether this
/// host holds one (the preview never asks the lock itself).
pub async fn plan_now<U: UnitManager>(
    pass: Pass<'_, '_, U>,
    desired: &DesiredState,
    app: Option<&str>,
    lock: Option<&LockStatus>,
) -> Result<PlanDocument, PreviewError> {
    let host = pass.host;
    let applied = pass.state.applied_revision.clone();
    let fetched = match &desired.policy.pin {
        Some(_) => None,
        None => Some(
            pass.fetcher
                .fetch(desired, host.settings, host.metrics, applied.clone())
                .await
                .map_err(|e| PreviewError::Failed(format!("cannot fetch the source: {e}")))?,
        ),
    };
    let candidates = Candidates {
        pin: desired.policy.pin.as_deref(),
        approved: desired.policy.approved.as_deref(),
        staged_mode: desired.policy.mode == UpdateMode::Staged,
        fetched: fetched.as_ref().map(|s| s.revision.as_str()),
        applied: applied.as_deref(),
    };
    let failed = failed_among(host, &candidates).await;
    let (choice, note) = target(&candidates, &failed);
    let mut doc = PlanDocument::new("none");
    doc.applied_revision = applied.clone();
    doc.notes.extend(note);
    if desired.policy.suspend {
        doc.held = Some(
            "legerd is suspended (policy.suspend): passes plan but change nothing; `legerctl resume` lets the next pass do this"
                .to_owned(),
        );
    }
    let installed: BTreeSet<String> = {
        let inv = super::blocking::store(host.store, |s| s.inventory())
            .await
            .map_err(|e| PreviewError::Failed(e.to_string()))?;
        inv.into_iter().map(|e| e.app).collect()
    };
    let (revision, mode) = match choice {
        Choice::Nothing { refused } => {
            match refused {
                Some(r) => doc.notes.push(refusal(&r, applied.as_deref()).message),
                None => doc.notes.push(
                    "staged mode with nothing approved and nothing applied: the next pass changes nothing"
                        .to_owned(),
                ),
            }
            if let Some(a) = app {
                only_app(&mut doc, a, &BTreeSet::new(), &installed)?;
            }
            return Ok(doc);
        }
        Choice::Converge {
            revision,
            mode,
            refused,
        } => {
            if let Some(r) = refused {
                doc.notes.push(refusal(&r, applied.as_deref()).message);
            }
            (revision, mode)
        }
    };
    doc.mode = mode.as_str().to_owned();
    doc.revision = Some(revision.clone());
    let snapshot = match fetched {
        Some(s) if s.revision == revision => s,
        _ => load_stored(host, &revision, &mode).await?,
    };
    let age_files = secrets::age_files(&snapshot);
    let tree = pass.validator.validate(host, snapshot).await?;
    let mut observation = observe(host, &tree, None).await?;
    let memory = completed::load(host.store)
        .await
        .map_err(|e| PreviewError::Failed(e.to_string()))?;
    completed::fill(&mut observation.observed, &tree, &memory);
    let prepared = secrets::prepare(host, pass.secrets, &tree, desired, &age_files).await?;
    observation.observed.changed_secrets = prepared.plan.changed.clone();
    observation.observed.blocked_units = prepared.plan.blocked.keys().cloned().collect();
    if let Some(m) = prepared.blocked_message() {
        doc.notes.push(m);
    }
    let planned = plan(
        &tree,
        &observation.observed,
        PlanPolicy::from(&desired.policy),
    )
    .map_err(|e| PreviewError::Failed(e.to_string()))?;
    if let Some(lock) = lock {
        doc.notes.extend(slot_note(
            lock,
            &disruption(&planned, &observation.observed),
        ));
    }
    describe(
        &mut doc,
        &tree,
        &planned,
        &Extras {
            upsert: &prepared.plan.upsert,
            changed: &prepared.plan.changed,
            remembered_drift: &pass.state.resource_drift,
        },
        &host.settings.paths.quadlet_dir,
    );
    if let Some(a) = app {
        let tree_apps: BTreeSet<String> = tree.apps.keys().cloned().collect();
        only_app(&mut doc, a, &tree_apps, &installed)?;
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{App, AppFile, ContentHash};
    use crate::plan::{Action, Drift, DriftKind, WriteReason};
    use leger_api_types::{FileDiff, StagedAction};

    fn candidates<'a>(fetched: &'a str, applied: &'a str) -> Candidates<'a> {
        Candidates {
            staged_mode: true,
            fetched: Some(fetched),
            applied: Some(applied),
            ..Default::default()
        }
    }

    #[test]
    fn staged_mode_plans_what_approving_would_do() {
        let (choice, note) = target(&candidates("b", "a"), &BTreeMap::new());
        assert_eq!(
            choice,
            Choice::Converge {
                revision: "b".into(),
                mode: Mode::Approve,
                refused: None
            }
        );
        assert!(note.unwrap().contains("legerctl approve"));
    }

    #[test]
    fn staged_mode_without_news_or_with_a_failed_candidate_follows_choose() {
        // Nothing new staged: the next pass holds the applied revision (self-heal).
        let (choice, note) = target(&candidates("a", "a"), &BTreeMap::new());
        assert_eq!(
            choice,
            Choice::Converge {
                revision: "a".into(),
                mode: Mode::HoldLastGood,
                refused: None
            }
        );
        assert_eq!(note, None);
        // A staged revision that failed its gate before is not shown as approvable.
        let failed = BTreeMap::from([("b".to_owned(), "web.service failed".to_owned())]);
        let (choice, note) = target(&candidates("b", "a"), &failed);
        assert!(matches!(choice, Choice::Converge { ref revision, .. } if revision == "a"));
        assert_eq!(note, None);
        // Auto mode is plain `choose`.
        let auto = Candidates {
            staged_mode: false,
            ..candidates("b", "a")
        };
        assert_eq!(
            target(&auto, &BTreeMap::new()).0,
            choose(&auto, &BTreeMap::new())
        );
    }

    fn tree_with(files: &[(&str, &str)], secret_of_web: Option<&str>) -> DesiredTree {
        let mut app_files = BTreeMap::new();
        for (name, text) in files {
            app_files.insert((*name).to_owned(), AppFile::new(text.as_bytes().to_vec()));
        }
        let mut units = vec![crate::model::Unit {
            name: "web.service".into(),
            kind: crate::model::QuadletKind::Container,
            source_file: "web.container".into(),
            depends_on_files: Default::default(),
            secrets: secret_of_web.into_iter().map(str::to_owned).collect(),
            pod: None,
        }];
        if files.iter().any(|(n, _)| *n == "data.volume") {
            units.push(crate::model::Unit {
                name: "data-volume.service".into(),
                kind: crate::model::QuadletKind::Volume,
                source_file: "data.volume".into(),
                depends_on_files: Default::default(),
                secrets: Default::default(),
                pod: None,
            });
        }
        DesiredTree {
            revision: "r2".into(),
            apps: [(
                "web".to_owned(),
                App {
                    name: "web".into(),
                    config: Default::default(),
                    files: app_files,
                    units,
                },
            )]
            .into(),
            layers: Default::default(),
            uses: Default::default(),
        }
    }

    #[test]
    fn describe_names_secrets_resources_and_unhealable_drift_without_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("web")).unwrap();
        std::fs::write(dir.path().join("web/data.volume"), "[Volume]\n").unwrap();
        let volume = "[Volume]\nDriver=local\nOptions=o=size=1g\n";
        let tree = tree_with(
            &[
                ("web.container", "[Container]\nImage=a\nSecret=db-pass\n"),
                ("data.volume", volume),
            ],
            Some("db-pass"),
        );
        let plan = Plan {
            actions: vec![
                Action::WriteFile {
                    key: "web/data.volume".into(),
                    app: "web".into(),
                    hash: ContentHash::of(volume.as_bytes()),
                    reason: WriteReason::Update,
                },
                Action::Reload,
                Action::RestartUnit {
                    unit: "web.service".into(),
                    app: "web".into(),
                },
            ],
            drift: vec![Drift {
                kind: DriftKind::Unit,
                target: "web.service".into(),
                detail: "inactive".into(),
                corrected: true,
            }],
        };
        let upsert = BTreeSet::from(["db-pass".to_owned()]);
        let changed = upsert.clone();
        let remembered = BTreeMap::from([(
            "web/old.volume".to_owned(),
            super::super::resources::UnhealableVolume {
                message: "volume old changed; not recreated".to_owned(),
                volume: "old".to_owned(),
                created: "2026-11-30".to_owned(),
                origin: String::new(),
            },
        )]);
        let mut doc = PlanDocument::new("forward");
        describe(
            &mut doc,
            &tree,
            &plan,
            &Extras {
                upsert: &upsert,
                changed: &changed,
                remembered_drift: &remembered,
            },
            dir.path(),
        );
        assert_eq!(
            doc.secrets,
            [PlanSecret {
                name: "db-pass".into(),
                change: "changed".into(),
                apps: vec!["web".into()]
            }]
        );
        assert_eq!(doc.actions.len(), 1);
        assert_eq!(doc.actions[0].action, "restart");
        assert_eq!(doc.files[0].change, "modified");
        // The changed volume may not be recreated (no recreate_on_change): unhealable,
        // next to the drift remembered from an earlier pass.
        assert_eq!(doc.unhealable.len(), 2, "{:?}", doc.unhealable);
        assert!(
            doc.unhealable
                .iter()
                .any(|m| m.contains("web/data.volume changed"))
        );
        assert!(doc.resources.is_empty(), "{:?}", doc.resources);
        assert_eq!(doc.drift[0].target, "web.service");
        assert!(doc.has_changes());
    }

    #[test]
    fn slot_note_says_a_disruptive_plan_needs_a_slot_and_whether_it_is_held() {
        let mut lock = LockStatus {
            service: "FleetLock server http://192.0.2.1:8080".into(),
            group: "web".into(),
            ..LockStatus::default()
        };
        let calm = Disruption::default();
        assert_eq!(
            slot_note(&lock, &calm),
            None,
            "a first install takes no slot"
        );
        let restart = Disruption {
            units: vec!["web.service".into()],
        };
        let free = slot_note(&lock, &restart).unwrap();
        assert!(free.contains("(web.service)"), "{free}");
        assert!(free.contains("http://192.0.2.1:8080, group web"), "{free}");
        assert!(free.contains("holds none"), "{free}");
        lock.state = LockState::Waiting;
        assert!(
            slot_note(&lock, &restart)
                .unwrap()
                .contains("waiting for one")
        );
        lock.state = LockState::Held;
        lock.held_since = Some("2026-11-30T12:00:00Z".into());
        lock.held_reason = Some("rolled_back".into());
        let held = slot_note(&lock, &restart).unwrap();
        assert!(
            held.contains("holds one since 2026-11-30T12:00:00Z")
                && held.contains("legerctl fleet release"),
            "{held}"
        );
        assert!(!held.contains('\n'), "one line: {held}");
    }

    fn doc_for_two_apps() -> PlanDocument {
        let mut doc = PlanDocument::new("forward");
        for app in ["web", "db"] {
            doc.actions.push(StagedAction {
                action: "restart".into(),
                unit: format!("{app}.service"),
                app: app.into(),
            });
            doc.files.push(FileDiff {
                path: format!("{app}/{app}.container"),
                app: app.into(),
                change: "modified".into(),
                diff: String::new(),
            });
        }
        doc
    }

    #[test]
    fn only_app_narrows_and_refuses_an_unknown_app_naming_status() {
        let tree_apps = BTreeSet::from(["web".to_owned(), "db".to_owned()]);
        let mut doc = doc_for_two_apps();
        only_app(&mut doc, "db", &tree_apps, &BTreeSet::new()).unwrap();
        assert_eq!(doc.app.as_deref(), Some("db"));
        assert_eq!(doc.actions.len(), 1);
        assert_eq!(doc.files[0].path, "db/db.container");
        // Installed only (the target revision drops it): still a known app.
        let mut doc = doc_for_two_apps();
        only_app(
            &mut doc,
            "gone",
            &tree_apps,
            &BTreeSet::from(["gone".into()]),
        )
        .unwrap();
        assert!(!doc.has_changes());
        let mut doc = doc_for_two_apps();
        let e = only_app(&mut doc, "wbe", &tree_apps, &BTreeSet::new()).unwrap_err();
        let PreviewError::UnknownApp(m) = e else {
            panic!("{e:?}")
        };
        assert!(m.contains("\"wbe\"") && m.contains("db, web"), "{m}");
        assert!(m.contains("legerctl status"), "{m}");
    }
}

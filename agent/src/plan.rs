//! The planner: a pure function from (desired tree, observed host) to ordered actions.
//!
//! **Architecture invariant:** this module does no I/O, reads no clock and knows no
//! tokio. Everything it needs is in its arguments, so it is tested with plain data and
//! its central property holds by construction: apply a plan, observe again, plan again,
//! and the plan is empty.
//!
//! The order of a plan is fixed: stop the units of pruned apps (while their unit files
//! still exist), write and remove files, issue **one** daemon-reload, then start or
//! restart units with what others depend on first (networks, volumes, images, pods,
//! then containers).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::model::{ContentHash, DesiredTree, Observed, QuadletKind, install_key};

/// The parts of the policy the planner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanPolicy {
    /// Remove files (and stop units) of apps that left the source.
    pub prune: bool,
    /// Restore hand-edited or deleted managed files; start managed units that stopped.
    pub self_heal: bool,
    /// Let an empty source prune every installed app.
    pub allow_empty: bool,
}

impl From<&leger_api_types::Policy> for PlanPolicy {
    fn from(p: &leger_api_types::Policy) -> Self {
        PlanPolicy {
            prune: p.prune,
            self_heal: p.self_heal,
            allow_empty: p.allow_empty,
        }
    }
}

/// Why a file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteReason {
    /// It is new in the source.
    Create,
    /// The source changed it.
    Update,
    /// Someone edited or deleted it by hand; self-heal puts it back.
    Restore,
}

/// Why a unit is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartReason {
    /// Its quadlet is new, or one of its files changed while it was not running.
    Install,
    /// It was installed and unchanged but is not running; self-heal starts it.
    NotRunning,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop a unit whose quadlet is being pruned.
    StopUnit {
        /// The unit.
        unit: String,
        /// The app it belonged to.
        app: String,
    },
    /// Write a file into the quadlet dir (atomically).
    WriteFile {
        /// Install key `app/relpath`.
        key: String,
        /// The owning app.
        app: String,
        /// Hash of the bytes to write.
        hash: ContentHash,
        /// Why.
        reason: WriteReason,
    },
    /// Remove a managed file that left the source.
    RemoveFile {
        /// Install key `app/relpath`.
        key: String,
        /// The app it belonged to.
        app: String,
    },
    /// systemd daemon-reload, so the quadlet generator runs.
    Reload,
    /// Start a unit.
    StartUnit {
        /// The unit.
        unit: String,
        /// The owning app.
        app: String,
        /// Why.
        reason: StartReason,
    },
    /// Restart a running unit because one of its files changed.
    RestartUnit {
        /// The unit.
        unit: String,
        /// The owning app.
        app: String,
    },
}

impl Action {
    /// The app the action concerns, `None` for the reload.
    pub fn app(&self) -> Option<&str> {
        match self {
            Action::StopUnit { app, .. }
            | Action::WriteFile { app, .. }
            | Action::RemoveFile { app, .. }
            | Action::StartUnit { app, .. }
            | Action::RestartUnit { app, .. } => Some(app),
            Action::Reload => None,
        }
    }

    /// The verb, as used in history, metrics and the journal (`LEGER_ACTION`).
    pub fn verb(&self) -> &'static str {
        match self {
            Action::StopUnit { .. } => "stop",
            Action::WriteFile {
                reason: WriteReason::Create,
                ..
            } => "create",
            Action::WriteFile {
                reason: WriteReason::Update,
                ..
            } => "update",
            Action::WriteFile {
                reason: WriteReason::Restore,
                ..
            } => "restore",
            Action::RemoveFile { .. } => "remove",
            Action::Reload => "reload",
            Action::StartUnit { .. } => "start",
            Action::RestartUnit { .. } => "restart",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::StopUnit { unit, .. }
            | Action::StartUnit { unit, .. }
            | Action::RestartUnit { unit, .. } => {
                write!(f, "{} {unit}", self.verb())
            }
            Action::WriteFile { key, .. } | Action::RemoveFile { key, .. } => {
                write!(f, "{} {key}", self.verb())
            }
            Action::Reload => f.write_str("reload"),
        }
    }
}

/// What kind of drift was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftKind {
    /// A managed file was edited or deleted by hand.
    File,
    /// A managed unit is not running.
    Unit,
}

impl DriftKind {
    /// `file` or `unit`, as stored and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::File => "file",
            DriftKind::Unit => "unit",
        }
    }
}

/// One difference between what legerd installed and what the host shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// File or unit.
    pub kind: DriftKind,
    /// The install key or the unit name.
    pub target: String,
    /// What was seen, for people.
    pub detail: String,
    /// True when the plan corrects it (self-heal on).
    pub corrected: bool,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Actions in the order they must run.
    pub actions: Vec<Action>,
    /// Drift seen while planning, corrected or not.
    pub drift: Vec<Drift>,
}

impl Plan {
    /// Install keys of the files this plan rewrites (not new files): what may need a
    /// podman resource recreated ([`crate::resource_changes`]).
    pub fn updated_files(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().filter_map(|a| match a {
            Action::WriteFile {
                key,
                reason: WriteReason::Update,
                ..
            } => Some(key.as_str()),
            _ => None,
        })
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// True when the plan touches files (and therefore reloads).
    pub fn changes_files(&self) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::WriteFile { .. } | Action::RemoveFile { .. }))
    }
}

/// Why the planner refused to plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The source has no apps while some are installed; pruning all of them is refused.
    #[error(
        "the source has no apps but {installed} app(s) are installed; refusing to remove them all. \
         Check the source path, or set policy.allow_empty = true to allow it"
    )]
    EmptySource {
        /// How many apps are installed.
        installed: usize,
    },
    /// A file legerd would write exists but was not installed by legerd.
    #[error(
        "{} exist(s) in the quadlet dir but were not installed by legerd; refusing to overwrite. \
         Move the file(s) away or rename the app",
        .keys.join(", ")
    )]
    ForeignFiles {
        /// The install keys.
        keys: Vec<String>,
    },
}

/// Plans the actions that take the host from `observed` to `desired`.
pub fn plan(
    desired: &DesiredTree,
    observed: &Observed,
    policy: PlanPolicy,
) -> Result<Plan, PlanError> {
    let installed_apps: BTreeSet<&str> =
        observed.managed.values().map(|m| m.app.as_str()).collect();
    if desired.apps.is_empty() && !installed_apps.is_empty() && policy.prune && !policy.allow_empty
    {
        return Err(PlanError::EmptySource {
            installed: installed_apps.len(),
        });
    }

    let mut plan = Plan::default();
    let mut foreign = Vec::new();
    // Install keys whose bytes change on disk in this plan.
    let mut changed: BTreeSet<String> = BTreeSet::new();
    let mut writes = Vec::new();
    let mut desired_keys: BTreeSet<String> = BTreeSet::new();
    let mut desired_units: BTreeMap<&str, &str> = BTreeMap::new();
    // The quadlets of units waiting for a missing secret are neither written nor updated.
    let mut blocked_keys: BTreeSet<String> = BTreeSet::new();

    for app in desired.apps.values() {
        for unit in &app.units {
            desired_units.insert(&unit.name, &app.name);
            if observed.blocked_units.contains(&unit.name) {
                blocked_keys.insert(install_key(&app.name, &unit.source_file));
            }
        }
        for (rel, file) in &app.files {
            let key = install_key(&app.name, rel);
            desired_keys.insert(key.clone());
            if blocked_keys.contains(&key) {
                continue;
            }
            if observed.foreign.contains(&key) {
                foreign.push(key);
                continue;
            }
            let reason = match observed.managed.get(&key) {
                None => Some(WriteReason::Create),
                Some(m) if m.installed != file.hash => Some(WriteReason::Update),
                Some(m) if m.on_disk != Some(file.hash) => {
                    let detail = if m.on_disk.is_some() {
                        "edited by hand"
                    } else {
                        "deleted by hand"
                    };
                    plan.drift.push(Drift {
                        kind: DriftKind::File,
                        target: key.clone(),
                        detail: detail.to_owned(),
                        corrected: policy.self_heal,
                    });
                    policy.self_heal.then_some(WriteReason::Restore)
                }
                Some(_) => None,
            };
            if let Some(reason) = reason {
                changed.insert(key.clone());
                writes.push(Action::WriteFile {
                    key,
                    app: app.name.clone(),
                    hash: file.hash,
                    reason,
                });
            }
        }
    }
    if !foreign.is_empty() {
        return Err(PlanError::ForeignFiles { keys: foreign });
    }

    let mut removes = Vec::new();
    let mut stops = Vec::new();
    for (key, m) in &observed.managed {
        if desired_keys.contains(key) {
            continue;
        }
        // A file that is gone from disk only needs its inventory entry dropped, which
        // removing it does; do that even without prune, since nothing is left to keep.
        if !policy.prune && m.on_disk.is_some() {
            continue;
        }
        if let Some(unit) = &m.unit
            && !desired_units.contains_key(unit.as_str())
            && observed
                .units
                .get(unit)
                .is_some_and(|s| s.active_state != "inactive")
        {
            stops.push(Action::StopUnit {
                unit: unit.clone(),
                app: m.app.clone(),
            });
        }
        removes.push(Action::RemoveFile {
            key: key.clone(),
            app: m.app.clone(),
        });
    }

    let mut unit_actions = Vec::new();
    // Only what the generator reads needs a daemon-reload: a changed env file or
    // config that a unit mounts is read when the unit starts, so its restart is enough
    // (the reload is most of a one-change's time: every generator over every quadlet).
    let mut needs_reload = writes
        .iter()
        .chain(&removes)
        .any(|a| matches!(a, Action::WriteFile { key, .. } | Action::RemoveFile { key, .. } if is_generator_input(key)))
        || !observed.interrupted.is_empty();
    for app in desired.apps.values() {
        for unit in &app.units {
            if observed.blocked_units.contains(&unit.name) {
                continue;
            }
            let state = observed.units.get(&unit.name);
            // A unit that ran to completion under its current files is done, not down.
            let up = state.is_some_and(|s| {
                s.is_up() || (s.has_completed() && observed.completed.contains(&unit.name))
            });
            // A unit that ran to completion may be unloaded by systemd's garbage
            // collection; that is not a missing generator run.
            if state.is_some_and(|s| s.load_state == "not-found")
                && !observed.completed.contains(&unit.name)
            {
                // Files are in place but the generator never ran for them (a crash
                // between write and reload): a reload is needed before any start.
                needs_reload = true;
            }
            // Every unit lists its own quadlet among the files it depends on, so a new
            // or changed quadlet, companion or dependency all show up here.
            // A changed secret value restarts exactly the units that consume it.
            let touched = unit.depends_on_files.iter().any(|k| changed.contains(k))
                || !unit.secrets.is_disjoint(&observed.changed_secrets)
                || observed.interrupted.contains(&unit.name);
            let action = if touched {
                Some(if up {
                    Action::RestartUnit {
                        unit: unit.name.clone(),
                        app: app.name.clone(),
                    }
                } else {
                    Action::StartUnit {
                        unit: unit.name.clone(),
                        app: app.name.clone(),
                        reason: StartReason::Install,
                    }
                })
            } else if !up {
                let state_text = state.map_or("unknown", |s| s.active_state.as_str());
                plan.drift.push(Drift {
                    kind: DriftKind::Unit,
                    target: unit.name.clone(),
                    detail: format!("unit is {state_text}"),
                    corrected: policy.self_heal,
                });
                policy.self_heal.then(|| Action::StartUnit {
                    unit: unit.name.clone(),
                    app: app.name.clone(),
                    reason: StartReason::NotRunning,
                })
            } else {
                None
            };
            if let Some(a) = action {
                unit_actions.push((unit.kind, a));
            }
        }
    }
    // A pod restart restarts its containers (quadlet binds them to it): restart a pod
    // once, not once for itself and again for each changed container in it.
    let restarted: BTreeSet<String> = unit_actions
        .iter()
        .filter_map(|(_, a)| match a {
            Action::RestartUnit { unit, .. } => Some(unit.clone()),
            _ => None,
        })
        .collect();
    let pod_of: BTreeMap<&str, &str> = desired
        .apps
        .values()
        .flat_map(|a| a.units.iter())
        .filter_map(|u| u.pod.as_deref().map(|p| (u.name.as_str(), p)))
        .collect();
    unit_actions.retain(|(_, a)| match a {
        Action::RestartUnit { unit, .. } => pod_of
            .get(unit.as_str())
            .is_none_or(|pod| !restarted.contains(*pod)),
        _ => true,
    });
    // Dependencies first across all apps: a network in one app may serve containers of
    // another. The sort is stable, so apps and units keep their order within a kind.
    unit_actions.sort_by_key(|(kind, _)| QuadletKind::start_rank(*kind));

    plan.actions.extend(stops);
    plan.actions.extend(writes);
    plan.actions.extend(removes);
    if needs_reload {
        plan.actions.push(Action::Reload);
    }
    plan.actions
        .extend(unit_actions.into_iter().map(|(_, a)| a));
    Ok(plan)
}

/// Whether podman's quadlet generator reads the installed file `key`: a quadlet file
/// (`.container`, `.network`, …) or anything in a drop-in folder (`web.container.d/`,
/// `container.d/`). Anything else (env files, configs, Kubernetes YAML, a
/// Containerfile) is read by podman or systemd when a unit starts, never by the
/// generator, so changing it changes no generated unit.
fn is_generator_input(key: &str) -> bool {
    let mut parts = key.split('/');
    let name = parts.next_back().unwrap_or_default();
    QuadletKind::from_file_name(name).is_some() || parts.any(|dir| dir.ends_with(".d"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{App, AppFile, ManagedFile, Unit, UnitState};

    const POLICY: PlanPolicy = PlanPolicy {
        prune: true,
        self_heal: true,
        allow_empty: false,
    };

    fn unit(name: &str, kind: QuadletKind, app: &str, file: &str, deps: &[&str]) -> Unit {
        let mut depends_on_files: BTreeSet<String> =
            deps.iter().map(|d| install_key(app, d)).collect();
        depends_on_files.insert(install_key(app, file));
        Unit {
            name: name.into(),
            kind,
            source_file: file.into(),
            depends_on_files,
            secrets: BTreeSet::new(),
            pod: None,
        }
    }

    /// An app with one container (and optional companion / volume).
    fn web_app(name: &str, image: &str) -> App {
        let mut files = BTreeMap::new();
        files.insert(
            format!("{name}.container"),
            AppFile::new(format!("[Container]\nImage={image}\n").into_bytes()),
        );
        App {
            name: name.into(),
            config: Default::default(),
            units: vec![unit(
                &format!("{name}.service"),
                QuadletKind::Container,
                name,
                &format!("{name}.container"),
                &[],
            )],
            files,
        }
    }

    fn tree(apps: Vec<App>) -> DesiredTree {
        DesiredTree {
            revision: "r1".into(),
            apps: apps.into_iter().map(|a| (a.name.clone(), a)).collect(),
            layers: Default::default(),
            uses: Default::default(),
        }
    }

    fn active() -> UnitState {
        UnitState {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
        }
    }

    /// Plays a plan onto observed state the way a successful apply would, so the
    /// convergence property can be checked without a host.
    fn simulate(desired: &DesiredTree, observed: &mut Observed, plan: &Plan) {
        let units_by_key: BTreeMap<String, String> = desired
            .apps
            .values()
            .flat_map(|a| {
                a.units
                    .iter()
                    .map(move |u| (install_key(&a.name, &u.source_file), u.name.clone()))
            })
            .collect();
        for a in &plan.actions {
            match a {
                Action::WriteFile { key, app, hash, .. } => {
                    observed.managed.insert(
                        key.clone(),
                        ManagedFile {
                            app: app.clone(),
                            installed: *hash,
                            on_disk: Some(*hash),
                            unit: units_by_key.get(key).cloned(),
                        },
                    );
                }
                Action::RemoveFile { key, .. } => {
                    observed.managed.remove(key);
                }
                Action::StopUnit { unit, .. } => {
                    observed.units.insert(unit.clone(), UnitState::unknown());
                }
                Action::StartUnit { unit, .. } | Action::RestartUnit { unit, .. } => {
                    observed.units.insert(unit.clone(), active());
                }
                Action::Reload => {}
            }
        }
    }

    /// Plans with the default policy and plays the plan onto `o`.
    fn converge(d: &DesiredTree, o: &mut Observed) {
        let p = plan(d, o, POLICY).unwrap();
        simulate(d, o, &p);
    }

    fn verbs(p: &Plan) -> Vec<String> {
        p.actions.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn plan_fresh_install_writes_reloads_then_starts() {
        let d = tree(vec![web_app("web", "a"), web_app("api", "a")]);
        let p = plan(&d, &Observed::default(), POLICY).unwrap();
        assert_eq!(
            verbs(&p),
            [
                "create api/api.container",
                "create web/web.container",
                "reload",
                "start api.service",
                "start web.service"
            ]
        );
    }

    #[test]
    fn plan_converges_to_empty() {
        let d = tree(vec![web_app("web", "a"), web_app("api", "a")]);
        let mut o = Observed::default();
        let p = plan(&d, &o, POLICY).unwrap();
        simulate(&d, &mut o, &p);
        assert!(plan(&d, &o, POLICY).unwrap().is_empty());

        // A change to one app converges too, touching only that app.
        let d2 = tree(vec![web_app("web", "b"), web_app("api", "a")]);
        let p2 = plan(&d2, &o, POLICY).unwrap();
        assert_eq!(
            verbs(&p2),
            ["update web/web.container", "reload", "restart web.service"]
        );
        simulate(&d2, &mut o, &p2);
        assert!(plan(&d2, &o, POLICY).unwrap().is_empty());
    }

    #[test]
    fn plan_prunes_removed_app_stopping_first() {
        let d = tree(vec![web_app("web", "a"), web_app("api", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        let d2 = tree(vec![web_app("web", "a")]);
        let p = plan(&d2, &o, POLICY).unwrap();
        assert_eq!(
            verbs(&p),
            ["stop api.service", "remove api/api.container", "reload"]
        );
        simulate(&d2, &mut o, &p);
        assert!(plan(&d2, &o, POLICY).unwrap().is_empty());
    }

    #[test]
    fn plan_without_prune_keeps_removed_app() {
        let d = tree(vec![web_app("web", "a"), web_app("api", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        let p = plan(
            &tree(vec![web_app("web", "a")]),
            &o,
            PlanPolicy {
                prune: false,
                ..POLICY
            },
        )
        .unwrap();
        assert!(p.is_empty(), "{:?}", verbs(&p));
    }

    #[test]
    fn plan_refuses_empty_source_unless_allowed() {
        let d = tree(vec![web_app("web", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        let empty = tree(vec![]);
        assert_eq!(
            plan(&empty, &o, POLICY),
            Err(PlanError::EmptySource { installed: 1 })
        );
        let p = plan(
            &empty,
            &o,
            PlanPolicy {
                allow_empty: true,
                ..POLICY
            },
        )
        .unwrap();
        assert_eq!(
            verbs(&p),
            ["stop web.service", "remove web/web.container", "reload"]
        );
    }

    #[test]
    fn plan_refuses_to_overwrite_foreign_files() {
        let d = tree(vec![web_app("web", "a")]);
        let mut o = Observed::default();
        o.foreign.insert("web/web.container".into());
        let e = plan(&d, &o, POLICY).unwrap_err();
        assert_eq!(
            e,
            PlanError::ForeignFiles {
                keys: vec!["web/web.container".into()]
            }
        );
        assert!(e.to_string().contains("not installed by legerd"));
    }

    #[test]
    fn plan_restores_hand_edited_file_and_restarts_its_unit() {
        let d = tree(vec![web_app("web", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        o.managed.get_mut("web/web.container").unwrap().on_disk = Some(ContentHash::of(b"edited"));
        let p = plan(&d, &o, POLICY).unwrap();
        assert_eq!(
            verbs(&p),
            ["restore web/web.container", "reload", "restart web.service"]
        );
        assert_eq!(p.drift.len(), 1);
        assert_eq!(p.drift[0].kind, DriftKind::File);
        assert_eq!(p.drift[0].detail, "edited by hand");
        assert!(p.drift[0].corrected);

        // Without self-heal the drift is reported, not corrected.
        let p = plan(
            &d,
            &o,
            PlanPolicy {
                self_heal: false,
                ..POLICY
            },
        )
        .unwrap();
        assert!(p.is_empty());
        assert!(!p.drift[0].corrected);
    }

    #[test]
    fn plan_starts_stopped_unit_with_self_heal() {
        let d = tree(vec![web_app("web", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        o.units.insert(
            "web.service".into(),
            UnitState {
                load_state: "loaded".into(),
                active_state: "failed".into(),
                sub_state: "failed".into(),
            },
        );
        let p = plan(&d, &o, POLICY).unwrap();
        assert_eq!(verbs(&p), ["start web.service"]);
        assert_eq!(p.drift[0].kind, DriftKind::Unit);
        assert_eq!(p.drift[0].detail, "unit is failed");
        assert!(
            plan(
                &d,
                &o,
                PlanPolicy {
                    self_heal: false,
                    ..POLICY
                }
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn plan_changed_volume_restarts_dependents_in_order() {
        let mk = |vol: &str| {
            let mut files = BTreeMap::new();
            files.insert(
                "data.volume".to_owned(),
                AppFile::new(format!("[Volume]\nLabel={vol}\n").into_bytes()),
            );
            files.insert(
                "db.container".to_owned(),
                AppFile::new(b"[Container]\nImage=x\nVolume=data.volume:/d\n".to_vec()),
            );
            files.insert(
                "cache.container".to_owned(),
                AppFile::new(b"[Container]\nImage=x\n".to_vec()),
            );
            App {
                name: "db".into(),
                config: Default::default(),
                units: vec![
                    unit(
                        "data-volume.service",
                        QuadletKind::Volume,
                        "db",
                        "data.volume",
                        &[],
                    ),
                    unit(
                        "cache.service",
                        QuadletKind::Container,
                        "db",
                        "cache.container",
                        &[],
                    ),
                    unit(
                        "db.service",
                        QuadletKind::Container,
                        "db",
                        "db.container",
                        &["data.volume"],
                    ),
                ],
                files,
            }
        };
        let d = tree(vec![mk("a")]);
        let mut o = Observed::default();
        let p = plan(&d, &o, POLICY).unwrap();
        simulate(&d, &mut o, &p);
        let d2 = tree(vec![mk("b")]);
        let p = plan(&d2, &o, POLICY).unwrap();
        assert_eq!(
            verbs(&p),
            [
                "update db/data.volume",
                "reload",
                "restart data-volume.service",
                "restart db.service"
            ]
        );
    }

    #[test]
    fn plan_companion_change_restarts_its_unit() {
        let mk = |env: &str| {
            let mut a = web_app("web", "a");
            a.files
                .insert("web.env".into(), AppFile::new(env.as_bytes().to_vec()));
            a.units[0].depends_on_files.insert("web/web.env".into());
            a
        };
        let mut o = Observed::default();
        let d = tree(vec![mk("A=1")]);
        converge(&d, &mut o);
        let p = plan(&tree(vec![mk("A=2")]), &o, POLICY).unwrap();
        // The generator never reads an env file: no daemon-reload, only the restart.
        assert_eq!(verbs(&p), ["update web/web.env", "restart web.service"]);
    }

    #[test]
    fn plan_reloads_for_quadlets_and_drop_ins_only() {
        assert!(is_generator_input("web/web.container"));
        assert!(is_generator_input("net/shared.network"));
        assert!(is_generator_input("web/web.container.d/10-limits.conf"));
        assert!(is_generator_input("web/container.d/10-common.conf"));
        assert!(!is_generator_input("web/web.env"));
        assert!(!is_generator_input("web/config/nginx.conf"));
        assert!(!is_generator_input("kube/app.yaml"));

        // A drop-in next to the quadlet changes the generated unit: reload, restart.
        let mk = |conf: &str| {
            let mut a = web_app("web", "a");
            a.files.insert(
                "web.container.d/10-limits.conf".into(),
                AppFile::new(conf.as_bytes().to_vec()),
            );
            a.units[0]
                .depends_on_files
                .insert("web/web.container.d/10-limits.conf".into());
            a
        };
        let mut o = Observed::default();
        converge(&tree(vec![mk("[Container]\n")]), &mut o);
        let p = plan(&tree(vec![mk("[Container]\nMemory=1G\n")]), &o, POLICY).unwrap();
        assert_eq!(
            verbs(&p),
            [
                "update web/web.container.d/10-limits.conf",
                "reload",
                "restart web.service"
            ]
        );
    }

    #[test]
    fn plan_reloads_when_unit_never_generated() {
        let d = tree(vec![web_app("web", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        o.units.insert("web.service".into(), UnitState::unknown());
        assert_eq!(
            verbs(&plan(&d, &o, POLICY).unwrap()),
            ["reload", "start web.service"]
        );
    }

    #[test]
    fn plan_quadlet_moved_between_apps_is_not_stopped() {
        let d = tree(vec![web_app("web", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        // Same unit, now shipped by another app folder.
        let mut moved = web_app("web", "a");
        moved.name = "frontend".into();
        moved.units[0].depends_on_files = ["frontend/web.container".to_owned()].into();
        let d2 = tree(vec![moved]);
        let p = plan(&d2, &o, POLICY).unwrap();
        assert_eq!(
            verbs(&p),
            [
                "create frontend/web.container",
                "remove web/web.container",
                "reload",
                "restart web.service"
            ]
        );
    }

    fn with_secret(mut a: App, secret: &str) -> App {
        a.units[0].secrets.insert(secret.into());
        a
    }

    #[test]
    fn plan_changed_secret_restarts_only_its_consumers() {
        let d = tree(vec![
            with_secret(web_app("db", "a"), "db-pass"),
            web_app("web", "a"),
        ]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        o.changed_secrets.insert("db-pass".into());
        assert_eq!(
            verbs(&plan(&d, &o, POLICY).unwrap()),
            ["restart db.service"]
        );
        o.changed_secrets.clear();
        assert!(plan(&d, &o, POLICY).unwrap().is_empty());
    }

    #[test]
    fn plan_blocked_unit_is_not_installed_started_or_updated() {
        let d = tree(vec![
            with_secret(web_app("db", "a"), "db-pass"),
            web_app("web", "a"),
        ]);
        let mut o = Observed::default();
        o.blocked_units.insert("db.service".into());
        let p = plan(&d, &o, POLICY).unwrap();
        assert_eq!(
            verbs(&p),
            ["create web/web.container", "reload", "start web.service"]
        );
        simulate(&d, &mut o, &p);
        assert!(plan(&d, &o, POLICY).unwrap().is_empty());
        // Once the secret is there, the unit is installed and started.
        o.blocked_units.clear();
        assert_eq!(
            verbs(&plan(&d, &o, POLICY).unwrap()),
            ["create db/db.container", "reload", "start db.service"]
        );
        // Installed and running, then blocked: an update waits, nothing restarts.
        converge(&d, &mut o);
        o.blocked_units.insert("db.service".into());
        let d2 = tree(vec![
            with_secret(web_app("db", "b"), "db-pass"),
            web_app("web", "a"),
        ]);
        assert!(plan(&d2, &o, POLICY).unwrap().is_empty());
    }

    #[test]
    fn plan_restarts_a_pod_once_not_its_containers_again() {
        let mk = |label: &str| {
            let mut files = BTreeMap::new();
            files.insert(
                "x.pod".to_owned(),
                AppFile::new(format!("[Pod]\nLabel={label}\n").into_bytes()),
            );
            files.insert(
                "c.container".to_owned(),
                AppFile::new(
                    format!("[Container]\nImage=i\nPod=x.pod\nLabel={label}\n").into_bytes(),
                ),
            );
            files.insert(
                "d.container".to_owned(),
                AppFile::new(b"[Container]\nImage=i\n".to_vec()),
            );
            let mut c = unit(
                "c.service",
                QuadletKind::Container,
                "p",
                "c.container",
                &["x.pod"],
            );
            c.pod = Some("x-pod.service".into());
            App {
                name: "p".into(),
                config: Default::default(),
                units: vec![
                    unit("x-pod.service", QuadletKind::Pod, "p", "x.pod", &[]),
                    c,
                    unit("d.service", QuadletKind::Container, "p", "d.container", &[]),
                ],
                files,
            }
        };
        let mut o = Observed::default();
        let d = tree(vec![mk("a")]);
        converge(&d, &mut o);
        let p = plan(&tree(vec![mk("b")]), &o, POLICY).unwrap();
        assert_eq!(
            verbs(&p),
            [
                "update p/c.container",
                "update p/x.pod",
                "reload",
                "restart x-pod.service"
            ]
        );
    }

    #[test]
    fn plan_finishes_an_interrupted_apply() {
        let d = tree(vec![web_app("web", "a"), web_app("api", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        // Files and inventory match, but the apply died before its restart.
        o.interrupted.insert("web.service".into());
        assert_eq!(
            verbs(&plan(&d, &o, POLICY).unwrap()),
            ["reload", "restart web.service"]
        );
    }

    #[test]
    fn plan_pruned_file_already_gone_just_drops_inventory() {
        let d = tree(vec![web_app("web", "a"), web_app("api", "a")]);
        let mut o = Observed::default();
        converge(&d, &mut o);
        o.managed.get_mut("api/api.container").unwrap().on_disk = None;
        o.units.insert("api.service".into(), UnitState::unknown());
        let p = plan(
            &tree(vec![web_app("web", "a")]),
            &o,
            PlanPolicy {
                prune: false,
                ..POLICY
            },
        )
        .unwrap();
        assert_eq!(verbs(&p), ["remove api/api.container", "reload"]);
    }
}

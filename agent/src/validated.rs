//! Incremental validation: which apps of a new revision podman's generator must see.
//!
//! The generator's dry run is the costly half of validation (a child process that
//! reads and converts every staged quadlet: about 0.15 s of CPU at 100 apps). Most new
//! revisions change one app. So legerd remembers, per app, the digest of the files that
//! last passed the dry run together ([`ValidatedApps`]), and a new revision dry-runs
//! only:
//! - **checked** apps: the apps whose files changed (or are new), plus every app that
//!   references a quadlet a checked app defines or used to define (a shared network
//!   changed or removed breaks its users), transitively;
//! - **staged** apps: the checked ones plus every app defining a quadlet they reference,
//!   transitively, so the generator can resolve `Network=`, `Pod=`, `Volume=`, ... as it
//!   would on the host.
//!
//! Why this is as strict as a whole dry run: the generator converts each quadlet from
//! its own text and the quadlets it references, nothing else. An unchanged app whose
//! references are unchanged converts exactly as it did when it passed. Legerd's own
//! whole-tree checks (duplicate names, dangling references, limits) still run over
//! every app in [`assemble`](crate::assemble::assemble), and the record is only kept
//! for the generator it was made with ([`generator_identity`]): another podman starts
//! from scratch.
//!
//! The record is kept across restarts in the revision store (`validated.json`), so the
//! startup pass does not dry-run the revision it already validated.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{App, DesiredTree};

/// File name of the record in the revision store's folder.
pub const RECORD_FILE: &str = "validated.json";

/// What passed the generator's dry run last, and with which generator.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValidatedApps {
    /// The generator (and podman) the verdicts hold for; see [`generator_identity`].
    pub generator: String,
    /// Apps by name.
    pub apps: BTreeMap<String, ValidatedApp>,
}

/// One app that passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatedApp {
    /// [`app_digest`] of the files that passed.
    pub digest: String,
    /// The quadlets (base names) the app defined then: when the app changes or goes,
    /// the apps referencing one of them are checked again.
    pub defines: BTreeSet<String>,
}

/// What a dry run of a new tree has to cover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    /// Apps whose verdict is not known: changed, new, or depending on one of those.
    pub checked: BTreeSet<String>,
    /// Apps to stage for the generator: `checked` plus what they reference.
    pub staged: BTreeSet<String>,
}

impl Scope {
    /// True when nothing needs the generator.
    pub fn is_empty(&self) -> bool {
        self.checked.is_empty()
    }
}

/// A digest of the files the generator sees of `app`: every installed path and the
/// hash of its bytes (already computed once per file in [`crate::model::AppFile`]).
pub fn app_digest(app: &App) -> String {
    let mut h = Sha256::new();
    for (rel, file) in &app.files {
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(file.hash.0);
    }
    hex::encode(h.finalize())
}

/// The quadlets (base names) `app` defines: each unit's source file sits directly in
/// the app folder.
fn defines(app: &App) -> BTreeSet<String> {
    app.units.iter().map(|u| u.source_file.clone()).collect()
}

impl ValidatedApps {
    /// The record of `tree`, all of whose apps just passed with `generator`.
    pub fn of(tree: &DesiredTree, generator: String) -> Self {
        let apps = tree
            .apps
            .values()
            .map(|app| {
                let v = ValidatedApp {
                    digest: app_digest(app),
                    defines: defines(app),
                };
                (app.name.clone(), v)
            })
            .collect();
        ValidatedApps { generator, apps }
    }

    /// The record at `dir/validated.json`; `None` when there is none or it cannot be
    /// read (then the next dry run covers every app, which is always safe).
    pub fn load(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(RECORD_FILE)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable validation record");
                None
            }
        }
    }

    /// Writes the record to `dir/validated.json`, atomically.
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        leger_config::fs::write_atomic(&dir.join(RECORD_FILE), &bytes, 0o600)
    }
}

/// What a dry run of `tree` must cover, given the record of what passed before (`None`
/// or another generator's record: every app).
pub fn scope(tree: &DesiredTree, previous: Option<&ValidatedApps>, generator: &str) -> Scope {
    let previous = previous.filter(|p| p.generator == generator);
    let Some(previous) = previous else {
        let all: BTreeSet<String> = tree.apps.keys().cloned().collect();
        return Scope {
            checked: all.clone(),
            staged: all,
        };
    };
    let defined: BTreeMap<&str, BTreeSet<String>> = tree
        .apps
        .values()
        .map(|a| (a.name.as_str(), defines(a)))
        .collect();
    // Quadlet names whose meaning may have changed: defined by a changed, new or
    // removed app, now or before.
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut checked: BTreeSet<String> = BTreeSet::new();
    for app in tree.apps.values() {
        let same = previous
            .apps
            .get(&app.name)
            .is_some_and(|v| v.digest == app_digest(app));
        if !same {
            checked.insert(app.name.clone());
            touched.extend(defined[app.name.as_str()].iter().cloned());
            if let Some(old) = previous.apps.get(&app.name) {
                touched.extend(old.defines.iter().cloned());
            }
        }
    }
    for (name, old) in &previous.apps {
        if !tree.apps.contains_key(name) {
            touched.extend(old.defines.iter().cloned());
        }
    }
    // Dependents, transitively: an app using a touched name is checked, and what it
    // defines is touched in turn.
    loop {
        let mut grew = false;
        for (name, uses) in &tree.uses {
            if checked.contains(name) || uses.is_disjoint(&touched) {
                continue;
            }
            checked.insert(name.clone());
            if let Some(d) = defined.get(name.as_str()) {
                touched.extend(d.iter().cloned());
            }
            grew = true;
        }
        if !grew {
            break;
        }
    }
    Scope {
        staged: with_referenced(tree, &checked, &defined),
        checked,
    }
}

/// `apps` plus every app defining a quadlet they reference, transitively.
fn with_referenced(
    tree: &DesiredTree,
    apps: &BTreeSet<String>,
    defined: &BTreeMap<&str, BTreeSet<String>>,
) -> BTreeSet<String> {
    let definer: BTreeMap<&str, &str> = defined
        .iter()
        .flat_map(|(app, names)| names.iter().map(move |n| (n.as_str(), *app)))
        .collect();
    let mut out = apps.clone();
    let mut todo: Vec<String> = apps.iter().cloned().collect();
    while let Some(app) = todo.pop() {
        for name in tree.uses.get(&app).into_iter().flatten() {
            if let Some(d) = definer.get(name.as_str())
                && out.insert((*d).to_owned())
            {
                todo.push((*d).to_owned());
            }
        }
    }
    out
}

/// Who gives the verdicts: the generator binary (path, size, mtime, inode), the podman
/// legerd validates keys for, and the mode. A change to any of them voids the record.
pub fn generator_identity(generator: &Path, podman: &str, user: bool) -> String {
    let stamp = std::fs::metadata(generator)
        .map(|m| format!("{}:{}:{}", m.len(), m.mtime(), m.ino()))
        .unwrap_or_else(|_| "absent".to_owned());
    format!(
        "{} {stamp}; {podman}; {}",
        generator.display(),
        if user { "user" } else { "system" }
    )
}

/// The folder of the record: the revision store's.
pub fn record_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("revisions")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppFile, QuadletKind, Unit};

    /// An app with one quadlet per `(file, uses)`, each using the named quadlets.
    fn app(name: &str, quadlets: &[(&str, &str)]) -> (App, BTreeSet<String>) {
        let mut files = BTreeMap::new();
        let mut units = Vec::new();
        let mut uses = BTreeSet::new();
        for (file, text) in quadlets {
            files.insert(file.to_string(), AppFile::new(text.as_bytes().to_vec()));
            units.push(Unit {
                name: format!("{file}.service"),
                kind: QuadletKind::from_file_name(file).unwrap(),
                source_file: file.to_string(),
                depends_on_files: BTreeSet::new(),
                secrets: BTreeSet::new(),
                pod: None,
            });
            // The test's convention: a line `uses=x.network` names a reference.
            for line in text.lines() {
                if let Some(u) = line.strip_prefix("uses=") {
                    uses.insert(u.to_owned());
                }
            }
        }
        let app = App {
            name: name.into(),
            files,
            units,
            config: Default::default(),
        };
        (app, uses)
    }

    fn tree(apps: &[(&str, &[(&str, &str)])]) -> DesiredTree {
        let mut t = DesiredTree::default();
        for (name, quadlets) in apps {
            let (a, uses) = app(name, quadlets);
            if !uses.is_empty() {
                t.uses.insert(name.to_string(), uses);
            }
            t.apps.insert(name.to_string(), a);
        }
        t
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    const NET: &str = "[Network]\n";
    const WEB: &str = "[Container]\nuses=shared.network\n";

    fn base() -> DesiredTree {
        tree(&[
            ("infra", &[("shared.network", NET)]),
            ("web", &[("web.container", WEB)]),
            ("api", &[("api.container", WEB)]),
            ("solo", &[("solo.container", "[Container]\n")]),
        ])
    }

    #[test]
    fn without_a_record_every_app_is_checked() {
        let t = base();
        let s = scope(&t, None, "g");
        assert_eq!(s.checked, set(&["api", "infra", "solo", "web"]));
        assert_eq!(s.staged, s.checked);
        // Another generator's record is no record.
        let rec = ValidatedApps::of(&t, "old".into());
        assert_eq!(scope(&t, Some(&rec), "g").checked.len(), 4);
    }

    #[test]
    fn the_same_tree_needs_no_dry_run() {
        let t = base();
        let rec = ValidatedApps::of(&t, "g".into());
        assert!(scope(&t, Some(&rec), "g").is_empty());
    }

    #[test]
    fn one_changed_app_is_checked_with_what_it_references_staged() {
        let rec = ValidatedApps::of(&base(), "g".into());
        let t = tree(&[
            ("infra", &[("shared.network", NET)]),
            (
                "web",
                &[("web.container", "[Container]\nuses=shared.network\n#v2\n")],
            ),
            ("api", &[("api.container", WEB)]),
            ("solo", &[("solo.container", "[Container]\n")]),
        ]);
        let s = scope(&t, Some(&rec), "g");
        assert_eq!(s.checked, set(&["web"]));
        assert_eq!(s.staged, set(&["infra", "web"]));
    }

    #[test]
    fn a_changed_shared_network_checks_every_user() {
        let rec = ValidatedApps::of(&base(), "g".into());
        let t = tree(&[
            ("infra", &[("shared.network", "[Network]\nSubnet=x\n")]),
            ("web", &[("web.container", WEB)]),
            ("api", &[("api.container", WEB)]),
            ("solo", &[("solo.container", "[Container]\n")]),
        ]);
        let s = scope(&t, Some(&rec), "g");
        assert_eq!(s.checked, set(&["api", "infra", "web"]));
        assert_eq!(s.staged, set(&["api", "infra", "web"]));
    }

    #[test]
    fn a_quadlet_moved_away_or_removed_checks_its_users() {
        let rec = ValidatedApps::of(&base(), "g".into());
        // infra is gone; shared.network now comes from a new app `net`.
        let t = tree(&[
            ("net", &[("shared.network", NET)]),
            ("web", &[("web.container", WEB)]),
            ("api", &[("api.container", WEB)]),
            ("solo", &[("solo.container", "[Container]\n")]),
        ]);
        let s = scope(&t, Some(&rec), "g");
        assert_eq!(s.checked, set(&["api", "net", "web"]));
        // infra keeps its name but no longer defines the network.
        let t = tree(&[
            ("infra", &[("other.network", NET)]),
            ("web", &[("web.container", WEB)]),
            ("api", &[("api.container", WEB)]),
            ("solo", &[("solo.container", "[Container]\n")]),
        ]);
        let s = scope(&t, Some(&rec), "g");
        assert_eq!(s.checked, set(&["api", "infra", "web"]));
    }

    #[test]
    fn dependents_are_followed_transitively() {
        // pod uses the network, app uses the pod.
        let t0 = tree(&[
            ("infra", &[("shared.network", NET)]),
            ("pods", &[("p.pod", "[Pod]\nuses=shared.network\n")]),
            ("app", &[("a.container", "[Container]\nuses=p.pod\n")]),
        ]);
        let rec = ValidatedApps::of(&t0, "g".into());
        let t = tree(&[
            ("infra", &[("shared.network", "[Network]\n#2\n")]),
            ("pods", &[("p.pod", "[Pod]\nuses=shared.network\n")]),
            ("app", &[("a.container", "[Container]\nuses=p.pod\n")]),
        ]);
        assert_eq!(
            scope(&t, Some(&rec), "g").checked,
            set(&["app", "infra", "pods"])
        );
        // A change to the container alone stages the pod and, through it, the network.
        let t = tree(&[
            ("infra", &[("shared.network", NET)]),
            ("pods", &[("p.pod", "[Pod]\nuses=shared.network\n")]),
            ("app", &[("a.container", "[Container]\nuses=p.pod\n#2\n")]),
        ]);
        let s = scope(&t, Some(&rec), "g");
        assert_eq!(s.checked, set(&["app"]));
        assert_eq!(s.staged, set(&["app", "infra", "pods"]));
    }

    #[test]
    fn the_record_survives_a_round_trip_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ValidatedApps::load(dir.path()), None);
        let rec = ValidatedApps::of(&base(), "g".into());
        rec.save(dir.path()).unwrap();
        assert_eq!(ValidatedApps::load(dir.path()), Some(rec));
        std::fs::write(dir.path().join(RECORD_FILE), b"{garbage").unwrap();
        assert_eq!(ValidatedApps::load(dir.path()), None);
    }

    #[test]
    fn the_identity_follows_the_generator_binary() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path().join("quadlet");
        let absent = generator_identity(&g, "5.4.2", false);
        std::fs::write(&g, b"v1").unwrap();
        let v1 = generator_identity(&g, "5.4.2", false);
        assert_ne!(absent, v1);
        std::fs::write(&g, b"v222").unwrap();
        assert_ne!(generator_identity(&g, "5.4.2", false), v1);
        assert_ne!(
            generator_identity(&g, "5.4.2", false),
            generator_identity(&g, "5.8.6", false)
        );
    }
}

//! Describes what applying a staged revision would do: the unit actions of its plan
//! and a unified diff of every file it changes, for `legerctl diff`.
//!
//! The old side of each diff is the file as it is on disk now, not as the inventory
//! remembers it: a reviewer approves a change to the host as it is.

use std::path::Path;

use leger_api_types::{FileDiff, StagedAction, StagedChange};
use similar::TextDiff;

use crate::model::DesiredTree;
use crate::plan::{Action, Plan, WriteReason};

/// Builds the description of `plan` (planned for `tree`).
pub fn describe(
    tree: &DesiredTree,
    plan: &Plan,
    quadlet_dir: &Path,
    applied: Option<String>,
) -> StagedChange {
    let mut actions = Vec::new();
    let mut files = Vec::new();
    for action in &plan.actions {
        match action {
            Action::StartUnit { unit, app, .. }
            | Action::RestartUnit { unit, app }
            | Action::StopUnit { unit, app } => {
                actions.push(StagedAction {
                    action: action.verb().to_owned(),
                    unit: unit.clone(),
                    app: app.clone(),
                });
            }
            Action::WriteFile {
                key, app, reason, ..
            } => {
                let new = tree
                    .apps
                    .get(app)
                    .and_then(|a| {
                        a.files
                            .get(key.split_once('/').map_or(key.as_str(), |(_, rel)| rel))
                    })
                    .map(|f| f.content.to_vec())
                    .unwrap_or_default();
                let old = std::fs::read(quadlet_dir.join(key)).unwrap_or_default();
                let change = if *reason == WriteReason::Create {
                    "added"
                } else {
                    "modified"
                };
                files.push(file_diff(key, app, change, &old, &new));
            }
            Action::RemoveFile { key, app } => {
                let old = std::fs::read(quadlet_dir.join(key)).unwrap_or_default();
                files.push(file_diff(key, app, "removed", &old, &[]));
            }
            Action::Reload => {}
        }
    }
    StagedChange {
        revision: tree.revision.clone(),
        applied_revision: applied,
        actions,
        files,
    }
}

fn file_diff(key: &str, app: &str, change: &str, old: &[u8], new: &[u8]) -> FileDiff {
    let diff = match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(o), Ok(n)) => TextDiff::from_lines(o, n)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{key}"), &format!("b/{key}"))
            .to_string(),
        _ => String::new(),
    };
    FileDiff {
        path: key.to_owned(),
        app: app.to_owned(),
        change: change.to_owned(),
        diff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{App, AppFile, ContentHash};
    use crate::plan::StartReason;
    use std::collections::BTreeMap;

    #[test]
    fn staged_describes_actions_and_diffs() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("web")).unwrap();
        std::fs::write(t.path().join("web/web.container"), "[Container]\nImage=a\n").unwrap();
        std::fs::create_dir_all(t.path().join("old")).unwrap();
        std::fs::write(t.path().join("old/old.container"), "[Container]\nImage=o\n").unwrap();
        let new = "[Container]\nImage=b\n";
        let mut files = BTreeMap::new();
        files.insert(
            "web.container".to_owned(),
            AppFile::new(new.as_bytes().to_vec()),
        );
        let tree = DesiredTree {
            revision: "r2".into(),
            apps: [(
                "web".to_owned(),
                App {
                    name: "web".into(),
                    config: Default::default(),
                    files,
                    units: vec![],
                },
            )]
            .into(),
            layers: Default::default(),
            uses: Default::default(),
        };
        let plan = Plan {
            actions: vec![
                Action::StopUnit {
                    unit: "old.service".into(),
                    app: "old".into(),
                },
                Action::WriteFile {
                    key: "web/web.container".into(),
                    app: "web".into(),
                    hash: ContentHash::of(new.as_bytes()),
                    reason: WriteReason::Update,
                },
                Action::RemoveFile {
                    key: "old/old.container".into(),
                    app: "old".into(),
                },
                Action::Reload,
                Action::StartUnit {
                    unit: "web.service".into(),
                    app: "web".into(),
                    reason: StartReason::Install,
                },
            ],
            drift: vec![],
        };
        let d = describe(&tree, &plan, t.path(), Some("r1".into()));
        assert_eq!(d.revision, "r2");
        let acts: Vec<String> = d
            .actions
            .iter()
            .map(|a| format!("{} {}", a.action, a.unit))
            .collect();
        assert_eq!(acts, ["stop old.service", "start web.service"]);
        assert_eq!(d.files.len(), 2);
        assert_eq!(d.files[0].change, "modified");
        assert!(
            d.files[0].diff.contains("-Image=a") && d.files[0].diff.contains("+Image=b"),
            "{}",
            d.files[0].diff
        );
        assert!(d.files[0].diff.contains("--- a/web/web.container"));
        assert_eq!(d.files[1].change, "removed");
        assert!(d.files[1].diff.contains("-Image=o"));
    }
}

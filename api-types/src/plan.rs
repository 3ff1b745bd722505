//! `GET /v1/plan`: what the next pass would do now, for `legerctl plan`.
//!
//! It names secrets only (never a value), and lists drift the pass cannot heal, so an
//! operator sees before resuming or approving what would happen and what would not.

use serde::{Deserialize, Serialize};

use crate::status::{API_VERSION, FileDiff, StagedAction};

/// The `kind` of a [`PlanDocument`].
pub const PLAN_KIND: &str = "Plan";

/// What the next pass would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDocument {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`PLAN_KIND`].
    pub kind: String,
    /// The revision the pass would converge to; `None` when it would converge to none
    /// (staged mode with nothing applied and nothing approved).
    pub revision: Option<String>,
    /// The revision the host runs now.
    pub applied_revision: Option<String>,
    /// Why that revision: `forward`, `approve`, `pin`, `hold-last-good`, or `none`.
    pub mode: String,
    /// Only this app, when asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// What would hold the pass before it changes anything (suspended, the fleet
    /// lock), and what lifts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Anything else an operator should know (a candidate refused, a staged revision
    /// shown as approving it would apply it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Unit actions, in order.
    pub actions: Vec<StagedAction>,
    /// Every file that would change, with a unified diff.
    pub files: Vec<FileDiff>,
    /// Podman secrets whose value would be created or replaced (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<PlanSecret>,
    /// Podman resources the pass would recreate (a changed network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Drift seen on the host, corrected by this plan or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<PlanDrift>,
    /// Drift no pass will heal without an operator (a changed volume legerd may not
    /// recreate without losing its data), with what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unhealable: Vec<String>,
}

impl PlanDocument {
    /// An empty plan with the fixed `apiVersion` and `kind`.
    pub fn new(mode: &str) -> Self {
        PlanDocument {
            api_version: API_VERSION.to_owned(),
            kind: PLAN_KIND.to_owned(),
            revision: None,
            applied_revision: None,
            mode: mode.to_owned(),
            app: None,
            held: None,
            notes: Vec::new(),
            actions: Vec::new(),
            files: Vec::new(),
            secrets: Vec::new(),
            resources: Vec::new(),
            drift: Vec::new(),
            unhealable: Vec::new(),
        }
    }

    /// True when the pass would change something on the host.
    pub fn has_changes(&self) -> bool {
        !self.actions.is_empty()
            || !self.files.is_empty()
            || !self.secrets.is_empty()
            || !self.resources.is_empty()
    }
}

/// A Podman secret the pass would write: its name and why, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSecret {
    /// The Podman secret's name.
    pub name: String,
    /// `created` or `changed`.
    pub change: String,
    /// The apps whose units use it.
    pub apps: Vec<String>,
}

/// One piece of drift: a managed file or unit that is not as legerd left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDrift {
    /// `file` or `unit`.
    pub kind: String,
    /// The install key or unit name.
    pub target: String,
    /// What was seen.
    pub detail: String,
    /// True when this plan corrects it (self-heal on).
    pub corrected: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_document_carries_api_version_and_kind() {
        let doc = PlanDocument::new("forward");
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["kind"], PLAN_KIND);
        assert!(!doc.has_changes());
        let back: PlanDocument = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
    }
}

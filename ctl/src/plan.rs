//! `legerctl plan`: what the next pass would do now, rendered for people.
//!
//! Pure: legerd computes the plan (`GET /v1/plan`); this only lays it out. Secrets
//! arrive as names, so nothing here can print a value.

use leger_api_types::PlanDocument;

use crate::render::{render_file_diffs, render_unit_actions};

/// The plan as text: target, why it would be held, notes, unit actions, secrets,
/// resources, drift, and a diff of every file.
pub fn render_plan(doc: &PlanDocument, color: bool) -> String {
    let mut out = match &doc.revision {
        Some(r) => format!(
            "next pass: {} revision {} (applied: {})\n",
            doc.mode,
            r,
            doc.applied_revision.as_deref().unwrap_or("none")
        ),
        None => format!(
            "next pass: no revision to converge to (applied: {})\n",
            doc.applied_revision.as_deref().unwrap_or("none")
        ),
    };
    if let Some(app) = &doc.app {
        out.push_str(&format!("app:       {app}\n"));
    }
    if let Some(h) = &doc.held {
        out.push_str(&format!("held:      {h}\n"));
    }
    for n in &doc.notes {
        out.push_str(&format!("note:      {n}\n"));
    }
    if !doc.has_changes() {
        out.push_str("no changes\n");
    }
    let actions: Vec<_> = doc.actions.iter().collect();
    out.push_str(&render_unit_actions(&actions));
    if !doc.secrets.is_empty() {
        out.push_str("\nSecrets (values are never shown):\n");
        for s in &doc.secrets {
            out.push_str(&format!(
                "  {:<8} {} (apps {})\n",
                s.change,
                s.name,
                s.apps.join(", ")
            ));
        }
    }
    if !doc.resources.is_empty() {
        out.push_str("\nPodman resources:\n");
        for r in &doc.resources {
            out.push_str(&format!("  {r}\n"));
        }
    }
    if !doc.drift.is_empty() {
        out.push_str("\nDrift:\n");
        for d in &doc.drift {
            let fix = if d.corrected {
                "corrected by this plan"
            } else {
                "left alone (self-heal off)"
            };
            out.push_str(&format!(
                "  {} {}: {} ({fix})\n",
                d.kind, d.target, d.detail
            ));
        }
    }
    if !doc.unhealable.is_empty() {
        out.push_str("\nCannot be healed by a pass:\n");
        for u in &doc.unhealable {
            out.push_str(&format!("  {u}\n"));
        }
    }
    let files: Vec<_> = doc.files.iter().collect();
    out.push_str(&render_file_diffs(&files, color));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leger_api_types::{FileDiff, PlanDrift, PlanSecret, StagedAction};

    #[test]
    fn render_plan_shows_hold_actions_secret_names_and_unhealable_drift() {
        let mut doc = PlanDocument::new("forward");
        doc.revision = Some("r2".into());
        doc.applied_revision = Some("r1".into());
        doc.held = Some("legerd is suspended; `legerctl resume`".into());
        doc.actions.push(StagedAction {
            action: "restart".into(),
            unit: "web.service".into(),
            app: "web".into(),
        });
        doc.secrets.push(PlanSecret {
            name: "db-pass".into(),
            change: "changed".into(),
            apps: vec!["web".into()],
        });
        doc.drift.push(PlanDrift {
            kind: "unit".into(),
            target: "web.service".into(),
            detail: "failed".into(),
            corrected: true,
        });
        doc.unhealable
            .push("db/data.volume changed, but podman keeps".into());
        doc.files.push(FileDiff {
            path: "web/web.container".into(),
            app: "web".into(),
            change: "modified".into(),
            diff: "--- a/web/web.container\n+++ b/web/web.container\n-Image=a\n+Image=b\n".into(),
        });
        let text = render_plan(&doc, false);
        assert!(
            text.starts_with("next pass: forward revision r2 (applied: r1)\n"),
            "{text}"
        );
        assert!(text.contains("held:      legerd is suspended"), "{text}");
        assert!(text.contains("  restart  web.service (app web)"), "{text}");
        assert!(text.contains("  changed  db-pass (apps web)"), "{text}");
        assert!(
            text.contains("unit web.service: failed (corrected by this plan)"),
            "{text}"
        );
        assert!(
            text.contains("Cannot be healed by a pass:\n  db/data.volume changed"),
            "{text}"
        );
        assert!(text.contains("+Image=b"), "{text}");
        assert!(!text.contains("no changes"), "{text}");
        assert!(!text.contains('\x1b'), "no colour when not asked: {text}");
    }

    #[test]
    fn render_plan_says_no_changes() {
        let mut doc = PlanDocument::new("hold-last-good");
        doc.revision = Some("r1".into());
        doc.applied_revision = Some("r1".into());
        let text = render_plan(&doc, true);
        assert!(text.ends_with("no changes\n"), "{text}");
    }
}

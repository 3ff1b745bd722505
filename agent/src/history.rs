//! What becomes a history row. Pure: the store applies the decision.
//!
//! History is for what happened. An idle poll, or the no-op pass legerd's own writes
//! and restarts trigger (they come back as drift events), is counted, not listed; a
//! failure or hold repeated with the same revision, actions and error (a revision
//! already known bad, retried with backoff; every poll while suspended) is one row that
//! says how many passes it stands for. Operator-asked passes (`manual`, `startup`,
//! `desired-changed`, `restore`) always get a row, so `legerctl reconcile` is visible.

use leger_api_types::{PassOutcome, PassRecord};

/// A pass counted instead of recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiet {
    /// A no-op pass only a poll or a retry timer asked for.
    IdlePoll,
    /// A no-op pass drift events asked for: nothing to correct.
    DriftCheck,
}

impl Quiet {
    /// Its counter's key in the store's meta table.
    pub fn meta_key(self) -> &'static str {
        match self {
            Quiet::IdlePoll => "history.idle_polls",
            Quiet::DriftCheck => "history.quiet_drift_checks",
        }
    }
}

/// What to do with a finished pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// A new row.
    Row,
    /// The same as the newest row (`id`): one row standing for both.
    Fold {
        /// The row it repeats.
        id: i64,
    },
    /// Counted, not listed.
    Count(Quiet),
}

/// Trigger kinds that only mean "look again": no one asked for this pass.
const POLL_KINDS: &[&str] = &["poll", "retry"];
/// Trigger kinds of drift events (legerd's own writes and restarts among them).
const DRIFT_KINDS: &[&str] = &["drift-file", "drift-unit", "source-changed"];

/// The kind of a trigger label: `drift-unit:web.service` → `drift-unit`.
fn kind(label: &str) -> &str {
    label.split_once(':').map_or(label, |(k, _)| k).trim()
}

/// Decides what `pass` becomes, given the newest row in history.
pub fn classify(pass: &PassRecord, newest: Option<&PassRecord>) -> Keep {
    let quiet =
        pass.outcome == PassOutcome::Noop && pass.actions.is_empty() && pass.error.is_none();
    if quiet {
        let kinds: Vec<&str> = pass.trigger.split(',').map(kind).collect();
        if kinds.iter().all(|k| POLL_KINDS.contains(k)) {
            return Keep::Count(Quiet::IdlePoll);
        }
        if kinds
            .iter()
            .all(|k| POLL_KINDS.contains(k) || DRIFT_KINDS.contains(k))
        {
            return Keep::Count(Quiet::DriftCheck);
        }
    }
    let repeats = matches!(
        pass.outcome,
        PassOutcome::Failed
            | PassOutcome::RolledBack
            | PassOutcome::Suspended
            | PassOutcome::Waiting
            | PassOutcome::Staged
    );
    match newest {
        Some(n)
            if repeats
                && n.outcome == pass.outcome
                && n.revision == pass.revision
                && n.error == pass.error
                && n.actions == pass.actions =>
        {
            Keep::Fold { id: n.id }
        }
        _ => Keep::Row,
    }
}

/// The triggers of a pass as one short word list: each kind once, in first-seen order
/// (`drift-unit:a.service,drift-unit:b.service,poll` → `drift-unit,poll`). The unit
/// names are in the pass's actions when it did anything about them.
pub fn summarize_triggers(trigger: &str) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for k in trigger.split(',').map(kind).filter(|k| !k.is_empty()) {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    kinds.join(",")
}

/// `legerctl history --changes --failed --app APP`: which rows to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only passes that changed the host (held actions do not count).
    pub changes: bool,
    /// Only failed and rolled-back passes.
    pub failed: bool,
    /// Only passes about this app: its files (`app/…`) or units in the actions or the
    /// error.
    pub app: Option<AppFilter>,
}

/// An app and the units it has now (from status), for [`Filter::app`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFilter {
    /// The app.
    pub name: String,
    /// Its units.
    pub units: Vec<String>,
}

impl Filter {
    /// Whether `pass` is listed.
    pub fn matches(&self, pass: &PassRecord) -> bool {
        if self.failed && !matches!(pass.outcome, PassOutcome::Failed | PassOutcome::RolledBack) {
            return false;
        }
        if self.changes {
            let held = matches!(pass.outcome, PassOutcome::Suspended | PassOutcome::Waiting);
            if held || !pass.actions.iter().any(|a| !a.starts_with("(held)")) {
                return false;
            }
        }
        match &self.app {
            None => true,
            Some(app) => {
                let prefix = format!("{}/", app.name);
                let mentions = |text: &str| {
                    text.contains(&prefix)
                        || app.units.iter().any(|u| {
                            text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ':'))
                                .any(|w| w == u)
                        })
                };
                pass.actions.iter().any(|a| mentions(a))
                    || pass.error.as_deref().is_some_and(mentions)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(trigger: &str, outcome: PassOutcome, error: Option<&str>) -> PassRecord {
        PassRecord {
            id: 0,
            started_at: "2026-11-30T10:00:00Z".into(),
            finished_at: "2026-11-30T10:00:01Z".into(),
            duration_ms: 5,
            trigger: trigger.into(),
            revision: Some("r1".into()),
            outcome,
            actions: vec![],
            error: error.map(str::to_owned),
            runs: 1,
            first_started_at: None,
        }
    }

    #[test]
    fn idle_polls_and_drift_echoes_are_counted() {
        assert_eq!(
            classify(&pass("poll", PassOutcome::Noop, None), None),
            Keep::Count(Quiet::IdlePoll)
        );
        assert_eq!(
            classify(&pass("retry", PassOutcome::Noop, None), None),
            Keep::Count(Quiet::IdlePoll)
        );
        assert_eq!(
            classify(
                &pass(
                    "drift-file,drift-unit:web.service,poll",
                    PassOutcome::Noop,
                    None
                ),
                None
            ),
            Keep::Count(Quiet::DriftCheck)
        );
    }

    #[test]
    fn operator_passes_and_passes_that_did_something_are_rows() {
        for t in [
            "manual",
            "startup",
            "desired-changed",
            "restore",
            "poll,manual",
        ] {
            assert_eq!(
                classify(&pass(t, PassOutcome::Noop, None), None),
                Keep::Row,
                "{t}"
            );
        }
        let mut healed = pass("drift-unit:web.service", PassOutcome::Applied, None);
        healed.actions = vec!["restart web.service".into()];
        assert_eq!(classify(&healed, None), Keep::Row);
        let mut noop_with_action = pass("poll", PassOutcome::Noop, None);
        noop_with_action.actions = vec!["secret db-pass unused, removed".into()];
        assert_eq!(classify(&noop_with_action, None), Keep::Row);
    }

    #[test]
    fn a_repeated_failure_or_hold_folds_into_the_newest_row() {
        let mut newest = pass("poll", PassOutcome::Failed, Some("known bad"));
        newest.id = 7;
        let again = pass("retry", PassOutcome::Failed, Some("known bad"));
        assert_eq!(classify(&again, Some(&newest)), Keep::Fold { id: 7 });
        // A different error, revision or outcome is news.
        let other = pass("retry", PassOutcome::Failed, Some("another error"));
        assert_eq!(classify(&other, Some(&newest)), Keep::Row);
        let mut moved = again.clone();
        moved.revision = Some("r2".into());
        assert_eq!(classify(&moved, Some(&newest)), Keep::Row);
        // Suspended passes holding the same actions fold too.
        let mut held = pass("poll", PassOutcome::Suspended, None);
        held.actions = vec!["(held) restart web.service".into()];
        let mut newest_held = held.clone();
        newest_held.id = 9;
        assert_eq!(classify(&held, Some(&newest_held)), Keep::Fold { id: 9 });
        // Applied passes never fold: each one changed the host.
        let mut applied = pass("manual", PassOutcome::Applied, None);
        applied.actions = vec!["restart web.service".into()];
        let mut newest_applied = applied.clone();
        newest_applied.id = 10;
        assert_eq!(classify(&applied, Some(&newest_applied)), Keep::Row);
    }

    #[test]
    fn filters_pick_changes_failures_and_one_app() {
        let mut applied = pass("manual", PassOutcome::Applied, None);
        applied.actions = vec![
            "write web/web.container".into(),
            "restart web.service".into(),
        ];
        let mut held = pass("poll", PassOutcome::Suspended, None);
        held.actions = vec!["(held) restart db.service".into()];
        let failed = pass(
            "poll",
            PassOutcome::Failed,
            Some("db.service: start job failed"),
        );
        let mut rolled = pass(
            "poll",
            PassOutcome::RolledBack,
            Some("revision r2 rolled back"),
        );
        rolled.actions = vec!["restart web.service".into()];
        let all = [&applied, &held, &failed, &rolled];
        let pick = |f: &Filter| -> Vec<usize> {
            all.iter()
                .enumerate()
                .filter(|(_, p)| f.matches(p))
                .map(|(i, _)| i)
                .collect()
        };
        assert_eq!(pick(&Filter::default()), [0, 1, 2, 3]);
        let changes = Filter {
            changes: true,
            ..Filter::default()
        };
        assert_eq!(pick(&changes), [0, 3]);
        let failures = Filter {
            failed: true,
            ..Filter::default()
        };
        assert_eq!(pick(&failures), [2, 3]);
        let db = Filter {
            app: Some(AppFilter {
                name: "db".into(),
                units: vec!["db.service".into()],
            }),
            ..Filter::default()
        };
        assert_eq!(pick(&db), [1, 2]);
        // Units match whole words: `web.service` is not `myweb.service`.
        let mut other = pass("manual", PassOutcome::Applied, None);
        other.actions = vec!["restart myweb.service".into()];
        let web = Filter {
            app: Some(AppFilter {
                name: "web".into(),
                units: vec!["web.service".into()],
            }),
            ..Filter::default()
        };
        assert!(!web.matches(&other));
        assert!(web.matches(&applied));
    }

    #[test]
    fn triggers_are_one_short_word_list() {
        assert_eq!(
            summarize_triggers("drift-unit:a.service,drift-unit:b.service,drift-file,poll"),
            "drift-unit,drift-file,poll"
        );
        assert_eq!(summarize_triggers("manual"), "manual");
        assert_eq!(summarize_triggers(""), "");
    }
}

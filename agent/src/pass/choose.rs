//! Choosing the target: a pure decision between the pin, the approved revision, the
//! staged one, the fetched one, and holding the last good revision.
//!
//! Like zincati's state machine, the decision is data in, data out, and tested with
//! plain values. A candidate that already failed its health gate is never applied
//! again (it would flap the host between bad and good on every poll, taking a backup
//! each time until retention evicted the ones from before the incident): the host holds
//! its last good revision and status says what failed and what to do.

use std::collections::BTreeMap;

use super::converge::Mode;

/// What the pass may converge to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Candidates<'a> {
    /// `policy.pin`.
    pub pin: Option<&'a str>,
    /// `policy.approved` (staged mode).
    pub approved: Option<&'a str>,
    /// `policy.mode = "staged"`.
    pub staged_mode: bool,
    /// What the source offers now (`None` when pinned: the source is not asked).
    pub fetched: Option<&'a str>,
    /// What the host runs: the last revision that passed its own gate.
    pub applied: Option<&'a str>,
}

/// Which kind of candidate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateKind {
    /// `policy.pin` (also `legerctl rollback`).
    Pin,
    /// `policy.approved`.
    Approved,
    /// The source's newest revision.
    Fetched,
}

/// A candidate that failed its health gate before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Which candidate.
    pub kind: CandidateKind,
    /// Its revision.
    pub revision: String,
    /// Why it failed, as recorded.
    pub error: String,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Converge to `revision`.
    Converge {
        /// The target.
        revision: String,
        /// Why.
        mode: Mode,
        /// Set when the host holds its last good revision because the real candidate
        /// failed before: the pass converges, then reports this.
        refused: Option<Refusal>,
    },
    /// Converge to nothing: staged mode with nothing approved or applied yet, or a
    /// failed candidate with no good revision to hold.
    Nothing {
        /// The failed candidate, if that is why.
        refused: Option<Refusal>,
    },
}

/// Decides. `failed` maps every failed revision among the candidates to its recorded
/// error.
pub fn choose(c: &Candidates<'_>, failed: &BTreeMap<String, String>) -> Choice {
    let candidate = if let Some(pin) = c.pin {
        Some((CandidateKind::Pin, pin, Mode::Pin))
    } else if c.staged_mode {
        match c.approved {
            Some(a) if Some(a) != c.applied => Some((CandidateKind::Approved, a, Mode::Approve)),
            _ => None,
        }
    } else {
        c.fetched
            .map(|f| (CandidateKind::Fetched, f, Mode::Forward))
    };
    let hold = |refused| match c.applied {
        Some(good) => Choice::Converge {
            revision: good.to_owned(),
            mode: Mode::HoldLastGood,
            refused,
        },
        None => Choice::Nothing { refused },
    };
    let Some((kind, revision, mode)) = candidate else {
        // Staged mode with nothing (new) approved: keep the host where it is.
        return hold(None);
    };
    match failed.get(revision) {
        Some(error) if Some(revision) != c.applied => hold(Some(Refusal {
            kind,
            revision: revision.to_owned(),
            error: error.clone(),
        })),
        _ => Choice::Converge {
            revision: revision.to_owned(),
            mode,
            refused: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converge(revision: &str, mode: Mode) -> Choice {
        Choice::Converge {
            revision: revision.into(),
            mode,
            refused: None,
        }
    }

    #[test]
    fn choose_follows_the_source_when_not_pinned() {
        let c = Candidates {
            fetched: Some("b"),
            applied: Some("a"),
            ..Default::default()
        };
        assert_eq!(choose(&c, &BTreeMap::new()), converge("b", Mode::Forward));
    }

    #[test]
    fn choose_prefers_the_pin_over_everything() {
        let c = Candidates {
            pin: Some("p"),
            approved: Some("x"),
            staged_mode: true,
            fetched: None,
            applied: Some("a"),
        };
        assert_eq!(choose(&c, &BTreeMap::new()), converge("p", Mode::Pin));
    }

    #[test]
    fn choose_in_staged_mode_applies_only_the_approved_revision() {
        let mut c = Candidates {
            staged_mode: true,
            fetched: Some("new"),
            applied: Some("a"),
            ..Default::default()
        };
        assert_eq!(
            choose(&c, &BTreeMap::new()),
            converge("a", Mode::HoldLastGood)
        );
        c.approved = Some("new");
        assert_eq!(choose(&c, &BTreeMap::new()), converge("new", Mode::Approve));
        c.applied = None;
        c.approved = None;
        assert_eq!(
            choose(&c, &BTreeMap::new()),
            Choice::Nothing { refused: None }
        );
    }

    #[test]
    fn choose_holds_the_last_good_revision_instead_of_a_failed_one() {
        let failed: BTreeMap<String, String> = [("bad".to_owned(), "web died".to_owned())].into();
        for (c, kind) in [
            (
                Candidates {
                    pin: Some("bad"),
                    applied: Some("good"),
                    ..Default::default()
                },
                CandidateKind::Pin,
            ),
            (
                Candidates {
                    staged_mode: true,
                    approved: Some("bad"),
                    applied: Some("good"),
                    ..Default::default()
                },
                CandidateKind::Approved,
            ),
            (
                Candidates {
                    fetched: Some("bad"),
                    applied: Some("good"),
                    ..Default::default()
                },
                CandidateKind::Fetched,
            ),
        ] {
            assert_eq!(
                choose(&c, &failed),
                Choice::Converge {
                    revision: "good".into(),
                    mode: Mode::HoldLastGood,
                    refused: Some(Refusal {
                        kind,
                        revision: "bad".into(),
                        error: "web died".into()
                    }),
                }
            );
        }
        let c = Candidates {
            fetched: Some("bad"),
            ..Default::default()
        };
        assert!(matches!(
            choose(&c, &failed),
            Choice::Nothing { refused: Some(_) }
        ));
    }
}

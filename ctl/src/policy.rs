//! `legerctl set-policy`: changes `[policy]` (mode, prune, self-heal, allow-empty)
//! without hand-editing desired.toml, and says what each change means for the host and
//! when it takes effect. Pure: `main.rs` reads and writes the file.

use leger_api_types::{Policy, UpdateMode};

/// `--mode`: clap refuses anything else and lists the two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Apply each new revision once it validates.
    Auto,
    /// Stage each new revision and wait for `legerctl approve`.
    Staged,
}

impl From<ModeArg> for UpdateMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Auto => UpdateMode::Auto,
            ModeArg::Staged => UpdateMode::Staged,
        }
    }
}

/// The changes asked for; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyChange {
    /// `--mode`.
    pub mode: Option<ModeArg>,
    /// `--prune`.
    pub prune: Option<bool>,
    /// `--self-heal`.
    pub self_heal: Option<bool>,
    /// `--allow-empty`.
    pub allow_empty: Option<bool>,
}

/// Applies `change` to `policy` and returns one line per setting that really changed,
/// saying what legerd will do differently and when. An empty list means nothing changed
/// (the caller then leaves the file alone).
pub fn apply(policy: &mut Policy, change: PolicyChange) -> Vec<String> {
    let mut said = Vec::new();
    if let Some(mode) = change.mode.map(UpdateMode::from)
        && mode != policy.mode
    {
        policy.mode = mode;
        said.push(match mode {
            UpdateMode::Staged => {
                "mode staged: from legerd's next pass (within a second), each new revision is \
                 fetched, validated and staged, and waits for `legerctl approve` \
                 (`legerctl diff` shows it); what runs now keeps running"
                    .to_owned()
            }
            UpdateMode::Auto => {
                // An approval only means something in staged mode.
                policy.approved = None;
                "mode auto: at legerd's next pass (within a second) it applies the newest \
                 revision, including one that was waiting for approval"
                    .to_owned()
            }
        });
    }
    if let Some(prune) = change.prune
        && prune != policy.prune
    {
        policy.prune = prune;
        said.push(if prune {
            "prune on: at the next pass, installed apps that are no longer in the source are \
             stopped and removed (backed up first)"
                .to_owned()
        } else {
            "prune off: apps that leave the source stay installed and running until you \
             turn prune on again"
                .to_owned()
        });
    }
    if let Some(heal) = change.self_heal
        && heal != policy.self_heal
    {
        policy.self_heal = heal;
        said.push(if heal {
            "self-heal on: from the next pass, hand-edited or deleted managed files are \
             restored and managed units that stop are started again"
                .to_owned()
        } else {
            "self-heal off: hand edits to managed files and units stopped by hand are left \
             alone until the source changes"
                .to_owned()
        });
    }
    if let Some(empty) = change.allow_empty
        && empty != policy.allow_empty
    {
        policy.allow_empty = empty;
        said.push(if empty {
            "allow-empty on: a source with no apps now removes every installed app at the \
             next pass"
                .to_owned()
        } else {
            "allow-empty off: a source with no apps is refused and the installed apps stay"
                .to_owned()
        });
    }
    if policy.suspend && !said.is_empty() {
        said.push(
            "legerd is suspended: none of this changes the host until `legerctl resume`".to_owned(),
        );
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_changes_only_what_differs_and_says_so() {
        let mut p = Policy::default();
        let said = apply(
            &mut p,
            PolicyChange {
                mode: Some(ModeArg::Staged),
                prune: Some(true), // already on
                ..Default::default()
            },
        );
        assert_eq!(p.mode, UpdateMode::Staged);
        assert!(p.prune);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("mode staged") && said[0].contains("legerctl approve"));
    }

    #[test]
    fn apply_with_nothing_new_changes_nothing() {
        let mut p = Policy::default();
        let said = apply(
            &mut p,
            PolicyChange {
                mode: Some(ModeArg::Auto),
                self_heal: Some(true),
                allow_empty: Some(false),
                prune: Some(true),
            },
        );
        assert!(said.is_empty());
        assert_eq!(p, Policy::default());
    }

    #[test]
    fn apply_back_to_auto_drops_a_stale_approval() {
        let mut p = Policy {
            mode: UpdateMode::Staged,
            approved: Some("abc".into()),
            ..Default::default()
        };
        apply(
            &mut p,
            PolicyChange {
                mode: Some(ModeArg::Auto),
                ..Default::default()
            },
        );
        assert_eq!((p.mode, p.approved), (UpdateMode::Auto, None));
    }

    #[test]
    fn apply_while_suspended_says_nothing_happens_yet() {
        let mut p = Policy {
            suspend: true,
            ..Default::default()
        };
        let said = apply(
            &mut p,
            PolicyChange {
                prune: Some(false),
                allow_empty: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(said.len(), 3);
        assert!(said[2].contains("legerctl resume"));
        assert!(!p.prune && p.allow_empty);
    }
}

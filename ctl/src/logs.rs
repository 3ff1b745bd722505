//! `legerctl logs`: which units' journal to show, and the `journalctl` command line.
//!
//! Reading the journal is the one read-only way legerctl looks past legerd: legerd's
//! status says which units belong to an app, and `journalctl` shows their logs (with
//! the caller's own journal permissions). Both steps are pure functions here so they
//! are tested with plain data; `main.rs` only runs the result.

use leger_api_types::StatusDocument;
use leger_config::Mode;

/// legerd's own unit, in both modes (`contrib/systemd`).
pub const LEGERD_UNIT: &str = "legerd.service";

/// Why the units to show could not be chosen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogsError {
    /// Neither an app nor a managed unit of that name is in legerd's status.
    #[error(
        "no app named {app:?}, nor a unit, in legerd's status; apps: {known}; units: {units}. Use journalctl -u for units legerd does not manage"
    )]
    UnknownApp {
        /// What was asked for.
        app: String,
        /// The apps there are, comma-separated, or "none".
        known: String,
        /// The managed units there are, comma-separated, or "none".
        units: String,
    },
    /// A `-u` unit is not one legerd manages (for the app, when one was named).
    #[error("{unit} is not {scope}; units: {known}. Use journalctl -u for other units")]
    UnknownUnit {
        /// What was asked for.
        unit: String,
        /// "a unit legerd manages" or "a unit of app X".
        scope: String,
        /// The units there are, comma-separated.
        known: String,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The units whose journal to show.
///
/// - no app, no `-u`: legerd itself and every managed unit, interleaved by time;
/// - an app: that app's units;
/// - `-u UNIT` (repeatable): only those, each of which must be managed (by the app,
///   when one is named) or be legerd's own unit.
pub fn select_units(
    doc: &StatusDocument,
    app: Option<&str>,
    units: &[String],
) -> Result<Vec<String>, LogsError> {
    let apps = &doc.status.apps;
    let managed: Vec<String> = std::iter::once(LEGERD_UNIT.to_owned())
        .chain(
            apps.iter()
                .flat_map(|a| a.units.iter().map(|u| u.name.clone())),
        )
        .collect();
    // `legerctl logs web.service` (or `web-db`): a managed unit, named like an app.
    if let Some(name) = app
        && units.is_empty()
        && !apps.iter().any(|a| a.name == name)
        && let Some(unit) = managed
            .iter()
            .find(|u| *u == name || **u == format!("{name}.service"))
    {
        return Ok(vec![unit.clone()]);
    }
    let (scope, candidates): (String, Vec<String>) = match app {
        Some(name) => {
            let a = apps
                .iter()
                .find(|a| a.name == name)
                .ok_or_else(|| LogsError::UnknownApp {
                    app: name.to_owned(),
                    known: list(&apps.iter().map(|a| a.name.clone()).collect::<Vec<_>>()),
                    units: list(&managed),
                })?;
            (
                format!("a unit of app {name}"),
                a.units.iter().map(|u| u.name.clone()).collect(),
            )
        }
        None => ("a unit legerd manages".to_owned(), managed),
    };
    if units.is_empty() {
        return Ok(candidates);
    }
    for unit in units {
        if !candidates.contains(unit) {
            return Err(LogsError::UnknownUnit {
                unit: unit.clone(),
                scope,
                known: list(&candidates),
            });
        }
    }
    Ok(units.to_vec())
}

/// Groups whose members may read the whole system journal (journalctl(1)).
const JOURNAL_GROUPS: [&str; 3] = ["systemd-journal", "adm", "wheel"];

/// A hint for a non-root caller in none of the journal's reader groups: journalctl then
/// shows only the caller's own entries, which looks like "no logs". `group_file` is
/// `/etc/group`'s text and `groups` the caller's group ids.
pub fn journal_group_hint(euid: u32, groups: &[u32], group_file: &str) -> Option<String> {
    if euid == 0 {
        return None;
    }
    let readers: Vec<u32> = group_file
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse().ok()?;
            JOURNAL_GROUPS.contains(&name).then_some(gid)
        })
        .collect();
    if groups.iter().any(|g| readers.contains(g)) {
        return None;
    }
    Some(
        "you are not root and not in group systemd-journal (or adm): journalctl shows only          your own entries, not the units' logs. Run it with sudo, or join the group:          sudo usermod -aG systemd-journal $USER (then log in again)"
            .to_owned(),
    )
}

/// How to show the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogsOptions {
    /// Keep printing new entries (`journalctl -f`).
    pub follow: bool,
    /// Show only the last N entries (`journalctl -n N`).
    pub lines: Option<u32>,
}

/// journalctl's arguments for `units` in `mode`. User mode reads the user journal,
/// where rootless quadlets and `legerd --user` log.
pub fn journalctl_args(units: &[String], mode: Mode, options: LogsOptions) -> Vec<String> {
    let mut args = Vec::new();
    if mode == Mode::User {
        args.push("--user".to_owned());
    }
    for unit in units {
        args.push("-u".to_owned());
        args.push(unit.clone());
    }
    if let Some(n) = options.lines {
        args.push("-n".to_owned());
        args.push(n.to_string());
    }
    if options.follow {
        args.push("-f".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use leger_api_types::{AgentStatus, AppStatus, StatusSpec, UnitStatus};

    fn doc() -> StatusDocument {
        let app = |name: &str, units: &[&str]| AppStatus {
            name: name.to_owned(),
            layer: None,
            units: units
                .iter()
                .map(|u| UnitStatus {
                    name: (*u).to_owned(),
                    active_state: "active".to_owned(),
                    sub_state: "running".to_owned(),
                })
                .collect(),
        };
        StatusDocument::new(
            StatusSpec::default(),
            AgentStatus {
                apps: vec![
                    app("web", &["web.service", "web-db.service"]),
                    app("cache", &["cache.service"]),
                ],
                ..AgentStatus::default()
            },
        )
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn select_units_of_an_app() {
        assert_eq!(
            select_units(&doc(), Some("web"), &[]).unwrap(),
            strings(&["web.service", "web-db.service"])
        );
    }

    #[test]
    fn select_units_without_app_is_legerd_and_every_managed_unit() {
        assert_eq!(
            select_units(&doc(), None, &[]).unwrap(),
            strings(&[
                "legerd.service",
                "web.service",
                "web-db.service",
                "cache.service"
            ])
        );
    }

    #[test]
    fn select_units_with_u_narrows_and_checks_membership() {
        assert_eq!(
            select_units(&doc(), Some("web"), &strings(&["web-db.service"])).unwrap(),
            strings(&["web-db.service"])
        );
        let e = select_units(&doc(), Some("web"), &strings(&["cache.service"])).unwrap_err();
        assert!(
            matches!(&e, LogsError::UnknownUnit { unit, .. } if unit == "cache.service"),
            "{e}"
        );
        assert!(e.to_string().contains("app web"), "{e}");
        assert_eq!(
            select_units(&doc(), None, &strings(&["cache.service"])).unwrap(),
            strings(&["cache.service"])
        );
    }

    #[test]
    fn select_units_unknown_app_lists_the_apps_and_units() {
        let e = select_units(&doc(), Some("wbe"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"wbe\"") && e.contains("web, cache"), "{e}");
        assert!(e.contains("web-db.service"), "{e}");
    }

    #[test]
    fn select_units_takes_a_managed_unit_in_place_of_an_app() {
        assert_eq!(
            select_units(&doc(), Some("web-db.service"), &[]).unwrap(),
            strings(&["web-db.service"])
        );
        assert_eq!(
            select_units(&doc(), Some("web-db"), &[]).unwrap(),
            strings(&["web-db.service"])
        );
        // An app wins over a unit of the same stem.
        assert_eq!(
            select_units(&doc(), Some("web"), &[]).unwrap(),
            strings(&["web.service", "web-db.service"])
        );
        assert_eq!(
            select_units(&doc(), Some("legerd"), &[]).unwrap(),
            strings(&["legerd.service"])
        );
    }

    #[test]
    fn journal_group_hint_only_for_non_root_outside_the_groups() {
        let group = "root:x:0:\nadm:x:4:\nsystemd-journal:x:999:\nalice:x:1000:\n";
        assert_eq!(journal_group_hint(0, &[0], group), None);
        assert_eq!(journal_group_hint(1000, &[1000, 999], group), None);
        assert_eq!(journal_group_hint(1000, &[1000, 4], group), None);
        let hint = journal_group_hint(1000, &[1000], group).unwrap();
        assert!(hint.contains("usermod -aG systemd-journal"), "{hint}");
    }

    #[test]
    fn journalctl_args_follow_mode_and_options() {
        assert_eq!(
            journalctl_args(
                &strings(&["a.service", "b.service"]),
                Mode::System,
                LogsOptions {
                    follow: true,
                    lines: Some(50)
                }
            ),
            strings(&["-u", "a.service", "-u", "b.service", "-n", "50", "-f"])
        );
        assert_eq!(
            journalctl_args(&strings(&["a.service"]), Mode::User, LogsOptions::default()),
            strings(&["--user", "-u", "a.service"])
        );
    }
}

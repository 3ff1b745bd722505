//! Human output for `legerctl status` and `legerctl history`.
//!
//! Pure functions of the documents legerd serves, so they are tested with fixtures and
//! never need a running legerd. Scripts should use `--json`, which is stable; this text
//! may change between releases.

use std::fmt::Write;
use std::time::Duration;

use leger_api_types::{
    FileDiff, PassRecord, RevisionInfo, StagedAction, StagedChange, StatusDocument,
};

/// How many characters of a revision `history` shows; enough to be unique in practice.
pub const SHORT_REVISION: usize = leger_api_types::revision::SHORT_LEN;

/// The host's fleet lines: name, groups, and the restart-slot lock.
fn render_fleet(out: &mut String, f: &leger_api_types::fleet::FleetStatus) {
    use leger_api_types::fleet::LockState;
    let groups = if f.groups.is_empty() {
        "none".to_owned()
    } else {
        f.groups.join(", ")
    };
    let _ = writeln!(out, "Host:       {} (groups: {groups})", f.host);
    let Some(l) = &f.lock else {
        // Say it: a missing line reads like a missing feature, not "restarts need no slot".
        let _ = writeln!(
            out,
            "Fleet lock: none ([fleet.lock] is not set; restarts need no slot)"
        );
        return;
    };
    let state = match l.state {
        LockState::Free => "free".to_owned(),
        LockState::Waiting => "waiting for a restart slot".to_owned(),
        LockState::Held => match l.held_reason.as_deref() {
            Some("rolled_back") => format!(
                "HELD since {} after a rollback, so the rollout stops here (released after the next good apply; `legerctl fleet release` to free it now)",
                l.held_since.as_deref().unwrap_or("-")
            ),
            _ => format!("held since {}", l.held_since.as_deref().unwrap_or("-")),
        },
    };
    let _ = writeln!(
        out,
        "Fleet lock: {state}; group {} at {}",
        l.group, l.service
    );
    if let Some(answer) = &l.last_answer {
        let _ = writeln!(out, "            last answer: {answer}");
    }
}

/// Whether to colour output: only on a terminal, and never with `NO_COLOR` set to
/// anything but the empty string (no-color.org).
pub fn use_color(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Renders the status document for people, each condition message and the last error
/// on one line (see [`render_status_details`]).
pub fn render_status(doc: &StatusDocument) -> String {
    render_status_details(doc, false)
}

/// Renders the status document for people; `details` keeps the full text of condition
/// messages and the last pass's error (`legerctl status --details`).
pub fn render_status_details(doc: &StatusDocument, details: bool) -> String {
    let text = |s: &str| {
        if details {
            s.to_owned()
        } else {
            summary_line(s)
        }
    };
    let mut out = String::new();
    let spec = &doc.spec;
    let st = &doc.status;
    let source = match (&spec.source_kind, &spec.source) {
        (Some(kind), Some(src)) => format!("{kind} {src}"),
        (None, Some(src)) => src.clone(),
        _ => "none (no valid desired.toml loaded yet)".to_owned(),
    };
    let _ = writeln!(out, "Source:     {source}");
    if let Some(r) = &spec.reference {
        let _ = writeln!(out, "Ref:        {r}");
    }
    if let Some(p) = &spec.path {
        let _ = writeln!(out, "Path:       {p}");
    }
    if spec.suspended {
        let _ = writeln!(
            out,
            "Suspended:  yes (legerd fetches and reports, changes nothing; `legerctl resume` to undo)"
        );
    }
    let _ = writeln!(out, "Fetched:    {}", opt(&st.fetched_revision));
    let _ = writeln!(out, "Applied:    {}", opt(&st.applied_revision));
    if let Some(pin) = &st.pinned_revision {
        let _ = writeln!(
            out,
            "Pinned:     {pin} (legerctl unpin to follow the source)"
        );
    }
    if let Some(staged) = &st.staged_revision {
        let _ = writeln!(
            out,
            "Staged:     {staged} (review: legerctl diff; apply: legerctl approve)"
        );
    }
    if !st.mode.is_empty() || !st.agent_version.is_empty() {
        let _ = writeln!(
            out,
            "Agent:      legerd {} ({} mode)",
            st.agent_version, st.mode
        );
    }
    if let Some(p) = &st.podman {
        match (&p.version, &p.fallback) {
            (Some(v), _) => {
                let _ = writeln!(out, "Podman:     {v} (quadlet keys of {})", p.key_tables);
            }
            (None, Some(why)) => {
                let _ = writeln!(out, "Podman:     unknown: {why}");
            }
            (None, None) => {}
        }
    }
    if let Some(f) = &st.fleet {
        render_fleet(&mut out, f);
    }
    if let Some(e) = &st.desired_state_error {
        let _ = writeln!(
            out,
            "Desired state error: {e}\n  (the last good desired state stays in force)"
        );
    }
    for d in &st.unhealable_drift {
        let _ = writeln!(out, "Not applied: {d}");
    }

    let _ = writeln!(out, "\nConditions:");
    if st.conditions.is_empty() {
        let _ = writeln!(out, "  (none reported yet)");
    }
    let type_w = st
        .conditions
        .iter()
        .map(|c| c.type_.len())
        .max()
        .unwrap_or(0);
    let reason_w = st
        .conditions
        .iter()
        .map(|c| c.reason.len())
        .max()
        .unwrap_or(0);
    for c in &st.conditions {
        let _ = writeln!(
            out,
            "  {:type_w$}  {:7}  {:reason_w$}  {}",
            c.type_,
            format!("{:?}", c.status),
            c.reason,
            text(&c.message)
        );
    }

    let _ = writeln!(out, "\nApps:");
    if st.apps.is_empty() {
        let _ = writeln!(out, "  (none installed)");
    }
    let unit_w = st
        .apps
        .iter()
        .flat_map(|a| a.units.iter().map(|u| u.name.len()))
        .max()
        .unwrap_or(0);
    for app in &st.apps {
        match &app.layer {
            Some(layer) => {
                let _ = writeln!(out, "  {}  (layer {layer})", app.name);
            }
            None => {
                let _ = writeln!(out, "  {}", app.name);
            }
        }
        if app.units.is_empty() {
            let _ = writeln!(out, "    (no units)");
        }
        for u in &app.units {
            let _ = writeln!(
                out,
                "    {:unit_w$}  {} ({})",
                u.name, u.active_state, u.sub_state
            );
        }
    }

    let _ = writeln!(out, "\nLast pass:");
    match &st.last_pass {
        None => {
            let _ = writeln!(out, "  none yet");
        }
        Some(p) => {
            let _ = writeln!(
                out,
                "  #{} {} at {}, took {} (trigger: {}, revision: {})",
                p.id,
                p.outcome.as_str(),
                p.started_at,
                duration(p.duration_ms),
                p.trigger,
                p.revision.as_deref().map(short).unwrap_or("-".into())
            );
            if let Some(e) = &p.error {
                let e = if details { e.clone() } else { summary_line(e) };
                let _ = writeln!(out, "  error: {e}");
            }
        }
    }
    if !details
        && (st.conditions.iter().any(|c| c.message.contains('\n'))
            || st
                .last_pass
                .as_ref()
                .and_then(|p| p.error.as_ref())
                .is_some_and(|e| e.contains('\n')))
    {
        let _ = writeln!(
            out,
            "\n(shortened: `legerctl status --details` shows the whole messages)"
        );
    }
    out
}

/// Renders passes (newest first, as the API returns them) as a table.
pub fn render_history(passes: &[PassRecord]) -> String {
    if passes.is_empty() {
        return "no passes recorded yet\n".to_owned();
    }
    let header = [
        "ID", "STARTED", "DURATION", "TRIGGER", "REVISION", "OUTCOME", "ERROR",
    ];
    let rows: Vec<[String; 7]> = passes
        .iter()
        .map(|p| {
            [
                p.id.to_string(),
                p.started_at.clone(),
                duration(p.duration_ms),
                p.trigger.clone(),
                p.revision
                    .as_deref()
                    .map(|r| short(r).into_owned())
                    .unwrap_or_else(|| "-".to_owned()),
                if p.runs > 1 {
                    format!("{} ×{}", p.outcome.as_str(), p.runs)
                } else {
                    p.outcome.as_str().to_owned()
                },
                p.error.as_deref().map(summary_line).unwrap_or_default(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{:w$}  ", cell, w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// The line under the history table: the passes counted rather than listed.
pub fn history_summary_line(s: &leger_api_types::HistorySummary) -> Option<String> {
    if s.idle_polls == 0 && s.quiet_drift_checks == 0 {
        return None;
    }
    let since = s
        .since
        .as_deref()
        .map(|t| format!(" since {t}"))
        .unwrap_or_default();
    Some(format!(
        "(not listed: {} idle polls and {} drift checks that found nothing to do{since})",
        s.idle_polls, s.quiet_drift_checks
    ))
}

/// `legerctl history show ID`: one pass whole, its error unshortened.
pub fn render_pass(p: &PassRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Pass:      #{}", p.id);
    let _ = writeln!(out, "Outcome:   {}", p.outcome.as_str());
    let _ = writeln!(out, "Started:   {}", p.started_at);
    let _ = writeln!(
        out,
        "Finished:  {} (took {})",
        p.finished_at,
        duration(p.duration_ms)
    );
    if p.runs > 1 {
        let _ = writeln!(
            out,
            "Repeated:  {} passes alike, the first at {}",
            p.runs,
            opt(&p.first_started_at)
        );
    }
    let _ = writeln!(out, "Trigger:   {}", p.trigger);
    let _ = writeln!(out, "Revision:  {}", opt(&p.revision));
    if !p.actions.is_empty() {
        let _ = writeln!(out, "Actions:");
        for a in &p.actions {
            let _ = writeln!(out, "  {a}");
        }
    }
    if let Some(e) = &p.error {
        let _ = writeln!(out, "Error:");
        for line in e.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

/// Shortens a revision the way legerd does (one formatter: `leger_api_types::revision`).
pub fn short(rev: &str) -> std::borrow::Cow<'_, str> {
    leger_api_types::revision::short(rev)
}

fn duration(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// A long message (podman's output, journal lines) as one line, shortened as legerd
/// shortens its condition messages. `legerctl status --details` and `legerctl history
/// show ID` keep the whole text.
pub fn summary_line(text: &str) -> String {
    leger_api_types::summary::one_line(text)
}

/// The `legerctl secrets list` table: names, versions, sources, consumers; no values.
pub fn render_secrets(list: &[leger_api_types::SecretInfo]) -> String {
    if list.is_empty() {
        return "no secrets\n".to_owned();
    }
    let mut out = format!(
        "{:<24} {:<8} {:<10} {:<14} {}\n",
        "NAME", "LOCAL", "SOURCE", "VERSION", "UNITS"
    );
    for s in list {
        let dash = || "-".to_owned();
        out.push_str(&format!(
            "{:<24} {:<8} {:<10} {:<14} {}\n",
            s.name,
            s.local_version.map_or_else(dash, |v| v.to_string()),
            s.source.clone().unwrap_or_else(dash),
            s.version.clone().unwrap_or_else(dash),
            if s.consumers.is_empty() {
                dash()
            } else {
                s.consumers.join(", ")
            }
        ));
    }
    out
}

/// True when the staged change (for `app`, or all apps) would change anything.
pub fn staged_has_changes(staged: &StagedChange, app: Option<&str>) -> bool {
    let keep = |a: &str| app.is_none_or(|x| x == a);
    staged.actions.iter().any(|a| keep(&a.app)) || staged.files.iter().any(|f| keep(&f.app))
}

/// `legerctl diff APP` for an app that is neither installed (`installed`, from status)
/// nor touched by the staged change: the error to show, listing the apps there are, so
/// a typo is not mistaken for "no changes".
pub fn unknown_diff_app(
    app: &str,
    installed: &[String],
    staged: Option<&StagedChange>,
) -> Option<String> {
    let mut known: Vec<&str> = installed.iter().map(String::as_str).collect();
    if let Some(s) = staged {
        known.extend(s.actions.iter().map(|a| a.app.as_str()));
        known.extend(s.files.iter().map(|f| f.app.as_str()));
    }
    known.sort_unstable();
    known.dedup();
    if known.contains(&app) {
        return None;
    }
    let list = if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    };
    Some(format!(
        "no app named {app:?}: it is neither installed nor in the staged revision; apps: {list}"
    ))
}

/// `legerctl diff`: the unit actions, then a unified diff of every file.
pub fn render_staged(staged: &StagedChange, app: Option<&str>, color: bool) -> String {
    let keep = |a: &str| app.is_none_or(|x| x == a);
    let mut out = format!(
        "staged revision {} (applied: {})\n",
        staged.revision,
        staged.applied_revision.as_deref().unwrap_or("none")
    );
    let actions: Vec<_> = staged.actions.iter().filter(|a| keep(&a.app)).collect();
    let files: Vec<_> = staged.files.iter().filter(|f| keep(&f.app)).collect();
    if actions.is_empty() && files.is_empty() {
        out.push_str("no changes\n");
        return out;
    }
    out.push_str(&render_unit_actions(&actions));
    out.push_str(&render_file_diffs(&files, color));
    out
}

/// The "Unit actions:" block of `diff` and `plan`; empty when there are none.
pub fn render_unit_actions(actions: &[&StagedAction]) -> String {
    let mut out = String::new();
    if !actions.is_empty() {
        out.push_str("\nUnit actions:\n");
        for a in actions {
            out.push_str(&format!("  {:<8} {} (app {})\n", a.action, a.unit, a.app));
        }
    }
    out
}

/// Each changed file with its unified diff, coloured when `color`.
pub fn render_file_diffs(files: &[&FileDiff], color: bool) -> String {
    let paint = |code: &str, line: &str| {
        if color {
            format!("\x1b[{code}m{line}\x1b[0m")
        } else {
            line.to_owned()
        }
    };
    let mut out = String::new();
    for f in files {
        out.push('\n');
        out.push_str(&paint("1", &format!("{} {}", f.change, f.path)));
        out.push('\n');
        if f.diff.is_empty() {
            out.push_str("(binary or non-UTF-8 content)\n");
        }
        for line in f.diff.lines() {
            let painted = if line.starts_with("+++") || line.starts_with("---") {
                paint("1", line)
            } else if line.starts_with('+') {
                paint("32", line)
            } else if line.starts_with('-') {
                paint("31", line)
            } else if line.starts_with("@@") {
                paint("36", line)
            } else {
                line.to_owned()
            };
            out.push_str(&painted);
            out.push('\n');
        }
    }
    out
}

/// `legerctl revisions`: a table.
pub fn render_revisions(list: &[RevisionInfo]) -> String {
    let mut out = format!(
        "{:<42} {:<9} {:<21} {:<7} {}\n",
        "REVISION", "STATE", "UPDATED", "STORED", "ERROR"
    );
    for r in list {
        let error = r
            .error
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        out.push_str(&format!(
            "{:<42} {:<9} {:<21} {:<7} {}\n",
            r.revision,
            r.state,
            r.updated_at,
            if r.stored { "yes" } else { "no" },
            error
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leger_api_types::{
        AgentStatus, AppStatus, Condition, ConditionStatus, PassOutcome, StatusSpec, UnitStatus,
    };

    fn pass(id: i64, outcome: PassOutcome, error: Option<&str>) -> PassRecord {
        PassRecord {
            id,
            started_at: "2025-03-04T05:06:07Z".into(),
            finished_at: "2025-03-04T05:06:08Z".into(),
            duration_ms: 1500,
            trigger: "poll".into(),
            revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
            outcome,
            actions: vec![],
            error: error.map(str::to_owned),
            runs: 1,
            first_started_at: None,
        }
    }

    fn fixture() -> StatusDocument {
        StatusDocument::new(
            StatusSpec {
                source_kind: Some("git".into()),
                source: Some("https://git.example.org/fleet.git".into()),
                reference: Some("main".into()),
                path: Some("apps".into()),
                suspended: true,
            },
            AgentStatus {
                agent_version: "0.1.0".into(),
                mode: "system".into(),
                fetched_revision: Some("fedcba9876543210fedcba9876543210fedcba98".into()),
                applied_revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
                conditions: vec![
                    Condition {
                        type_: "Ready".into(),
                        status: ConditionStatus::False,
                        reason: "UnitFailed".into(),
                        message: "web.service is failed".into(),
                        last_transition_time: "2025-03-04T05:06:08Z".into(),
                    },
                    Condition {
                        type_: "Stalled".into(),
                        status: ConditionStatus::Unknown,
                        reason: "Starting".into(),
                        message: "no pass yet".into(),
                        last_transition_time: "2025-03-04T05:06:08Z".into(),
                    },
                ],
                apps: vec![AppStatus {
                    name: "web".into(),
                    layer: None,
                    units: vec![
                        UnitStatus {
                            name: "web-net-network.service".into(),
                            active_state: "active".into(),
                            sub_state: "exited".into(),
                        },
                        UnitStatus {
                            name: "web.service".into(),
                            active_state: "failed".into(),
                            sub_state: "failed".into(),
                        },
                    ],
                }],
                last_pass: Some(pass(
                    42,
                    PassOutcome::Failed,
                    Some("start web.service:\n timeout"),
                )),
                desired_state_error: Some("invalid desired state: unknown field `purge`".into()),
                staged_revision: None,
                pinned_revision: None,
                podman: None,
                unhealable_drift: Vec::new(),
                fleet: None,
            },
        )
    }

    fn has_line(out: &str, parts: &[&str]) -> bool {
        out.lines().any(|l| parts.iter().all(|p| l.contains(p)))
    }

    #[test]
    fn render_status_shows_source_revisions_and_suspension() {
        let out = render_status(&fixture());
        assert!(
            has_line(&out, &["Source:", "git https://git.example.org/fleet.git"]),
            "{out}"
        );
        assert!(has_line(&out, &["Ref:", "main"]), "{out}");
        assert!(has_line(&out, &["Path:", "apps"]), "{out}");
        assert!(
            has_line(
                &out,
                &["Fetched:", "fedcba9876543210fedcba9876543210fedcba98"]
            ),
            "{out}"
        );
        assert!(
            has_line(
                &out,
                &["Applied:", "0123456789abcdef0123456789abcdef01234567"]
            ),
            "{out}"
        );
        assert!(has_line(&out, &["Suspended:", "legerctl resume"]), "{out}");
        assert!(has_line(&out, &["Desired state error:", "purge"]), "{out}");
    }

    #[test]
    fn render_status_shows_conditions_units_and_last_pass() {
        let out = render_status(&fixture());
        assert!(
            has_line(
                &out,
                &["Ready", "False", "UnitFailed", "web.service is failed"]
            ),
            "{out}"
        );
        assert!(
            has_line(&out, &["Stalled", "Unknown", "Starting", "no pass yet"]),
            "{out}"
        );
        assert!(has_line(&out, &["web.service", "failed (failed)"]), "{out}");
        assert!(
            has_line(&out, &["web-net-network.service", "active (exited)"]),
            "{out}"
        );
        assert!(
            has_line(
                &out,
                &[
                    "#42",
                    "failed",
                    "2025-03-04T05:06:07Z",
                    "1s 500ms",
                    "poll",
                    "0123456789ab"
                ]
            ),
            "{out}"
        );
        assert!(
            has_line(&out, &["error: start web.service: timeout"]),
            "{out}"
        );
    }

    #[test]
    fn render_status_shows_host_groups_lock_and_layers() {
        use leger_api_types::fleet::{FleetStatus, LockState, LockStatus};
        let mut doc = fixture();
        doc.status.apps[0].layer = Some("hosts/web-03/apps".into());
        doc.status.fleet = Some(FleetStatus {
            host: "web-03".into(),
            groups: vec!["eu".into(), "canary".into()],
            lock: Some(LockStatus {
                service: "FleetLock server http://192.0.2.1:8080".into(),
                group: "default".into(),
                state: LockState::Held,
                held_since: Some("2026-11-30T08:00:00Z".into()),
                held_reason: Some("rolled_back".into()),
                last_answer: None,
            }),
        });
        let out = render_status(&doc);
        for want in [
            "Host:       web-03 (groups: eu, canary)",
            "Fleet lock: HELD since 2026-11-30T08:00:00Z after a rollback",
            "legerctl fleet release",
            "group default at FleetLock server http://192.0.2.1:8080",
            "  web  (layer hosts/web-03/apps)",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
        // A waiting host shows the lock service's answer; a host without a lock says so.
        let f = doc.status.fleet.as_mut().unwrap();
        let lock = f.lock.as_mut().unwrap();
        lock.state = LockState::Waiting;
        lock.last_answer = Some("all 1 slots of group default are taken".into());
        let out = render_status(&doc);
        assert!(
            out.contains("Fleet lock: waiting for a restart slot; group default"),
            "{out}"
        );
        assert!(
            out.contains("last answer: all 1 slots of group default are taken"),
            "{out}"
        );
        doc.status.fleet.as_mut().unwrap().lock = None;
        let out = render_status(&doc);
        assert!(
            out.contains("Fleet lock: none ([fleet.lock] is not set"),
            "{out}"
        );
        // --json carries the same: host, groups, lock state, each app's layer.
        doc.status.fleet.as_mut().unwrap().lock = Some(LockStatus {
            service: "FleetLock server http://192.0.2.1:8080".into(),
            group: "default".into(),
            state: LockState::Waiting,
            held_since: None,
            held_reason: None,
            last_answer: Some("refused".into()),
        });
        let json: serde_json::Value = serde_json::to_value(&doc).unwrap();
        let fleet = &json["status"]["fleet"];
        assert_eq!(fleet["host"], "web-03");
        assert_eq!(fleet["groups"], serde_json::json!(["eu", "canary"]));
        assert_eq!(fleet["lock"]["state"], "waiting");
        assert_eq!(fleet["lock"]["lastAnswer"], "refused");
        assert_eq!(json["status"]["apps"][0]["layer"], "hosts/web-03/apps");
    }

    #[test]
    fn render_status_of_a_fresh_agent_says_what_is_missing() {
        let doc = StatusDocument::new(StatusSpec::default(), AgentStatus::default());
        let out = render_status(&doc);
        assert!(
            has_line(&out, &["Source:", "no valid desired.toml"]),
            "{out}"
        );
        assert!(has_line(&out, &["Applied:", "-"]), "{out}");
        assert!(has_line(&out, &["none installed"]), "{out}");
        assert!(has_line(&out, &["none yet"]), "{out}");
        assert!(!out.contains("Suspended"), "{out}");
    }

    #[test]
    fn render_history_is_a_table_with_short_revisions() {
        let out = render_history(&[
            pass(
                2,
                PassOutcome::Failed,
                Some("fetch failed:\nconnection refused"),
            ),
            pass(1, PassOutcome::Applied, None),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(has_line(
            &out,
            &[
                "ID", "STARTED", "DURATION", "TRIGGER", "REVISION", "OUTCOME", "ERROR"
            ]
        ));
        assert!(
            lines[1].starts_with("2 ") && lines[1].contains("fetch failed: connection refused"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("1 ") && lines[2].contains("applied"),
            "{out}"
        );
        assert!(
            lines[1].contains("0123456789ab ") && !lines[1].contains("0123456789abc"),
            "{out}"
        );
        // Columns line up: OUTCOME starts at the same offset in every row.
        let col = lines[0].find("OUTCOME").unwrap();
        assert_eq!(&lines[1][col..col + 6], "failed");
        assert_eq!(&lines[2][col..col + 7], "applied");
        assert_eq!(render_history(&[]), "no passes recorded yet\n");
    }

    #[test]
    fn history_keeps_errors_to_one_line_counts_runs_and_says_what_it_left_out() {
        let long = "revision 0123456789ab rolled back: web.service failed\nTrying to pull x...\nError: manifest unknown\nmore podman output";
        let mut repeated = pass(7, PassOutcome::Failed, Some(long));
        repeated.runs = 4;
        repeated.first_started_at = Some("2025-03-04T05:00:00Z".into());
        let table = render_history(std::slice::from_ref(&repeated));
        let row = table.lines().nth(1).unwrap();
        assert!(row.contains("failed ×4"), "{table}");
        assert!(
            !row.contains("more podman output"),
            "one line only: {table}"
        );
        assert_eq!(table.lines().count(), 2, "{table}");
        let whole = render_pass(&repeated);
        assert!(whole.contains("  more podman output"), "{whole}");
        assert!(whole.contains("Repeated:  4 passes alike, the first at 2025-03-04T05:00:00Z"));
        let summary = leger_api_types::HistorySummary {
            idle_polls: 412,
            quiet_drift_checks: 37,
            since: Some("2025-03-01T00:00:00Z".into()),
        };
        assert_eq!(
            history_summary_line(&summary).unwrap(),
            "(not listed: 412 idle polls and 37 drift checks that found nothing to do since 2025-03-01T00:00:00Z)"
        );
        assert_eq!(
            history_summary_line(&leger_api_types::HistorySummary::default()),
            None
        );
    }

    #[test]
    fn unknown_diff_app_knows_installed_and_staged_apps() {
        let staged = StagedChange {
            revision: "r2".into(),
            applied_revision: Some("r1".into()),
            actions: vec![leger_api_types::StagedAction {
                action: "start".into(),
                unit: "new.service".into(),
                app: "new".into(),
            }],
            files: vec![],
        };
        let installed = vec!["web".to_owned()];
        assert_eq!(unknown_diff_app("web", &installed, Some(&staged)), None);
        assert_eq!(unknown_diff_app("new", &installed, Some(&staged)), None);
        let e = unknown_diff_app("wbe", &installed, Some(&staged)).unwrap();
        assert!(e.contains("\"wbe\"") && e.contains("new, web"), "{e}");
        let e = unknown_diff_app("web", &[], None).unwrap();
        assert!(e.ends_with("apps: none"), "{e}");
    }

    #[test]
    fn render_status_keeps_condition_messages_to_one_line_unless_details() {
        let mut doc = fixture();
        let long = format!(
            "web.service failed the health gate\n{}",
            "Trying to pull localhost/x... Error: a long podman pull log line\n".repeat(40)
        );
        doc.status.conditions[0].message = long.clone();
        let short = render_status(&doc);
        let line = short
            .lines()
            .find(|l| l.contains("failed the health gate"))
            .unwrap();
        assert!(line.chars().count() < 260, "{line}");
        assert_eq!(short.matches("Trying to pull").count(), 1, "{short}");
        assert!(short.contains("legerctl status --details"), "{short}");
        let full = render_status_details(&doc, true);
        assert_eq!(full.matches("Trying to pull").count(), 40);
        assert!(!full.contains("shortened"), "{full}");
    }

    #[test]
    fn summary_line_keeps_the_summary_and_one_detail() {
        assert_eq!(summary_line("one"), "one");
        assert_eq!(
            summary_line("1 problem to fix\n  bad.container:3 NotAKey\nmore"),
            "1 problem to fix: bad.container:3 NotAKey (+1 more line)"
        );
        assert!(summary_line(&format!("s; last log lines:\n{}", "x".repeat(300))).ends_with('…'));
    }

    #[test]
    fn use_color_needs_a_terminal_and_no_no_color() {
        use std::ffi::OsStr;
        assert!(use_color(true, None));
        assert!(use_color(true, Some(OsStr::new(""))));
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(!use_color(false, None));
    }
}

//! legerctl: edits desired state and reads legerd's status. Never touches units.

mod client;
mod desired_file;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use leger_api_types::{
    BackupInfo, DesiredState, DirSourceSpec, IdentityResponse, ManifestSourceSpec, PassRecord,
    ReconcileResponse, RestoreRequest, RestoreResponse, RevisionInfo, SecretInfo,
    SecretSetResponse, SourceSpec, StagedChange, StatusDocument,
};
use leger_config::{Environment, Mode, Settings, default_dropin_dirs};
use legerctl::output::print_read;
use legerctl::{backups, edit, logs, publish, render};

use crate::client::Client;
use legerctl::cli::{Cli, Command, SecretsCommand, SetDesired, SetPolicy, SourceCommand};

fn secrets(loc: &mut Locations, cmd: SecretsCommand) -> Result<()> {
    let client = loc.client()?;
    match cmd {
        SecretsCommand::Set { name, .. } => {
            // Room for the largest value legerd takes, reserved up front: a growing Vec
            // would leave copies of the value in freed memory that nothing zeroes.
            let limit = legerd::api::MAX_BODY_BYTES;
            let mut value = zeroize::Zeroizing::new(Vec::with_capacity(limit + 1));
            std::io::stdin()
                .take(limit as u64 + 1)
                .read_to_end(&mut value)
                .context("cannot read the secret value from stdin")?;
            if value.len() > limit {
                bail!(
                    "the value on stdin is larger than {limit} bytes, the most legerd takes (podman's own limit for a secret)"
                );
            }
            if value.is_empty() {
                bail!(
                    "no value on stdin: pipe it in, e.g. `printf %s \"$VALUE\" | legerctl secrets set {name}`"
                );
            }
            let body = block_on(client.put(&format!("/v1/secrets/{name}"), value.to_vec()))?;
            let r: SecretSetResponse = serde_json::from_str(&body)
                .context("cannot read legerd's answer to secrets set")?;
            println!(
                "secret {} set (version {}); a reconcile pass is queued",
                r.name, r.version
            );
        }
        SecretsCommand::List { out } => {
            let body = block_on(client.get("/v1/secrets"))?;
            print!(
                "{}",
                print_read(&out, "SecretList", &body, |b| {
                    let list: Vec<SecretInfo> =
                        serde_json::from_str(b).context("cannot read legerd's secret list")?;
                    Ok(render::render_secrets(&list))
                })?
            );
        }
        SecretsCommand::Rm { name } => {
            block_on(client.delete(&format!("/v1/secrets/{name}")))?;
            println!("secret {name} removed from the local store; a reconcile pass is queued");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Paths from the command line, falling back to legerd's configuration.
///
/// The configuration is read only when a path was not given, so `--socket` and
/// `--desired-file` work even where the config cannot be read; when it is read, a broken
/// drop-in is an error, since legerd would refuse it too.
struct Locations {
    mode: Mode,
    socket: Option<PathBuf>,
    desired_file: Option<PathBuf>,
    settings: Option<Settings>,
}

impl Locations {
    fn settings(&mut self) -> Result<&Settings> {
        if self.settings.is_none() {
            let env = Environment::from_process();
            let dirs = default_dropin_dirs(self.mode, &env);
            let s = leger_config::load(self.mode, &dirs, &env).with_context(|| {
                format!(
                    "cannot load legerd's configuration ({} mode); fix it, or pass --socket and --desired-file",
                    self.mode.as_str()
                )
            })?;
            self.settings = Some(s);
        }
        Ok(self.settings.as_ref().expect("just set"))
    }

    fn socket(&mut self) -> Result<PathBuf> {
        match &self.socket {
            Some(p) => Ok(p.clone()),
            None => Ok(self.settings()?.paths.socket.clone()),
        }
    }

    fn desired_file(&mut self) -> Result<PathBuf> {
        match &self.desired_file {
            Some(p) => Ok(p.clone()),
            None => Ok(self.settings()?.paths.desired_file.clone()),
        }
    }

    fn client(&mut self) -> Result<Client> {
        Client::new(self.socket()?, self.mode)
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut loc = Locations {
        mode: if cli.user { Mode::User } else { Mode::System },
        socket: cli.socket,
        desired_file: cli.desired_file,
        settings: None,
    };
    // --wait: legerd must be there to watch, before anything is changed.
    let wait = cli.command.wait();
    if wait.is_some() {
        fetch_status(&mut loc)
            .context("--wait follows legerd's passes, so legerd must be running")?;
    }
    match cli.command {
        Command::Status { out, details } => {
            let client = loc.client()?;
            let body = block_on(client.get("/v1/status"))?;
            print!(
                "{}",
                print_read(&out, "AgentStatus", &body, |b| {
                    let doc: StatusDocument = serde_json::from_str(b)
                        .context("legerd sent a status document this legerctl cannot read; use --output json or a matching legerctl")?;
                    Ok(render::render_status_details(&doc, details))
                })?
            );
        }
        Command::History {
            show: Some(legerctl::cli::HistoryCommand::Show { id, out }),
            ..
        } => {
            let body = block_on(loc.client()?.get(&format!("/v1/history/{id}")))?;
            print!(
                "{}",
                print_read(&out, "Pass", &body, |b| {
                    let pass: PassRecord = serde_json::from_str(b).context(
                        "legerd sent a pass this legerctl cannot read; use --output json",
                    )?;
                    Ok(render::render_pass(&pass))
                })?
            );
        }
        Command::History {
            limit,
            changes,
            failed,
            app,
            out,
            show: None,
        } => {
            let mut path = with_app("/v1/history", app.as_deref());
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&format!("limit={limit}"));
            if changes {
                path.push_str("&changes=true");
            }
            if failed {
                path.push_str("&failed=true");
            }
            let client = loc.client()?;
            let body = block_on(client.get(&path))?;
            // An older legerd has no summary: the rows alone are still right.
            let summary: Option<leger_api_types::HistorySummary> = if out.json {
                None
            } else {
                block_on(client.get("/v1/history/summary"))
                    .ok()
                    .and_then(|b| serde_json::from_str(&b).ok())
            };
            if out.human() {
                let passes: Vec<PassRecord> = serde_json::from_str(&body).context(
                    "legerd sent a history this legerctl cannot read; use --output json",
                )?;
                print!("{}", render::render_history(&passes));
                if let Some(line) = summary.as_ref().and_then(render::history_summary_line) {
                    println!("{line}");
                }
            } else if out.json {
                println!("{}", body.trim_end());
            } else {
                let items: serde_json::Value = serde_json::from_str(&body)
                    .context("legerd sent a history that is not JSON")?;
                let mut doc = legerctl::output::document("PassList", items);
                if let Some(s) = summary {
                    doc["notListed"] = serde_json::to_value(s).expect("plain data serializes");
                }
                print!("{}", legerctl::output::to_text(out.output, &doc)?);
            }
        }
        Command::Reconcile { .. } => {
            let client = loc.client()?;
            let body = block_on(client.post("/v1/reconcile"))?;
            let r: ReconcileResponse =
                serde_json::from_str(&body).context("cannot read legerd's answer to reconcile")?;
            if r.queued {
                println!(
                    "reconcile queued: legerd starts a pass now, or right after the one running; `legerctl status` shows how it went (or use --wait)"
                );
            } else {
                bail!("legerd did not queue a reconcile pass");
            }
        }
        Command::Fleet(legerctl::cli::FleetCommand::Release) => {
            println!("asking legerd to release this host's restart slot…");
            let client = loc.client()?;
            let body = block_on(client.post("/v1/fleet/release"))?;
            let r: leger_api_types::fleet::ReleaseResponse = serde_json::from_str(&body)
                .context("cannot read legerd's answer to fleet release")?;
            println!("{}", r.message);
        }
        Command::SetDesired(args) => set_desired(&loc.desired_file()?, args)?,
        Command::Identity { out } => {
            let body = block_on(loc.client()?.get("/v1/identity"))?;
            print!(
                "{}",
                print_read(&out, "Identity", &body, |b| {
                    let r: IdentityResponse = serde_json::from_str(b)
                        .context("cannot read legerd's answer to identity")?;
                    Ok(format!("{}\n", r.recipient))
                })?
            );
        }
        Command::Secrets(cmd) => secrets(&mut loc, cmd)?,
        Command::Backups { app, out } => {
            let body = block_on(loc.client()?.get(&with_app("/v1/backups", app.as_deref())))?;
            print!(
                "{}",
                print_read(&out, "BackupList", &body, |b| {
                    let list: Vec<BackupInfo> =
                        serde_json::from_str(b).context("cannot read legerd's backup list")?;
                    Ok(backups::render(&list))
                })?
            );
        }
        Command::Restore { app, backup, .. } => restore(&mut loc, &app, backup.as_deref())?,
        Command::GetDesired { out } => {
            let path = loc.desired_file()?;
            match read_optional(&path)? {
                Some(text) if out.human() => print!("{text}"),
                Some(text) => print!("{}", desired_document(&path, &text, &out)?),
                None => bail!(
                    "no desired state at {}; set one with `legerctl set-desired git URL` or `legerctl set-desired dir PATH`",
                    path.display()
                ),
            }
        }
        Command::Diff { app, out } => {
            let client = loc.client()?;
            let body = match block_on(client.get("/v1/staged")) {
                Ok(body) => Some(body),
                Err(e) if e.to_string().contains("nothing is staged") => None,
                Err(e) => return Err(e),
            };
            let staged: Option<StagedChange> = body
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .context("legerd sent a staged change this legerctl cannot read")?;
            if let Some(app) = app.as_deref() {
                let installed: Vec<String> = fetch_status(&mut loc)?
                    .status
                    .apps
                    .into_iter()
                    .map(|a| a.name)
                    .collect();
                if let Some(e) = render::unknown_diff_app(app, &installed, staged.as_ref()) {
                    bail!(e);
                }
            }
            let (Some(body), Some(staged)) = (body, staged) else {
                if out.human() || out.json {
                    println!("nothing is staged");
                } else {
                    // Still a document: no revision, nothing to do.
                    let empty = serde_json::json!({"revision": null, "actions": [], "files": []});
                    let doc = legerctl::output::document("StagedChange", empty);
                    print!("{}", legerctl::output::to_text(out.output, &doc)?);
                }
                return Ok(());
            };
            let changes = render::staged_has_changes(&staged, app.as_deref());
            print!(
                "{}",
                print_read(&out, "StagedChange", &body, |_| Ok(render::render_staged(
                    &staged,
                    app.as_deref(),
                    stdout_color()
                )))?
            );
            if changes {
                // diff(1)'s convention: 1 means "there are differences".
                std::process::exit(1);
            }
        }
        Command::Plan { app, out } => {
            let path = with_app("/v1/plan", app.as_deref());
            // legerd answers between passes and fetches the source first.
            let body = block_on(loc.client()?.get_within(&path, PLAN_TIMEOUT))?;
            print!(
                "{}",
                print_read(&out, "Plan", &body, |b| {
                    let doc: leger_api_types::PlanDocument = serde_json::from_str(b).context(
                        "legerd sent a plan this legerctl cannot read; use --output json",
                    )?;
                    Ok(legerctl::plan::render_plan(&doc, stdout_color()))
                })?
            );
        }
        Command::Approve {
            revision, force, ..
        } => {
            let revision = match revision {
                Some(r) => r,
                None => {
                    let status = fetch_status(&mut loc)?;
                    status.status.staged_revision.context(
                        "nothing is staged; name the revision to approve (see `legerctl revisions`)",
                    )?
                }
            };
            refuse_failed(&mut loc, &revision, force, "approve")?;
            let rev = revision.clone();
            edit_policy(&loc.desired_file()?, move |p| p.approved = Some(rev))?;
            println!(
                "approved {revision}: legerd applies it at its next pass, which its watch on desired.toml starts within a second; `legerctl status` shows how it went (or use --wait)"
            );
        }
        Command::Pin {
            revision, force, ..
        } => {
            refuse_failed(&mut loc, &revision, force, "pin")?;
            let rev = revision.clone();
            edit_policy(&loc.desired_file()?, move |p| p.pin = Some(rev))?;
            println!(
                "pinned at {revision}: legerd's next pass (within a second) puts the host there and holds it; `legerctl unpin` follows the source again"
            );
        }
        Command::Unpin => {
            edit_policy(&loc.desired_file()?, |p| p.pin = None)?;
            println!("unpinned: legerd follows the source again");
        }
        Command::Rollback { revision, .. } => {
            let revision = match revision {
                Some(r) => r,
                None => {
                    let status = fetch_status(&mut loc)?;
                    let client = loc.client()?;
                    let current = status
                        .status
                        .applied_revision
                        .context("nothing is applied yet; there is nothing to roll back")?;
                    let revisions: Vec<RevisionInfo> =
                        serde_json::from_str(&block_on(client.get("/v1/revisions?limit=1000"))?)
                            .context("cannot read legerd's revisions")?;
                    revisions
                        .into_iter()
                        .find(|r| r.state == "applied" && r.revision != current && r.stored)
                        .map(|r| r.revision)
                        .context("no earlier applied revision is in legerd's revision store; name one (see `legerctl revisions`)")?
                }
            };
            let rev = revision.clone();
            edit_policy(&loc.desired_file()?, move |p| p.pin = Some(rev))?;
            println!(
                "rolling back to {revision} (pinned): legerd's next pass (within a second) re-applies it from its revision store; `legerctl unpin` follows the source again"
            );
        }
        Command::Revisions { limit, out } => {
            let body = block_on(loc.client()?.get(&format!("/v1/revisions?limit={limit}")))?;
            print!(
                "{}",
                print_read(&out, "RevisionList", &body, |b| {
                    let list: Vec<RevisionInfo> =
                        serde_json::from_str(b).context("cannot read legerd's revision list")?;
                    Ok(render::render_revisions(&list))
                })?
            );
        }
        Command::SetPolicy(args) => set_policy(&loc.desired_file()?, args)?,
        Command::Suspend => set_suspend(&loc.desired_file()?, true)?,
        Command::Resume => set_suspend(&loc.desired_file()?, false)?,
        Command::Logs {
            app,
            units,
            follow,
            lines,
        } => show_logs(
            &mut loc,
            app.as_deref(),
            &units,
            logs::LogsOptions { follow, lines },
        )?,
        Command::Publish {
            apps_dir,
            out_dir,
            sign,
            overlays,
            host,
            groups,
        } => {
            let check = publish::OverlayCheck {
                overlays,
                host,
                groups,
            };
            run_publish(&mut loc, &apps_dir, &out_dir, sign.as_deref(), &check)?
        }
        Command::Validate {
            dir,
            root,
            path,
            overlays,
            host,
            groups,
            podman,
            out,
        } => {
            let check = publish::OverlayCheck {
                overlays,
                host,
                groups,
            };
            let (dir, base) = match &root {
                Some(r) => (r.as_path(), path.as_deref()),
                None => (dir.as_path(), None),
            };
            run_validate(&mut loc, dir, root.is_some(), base, &check, podman, &out)?
        }
        Command::Keygen { out } => {
            let k = publish::keygen(&out)?;
            println!(
                "secret key: {} (keep it secret; mode 0600)",
                k.secret.display()
            );
            println!("public key: {}", k.public.display());
            println!(
                "\nOn each host:\n  legerctl set-desired manifest URL --public-key {}",
                k.public_base64
            );
        }
    }
    if let Some(timeout) = wait {
        // Status times have whole seconds: start counting at the next second, so a pass
        // that began before the edit (in the edit's own second) is never taken for the
        // pass that applies it. Then ask for a pass, whatever legerd's watches noticed.
        let boundary = legerctl::wait::next_second(std::time::SystemTime::now());
        if let Ok(gap) = boundary.duration_since(std::time::SystemTime::now()) {
            std::thread::sleep(gap);
        }
        block_on(loc.client()?.post("/v1/reconcile"))?;
        let verdict = wait_for_pass(&mut loc, boundary, timeout)?;
        std::process::exit(verdict.into());
    }
    Ok(())
}

/// Follows legerd's status until a pass that started at or after `since` (a whole
/// second) finished.
/// Progress goes to stderr: on a terminal one line rewritten in place with a spinner,
/// the elapsed time and the stage (fetching, validating, backing up, applying, health
/// gate); otherwise a plain line each time the stage or what it waits on changes.
fn wait_for_pass(
    loc: &mut Locations,
    since: std::time::SystemTime,
    timeout: std::time::Duration,
) -> Result<u8> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    // No terminal-size crate for one line: $COLUMNS when the shell exports it.
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100usize);
    let started = std::time::Instant::now();
    let deadline = started + timeout;
    let mut last = String::new();
    let mut frame = 0usize;
    loop {
        let doc = fetch_status(loc)?;
        if let Some(v) = legerctl::wait::judge(&doc, since) {
            if tty && !last.is_empty() {
                eprint!("\r\x1b[2K");
            }
            if v.code == 0 {
                println!("{}", v.message);
            } else {
                eprintln!("legerctl: {}", v.message);
            }
            return Ok(v.code);
        }
        let now =
            legerctl::wait::progress(&doc).unwrap_or_else(|| "waiting for legerd's pass".into());
        if tty {
            let line = legerctl::wait::progress_line(&now, started.elapsed(), Some(frame), width);
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
            frame += 1;
            last = now;
        } else if now != last {
            eprintln!(
                "{}",
                legerctl::wait::progress_line(&now, started.elapsed(), None, width)
            );
            last = now;
        }
        if std::time::Instant::now() >= deadline {
            if tty {
                eprintln!();
            }
            eprintln!(
                "legerctl: timed out after {}: the pass has not finished; `legerctl status` shows where it is",
                humantime::format_duration(timeout)
            );
            return Ok(legerctl::wait::EXIT_TIMEOUT);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Colours on stdout: a terminal, and no `NO_COLOR`.
fn stdout_color() -> bool {
    use std::io::IsTerminal;
    render::use_color(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// `path` with `?app=APP` (percent-encoded) when an app is given.
fn with_app(path: &str, app: Option<&str>) -> String {
    match app {
        Some(a) => {
            let encoded: String = a
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{path}?app={encoded}")
        }
        None => path.to_owned(),
    }
}

/// How long `legerctl plan` waits: legerd answers between passes, after fetching.
const PLAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// How long `legerctl restore` waits: legerd finishes its current pass first, and
/// importing a large volume takes a while.
const RESTORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Pins the backup's revision first, then asks for the restore by its id: pinning
/// afterwards would leave a window in which a pass re-applies the newer revision, and
/// naming the backup keeps a backup taken in between from being picked instead.
fn restore(loc: &mut Locations, app: &str, id: Option<&str>) -> Result<()> {
    let client = loc.client()?;
    let body = block_on(client.get(&with_app("/v1/backups", Some(app))))?;
    let list: Vec<BackupInfo> =
        serde_json::from_str(&body).context("cannot read legerd's backup list")?;
    let chosen = backups::choose(&list, app, id).map_err(anyhow::Error::msg)?;
    // Checked before the pin: pinning to a revision legerd no longer stores would
    // leave the host unable to converge at all.
    let body = block_on(client.get(&format!("/v1/revisions?limit={}", 1000)))?;
    let revisions: Vec<leger_api_types::RevisionInfo> =
        serde_json::from_str(&body).context("cannot read legerd's revision list")?;
    if !revisions
        .iter()
        .any(|r| r.revision == chosen.revision && r.stored)
    {
        bail!(
            "backup {} is of revision {}, which is no longer in legerd's revision store; nothing was pinned or restored. See `legerctl revisions` for the revisions kept, and pick a newer backup from `legerctl backups {app}`",
            chosen.id,
            chosen.revision
        );
    }
    let path = loc.desired_file()?;
    match read_optional(&path)? {
        Some(current) => {
            let revision = chosen.revision.clone();
            let (_, text) = edit::edit_policy(&current, move |p| p.pin = Some(revision)).with_context(|| {
                format!(
                    "cannot pin {} to the backup's revision; it is unchanged and nothing was restored",
                    path.display()
                )
            })?;
            if text != current {
                write_desired(&path, &text)?;
            }
            // policy.pin is host-wide: a per-app pin would need the pass to converge
            // apps from different revisions, which it does not do.
            println!(
                "pinned the whole host, not only {app}, to revision {} (policy.pin in {}); every app stays at that revision until `legerctl unpin`",
                chosen.revision,
                path.display()
            );
        }
        None => eprintln!(
            "legerctl: no desired state at {}; restoring without a pin",
            path.display()
        ),
    }
    let request = serde_json::to_string(&RestoreRequest {
        app: app.to_owned(),
        backup: Some(chosen.id.clone()),
    })
    .expect("a restore request serializes");
    let body = block_on(client.post_json("/v1/restore", request, RESTORE_TIMEOUT))?;
    let r: RestoreResponse =
        serde_json::from_str(&body).context("cannot read legerd's answer to restore")?;
    println!(
        "restored {} from backup {} (revision {})",
        r.app, r.backup, r.revision
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("  stopped: {}", list(&r.stopped));
    println!("  volumes: {}", list(&r.volumes));
    println!("  files:   {}", list(&r.files));
    if !r.removed.is_empty() {
        println!("  removed: {}", list(&r.removed));
    }
    println!("  started: {}", list(&r.started));
    if r.pin.is_empty() {
        println!("`legerctl unpin` returns to following the source.");
    } else {
        println!("  pin:     {}", r.pin);
    }
    Ok(())
}

/// Picks the units from legerd's status and replaces this process with journalctl, so
/// `-f`, the pager and Ctrl-C behave exactly as journalctl's own.
fn show_logs(
    loc: &mut Locations,
    app: Option<&str>,
    units: &[String],
    options: logs::LogsOptions,
) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let status = loc
        .client()
        .and_then(|client| block_on(client.get("/v1/status")))
        .and_then(|body| {
            serde_json::from_str::<StatusDocument>(&body)
                .context("legerd sent a status document this legerctl cannot read")
        });
    let selected = match status {
        Ok(doc) => logs::select_units(&doc, app, units)?,
        // legerd down is exactly when its own journal matters: show that much.
        Err(e) if app.is_none() => {
            eprintln!(
                "legerctl: cannot read legerd's status ({e:#}); showing legerd's own journal only"
            );
            std::iter::once(logs::LEGERD_UNIT.to_owned())
                .chain(units.iter().cloned())
                .collect()
        }
        Err(e) => {
            return Err(e.context(format!(
                "cannot find the units of app {}: legerd's status is needed",
                app.unwrap_or_default()
            )));
        }
    };
    if loc.mode == Mode::System
        && let Some(hint) = logs::journal_group_hint(
            rustix::process::geteuid().as_raw(),
            &caller_groups(),
            &std::fs::read_to_string("/etc/group").unwrap_or_default(),
        )
    {
        eprintln!("legerctl: {hint}");
    }
    let args = logs::journalctl_args(&selected, loc.mode, options);
    let err = std::process::Command::new("journalctl").args(&args).exec();
    Err(anyhow::Error::new(err).context(format!(
        "cannot run journalctl {}; legerctl logs reads the journal through it (package systemd)",
        args.join(" ")
    )))
}

/// The caller's supplementary and primary group ids, from /proc/self/status.
fn caller_groups() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut groups: Vec<u32> = status
        .lines()
        .filter_map(|l| l.strip_prefix("Groups:"))
        .flat_map(|g| g.split_whitespace().filter_map(|n| n.parse().ok()))
        .collect();
    groups.push(rustix::process::getegid().as_raw());
    groups
}

fn absolute(p: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot make {} absolute", p.display()))
}

/// Checks an ssh source's key and known_hosts files the way legerd will, so a missing
/// or too-open file is refused now rather than at the next fetch. A file the caller
/// may not look at (a non-root admin) is left to legerd.
fn check_ssh_files(g: &leger_api_types::GitSourceSpec) -> Result<()> {
    use legerd::source::ssh::{check_key_file, check_known_hosts_file};
    if !leger_api_types::ssh_url::is_ssh_url(&g.url) {
        // desired.toml's own check says these keys are for ssh urls only.
        return Ok(());
    }
    type FileCheck = fn(&Path) -> Result<(), String>;
    let checks: [(Option<&Path>, FileCheck); 2] = [
        (g.ssh_key_file.as_deref(), check_key_file),
        (g.known_hosts_file.as_deref(), check_known_hosts_file),
    ];
    for (file, check) in checks {
        let Some(file) = file else { continue };
        if let Err(e) = std::fs::metadata(file)
            && e.kind() == std::io::ErrorKind::PermissionDenied
        {
            continue;
        }
        check(file).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// legerctl makes one request per run; a current-thread runtime is all it needs.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds")
        .block_on(f)
}

fn set_desired(path: &Path, args: SetDesired) -> Result<()> {
    let current = read_optional(path)?;
    let overlays = args.overlays;
    if args.file.is_some() && !overlays.is_empty() {
        anyhow::bail!(
            "--overlay goes with a source subcommand; with --file, write `overlays` in the file"
        );
    }
    let text = match (args.file, args.source) {
        (Some(file), _) => {
            let text = read_input(&file)?;
            edit::validate_file(&text).with_context(|| {
                format!(
                    "refusing {}; {} is unchanged",
                    input_name(&file),
                    path.display()
                )
            })?;
            text
        }
        (None, Some(cmd)) => {
            let source = match cmd {
                SourceCommand::Git {
                    url,
                    reference,
                    path: sub,
                    interval,
                    allow_rewrite,
                    credentials_file,
                    ssh_key_file,
                    known_hosts_file,
                } => match edit::git_source(
                    &url,
                    reference.as_deref(),
                    sub.as_deref(),
                    interval,
                    allow_rewrite,
                ) {
                    leger_api_types::SourceSpec::Git(mut g) => {
                        g.credentials_file = credentials_file;
                        g.ssh_key_file = ssh_key_file.as_deref().map(absolute).transpose()?;
                        g.known_hosts_file =
                            known_hosts_file.as_deref().map(absolute).transpose()?;
                        check_ssh_files(&g).with_context(|| {
                            format!("refusing the ssh source; {} is unchanged", path.display())
                        })?;
                        leger_api_types::SourceSpec::Git(g)
                    }
                    other => other,
                },
                SourceCommand::Manifest {
                    url,
                    version,
                    public_keys,
                    token_file,
                    interval,
                } => {
                    let mut m = ManifestSourceSpec::new(url);
                    if let Some(v) = version {
                        m.version = v;
                    }
                    m.public_keys = public_keys;
                    if let Some(t) = token_file {
                        m.token_file =
                            Some(std::path::absolute(&t).with_context(|| {
                                format!("cannot make {} absolute", t.display())
                            })?);
                    }
                    if let Some(i) = interval {
                        m.poll_interval = i;
                    }
                    SourceSpec::Manifest(m)
                }
                SourceCommand::Dir { path: dir, force } => {
                    let dir = std::path::absolute(&dir)
                        .with_context(|| format!("cannot make {} absolute", dir.display()))?;
                    check_source_dir(&dir, force)?;
                    SourceSpec::Dir(DirSourceSpec {
                        path: dir,
                        overlays: Vec::new(),
                    })
                }
            };
            let source = edit::with_overlays(source, overlays);
            edit::replace_source(current.as_deref(), source)
                .with_context(|| {
                    format!("refusing the new source; {} is unchanged", path.display())
                })?
                .1
        }
        (None, None) => unreachable!("clap requires --file or a source subcommand"),
    };
    write_desired(path, &text)?;
    println!("wrote {}:\n", path.display());
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    println!(
        "\nlegerd reads it at its next pass, which its watch on desired.toml starts within a second, and converges to it; `legerctl status` shows how it went (or use --wait)"
    );
    Ok(())
}

/// Prints the report and exits 1 when the tree is invalid.
/// desired.toml as a `DesiredState` document (`--output json|yaml`), or as JSON
/// (`--json`): what legerd reads from it, so a file legerd would refuse is an error here.
fn desired_document(path: &Path, text: &str, out: &legerctl::output::OutputArg) -> Result<String> {
    let desired = DesiredState::from_toml_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid desired state: {e}; fix it, or print it as it is with `legerctl get-desired`",
            path.display()
        )
    })?;
    let body = serde_json::to_string(&desired)?;
    print_read(out, "DesiredState", &body, |_| Ok(text.to_owned()))
}

fn run_validate(
    loc: &mut Locations,
    dir: &Path,
    composed: bool,
    base: Option<&str>,
    check: &publish::OverlayCheck,
    podman: Option<legerd::quadlet::PodmanVersion>,
    out: &legerctl::output::OutputArg,
) -> Result<()> {
    let keys = legerctl::validate::key_table(podman, Path::new("podman"));
    let limits = local_limits(loc);
    let report = if composed {
        legerctl::validate::validate_composition(dir, base, check, keys, &limits)?
    } else {
        legerctl::validate::validate(dir, keys, &limits)?
    };
    let body = serde_json::to_string_pretty(&report)?;
    print!(
        "{}",
        print_read(out, "ValidationReport", &body, |_| Ok(
            legerctl::validate::render(&report)
        ))?
    );
    if !report.valid {
        std::process::exit(1);
    }
    Ok(())
}

/// The host's limits when its config is readable, so the tree fits what legerd accepts.
fn local_limits(loc: &mut Locations) -> leger_config::Limits {
    match loc.settings() {
        Ok(s) => s.limits.clone(),
        Err(_) => leger_config::Limits {
            max_file_size: 1024 * 1024,
            max_files: 10_000,
        },
    }
}

fn run_publish(
    loc: &mut Locations,
    apps_dir: &Path,
    out_dir: &Path,
    sign: Option<&Path>,
    check: &publish::OverlayCheck,
) -> Result<()> {
    let key = sign.map(publish::load_secret_key).transpose()?;
    let limits = local_limits(loc);
    let keys = legerctl::validate::key_table(None, Path::new("podman"));
    let p = publish::publish_with(
        apps_dir,
        out_dir,
        key.as_ref(),
        &generated_at()?,
        &limits,
        keys,
        check,
    )?;
    println!(
        "published v{} to {}: {} apps ({}), {} files, {}",
        p.version,
        p.dir.display(),
        p.apps.len(),
        p.apps.join(", "),
        p.files,
        if p.signed { "signed" } else { "unsigned" }
    );
    println!("revision: {}", p.revision);
    Ok(())
}

/// Now, or `SOURCE_DATE_EPOCH` for reproducible builds.
fn generated_at() -> Result<String> {
    let time = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: u64 = s
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))?;
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
        }
        Err(_) => std::time::SystemTime::now(),
    };
    Ok(humantime::format_rfc3339_seconds(time).to_string())
}

fn set_suspend(path: &Path, suspend: bool) -> Result<()> {
    let current = read_optional(path)?.with_context(|| {
        format!(
            "no desired state at {}; set one first with `legerctl set-desired`",
            path.display()
        )
    })?;
    let (desired, text) = edit::set_suspend(&current, suspend)
        .with_context(|| format!("cannot edit {}; it is unchanged", path.display()))?;
    write_desired(path, &text)?;
    let DesiredState { policy, .. } = desired;
    if policy.suspend {
        println!(
            "suspended: from legerd's next pass (within a second) it keeps fetching and reporting but changes nothing; a pass already applying finishes (wrote {})",
            path.display()
        );
    } else {
        println!(
            "resumed: legerd's next pass (within a second) converges the host again; `legerctl plan` shows what it will do (wrote {})",
            path.display()
        );
    }
    Ok(())
}

/// Refuses a revision that already failed its health gate unless `force`; with it,
/// asks legerd to forget the failure. When legerd cannot be asked, says so and goes on:
/// legerd itself never re-applies a failed revision unforced.
fn refuse_failed(loc: &mut Locations, revision: &str, force: bool, verb: &str) -> Result<()> {
    let client = loc.client()?;
    let list: Vec<RevisionInfo> = match block_on(client.get("/v1/revisions?limit=1000"))
        .ok()
        .and_then(|body| serde_json::from_str(&body).ok())
    {
        Some(list) => list,
        None => {
            eprintln!(
                "legerctl: cannot ask legerd whether {revision} failed before; if it did, legerd keeps the last good revision"
            );
            return Ok(());
        }
    };
    match legerctl::failed::check(&list, revision, force, verb) {
        Ok(legerctl::failed::Verdict::Proceed) => Ok(()),
        Ok(legerctl::failed::Verdict::Retry) => {
            block_on(client.post(&format!("/v1/revisions/{revision}/retry")))
                .with_context(|| format!("cannot ask legerd to retry {revision}"))?;
            eprintln!("legerctl: {revision} failed before; legerd will try it once more");
            Ok(())
        }
        Err(e) => bail!("{e}"),
    }
}

/// A dir source that is not a folder is almost always a typo: refuse it, unless
/// `--force` says the folder comes later.
fn check_source_dir(dir: &Path, force: bool) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => bail!(
            "{} is not a folder; a dir source is a folder with one sub-folder per app",
            dir.display()
        ),
        Err(e) if force => {
            eprintln!(
                "legerctl: warning: {} cannot be read ({e}); legerd reports the source as unavailable until it exists",
                dir.display()
            );
            Ok(())
        }
        Err(e) => bail!(
            "{} cannot be read ({e}); create it first, or pass --force to set it anyway",
            dir.display()
        ),
    }
}

/// `legerctl set-policy`: edits only the named settings and says what follows.
fn set_policy(path: &Path, args: SetPolicy) -> Result<()> {
    let change = legerctl::policy::PolicyChange {
        mode: args.mode,
        prune: args.prune,
        self_heal: args.self_heal,
        allow_empty: args.allow_empty,
    };
    let current = read_optional(path)?.with_context(|| {
        format!(
            "no desired state at {}; set one first with `legerctl set-desired`",
            path.display()
        )
    })?;
    let mut said = Vec::new();
    let (_, text) = edit::edit_policy(&current, |p| said = legerctl::policy::apply(p, change))
        .with_context(|| format!("cannot edit {}; it is unchanged", path.display()))?;
    if said.is_empty() {
        println!(
            "nothing to change: the policy already says that ({} is unchanged)",
            path.display()
        );
        return Ok(());
    }
    write_desired(path, &text)?;
    for line in &said {
        println!("{line}");
    }
    println!("(wrote {})", path.display());
    Ok(())
}

/// legerd's status document.
fn fetch_status(loc: &mut Locations) -> Result<StatusDocument> {
    serde_json::from_str(&block_on(loc.client()?.get("/v1/status"))?)
        .context("cannot read legerd's status")
}

/// Edits `[policy]` of the desired state at `path`, validated and atomically.
fn edit_policy(path: &Path, change: impl FnOnce(&mut leger_api_types::Policy)) -> Result<()> {
    let current = read_optional(path)?.with_context(|| {
        format!(
            "no desired state at {}; set one first with `legerctl set-desired`",
            path.display()
        )
    })?;
    let (_, text) = edit::edit_policy(&current, change)
        .with_context(|| format!("cannot edit {}; it is unchanged", path.display()))?;
    // No reconcile request: legerd's inotify watch on desired.toml starts a pass.
    write_desired(path, &text)
}

fn write_desired(path: &Path, text: &str) -> Result<()> {
    desired_file::write(path, text)
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    desired_file::read_optional(path)
}

fn read_input(file: &Path) -> Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the desired state from stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

fn input_name(file: &Path) -> String {
    if file == Path::new("-") {
        "the document from stdin".to_owned()
    } else {
        file.display().to_string()
    }
}

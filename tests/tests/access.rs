//! Who may do what on legerd's socket, end to end: real users and groups inside the
//! machine, real `SO_PEERCRED`, legerd as a systemd service; the audit events in the
//! journal; and a planted token searched for everywhere legerd reports.

mod common;

use anyhow::{Context, Result};
use common::*;
use leger_e2e::{AGENT_DIR_INSIDE, Testbed, wait_until};
use serde_json::Value;

/// `MESSAGE_ID` of a change over the API socket (docs/journal.md).
const API_CHANGE: &str = "c40f43cc2a3f4ffc9c5e39f095e331d1";
/// `MESSAGE_ID` of desired.toml changed on disk.
const DESIRED_CHANGED: &str = "5fac4724b38349069135c267c216804e";
const SOCKET: &str = "/run/leger/legerd.sock";
/// A secret value that must never appear in the journal.
const SECRET_VALUE: &str = "planted-secret-value-5c1d";
/// A token that must never appear in status, history, backups, metrics or the journal.
const TOKEN: &str = "planted-token-9f3e2a7b";

/// alice reads (group leger), bob administers (leger-admin, and leger for the socket's
/// file mode), carol is in neither.
fn create_users(tb: &Testbed) -> Result<()> {
    tb.exec_ok(&["groupadd", "leger"])?;
    tb.exec_ok(&["groupadd", "leger-admin"])?;
    tb.exec_ok(&["useradd", "-M", "-G", "leger", "alice"])?;
    tb.exec_ok(&["useradd", "-M", "-G", "leger,leger-admin", "bob"])?;
    tb.exec_ok(&["useradd", "-M", "carol"])?;
    Ok(())
}

fn uid(tb: &Testbed, user: &str) -> Result<String> {
    Ok(tb.exec_ok(&["id", "-u", user])?.trim().to_owned())
}

/// One request on the socket as `user` (through `runuser`, so the kernel sees that
/// user and their groups): the HTTP status (0 when curl could not connect) and body.
fn curl_as(
    tb: &Testbed,
    user: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let url = format!("http://legerd{path}");
    let mut args = vec![
        "runuser",
        "-u",
        user,
        "--",
        "curl",
        "-s",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--unix-socket",
        SOCKET,
        "-X",
        method,
    ];
    if let Some(b) = body {
        args.extend(["-H", "content-type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let out = tb.exec(&args)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
}

/// `legerctl` as `user`; Ok(stdout) or Err(stderr).
fn legerctl_as(tb: &Testbed, user: &str, args: &[&str]) -> Result<Result<String, String>> {
    let bin = format!("{AGENT_DIR_INSIDE}/legerctl");
    let mut full = vec!["runuser", "-u", user, "--", bin.as_str()];
    full.extend_from_slice(args);
    let out = tb.exec(&full)?;
    Ok(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

/// Every journal entry with `MESSAGE_ID=id`, as JSON objects.
fn journal_events(tb: &Testbed, id: &str) -> Result<Vec<Value>> {
    let out = tb.exec_ok(&[
        "journalctl",
        "-b",
        "--no-pager",
        "-o",
        "json",
        &format!("MESSAGE_ID={id}"),
    ])?;
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).context("journal line is not JSON"))
        .collect()
}

fn field<'a>(e: &'a Value, name: &str) -> &'a str {
    e[name].as_str().unwrap_or_default()
}

/// A revision this host never fetched, for the retry endpoint.
const UNKNOWN_REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

const WRITES: [(&str, &str, Option<&str>); 6] = [
    ("POST", "/v1/reconcile", None),
    // From a file: a value on runuser's command line would reach the journal through
    // PAM's session messages (`_CMDLINE`), which says nothing about legerd.
    ("PUT", "/v1/secrets/db-pass", Some("@/tmp/secret")),
    ("DELETE", "/v1/secrets/db-pass", None),
    ("POST", "/v1/restore", Some(r#"{"app":"no-such-app"}"#)),
    (
        "POST",
        "/v1/revisions/0123456789abcdef0123456789abcdef01234567/retry",
        None,
    ),
    ("POST", "/v1/fleet/release", None),
];

const READS: [&str; 10] = [
    "/v1/status",
    "/v1/history",
    "/v1/history/summary",
    "/v1/history/1",
    "/v1/revisions",
    "/v1/backups",
    "/v1/identity",
    "/v1/secrets",
    "/v1/staged",
    "/v1/plan",
];

/// The endpoint and target an audit event names for a write request's path.
fn audit_route(path: &str) -> (String, String) {
    if let Some(name) = path.strip_prefix("/v1/secrets/") {
        return ("/v1/secrets/{name}".to_owned(), name.to_owned());
    }
    if let Some(rev) = path
        .strip_prefix("/v1/revisions/")
        .and_then(|r| r.strip_suffix("/retry"))
    {
        return ("/v1/revisions/{revision}/retry".to_owned(), rev.to_owned());
    }
    (path.to_owned(), "-".to_owned())
}

#[test]
fn access_roles_on_every_endpoint_with_audit_events() -> Result<()> {
    let tb = Testbed::boot("e2e-access")?;
    create_users(&tb)?;
    let (_fleet, _rev, web) = web_converged(&tb)?;
    let (alice, bob) = (uid(&tb, "alice")?, uid(&tb, "bob")?);
    tb.exec_ok(&[
        "sh",
        "-c",
        &format!("printf %s {SECRET_VALUE} > /tmp/secret && chmod 644 /tmp/secret"),
    ])?;

    // desired.toml: root may write, the admin group may read, others nothing.
    let perms = tb.exec_ok(&["stat", "-c", "%a %U %G", "/etc/leger/desired.toml"])?;
    assert_eq!(perms.trim(), "640 root leger-admin");
    let e = legerctl_as(&tb, "alice", &["get-desired"])?.unwrap_err();
    assert!(
        e.contains("permission denied") && e.contains("leger-admin"),
        "{e}"
    );

    // A reader reads every read endpoint; staged answers 404 (not in staged mode), not 403.
    for path in READS {
        let (code, body) = curl_as(&tb, "alice", "GET", path, None)?;
        let want = if path == "/v1/staged" { 404 } else { 200 };
        assert_eq!(code, want, "alice GET {path}: {body}");
    }
    // The socket's file mode keeps carol out before legerd even sees her.
    let (code, _) = curl_as(&tb, "carol", "GET", "/v1/status", None)?;
    assert_eq!(code, 0, "carol cannot connect");
    let e = legerctl_as(&tb, "carol", &["status"])?.unwrap_err();
    assert!(e.contains("group `leger`"), "{e}");

    // A reader is refused on every write endpoint, and told which group to join.
    for (method, path, body) in WRITES {
        let (code, text) = curl_as(&tb, "alice", method, path, body)?;
        assert_eq!(code, 403, "alice {method} {path}: {text}");
        assert!(text.contains("leger-admin"), "{text}");
    }
    let e = legerctl_as(&tb, "alice", &["reconcile"])?.unwrap_err();
    assert!(e.contains("403") && e.contains("leger-admin"), "{e}");

    // An admin is allowed on every one of them.
    let (code, text) = curl_as(&tb, "bob", "POST", "/v1/reconcile", None)?;
    assert_eq!(code, 200, "{text}");
    let (code, text) = curl_as(
        &tb,
        "bob",
        "PUT",
        "/v1/secrets/db-pass",
        Some("@/tmp/secret"),
    )?;
    assert_eq!(code, 200, "{text}");
    let (code, text) = curl_as(&tb, "bob", "DELETE", "/v1/secrets/db-pass", None)?;
    assert_eq!(code, 204, "{text}");
    // Hostile: a restore of an app that does not exist is refused up front.
    let (code, text) = curl_as(
        &tb,
        "bob",
        "POST",
        "/v1/restore",
        Some(r#"{"app":"no-such-app"}"#),
    )?;
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("there is no app no-such-app"), "{text}");
    // The endpoints added since (issues 10 and 12) let an admin through to their own
    // checks: a revision never fetched, a host without a fleet lock.
    let retry = format!("/v1/revisions/{UNKNOWN_REVISION}/retry");
    let (code, text) = curl_as(&tb, "bob", "POST", &retry, None)?;
    assert!(
        code != 403 && code >= 400,
        "bob POST {retry}: {code} {text}"
    );
    let (code, text) = curl_as(&tb, "bob", "POST", "/v1/fleet/release", None)?;
    assert_eq!(code, 200, "bob fleet release: {text}");
    assert!(text.contains("nothing to release"), "{text}");
    // Hostile: a body over the limit is refused before it is buffered; legerd lives on.
    tb.exec_ok(&[
        "sh",
        "-c",
        "head -c 600000 /dev/zero | tr '\\0' x > /tmp/big",
    ])?;
    let (code, text) = curl_as(&tb, "bob", "PUT", "/v1/secrets/big", Some("@/tmp/big"))?;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("at most 512000 bytes"), "{text}");
    assert_eq!(active_state(&tb, "legerd.service")?, "active");
    assert_eq!(
        container_id(&tb, "web")?.as_deref(),
        Some(web.as_str()),
        "the app keeps running"
    );

    // Audit: every write above is an event with who, what and how it ended.
    wait_until(WAIT, "the audit events reach the journal", || {
        Ok(journal_events(&tb, API_CHANGE)?.len() >= 13)
    })?;
    let events = journal_events(&tb, API_CHANGE)?;
    for (method, path, _) in WRITES {
        let (route, target) = audit_route(path);
        let endpoint = format!("{method} {route}");
        let denied = events.iter().find(|e| {
            field(e, "LEGER_CALLER_UID") == alice
                && field(e, "LEGER_ENDPOINT") == endpoint
                && field(e, "LEGER_OUTCOME") == "denied"
        });
        let denied = denied.with_context(|| format!("no denied event for {endpoint}"))?;
        assert!(!field(denied, "LEGER_CALLER_PID").is_empty());
        assert!(!field(denied, "LEGER_CALLER_GID").is_empty());
        if path != "/v1/restore" {
            assert_eq!(field(denied, "LEGER_TARGET"), target);
        }
    }
    let set = events
        .iter()
        .find(|e| {
            field(e, "LEGER_CALLER_UID") == bob
                && field(e, "LEGER_ENDPOINT") == "PUT /v1/secrets/{name}"
                && field(e, "LEGER_OUTCOME") == "ok"
        })
        .context("no event for bob's secrets set")?;
    assert_eq!(field(set, "LEGER_TARGET"), "db-pass");
    let restore = events
        .iter()
        .find(|e| {
            field(e, "LEGER_CALLER_UID") == bob && field(e, "LEGER_ENDPOINT") == "POST /v1/restore"
        })
        .context("no event for bob's restore")?;
    assert_eq!(field(restore, "LEGER_TARGET"), "no-such-app");
    assert_eq!(field(restore, "LEGER_OUTCOME"), "failed");

    // A desired.toml change legerd notices is an event too, without a caller.
    legerctl(&tb, &["suspend"])?;
    wait_until(WAIT, "the desired.toml change event", || {
        Ok(journal_events(&tb, DESIRED_CHANGED)?
            .iter()
            .any(|e| field(e, "LEGER_CHANGED") == "policy"))
    })?;
    let changed = journal_events(&tb, DESIRED_CHANGED)?;
    let e = changed
        .iter()
        .find(|e| field(e, "LEGER_CHANGED") == "policy")
        .expect("checked above");
    assert_eq!(field(e, "LEGER_CALLER"), "file changed on disk");
    assert_eq!(field(e, "LEGER_FILE_MODE"), "640");

    // The secret value is in no journal entry.
    let journal = tb.exec_ok(&["journalctl", "-b", "--no-pager", "-o", "json"])?;
    assert!(!journal.contains(SECRET_VALUE), "the secret value leaked");
    Ok(())
}

#[test]
fn access_planted_token_is_nowhere() -> Result<()> {
    let tb = Testbed::boot("e2e-token")?;
    let reports = start_report_sink(&tb)?;
    let (fleet, good, _web) = web_converged(&tb)?;

    // legerctl refuses a url with credentials and points to a credentials file.
    let url_with_token = fleet
        .url_inside()
        .replacen("://", &format!("://fleet:{TOKEN}@"), 1);
    let with_token = if url_with_token.contains(TOKEN) {
        url_with_token
    } else {
        format!("http://fleet:{TOKEN}@127.0.0.1:9/fleet.git")
    };
    let out = tb.exec(&[
        &format!("{AGENT_DIR_INSIDE}/legerctl"),
        "set-desired",
        "git",
        &with_token,
    ])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("credentials_file"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");

    // legerd refuses the same url written by hand, and keeps the good revision.
    let desired = format!("[source]\nkind = \"git\"\nurl = \"{with_token}\"\npath = \"apps\"\n");
    let root = std::path::PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    std::fs::write(root.join("etc/leger/desired.toml"), &desired)?;
    wait_until(WAIT, "legerd reports the refused desired state", || {
        Ok(status(&tb)?.to_string().contains("credentials_file"))
    })?;
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(good.as_str()));

    // A TOML syntax error on the url line itself (an unterminated string): the toml
    // crate quotes that line in its message, which must reach status, the journal and
    // legerctl without the token.
    let broken = format!("[source]\nkind = \"git\"\nurl = \"{with_token}\npath = \"apps\"\n");
    std::fs::write(root.join("etc/leger/desired.toml"), &broken)?;
    wait_until(WAIT, "legerd reports the desired.toml syntax error", || {
        Ok(status(&tb)?.to_string().contains("line 3"))
    })?;
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(good.as_str()));
    let mut broken_outputs = vec![("status (human)", legerctl(&tb, &["status"])?)];
    for args in [
        &["status", "--details"][..],
        &["plan"],
        &["diff"],
        &["get-desired", "-o", "json"],
        &["set-policy", "--mode", "staged"],
        &["suspend"],
    ] {
        let (_, out, err) = legerctl_out(&tb, args)?;
        broken_outputs.push((args[0], format!("{out}{err}")));
    }
    // Reports carry the conditions, not desired.toml's text; a heartbeat comes every 5 s.
    let sent =
        |tb: &Testbed| -> Result<usize> { Ok(tb.exec_ok(&["cat", &reports])?.lines().count()) };
    let before = sent(&tb)?;
    wait_until(WAIT, "two more fleet reports", || {
        Ok(sent(&tb)? >= before + 2)
    })?;
    for (what, text) in &broken_outputs {
        assert!(
            !text.contains(TOKEN),
            "the token leaked into legerctl {what}: {text}"
        );
    }

    // A credentials file holding the token, used by a git source.
    tb.exec_ok(&[
        "sh",
        "-c",
        &format!("umask 077; echo {TOKEN} > /etc/leger/git-credentials"),
    ])?;
    let desired = "[source]\nkind = \"git\"\nurl = \"http://127.0.0.1:9/fleet.git\"\npath = \"apps\"\ncredentials_file = \"/etc/leger/git-credentials\"\n";
    std::fs::write(root.join("etc/leger/desired.toml"), desired)?;
    wait_until(
        WAIT,
        "a pass against the source with a credentials file",
        || Ok(status(&tb)?.to_string().contains("127.0.0.1:9")),
    )?;
    reconcile_and_wait_for_pass(&tb)?;

    // Search everything legerd reports for the token.
    let places = [
        ("status", legerctl(&tb, &["status", "--json"])?),
        ("history", legerctl(&tb, &["history", "--json"])?),
        ("backups", legerctl(&tb, &["backups", "--json"])?),
        ("revisions", legerctl(&tb, &["revisions", "--json"])?),
        (
            "metrics",
            tb.exec_ok(&["curl", "-sf", "http://127.0.0.1:9464/metrics"])?,
        ),
        (
            "journal",
            tb.exec_ok(&["journalctl", "-b", "--no-pager", "-o", "json"])?,
        ),
        ("plan", {
            let (_, out, err) = legerctl_out(&tb, &["plan", "-o", "json"])?;
            format!("{out}{err}")
        }),
        ("diff", {
            let (_, out, err) = legerctl_out(&tb, &["diff"])?;
            format!("{out}{err}")
        }),
        ("fleet reports", tb.exec_ok(&["cat", &reports])?),
    ];
    for (what, text) in &places {
        assert!(!text.is_empty(), "{what} is empty");
        assert!(!text.contains(TOKEN), "the token leaked into {what}");
    }
    Ok(())
}

/// Starts a fleet report receiver inside the machine (python3 on 127.0.0.1:8099, one
/// JSON body per line in the file returned) and points legerd's `fleet.report_url` at
/// it, so the reports legerd sends are searched too.
fn start_report_sink(tb: &Testbed) -> Result<String> {
    let file = "/var/tmp/fleet-reports.jsonl";
    let server = format!(
        "import http.server\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_POST(self):\n\
         \x20       body = self.rfile.read(int(self.headers.get('Content-Length', 0)))\n\
         \x20       open('{file}', 'ab').write(body + b'\\n')\n\
         \x20       self.send_response(204)\n\
         \x20       self.end_headers()\n\
         \x20   def log_message(self, *a):\n\
         \x20       pass\n\
         http.server.HTTPServer(('127.0.0.1', 8099), H).serve_forever()\n"
    );
    write_inside(tb, "/var/tmp/report-sink.py", &server, 0o644)?;
    tb.exec_ok(&["touch", file])?;
    tb.exec_ok(&[
        "systemd-run",
        "--unit",
        "report-sink",
        "python3",
        "/var/tmp/report-sink.py",
    ])?;
    write_inside(
        tb,
        "/etc/leger/config.d/60-report.toml",
        "[fleet]\nhost = \"h1\"\nreport_url = \"http://127.0.0.1:8099/report\"\nreport_interval = \"5s\"\n",
        0o644,
    )?;
    wait_until(WAIT, "the report sink listens", || {
        Ok(tb
            .exec(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-d",
                "{}",
                "http://127.0.0.1:8099/",
            ])?
            .status
            .success())
    })?;
    Ok(file.to_owned())
}

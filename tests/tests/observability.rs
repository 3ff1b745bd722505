//! End-to-end observability: a real Prometheus scrapes legerd's `/metrics`, the journal
//! carries legerd's structured events, `legerctl logs` shows an app's units, and
//! systemd sees STATUS=, WATCHDOG=1 and a clean stop.
//!
//! Prometheus is the host's Debian `prometheus` binary run inside the machine's network
//! namespace (`nsenter -n`): legerd listens on the machine's 127.0.0.1:9464, which the
//! host cannot reach, and the machine has no network to install packages.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use common::*;
use leger_e2e::{Testbed, wait_until};
use serde_json::Value;

const WEB: &str = "apps/web/web.container";

/// Where Prometheus listens, inside the machine's network namespace.
const PROMETHEUS_ADDR: &str = "127.0.0.1:19090";

/// A Prometheus process in the machine's network namespace; killed when dropped.
struct Prometheus {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts the host's `prometheus` scraping legerd every second.
    fn start(tb: &Testbed) -> Result<Prometheus> {
        let binary = Path::new("/usr/bin/prometheus");
        if !binary.exists() {
            bail!(
                "{} not found: install Debian's prometheus package on the host (`apt-get install prometheus`; .ci/run does it)",
                binary.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("leger-prometheus-")
            .tempdir_in("/var/tmp")?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: legerd\n    static_configs:\n      - targets: ['127.0.0.1:9464']\n",
        )?;
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new("nsenter")
            .args(["-t", tb.env_var("LEGER_TESTBED_LEADER_PID"), "-n", "--"])
            .arg(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS_ADDR}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("cannot start prometheus in the machine's network namespace")?;
        Ok(Prometheus {
            child,
            log,
            _dir: dir,
        })
    }

    /// Runs an instant query through Prometheus's HTTP API (with curl inside the
    /// machine) and returns `data.result`.
    fn query(&self, tb: &Testbed, promql: &str) -> Result<Vec<Value>> {
        let out = tb.exec_ok(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "10",
            "-G",
            &format!("http://{PROMETHEUS_ADDR}/api/v1/query"),
            "--data-urlencode",
            &format!("query={promql}"),
        ])?;
        let body: Value = serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))?;
        if body["status"] != "success" {
            bail!("query {promql} failed: {body}");
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The tail of Prometheus's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a one-series query result.
fn value(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// Boots a machine with one app and legerd converged on it, with a systemd watchdog.
fn one_app(name: &str) -> Result<(Testbed, Fleet)> {
    let tb = Testbed::boot(name)?;
    let fleet = Fleet::create(&tb, &[(WEB, &container("web", "hello from web"))])?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    let dropin =
        PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT")).join("etc/systemd/system/legerd.service.d");
    std::fs::create_dir_all(&dropin)?;
    std::fs::write(dropin.join("watchdog.conf"), "[Service]\nWatchdogSec=4s\n")?;
    start_legerd(&tb)?;
    Ok((tb, fleet))
}

#[test]
fn prometheus_scrapes_legerd_reconcile_total() -> Result<()> {
    let (tb, fleet) = one_app("e2e-prom")?;
    let head = fleet.head()?;
    wait_applied(&tb, &head)?;
    let prometheus = Prometheus::start(&tb)?;
    wait_until(
        WAIT,
        "Prometheus to scrape legerd_reconcile_total{outcome=\"applied\"} >= 1",
        || {
            let v = value(&prometheus.query(&tb, "legerd_reconcile_total{outcome=\"applied\"}")?);
            Ok(v.is_some_and(|v| v >= 1.0))
        },
    )
    .with_context(|| format!("prometheus log:\n{}", prometheus.log_tail()))?;
    let up = prometheus.query(&tb, "up{job=\"legerd\"}")?;
    assert_eq!(value(&up), Some(1.0), "{up:?}");
    let applied = prometheus.query(&tb, "legerd_applied_revision_info")?;
    assert_eq!(applied.len(), 1, "one applied revision series: {applied:?}");
    assert_eq!(
        applied[0]["metric"]["revision"],
        head.as_str(),
        "{applied:?}"
    );
    let build = prometheus.query(&tb, "legerd_build_info")?;
    assert!(build[0]["metric"]["version"].is_string(), "{build:?}");
    assert_eq!(
        value(&prometheus.query(&tb, "legerd_units{state=\"active\"}")?),
        Some(1.0)
    );
    assert_eq!(value(&prometheus.query(&tb, "legerd_apps")?), Some(1.0));
    assert_eq!(
        value(&prometheus.query(&tb, "legerd_last_reconcile_failed")?),
        Some(0.0)
    );

    // A second revision moves the revision series, never duplicating it.
    let second = fleet.commit(&[(WEB, &container("web", "web v2"))], &[], "v2")?;
    reconcile(&tb)?;
    wait_applied(&tb, &second)?;
    wait_until(WAIT, "Prometheus to see the second revision", || {
        let r = prometheus.query(&tb, "legerd_applied_revision_info")?;
        Ok(r.len() == 1 && r[0]["metric"]["revision"] == second.as_str())
    })?;
    wait_until(WAIT, "legerd_unit_restarts_total >= 1", || {
        let v = value(&prometheus.query(&tb, "legerd_unit_restarts_total")?);
        Ok(v.is_some_and(|v| v >= 1.0))
    })?;
    Ok(())
}

#[test]
fn journal_logs_status_and_watchdog_under_systemd() -> Result<()> {
    let (tb, fleet) = one_app("e2e-journal")?;
    let head = fleet.head()?;
    wait_running(&tb, "web.service", "web")?;
    wait_applied(&tb, &head)?;

    // Per-unit events carry app, unit and action as journal fields.
    let events = tb.exec_ok(&[
        "journalctl",
        "-o",
        "json",
        "LEGER_APP=web",
        "LEGER_ACTION=start",
    ])?;
    let event: Value = events
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|e: &Value| e["LEGER_UNIT"] == "web.service")
        .with_context(|| format!("no start event of web.service in:\n{events}"))?;
    assert_eq!(event["LEGER_REVISION"], head.as_str(), "{event}");
    assert_eq!(event["LEGER_OUTCOME"], "ok", "{event}");
    // The applied event has its fixed MESSAGE_ID (docs/journal.md).
    let applied = tb.exec_ok(&[
        "journalctl",
        "-o",
        "json",
        "MESSAGE_ID=fc2e5769da014e6c827e73b17a4eb9e8",
    ])?;
    assert!(
        applied.contains(&format!("\"LEGER_REVISION\":\"{head}\"")),
        "{applied}"
    );

    // legerctl logs APP shows the app's container output through journalctl.
    wait_until(
        WAIT,
        "legerctl logs web to show the container's output",
        || Ok(legerctl(&tb, &["logs", "web", "-n", "200"])?.contains("hello from web")),
    )?;
    let err = tb.exec(&["/opt/leger/legerctl", "logs", "nosuchapp"])?;
    assert!(!err.status.success());
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("no app named \"nosuchapp\""),
        "{err:?}"
    );

    // STATUS= says when the next poll is; WATCHDOG=1 arrives (its timestamp moves).
    let status_text = tb.exec_ok(&["systemctl", "show", "-P", "StatusText", "legerd.service"])?;
    assert!(
        status_text.contains("next poll in") || status_text.contains("retry in"),
        "{status_text}"
    );
    let watchdog = || -> Result<String> {
        Ok(tb
            .exec_ok(&[
                "systemctl",
                "show",
                "-P",
                "WatchdogTimestampMonotonic",
                "legerd.service",
            ])?
            .trim()
            .to_owned())
    };
    let first = watchdog()?;
    wait_until(WAIT, "a second WATCHDOG=1 ping", || {
        let now = watchdog()?;
        Ok(now != first && now != "0" && !now.is_empty())
    })?;

    // SIGTERM: legerd finishes and exits cleanly (no failure, no kill).
    tb.exec_ok(&["systemctl", "stop", "legerd.service"])?;
    let result = tb.exec_ok(&["systemctl", "show", "-P", "Result", "legerd.service"])?;
    assert_eq!(result.trim(), "success");
    let own = tb.unit_logs("legerd.service")?;
    assert!(own.contains("shutdown requested"), "{own}");
    Ok(())
}

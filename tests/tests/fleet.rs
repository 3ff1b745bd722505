//! Three hosts, one source, one FleetLock server: overlays give each host its apps,
//! first installs need no lock, a change of a common app restarts one host at a time
//! inside its slot, a bad revision stops at the first host (which rolls back and keeps
//! the slot while the others wait), a fixed revision reaches all three, and reports
//! arrive. The machines are joined by veth pairs to a bridge in a network namespace the
//! test creates (192.0.2.0/24); the lock server and report sink is the fleet test server
//! (`leger-fleet-test-server`), running in that namespace.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use common::{
    WAIT, active_state, condition, container, container_id, legerctl, start_legerd, status,
    wait_running,
};
use leger_e2e::fleet_net::{FleetNet, SERVER_IP};
use leger_e2e::{Testbed, wait_until};
use serde_json::Value;

const SOURCE_INSIDE: &str = "/srv/leger/src";

/// Writes `files` into the dir source of every machine (the same bytes, so the same
/// source revision everywhere).
fn publish(machines: &[&Testbed], files: &[(&str, &str)]) -> Result<()> {
    for m in machines {
        for (rel, text) in files {
            let p = m.share_dir_host().join("src").join(rel);
            std::fs::create_dir_all(p.parent().context("parent")?)?;
            // Atomic, so an inotify-triggered pass never reads half a file.
            let tmp = p.with_extension("tmp-e2e");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &p)?;
        }
    }
    Ok(())
}

fn configure(tb: &Testbed, groups: &str, lock: &str) -> Result<()> {
    let root = Path::new(tb.env_var("LEGER_TESTBED_ROOT"));
    std::fs::create_dir_all(root.join("etc/leger/config.d"))?;
    std::fs::write(root.join("etc/leger/report.token"), "e2e-token\n")?;
    std::fs::write(
        root.join("etc/leger/config.d/60-fleet.toml"),
        format!(
            "[fleet]\nhost = \"{}\"\ngroups = [{groups}]\nreport_url = \"http://{SERVER_IP}:8080/report\"\n\
             report_token_file = \"/etc/leger/report.token\"\nreport_interval = \"5s\"\n\
             [fleet.lock]\ngroup = \"web\"\n{lock}",
            host_name(tb)
        ),
    )?;
    Ok(())
}

/// The fleet name of a machine: its name without the run prefix.
fn host_name(tb: &Testbed) -> String {
    tb.name().rsplit('-').next().unwrap_or(tb.name()).to_owned()
}

/// GET from the fleet test server, through the first machine (the host is not on the
/// test network).
fn fleetlock_config() -> String {
    format!("url = \"http://{SERVER_IP}:8080\"\n")
}

fn server_get(tb: &Testbed, path: &str) -> Result<Value> {
    let out = tb.exec_ok(&["curl", "-sf", &format!("http://{SERVER_IP}:8080{path}")])?;
    serde_json::from_str(&out).with_context(|| format!("{path}: {out}"))
}

/// legerd's metrics, from inside the machine (it listens on its loopback).
fn metrics(tb: &Testbed) -> Result<String> {
    tb.exec_ok(&["curl", "-sf", "http://127.0.0.1:9464/metrics"])
}

fn lock_state(tb: &Testbed) -> Result<String> {
    Ok(status(tb)?["status"]["fleet"]["lock"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn apps(tb: &Testbed) -> Result<Vec<(String, String)>> {
    Ok(status(tb)?["status"]["apps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default().to_owned(),
                a["layer"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// The grant/release log as (op, host) pairs.
fn lock_log(tb: &Testbed) -> Result<Vec<(String, String, u64)>> {
    Ok(server_get(tb, "/log")?
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["op"].as_str().unwrap_or_default().to_owned(),
                e["id"].as_str().unwrap_or_default().to_owned(),
                e["at_ms"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

/// The container's start time in ms since the epoch (podman's StartedAt).
fn started_ms(tb: &Testbed, name: &str) -> Result<u64> {
    let out = tb.exec_ok(&[
        "podman",
        "inspect",
        "-f",
        "{{.State.StartedAt.UnixMilli}}",
        name,
    ])?;
    out.trim()
        .parse()
        .with_context(|| format!("StartedAt {out:?}"))
}

/// Boots three machines `<name>-a|b|c` on a fresh test network, runs `before_start` on
/// it, gives them overlays and `lock` (a `[fleet.lock]` body), starts legerd, and checks
/// that first installs converged with each host's apps.
fn setup(
    name: &str,
    lock: &str,
    before_start: impl FnOnce(&mut FleetNet, &Testbed) -> Result<()>,
) -> Result<([Testbed; 3], FleetNet)> {
    let a = Testbed::boot(&format!("{name}-a"))?;
    let b = Testbed::boot(&format!("{name}-b"))?;
    let c = Testbed::boot(&format!("{name}-c"))?;
    let all = [&a, &b, &c];
    let prefix = std::env::var("LEGER_E2E_PREFIX").unwrap_or_default();
    let mut net = FleetNet::create(&format!("{prefix}lgr{name}"), &all)?;
    before_start(&mut net, &a)?;

    // Overlays: web for everyone, cache for group eu (a, b), extra for host c only.
    publish(
        &all,
        &[
            ("web/web.container", &container("web", "web v1")),
            (
                "groups/eu/apps/cache/cache.container",
                &container("cache", "cache"),
            ),
            (
                "hosts/c/apps/extra/extra.container",
                &container("extra", "extra"),
            ),
        ],
    )?;
    for (tb, groups) in [(&a, "\"eu\""), (&b, "\"eu\""), (&c, "\"us\"")] {
        configure(tb, groups, lock)?;
        legerctl(
            tb,
            &[
                "set-desired",
                "dir",
                SOURCE_INSIDE,
                "--overlay",
                "groups/{group}/apps",
                "--overlay",
                "hosts/{host}/apps",
            ],
        )?;
    }
    // The lock server is not up yet: first installs must converge anyway.
    for tb in all {
        start_legerd(tb)?;
        wait_running(tb, "web.service", "web")?;
    }
    wait_running(&a, "cache.service", "cache")?;
    wait_running(&b, "cache.service", "cache")?;
    wait_running(&c, "extra.service", "extra")?;
    // READY comes once the first revision is applied, while its health gate still
    // runs: status lists the apps when that pass ends.
    let layers = |tb: &Testbed, want: [(String, String); 2]| {
        wait_until(
            WAIT,
            &format!("{} lists its apps' layers", tb.name()),
            || Ok(apps(tb)? == want),
        )
    };
    layers(
        &a,
        [
            ("cache".into(), "groups/eu/apps".into()),
            ("web".into(), ".".into()),
        ],
    )?;
    layers(
        &c,
        [
            ("extra".into(), "hosts/c/apps".into()),
            ("web".into(), ".".into()),
        ],
    )?;
    assert!(container_id(&c, "cache")?.is_none());
    for tb in all {
        assert_eq!(lock_state(tb)?, "free");
    }

    Ok(([a, b, c], net))
}

/// A bad revision runs on exactly one host, which rolls back and keeps the slot while
/// the others wait; then a fixed revision reaches all three and the slot is free.
/// `holders` reads the lock service's holders of group `web`.
fn rollout_stops_at_first_host(
    all: &[&Testbed; 3],
    holders: &dyn Fn() -> Result<Vec<String>>,
) -> Result<()> {
    // A bad revision: the container exits at once. It runs on exactly one host.
    let good: Vec<String> = all
        .iter()
        .map(|tb| container_id(tb, "web").map(|c| c.unwrap_or_default()))
        .collect::<Result<_>>()?;
    let bad = "[Unit]\nDescription=e2e web bad\n\n[Container]\nContainerName=web\nImage=localhost/busybox:latest\nNetwork=none\nExec=/bin/false\n";
    publish(all, &[("web/web.container", bad)])?;
    let holder = wait_until_some(
        Duration::from_secs(240),
        "one host rolls back and holds the slot",
        || {
            for tb in all {
                let s = status(tb)?;
                if condition(&s, "Ready").is_some_and(|(_, r, _)| r == "RolledBack")
                    && lock_state(tb)? == "held"
                {
                    return Ok(Some(host_name(tb)));
                }
            }
            Ok(None)
        },
    )?;
    let others: Vec<&&Testbed> = all.iter().filter(|tb| host_name(tb) != holder).collect();
    for tb in &others {
        wait_until(WAIT, &format!("{} waits for the lock", tb.name()), || {
            let s = status(tb)?;
            Ok(condition(&s, "Reconciling").is_some_and(|(st, r, m)| {
                st == "True"
                    && r == "WaitingForFleetLock"
                    && m.contains(&format!("holders: {holder}"))
            }))
        })?;
    }
    assert_eq!(holders()?, std::slice::from_ref(&holder));
    // `legerctl plan` on a waiting host says the restart needs a slot it does not hold.
    let plan = legerctl(others[0], &["plan"])?;
    assert!(
        plan.contains("fleet lock: this pass would stop or restart running units (web.service), so it needs a restart slot from")
            && plan.contains("group web")
            && (plan.contains("waiting for one") || plan.contains("holds none")),
        "{plan}"
    );
    // The fleet dashboard's "holding" and "waiting" panels read these gauges.
    for tb in all {
        let (held, waiting) = if host_name(tb) == holder {
            (1, 0)
        } else {
            (0, 1)
        };
        let text = metrics(tb)?;
        for want in [
            format!("\nlegerd_fleet_lock_held {held}\n"),
            format!("\nlegerd_fleet_lock_waiting {waiting}\n"),
        ] {
            assert!(
                text.contains(&want),
                "{}: no {want:?} in\n{text}",
                tb.name()
            );
        }
    }
    for (tb, id) in all.iter().zip(&good) {
        if host_name(tb) != holder {
            assert_eq!(
                container_id(tb, "web")?.as_deref(),
                Some(id.as_str()),
                "{} never ran the bad revision",
                tb.name()
            );
            assert_eq!(active_state(tb, "web.service")?, "active");
        }
    }
    let text = legerctl(
        all.iter()
            .find(|tb| host_name(tb) == holder)
            .context("holder")?,
        &["status"],
    )?;
    assert!(text.contains("after a rollback"), "{text}");

    // A fixed revision reaches all three; the slot is free at the end.
    publish(all, &[("web/web.container", &container("web", "web v4"))])?;
    wait_until(
        Duration::from_secs(300),
        "web v4 on every host, slot free",
        || {
            for tb in all {
                let logs = tb
                    .exec_ok(&["podman", "logs", "--tail", "1", "web"])
                    .unwrap_or_default();
                if !logs.contains("web v4") || lock_state(tb)? != "free" {
                    return Ok(false);
                }
            }
            Ok(holders()?.is_empty())
        },
    )?;
    for tb in all {
        let text = metrics(tb)?;
        for want in [
            "\nlegerd_fleet_lock_held 0\n",
            "\nlegerd_fleet_lock_waiting 0\n",
        ] {
            assert!(text.contains(want), "{}: no {want:?} in\n{text}", tb.name());
        }
    }

    Ok(())
}

#[test]
fn fleet_rollout_one_host_at_a_time_and_a_bad_revision_stops_at_the_first() -> Result<()> {
    let (machines, mut net) = setup("fleet", &fleetlock_config(), |_, _| Ok(()))?;
    let [a, b, c] = &machines;
    let all = [a, b, c];
    // The lock server comes up with one slot per group.
    let server = env!("CARGO_BIN_EXE_leger-fleet-test-server");
    net.spawn(server, &[&format!("{SERVER_IP}:8080"), "1", "e2e-token"])?;
    wait_until(WAIT, "the fleet test server answers", || {
        Ok(server_get(a, "/holders").is_ok())
    })?;

    // A change to the common app: every host restarts it, one at a time.
    let before: Vec<String> = all
        .iter()
        .map(|tb| container_id(tb, "web").map(|c| c.unwrap_or_default()))
        .collect::<Result<_>>()?;
    publish(&all, &[("web/web.container", &container("web", "web v2"))])?;
    wait_until(Duration::from_secs(240), "web v2 on every host", || {
        for (tb, old) in all.iter().zip(&before) {
            match container_id(tb, "web")? {
                Some(id) if id != *old => {}
                _ => return Ok(false),
            }
            if lock_state(tb)? != "free" {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    let log = lock_log(a)?;
    let slots: Vec<&(String, String, u64)> = log
        .iter()
        .filter(|(op, _, _)| op == "grant" || op == "release")
        .collect();
    assert_eq!(slots.len(), 6, "{log:?}");
    for pair in slots.chunks(2) {
        let (grant, release) = (pair[0], pair[1]);
        assert_eq!(
            (grant.0.as_str(), release.0.as_str()),
            ("grant", "release"),
            "{log:?}"
        );
        assert_eq!(
            grant.1, release.1,
            "a slot is released by its holder: {log:?}"
        );
        let tb = all
            .iter()
            .find(|tb| host_name(tb) == grant.1)
            .context("a known host")?;
        let started = started_ms(tb, "web")?;
        assert!(
            grant.2 <= started && started <= release.2,
            "{}: web restarted at {started}, outside its slot {}..{}",
            grant.1,
            grant.2,
            release.2
        );
    }

    rollout_stops_at_first_host(&all, &|| {
        Ok(server_get(a, "/holders")?["web"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_owned))
            .collect())
    })?;
    // Reports arrive, with each host's applied revision.
    wait_until(
        WAIT,
        "a report from every host with its applied revision",
        || {
            let reports = server_get(a, "/reports")?;
            for tb in all {
                let applied = status(tb)?["status"]["appliedRevision"].clone();
                let seen = reports.as_array().into_iter().flatten().any(|r| {
                    r["fleet"]["host"] == host_name(tb).as_str() && r["appliedRevision"] == applied
                });
                if !seen {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    net.stop_all();
    Ok(())
}

fn wait_until_some<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let mut found = None;
    wait_until(timeout, what, || {
        found = f()?;
        Ok(found.is_some())
    })?;
    found.context("checked above")
}

/// The same rollout with the etcd backend: legerd takes its slot from a real etcd (Debian's
/// etcd-server) on the test network, with airlock's semaphore, and no FleetLock server.
#[test]
fn fleet_rollout_with_the_etcd_backend() -> Result<()> {
    let data = tempfile::tempdir()?;
    let data_dir = data.path().join("etcd");
    let lock = format!("etcd = [\"http://{SERVER_IP}:2379\"]\nslots = 1\n");
    let (machines, _net) = setup("fleete", &lock, |net, a| {
        let client = format!("http://{SERVER_IP}:2379");
        let peer = format!("http://{SERVER_IP}:2380");
        net.spawn(
            "etcd",
            &[
                "--name",
                "e2e",
                "--data-dir",
                data_dir.to_str().context("utf-8")?,
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("e2e={peer}"),
            ],
        )?;
        wait_until(WAIT, "etcd answers on the test network", || {
            Ok(a.exec_ok(&["curl", "-sf", &format!("{client}/health")])
                .is_ok())
        })
    })?;
    let [a, b, c] = &machines;
    let all = [a, b, c];
    // airlock's key, read back through etcd's JSON gateway from inside a machine.
    let holders = || -> Result<Vec<String>> {
        let key = "Y29tLmNvcmVvcy5haXJsb2NrL2dyb3Vwcy93ZWIvdjEvc2VtYXBob3Jl"; // com.coreos.airlock/groups/web/v1/semaphore
        let out = a.exec_ok(&[
            "sh",
            "-c",
            &format!(
                "curl -sf -X POST http://{SERVER_IP}:2379/v3/kv/range -d '{{\"key\":\"{key}\"}}' | sed -n 's/.*\"value\":\"\\([^\"]*\\)\".*/\\1/p' | base64 -d"
            ),
        ])?;
        let sem: Value =
            serde_json::from_str(&out).with_context(|| format!("semaphore {out:?}"))?;
        assert_eq!(sem["total_slots"], 1);
        Ok(sem["holders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str().map(str::to_owned))
            .collect())
    };
    // A change of the common app goes through the etcd slot on every host.
    let before: Vec<String> = all
        .iter()
        .map(|tb| container_id(tb, "web").map(|c| c.unwrap_or_default()))
        .collect::<Result<_>>()?;
    publish(&all, &[("web/web.container", &container("web", "web v2"))])?;
    wait_until(Duration::from_secs(240), "web v2 on every host", || {
        for (tb, old) in all.iter().zip(&before) {
            match container_id(tb, "web")? {
                Some(id) if id != *old => {}
                _ => return Ok(false),
            }
        }
        Ok(holders()?.is_empty())
    })?;
    rollout_stops_at_first_host(&all, &holders)
}

//! Data end to end: a SQLite database in a podman volume survives a backup, further
//! writes and a restore, and comes back exactly as it was (point in time, integrity
//! check ok); a tampered backup is refused naming the file; the backup budget refuses an
//! apply with `BackupFailed` while the app keeps running; hostile quadlets and
//! `leger.toml`s are refused whole.

mod common;

use anyhow::Result;
use common::*;
use leger_e2e::{Testbed, wait_until};

const DB_VOLUME: &str = "apps/db/db.volume";
const DB_CONTAINER: &str = "apps/db/db.container";
const OTHER: &str = "apps/other/other.container";
/// Another app reading the database's volume by its podman name.
const READER: &str = "apps/reader/reader.container";
const READER_TEXT: &str = "[Container]\nContainerName=reader\nImage=localhost/busybox:latest\nNetwork=none\n\
     Volume=systemd-db:/data:ro\n\
     Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do sleep 2 & wait $!; done'\n";
/// quadlet's default name for `db.volume`.
const VOLUME_NAME: &str = "systemd-db";
/// `db.volume` with an option a restore must keep: quadlet's `podman volume create`
/// puts the label on, and podman's defaults would not.
const DB_VOLUME_TEXT: &str = "[Volume]\nLabel=leger.e2e=kept\n";

/// The volume's `leger.e2e` label, as podman has it.
fn volume_label(tb: &Testbed) -> Result<String> {
    Ok(tb
        .exec_ok(&[
            "podman",
            "volume",
            "inspect",
            VOLUME_NAME,
            "--format",
            "{{index .Labels \"leger.e2e\"}}",
        ])?
        .trim()
        .to_owned())
}

/// A container with the database volume at /data and the machine's /usr read-only, so
/// the machine's python3 (and its sqlite3 module) runs inside it: the image is only
/// busybox, and no registry is reachable.
fn db(description: &str) -> String {
    format!(
        "[Unit]\nDescription={description}\n\n[Container]\nContainerName=db\nImage=localhost/busybox:latest\nNetwork=none\n\
         Volume=db.volume:/data\nVolume=/usr:/usr:ro\n\
         Exec=/bin/sh -c 'trap \"exit 0\" TERM; while :; do sleep 2 & wait $!; done'\n"
    )
}

/// Runs python3 with `script` inside the running db container.
fn python_in_db(tb: &Testbed, script: &str) -> Result<String> {
    Ok(tb
        .exec_ok(&[
            "podman",
            "exec",
            "db",
            "/usr/lib64/ld-linux-x86-64.so.2",
            "/usr/bin/python3",
            "-c",
            script,
        ])?
        .trim()
        .to_owned())
}

/// Inserts rows `from..to` in one transaction.
fn insert_rows(tb: &Testbed, from: u32, to: u32) -> Result<()> {
    python_in_db(
        tb,
        &format!(
            "import sqlite3\nc = sqlite3.connect('/data/app.db')\n\
             c.execute('create table if not exists t (id integer primary key, body text)')\n\
             c.executemany('insert into t values (?, ?)', [(i, 'row %d ' % i * 20) for i in range({from}, {to})])\n\
             c.commit()\nprint('ok')"
        ),
    )
    .map(drop)
}

/// `(row count, PRAGMA integrity_check)`.
fn check_db(tb: &Testbed) -> Result<(u64, String)> {
    let out = python_in_db(
        tb,
        "import sqlite3\nc = sqlite3.connect('/data/app.db')\n\
         print(c.execute('select count(*) from t').fetchone()[0], c.execute('pragma integrity_check').fetchone()[0])",
    )?;
    let (n, check) = out.split_once(' ').unwrap_or((&out, ""));
    Ok((n.parse()?, check.to_owned()))
}

fn db_installed(tb: &Testbed) -> Result<(Fleet, String)> {
    let fleet = Fleet::create(
        tb,
        &[
            (DB_VOLUME, DB_VOLUME_TEXT),
            (DB_CONTAINER, &db("e2e db v1")),
            (OTHER, &container("other", "other v1")),
        ],
    )?;
    legerctl(
        tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(tb)?;
    wait_running(tb, "db.service", "db")?;
    let v1 = fleet.head()?;
    wait_applied(tb, &v1)?;
    Ok((fleet, v1))
}

#[test]
fn data_restore_is_point_in_time_with_a_consistent_sqlite_database() -> Result<()> {
    let tb = Testbed::boot("e2e-data-pit")?;
    let (fleet, v1) = db_installed(&tb)?;
    insert_rows(&tb, 0, 500)?;
    assert_eq!(check_db(&tb)?, (500, "ok".to_owned()));
    assert_eq!(volume_label(&tb)?, "kept");

    // An update of the db app backs it up (its volume too) before applying.
    let v2 = fleet.commit(&[(DB_CONTAINER, &db("e2e db v2"))], &[], "db v2")?;
    reconcile(&tb)?;
    wait_applied(&tb, &v2)?;
    wait_running(&tb, "db.service", "db")?;
    let list: serde_json::Value =
        serde_json::from_str(&legerctl(&tb, &["backups", "db", "--json"])?)?;
    let backup = &list.as_array().expect("a list")[0];
    assert_eq!(backup["revision"], v1.as_str());
    assert_eq!(backup["volumes"], serde_json::json!([VOLUME_NAME]));
    let id = backup["id"].as_str().unwrap().to_owned();

    // Writes after the backup: more rows, and a newer file.
    insert_rows(&tb, 500, 900)?;
    python_in_db(
        &tb,
        "open('/data/newer.txt', 'w').write('after the backup')",
    )?;
    assert_eq!(check_db(&tb)?.0, 900);

    // A tampered manifest is refused before anything is touched, naming the file.
    let manifest = format!("/var/lib/leger/backups/{id}/db/manifest.json");
    let original = tb.exec_ok(&["cat", &manifest])?;
    let json: serde_json::Value = serde_json::from_str(&original)?;
    let sha = json["volumes"][0]["sha256"].as_str().unwrap().to_owned();
    let tampered = original.replacen(&sha, &"0".repeat(64), 1);
    let root = std::path::PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    let host_manifest = root.join(manifest.trim_start_matches('/'));
    std::fs::write(&host_manifest, &tampered)?;
    let db_before = container_id(&tb, "db")?;
    let out = tb.exec(&[
        &format!("{}/legerctl", leger_e2e::AGENT_DIR_INSIDE),
        "restore",
        "db",
        &id,
    ])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{VOLUME_NAME}.tar")) && err.contains("does not match its manifest"),
        "{err}"
    );
    assert_eq!(container_id(&tb, "db")?, db_before, "nothing was stopped");
    assert_eq!(active_state(&tb, "legerd.service")?, "active");
    std::fs::write(&host_manifest, &original)?;

    // The restore brings the volume back exactly as it was at the backup.
    let out = legerctl(&tb, &["restore", "db", &id])?;
    assert!(out.contains("pinned the whole host"), "{out}");
    assert!(
        out.contains("pin:     the whole host is pinned to revision"),
        "legerd's answer says so too: {out}"
    );
    wait_running(&tb, "db.service", "db")?;
    assert_eq!(
        check_db(&tb)?,
        (500, "ok".to_owned()),
        "the rows written after the backup are gone and the database is consistent"
    );
    let newer = python_in_db(&tb, "import os\nprint(os.path.exists('/data/newer.txt'))")?;
    assert_eq!(newer, "False", "a file newer than the backup is gone");
    assert_eq!(
        volume_label(&tb)?,
        "kept",
        "the volume was made again by its own quadlet, with its Label="
    );
    let journal = tb.exec_ok(&[
        "journalctl",
        "-b",
        "--no-pager",
        "-o",
        "cat",
        "MESSAGE_ID=c5c552498efb421c91bd4eedc9dfbc02",
    ])?;
    assert!(
        journal.contains(&format!("restored app db from backup {id}")),
        "{journal}"
    );
    Ok(())
}

/// A container whose python3 writes to the database without pause: a row and a commit
/// every few milliseconds, for as long as it runs.
fn busy_db(description: &str) -> String {
    format!(
        "[Unit]\nDescription={description}\n\n[Container]\nContainerName=db\nImage=localhost/busybox:latest\nNetwork=none\n\
         Volume=db.volume:/data\nVolume=/usr:/usr:ro\n\
         Exec=/usr/lib64/ld-linux-x86-64.so.2 /usr/bin/python3 -c \"import sqlite3,itertools,time; c=sqlite3.connect('/data/app.db'); \
         c.execute('create table if not exists t (id integer primary key, body text)'); \
         [(c.execute('insert into t(body) values (?)', ('x'*500,)), c.commit(), time.sleep(0.003)) for i in itertools.count()]\"\n"
    )
}

#[test]
fn data_export_is_quiesced_inside_the_applys_own_restart() -> Result<()> {
    let tb = Testbed::boot("e2e-data-quiesce")?;
    let fleet = Fleet::create(
        &tb,
        &[
            (DB_VOLUME, "[Volume]\n"),
            (DB_CONTAINER, &busy_db("e2e busy db v1")),
            (OTHER, &container("other", "other v1")),
            (READER, READER_TEXT),
        ],
    )?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    wait_running(&tb, "db.service", "db")?;
    wait_until(WAIT, "the writer has written rows", || {
        Ok(check_db(&tb).map(|(n, _)| n > 200).unwrap_or(false))
    })?;
    let started = |tb: &Testbed| -> Result<usize> {
        Ok(tb
            .unit_logs("db.service")?
            .lines()
            .filter(|l| l.starts_with("Started db.service"))
            .count())
    };
    assert_eq!(started(&tb)?, 1);
    wait_running(&tb, "reader.service", "reader")?;
    let reader_started = |tb: &Testbed| -> Result<usize> {
        Ok(tb
            .unit_logs("reader.service")?
            .lines()
            .filter(|l| l.starts_with("Started reader.service"))
            .count())
    };
    assert_eq!(reader_started(&tb)?, 1);

    let v2 = fleet.commit(&[(DB_CONTAINER, &busy_db("e2e busy db v2"))], &[], "db v2")?;
    reconcile(&tb)?;
    wait_applied(&tb, &v2)?;
    wait_running(&tb, "db.service", "db")?;
    let legerd_log = tb.unit_logs("legerd.service")?;
    let stop = legerd_log
        .find("stopped for a consistent volume export")
        .expect("db.service was stopped for the export");
    let export = legerd_log
        .find("backed up app before apply")
        .expect("the backup was taken");
    assert!(stop < export, "stopped before the export:\n{legerd_log}");
    assert_eq!(
        started(&tb)?,
        2,
        "the apply's restart is the only disruption"
    );
    // Another app's container on the same volume was stopped for the export too, and
    // started again right after it.
    wait_running(&tb, "reader.service", "reader")?;
    assert_eq!(reader_started(&tb)?, 2, "{legerd_log}");

    // The quiesced archive restores to a consistent database.
    let list: serde_json::Value =
        serde_json::from_str(&legerctl(&tb, &["backups", "db", "--json"])?)?;
    let id = list[0]["id"].as_str().unwrap().to_owned();
    // The reader holds the volume open: the restore stops it too (or the volume could
    // not be removed) and starts it again afterwards.
    let out = legerctl(&tb, &["restore", "db", &id])?;
    assert!(out.contains("reader.service"), "{out}");
    wait_running(&tb, "db.service", "db")?;
    let (rows, check) = check_db(&tb)?;
    assert!(rows > 200, "{rows}");
    assert_eq!(check, "ok");
    wait_running(&tb, "reader.service", "reader")?;
    assert_eq!(reader_started(&tb)?, 3);
    Ok(())
}

#[test]
fn data_backup_budget_refuses_an_apply_and_the_app_keeps_running() -> Result<()> {
    let tb = Testbed::boot("e2e-data-budget")?;
    let (fleet, v1) = db_installed(&tb)?;
    insert_rows(&tb, 0, 2000)?;
    // A budget smaller than the volume's archive.
    let root = std::path::PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    std::fs::write(
        root.join("etc/leger/config.d/60-budget.toml"),
        "[backups]\nmax_bytes = \"16K\"\n",
    )?;
    tb.exec_ok(&["systemctl", "restart", "legerd.service"])?;
    wait_applied(&tb, &v1)?;
    let db_id = wait_running(&tb, "db.service", "db")?;

    let v2 = fleet.commit(&[(DB_CONTAINER, &db("e2e db v2"))], &[], "db v2")?;
    reconcile(&tb)?;
    wait_until(WAIT, "Ready=False BackupFailed", || {
        let doc = status(&tb)?;
        Ok(condition(&doc, "Ready").is_some_and(|(s, r, _)| s == "False" && r == "BackupFailed"))
    })?;
    let doc = status(&tb)?;
    let (_, _, message) = condition(&doc, "Ready").unwrap();
    assert!(
        message.contains("max_bytes") && message.contains("db"),
        "{message}"
    );
    assert_eq!(applied_revision(&tb)?.as_deref(), Some(v1.as_str()));
    // The volume was never exported, yet the budget check measured it on disk and
    // refused before anything stopped: db keeps its container through every retry.
    let started = |tb: &Testbed| -> Result<usize> {
        Ok(tb
            .unit_logs("db.service")?
            .lines()
            .filter(|l| l.starts_with("Started db.service"))
            .count())
    };
    let failed_passes = |tb: &Testbed| -> Result<usize> {
        let h: serde_json::Value = serde_json::from_str(&legerctl(tb, &["history", "--json"])?)?;
        Ok(h.as_array()
            .map(|a| {
                // A repeated failure is one row with its number of runs.
                a.iter()
                    .filter(|p| p["error"].as_str().is_some_and(|e| e.contains("no room")))
                    .map(|p| p["runs"].as_u64().map_or(1, |n| n as usize))
                    .sum()
            })
            .unwrap_or(0))
    };
    wait_until(WAIT, "two more refused passes", || {
        Ok(failed_passes(&tb)? >= 3)
    })?;
    let after = wait_running(&tb, "db.service", "db")?;
    assert_eq!(started(&tb)?, 1, "started at install only");
    assert_eq!(
        after, db_id,
        "db was never stopped for a backup that cannot fit"
    );
    assert_eq!(
        check_db(&tb)?,
        (2000, "ok".to_owned()),
        "its data is untouched"
    );
    assert_eq!(
        tb.exec_ok(&["systemctl", "show", "-P", "Description", "db.service"])?
            .trim(),
        "e2e db v1"
    );
    assert_eq!(
        legerctl(&tb, &["backups"])?.trim(),
        "no backups",
        "no partial backup is left"
    );
    let metrics = tb.exec_ok(&["curl", "-sf", "http://127.0.0.1:9464/metrics"])?;
    let failed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("legerd_backups_total{outcome=\"failed\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(failed >= 3.0, "one refusal per pass: {metrics}");
    assert!(
        metrics.contains("legerd_backups_total{outcome=\"taken\"} 0"),
        "{metrics}"
    );
    let _ = v2;
    Ok(())
}

#[test]
fn data_hostile_quadlet_and_leger_toml_are_refused_whole() -> Result<()> {
    let tb = Testbed::boot("e2e-data-hostile")?;
    let (fleet, mut good, web) = web_converged(&tb)?;
    let cases: [(&str, String, &str); 3] = [
        (
            "apps/web/web.container",
            container("web", "web v2").replace("Network=none", "Network=none\nEnvironment=A=x\0y"),
            "U+0000",
        ),
        (
            "apps/web/web.container",
            container("web", "web v2")
                .replace("Network=none", "Network=none\nEnvironment=A=\u{1b}[2J"),
            "U+001B",
        ),
        (
            "apps/web/leger.toml",
            "[health]\ntimeout = \"99999999999d\"\n".to_owned(),
            "leger.toml",
        ),
    ];
    for (path, text, needle) in &cases {
        let rev = fleet.commit(&[(path, text)], &[], "hostile")?;
        reconcile(&tb)?;
        wait_until(WAIT, &format!("{rev} refused"), || {
            let doc = status(&tb)?;
            Ok(condition(&doc, "Stalled").is_some_and(|(s, r, m)| {
                s == "True" && r == "ValidationFailed" && m.contains(needle)
            }))
        })?;
        assert_eq!(applied_revision(&tb)?.as_deref(), Some(good.as_str()));
        assert_eq!(container_id(&tb, "web")?.as_deref(), Some(web.as_str()));
        assert_eq!(active_state(&tb, "legerd.service")?, "active");
        let installed = std::fs::read(tb.quadlet_dir_host().join("web/web.container"))?;
        assert!(
            !installed.contains(&0) && !installed.contains(&0x1b),
            "nothing hostile was installed"
        );
        // Back to the good content for the next case: a new commit of the same tree.
        let remove: &[&str] = if path.ends_with("leger.toml") {
            &["apps/web/leger.toml"]
        } else {
            &[]
        };
        good = fleet.commit(
            &[("apps/web/web.container", &container("web", "web v1"))],
            remove,
            "revert",
        )?;
        reconcile(&tb)?;
        wait_applied(&tb, &good)?;
    }
    Ok(())
}

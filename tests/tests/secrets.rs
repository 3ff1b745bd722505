//! Secrets end to end: legerd runs inside a real systemd + podman machine, converges a
//! local-store secret into a Podman secret, restarts only its consumer on rotation,
//! removes it when no unit needs it, and never leaks the value anywhere it writes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use common::*;
use leger_e2e::{Testbed, wait_until};

const DB: &str = "apps/db/db.container";
const WEB: &str = "apps/web/web.container";

/// A container that consumes `db-pass` as `$DB_PASS` and prints only its sha256. No
/// `$NAME` in `Exec=`: systemd would expand it in ExecStart; `$(...)` it leaves alone.
fn db_container() -> String {
    "[Unit]\nDescription=e2e db\n\n[Container]\nContainerName=db\nImage=localhost/busybox:latest\nNetwork=none\n\
     Secret=db-pass,type=env,target=DB_PASS\n\
     Exec=/bin/sh -c 'echo \"hash=$(printf %%s \"$(busybox env | busybox sed -n s/^DB_PASS=//p)\" | busybox sha256sum)\"; trap \"exit 0\" TERM; while :; do sleep 2 & wait $!; done'\n"
        .to_owned()
}

fn host(cmd: &str, input: &str) -> Result<String> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .env("INPUT", input)
        .output()
        .with_context(|| format!("cannot run {cmd}"))?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn sha256(v: &str) -> Result<String> {
    Ok(host("printf %s \"$INPUT\" | sha256sum", v)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Sets a local secret through legerctl, the value on stdin from a file in the share
/// dir (so it is never on any command line), then deletes the file.
fn set_secret(tb: &Testbed, name: &str, value: &str) -> Result<()> {
    let file = tb.share_dir_host().join("value.tmp");
    std::fs::write(&file, value)?;
    let inside = format!("{}/value.tmp", tb.share_dir_inside());
    let r = tb.exec_ok(&[
        "sh",
        "-c",
        &format!(
            "{}/legerctl secrets set {name} < {inside}",
            leger_e2e::AGENT_DIR_INSIDE
        ),
    ]);
    std::fs::remove_file(&file)?;
    r.map(drop)
}

fn db_hashes(tb: &Testbed) -> Result<String> {
    tb.exec_ok(&["journalctl", "-u", "db.service", "--no-pager", "-o", "cat"])
}

fn random_value() -> String {
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("urandom");
    format!(
        "pw-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[test]
fn secrets_install_rotate_remove_and_never_leak() -> Result<()> {
    let tb = Testbed::boot("e2e-secrets")?;
    let fleet = Fleet::create(
        &tb,
        &[(DB, &db_container()), (WEB, &container("web", "web"))],
    )?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;

    // No value anywhere yet: db waits, status names the secret and the unit; web runs.
    let web_id = wait_running(&tb, "web.service", "web")?;
    wait_until(
        WAIT,
        "Ready=False SecretMissing naming db-pass and db.service",
        || {
            let doc = status(&tb)?;
            Ok(condition(&doc, "Ready").is_some_and(|(s, r, m)| {
                s == "False"
                    && r == "SecretMissing"
                    && m.contains("db-pass")
                    && m.contains("db.service")
            }))
        },
    )?;
    assert_ne!(active_state(&tb, "db.service")?, "active");

    // Install.
    let v1 = random_value();
    set_secret(&tb, "db-pass", &v1)?;
    let db1 = wait_running(&tb, "db.service", "db")?;
    let h1 = sha256(&v1)?;
    wait_until(WAIT, "db prints the hash of v1", || {
        Ok(db_hashes(&tb)?.contains(&format!("hash={h1}")))
    })?;
    let list = legerctl(&tb, &["secrets", "list"])?;
    assert!(
        list.contains("db-pass") && list.contains("db.service") && list.contains("local"),
        "{list}"
    );
    let recipient = legerctl(&tb, &["identity"])?;
    assert!(recipient.trim().starts_with("age1"), "{recipient}");

    // Rotate: only db restarts, and the new hash shows.
    let v2 = random_value();
    set_secret(&tb, "db-pass", &v2)?;
    let h2 = sha256(&v2)?;
    wait_until(WAIT, "db prints the hash of v2", || {
        Ok(db_hashes(&tb)?.contains(&format!("hash={h2}")))
    })?;
    let db2 = wait_running(&tb, "db.service", "db")?;
    assert_ne!(db1, db2, "db restarted");
    assert_eq!(
        container_id(&tb, "web")?,
        Some(web_id.clone()),
        "web did not restart"
    );

    // A pass with nothing changed restarts nothing.
    reconcile(&tb)?;
    wait_until(WAIT, "a no-op pass", || {
        Ok(status(&tb)?["status"]["lastPass"]["outcome"] == "noop")
    })?;
    assert_eq!(container_id(&tb, "db")?, Some(db2));

    // Remove the consumer: the podman secret legerd created goes too.
    let rev = fleet.commit(&[], &[DB], "drop db")?;
    reconcile(&tb)?;
    wait_applied(&tb, &rev)?;
    wait_until(WAIT, "podman secret db-pass removed", || {
        Ok(!tb
            .exec_ok(&["podman", "secret", "ls", "--format", "{{.Name}}"])?
            .contains("db-pass"))
    })?;

    // The leak search: plaintext and base64 of both values, everywhere legerd writes.
    let mut needles = Vec::new();
    for v in [&v1, &v2] {
        needles.push(v.clone());
        needles.push(host("printf %s \"$INPUT\" | base64 -w0", v)?);
    }
    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        (
            "journal".into(),
            tb.exec_ok(&["journalctl", "-b", "--no-pager", "-o", "json"])?
                .into_bytes(),
        ),
        (
            "legerd stderr".into(),
            tb.exec_ok(&[
                "journalctl",
                "-u",
                "legerd.service",
                "--no-pager",
                "-o",
                "verbose",
            ])?
            .into_bytes(),
        ),
        (
            "status".into(),
            legerctl(&tb, &["status", "--json"])?.into_bytes(),
        ),
        (
            "history".into(),
            legerctl(&tb, &["history", "--json"])?.into_bytes(),
        ),
        (
            "secrets list".into(),
            legerctl(&tb, &["secrets", "list", "--json"])?.into_bytes(),
        ),
        (
            "metrics".into(),
            tb.exec_ok(&["curl", "-sf", "http://127.0.0.1:9464/metrics"])?
                .into_bytes(),
        ),
    ];
    let root = PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    for f in ["legerd.db", "legerd.db-wal", "legerd.db-shm"] {
        let p = root.join("var/lib/leger").join(f);
        if let Ok(bytes) = std::fs::read(&p) {
            haystacks.push((p.display().to_string(), bytes));
        }
    }
    for (what, hay) in &haystacks {
        for n in &needles {
            let hit = hay.windows(n.len()).any(|w| w == n.as_bytes());
            assert!(!hit, "the secret (or its base64) leaked into {what}");
        }
    }
    Ok(())
}

#[test]
fn leger_toml_maps_a_secret_to_another_source_name() -> Result<()> {
    let tb = Testbed::boot("e2e-secretmap")?;
    let fleet = Fleet::create(
        &tb,
        &[
            (DB, &db_container()),
            // The source knows the value as team-db-password, the quadlet as db-pass.
            (
                "apps/db/leger.toml",
                "[secrets.names]\ndb-pass = \"team-db-password\"\n",
            ),
        ],
    )?;
    legerctl(
        &tb,
        &["set-desired", "git", &fleet.url_inside(), "--path", "apps"],
    )?;
    start_legerd(&tb)?;
    let value = random_value();
    set_secret(&tb, "team-db-password", &value)?;
    let want = format!("hash={}", sha256(&value)?);
    wait_until(WAIT, "db prints the hash of the mapped secret", || {
        Ok(db_hashes(&tb)?.contains(&want))
    })?;
    let list = legerctl(&tb, &["secrets", "list", "--json"])?;
    assert!(!list.contains(&value), "never a value in secrets list");
    Ok(())
}

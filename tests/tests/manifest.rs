//! End-to-end: a `legerctl publish` tree, signed, served inside the machine by a real
//! static server (`python3 -m http.server`), converges apps through legerd's manifest
//! source; publishing a new version updates them, and an idle poll is a 304.

mod common;

use anyhow::{Context, Result};
use common::*;
use leger_e2e::{SHARE_DIR_INSIDE, Testbed, wait_until};

const PORT: &str = "8080";

/// Writes the apps folder on the host side of the share dir.
fn write_apps(tb: &Testbed, files: &[(&str, &str)]) -> Result<()> {
    for (path, content) in files {
        let p = tb.share_dir_host().join("apps").join(path);
        std::fs::create_dir_all(p.parent().expect("parent"))?;
        std::fs::write(&p, content)?;
    }
    Ok(())
}

/// Publishes `/srv/leger/apps` into `/srv/leger/public` inside the machine; returns the
/// revision legerctl printed.
fn publish(tb: &Testbed) -> Result<String> {
    let out = legerctl(
        tb,
        &[
            "publish",
            &format!("{SHARE_DIR_INSIDE}/apps"),
            &format!("{SHARE_DIR_INSIDE}/public"),
            "--sign",
            &format!("{SHARE_DIR_INSIDE}/leger.key"),
        ],
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("revision: "))
        .map(ToOwned::to_owned)
        .with_context(|| format!("no revision in publish output:\n{out}"))
}

#[test]
fn manifest_published_tree_converges_and_updates() -> Result<()> {
    let tb = Testbed::boot("e2e-manifest")?;
    write_apps(
        &tb,
        &[
            ("web/web.container", &container("web", "web v1")),
            ("api/api.container", &container("api", "api v1")),
        ],
    )?;
    let keygen = legerctl(&tb, &["keygen", &format!("{SHARE_DIR_INSIDE}/leger")])?;
    let public_key = keygen
        .split_whitespace()
        .last()
        .context("keygen printed no public key")?
        .to_owned();
    let v1 = publish(&tb)?;
    assert!(v1.starts_with("v1@sha256:"), "{v1}");

    tb.run_service(
        "manifest-http.service",
        &[],
        &[
            "python3",
            "-m",
            "http.server",
            PORT,
            "--bind",
            "127.0.0.1",
            "--directory",
            &format!("{SHARE_DIR_INSIDE}/public"),
        ],
    )?;
    let base = format!("http://127.0.0.1:{PORT}/");
    wait_until(WAIT, "the static server answers", || {
        Ok(tb
            .exec(&["curl", "-sf", &format!("{base}latest.json")])?
            .status
            .success())
    })?;

    legerctl(
        &tb,
        &[
            "set-desired",
            "manifest",
            &base,
            "--public-key",
            &public_key,
        ],
    )?;
    start_legerd(&tb)?;
    wait_running(&tb, "web.service", "web")?;
    wait_running(&tb, "api.service", "api")?;
    wait_applied(&tb, &v1)?;
    let doc = status(&tb)?;
    assert_eq!(condition(&doc, "Ready").unwrap().0, "True", "{doc:#}");
    assert_eq!(doc["spec"]["sourceKind"], "manifest", "{doc:#}");

    // Idle polls: each is one request for latest.json, answered 304 by the static
    // server (python's http.server validates with Last-Modified / If-Modified-Since).
    let served_before = tb.unit_logs("manifest-http.service")?.lines().count();
    let pass_before = status(&tb)?["status"]["lastPass"].clone();
    reconcile(&tb)?;
    wait_until(WAIT, "a new pass recorded", || {
        Ok(status(&tb)?["status"]["lastPass"] != pass_before)
    })?;
    wait_until(WAIT, "the server logged the poll", || {
        Ok(tb.unit_logs("manifest-http.service")?.lines().count() > served_before)
    })?;
    let logs = tb.unit_logs("manifest-http.service")?;
    let new: Vec<&str> = logs.lines().skip(served_before).collect();
    assert!(
        new.iter()
            .all(|l| l.contains("\"GET /latest.json HTTP/1.1\" 304 ")),
        "an idle poll must be only 304s for latest.json: {new:#?}"
    );
    let doc = status(&tb)?;
    assert_eq!(doc["status"]["appliedRevision"], v1.as_str(), "{doc:#}");

    // A new version: only web changes.
    let api1 = container_id(&tb, "api")?;
    write_apps(&tb, &[("web/web.container", &container("web", "web v2"))])?;
    let v2 = publish(&tb)?;
    assert!(v2.starts_with("v2@sha256:"), "{v2}");
    reconcile(&tb)?;
    wait_applied(&tb, &v2)?;
    wait_until(WAIT, "web v2 output", || {
        Ok(tb.unit_logs("web.service")?.contains("web v2"))
    })?;
    assert_eq!(
        container_id(&tb, "api")?,
        api1,
        "api must keep its container"
    );
    // Both versions stay published.
    let root = tb.share_dir_host().join("public");
    assert!(root.join("v1/manifest.json").exists() && root.join("v2/manifest.json.sig").exists());
    Ok(())
}

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
    publish_with(tb, &[])
}

/// [`publish`] with more arguments (`--overlay`, `--host`, `--group`).
fn publish_with(tb: &Testbed, extra: &[&str]) -> Result<String> {
    let apps = format!("{SHARE_DIR_INSIDE}/apps");
    let public = format!("{SHARE_DIR_INSIDE}/public");
    let key = format!("{SHARE_DIR_INSIDE}/leger.key");
    let mut args = vec!["publish", &apps, &public, "--sign", &key];
    args.extend_from_slice(extra);
    let out = legerctl(tb, &args)?;
    out.lines()
        .find_map(|l| l.strip_prefix("revision: "))
        .map(ToOwned::to_owned)
        .with_context(|| format!("no revision in publish output:\n{out}"))
}

/// `legerctl keygen` in the share dir; returns the public key.
fn keygen(tb: &Testbed) -> Result<String> {
    let keygen = legerctl(tb, &["keygen", &format!("{SHARE_DIR_INSIDE}/leger")])?;
    Ok(keygen
        .split_whitespace()
        .last()
        .context("keygen printed no public key")?
        .to_owned())
}

/// Serves the published tree with a real static server inside; returns its base URL.
fn serve_public(tb: &Testbed) -> Result<String> {
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
    Ok(base)
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
    let public_key = keygen(&tb)?;
    let v1 = publish(&tb)?;
    assert!(v1.starts_with("v1@sha256:"), "{v1}");
    let base = serve_public(&tb)?;

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

/// One manifest for a whole fleet: `legerctl publish --overlay` keeps the group and
/// host folders, and legerd (host `h1`, group `eu`) composes exactly its own apps from
/// it: the common `web` replaced by the eu layer's, the common `cache` removed by its
/// host layer, its host's `local` added, and nothing of group `us` or host `h2`.
#[test]
fn manifest_with_overlays_gives_the_host_exactly_its_apps() -> Result<()> {
    let tb = Testbed::boot("e2e-manifest-overlay")?;
    write_apps(
        &tb,
        &[
            ("web/web.container", &container("web", "web common")),
            ("cache/cache.container", &container("cache", "cache common")),
            (
                "groups/eu/apps/web/web.container",
                &container("web", "web eu"),
            ),
            (
                "groups/us/apps/extra/extra.container",
                &container("extra", "extra us"),
            ),
            ("hosts/h1/apps/cache/leger.toml", "enabled = false\n"),
            (
                "hosts/h1/apps/local/local.container",
                &container("local", "local h1"),
            ),
            (
                "hosts/h2/apps/other/other.container",
                &container("other", "other h2"),
            ),
        ],
    )?;
    let root = std::path::PathBuf::from(tb.env_var("LEGER_TESTBED_ROOT"));
    std::fs::create_dir_all(root.join("etc/leger/config.d"))?;
    std::fs::write(
        root.join("etc/leger/config.d/60-fleet.toml"),
        "[fleet]\nhost = \"h1\"\ngroups = [\"eu\"]\n",
    )?;
    let public_key = keygen(&tb)?;
    let overlays = [
        "--overlay",
        "groups/{group}/apps",
        "--overlay",
        "hosts/{host}/apps",
    ];
    let mut args = overlays.to_vec();
    args.extend(["--host", "h1", "--group", "eu"]);
    let v1 = publish_with(&tb, &args)?;
    let public = tb.share_dir_host().join("public/v1");
    for kept in [
        "groups/eu/apps/web/web.container",
        "groups/us/apps/extra/extra.container",
        "hosts/h1/apps/cache/leger.toml",
        "hosts/h2/apps/other/other.container",
    ] {
        assert!(public.join(kept).exists(), "publish keeps {kept}");
    }
    let base = serve_public(&tb)?;
    let mut set = vec![
        "set-desired",
        "manifest",
        &base,
        "--public-key",
        &public_key,
    ];
    set.extend_from_slice(&overlays);
    legerctl(&tb, &set)?;
    start_legerd(&tb)?;
    wait_running(&tb, "web.service", "web")?;
    wait_running(&tb, "local.service", "local")?;
    wait_until(
        WAIT,
        "a revision of v1 with its composition applied",
        || Ok(applied_revision(&tb)?.is_some_and(|r| r.starts_with(&format!("{v1}+o")))),
    )?;
    let doc = status(&tb)?;
    assert_eq!(condition(&doc, "Ready").unwrap().0, "True", "{doc:#}");
    let apps: Vec<(String, String)> = doc["status"]["apps"]
        .as_array()
        .context("apps in status")?
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default().to_owned(),
                a["layer"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        apps,
        [
            ("local".to_owned(), "hosts/h1/apps".to_owned()),
            ("web".to_owned(), "groups/eu/apps".to_owned()),
        ],
        "{doc:#}"
    );
    wait_until(WAIT, "web runs the eu layer's version", || {
        Ok(tb.unit_logs("web.service")?.contains("web eu"))
    })?;
    assert!(!tb.unit_logs("web.service")?.contains("web common"));
    for absent in ["cache", "extra", "other"] {
        assert_eq!(container_id(&tb, absent)?, None, "{absent} must not run");
        let quadlet = root.join(format!("etc/containers/systemd/{absent}"));
        assert!(
            !quadlet.exists(),
            "{} must not be installed",
            quadlet.display()
        );
    }
    Ok(())
}

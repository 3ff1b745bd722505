//! `legerctl publish` and `keygen` on real folders, checked with legerd's own
//! verification functions and minisign.

use std::path::{Path, PathBuf};

use leger_api_types::manifest::{Latest, Manifest};
use leger_config::Limits;
use legerctl::publish::{PublishError, keygen, load_secret_key, publish};
use legerd::source::manifest::{check_entries, verify_file};

fn limits() -> Limits {
    Limits {
        max_file_size: 1024 * 1024,
        max_files: 1000,
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/apps")
}

fn read_manifest(dir: &Path) -> (Vec<u8>, Manifest) {
    let bytes = std::fs::read(dir.join("manifest.json")).unwrap();
    let m = serde_json::from_slice(&bytes).unwrap();
    (bytes, m)
}

#[test]
fn publish_writes_a_tree_legerd_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = keygen(&tmp.path().join("k")).unwrap();
    let sk = load_secret_key(&keys.secret).unwrap();
    let out = tmp.path().join("out");
    let p = publish(
        &examples(),
        &out,
        Some(&sk),
        "2026-01-01T00:00:00Z",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
    )
    .unwrap();
    assert_eq!(p.version, 1);
    assert_eq!(p.apps, vec!["counter".to_owned(), "hello".to_owned()]);

    let latest: Latest =
        serde_json::from_slice(&std::fs::read(out.join("latest.json")).unwrap()).unwrap();
    assert_eq!(
        latest,
        Latest {
            version: 1,
            manifest_url: "v1/manifest.json".into()
        }
    );
    let (bytes, m) = read_manifest(&out.join("v1"));
    assert_eq!(m.files.len(), p.files);
    check_entries(&m, &limits()).unwrap();
    for f in &m.files {
        verify_file(f, &std::fs::read(out.join("v1").join(&f.name)).unwrap()).unwrap();
    }
    let pk = minisign_verify::PublicKey::from_base64(&keys.public_base64).unwrap();
    let sig_text = std::fs::read_to_string(out.join("v1/manifest.json.sig")).unwrap();
    let sig = minisign_verify::Signature::decode(&sig_text).unwrap();
    pk.verify(&bytes, &sig, false).unwrap();
    assert!(pk.verify(b"other bytes", &sig, false).is_err());
}

#[test]
fn publish_is_deterministic_apart_from_generated_at() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    publish(
        &examples(),
        &a,
        None,
        "2026-01-01T00:00:00Z",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
    )
    .unwrap();
    publish(
        &examples(),
        &b,
        None,
        "2026-01-01T00:00:00Z",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
    )
    .unwrap();
    for rel in [
        "latest.json",
        "v1/manifest.json",
        "v1/hello/hello.container",
    ] {
        assert_eq!(
            std::fs::read(a.join(rel)).unwrap(),
            std::fs::read(b.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let c = tmp.path().join("c");
    publish(
        &examples(),
        &c,
        None,
        "2027-01-01T00:00:00Z",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
    )
    .unwrap();
    let (_, ma) = read_manifest(&a.join("v1"));
    let (_, mc) = read_manifest(&c.join("v1"));
    assert_ne!(ma.generated_at, mc.generated_at);
    assert_eq!(ma.files, mc.files);
}

#[test]
fn publish_adds_a_version_and_keeps_the_old_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let apps = tmp.path().join("apps");
    copy_dir(&examples(), &apps);
    let out = tmp.path().join("out");
    publish(
        &apps,
        &out,
        None,
        "t1",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
    )
    .unwrap();
    std::fs::write(apps.join("hello/hello.env"), "GREETING=v2\n").unwrap();
    let p = publish(
        &apps,
        &out,
        None,
        "t2",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
    )
    .unwrap();
    assert_eq!(p.version, 2);
    assert!(out.join("v1/manifest.json").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("v2/hello/hello.env")).unwrap(),
        "GREETING=v2\n"
    );
    let latest: Latest =
        serde_json::from_slice(&std::fs::read(out.join("latest.json")).unwrap()).unwrap();
    assert_eq!(latest.version, 2);
    // No staging folder is left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn publish_refuses_apps_legerd_would_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let apps = tmp.path().join("apps");
    std::fs::create_dir_all(apps.join("web")).unwrap();
    std::fs::write(
        apps.join("web/web.container"),
        "[Container]\nImage=nginx\nEnvironmentFile=../../etc/shadow\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let e = publish(
        &apps,
        &out,
        None,
        "t",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
    )
    .unwrap_err();
    assert!(matches!(e, PublishError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("web"), "{e}");
    assert!(!out.join("latest.json").exists());
}

#[test]
fn keygen_refuses_to_overwrite_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    keygen(&tmp.path().join("k")).unwrap();
    let e = keygen(&tmp.path().join("k")).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tmp.path().join("k.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn publish_keeps_overlay_folders_and_checks_one_composition() {
    use legerctl::publish::{OverlayCheck, publish_with};
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let ok = "[Container]\nImage=localhost/busybox:latest\n";
    write("web/web.container", ok);
    write("groups/eu/apps/cache/cache.container", ok);
    write(
        "hosts/h1/apps/web/web.container",
        "[Container]\nImage=x\nNotAKey=1\n",
    );
    write("hosts/h2/apps/web/leger.toml", "enabled = false\n");
    let check = |host: &str| OverlayCheck {
        overlays: vec!["groups/{group}/apps".into(), "hosts/{host}/apps".into()],
        host: Some(host.into()),
        groups: vec!["eu".into()],
    };
    // h1's composition carries a broken quadlet: refused, naming it, nothing written.
    let out = tmp.path().join("out");
    let e = publish_with(
        &src,
        &out,
        None,
        "2026-01-01T00:00:00Z",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
        &check("h1"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("web/web.container") && e.contains("NotAKey"),
        "{e}"
    );
    assert!(!out.join("latest.json").exists());
    // h2's composition is fine; the published tree keeps every overlay folder.
    let p = publish_with(
        &src,
        &out,
        None,
        "2026-01-01T00:00:00Z",
        &limits(),
        legerd::quadlet::KeyTable::newest(),
        &check("h2"),
    )
    .unwrap();
    assert_eq!(p.apps, ["cache"]);
    let (_, m) = read_manifest(&out.join("v1"));
    let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "groups/eu/apps/cache/cache.container",
            "hosts/h1/apps/web/web.container",
            "hosts/h2/apps/web/leger.toml",
            "web/web.container"
        ]
    );
    check_entries(&m, &limits()).unwrap();
}

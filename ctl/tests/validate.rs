//! `legerctl validate` as a user runs it: the binary on a folder of apps, with no
//! legerd, no root and (unless a test puts one on PATH) no podman.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Runs legerctl validate in `dir` with `path` as the only PATH.
fn validate(dir: &Path, path: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_legerctl"))
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("LEGER_SOCKET")
        .env_remove("LEGER_DESIRED_FILE")
        .arg("validate")
        .args(args)
        .output()
        .unwrap()
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const RELOAD: &str = "[Container]\nImage=localhost/web:1\nReloadCmd=/bin/true\n";

#[test]
fn validate_follows_the_chosen_podman() {
    let tmp = tempfile::tempdir().unwrap();
    let apps = tmp.path().join("apps");
    let empty = tmp.path().join("bin");
    std::fs::create_dir_all(&empty).unwrap();
    write(&apps, &[("web/web.container", RELOAD)]);

    let o = validate(&apps, &empty, &["--podman", "5.4"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert_eq!(
        out(&o),
        "web/web.container:3: ReloadCmd= in [Container] needs podman ≥ 5.5; validating for podman 5.4: upgrade podman or remove the key\ninvalid: 1 problem to fix; validated for podman 5.4 (--podman)\n"
    );

    let o = validate(&apps, &empty, &["--podman", "5.5"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert_eq!(
        out(&o),
        "valid: 1 app (web); validated for podman 5.5 (--podman)\n"
    );

    // No podman on PATH: the newest known release, said so.
    let o = validate(&tmp.path().join("apps"), &empty, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("the newest release legerd knows (no usable podman here"),
        "{}",
        out(&o)
    );
}

#[test]
fn validate_uses_the_local_podman_and_prints_json() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Only `podman --version` is faked: it is all validate asks podman.
    let podman = bin.join("podman");
    std::fs::write(&podman, "#!/bin/sh\necho 'podman version 5.4.2'\n").unwrap();
    std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
    write(
        tmp.path(),
        &[
            ("apps/web/web.container", RELOAD),
            (
                "apps/web/site.quadlets",
                "# FileName=db\n[Container]\nImage=x\nGroup=10\n",
            ),
        ],
    );
    let o = validate(tmp.path(), &bin, &["--json", "apps"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["podman"]["version"], "5.4.2");
    assert_eq!(v["podman"]["basis"], "local");
    assert_eq!(v["podman"]["keyTables"], "v5.4.2");
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0]["file"], "web/site.quadlets");
    assert_eq!(errors[0]["line"], 4);
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("db.container: Group= without User="),
        "{errors:?}"
    );
    assert_eq!(errors[1]["file"], "web/web.container");
    assert!(
        errors[1]["message"]
            .as_str()
            .unwrap()
            .contains("this host runs 5.4.2"),
        "{errors:?}"
    );
    // --output gives the same report as a document with apiVersion and kind.
    let o = validate(tmp.path(), &bin, &["-o", "yaml", "apps"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let y: serde_json::Value = yaml_serde::from_str(&out(&o)).unwrap();
    assert_eq!(y["apiVersion"], "leger.run/v1alpha1");
    assert_eq!(y["kind"], "ValidationReport");
    assert_eq!(y["errors"], v["errors"]);
    let o = validate(tmp.path(), &bin, &["--output", "json", "--json", "apps"]);
    assert_eq!(o.status.code(), Some(2), "--json and --output conflict");
}

#[test]
fn validate_refuses_bad_podman_versions_as_usage() {
    let tmp = tempfile::tempdir().unwrap();
    for (arg, says) in [
        ("3.0", "quadlet arrived in podman 4.4"),
        ("banana", "'banana' is not a podman version"),
    ] {
        let o = validate(tmp.path(), tmp.path(), &["--podman", arg]);
        assert_eq!(o.status.code(), Some(2), "{arg}: {}", err(&o));
        assert!(err(&o).contains(says), "{arg}: {}", err(&o));
    }
}

#[test]
fn validate_reports_a_missing_reference_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[(
            "web/web.container",
            "[Container]\nImage=x\nNetwork=shared.network\n",
        )],
    );
    let o = validate(tmp.path(), tmp.path(), &["--podman", "5.4.2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).starts_with("web/web.container:3: Network=shared.network: shared.network is not in the tree: add it, or if the host has it installed outside leger, check on the host instead"),
        "{}",
        out(&o)
    );
}

/// A tree with overlays: `web` in the common layer, `cache` for group eu, and host h1
/// replacing `web` with a broken quadlet.
fn overlay_tree(root: &Path) {
    let ok = "[Container]\nImage=localhost/busybox:latest\n";
    write(
        root,
        &[
            ("web/web.container", ok),
            ("groups/eu/apps/cache/cache.container", ok),
            (
                "hosts/h1/apps/web/web.container",
                "[Container]\nImage=x\nNotAKey=1\n",
            ),
        ],
    );
}

fn for_host(host: &str) -> Vec<String> {
    [
        "--root",
        ".",
        "--overlay",
        "groups/{group}/apps",
        "--overlay",
        "hosts/{host}/apps",
        "--group",
        "eu",
        "--podman",
        "5.4",
        "--host",
        host,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn validate_checks_one_hosts_composition() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    let empty = tmp.path().join("bin");
    std::fs::create_dir_all(&empty).unwrap();
    overlay_tree(&root);

    // h1's layer replaces web with a broken quadlet: refused, naming the real file.
    let args = for_host("h1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = validate(&root, &empty, &args);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert_eq!(
        out(&o),
        "hosts/h1/apps/web/web.container:3: unknown key 'NotAKey' in [Container]: no podman release's quadlet supports it\n\
         composition: host h1, groups eu; layers . < groups/eu/apps < hosts/h1/apps\n\
         invalid: 1 problem to fix; validated for podman 5.4 (--podman)\n"
    );

    // h2 gets the common web and the group's cache.
    let args = for_host("h2");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = validate(&root, &empty, &args);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert_eq!(
        out(&o),
        "composition: host h2, groups eu; layers . < groups/eu/apps < hosts/h2/apps\n\
         valid: 2 apps (cache, web); validated for podman 5.4 (--podman)\n"
    );
    args.push("--json");
    let o = validate(&root, &empty, &args);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["composition"]["host"], "h2");
    assert_eq!(
        v["composition"]["layers"],
        serde_json::json!(["groups/eu/apps", "hosts/h2/apps"])
    );

    // --path: the common layer is a folder under the root; diagnostics name the file.
    write(
        &root,
        &[("base/api/api.container", "[Container]\nImage=x\nBad=1\n")],
    );
    let o = validate(
        &root,
        &empty,
        &["--root", ".", "--path", "base", "--podman", "5.4"],
    );
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).starts_with("base/api/api.container:3: unknown key 'Bad'"),
        "{}",
        out(&o)
    );
}

#[test]
fn validate_refuses_bad_overlays_and_names_as_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    let empty = tmp.path().join("bin");
    std::fs::create_dir_all(&empty).unwrap();
    overlay_tree(&root);
    for (args, named) in [
        (
            &["--root", ".", "--overlay", "hosts/{hostname}/apps"][..],
            "{hostname}",
        ),
        (&["--root", ".", "--overlay", "hosts/../apps"][..], "'..'"),
        (&["--root", ".", "--host", "a/b"][..], "\"a/b\""),
        (&["--root", ".", "--path", "../x"][..], "../x"),
        (&["--host", "h1", "."][..], "--host"),
    ] {
        let o = validate(&root, &empty, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}{}", out(&o), err(&o));
        assert!(err(&o).contains(named), "{args:?}: {}", err(&o));
        assert!(out(&o).is_empty(), "{args:?}: {}", out(&o));
    }
}

/// An installed podman legerctl cannot use (older than quadlet, as Ubuntu 22.04's 3.4.4,
/// or a `--version` it cannot read) is said to be unusable, and why, not "no podman".
#[test]
fn validate_says_why_an_installed_podman_is_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    write(tmp.path(), &[("apps/web/web.container", RELOAD)]);
    for (prints, says) in [
        ("podman version 3.4.4", "quadlet arrived in podman 4.4"),
        ("podman version banana", "\"podman version banana\""),
    ] {
        let podman = bin.join("podman");
        std::fs::write(&podman, format!("#!/bin/sh\necho '{prints}'\n")).unwrap();
        std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = validate(tmp.path(), &bin, &["apps"]);
        assert_eq!(o.status.code(), Some(0), "{prints}: {}{}", out(&o), err(&o));
        assert!(
            err(&o).contains("not using the local podman") && err(&o).contains(says),
            "{prints}: {}",
            err(&o)
        );
        assert!(
            out(&o).contains("the newest release legerd knows (no usable podman here"),
            "{prints}: {}",
            out(&o)
        );
    }
}

/// The bundle items of the bad-input list, through the binary: each refused at
/// the bundle's line with what to do, and nothing else of the tree hides them.
#[test]
fn validate_refuses_bad_bundles_at_their_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let apps = tmp.path().join("apps");
    let empty = tmp.path().join("bin");
    std::fs::create_dir_all(&empty).unwrap();
    let mut bytes = b"# FileName=../../etc/evil\n[Container]\nImage=x\n---\n\n---\n# FileName=ok\n[Volume]\n---\n# FileName=bin\n[Volume]\nLabel=".to_vec();
    bytes.extend([0xff, 0xfe, b'\n']);
    std::fs::create_dir_all(apps.join("web")).unwrap();
    std::fs::write(apps.join("web/site.quadlets"), &bytes).unwrap();
    let o = validate(&apps, &empty, &["--podman", "5.8"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert_eq!(
        out(&o),
        "web/site.quadlets:1: FileName=../../etc/evil escapes the app folder: a bundle's quadlets stay in its folder, so use a plain name\n\
         web/site.quadlets:5: empty section in the bundle: remove the extra --- line\n\
         web/site.quadlets:10: this section of the bundle is not valid UTF-8 text: save the bundle as UTF-8\n\
         invalid: 3 problems to fix; validated for podman 5.8 (--podman)\n"
    );
    // Nothing was written anywhere: validate only reads.
    let mut seen: Vec<String> = walk(tmp.path());
    seen.sort();
    assert_eq!(seen, ["apps/web/site.quadlets"]);
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

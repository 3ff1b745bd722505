//! The dir source against real folders in a tempdir.

use std::os::unix::fs::symlink;
use std::path::Path;

use leger_api_types::desired::DirSourceSpec;
use leger_api_types::status::reason;
use leger_config::Limits;
use leger_config::fs::TEMP_PREFIX;
use legerd::source::dir::DirSource;
use legerd::source::{SourceError, TreeProblem};

fn limits() -> Limits {
    Limits {
        max_file_size: 1024 * 1024,
        max_files: 10_000,
    }
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn source(root: &Path) -> DirSource {
    DirSource::new(
        DirSourceSpec {
            path: root.to_owned(),
            overlays: Vec::new(),
        },
        limits(),
    )
}

#[test]
fn dir_source_reads_tree_and_skips_hidden_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("apps");
    write(&root, "web/web.container", "[Container]\nImage=nginx\n");
    write(&root, "web/conf/nginx.conf", "server {}\n");
    write(&root, "web/.web.container.swp", "swap");
    write(&root, ".git/HEAD", "ref: refs/heads/main\n");
    write(
        &root,
        &format!("web/{TEMP_PREFIX}1-web.env"),
        "half-written",
    );
    symlink("web.container", root.join("web/alias.container")).unwrap();

    let s = source(&root).fetch().unwrap();
    assert_eq!(
        s.files.keys().collect::<Vec<_>>(),
        [
            "web/alias.container",
            "web/conf/nginx.conf",
            "web/web.container"
        ]
    );
    assert_eq!(
        &*s.files["web/alias.container"],
        b"[Container]\nImage=nginx\n"
    );
    assert!(s.revision.starts_with("sha256:") && s.revision.len() == 7 + 64);
}

#[test]
fn dir_source_revision_is_stable_and_follows_content() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "web/web.container", "[Container]\nImage=nginx\n");
    let src = source(t.path());
    let first = src.fetch().unwrap().revision;
    assert_eq!(src.fetch().unwrap().revision, first);

    // Hidden files do not count.
    write(t.path(), "web/.notes", "x");
    assert_eq!(src.fetch().unwrap().revision, first);

    write(t.path(), "web/web.container", "[Container]\nImage=caddy\n");
    let second = src.fetch().unwrap().revision;
    assert_ne!(second, first);

    // A rename with the same bytes is a change too.
    std::fs::rename(
        t.path().join("web/web.container"),
        t.path().join("web/site.container"),
    )
    .unwrap();
    assert_ne!(src.fetch().unwrap().revision, second);
}

#[test]
fn dir_source_symlink_escape_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("apps");
    write(&root, "web/web.container", "[Container]\n");
    write(t.path(), "secret", "do not read");
    symlink("../../secret", root.join("web/web.env")).unwrap();
    let e = source(&root).fetch().unwrap_err();
    match &e {
        SourceError::InvalidTree { path, problem } => {
            assert_eq!(path, "web/web.env");
            assert!(
                matches!(problem, TreeProblem::SymlinkEscapes { .. }),
                "{problem:?}"
            );
        }
        other => panic!("expected InvalidTree, got {other:?}"),
    }
    assert_eq!(e.reason(), reason::VALIDATION_FAILED);

    let abs = t.path().join("abs");
    write(&abs, "web/web.container", "[Container]\n");
    symlink("/etc/hostname", abs.join("web/host")).unwrap();
    assert!(matches!(
        source(&abs).fetch(),
        Err(SourceError::InvalidTree {
            problem: TreeProblem::SymlinkEscapes { .. },
            ..
        })
    ));
}

#[test]
fn dir_source_file_over_the_limit_is_refused() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "web/big", &"x".repeat(2048));
    let src = DirSource::new(
        DirSourceSpec {
            path: t.path().to_owned(),
            overlays: Vec::new(),
        },
        Limits {
            max_file_size: 1024,
            max_files: 10,
        },
    );
    let e = src.fetch().unwrap_err();
    assert!(
        matches!(&e, SourceError::InvalidTree { path, problem: TreeProblem::TooLarge { size: 2048, limit: 1024 } } if path == "web/big"),
        "{e:?}"
    );
}

#[test]
fn dir_source_missing_folder_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nowhere");
    let e = source(&missing).fetch().unwrap_err();
    assert!(matches!(e, SourceError::DirNotFound { .. }), "{e:?}");
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE);
    let msg = e.to_string();
    assert!(
        msg.contains(missing.to_str().unwrap()) && msg.contains("does not exist"),
        "{msg}"
    );
}

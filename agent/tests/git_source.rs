//! The git source against real repositories: bare repos made with the git CLI,
//! fetched over file://, a plain path, and smart HTTP on 127.0.0.1.

mod support;

use std::path::Path;

use leger_api_types::desired::GitSourceSpec;
use leger_api_types::status::reason;
use leger_config::Limits;
use legerd::source::git::GitSource;
use legerd::source::{SourceError, TreeProblem};
use support::git_http::GitHttpServer;
use support::upstream::{Upstream, git};

fn limits() -> Limits {
    Limits {
        max_file_size: 1024 * 1024,
        max_files: 10_000,
    }
}

fn spec(url: &str, reference: &str, path: Option<&str>) -> GitSourceSpec {
    let mut s = GitSourceSpec::new(url);
    s.reference = reference.to_owned();
    s.path = path.map(str::to_owned);
    s
}

fn text(snapshot: &legerd::model::Snapshot, path: &str) -> String {
    String::from_utf8(snapshot.files[path].to_vec()).unwrap()
}

/// An upstream with `apps/web/web.container`, `apps/web/web.env` and a file outside
/// `apps/`, committed on `main`.
fn seeded(root: &Path) -> (Upstream, String) {
    let up = Upstream::new(root, "fleet");
    up.write("apps/web/web.container", "[Container]\nImage=nginx\n");
    up.write("apps/web/web.env", "A=1\n");
    up.write("README.md", "not an app\n");
    let rev = up.commit("first");
    (up, rev)
}

#[test]
fn git_source_reads_subfolder_at_branch() {
    let t = tempfile::tempdir().unwrap();
    let (up, rev) = seeded(t.path());
    // A submodule entry (gitlink) is ignored rather than fetched.
    git(
        &up.work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{rev},apps/vendored"),
        ],
    );
    let rev = up.commit("add a submodule entry");
    let state = t.path().join("state/nested");
    let mut src = GitSource::new(spec(&up.file_url(), "main", Some("apps")), &state, limits());
    let fetched = src.fetch(None).unwrap();
    assert_eq!(fetched.snapshot.revision, rev);
    assert_eq!(
        fetched.snapshot.files.keys().collect::<Vec<_>>(),
        ["web/web.container", "web/web.env"]
    );
    assert_eq!(text(&fetched.snapshot, "web/web.env"), "A=1\n");
    assert!(fetched.stats.contacted_remote && fetched.stats.received_pack);
    assert!(src.cache_dir().starts_with(state.join("git")));
}

#[test]
fn git_source_reads_plain_path_url_at_root() {
    let t = tempfile::tempdir().unwrap();
    let (up, rev) = seeded(t.path());
    let mut src = GitSource::new(
        spec(up.bare.to_str().unwrap(), "main", None),
        t.path(),
        limits(),
    );
    let s = src.fetch(None).unwrap().snapshot;
    assert_eq!(s.revision, rev);
    assert_eq!(s.files.len(), 3);
    assert_eq!(text(&s, "README.md"), "not an app\n");
}

#[test]
fn git_source_picks_up_new_commit_and_idle_poll_gets_no_pack() {
    let t = tempfile::tempdir().unwrap();
    let (up, first) = seeded(t.path());
    let mut src = GitSource::new(
        spec(&up.file_url(), "main", Some("apps")),
        t.path(),
        limits(),
    );
    let cloned = src.fetch(None).unwrap().snapshot;
    assert_eq!(cloned.revision, first);

    let idle = src.fetch(Some(&first)).unwrap();
    assert_eq!(idle.snapshot.revision, first);
    assert!(
        !idle.stats.contacted_remote,
        "an idle poll of a local repository reads its ref, with no upload-pack"
    );
    assert!(
        !idle.stats.received_pack,
        "an unchanged ref must not fetch a pack"
    );

    up.write("apps/web/web.env", "A=2\n");
    let second = up.commit("second");
    let moved = src.fetch(Some(&first)).unwrap();
    assert_eq!(moved.snapshot.revision, second);
    assert!(
        !moved.stats.contacted_remote && moved.stats.received_pack,
        "a new commit on cached history is copied in process, with no upload-pack"
    );
    assert_eq!(text(&moved.snapshot, "web/web.env"), "A=2\n");
    assert!(
        std::sync::Arc::ptr_eq(
            &cloned.files["web/web.container"],
            &moved.snapshot.files["web/web.container"]
        ),
        "an unchanged blob is shared from the last tree, not read again"
    );

    // A new source over the same state dir reuses the cache: nothing to download.
    let mut again = GitSource::new(
        spec(&up.file_url(), "main", Some("apps")),
        t.path(),
        limits(),
    );
    let reused = again.fetch(Some(&second)).unwrap();
    assert_eq!(reused.snapshot.revision, second);
    assert!(!reused.stats.received_pack);
}

/// A local repository's new history, a merge and an annotated tag included, is copied
/// into the cache in process, and completely: git itself can walk every object of
/// the new commit in the cache. A first fetch and an unrelated history still go
/// through `upload-pack`.
#[test]
fn git_source_local_new_history_is_copied_in_process_and_whole() {
    let t = tempfile::tempdir().unwrap();
    let (up, first) = seeded(t.path());
    let mut src = GitSource::new(
        spec(&up.file_url(), "main", Some("apps")),
        t.path(),
        limits(),
    );
    let cloned = src.fetch(None).unwrap();
    assert!(
        cloned.stats.contacted_remote,
        "a first fetch uses upload-pack"
    );

    // A side branch merged back, new folders, a deleted file, and a tag.
    git(&up.work, &["checkout", "-q", "-b", "side"]);
    up.write("apps/db/db.container", "[Container]\nImage=postgres\n");
    git(&up.work, &["add", "-A"]);
    git(&up.work, &["commit", "-q", "-m", "side"]);
    git(&up.work, &["checkout", "-q", "-"]);
    up.write("apps/web/web.env", "A=3\n");
    std::fs::remove_file(up.work.join("README.md")).unwrap();
    up.commit("main moves");
    git(&up.work, &["merge", "-q", "--no-edit", "side"]);
    let merged = up.commit("merged");
    up.tag("v2");

    let moved = src.fetch(Some(&first)).unwrap();
    assert_eq!(moved.snapshot.revision, merged);
    assert!(!moved.stats.contacted_remote && moved.stats.received_pack);
    assert_eq!(
        moved.snapshot.files.keys().collect::<Vec<_>>(),
        ["db/db.container", "web/web.container", "web/web.env"]
    );
    assert_eq!(text(&moved.snapshot, "web/web.env"), "A=3\n");
    // Every object reachable from the new commit, parents included, is in the cache.
    let objects = git(src.cache_dir(), &["rev-list", "--objects", &merged]);
    assert!(objects.lines().count() > 10, "{objects}");

    let mut tagged = GitSource::new(spec(&up.file_url(), "v2", Some("apps")), t.path(), limits());
    let at_tag = tagged.fetch(None).unwrap();
    assert_eq!(at_tag.snapshot.revision, merged);
    assert!(
        !at_tag.stats.contacted_remote,
        "the tag object is copied in process"
    );

    // An unrelated history shares no commit with the cache: the real fetch runs, and
    // the force-push check still refuses it.
    git(&up.work, &["checkout", "-q", "--orphan", "fresh"]);
    up.write("apps/web/web.env", "A=4\n");
    git(&up.work, &["add", "-A"]);
    git(&up.work, &["commit", "-q", "-m", "fresh start"]);
    git(
        &up.work,
        &["push", "-q", "-f", "origin", "HEAD:refs/heads/main"],
    );
    match src.fetch(Some(&merged)) {
        Err(SourceError::HistoryRewritten { .. }) => {}
        other => panic!("expected a rewrite refusal, got {other:?}"),
    }
}

#[test]
fn git_source_tag_is_peeled_to_its_commit() {
    let t = tempfile::tempdir().unwrap();
    let (up, first) = seeded(t.path());
    up.tag("v1");
    up.write("apps/web/web.env", "A=2\n");
    up.commit("after the tag");
    let mut src = GitSource::new(spec(&up.file_url(), "v1", Some("apps")), t.path(), limits());
    let s = src.fetch(None).unwrap().snapshot;
    assert_eq!(s.revision, first);
    assert_eq!(text(&s, "web/web.env"), "A=1\n");
}

#[test]
fn git_source_commit_pin_ignores_later_pushes_and_needs_no_network() {
    let t = tempfile::tempdir().unwrap();
    let (up, first) = seeded(t.path());
    up.write("apps/web/web.env", "A=2\n");
    up.commit("later");
    let mut src = GitSource::new(
        spec(&up.file_url(), &first, Some("apps")),
        t.path(),
        limits(),
    );
    let pinned = src.fetch(None).unwrap();
    assert_eq!(pinned.snapshot.revision, first);
    assert_eq!(text(&pinned.snapshot, "web/web.env"), "A=1\n");
    assert!(pinned.stats.contacted_remote);

    up.write("apps/web/web.env", "A=3\n");
    up.commit("even later");
    // Remove the upstream: a cached pin must not need it.
    std::fs::remove_dir_all(&up.bare).unwrap();
    let cached = src.fetch(Some(&first)).unwrap();
    assert_eq!(cached.snapshot.revision, first);
    assert!(!cached.stats.contacted_remote);
}

#[test]
fn git_source_missing_ref_names_it_and_lists_existing_refs() {
    let t = tempfile::tempdir().unwrap();
    let (up, _) = seeded(t.path());
    up.tag("v1");
    let mut src = GitSource::new(spec(&up.file_url(), "mian", None), t.path(), limits());
    let e = src.fetch(None).unwrap_err();
    assert!(
        matches!(&e, SourceError::RefNotFound { reference, available, .. }
            if reference == "mian" && available.contains(&"main".to_owned()) && available.contains(&"v1".to_owned())),
        "{e:?}"
    );
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE);
    let msg = e.to_string();
    assert!(msg.contains("\"mian\"") && msg.contains("main"), "{msg}");

    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let mut pin = GitSource::new(spec(&up.file_url(), unknown, None), t.path(), limits());
    let e = pin.fetch(None).unwrap_err();
    assert!(matches!(e, SourceError::RefNotFound { .. }), "{e:?}");
}

#[test]
fn git_source_unreachable_closed_port_and_missing_path() {
    let t = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/fleet.git");
    let mut src = GitSource::new(spec(&url, "main", None), t.path(), limits());
    let e = src.fetch(None).unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}");
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE);
    assert!(e.to_string().contains(&url), "{e}");

    let missing = t.path().join("nowhere.git");
    let mut src = GitSource::new(
        spec(missing.to_str().unwrap(), "main", None),
        t.path(),
        limits(),
    );
    let e = src.fetch(None).unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains("nowhere.git"), "{e}");
}

#[test]
fn git_source_force_push_is_refused_then_accepted_with_allow_rewrite() {
    let t = tempfile::tempdir().unwrap();
    let (up, first) = seeded(t.path());
    up.write("apps/web/web.env", "A=2\n");
    let applied = up.commit("second");
    let mut src = GitSource::new(
        spec(&up.file_url(), "main", Some("apps")),
        t.path(),
        limits(),
    );
    assert_eq!(src.fetch(None).unwrap().snapshot.revision, applied);

    let rewritten = up.rewrite_last("apps/web/web.env", "A=forced\n");
    let e = src.fetch(Some(&applied)).unwrap_err();
    match &e {
        SourceError::HistoryRewritten { from, to, .. } => {
            assert_eq!(
                (from.as_str(), to.as_str()),
                (applied.as_str(), rewritten.as_str())
            );
        }
        other => panic!("expected HistoryRewritten, got {other:?}"),
    }
    assert_eq!(e.reason(), reason::HISTORY_REWRITTEN);
    assert!(e.to_string().contains("allow_rewrite = true"), "{e}");

    // An applied commit the cache has never seen counts as rewritten too.
    let stranger = "0123456789abcdef0123456789abcdef01234567";
    assert!(matches!(
        src.fetch(Some(stranger)),
        Err(SourceError::HistoryRewritten { .. })
    ));

    let mut allowing = spec(&up.file_url(), "main", Some("apps"));
    allowing.allow_rewrite = true;
    let mut src = GitSource::new(allowing, t.path(), limits());
    let s = src.fetch(Some(&applied)).unwrap().snapshot;
    assert_eq!(s.revision, rewritten);
    assert_eq!(text(&s, "web/web.env"), "A=forced\n");

    // A branch moved back to a commit the cache already has is read from the local
    // repository without a fetch, and is refused all the same.
    git(
        &up.work,
        &["push", "-qf", "origin", &format!("{first}:refs/heads/main")],
    );
    let mut strict = GitSource::new(
        spec(&up.file_url(), "main", Some("apps")),
        t.path(),
        limits(),
    );
    match strict.fetch(Some(&rewritten)) {
        Err(SourceError::HistoryRewritten { to, .. }) => assert_eq!(to, first),
        other => panic!("expected HistoryRewritten back to {first}, got {other:?}"),
    }
}

#[test]
fn git_source_symlinks_inside_resolve_and_escapes_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (up, _) = seeded(t.path());
    up.symlink("apps/web/link.env", "web.env");
    up.commit("inner link");
    let mut src = GitSource::new(
        spec(&up.file_url(), "main", Some("apps")),
        t.path(),
        limits(),
    );
    let s = src.fetch(None).unwrap().snapshot;
    assert_eq!(text(&s, "web/link.env"), "A=1\n");

    // README.md is in the repository but outside the `apps` tree.
    up.symlink("apps/web/readme", "../../README.md");
    up.commit("escaping link");
    let e = src.fetch(None).unwrap_err();
    match &e {
        SourceError::InvalidTree { path, problem } => {
            assert_eq!(path, "web/readme");
            assert!(
                matches!(problem, TreeProblem::SymlinkEscapes { .. }),
                "{problem:?}"
            );
        }
        other => panic!("expected InvalidTree, got {other:?}"),
    }
    assert_eq!(e.reason(), reason::VALIDATION_FAILED);
}

#[test]
fn git_source_file_over_the_limit_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (up, _) = seeded(t.path());
    up.write("apps/web/big.bin", vec![b'x'; 2048]);
    up.commit("big file");
    let small = Limits {
        max_file_size: 1024,
        max_files: 10_000,
    };
    let mut src = GitSource::new(spec(&up.file_url(), "main", Some("apps")), t.path(), small);
    let e = src.fetch(None).unwrap_err();
    assert!(
        matches!(&e, SourceError::InvalidTree { path, problem: TreeProblem::TooLarge { size: 2048, limit: 1024 } } if path == "web/big.bin"),
        "{e:?}"
    );

    let few = Limits {
        max_file_size: 1024 * 1024,
        max_files: 2,
    };
    let mut src = GitSource::new(spec(&up.file_url(), "main", Some("apps")), t.path(), few);
    let e = src.fetch(None).unwrap_err();
    assert!(
        matches!(
            &e,
            SourceError::InvalidTree {
                problem: TreeProblem::TooManyFiles { limit: 2 },
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn git_source_missing_subfolder_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (up, _) = seeded(t.path());
    let mut src = GitSource::new(
        spec(&up.file_url(), "main", Some("nope")),
        t.path(),
        limits(),
    );
    let e = src.fetch(None).unwrap_err();
    assert!(
        matches!(&e, SourceError::InvalidTree { path, problem: TreeProblem::FolderNotFound } if path == "nope"),
        "{e:?}"
    );
}

#[test]
fn git_source_over_http_clones_polls_and_sends_no_fetch_when_idle() {
    let t = tempfile::tempdir().unwrap();
    let (up, first) = seeded(t.path());
    let server = GitHttpServer::start(t.path());
    let url = server.url("fleet.git");
    let mut src = GitSource::new(
        spec(&url, "main", Some("apps")),
        &t.path().join("state"),
        limits(),
    );

    let cloned = src.fetch(None).unwrap();
    assert_eq!(cloned.snapshot.revision, first);
    assert!(cloned.stats.received_pack);
    assert_eq!(server.fetches(), 1);

    let listings = server.ref_listings();
    let idle = src.fetch(Some(&first)).unwrap();
    assert_eq!(idle.snapshot.revision, first);
    assert!(!idle.stats.received_pack);
    assert_eq!(server.fetches(), 1, "an idle poll must not ask for a pack");
    assert!(
        server.ref_listings() > listings,
        "an idle poll still lists refs"
    );

    up.write("apps/web/web.env", "A=2\n");
    let second = up.commit("second");
    let moved = src.fetch(Some(&first)).unwrap();
    assert_eq!(moved.snapshot.revision, second);
    assert_eq!(text(&moved.snapshot, "web/web.env"), "A=2\n");
    assert_eq!(server.fetches(), 2);
}

/// An idle poll asks only for the configured ref: other branches and tags of the
/// repository do not make it bigger (each one used to add about 62 bytes to every
/// idle poll of every host; see the fleet simulation in docs/fleet.md).
#[test]
fn git_source_idle_poll_does_not_grow_with_other_refs() {
    let t = tempfile::tempdir().unwrap();
    let (_up, first) = seeded(t.path());
    let server = GitHttpServer::start(t.path());
    let mut src = GitSource::new(
        spec(&server.url("fleet.git"), "main", Some("apps")),
        &t.path().join("state"),
        limits(),
    );
    src.fetch(None).unwrap();
    let answered = || {
        server
            .counts
            .response_bytes
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let poll = |src: &mut GitSource| {
        let before = answered();
        let idle = src.fetch(Some(&first)).unwrap();
        assert_eq!(idle.snapshot.revision, first);
        assert!(!idle.stats.received_pack);
        answered() - before
    };
    let alone = poll(&mut src);
    let bare = t.path().join("fleet.git");
    for i in 0..60 {
        git(&bare, &["tag", &format!("release-{i:03}"), "main"]);
    }
    for i in 0..20 {
        git(&bare, &["branch", &format!("feature-{i:02}"), "main"]);
    }
    let crowded = poll(&mut src);
    assert!(
        crowded < alone + 200,
        "an idle poll answered {alone} bytes alone and {crowded} with 80 more refs"
    );
}

/// Success with credentials needs https: gix never sends credentials over plain http,
/// and that refusal is an auth error too.
#[test]
fn git_source_over_http_auth_failure_is_an_auth_error() {
    let t = tempfile::tempdir().unwrap();
    let _up = seeded(t.path());
    let server = GitHttpServer::start_with_basic_auth(t.path(), "fleet", "s3cret-token");

    let mut anonymous = GitSource::new(
        spec(&server.url("fleet.git"), "main", None),
        t.path(),
        limits(),
    );
    let e = anonymous.fetch(None).unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains("requires credentials"), "{e}");
    assert_eq!(e.reason(), reason::SOURCE_UNAVAILABLE);

    let creds = t.path().join("git-credentials");
    std::fs::write(&creds, "fleet:wrong-password\n").unwrap();
    let mut with_file = spec(&server.url("fleet.git"), "main", None);
    with_file.credentials_file = Some(creds);
    let mut bad = GitSource::new(with_file, t.path(), limits());
    let e = bad.fetch(None).unwrap_err();
    assert!(matches!(e, SourceError::Auth { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("wrong-password"), "{e:?}");

    assert!(e.to_string().contains("clear text"), "{e}");
    assert_eq!(server.fetches(), 0);
}

/// An HTTP remote that accepts the connection and never answers fails the fetch at the
/// source's HTTP time limit, as unreachable, instead of holding the pass (and a thread)
/// until the pass budget.
#[test]
fn git_source_gives_up_on_a_silent_http_remote() {
    let t = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Accept, read nothing, answer nothing; keep every connection open.
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    let mut src = GitSource::new(
        spec(&format!("http://{addr}/fleet.git"), "main", Some("apps")),
        &t.path().join("state"),
        limits(),
    )
    .with_http_timeout(std::time::Duration::from_secs(1));
    let t0 = std::time::Instant::now();
    let err = src.fetch(None).unwrap_err();
    // Not a timing test of the machine: reqwest's default alone would wait 30 s per
    // request; a 1 s limit returns long before 25 s even on a loaded box.
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(25),
        "took {:?}: {err}",
        t0.elapsed()
    );
    assert!(
        matches!(err, legerd::source::SourceError::Unreachable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

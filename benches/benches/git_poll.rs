//! The git source's idle poll: the ref has not moved, so no pack comes and the snapshot
//! is the cached one. What is left is asking the repository for its refs.
//!
//! For a local repository (`file://` or a plain path) that used to mean spawning
//! `git upload-pack` for one ref advertisement per poll; legerd now reads the ref
//! straight from the repository when the commit it names is already cached, and runs
//! the real fetch only when it is not.
//!
//! `git_new_commit_100_apps`: a poll that finds one new commit changing one app, the
//! git side of the test bed's "one change → active". A new commit on top of cached
//! history is copied from a local repository in process (it used to be a
//! `git upload-pack` and its pack).

use criterion::{Criterion, criterion_group, criterion_main};
use leger_api_types::desired::GitSourceSpec;
use leger_benches::{app_name, bench_limits, git, source_repository};
use legerd::source::git::GitSource;

fn bench_idle_poll(c: &mut Criterion) {
    let root = tempfile::Builder::new()
        .prefix("leger-bench-git-")
        .tempdir()
        .expect("temp dir");
    let (_, bare) = source_repository(root.path(), 100);
    let mut group = c.benchmark_group("git_idle_poll_100_apps");
    for (name, url) in [
        ("file_url", format!("file://{}", bare.display())),
        ("plain_path", bare.display().to_string()),
    ] {
        let mut spec = GitSourceSpec::new(&url);
        spec.reference = "main".into();
        let mut src = GitSource::new(spec, &root.path().join(name), bench_limits());
        let first = src.fetch(None).expect("first fetch");
        let rev = first.snapshot.revision.clone();
        group.bench_function(name, |b| {
            b.iter(|| {
                let idle = src.fetch(Some(&rev)).expect("idle fetch");
                assert!(!idle.stats.received_pack);
                idle
            })
        });
    }
    group.finish();
}

fn bench_new_commit(c: &mut Criterion) {
    let root = tempfile::Builder::new()
        .prefix("leger-bench-git-")
        .tempdir()
        .expect("temp dir");
    let (work, bare) = source_repository(root.path(), 100);
    let mut spec = GitSourceSpec::new(format!("file://{}", bare.display()));
    spec.reference = "main".into();
    let mut src = GitSource::new(spec, &root.path().join("state"), bench_limits());
    let mut rev = src.fetch(None).expect("first fetch").snapshot.revision;
    let mut group = c.benchmark_group("git_new_commit_100_apps");
    group.sample_size(20);
    let mut round = 0;
    group.bench_function("file_url", |b| {
        b.iter_batched(
            || {
                // Not timed: one app changes upstream.
                round += 1;
                let readme = work.join(app_name(7)).join("README.md");
                std::fs::write(&readme, format!("# round {round}\n")).expect("write");
                git(&work, &["commit", "-qam", "one app changed"]);
                git(
                    &work,
                    &["push", "-q", bare.to_str().expect("utf-8"), "HEAD:main"],
                );
            },
            |()| {
                let moved = src.fetch(Some(&rev)).expect("fetch of the new commit");
                assert!(moved.stats.received_pack);
                rev = moved.snapshot.revision;
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_idle_poll, bench_new_commit);
criterion_main!(benches);

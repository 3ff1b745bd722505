//! The git source's idle poll: the ref has not moved, so no pack comes and the snapshot
//! is the cached one. What is left is asking the repository for its refs.
//!
//! For a local repository (`file://` or a plain path) that used to mean spawning
//! `git upload-pack` for one ref advertisement per poll; legerd now reads the ref
//! straight from the repository when the commit it names is already cached, and runs
//! the real fetch only when it is not.

use criterion::{Criterion, criterion_group, criterion_main};
use leger_api_types::desired::GitSourceSpec;
use leger_benches::{bench_limits, source_repository};
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

criterion_group!(benches, bench_idle_poll);
criterion_main!(benches);

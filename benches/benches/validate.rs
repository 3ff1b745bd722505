//! Validation of a new revision in which one app changed, at 1,000 apps (or the sizes
//! in `LEGER_BENCH_SIZES`), against podman's real quadlet generator.
//!
//! Why: issue 14 asks that validating a one-app change cost that app, not the
//! revision. The cases, both through `pass::validate::check_incremental` (assemble
//! plus the generator's dry run):
//! - `whole`: no record of what passed before (the first validation, and every
//!   validation before incremental validation): the generator sees every app;
//! - `one_change`: the previous revision's record and parse cache: the generator sees
//!   the one app, and only its folder is parsed again.
//!
//! The generator is the test bed's (`/var/tmp/leger-testbed/base-trixie`, made by
//! `contrib/testbed/testbed.sh prepare`) or `LEGER_QUADLET_GENERATOR`; without one the
//! bench says so and measures nothing.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use leger_benches::{bench_target, desired, snapshot};
use legerd::assemble::{ParseCache, assemble_cached};
use legerd::pass::validate::check_incremental;
use legerd::testkit::settings_in;
use legerd::validated::{ValidatedApps, generator_identity};

fn real_generator() -> Option<PathBuf> {
    std::env::var_os("LEGER_QUADLET_GENERATOR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(
            "/var/tmp/leger-testbed/base-trixie/usr/libexec/podman/quadlet",
        )])
        .find(|p| p.exists())
}

fn sizes() -> Vec<usize> {
    std::env::var("LEGER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000])
}

fn bench(c: &mut Criterion) {
    let Some(generator) = real_generator() else {
        eprintln!(
            "validate: skipped, no quadlet generator (run contrib/testbed/testbed.sh prepare or set LEGER_QUADLET_GENERATOR)"
        );
        return;
    };
    let root = tempfile::tempdir().expect("temp dir");
    let mut settings = settings_in(root.path());
    settings.quadlet.generator = generator;
    settings.quadlet.generator_dry_run = true;
    settings.limits = leger_benches::bench_limits();
    let target = bench_target();
    let identity = generator_identity(&settings.quadlet.generator, "bench", false);
    let mut group = c.benchmark_group("validate");
    group.sample_size(10);
    for n in sizes() {
        let changed = snapshot(n, Some(0));
        let record = ValidatedApps::of(&desired(n, None), identity.clone());
        let previous = snapshot(n, None);
        // The parse of the previous revision's folders, as legerd holds it (made
        // afresh for each iteration, untimed: an iteration adds the changed folder).
        let warm = || {
            let mut cache = ParseCache::default();
            assemble_cached(&previous, &settings.limits, &target, &mut cache)
                .expect("the fixture validates");
            cache
        };
        for (case, record) in [("whole", None), ("one_change", Some(&record))] {
            group.bench_with_input(BenchmarkId::new(case, n), &n, |b, _| {
                b.iter_batched(
                    || match record {
                        Some(_) => warm(),
                        None => ParseCache::default(),
                    },
                    |mut cache| {
                        let (tree, scope) = check_incremental(
                            &changed, &settings, &target, record, &identity, &mut cache,
                        )
                        .expect("a verdict")
                        .expect("the fixture validates");
                        black_box((tree, scope))
                    },
                    BatchSize::PerIteration,
                );
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The planner alone, at 10, 100 and 1,000 apps.
//!
//! Why alone: the planner runs on every pass, also when nothing changed, so its cost
//! sets the floor of an idle legerd. Three situations cover its branches: a fresh
//! install (everything is created and started), a no-op (everything matches), and a
//! routine release of one app (two files updated, one restart). Inputs are built by
//! the real assembler outside the timed loop; only `plan` is measured.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use leger_benches::{converged, desired};
use legerd::model::Observed;
use legerd::plan::{PlanPolicy, plan};

const POLICY: PlanPolicy = PlanPolicy {
    prune: true,
    self_heal: true,
    allow_empty: false,
};

const SIZES: [usize; 3] = [10, 100, 1_000];

fn bench_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let tree = desired(n, None);
        let fresh = Observed::default();
        let same = converged(&tree);
        // One app's release: the host holds the previous generation of app 0 ... n/2.
        let changed_tree = desired(n, Some(n / 2));

        let fresh_plan = plan(&tree, &fresh, POLICY).expect("fresh install plans");
        assert_eq!(fresh_plan.actions.len(), n * 3 + 1 + n * 2);
        assert!(plan(&tree, &same, POLICY).expect("no-op plans").is_empty());
        assert_eq!(
            plan(&changed_tree, &same, POLICY)
                .expect("one change plans")
                .actions
                .len(),
            4
        );

        group.bench_with_input(BenchmarkId::new("fresh_install", n), &n, |b, _| {
            b.iter(|| plan(black_box(&tree), black_box(&fresh), POLICY))
        });
        group.bench_with_input(BenchmarkId::new("no_op", n), &n, |b, _| {
            b.iter(|| plan(black_box(&tree), black_box(&same), POLICY))
        });
        group.bench_with_input(BenchmarkId::new("one_app_changed", n), &n, |b, _| {
            b.iter(|| plan(black_box(&changed_tree), black_box(&same), POLICY))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);

//! A whole no-op reconcile pass at 100 and 1,000 apps, through legerd's real stages.
//!
//! Why: an idle legerd runs this pass on every poll, so its cost is what a host pays
//! for legerd when nothing changes. The pass is `Reconciler::reconcile`, the same call
//! the controller makes: fetch (a git source whose remote has nothing new), validate
//! (cached per revision), observe (inventory from SQLite, hash every managed file, ask
//! each unit's state), plan (empty), the gates, the health stage, and record (revision
//! state, a history row in SQLite, the status apps refresh, metrics).
//!
//! Everything is real except systemd and podman: the repository is made with the git
//! CLI, the store is a SQLite file, the quadlet dir is a folder on disk. Unit states
//! come from the recording unit manager answering "active", because the figure wanted
//! is legerd's own work, not the D-Bus round trips of a given host.
//!
//! Each stage is also measured alone, through the stage functions the pass calls, so a
//! regression points at its stage.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use leger_api_types::{DesiredState, PassOutcome};
use leger_benches::active_unit;
use legerd::metrics::Metrics;
use legerd::pass::fetch::Fetcher;
use legerd::pass::{Host, validate};
use legerd::plan::{PlanPolicy, plan};
use legerd::podman::{Podman, RecordingPodman};
use legerd::reconciler::Reconciler;
use legerd::store::Store;
use legerd::systemd::recording::RecordingUnitManager;
use tempfile::TempDir;
use tokio::runtime::Runtime;

const SIZES: [usize; 2] = [100, 1_000];

/// A host whose reconciler applied the source's only commit (through the real stages,
/// outside any timing): every later pass is a no-op.
struct Host1 {
    root: TempDir,
    reconciler: Reconciler<RecordingUnitManager>,
    units: Arc<RecordingUnitManager>,
    store: Arc<Mutex<Store>>,
    podman: Arc<dyn Podman>,
    desired: DesiredState,
    runtime: Runtime,
}

impl Host1 {
    fn new(n: usize) -> Host1 {
        let root = tempfile::Builder::new()
            .prefix("leger-bench-pass-")
            .tempdir()
            .expect("temp dir");
        let (_, bare) = leger_benches::source_repository(root.path(), n);
        let mut settings = legerd::testkit::settings_in(root.path());
        settings.limits = leger_benches::bench_limits();
        let desired_text = format!(
            "[source]\nkind = \"git\"\nurl = \"file://{}\"\nref = \"main\"\n",
            bare.display()
        );
        std::fs::create_dir_all(settings.paths.desired_file.parent().unwrap()).unwrap();
        std::fs::write(&settings.paths.desired_file, &desired_text).unwrap();
        let desired = DesiredState::from_toml_str(&desired_text).expect("desired parses");
        let store = Arc::new(Mutex::new(
            Store::open(&settings.paths.state_dir.join("legerd.db")).expect("open store"),
        ));
        let units = Arc::new(RecordingUnitManager::new());
        let recording = Arc::new(RecordingPodman::new());
        for i in 0..n {
            let app = leger_benches::app_name(i);
            for unit in [
                format!("{app}.service"),
                format!("{app}-data-volume.service"),
            ] {
                units.set_state_after_job(&unit, active_unit());
            }
            // The health gate asks podman about containers with HealthCmd=.
            recording.set_container_health(&app, "healthy");
        }
        let podman: Arc<dyn Podman> = recording;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut reconciler = Reconciler::new(settings, Arc::clone(&units), Arc::clone(&store))
            .with_podman(Arc::clone(&podman));
        let first = runtime.block_on(reconciler.reconcile(&["bench".into()]));
        assert_eq!(
            first.record.outcome,
            PassOutcome::Applied,
            "{:?}",
            first.record.error
        );
        let mut host = Host1 {
            root,
            reconciler,
            units,
            store,
            podman,
            desired,
            runtime,
        };
        let second = host.pass();
        assert_eq!(second, PassOutcome::Noop, "a second pass is a no-op");
        host
    }

    /// One whole pass, as the controller runs it.
    fn pass(&mut self) -> PassOutcome {
        let r = self
            .runtime
            .block_on(self.reconciler.reconcile(&["bench".into()]));
        drop(self.units.take_calls());
        r.record.outcome
    }
}

fn bench_pass(c: &mut Criterion) {
    let mut group = c.benchmark_group("pass");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for n in SIZES {
        group.measurement_time(Duration::from_secs(if n >= 1_000 { 10 } else { 3 }));
        let mut host = Host1::new(n);
        group.bench_function(BenchmarkId::new("no_op", n), |b| {
            b.iter(|| assert_eq!(host.pass(), PassOutcome::Noop))
        });

        // The stages alone, through the functions the pass calls.
        let settings = legerd::testkit::settings_in(host.root.path());
        let mut settings = settings;
        settings.limits = leger_benches::bench_limits();
        let metrics = Metrics::new(false);
        let stage_host = Host {
            settings: &settings,
            units: &*host.units,
            store: &host.store,
            metrics: &metrics,
            podman: &host.podman,
        };
        let applied = host.reconciler.applied_revision().map(str::to_owned);
        let mut fetcher = Fetcher::default();
        let snapshot = host
            .runtime
            .block_on(fetcher.fetch(&host.desired, &settings, &metrics, applied.clone()))
            .expect("fetch");
        group.bench_function(BenchmarkId::new("stage_fetch", n), |b| {
            b.iter(|| {
                black_box(
                    host.runtime
                        .block_on(fetcher.fetch(
                            &host.desired,
                            &settings,
                            &metrics,
                            applied.clone(),
                        ))
                        .expect("fetch"),
                )
            })
        });
        group.bench_function(BenchmarkId::new("stage_validate_uncached", n), |b| {
            b.iter(|| {
                validate::check(
                    black_box(&snapshot),
                    &settings,
                    &leger_benches::bench_target(),
                )
                .expect("valid")
            })
        });
        let tree = Arc::new(
            validate::check(&snapshot, &settings, &leger_benches::bench_target()).expect("valid"),
        );
        group.bench_function(BenchmarkId::new("stage_observe", n), |b| {
            b.iter(|| {
                let o = host
                    .runtime
                    .block_on(legerd::pass::observe::observe(&stage_host, &tree, None))
                    .expect("observe");
                drop(host.units.take_calls());
                black_box(o)
            })
        });
        let observed = host
            .runtime
            .block_on(legerd::pass::observe::observe(&stage_host, &tree, None))
            .expect("observe")
            .observed;
        let policy = PlanPolicy::from(&host.desired.policy);
        group.bench_function(BenchmarkId::new("stage_plan", n), |b| {
            b.iter(|| {
                let p = plan(black_box(&tree), black_box(&observed), policy).expect("plan");
                assert!(p.is_empty());
                p
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pass);
criterion_main!(benches);

//! Whole reconcile passes through the real stages (`Reconciler::reconcile`: fetch,
//! validate, observe, secrets, plan, gates, backup, apply, health, record) at 100,
//! 1,000 and 10,000 apps, and the observe stage alone.
//!
//! Why: issue 14 asks that a pass cost what changed, not what exists. The cases:
//! - `no_op`: the source did not move and the host matches, with a full observe (what
//!   a drift event or a periodic resync costs);
//! - `poll`: the same, asked for by a poll with no drift event since the last pass,
//!   which skips observing (`reconcile.resync`);
//! - `one_change`: one app's files changed in a new commit;
//! - `new_revision`: every app changed (a fleet-wide release), 100 and 1,000 apps only:
//!   at 10,000 one iteration writes 30,000 files and takes too long for this machine;
//! - `observe`: hash the managed files and read every unit's state.
//!
//! Everything is real except systemd and podman: the source is a git repository made
//! with the git CLI and fetched over file://, the store is SQLite, the quadlet dir is a
//! folder. The recording doubles answer every unit "active", because the figure wanted
//! is legerd's own work, not the D-Bus round trips or container starts of a given host.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use leger_api_types::PassOutcome;
use leger_benches::git;
use leger_benches::{active_unit, app_files, app_name, desired};
use legerd::observe::observe;
use legerd::podman::RecordingPodman;
use legerd::reconciler::Reconciler;
use legerd::store::Store;
use legerd::systemd::recording::RecordingUnitManager;
use tempfile::TempDir;
use tokio::runtime::Runtime;

/// A host that applied the source's first commit, with the repository to push to.
struct Host {
    /// Holds every folder below; dropped last.
    root: TempDir,
    work: PathBuf,
    n: usize,
    /// The generation each app's files are at in the work tree.
    generations: Vec<u32>,
    units: Arc<RecordingUnitManager>,
    podman: Arc<RecordingPodman>,
    store: Arc<Mutex<Store>>,
    reconciler: Reconciler<RecordingUnitManager>,
    runtime: Runtime,
}

impl Host {
    fn new(n: usize) -> Host {
        let root = tempfile::Builder::new()
            .prefix("leger-bench-stages-")
            .tempdir()
            .expect("temp dir");
        let (work, bare) = leger_benches::source_repository(root.path(), n);
        git(
            &work,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().expect("utf-8 path"),
            ],
        );

        let mut settings = legerd::testkit::settings_in(root.path());
        settings.limits.max_files = 100_000;
        std::fs::create_dir_all(settings.paths.desired_file.parent().expect("etc")).expect("etc");
        std::fs::write(
            &settings.paths.desired_file,
            format!(
                "[source]\nkind = \"git\"\nurl = \"file://{}\"\nref = \"main\"\n",
                bare.display()
            ),
        )
        .expect("desired.toml");
        let store = Arc::new(Mutex::new(
            Store::open(&settings.paths.state_dir.join("legerd.db")).expect("store"),
        ));
        let units = Arc::new(RecordingUnitManager::new());
        for unit in desired(n, None).apps.values().flat_map(|a| &a.units) {
            units.set_state(&unit.name, active_unit());
        }
        let podman = Arc::new(RecordingPodman::new());
        for i in 0..n {
            podman.set_container_health(&app_name(i), "healthy");
        }
        let reconciler = Reconciler::new(settings, Arc::clone(&units), Arc::clone(&store))
            .with_podman(podman.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut host = Host {
            root,
            work,
            n,
            generations: vec![1; n],
            units,
            podman,
            store,
            reconciler,
            runtime,
        };
        assert_eq!(host.pass(), PassOutcome::Applied, "first converge");
        assert_eq!(host.pass(), PassOutcome::Noop, "then nothing to do");
        host
    }

    fn pass(&mut self) -> PassOutcome {
        self.pass_by("bench")
    }

    /// A pass with `trigger` as its label (`poll` may skip observing).
    fn pass_by(&mut self, trigger: &str) -> PassOutcome {
        let r = self
            .runtime
            .block_on(self.reconciler.reconcile(&[trigger.to_owned()]));
        drop(self.units.take_calls());
        drop(self.podman.take_calls());
        assert!(r.record.error.is_none(), "{:?}", r.record.error);
        r.record.outcome
    }

    /// Commits a new generation of the apps in `apps` and pushes it (not timed).
    fn release(&mut self, apps: impl Iterator<Item = usize>) {
        for i in apps {
            self.generations[i] = if self.generations[i] == 1 { 2 } else { 1 };
            for (path, bytes) in app_files(i, self.generations[i]) {
                std::fs::write(self.work.join(path), bytes).expect("write source file");
            }
        }
        git(&self.work, &["commit", "-q", "-a", "-m", "release"]);
        git(&self.work, &["push", "-q", "origin", "HEAD:main"]);
    }

    fn quadlet_dir(&self) -> PathBuf {
        self.root.path().join("quadlets")
    }
}

/// Times `routine` per iteration; `prepare` runs before each, untimed.
fn timed(
    host: &mut Host,
    iters: u64,
    mut prepare: impl FnMut(&mut Host),
    mut routine: impl FnMut(&mut Host),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        prepare(host);
        let start = Instant::now();
        routine(host);
        total += start.elapsed();
    }
    total
}

fn bench_stages(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("LEGER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 10_000]);
    let mut group = c.benchmark_group("stages");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for n in sizes {
        group.measurement_time(Duration::from_secs(if n >= 10_000 { 20 } else { 5 }));
        let mut host = Host::new(n);
        group.bench_function(BenchmarkId::new("no_op", n), |b| {
            b.iter_custom(|iters| {
                timed(
                    &mut host,
                    iters,
                    |_| {},
                    |h| assert_eq!(h.pass(), PassOutcome::Noop),
                )
            })
        });
        group.bench_function(BenchmarkId::new("poll", n), |b| {
            b.iter_custom(|iters| {
                timed(
                    &mut host,
                    iters,
                    |_| {},
                    |h| assert_eq!(h.pass_by("poll"), PassOutcome::Noop),
                )
            })
        });
        group.bench_function(BenchmarkId::new("one_change", n), |b| {
            b.iter_custom(|iters| {
                timed(
                    &mut host,
                    iters,
                    |h| h.release(std::iter::once(h.n / 2)),
                    |h| assert_eq!(h.pass(), PassOutcome::Applied),
                )
            })
        });
        if n <= 1_000 {
            group.bench_function(BenchmarkId::new("new_revision", n), |b| {
                b.iter_custom(|iters| {
                    timed(
                        &mut host,
                        iters,
                        |h| h.release(0..h.n),
                        |h| assert_eq!(h.pass(), PassOutcome::Applied),
                    )
                })
            });
        }
        let tree = desired(n, None);
        let inventory = host
            .store
            .lock()
            .expect("store")
            .inventory()
            .expect("inventory");
        let quadlet_dir = host.quadlet_dir();
        group.bench_function(BenchmarkId::new("observe", n), |b| {
            b.iter(|| {
                let observed = host
                    .runtime
                    .block_on(observe(&tree, &inventory, &quadlet_dir, &*host.units))
                    .expect("observe");
                drop(host.units.take_calls());
                black_box(observed)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_stages);
criterion_main!(benches);

//! A full no-op reconcile pass at 100 and 1,000 apps, over a local git source.
//!
//! Why: an idle legerd runs this pass on every poll, so its cost is what a host pays
//! for legerd when nothing changes. The pass is the reconciler's, stage by stage:
//! fetch (the remote has nothing new), assemble (parse and validate every quadlet),
//! read the inventory from SQLite, observe (hash every managed file in the quadlet dir,
//! ask each unit's state) and plan, which must come out empty.
//!
//! Everything is real except systemd: the repository is made with the git CLI, the
//! inventory is a SQLite file, the quadlet dir is a folder on disk. Unit states come
//! from the recording unit manager answering "active", because the figure wanted is
//! legerd's own work, not the D-Bus round trips of a given host.
//!
//! Each stage is also measured alone, so a regression points at its stage.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use leger_api_types::desired::GitSourceSpec;
use leger_benches::{active_unit, bench_limits, install, inventory, source_files};
use legerd::assemble::assemble;
use legerd::model::{DesiredTree, Snapshot};
use legerd::observe::observe;
use legerd::plan::{Plan, PlanPolicy, plan};
use legerd::source::git::GitSource;
use legerd::store::{RevisionState, Store};
use legerd::systemd::recording::RecordingUnitManager;
use tempfile::TempDir;
use tokio::runtime::Runtime;

const POLICY: PlanPolicy = PlanPolicy {
    prune: true,
    self_heal: true,
    allow_empty: false,
};

const SIZES: [usize; 2] = [100, 1_000];

/// Runs git with a fixed identity and no user or system config; panics with its stderr.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args([
            "-c",
            "user.name=leger bench",
            "-c",
            "user.email=bench@leger.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A host that applied the source's only commit: the git cache, the quadlet dir, the
/// inventory and the units all match it.
struct Host {
    /// Holds every folder below; dropped last.
    _root: TempDir,
    source: GitSource,
    applied: String,
    store: Store,
    quadlet_dir: PathBuf,
    units: RecordingUnitManager,
    runtime: Runtime,
}

impl Host {
    /// Builds the repository (one commit with `n` app folders), its bare clone, and a
    /// host that applied it, outside any timing.
    fn new(n: usize) -> Host {
        let root = tempfile::Builder::new()
            .prefix("leger-bench-pass-")
            .tempdir()
            .expect("temp dir");
        let work = root.path().join("work");
        let bare = root.path().join("apps.git");
        for (path, bytes) in source_files(n, None) {
            let path = work.join(path);
            std::fs::create_dir_all(path.parent().expect("app folder")).expect("mkdir");
            std::fs::write(path, bytes).expect("write source file");
        }
        git(&work, &["init", "-q"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "apps"]);
        git(
            root.path(),
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().expect("utf-8 path"),
                bare.to_str().expect("utf-8 path"),
            ],
        );

        let spec = GitSourceSpec {
            url: format!("file://{}", bare.display()),
            reference: "main".into(),
            path: None,
            poll_interval: Duration::from_secs(60),
            allow_rewrite: false,
            overlays: Vec::new(),
        };
        let state_dir = root.path().join("state");
        let mut source = GitSource::new(spec, &state_dir, bench_limits());
        let first = source.fetch(None).expect("first fetch");
        assert!(first.stats.received_pack, "the first fetch clones");
        let tree = assemble(&first.snapshot, &bench_limits()).expect("fixture validates");
        assert_eq!(tree.apps.len(), n);

        let quadlet_dir = root.path().join("quadlets");
        install(&tree, &quadlet_dir).expect("install quadlets");
        let store = Store::open(&state_dir.join("legerd.db")).expect("open store");
        for entry in inventory(&tree) {
            store.upsert_inventory(&entry).expect("write inventory");
        }
        store
            .record_revision(&tree.revision, RevisionState::Applied, None)
            .expect("record revision");
        let units = RecordingUnitManager::new();
        for unit in tree.apps.values().flat_map(|a| &a.units) {
            units.set_state(&unit.name, active_unit());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");

        let mut host = Host {
            _root: root,
            source,
            applied: tree.revision.clone(),
            store,
            quadlet_dir,
            units,
            runtime,
        };
        let p = host.pass();
        assert!(p.is_empty(), "a no-op pass plans nothing: {:?}", p.actions);
        host
    }

    fn fetch(&mut self) -> Snapshot {
        let fetched = self.source.fetch(Some(&self.applied)).expect("fetch");
        assert!(!fetched.stats.received_pack, "nothing new upstream");
        fetched.snapshot
    }

    fn observe_and_plan(&self, tree: &DesiredTree) -> Plan {
        let inventory = self.store.inventory().expect("read inventory");
        let observed = self
            .runtime
            .block_on(observe(tree, &inventory, &self.quadlet_dir, &self.units))
            .expect("observe");
        plan(tree, &observed, POLICY).expect("plan")
    }

    /// One reconcile pass, without the apply (a no-op has nothing to apply).
    fn pass(&mut self) -> Plan {
        let snapshot = self.fetch();
        let tree = assemble(&snapshot, &bench_limits()).expect("assemble");
        self.observe_and_plan(&tree)
    }

    /// Forgets the recorded calls so memory stays flat over many iterations.
    fn forget_calls(&self) {
        drop(self.units.take_calls());
    }
}

/// Times `routine` alone per iteration, clearing the recorder's log between runs.
fn timed(host: &mut Host, iters: u64, mut routine: impl FnMut(&mut Host)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        routine(host);
        total += start.elapsed();
        host.forget_calls();
    }
    total
}

fn bench_pass(c: &mut Criterion) {
    let mut group = c.benchmark_group("pass");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for n in SIZES {
        group.measurement_time(Duration::from_secs(if n >= 1_000 { 5 } else { 2 }));
        let mut host = Host::new(n);
        let snapshot = host.fetch();
        let tree = assemble(&snapshot, &bench_limits()).expect("assemble");
        let inventory = host.store.inventory().expect("read inventory");
        let observed = host
            .runtime
            .block_on(observe(&tree, &inventory, &host.quadlet_dir, &host.units))
            .expect("observe");

        group.bench_function(BenchmarkId::new("no_op", n), |b| {
            b.iter_custom(|iters| {
                timed(&mut host, iters, |h| {
                    black_box(h.pass());
                })
            })
        });
        group.bench_function(BenchmarkId::new("stage_fetch", n), |b| {
            b.iter_custom(|iters| {
                timed(&mut host, iters, |h| {
                    black_box(h.fetch());
                })
            })
        });
        group.bench_function(BenchmarkId::new("stage_assemble", n), |b| {
            b.iter(|| assemble(black_box(&snapshot), &bench_limits()).expect("assemble"))
        });
        group.bench_function(BenchmarkId::new("stage_inventory", n), |b| {
            b.iter(|| host.store.inventory().expect("read inventory"))
        });
        group.bench_function(BenchmarkId::new("stage_observe", n), |b| {
            b.iter_custom(|iters| {
                timed(&mut host, iters, |h| {
                    black_box(
                        h.runtime
                            .block_on(observe(&tree, &inventory, &h.quadlet_dir, &h.units))
                            .expect("observe"),
                    );
                })
            })
        });
        group.bench_function(BenchmarkId::new("stage_plan", n), |b| {
            b.iter(|| plan(black_box(&tree), black_box(&observed), POLICY).expect("plan"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pass);
criterion_main!(benches);

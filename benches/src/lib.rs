//! Fixture generators shared by legerd's benchmarks.
//!
//! Why a library: the planner bench and the full-pass bench must measure the same
//! shape of desired state, so the apps are generated in one place. Every app is what
//! a small real deployment looks like: a `.container` with an env companion, a named
//! `.volume`, ports, health check and labels, so parsing and validation see realistic
//! text, not one-line stubs.
//!
//! The generators are deterministic: the same `n` always gives the same bytes, so
//! figures from two runs compare.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use leger_config::Limits;
use legerd::assemble::assemble;
use legerd::model::{DesiredTree, ManagedFile, Observed, Snapshot, UnitState, install_key};
use legerd::store::InventoryEntry;

/// Limits roomy enough for the largest fixture (3 files per app, 1,000 apps), so the
/// benches measure work, not refusals.
pub fn bench_limits() -> Limits {
    Limits {
        max_file_size: 1 << 20,
        max_files: 100_000,
    }
}

/// The name of app number `i`, zero-padded so names sort like numbers.
pub fn app_name(i: usize) -> String {
    format!("app{i:04}")
}

/// The files of app number `i`, as (path relative to the source root, bytes).
///
/// `generation` stands for a revision of this app's config: bumping it changes the
/// image tag and one variable in the env file, as a routine release does.
pub fn app_files(i: usize, generation: u32) -> Vec<(String, Vec<u8>)> {
    let app = app_name(i);
    let port = 10_000 + i;
    let container = format!(
        "# {app}: one web service with its data volume\n\
         [Unit]\n\
         Description={app} web service\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Container]\n\
         Image=registry.example.invalid/team/{app}:1.{generation}.0\n\
         ContainerName={app}\n\
         EnvironmentFile={app}.env\n\
         Environment=RUST_LOG=info\n\
         Environment=APP_NAME={app}\n\
         Volume={app}-data.volume:/var/lib/{app}:Z\n\
         PublishPort=127.0.0.1:{port}:8080\n\
         Label=org.example.app={app}\n\
         Label=org.example.tier=web\n\
         HealthCmd=/usr/bin/curl -fsS http://127.0.0.1:8080/healthz\n\
         HealthInterval=30s\n\
         HealthRetries=3\n\
         NoNewPrivileges=true\n\
         ReadOnly=true\n\
         DropCapability=ALL\n\
         AutoUpdate=registry\n\
         \n\
         [Service]\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         TimeoutStartSec=300\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target default.target\n"
    );
    let volume = format!(
        "[Unit]\n\
         Description=data of {app}\n\
         \n\
         [Volume]\n\
         VolumeName={app}-data\n\
         Label=org.example.app={app}\n\
         Label=org.example.backup=daily\n"
    );
    let env = format!(
        "# environment of {app}\n\
         LISTEN_ADDR=0.0.0.0:8080\n\
         DATA_DIR=/var/lib/{app}\n\
         LOG_FORMAT=json\n\
         CACHE_TTL_SECONDS=300\n\
         FEATURE_FLAGS=search,export\n\
         RELEASE={generation}\n"
    );
    vec![
        (format!("{app}/{app}.container"), container.into_bytes()),
        (format!("{app}/{app}-data.volume"), volume.into_bytes()),
        (format!("{app}/{app}.env"), env.into_bytes()),
        (
            format!("{app}/README.md"),
            format!("# {app}\n").into_bytes(),
        ),
    ]
}

/// Every file of a source with `n` apps, as (path, bytes). The app numbered
/// `changed` (if any) is at generation 2, all others at generation 1.
pub fn source_files(n: usize, changed: Option<usize>) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .flat_map(|i| app_files(i, if Some(i) == changed { 2 } else { 1 }))
        .collect()
}

/// A snapshot of a source with `n` apps, as a fetch would hand it over.
pub fn snapshot(n: usize, changed: Option<usize>) -> Snapshot {
    Snapshot {
        revision: format!("bench-{n}-{changed:?}"),
        files: source_files(n, changed)
            .into_iter()
            .map(|(path, bytes)| (path, Arc::from(bytes)))
            .collect(),
    }
}

/// What the bench apps are validated for: the newest podman, offline.
pub fn bench_target() -> legerd::quadlet::Target {
    legerd::quadlet::Target::offline(legerd::quadlet::KeyTable::newest())
}

/// The validated tree of a source with `n` apps, built by the real assembler.
///
/// # Panics
/// When the generated apps do not validate: the fixture itself is broken then.
pub fn desired(n: usize, changed: Option<usize>) -> DesiredTree {
    match assemble(&snapshot(n, changed), &bench_limits(), &bench_target()) {
        Ok(tree) => tree,
        Err(e) => panic!("the bench fixture does not validate: {e}"),
    }
}

/// The state a running unit reports.
pub fn active_unit() -> UnitState {
    UnitState {
        load_state: "loaded".into(),
        active_state: "active".into(),
        sub_state: "running".into(),
    }
}

/// The quadlet file each unit comes from, keyed by relative path in its app.
fn unit_of(app: &legerd::model::App) -> BTreeMap<&str, &str> {
    app.units
        .iter()
        .map(|u| (u.source_file.as_str(), u.name.as_str()))
        .collect()
}

/// The inventory a previous apply of `tree` left behind, every entry at its revision.
pub fn inventory(tree: &DesiredTree) -> Vec<InventoryEntry> {
    let mut entries = Vec::new();
    for app in tree.apps.values() {
        let units = unit_of(app);
        for (rel, file) in &app.files {
            entries.push(InventoryEntry {
                key: install_key(&app.name, rel),
                app: app.name.clone(),
                hash: file.hash,
                unit: units.get(rel.as_str()).map(|u| u.to_string()),
                revision: tree.revision.clone(),
                installed_at: "2026-01-01T00:00:00Z".into(),
            });
        }
    }
    entries
}

/// Writes every file of `tree` under `quadlet_dir` (`<dir>/<app>/<rel>`), as a
/// previous apply would have.
pub fn install(tree: &DesiredTree, quadlet_dir: &Path) -> io::Result<()> {
    for app in tree.apps.values() {
        for (rel, file) in &app.files {
            let path = quadlet_dir.join(install_key(&app.name, rel));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, &file.content)?;
        }
    }
    Ok(())
}

/// What the host looks like right after `tree` was applied: every file managed with
/// the hash on disk equal to the installed one, every unit active.
pub fn converged(tree: &DesiredTree) -> Observed {
    let mut observed = Observed::default();
    for app in tree.apps.values() {
        let units = unit_of(app);
        for (rel, file) in &app.files {
            observed.managed.insert(
                install_key(&app.name, rel),
                ManagedFile {
                    app: app.name.clone(),
                    installed: file.hash,
                    on_disk: Some(file.hash),
                    unit: units.get(rel.as_str()).map(|u| u.to_string()),
                },
            );
        }
        for unit in &app.units {
            observed.units.insert(unit.name.clone(), active_unit());
        }
    }
    observed
}

/// A work tree of `n` apps under `root/work`, committed on `main`, and its bare clone
/// `root/apps.git`, the source the git benches poll; returns (work tree, bare).
pub fn source_repository(root: &Path, n: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let work = root.join("work");
    let bare = root.join("apps.git");
    for (path, bytes) in source_files(n, None) {
        let path = work.join(path);
        std::fs::create_dir_all(path.parent().expect("app folder")).expect("mkdir");
        std::fs::write(path, bytes).expect("write source file");
    }
    git(&work, &["init", "-q"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "apps"]);
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().expect("utf-8 path"),
            bare.to_str().expect("utf-8 path"),
        ],
    );
    (work, bare)
}

/// Runs git with a fixed identity and no user or system config; panics with its stderr.
pub fn git(dir: &Path, args: &[&str]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use legerd::plan::{Action, PlanPolicy, plan};

    const POLICY: PlanPolicy = PlanPolicy {
        prune: true,
        self_heal: true,
        allow_empty: false,
    };

    #[test]
    fn desired_installs_three_files_and_two_units_per_app() {
        let tree = desired(5, None);
        assert_eq!(tree.apps.len(), 5);
        for app in tree.apps.values() {
            assert_eq!(app.files.len(), 3, "{}: {:?}", app.name, app.files.keys());
            let units: Vec<_> = app.units.iter().map(|u| u.name.as_str()).collect();
            assert_eq!(
                units,
                vec![
                    format!("{}-data-volume.service", app.name),
                    format!("{}.service", app.name)
                ]
            );
        }
    }

    #[test]
    fn inventory_matches_converged_observation() {
        let tree = desired(4, None);
        let observed = converged(&tree);
        let entries = inventory(&tree);
        assert_eq!(entries.len(), observed.managed.len());
        for e in &entries {
            let m = &observed.managed[&e.key];
            assert_eq!((&e.app, e.hash, &e.unit), (&m.app, m.installed, &m.unit));
        }
    }

    #[test]
    fn converged_plans_nothing() {
        let tree = desired(10, None);
        let p = plan(&tree, &converged(&tree), POLICY).unwrap();
        assert!(p.is_empty(), "{:?}", p.actions);
        assert!(p.drift.is_empty(), "{:?}", p.drift);
    }

    #[test]
    fn changed_app_restarts_only_its_container() {
        let before = desired(10, None);
        let after = desired(10, Some(3));
        let p = plan(&after, &converged(&before), POLICY).unwrap();
        let shown: Vec<String> = p.actions.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "update app0003/app0003.container",
                "update app0003/app0003.env",
                "reload",
                "restart app0003.service",
            ]
        );
        assert!(matches!(p.actions[2], Action::Reload));
    }
}

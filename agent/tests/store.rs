//! The SQLite store against a real database file in a temp dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use leger_api_types::{PassOutcome, PassRecord};
use legerd::model::ContentHash;
use legerd::store::{InventoryEntry, RevisionState, SCHEMA_VERSION, Store, StoreError};

fn entry(key: &str, bytes: &[u8], rev: &str) -> InventoryEntry {
    InventoryEntry {
        key: key.to_owned(),
        app: key.split('/').next().unwrap().to_owned(),
        hash: ContentHash::of(bytes),
        unit: key
            .strip_suffix(".container")
            .map(|s| format!("{}.service", s.rsplit('/').next().unwrap())),
        revision: rev.to_owned(),
        installed_at: "2025-01-02T03:04:05Z".to_owned(),
    }
}

fn pass(trigger: &str, outcome: PassOutcome, error: Option<&str>) -> PassRecord {
    PassRecord {
        id: 0,
        started_at: "2025-01-02T03:04:05Z".into(),
        finished_at: "2025-01-02T03:04:06Z".into(),
        duration_ms: 1234,
        trigger: trigger.into(),
        revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
        outcome,
        actions: vec!["write web/web.container".into(), "start web.service".into()],
        error: error.map(str::to_owned),
        runs: 1,
        first_started_at: None,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn store_open_creates_private_dir_and_file() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("state/leger/legerd.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
    let journal: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal.to_ascii_lowercase(), "wal");
}

#[test]
fn store_migrates_an_empty_file() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    std::fs::write(&path, b"").unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store
        .upsert_inventory(&entry("web/web.container", b"x", "r1"))
        .unwrap();
    assert_eq!(store.inventory().unwrap().len(), 1);
}

#[test]
fn store_refuses_a_newer_schema() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    let e = Store::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::TooNew { .. }), "{e}");
    assert!(e.to_string().contains("upgrade legerd"), "{e}");
}

#[test]
fn store_inventory_upserts_removes_and_persists() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    {
        let store = Store::open(&path).unwrap();
        store
            .upsert_inventory(&entry("web/web.container", b"v1", "r1"))
            .unwrap();
        store
            .upsert_inventory(&entry("web/conf/nginx.conf", b"c", "r1"))
            .unwrap();
        store
            .upsert_inventory(&entry("db/db.container", b"d", "r1"))
            .unwrap();
        // A new version of the same file replaces the entry.
        store
            .upsert_inventory(&entry("web/web.container", b"v2", "r2"))
            .unwrap();
        assert!(store.remove_inventory("db/db.container").unwrap());
        assert!(!store.remove_inventory("db/db.container").unwrap());
    }
    let store = Store::open(&path).unwrap();
    let inv = store.inventory().unwrap();
    assert_eq!(
        inv,
        vec![
            entry("web/conf/nginx.conf", b"c", "r1"),
            entry("web/web.container", b"v2", "r2"),
        ]
    );
    assert_eq!(inv[1].unit.as_deref(), Some("web.service"));
    assert_eq!(inv[0].unit, None);
}

#[test]
fn store_passes_are_newest_first_and_persist() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    let (a, b, c);
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_pass().unwrap(), None);
        let mut p = pass("startup", PassOutcome::Applied, None);
        p.id = 999; // ignored on insert
        a = store.insert_pass(&p).unwrap();
        b = store
            .insert_pass(&pass("poll", PassOutcome::Noop, None))
            .unwrap();
        c = store
            .insert_pass(&pass("poll", PassOutcome::Failed, Some("fetch failed")))
            .unwrap();
        assert!(a < b && b < c);
    }
    let store = Store::open(&path).unwrap();
    let all = store.passes(10).unwrap();
    assert_eq!(all.iter().map(|p| p.id).collect::<Vec<_>>(), vec![c, b, a]);
    let mut expected = pass("poll", PassOutcome::Failed, Some("fetch failed"));
    expected.id = c;
    assert_eq!(all[0], expected);
    assert_eq!(store.passes(2).unwrap().len(), 2);
    assert_eq!(store.last_pass().unwrap().unwrap().id, c);
    assert_eq!(all[2].outcome, PassOutcome::Applied);
}

#[test]
fn store_revisions_track_verdicts() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.last_applied_revision().unwrap(), None);
        store
            .record_revision("r1", RevisionState::Fetched, None)
            .unwrap();
        assert_eq!(
            store.revision_state("r1").unwrap(),
            Some(RevisionState::Fetched)
        );
        assert_eq!(store.last_applied_revision().unwrap(), None);
        store
            .record_revision("r1", RevisionState::Applied, None)
            .unwrap();
        store
            .record_revision("r2", RevisionState::Fetched, None)
            .unwrap();
        store
            .record_revision(
                "r2",
                RevisionState::Rejected,
                Some("web.container:3: bad key"),
            )
            .unwrap();
        // A re-fetch of an applied revision keeps its verdict.
        store
            .record_revision("r1", RevisionState::Fetched, None)
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.last_applied_revision().unwrap().as_deref(),
        Some("r1")
    );
    assert_eq!(
        store.revision_state("r1").unwrap(),
        Some(RevisionState::Applied)
    );
    let r2 = store.revision("r2").unwrap().unwrap();
    assert_eq!(r2.state, RevisionState::Rejected);
    assert_eq!(r2.error.as_deref(), Some("web.container:3: bad key"));
    assert_eq!(store.revision_state("nope").unwrap(), None);
    // Applying r3, then going back to r1 (a revert), makes r1 current again.
    store
        .record_revision("r3", RevisionState::Applied, None)
        .unwrap();
    assert_eq!(
        store.last_applied_revision().unwrap().as_deref(),
        Some("r3")
    );
    store
        .record_revision("r1", RevisionState::Applied, None)
        .unwrap();
    assert_eq!(
        store.last_applied_revision().unwrap().as_deref(),
        Some("r1")
    );
}

#[test]
fn store_drift_and_meta_persist() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    {
        let store = Store::open(&path).unwrap();
        store
            .record_drift("file", "web/web.container", "edited")
            .unwrap();
        store
            .record_drift("file", "web/web.container", "deleted")
            .unwrap();
        store.record_drift("unit", "web.service", "failed").unwrap();
        store.set_meta("desired", "old").unwrap();
        store
            .set_meta("desired", "[source]\nkind = \"dir\"\n")
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.drift_count("file").unwrap(), 2);
    assert_eq!(store.drift_count("unit").unwrap(), 1);
    assert_eq!(store.drift_count("other").unwrap(), 0);
    assert_eq!(
        store.meta("desired").unwrap().as_deref(),
        Some("[source]\nkind = \"dir\"\n")
    );
    assert_eq!(store.meta("missing").unwrap(), None);
}

#[test]
fn store_reports_a_corrupt_hash_with_the_column() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    let store = Store::open(&path).unwrap();
    store
        .upsert_inventory(&entry("web/web.container", b"x", "r1"))
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE inventory SET hash = 'zz'", [])
        .unwrap();
    let e = store.inventory().unwrap_err().to_string();
    assert!(e.contains("inventory.hash") && e.contains("zz"), "{e}");
}

/// A history written by the schema before version 3 (no `runs` column) is migrated in
/// place and reads as one pass per row.
#[test]
fn store_migrates_a_version_2_history() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    drop(Store::open(&path).unwrap());
    // Turn the file back into version 2, with one row written the old way.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE passes DROP COLUMN runs;
             ALTER TABLE passes DROP COLUMN first_started_at;
             INSERT INTO passes (started_at, finished_at, duration_ms, trigger, revision,
               outcome, actions, error)
             VALUES ('2025-01-01T00:00:00Z', '2025-01-01T00:00:01Z', 5, 'startup', 'r1',
               'applied', '[\"start web.service\"]', NULL);
             PRAGMA user_version = 2;",
        )
        .unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let old = store.last_pass().unwrap().unwrap();
    assert_eq!((old.trigger.as_str(), old.runs), ("startup", 1));
    assert_eq!(old.first_started_at, None);
}

/// Idle polls become counters, a repeated failure folds into one row (ids keep
/// increasing), and both survive reopening the file.
#[test]
fn store_records_passes_as_rows_folds_and_counters() {
    use legerd::history::Keep;
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("legerd.db");
    let (first_fail, second_fail);
    {
        let store = Store::open(&path).unwrap();
        let applied = store
            .record_pass(&pass("startup", PassOutcome::Applied, None))
            .unwrap();
        assert_eq!(applied.1, Keep::Row);
        let mut idle = pass("poll", PassOutcome::Noop, None);
        idle.actions.clear();
        for _ in 0..3 {
            let (r, keep) = store.record_pass(&idle).unwrap();
            assert_eq!(
                (r.id, keep),
                (0, Keep::Count(legerd::history::Quiet::IdlePoll))
            );
        }
        let mut echo = idle.clone();
        echo.trigger = "drift-file,drift-unit:web.service".into();
        store.record_pass(&echo).unwrap();
        let mut bad = pass(
            "poll",
            PassOutcome::Failed,
            Some("revision r2 is known bad"),
        );
        bad.actions.clear();
        first_fail = store.record_pass(&bad).unwrap().0;
        bad.started_at = "2025-01-02T04:00:00Z".into();
        let (folded, keep) = store.record_pass(&bad).unwrap();
        assert_eq!(keep, Keep::Fold { id: first_fail.id });
        second_fail = folded;
    }
    let store = Store::open(&path).unwrap();
    let rows = store.passes(10).unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(second_fail.id > first_fail.id, "ids keep increasing");
    assert_eq!(rows[0], second_fail);
    assert_eq!(rows[0].runs, 2);
    assert_eq!(
        rows[0].first_started_at.as_deref(),
        Some(first_fail.started_at.as_str())
    );
    assert_eq!(
        store.pass(first_fail.id).unwrap(),
        None,
        "replaced by the fold"
    );
    assert_eq!(
        store.pass(second_fail.id).unwrap().unwrap().error,
        second_fail.error
    );
    let summary = store.history_summary().unwrap();
    assert_eq!((summary.idle_polls, summary.quiet_drift_checks), (3, 1));
    assert_eq!(summary.since.as_deref(), Some("2025-01-02T03:04:05Z"));
    // Filters read newest first and stop at the limit.
    let failed = legerd::history::Filter {
        failed: true,
        ..Default::default()
    };
    assert_eq!(store.passes_matching(10, &failed).unwrap(), [second_fail]);
    assert_eq!(
        store
            .passes_matching(1, &legerd::history::Filter::default())
            .unwrap()
            .len(),
        1
    );
}

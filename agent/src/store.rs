//! SQLite state: inventory, revisions, pass history, drift events, meta.
//!
//! The inventory is what makes legerd safe to run on a shared host: it records every
//! file legerd installed with its content hash, so a prune only ever removes files legerd
//! wrote and self-heal can tell an edited file from an untouched one. legerd records an
//! entry *before* it writes the file and removes it *after* it deletes the file, so a
//! crash in between never leaves a file on disk that the inventory does not claim.
//!
//! The API is blocking on purpose (rusqlite is): callers on the async side wrap calls in
//! `spawn_blocking`. The database runs in WAL mode so `legerctl history` readers never
//! block a pass that is writing.
//!
//! The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] holds one SQL
//! batch per version, applied in order inside a transaction each.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use leger_api_types::{PassOutcome, PassRecord};
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::ContentHash;

/// Schema migrations: entry `i` moves the schema from version `i` to `i + 1`.
///
/// Never edit a migration that has shipped; append a new one instead, since hosts in the
/// field already ran the old ones.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the first schema.
    "CREATE TABLE inventory (
        key          TEXT PRIMARY KEY NOT NULL,
        app          TEXT NOT NULL,
        hash         TEXT NOT NULL,
        unit         TEXT,
        revision     TEXT NOT NULL,
        installed_at TEXT NOT NULL
    );
    CREATE INDEX inventory_app ON inventory(app);
    CREATE TABLE passes (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at   TEXT NOT NULL,
        finished_at  TEXT NOT NULL,
        duration_ms  INTEGER NOT NULL,
        trigger      TEXT NOT NULL,
        revision     TEXT,
        outcome      TEXT NOT NULL,
        actions      TEXT NOT NULL,
        error        TEXT
    );
    CREATE TABLE revisions (
        revision     TEXT PRIMARY KEY NOT NULL,
        state        TEXT NOT NULL,
        error        TEXT,
        updated_at   TEXT NOT NULL,
        seq          INTEGER NOT NULL
    );
    CREATE TABLE drift_events (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        kind         TEXT NOT NULL,
        target       TEXT NOT NULL,
        detail       TEXT NOT NULL,
        at           TEXT NOT NULL
    );
    CREATE INDEX drift_events_kind ON drift_events(kind);
    CREATE TABLE meta (
        key          TEXT PRIMARY KEY NOT NULL,
        value        TEXT NOT NULL
    );",
    // 1 -> 2: secrets. `local_secrets` holds values age-encrypted to the node identity;
    // `podman_secrets` is the ownership record of secrets legerd created in podman, with
    // a keyed MAC of the value written (never the value) for change detection.
    "CREATE TABLE local_secrets (
        name         TEXT PRIMARY KEY NOT NULL,
        ciphertext   BLOB NOT NULL,
        version      INTEGER NOT NULL,
        updated_at   TEXT NOT NULL
    );
    CREATE TABLE podman_secrets (
        name            TEXT PRIMARY KEY NOT NULL,
        mac             TEXT NOT NULL,
        source          TEXT NOT NULL,
        version         TEXT NOT NULL,
        consumers       TEXT NOT NULL,
        restart_pending INTEGER NOT NULL,
        written_at      TEXT NOT NULL
    );",
    // 2 -> 3: history rows that stand for repeated passes (a failure retried with
    // backoff, every poll while suspended): how many, and when the first started.
    "ALTER TABLE passes ADD COLUMN runs INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE passes ADD COLUMN first_started_at TEXT;",
];

/// Meta key: when legerd started counting quiet passes instead of listing them.
const META_COUNTED_SINCE: &str = "history.counted_since";

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a writer waits for another connection's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a store operation failed. Every variant names the database file so an operator
/// knows which file to inspect.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory or the database file could not be created.
    #[error(
        "cannot create state database {path}: {source}; check that the state directory is writable"
    )]
    Create {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("state database {path}: {what} failed: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The operation, e.g. `insert pass`.
        what: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file was written by a newer legerd with a schema this build does not know.
    #[error(
        "state database {path} has schema version {found}, newer than {supported} known to this legerd; upgrade legerd or restore a backup"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// `user_version` in the file.
        found: i64,
        /// [`SCHEMA_VERSION`].
        supported: i64,
    },
    /// A row holds a value this build cannot read (hand-edited or corrupted file).
    #[error("state database {path}: {what} holds invalid value {value:?}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Table and column.
        what: &'static str,
        /// The value found.
        value: String,
    },
}

/// One file legerd installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// `app/relpath`, the file's path under the quadlet dir; unique.
    pub key: String,
    /// The app the file belongs to, so pruning an app finds all its files.
    pub app: String,
    /// Hash of the bytes legerd wrote, to tell a hand edit from an untouched file.
    pub hash: ContentHash,
    /// The unit the file generates, when it is a quadlet (`web.service`).
    pub unit: Option<String>,
    /// The revision that installed this version of the file.
    pub revision: String,
    /// RFC 3339 time of the install.
    pub installed_at: String,
}

/// A podman secret legerd created: the ownership record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedSecret {
    /// The podman secret name.
    pub name: String,
    /// Keyed MAC of the value in podman (hex); never the value.
    pub mac: String,
    /// The source kind the value came from.
    pub source: String,
    /// The source's version of the value.
    pub version: String,
    /// The units that consumed it at the last pass.
    pub consumers: Vec<String>,
    /// The value changed and its consumers have not restarted yet.
    pub restart_pending: bool,
    /// RFC 3339 time of the last write.
    pub written_at: String,
}

/// A value in the local secret store, without the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSecretInfo {
    /// The name.
    pub name: String,
    /// Bumped by every `legerctl secrets set`.
    pub version: i64,
    /// RFC 3339 time of the last set.
    pub updated_at: String,
}

/// What legerd decided about a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevisionState {
    /// Fetched, not yet applied or rejected.
    Fetched,
    /// Applied to the host.
    Applied,
    /// Failed validation; legerd will not try it again.
    Rejected,
    /// Applied, failed its health gate and was rolled back; legerd will not try it
    /// again until the source moves past it.
    Failed,
}

impl RevisionState {
    /// The value stored in SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionState::Fetched => "fetched",
            RevisionState::Applied => "applied",
            RevisionState::Rejected => "rejected",
            RevisionState::Failed => "failed",
        }
    }
}

impl FromStr for RevisionState {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "fetched" => Ok(RevisionState::Fetched),
            "applied" => Ok(RevisionState::Applied),
            "rejected" => Ok(RevisionState::Rejected),
            "failed" => Ok(RevisionState::Failed),
            _ => Err(()),
        }
    }
}

/// A revision with the verdict on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRecord {
    /// Commit id or `sha256:<digest>`.
    pub revision: String,
    /// The latest verdict.
    pub state: RevisionState,
    /// Why it was rejected (or failed to apply), if it was.
    pub error: Option<String>,
    /// RFC 3339 time of the latest verdict.
    pub updated_at: String,
}

/// legerd's SQLite database. One per legerd instance; not `Sync`, so the API shares it
/// behind a mutex.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

pub use crate::clock::now_rfc3339;

impl Store {
    /// Opens (or creates) the database at `path` and migrates it to [`SCHEMA_VERSION`].
    ///
    /// A missing parent directory is created with mode 0700 and a missing file with mode
    /// 0600: the inventory and history describe the host and are nobody else's business.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let create_err = |source| StoreError::Create {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(create_err)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(create_err)?;
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            what: "open",
            source,
        })?;
        let mut store = Store {
            conn,
            path: path.to_owned(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// The database file, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn configure(&self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(self.err("set busy timeout"))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(self.err("enable WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), journal_mode = %mode, "SQLite refused WAL mode");
        }
        // FULL, not WAL's usual NORMAL: NORMAL may lose the last commits on a power cut
        // (they sit in the WAL until a checkpoint syncs it). The inventory row must be
        // on disk before its file is renamed into the quadlet dir, and the intent record
        // before the first unit job, or a host that loses power mid-apply would hold a
        // file legerd does not know it wrote. FULL syncs the WAL at every commit: one
        // fsync per transaction, a few per file legerd installs.
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(self.err("set pragmas"))
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.err("read schema version"))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let path = self.path.clone();
        let err = |what| {
            let path = path.clone();
            move |source| StoreError::Sqlite { path, what, source }
        };
        for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self.conn.transaction().map_err(err("begin migration"))?;
            tx.execute_batch(sql).map_err(err("migrate schema"))?;
            // user_version cannot be a bound parameter; the value is our own integer.
            tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))
                .map_err(err("record schema version"))?;
            tx.commit().map_err(err("commit migration"))?;
            tracing::info!(path = %path.display(), version = version + 1, "migrated state database");
        }
        Ok(())
    }

    // ---- inventory -------------------------------------------------------------

    /// Every installed file, ordered by key.
    pub fn inventory(&self) -> Result<Vec<InventoryEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, app, hash, unit, revision, installed_at FROM inventory ORDER BY key",
            )
            .map_err(self.err("read inventory"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(self.err("read inventory"))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, app, hash, unit, revision, installed_at) =
                row.map_err(self.err("read inventory"))?;
            let hash = ContentHash::from_hex(&hash).ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                what: "inventory.hash",
                value: hash,
            })?;
            out.push(InventoryEntry {
                key,
                app,
                hash,
                unit,
                revision,
                installed_at,
            });
        }
        Ok(out)
    }

    /// Records (or updates) an installed file. Call it *before* writing the file.
    pub fn upsert_inventory(&self, e: &InventoryEntry) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO inventory (key, app, hash, unit, revision, installed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(key) DO UPDATE SET app = excluded.app, hash = excluded.hash,
                   unit = excluded.unit, revision = excluded.revision,
                   installed_at = excluded.installed_at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    e.key,
                    e.app,
                    e.hash.to_hex(),
                    e.unit,
                    e.revision,
                    e.installed_at
                ])
            })
            .map_err(self.err("upsert inventory"))?;
        Ok(())
    }

    /// Forgets an installed file. Call it *after* deleting the file. Returns whether
    /// the key was known.
    pub fn remove_inventory(&self, key: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM inventory WHERE key = ?1", [key])
            .map_err(self.err("remove inventory"))?;
        Ok(n > 0)
    }

    // ---- passes ----------------------------------------------------------------

    /// Appends a pass to the history and returns its id. `pass.id` is ignored.
    pub fn insert_pass(&self, pass: &PassRecord) -> Result<i64, StoreError> {
        insert_pass_row(&self.conn, pass).map_err(self.err("insert pass"))
    }

    /// The newest `limit` passes, newest first.
    pub fn passes(&self, limit: usize) -> Result<Vec<PassRecord>, StoreError> {
        self.passes_matching(limit, &crate::history::Filter::default())
    }

    /// The newest `limit` passes that `filter` lists, newest first. Rows are read
    /// newest first and the scan stops at `limit` matches.
    pub fn passes_matching(
        &self,
        limit: usize,
        filter: &crate::history::Filter,
    ) -> Result<Vec<PassRecord>, StoreError> {
        self.read_passes("ORDER BY id DESC", [], limit, |p| filter.matches(p))
    }

    /// One pass by id, with its whole error text (`legerctl history show ID`).
    pub fn pass(&self, id: i64) -> Result<Option<PassRecord>, StoreError> {
        Ok(self
            .read_passes("WHERE id = ?1", [id], 1, |_| true)?
            .into_iter()
            .next())
    }

    fn read_passes<P: rusqlite::Params>(
        &self,
        tail: &str,
        params: P,
        limit: usize,
        keep: impl Fn(&PassRecord) -> bool,
    ) -> Result<Vec<PassRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, started_at, finished_at, duration_ms, trigger, revision, outcome,
                   actions, error, runs, first_started_at
                 FROM passes {tail}"
            ))
            .map_err(self.err("read passes"))?;
        let mut rows = stmt.query(params).map_err(self.err("read passes"))?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(r) = rows.next().map_err(self.err("read passes"))? else {
                break;
            };
            let pass = self.pass_of_row(r).map_err(self.err("read passes"))??;
            if keep(&pass) {
                out.push(pass);
            }
        }
        Ok(out)
    }

    fn pass_of_row(
        &self,
        r: &rusqlite::Row<'_>,
    ) -> rusqlite::Result<Result<PassRecord, StoreError>> {
        let outcome: String = r.get(6)?;
        let actions: String = r.get(7)?;
        let Some(parsed) = parse_outcome(&outcome) else {
            return Ok(Err(StoreError::Corrupt {
                path: self.path.clone(),
                what: "passes.outcome",
                value: outcome,
            }));
        };
        let Ok(actions) = serde_json::from_str::<Vec<String>>(&actions) else {
            return Ok(Err(StoreError::Corrupt {
                path: self.path.clone(),
                what: "passes.actions",
                value: actions,
            }));
        };
        Ok(Ok(PassRecord {
            id: r.get(0)?,
            started_at: r.get(1)?,
            finished_at: r.get(2)?,
            duration_ms: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            trigger: r.get(4)?,
            revision: r.get(5)?,
            outcome: parsed,
            actions,
            error: r.get(8)?,
            runs: u32::try_from(r.get::<_, i64>(9)?).unwrap_or(1),
            first_started_at: r.get(10)?,
        }))
    }

    /// Records a finished pass as [`crate::history::classify`] decides: a new row, one
    /// row standing for it and the newest row it repeats (the newest is replaced, so
    /// ids keep increasing), or a counter. Returns the pass as recorded (id 0 when
    /// counted; `runs` when folded) and the decision. One transaction, so a crash never
    /// loses the folded row.
    pub fn record_pass(
        &self,
        pass: &PassRecord,
    ) -> Result<(PassRecord, crate::history::Keep), StoreError> {
        use crate::history::{Keep, classify};
        let newest = self.last_pass()?;
        let keep = classify(pass, newest.as_ref());
        let path = self.path.clone();
        let err = |what| {
            let path = path.clone();
            move |source| StoreError::Sqlite { path, what, source }
        };
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(err("begin history write"))?;
        let mut row = pass.clone();
        row.id = match keep {
            Keep::Count(quiet) => {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, '1')
                     ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                    [quiet.meta_key()],
                )
                .map_err(err("count a quiet pass"))?;
                tx.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                    params![META_COUNTED_SINCE, pass.started_at],
                )
                .map_err(err("count a quiet pass"))?;
                0
            }
            Keep::Row | Keep::Fold { .. } => {
                if let (Keep::Fold { id }, Some(n)) = (keep, &newest) {
                    row.runs = n.runs.max(1) + 1;
                    row.first_started_at =
                        Some(n.first_started_at.clone().unwrap_or(n.started_at.clone()));
                    tx.execute("DELETE FROM passes WHERE id = ?1", [id])
                        .map_err(err("fold a repeated pass"))?;
                }
                insert_pass_row(&tx, &row).map_err(err("insert pass"))?
            }
        };
        tx.commit().map_err(err("commit history write"))?;
        Ok((row, keep))
    }

    /// The passes counted rather than listed, for `legerctl history`.
    pub fn history_summary(&self) -> Result<leger_api_types::HistorySummary, StoreError> {
        use crate::history::Quiet;
        let count = |q: Quiet| -> Result<u64, StoreError> {
            Ok(self
                .meta(q.meta_key())?
                .and_then(|v| v.parse().ok())
                .unwrap_or(0))
        };
        Ok(leger_api_types::HistorySummary {
            idle_polls: count(Quiet::IdlePoll)?,
            quiet_drift_checks: count(Quiet::DriftCheck)?,
            since: self.meta(META_COUNTED_SINCE)?,
        })
    }

    /// The most recent pass, if any ran.
    pub fn last_pass(&self) -> Result<Option<PassRecord>, StoreError> {
        Ok(self.passes(1)?.into_iter().next())
    }

    // ---- revisions -------------------------------------------------------------

    /// Records a verdict on a revision.
    ///
    /// Recording `Fetched` for a revision that already has a verdict (applied or
    /// rejected) keeps that verdict: fetching the same commit again says nothing new
    /// about it, and a poll must not make the applied revision look unapplied.
    pub fn record_revision(
        &self,
        revision: &str,
        state: RevisionState,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let sql = if state == RevisionState::Fetched {
            "INSERT INTO revisions (revision, state, error, updated_at, seq)
             VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(seq), 0) + 1 FROM revisions))
             ON CONFLICT(revision) DO NOTHING"
        } else {
            "INSERT INTO revisions (revision, state, error, updated_at, seq)
             VALUES (?1, ?2, ?3, ?4, (SELECT COALESCE(MAX(seq), 0) + 1 FROM revisions))
             ON CONFLICT(revision) DO UPDATE SET state = excluded.state, error = excluded.error,
               updated_at = excluded.updated_at, seq = excluded.seq"
        };
        self.conn
            .execute(sql, params![revision, state.as_str(), error, now])
            .map_err(self.err("record revision"))?;
        Ok(())
    }

    /// Forgets that `revision` failed its health gate (an operator's `--force`): it
    /// becomes `fetched` again, so legerd may apply it once more. Returns false when it
    /// was not marked failed.
    pub fn forget_failure(&self, revision: &str, note: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE revisions SET state = 'fetched', error = ?2, updated_at = ?3
                 WHERE revision = ?1 AND state = 'failed'",
                params![revision, note, now_rfc3339()],
            )
            .map_err(self.err("forget a failure"))?;
        Ok(n > 0)
    }

    /// The revision most recently recorded as applied: what the host runs.
    pub fn last_applied_revision(&self) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT revision FROM revisions WHERE state = 'applied' ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("read last applied revision"))
    }

    /// The verdict on a revision, or `None` when it was never recorded.
    pub fn revision_state(&self, revision: &str) -> Result<Option<RevisionState>, StoreError> {
        Ok(self.revision(revision)?.map(|r| r.state))
    }

    /// The full record of a revision, with the rejection error.
    pub fn revision(&self, revision: &str) -> Result<Option<RevisionRecord>, StoreError> {
        let row: Option<(String, Option<String>, String)> = self
            .conn
            .query_row(
                "SELECT state, error, updated_at FROM revisions WHERE revision = ?1",
                [revision],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err("read revision"))?;
        row.map(|(state, error, updated_at)| {
            let parsed = state.parse().map_err(|()| StoreError::Corrupt {
                path: self.path.clone(),
                what: "revisions.state",
                value: state,
            })?;
            Ok(RevisionRecord {
                revision: revision.to_owned(),
                state: parsed,
                error,
                updated_at,
            })
        })
        .transpose()
    }

    /// The most recent revisions, newest verdict first.
    pub fn revisions(&self, limit: usize) -> Result<Vec<RevisionRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT revision, state, error, updated_at FROM revisions ORDER BY seq DESC LIMIT ?1")
            .map_err(self.err("list revisions"))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            })
            .map_err(self.err("list revisions"))?;
        let mut out = Vec::new();
        for row in rows {
            let (revision, state, error, updated_at) = row.map_err(self.err("list revisions"))?;
            let state = state.parse().map_err(|()| StoreError::Corrupt {
                path: self.path.clone(),
                what: "revisions.state",
                value: state.clone(),
            })?;
            out.push(RevisionRecord {
                revision,
                state,
                error,
                updated_at,
            });
        }
        Ok(out)
    }

    // ---- drift -----------------------------------------------------------------

    /// Records that something legerd manages changed behind its back.
    /// `kind` is `"file"` (edited or deleted) or `"unit"` (stopped or failed).
    pub fn record_drift(&self, kind: &str, target: &str, detail: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO drift_events (kind, target, detail, at) VALUES (?1, ?2, ?3, ?4)",
                params![kind, target, detail, now_rfc3339()],
            )
            .map_err(self.err("record drift"))?;
        Ok(())
    }

    /// How many drift events of a kind were ever recorded (for metrics).
    pub fn drift_count(&self, kind: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM drift_events WHERE kind = ?1",
                [kind],
                |r| r.get(0),
            )
            .map_err(self.err("count drift"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ---- meta ------------------------------------------------------------------

    /// Sets a key-value pair (e.g. the last good desired.toml).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(self.err("set meta"))?;
        Ok(())
    }

    /// Reads a key-value pair.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err("read meta"))
    }
}

impl Store {
    // ---- secrets ---------------------------------------------------------------

    /// Stores an age-encrypted value under `name`; returns its new version.
    pub fn put_local_secret(&self, name: &str, ciphertext: &[u8]) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "INSERT INTO local_secrets (name, ciphertext, version, updated_at)
                 VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT(name) DO UPDATE SET ciphertext = excluded.ciphertext,
                   version = local_secrets.version + 1, updated_at = excluded.updated_at
                 RETURNING version",
                params![name, ciphertext, now_rfc3339()],
                |r| r.get(0),
            )
            .map_err(self.err("store local secret"))
    }

    /// The ciphertext and version of a local secret.
    pub fn local_secret(&self, name: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT ciphertext, version FROM local_secrets WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err("read local secret"))
    }

    /// Deletes a local secret; returns whether it existed.
    pub fn remove_local_secret(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM local_secrets WHERE name = ?1", [name])
            .map_err(self.err("remove local secret"))?;
        Ok(n > 0)
    }

    /// Every local secret, without values, by name.
    pub fn local_secrets(&self) -> Result<Vec<LocalSecretInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, version, updated_at FROM local_secrets ORDER BY name")
            .map_err(self.err("list local secrets"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(LocalSecretInfo {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    updated_at: r.get(2)?,
                })
            })
            .map_err(self.err("list local secrets"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.err("list local secrets"))
    }

    /// Every podman secret legerd created, by name.
    pub fn owned_secrets(
        &self,
    ) -> Result<std::collections::BTreeMap<String, OwnedSecret>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, mac, source, version, consumers, restart_pending, written_at
                 FROM podman_secrets ORDER BY name",
            )
            .map_err(self.err("read podman secrets"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(self.err("read podman secrets"))?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (name, mac, source, version, consumers, restart_pending, written_at) =
                row.map_err(self.err("read podman secrets"))?;
            let consumers: Vec<String> =
                serde_json::from_str(&consumers).map_err(|_| StoreError::Corrupt {
                    path: self.path.clone(),
                    what: "podman_secrets.consumers",
                    value: consumers.clone(),
                })?;
            out.insert(
                name.clone(),
                OwnedSecret {
                    name,
                    mac,
                    source,
                    version,
                    consumers,
                    restart_pending,
                    written_at,
                },
            );
        }
        Ok(out)
    }

    /// Records a podman secret legerd is about to write. Call it *before* podman.
    pub fn upsert_owned_secret(
        &self,
        name: &str,
        mac: &str,
        source: &str,
        version: &str,
        consumers: &[String],
        restart_pending: bool,
    ) -> Result<(), StoreError> {
        let consumers = serde_json::to_string(consumers).expect("strings always serialize");
        self.conn
            .execute(
                "INSERT INTO podman_secrets (name, mac, source, version, consumers, restart_pending, written_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(name) DO UPDATE SET mac = excluded.mac, source = excluded.source,
                   version = excluded.version, consumers = excluded.consumers,
                   restart_pending = podman_secrets.restart_pending OR excluded.restart_pending,
                   written_at = excluded.written_at",
                params![name, mac, source, version, consumers, restart_pending, now_rfc3339()],
            )
            .map_err(self.err("record podman secret"))?;
        Ok(())
    }

    /// Updates the consumers of an owned secret (for `legerctl secrets list`).
    pub fn set_owned_secret_consumers(
        &self,
        name: &str,
        consumers: &[String],
    ) -> Result<(), StoreError> {
        let consumers = serde_json::to_string(consumers).expect("strings always serialize");
        self.conn
            .execute(
                "UPDATE podman_secrets SET consumers = ?2 WHERE name = ?1",
                params![name, consumers],
            )
            .map_err(self.err("record podman secret consumers"))?;
        Ok(())
    }

    /// Clears every restart mark, after an apply restarted the consumers.
    pub fn clear_secret_restarts(&self) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE podman_secrets SET restart_pending = 0", [])
            .map_err(self.err("clear secret restart marks"))?;
        Ok(())
    }

    /// Forgets a podman secret. Call it *after* podman removed it.
    pub fn remove_owned_secret(&self, name: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM podman_secrets WHERE name = ?1", [name])
            .map_err(self.err("forget podman secret"))?;
        Ok(())
    }
}

/// Inserts one history row (`pass.id` ignored) and returns its id.
fn insert_pass_row(conn: &Connection, pass: &PassRecord) -> rusqlite::Result<i64> {
    let actions = serde_json::to_string(&pass.actions).expect("strings always serialize");
    conn.prepare_cached(
        "INSERT INTO passes (started_at, finished_at, duration_ms, trigger, revision,
           outcome, actions, error, runs, first_started_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        pass.started_at,
        pass.finished_at,
        i64::try_from(pass.duration_ms).unwrap_or(i64::MAX),
        pass.trigger,
        pass.revision,
        pass.outcome.as_str(),
        actions,
        pass.error,
        pass.runs.max(1),
        pass.first_started_at
    ])?;
    Ok(conn.last_insert_rowid())
}

fn parse_outcome(s: &str) -> Option<PassOutcome> {
    [
        PassOutcome::Applied,
        PassOutcome::Noop,
        PassOutcome::Failed,
        PassOutcome::Suspended,
        PassOutcome::Staged,
        PassOutcome::RolledBack,
        PassOutcome::Waiting,
    ]
    .into_iter()
    .find(|o| o.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every commit reaches the disk before the call returns: 2 is FULL.
    #[test]
    fn store_syncs_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("legerd.db")).unwrap();
        let level: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(level, 2);
    }
}

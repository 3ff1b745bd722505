//! Backups and restores through the local API on a real Unix socket, with a real
//! SQLite store and real files; systemd is the recording double, which only checks
//! the order of calls (stop, then one reload, then start).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use leger_api_types::{ApiError, BackupInfo, RestoreResponse};
use leger_config::BackupSettings;
use legerd::api::{ApiContext, BackupsApi, bind_socket, serve};
use legerd::backup::{Backups, RestoreJob};
use legerd::model::ContentHash;
use legerd::model::UnitState;
use legerd::plan::{Action, Plan, WriteReason};
use legerd::reconciler::Reconciler;
use legerd::store::{InventoryEntry, Store};
use legerd::systemd::recording::{Call, RecordingUnitManager};
use tokio::sync::{mpsc, oneshot, watch};

const TIMEOUT: Duration = Duration::from_secs(60);
const WEB_V1: &str = "[Container]\nImage=localhost/busybox:latest\nExec=echo v1\n";

fn row(key: &str, unit: Option<&str>, bytes: &[u8], revision: &str) -> InventoryEntry {
    InventoryEntry {
        key: key.to_owned(),
        app: key.split('/').next().unwrap().to_owned(),
        hash: ContentHash::of(bytes),
        unit: unit.map(str::to_owned),
        revision: revision.to_owned(),
        installed_at: "2025-01-01T00:00:00Z".to_owned(),
    }
}

fn install(store: &Mutex<Store>, quadlets: &Path, e: &InventoryEntry, bytes: &[u8]) {
    store.lock().unwrap().upsert_inventory(e).unwrap();
    let path = quadlets.join(&e.key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    quadlets: PathBuf,
    store: Arc<Mutex<Store>>,
    units: Arc<RecordingUnitManager>,
    revisions_dir: PathBuf,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let settings = legerd::testkit::settings_in(dir.path());
    let quadlets = settings.paths.quadlet_dir.clone();
    std::fs::create_dir_all(settings.paths.desired_file.parent().unwrap()).unwrap();
    std::fs::write(
        &settings.paths.desired_file,
        "[source]\nkind = \"dir\"\npath = \"/nonexistent\"\n",
    )
    .unwrap();
    let store = Arc::new(Mutex::new(
        Store::open(&settings.paths.state_dir.join("legerd.db")).unwrap(),
    ));
    let backups = Backups::new(
        settings.paths.state_dir.join("backups"),
        BackupSettings {
            keep: 10,
            max_age: Duration::from_secs(3600),
            max_bytes: None,
            min_free: None,
        },
    );
    // rev1 of app web is installed; rev2 is about to change web.container.
    let web = row(
        "web/web.container",
        Some("web.service"),
        WEB_V1.as_bytes(),
        "rev1",
    );
    install(&store, &quadlets, &web, WEB_V1.as_bytes());
    let plan = Plan {
        actions: vec![Action::WriteFile {
            key: web.key.clone(),
            app: "web".into(),
            hash: ContentHash::of(b"v2"),
            reason: WriteReason::Update,
        }],
        drift: vec![],
    };
    let inventory = store.lock().unwrap().inventory().unwrap();
    let taken = backups
        .take(
            &plan,
            &inventory,
            &quadlets,
            Some("rev1"),
            "rev2",
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);

    // What rev2's apply then did: changed the quadlet and added another.
    let v2 = b"[Container]\nImage=localhost/busybox:latest\nExec=echo v2\n";
    install(
        &store,
        &quadlets,
        &row("web/web.container", Some("web.service"), v2, "rev2"),
        v2,
    );
    let extra = b"[Container]\nImage=localhost/busybox:latest\n";
    install(
        &store,
        &quadlets,
        &row("web/extra.container", Some("extra.service"), extra, "rev2"),
        extra,
    );

    // The controller's part: run restores one at a time, through the reconciler's
    // converge stage. The double answers "active" so the health gate passes; it
    // checks the order of calls, not what systemd does with them.
    let units = Arc::new(RecordingUnitManager::new());
    units.set_state(
        "web.service",
        UnitState {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
        },
    );
    // rev1 is in legerd's revision store, as it is after legerd applied it.
    legerd::revisions::RevisionStore::new(settings.paths.state_dir.join("revisions"))
        .save(&legerd::model::Snapshot {
            revision: "rev1".into(),
            files: [(
                "web/web.container".to_owned(),
                std::sync::Arc::from(WEB_V1.as_bytes()),
            )]
            .into(),
        })
        .unwrap();
    let revisions_dir = settings.paths.state_dir.join("revisions");
    let (restore_tx, mut restore_rx) = mpsc::channel::<RestoreJob>(4);
    let mut reconciler = Reconciler::new(settings, Arc::clone(&units), Arc::clone(&store));
    tokio::spawn(async move {
        while let Some(job) = restore_rx.recv().await {
            let (_, r) = reconciler.restore(&job.request).await;
            let _ = job.reply.send(r);
        }
    });

    let socket = dir.path().join("run/legerd.sock");
    let listener = bind_socket(&socket, None).unwrap();
    let (_status_tx, status_rx) = watch::channel(leger_api_types::StatusDocument::new(
        Default::default(),
        Default::default(),
    ));
    let (reconcile_tx, _reconcile_rx) = mpsc::channel(1);
    let ctx = ApiContext {
        status: status_rx,
        store: Arc::clone(&store),
        reconcile: reconcile_tx,
        identity: None,
        staged: tokio::sync::watch::channel(None).1,
        revisions: None,
        backups: Some(BackupsApi {
            backups,
            restore: restore_tx,
        }),
        access: legerd::access::AccessPolicy::owner_only(),
        fleet: None,
        plan: None,
    };
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, ctx, async {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::builder()
        .unix_socket(socket)
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    Fixture {
        _dir: dir,
        quadlets,
        store,
        units,
        revisions_dir,
        client,
        _stop: stop,
    }
}

impl Fixture {
    async fn backups(&self, query: &str) -> Vec<BackupInfo> {
        let resp = self
            .client
            .get(format!("http://legerd/v1/backups{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }

    async fn restore(&self, body: &str) -> reqwest::Response {
        self.client
            .post("http://legerd/v1/restore")
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn api_backups_lists_per_app() {
    let f = fixture().await;
    let list = f.backups("?app=web").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let b = &list[0];
    assert_eq!((b.app.as_str(), b.revision.as_str()), ("web", "rev1"));
    assert_eq!(b.files, ["web.container"]);
    assert!(b.volumes.is_empty());
    assert!(b.size >= WEB_V1.len() as u64);
    assert!(b.id.ends_with("-rev1"), "{}", b.id);
    assert_eq!(f.backups("").await, list);
    assert!(f.backups("?app=db").await.is_empty());
}

#[tokio::test]
async fn api_restore_puts_files_back_between_stop_reload_and_start() {
    let f = fixture().await;
    let resp = f.restore(r#"{"app":"web"}"#).await;
    assert_eq!(resp.status().as_u16(), 200);
    let r: RestoreResponse = resp.json().await.unwrap();
    assert_eq!(r.revision, "rev1");
    assert_eq!(r.files, ["web.container"]);
    assert_eq!(r.removed, ["extra.container"]);
    assert_eq!(r.started, ["web.service"]);
    // The API says what holds the app at the backup's revision: nothing here (no pin),
    // and a pin would be host-wide.
    assert!(
        r.pin.contains("nothing is pinned") && r.pin.contains("pins the whole host"),
        "{}",
        r.pin
    );
    let mut stopped = r.stopped.clone();
    stopped.sort();
    assert_eq!(stopped, ["extra.service", "web.service"]);

    assert_eq!(
        std::fs::read_to_string(f.quadlets.join("web/web.container")).unwrap(),
        WEB_V1
    );
    assert!(!f.quadlets.join("web/extra.container").exists());
    let inventory = f.store.lock().unwrap().inventory().unwrap();
    assert_eq!(inventory.len(), 1, "{inventory:?}");
    assert_eq!(inventory[0].hash, ContentHash::of(WEB_V1.as_bytes()));
    assert_eq!(inventory[0].revision, "rev1");

    let calls = f.units.actions();
    let reload = calls
        .iter()
        .position(|c| *c == Call::Reload)
        .expect("one reload");
    assert_eq!(calls.iter().filter(|c| **c == Call::Reload).count(), 1);
    assert!(
        calls[..reload].iter().all(|c| matches!(c, Call::Stop(_))),
        "{calls:?}"
    );
    assert_eq!(calls[reload + 1..], [Call::Start("web.service".into())]);
}

#[tokio::test]
async fn api_restore_answers_unknown_and_bad_requests() {
    let f = fixture().await;
    let resp = f.restore(r#"{"app":"db"}"#).await;
    assert_eq!(resp.status().as_u16(), 404);
    let e = resp.json::<ApiError>().await.unwrap().error;
    assert!(e.contains("there is no app db"), "{e}");
    let resp = f.restore(r#"{"app":"web","backup":"../x"}"#).await;
    assert_eq!(resp.status().as_u16(), 400);
    let resp = f.restore(r#"{"ap":"web"}"#).await;
    assert_eq!(resp.status().as_u16(), 400);
    let e = resp.json::<ApiError>().await.unwrap().error;
    assert!(e.contains("invalid restore request"), "{e}");
    assert!(f.units.actions().is_empty(), "nothing was touched");
}

#[tokio::test]
async fn api_restore_refuses_a_revision_no_longer_stored_before_touching_anything() {
    let f = fixture().await;
    std::fs::remove_dir_all(&f.revisions_dir).unwrap();
    let resp = f.restore(r#"{"app":"web"}"#).await;
    assert_eq!(resp.status().as_u16(), 409);
    let e = resp.json::<ApiError>().await.unwrap().error;
    assert!(
        e.contains("rev1") && e.contains("legerctl revisions"),
        "{e}"
    );
    assert!(f.units.actions().is_empty(), "nothing was touched");
}

//! The podman seam's recording double: it keeps the order of calls, answers only what
//! a test configured, and never records a secret value. And the volume and secret
//! adapters over it make the calls a backup and an upsert need, in order.

use std::path::Path;
use std::sync::Arc;

use legerd::podman::{JournalScope, Podman, PodmanCall, RecordingPodman};

#[tokio::test]
async fn recording_podman_keeps_call_order_and_configured_answers() {
    let p = RecordingPodman::new();
    p.set_secret_names(["db-pass"]);
    p.set_volume_exists("data", true);
    p.set_container_health("systemd-web", "healthy");
    p.set_journal("web.service", "last words\n");

    assert!(p.secret_names().await.unwrap().contains("db-pass"));
    p.secret_create("api-key", b"plaintext-never-recorded", false)
        .await
        .unwrap();
    // A double, not podman: the create does not add the secret.
    assert!(!p.secret_names().await.unwrap().contains("api-key"));
    assert!(p.volume_exists("data").await.unwrap());
    assert!(!p.volume_exists("other").await.unwrap());
    p.volume_export("data", Path::new("/b/data.tar"))
        .await
        .unwrap();
    assert!(!p.network_exists("net").await.unwrap());
    p.network_remove("net").await.unwrap();
    assert_eq!(
        p.container_health("systemd-web").await.unwrap().as_deref(),
        Some("healthy")
    );
    assert_eq!(p.container_health("systemd-db").await.unwrap(), None);
    assert_eq!(
        p.unit_journal("web.service", JournalScope::System, 8)
            .await
            .unwrap(),
        "last words\n"
    );

    let calls = p.calls();
    assert_eq!(
        calls,
        vec![
            PodmanCall::SecretNames,
            PodmanCall::SecretCreate {
                name: "api-key".into(),
                replace: false
            },
            PodmanCall::SecretNames,
            PodmanCall::VolumeExists("data".into()),
            PodmanCall::VolumeExists("other".into()),
            PodmanCall::VolumeExport("data".into(), "/b/data.tar".into()),
            PodmanCall::NetworkExists("net".into()),
            PodmanCall::NetworkRemove("net".into()),
            PodmanCall::ContainerHealth("systemd-web".into()),
            PodmanCall::ContainerHealth("systemd-db".into()),
            PodmanCall::UnitJournal("web.service".into()),
        ]
    );
    assert!(!format!("{calls:?}").contains("plaintext"));
}

#[tokio::test]
async fn recording_podman_fails_exactly_the_configured_call() {
    let p = RecordingPodman::new();
    p.fail(PodmanCall::VolumeRemove("data".into()), "volume is in use");
    p.volume_remove("other").await.unwrap();
    let e = p.volume_remove("data").await.unwrap_err().to_string();
    assert!(e.contains("volume is in use"), "{e}");
    assert_eq!(
        p.take_calls(),
        vec![
            PodmanCall::VolumeRemove("other".into()),
            PodmanCall::VolumeRemove("data".into()),
        ]
    );
    assert!(p.calls().is_empty());
}

/// A create that loses a race (podman says it exists) is retried as a replace, after
/// a look at the list: the order the upsert promises.
#[tokio::test]
async fn secret_upsert_retries_a_lost_create_as_replace() {
    let p = Arc::new(RecordingPodman::new());
    p.fail(
        PodmanCall::SecretCreate {
            name: "tok".into(),
            replace: false,
        },
        "Error: tok: secret name in use",
    );
    p.set_secret_names(["tok"]);
    let secrets = legerd::secrets::podman::PodmanSecrets::new(p.clone());
    let value = legerd::secrets::SecretValue::from(b"v".to_vec());
    secrets.upsert("tok", &value, false).await.unwrap();
    assert_eq!(
        p.calls(),
        vec![
            PodmanCall::SecretCreate {
                name: "tok".into(),
                replace: false
            },
            PodmanCall::SecretNames,
            PodmanCall::SecretCreate {
                name: "tok".into(),
                replace: true
            },
        ]
    );
}

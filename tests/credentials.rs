//! Where the operator finds a repository's token: the referenced Secret, its absence, a wrong
//! token, and the operator's default credentials.
//!
//! End to end: the real `flashback-operator` binary, the real kube-apiserver of
//! `tests/control-plane/`, and the Flashback emulator over HTTP. Each test has its own
//! namespace, emulator and operator, so they run side by side.

use crate::support::scene::{Scene, condition};
use kube::api::DeleteParams;
use serde_json::json;

#[tokio::test]
async fn a_missing_secret_stalls_until_it_is_created() {
    let mut scene = Scene::new("secret").await;
    // An hour between resyncs: only the Secret watch can explain the recovery.
    scene.start_operator(&["--resync-interval", "1h"]);
    let mut repo = scene.mirror("media");
    repo.spec.credentials_secret_ref.as_mut().unwrap().name = "created-later".into();
    scene.create(&repo).await;
    let stalled = scene.wait_stalled("media", "SecretNotFound").await;

    // An object that never created anything is released at once, Secret or not.
    let mut never = scene.mirror("never");
    never.spec.credentials_secret_ref.as_mut().unwrap().name = "never-created".into();
    scene.create(&never).await;
    scene.wait_stalled("never", "SecretNotFound").await;
    scene
        .repos
        .delete("never", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("never").await;

    assert!(
        condition(&stalled, "Stalled")
            .unwrap()
            .message
            .contains("created-later")
    );

    // Creating the Secret is enough: the object itself is not touched.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(scene.kube.clone(), &scene.namespace);
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "created-later"},
        "stringData": {"token": scene.token},
    }))
    .unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    let ready = scene.wait_ready("media").await;
    assert_eq!(ready.metadata.generation, stalled.metadata.generation);
    assert_eq!(scene.remote_repos().await.len(), 1);
}

#[tokio::test]
async fn a_wrong_token_stalls_and_is_never_shown() {
    let mut scene = Scene::new("token").await;
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    scene.put_token_secret(&wrong).await;
    scene.start_operator(&["--resync-interval", "1h"]);
    scene.create(&scene.mirror("media")).await;
    let stalled = scene.wait_stalled("media", "Unauthorized").await;

    let status = serde_json::to_string(&stalled.status).unwrap();
    let events = scene.events_with("media", "Unauthorized").await.join("\n");
    let output = scene.operator().output();
    assert!(events.contains("Unauthorized"), "{events}");
    for (place, text) in [
        ("status", &status),
        ("events", &events),
        ("operator output", &output),
    ] {
        assert!(!text.contains(&wrong), "the token leaked into the {place}");
        assert!(
            !text.contains(&scene.token),
            "the real token leaked into the {place}"
        );
    }

    // Fixing the Secret is enough.
    scene.put_token_secret(&scene.token.clone()).await;
    scene.wait_ready("media").await;
    assert!(scene.has_event("media", "StallResolved").await);
    // Now the operator has used the real token too: it is nowhere in its output.
    let output = scene.operator().output();
    assert!(
        !output.contains(&scene.token),
        "the token leaked into the operator output"
    );
}

#[tokio::test]
async fn default_credentials_serve_objects_without_a_secret_ref() {
    let mut scene = Scene::new("default").await;
    let default = format!("{}/{}", scene.namespace, crate::support::scene::SECRET);
    scene.start_operator(&["--default-credentials-secret", &default]);
    let mut repo = scene.mirror("media");
    repo.spec.credentials_secret_ref = None;
    scene.create(&repo).await;
    scene.wait_ready("media").await;
    assert_eq!(scene.remote_repos().await.len(), 1);
}

//! What the operator's writes keep: a `PUT` replaces the whole repository, so an update
//! carries over what the spec has no say in (the AI models a person attached in the web
//! console), whether a spec change or a drift correction sends it.
//!
//! The emulator keeps no bodies of the calls it answers: the evidence is its listing after
//! each `PUT`, beside the count of `PUT`s, which proves the write happened.

use std::time::Duration;

use crate::support::scene::{Scene, condition};
use flashback_client::RepoMode;
use flashback_emulator::control::RepoPatch;
use serde_json::json;

/// The ids of the AI models the emulator lists for the scene's one repository.
async fn attached(scene: &Scene) -> Vec<String> {
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "exactly one repo: {remote:?}");
    remote[0]
        .ai_llms
        .iter()
        .map(|a| a.ai_llm_id.clone())
        .collect()
}

/// Waits until `count` more `GET /repo` calls were answered than `before`.
async fn listings_since(scene: &Scene, before: u64, count: u64) {
    tokio::time::timeout(Duration::from_secs(15), async {
        while scene.calls("GET", "/repo").await < before + count {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the operator lists the workspace again within a few resyncs");
}

#[tokio::test]
async fn ai_models_attached_in_the_console_survive_a_spec_change_and_a_drift_correction() {
    let scene = Scene::with_operator("ai-llms").await;
    scene.create(&scene.mirror("media")).await;
    let ready = scene.wait_ready("media").await;
    let repo_id = ready.status.unwrap().repo_id.unwrap();
    assert!(attached(&scene).await.is_empty(), "a create attaches none");

    // A person attaches two models in the web console.
    let attachment = vec![
        json!({"aiLlmId": "llm-chat"}),
        json!({"aiLlmId": "llm-embed"}),
    ];
    scene
        .control
        .patch_repo(
            &repo_id,
            &RepoPatch {
                ai_llms: Some(attachment),
                ..RepoPatch::default()
            },
        )
        .await
        .expect("the emulator takes the change");
    let expected = ["llm-chat", "llm-embed"].map(String::from).to_vec();
    let puts = scene.calls("PUT", "/repo/{id}").await;
    // Two listings later, the second one sent after the change: the operator has seen it.
    let lists = scene.calls("GET", "/repo").await;
    listings_since(&scene, lists, 2).await;
    assert_eq!(
        scene.calls("PUT", "/repo/{id}").await,
        puts,
        "attached models are no drift: nothing is written"
    );
    let events = scene.events("media").await;
    assert!(
        !events.iter().any(|e| e.starts_with("DriftCorrected:")),
        "{events:?}"
    );

    // A spec change: one PUT, and the models are still attached.
    scene
        .patch_spec(
            "media",
            json!({"mode": "BACKUP", "buckets": [
                {"bucketId": scene.buckets[0], "folder": "media", "master": false},
                {"bucketId": scene.buckets[1], "folder": "copy"}
            ]}),
        )
        .await;
    scene.wait_ready("media").await;
    assert_eq!(scene.calls("PUT", "/repo/{id}").await - puts, 1, "one PUT");
    let remote = scene.remote_repos().await;
    assert_eq!(remote[0].mode, RepoMode::Backup, "the spec change is made");
    assert_eq!(attached(&scene).await, expected, "after the spec change");

    // Drift behind the operator's back: the correcting PUT keeps them too.
    scene
        .control
        .patch_repo(
            &repo_id,
            &RepoPatch {
                name: Some("renamed-by-hand".into()),
                ..RepoPatch::default()
            },
        )
        .await
        .expect("the emulator takes the change");
    let corrected = tokio::time::timeout(Duration::from_secs(12), async {
        loop {
            let remote = scene.remote_repos().await;
            if remote[0].name == "media" {
                return remote;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the drift is corrected within the deadline");
    assert_eq!(corrected[0].mode, RepoMode::Backup);
    assert_eq!(
        scene.calls("PUT", "/repo/{id}").await - puts,
        2,
        "one more PUT"
    );
    assert_eq!(
        attached(&scene).await,
        expected,
        "after the drift correction"
    );
    assert!(scene.has_event("media", "DriftCorrected").await);
    let now = scene.repos.get("media").await.unwrap();
    assert!(condition(&now, "Ready").is_some_and(|c| c.status == "True"));
}

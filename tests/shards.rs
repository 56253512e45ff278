//! One shard on its own (`--selector`, as each Deployment of `sharding.shards` runs): what it
//! does with its own objects. The chart's shards side by side are in `chart::shards`.
//!
//! End to end: the real `flashback-operator` binary, the real kube-apiserver of
//! `tests/control-plane/`, and the Flashback emulator over HTTP.

use std::time::Duration;

use crate::support::cluster::DEADLINE;
use crate::support::scene::{Scene, condition};
use flashback_emulator::Faults;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// The default shard's selector of a release with one listed shard: it serves the scene's
/// unlabelled objects.
const DEFAULT_SHARD: &str = "flashback.tech/shard notin (blue)";

#[tokio::test]
async fn a_shard_retries_its_own_failed_create_without_waiting_out_the_handover_grace() {
    let mut scene = Scene::new("shard-retry").await;
    // The first create fails (the object then says Reconciling: a retry); the next succeeds.
    let faults: Faults = serde_json::from_value(json!({
        "failNext": {"count": 1, "status": 500, "route": {"method": "POST", "route": "/repo"}}
    }))
    .unwrap();
    scene.control.set_faults(&faults).await.unwrap();
    scene.start_operator(&[
        "--selector",
        DEFAULT_SHARD,
        "--handover-grace",
        "30s",
        "--resync-interval",
        "1h",
    ]);
    scene.create(&scene.mirror("media")).await;
    scene
        .wait_for("media", "retrying", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "RemoteUnavailable")
        })
        .await;
    // The retry is this shard's own: it comes after the backoff (about a second), not after
    // the grace meant for an object that arrives from another shard mid-act.
    scene
        .wait_for_within(Duration::from_secs(12), "media", "Ready", |r| {
            condition(r, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    assert!(
        !scene
            .operator()
            .output()
            .contains("came to this shard in the middle of an act"),
        "nothing came from another shard"
    );
    assert_eq!(scene.remote_repos().await.len(), 1);
}

/// The shard's count of its own Ready repositories, from its /metrics.
async fn ready_here(scene: &mut Scene) -> String {
    let metrics = scene.operator().metrics().await;
    metrics
        .lines()
        .find(|line| {
            line.starts_with(r#"flashback_operator_repositories{condition="Ready",status="True"}"#)
        })
        .and_then(|line| line.rsplit(' ').next())
        .unwrap_or("0")
        .to_owned()
}

async fn label(scene: &Scene, name: &str, shard: &str) {
    scene
        .repos
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"flashback.tech/shard": shard}}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_object_that_comes_back_to_its_shard_is_looked_at_again() {
    let mut scene = Scene::new("shard-back").await;
    scene.start_operator(&[
        "--selector",
        DEFAULT_SHARD,
        "--handover-grace",
        "2s",
        "--resync-interval",
        "1h",
    ]);
    let mut media = scene.mirror("media");
    media.metadata.labels = Some([("flashback.tech/shard".into(), "red".into())].into());
    scene.create(&media).await;
    scene.wait_ready("media").await;

    // Moved to blue: this shard lets it go.
    label(&scene, "media", "blue").await;
    let deadline = std::time::Instant::now() + DEADLINE;
    while ready_here(&mut scene).await != "0" {
        assert!(std::time::Instant::now() < deadline, "media never left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Blue begins an update (its status says so), and the object comes back with the labels
    // it left with, in the middle of blue's act.
    let written = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": "",
               "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1})
    };
    scene
        .repos
        .patch_status(
            "media",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                written("Ready", "False", "Updating"),
                written("Reconciling", "True", "Updating"),
                written("Stalled", "False", "NotStalled"),
            ]}})),
        )
        .await
        .unwrap();
    label(&scene, "media", "red").await;

    // Back in this shard, it is looked at once the grace is out (the resync is an hour away).
    scene
        .wait_for_within(Duration::from_secs(15), "media", "Ready again", |r| {
            condition(r, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
}

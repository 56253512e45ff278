//! One shard on its own (`--selector`, as each Deployment of `sharding.shards` runs): what it
//! does with its own objects. The chart's shards side by side are in `chart::shards`.
//!
//! End to end: the real `flashback-operator` binary, the real kube-apiserver of
//! `tests/control-plane/`, and the Flashback emulator over HTTP.

use std::time::Duration;

use crate::support::scene::{Scene, condition};
use flashback_emulator::Faults;
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

//! Failures of the remote API and of the operator itself: unreachable or failing APIs, crashes
//! and SIGTERM mid-create, backoff, and renames during a slow create.
//!
//! End to end: the real `flashback-operator` binary, the real kube-apiserver of
//! `tests/control-plane/`, and the Flashback emulator over HTTP. Each test has its own
//! namespace, emulator and operator, so they run side by side.

use std::time::Duration;

use crate::support::scene::{Scene, condition};
use flashback_emulator::Faults;
use flashback_operator::crd::RepositoryMode;
use kube::api::DeleteParams;
use serde_json::json;

#[tokio::test]
async fn deletion_waits_for_an_unreachable_remote_and_a_gone_remote_counts_as_deleted() {
    let scene = Scene::with_operator("undelete").await;
    scene.create(&scene.mirror("unreachable")).await;
    let mut gone = scene.mirror("gone");
    gone.spec.mode = RepositoryMode::Backup;
    gone.spec.buckets.remove(0);
    scene.create(&gone).await;
    scene.wait_ready("unreachable").await;
    let gone_id = scene
        .wait_ready("gone")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();

    // A repository removed behind the operator's back: its 404 counts as deleted.
    scene.api.delete_repo(&gone_id).await.unwrap();
    scene
        .repos
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("gone").await;
    let calls = scene.control.calls().await.unwrap();
    assert_eq!(
        calls.count_status("DELETE", "/repo/{id}", 404),
        1,
        "{calls:?}"
    );

    // A Flashback that cannot be reached: the finalizer holds, and says why.
    let unreachable: Faults = serde_json::from_value(json!({
        "failNext": {"count": 1000, "status": 503, "route": {"method": "DELETE", "route": "/repo/{id}"}}
    }))
    .unwrap();
    scene.control.set_faults(&unreachable).await.unwrap();
    scene
        .repos
        .delete("unreachable", &DeleteParams::default())
        .await
        .unwrap();
    let held = scene
        .wait_for("unreachable", "held by its finalizer", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "DeleteFailed")
        })
        .await;
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(scene.has_event("unreachable", "DeleteFailed").await);
    scene.control.clear_faults().await.unwrap();
    scene.wait_gone("unreachable").await;
    assert!(scene.remote_repos().await.is_empty());
}

#[tokio::test]
async fn an_unknown_bucket_stalls_with_the_api_error_code() {
    let mut scene = Scene::new("bucket").await;
    scene.start_operator(&["--resync-interval", "1h"]);
    let mut repo = scene.mirror("media");
    repo.spec.buckets[1].bucket_id = Some("no-such-bucket".into());
    scene.create(&repo).await;
    let stalled = scene.wait_stalled("media", "SpecRejected").await;
    let message = &condition(&stalled, "Stalled").unwrap().message;
    assert!(message.contains("NOT_FOUND"), "{message}");
    assert_eq!(condition(&stalled, "Ready").unwrap().status, "False");
    assert!(scene.remote_repos().await.is_empty());
    // A refusal waits for a change: no retry comes in the next seconds.
    let refused = scene.calls("POST", "/repo").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        scene.calls("POST", "/repo").await,
        refused,
        "the refused create is not retried"
    );
    let status = scene.repos.get("media").await.unwrap().status.unwrap();
    assert_eq!(
        status.create_attempt, None,
        "a refused create leaves no record of a pending create"
    );
}

#[tokio::test]
async fn a_crash_between_create_and_status_leaves_exactly_one_repo() {
    let mut scene = Scene::new("crash").await;
    scene.start_operator_at_failpoint("pause-after-remote-create");
    scene.create(&scene.mirror("media")).await;

    // Wait until the remote create happened and the operator stopped right after it.
    scene
        .operator()
        .wait_for_output("failpoint pause-after-remote-create reached")
        .await;
    scene.operator().kill_hard();
    let before_restart = scene.repos.get("media").await.unwrap();
    assert!(
        before_restart
            .status
            .as_ref()
            .and_then(|s| s.repo_id.as_ref())
            .is_none(),
        "the status write never happened"
    );
    assert_eq!(scene.remote_repos().await.len(), 1);

    scene.start_operator(&[]);
    let ready = scene.wait_ready("media").await;
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "no second repo was created: {remote:?}");
    assert_eq!(
        ready.status.unwrap().repo_id.as_deref(),
        Some(remote[0].id.as_str())
    );
    assert_eq!(scene.calls("POST", "/repo").await, 1);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_create_finish() {
    let mut scene = Scene::new("sigterm").await;
    // Creates take 2 s, so the SIGTERM lands while one is in flight.
    let slow: Faults = serde_json::from_value(json!({
        "latency": {"ms": 2000, "route": {"method": "POST", "route": "/repo"}}
    }))
    .unwrap();
    scene.control.set_faults(&slow).await.unwrap();
    scene.start_operator(&["--resync-interval", "1h"]);
    scene.create(&scene.mirror("media")).await;
    scene
        .wait_for("media", "creating", |r| {
            condition(r, "Reconciling").is_some_and(|c| c.reason == "Creating")
        })
        .await;
    assert!(
        scene.operator().terminate(),
        "the operator exits 0 on SIGTERM"
    );
    let after = scene.repos.get("media").await.unwrap();
    assert_eq!(
        condition(&after, "Ready").map(|c| c.status.as_str()),
        Some("True"),
        "the create in flight finished and was recorded before the exit"
    );
    assert_eq!(scene.calls("POST", "/repo").await, 1);
    assert!(
        scene
            .operator
            .as_ref()
            .unwrap()
            .output()
            .contains("flashback-operator stopped")
    );
}

#[tokio::test]
async fn sigterm_during_the_first_listing_still_exits() {
    // A controller holds its reconciles until its watch cache is filled; a SIGTERM before
    // that must not leave the process waiting for a listing its shutdown stopped.
    for _ in 0..3 {
        let mut scene = Scene::new("sigterm-early").await;
        scene.start_operator(&[]);
        scene
            .operator()
            .wait_for_output("flashback-operator starting")
            .await;
        assert!(
            scene.operator().terminate(),
            "the operator exits 0 on SIGTERM"
        );
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_ready_and_retry_after_is_obeyed() {
    let mut scene = Scene::new("transient").await;
    let faults: Faults = serde_json::from_value(json!({
        "failNext": {"count": 3, "status": 503, "retryAfterSeconds": 1, "route": {"method": "POST", "route": "/repo"}},
        "rateLimit": {"share": 0.3, "retryAfterSeconds": 1},
        "seed": 7
    }))
    .unwrap();
    scene.control.set_faults(&faults).await.unwrap();
    scene.start_operator(&[]);
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;

    // Read before the test's own calls: they share the token and its Retry-After.
    let calls = scene.control.calls().await.unwrap();
    assert_eq!(calls.count_status("POST", "/repo", 503), 3, "{calls:?}");
    assert_eq!(
        calls.count_status("POST", "/repo", 200),
        1,
        "one repo created"
    );
    assert_eq!(
        calls.retry_after_violations, 0,
        "no call came before its Retry-After"
    );
    assert!(
        calls.count_status("GET", "/repo", 429) > 0,
        "the rate limit was exercised: {calls:?}"
    );
    scene.control.clear_faults().await.unwrap();
    assert_eq!(scene.remote_repos().await.len(), 1);
}

#[tokio::test]
async fn failing_creates_back_off_instead_of_retrying_at_once() {
    let mut scene = Scene::new("backoff").await;
    let faults: Faults = serde_json::from_value(json!({
        "failNext": {"count": 50, "status": 500, "route": {"method": "POST", "route": "/repo"}}
    }))
    .unwrap();
    scene.control.set_faults(&faults).await.unwrap();
    scene.start_operator(&["--resync-interval", "1h"]);
    scene.create(&scene.mirror("media")).await;
    let failing = scene
        .wait_for("media", "retrying", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "RemoteUnavailable")
        })
        .await;
    assert_eq!(condition(&failing, "Reconciling").unwrap().status, "True");

    // Backoff of 1 s doubling (jittered into its upper half): over 8 s a handful of tries,
    // where retrying at once would make dozens.
    let before = scene.calls("POST", "/repo").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tries = scene.calls("POST", "/repo").await - before;
    assert!((1..=5).contains(&tries), "{tries} creates in 8 s");

    scene.control.clear_faults().await.unwrap();
    scene.control.reset_calls().await.unwrap();
    scene.wait_ready("media").await;
    assert_eq!(
        scene.remote_repos().await.len(),
        1,
        "the 500s created nothing"
    );
}

#[tokio::test]
async fn a_rename_during_a_slow_create_makes_no_second_repo() {
    let mut scene = Scene::new("rename").await;
    let slow: Faults = serde_json::from_value(json!({
        "latency": {"ms": 2000, "route": {"method": "POST", "route": "/repo"}}
    }))
    .unwrap();
    scene.control.set_faults(&slow).await.unwrap();
    scene.start_operator(&[]);
    scene.create(&scene.mirror("media")).await;
    scene
        .wait_for("media", "creating", |r| {
            condition(r, "Reconciling").is_some_and(|c| c.reason == "Creating")
        })
        .await;
    // The object changes while the create is in flight: the new id must survive that.
    scene.patch_spec("media", json!({"name": "renamed"})).await;
    scene.wait_ready("media").await;

    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "one repository: {remote:?}");
    assert_eq!(remote[0].name, "renamed");
    assert_eq!(scene.calls("POST", "/repo").await, 1);
}

#[tokio::test]
async fn a_repository_create_over_the_quota_stalls_and_is_tried_once_per_resync() {
    let scene = Scene::with_operator("repo-quota").await;
    // A quota, as the API answers its bucket quota: 429 without Retry-After (not a throttle).
    scene
        .control
        .set_faults(&Faults {
            fail_next: Some(flashback_emulator::FailNext::new(100, 429).on("POST", "/repo")),
            ..Faults::default()
        })
        .await
        .unwrap();
    scene.create(&scene.mirror("media")).await;
    let stalled = scene.wait_stalled("media", "QuotaExceeded").await;
    assert_eq!(
        condition(&stalled, "Stalled").unwrap().message,
        "the Flashback API refused to create the repository \"media\" with HTTP 429 and no \
         Retry-After: the organisation's repository quota is reached, and retrying does not \
         help; delete a repository or raise the quota (looked at again every resync)"
    );
    let posts = scene.calls("POST", "/repo").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let more = scene.calls("POST", "/repo").await - posts;
    println!("POST /repo in 7 s while over the quota (3 s resync): {more}");
    assert!(more <= 3, "{more} creates in 7 s");
    // Room again: the next resync creates it.
    scene.control.clear_faults().await.unwrap();
    scene.wait_ready("media").await;
}

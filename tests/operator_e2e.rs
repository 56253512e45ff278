//! End to end: the real `flashback-operator` binary, the real kube-apiserver of
//! `tests/control-plane/`, and the Flashback emulator over HTTP. Each test has its own
//! namespace, emulator and operator, so they run side by side.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use flashback_operator::crd::{DeletionPolicy, ManagementPolicy, RepositoryMode, annotations};
use flashback_operator::emulator::Faults;
use flashback_operator::emulator::control::{RepoPatch, StatsPatch};
use flashback_operator::flashback::{RepoMode, StorageType};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::cluster::{DEADLINE, kubeconfig_path};
use support::operator::Operator;
use support::scene::{Scene, WORKSPACE, condition};

async fn patch_spec(scene: &Scene, name: &str, spec: serde_json::Value) {
    scene
        .repos
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .expect("spec change is accepted");
}

#[tokio::test]
async fn create_makes_exactly_the_repo_the_spec_describes() {
    let scene = Scene::with_operator("create").await;
    scene.create(&scene.mirror("media")).await;
    let ready = scene.wait_ready("media").await;

    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "exactly one repo: {remote:?}");
    let repo = &remote[0];
    let status = ready.status.as_ref().unwrap();
    assert_eq!(status.repo_id.as_deref(), Some(repo.id.as_str()));
    assert_eq!(status.remote_name.as_deref(), Some("media"));
    assert_eq!(repo.name, "media", "the name defaults to metadata.name");
    assert_eq!(repo.workspace_id.as_deref(), Some(WORKSPACE));
    assert_eq!(repo.storage_type, StorageType::S3);
    assert_eq!(repo.mode, RepoMode::Mirror);
    let mut buckets: Vec<_> = repo
        .buckets
        .iter()
        .map(|b| {
            (
                b.bucket_id.clone(),
                b.folder.clone().unwrap_or_default(),
                b.master,
            )
        })
        .collect();
    buckets.sort();
    let mut expected = vec![
        (scene.buckets[0].clone(), "media".to_string(), true),
        (scene.buckets[1].clone(), String::new(), false),
    ];
    expected.sort();
    assert_eq!(buckets, expected);

    assert_eq!(scene.calls("POST", "/repo").await, 1);
    assert!(
        scene.has_event("media", "Created").await,
        "a Created event is recorded"
    );
    for type_ in ["Reconciling", "Stalled"] {
        assert_eq!(condition(&ready, type_).unwrap().status, "False", "{type_}");
    }
}

#[tokio::test]
async fn a_spec_change_is_one_put_and_ready_at_the_new_generation() {
    let scene = Scene::with_operator("update").await;
    scene.create(&scene.mirror("media")).await;
    let first = scene.wait_ready("media").await;
    let puts_before = scene.calls("PUT", "/repo/{id}").await;

    patch_spec(
        &scene,
        "media",
        json!({"mode": "BACKUP", "buckets": [
            {"bucketId": scene.buckets[0], "folder": "media", "master": false},
            {"bucketId": scene.buckets[1], "folder": "copy"}
        ]}),
    )
    .await;
    let updated = scene.wait_ready("media").await;

    assert!(updated.metadata.generation > first.metadata.generation);
    assert_eq!(
        updated.status.as_ref().unwrap().observed_generation,
        updated.metadata.generation
    );
    assert_eq!(
        scene.calls("PUT", "/repo/{id}").await - puts_before,
        1,
        "exactly one PUT"
    );
    let remote = scene.remote_repos().await;
    assert_eq!(remote[0].mode, RepoMode::Backup);
    assert!(remote[0].buckets.iter().all(|b| !b.master));
    assert!(scene.has_event("media", "Updated").await);
}

#[tokio::test]
async fn drift_made_behind_the_operators_back_is_corrected_within_a_resync() {
    let scene = Scene::with_operator("drift").await;
    scene.create(&scene.mirror("media")).await;
    let ready = scene.wait_ready("media").await;
    let repo_id = ready.status.unwrap().repo_id.unwrap();

    scene
        .control
        .patch_repo(
            &repo_id,
            &RepoPatch {
                name: Some("renamed-by-hand".into()),
                mode: Some("BACKUP".into()),
                ..RepoPatch::default()
            },
        )
        .await
        .expect("the emulator takes the change");

    // Nothing but a resync (every 3 s) can notice this: the correction comes within about
    // one, with room for a slow machine.
    let corrected = tokio::time::timeout(Duration::from_secs(12), async {
        loop {
            let remote = scene.remote_repos().await;
            if remote[0].name == "media" && remote[0].mode == RepoMode::Mirror {
                return remote;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the drift is corrected within the deadline");
    assert_eq!(corrected.len(), 1);
    // Well before the next resync (3 s): the correcting reconcile itself leaves it Ready.
    scene
        .wait_for_within(
            Duration::from_secs(2),
            "media",
            "Ready and no longer reconciling",
            |r| {
                condition(r, "Ready").is_some_and(|c| c.status == "True")
                    && condition(r, "Reconciling").is_some_and(|c| c.status == "False")
            },
        )
        .await;
    assert!(
        scene.has_event("media", "DriftCorrected").await,
        "a DriftCorrected event is recorded"
    );
}

#[tokio::test]
async fn delete_removes_the_remote_repo_and_orphan_keeps_it() {
    let scene = Scene::with_operator("delete").await;
    scene.create(&scene.mirror("deleted")).await;
    // A BACKUP repo on the replica bucket: a bucket serves only one MIRROR repo.
    let mut kept = scene.mirror("kept");
    kept.spec.mode = RepositoryMode::Backup;
    kept.spec.buckets.remove(0);
    kept.spec.deletion_policy = DeletionPolicy::Orphan;
    scene.create(&kept).await;
    scene.wait_ready("deleted").await;
    let kept_id = scene
        .wait_ready("kept")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();

    for name in ["deleted", "kept"] {
        scene
            .repos
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    scene.wait_gone("deleted").await;
    scene.wait_gone("kept").await;

    let remote = scene.remote_repos().await;
    assert_eq!(
        remote.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [kept_id.as_str()],
        "only the orphaned repo remains"
    );
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 1);
    assert!(scene.has_event("deleted", "Deleted").await);
    assert!(scene.has_event("kept", "Orphaned").await);
}

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
async fn adoption_makes_no_post_and_a_clash_without_it_stalls() {
    let scene = Scene::with_operator("adopt").await;
    // A repo that exists before any object names it.
    let mut existing = scene.mirror("existing");
    existing.metadata.name = Some("existing".into());
    let body = flashback_operator::controller::plan::desired(&existing);
    let existing_id = scene
        .api
        .create_repo(&body)
        .await
        .expect("pre-existing repo");
    scene.control.reset_calls().await.unwrap();

    // Same name, no annotation: a clash a person must resolve.
    scene.create(&scene.mirror("existing")).await;
    let stalled = scene.wait_stalled("existing", "NameAlreadyUsed").await;
    let message = &condition(&stalled, "Stalled").unwrap().message;
    assert!(
        message.contains(&existing_id),
        "the message names the id to adopt: {message}"
    );

    // Adopting it by annotation takes it over without creating anything.
    scene
        .annotate("existing", annotations::REPO_ID, Some(&existing_id))
        .await;
    let ready = scene.wait_ready("existing").await;
    assert_eq!(
        ready.status.unwrap().repo_id.as_deref(),
        Some(existing_id.as_str())
    );
    assert_eq!(
        scene.calls("POST", "/repo").await,
        0,
        "adoption makes no POST"
    );
    assert_eq!(scene.remote_repos().await.len(), 1);
    assert!(scene.has_event("existing", "NameAlreadyUsed").await);
    assert!(scene.has_event("existing", "Adopted").await);
}

#[tokio::test]
async fn an_unknown_bucket_stalls_with_the_api_error_code() {
    let mut scene = Scene::new("bucket").await;
    scene.start_operator(&["--resync-interval", "1h"]);
    let mut repo = scene.mirror("media");
    repo.spec.buckets[1].bucket_id = "no-such-bucket".into();
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
    let events = scene.events("media").await.join("\n");
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
async fn paused_objects_make_no_remote_writes_and_converge_when_unpaused() {
    let scene = Scene::with_operator("paused").await;
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    scene
        .annotate("media", annotations::PAUSED, Some("true"))
        .await;
    scene.control.reset_calls().await.unwrap();

    patch_spec(
        &scene,
        "media",
        json!({"mode": "BACKUP", "buckets": [
            {"bucketId": scene.buckets[0], "master": false}
        ]}),
    )
    .await;
    let waiting = scene
        .wait_for("media", "paused", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "Paused")
                && r.status.as_ref().unwrap().observed_generation == r.metadata.generation
        })
        .await;
    assert_eq!(condition(&waiting, "Ready").unwrap().status, "False");
    let calls = scene.control.calls().await.unwrap();
    let writes: u64 = ["POST", "PUT", "DELETE"]
        .iter()
        .map(|m| {
            calls
                .calls
                .iter()
                .filter(|c| c.method == *m)
                .map(|c| c.count)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(writes, 0, "no remote writes while paused: {calls:?}");

    scene.annotate("media", annotations::PAUSED, None).await;
    scene.wait_ready("media").await;
    assert_eq!(scene.remote_repos().await[0].mode, RepoMode::Backup);

    // Paused again, deleting the object is not blocked: it is released, the remote stays.
    scene
        .annotate("media", annotations::PAUSED, Some("true"))
        .await;
    scene
        .repos
        .delete("media", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("media").await;
    assert_eq!(scene.remote_repos().await.len(), 1);
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 0);
}

#[tokio::test]
async fn invalid_objects_are_refused_by_kubectl_apply() {
    let scene = Scene::new("invalid").await;
    let kubectl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/control-plane/bin/kubectl"
    );
    let apply = |yaml: String| {
        let mut child = Command::new(kubectl)
            .args(["apply", "-n", &scene.namespace, "-f", "-"])
            .env("KUBECONFIG", kubeconfig_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let object = |name: &str, mode: &str, buckets: &str| {
        format!(
            "apiVersion: flashback.tech/v1alpha1\nkind: FlashbackRepository\nmetadata: {{name: {name}}}\n\
             spec:\n  workspaceId: {WORKSPACE}\n  storageType: S3\n  mode: {mode}\n  buckets: {buckets}\n"
        )
    };

    let cases = [
        (
            "no-master",
            "MIRROR",
            "[{bucketId: a}, {bucketId: b}]",
            "MIRROR mode needs exactly one bucket with master: true",
        ),
        (
            "two-masters",
            "BACKUP",
            "[{bucketId: a, master: true}, {bucketId: b, master: true}]",
            "at most one bucket may have master: true",
        ),
        (
            "same-bucket",
            "BACKUP",
            "[{bucketId: a}, {bucketId: a}]",
            "bucket ids must be unique",
        ),
        ("no-buckets", "BACKUP", "[]", "spec.buckets"),
        ("bad-mode", "SOMETIMES", "[{bucketId: a}]", "spec.mode"),
    ];
    for (name, mode, buckets, expected) in cases {
        let (accepted, stderr) = apply(object(name, mode, buckets));
        assert!(!accepted, "{name} was accepted");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in {stderr}"
        );
    }

    let (accepted, stderr) = apply(object("valid", "MIRROR", "[{bucketId: a, master: true}]"));
    assert!(accepted, "a valid object is accepted: {stderr}");
    let moved =
        object("valid", "MIRROR", "[{bucketId: a, master: true}]").replace(WORKSPACE, "ws-other");
    let (accepted, stderr) = apply(moved);
    assert!(
        !accepted && stderr.contains("workspaceId is immutable"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_crash_between_create_and_status_leaves_exactly_one_repo() {
    let mut scene = Scene::new("crash").await;
    scene.start_operator(&["--failpoint", "pause-after-remote-create"]);
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
async fn observe_only_reports_without_writing_and_never_deletes() {
    let scene = Scene::with_operator("observe").await;
    let mut watched = scene.mirror("watched");
    let existing_id = scene
        .api
        .create_repo(&flashback_operator::controller::plan::desired(&watched))
        .await
        .expect("pre-existing repo");
    scene.control.reset_calls().await.unwrap();

    watched.spec.management_policy = ManagementPolicy::ObserveOnly;
    watched.spec.mode = RepositoryMode::Backup; // differs from the remote: still never written
    watched.spec.buckets[0].master = false;
    scene.create(&watched).await;
    let differing = scene
        .wait_for("watched", "observed out of sync", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "OutOfSync")
        })
        .await;
    assert_eq!(condition(&differing, "Ready").unwrap().status, "False");
    assert_eq!(condition(&differing, "Stalled").unwrap().status, "False");
    assert_eq!(
        differing.status.unwrap().repo_id.as_deref(),
        Some(existing_id.as_str())
    );

    // The spec brought in line with the remote: Ready, and still nothing written.
    patch_spec(
        &scene,
        "watched",
        json!({"mode": "MIRROR", "buckets": [
            {"bucketId": scene.buckets[0], "folder": "media", "master": true},
            {"bucketId": scene.buckets[1]}
        ]}),
    )
    .await;
    let ready = scene.wait_ready("watched").await;
    assert_eq!(condition(&ready, "Ready").unwrap().reason, "Observed");

    scene
        .repos
        .delete("watched", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("watched").await;
    let calls = scene.control.calls().await.unwrap();
    assert!(
        calls.calls.iter().all(|c| c.method == "GET"),
        "ObserveOnly only reads: {calls:?}"
    );
    assert_eq!(scene.remote_repos().await[0].mode, RepoMode::Mirror);
}

#[tokio::test]
async fn reconcile_requested_at_forces_a_look_now() {
    let mut scene = Scene::new("requested").await;
    // A resync far beyond the test's deadline: only a request can explain a correction.
    scene.start_operator(&["--resync-interval", "1h"]);
    scene.create(&scene.mirror("media")).await;
    let repo_id = scene
        .wait_ready("media")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();
    let handled = |value: &'static str| {
        move |r: &flashback_operator::crd::FlashbackRepository| {
            r.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some(value)
                && condition(r, "Ready").is_some_and(|c| c.status == "True")
                && condition(r, "Reconciling").is_some_and(|c| c.status == "False")
        }
    };
    // A first request, once handled, shows the operator has caught up and gone quiet.
    scene
        .annotate("media", annotations::RECONCILE_REQUESTED_AT, Some("first"))
        .await;
    scene
        .wait_for("media", "done with the first request", handled("first"))
        .await;

    let drifted = RepoPatch {
        mode: Some("BACKUP".into()),
        ..RepoPatch::default()
    };
    scene.control.patch_repo(&repo_id, &drifted).await.unwrap();
    scene
        .annotate("media", annotations::RECONCILE_REQUESTED_AT, Some("second"))
        .await;
    scene
        .wait_for("media", "done with the second request", handled("second"))
        .await;
    assert_eq!(
        scene.remote_repos().await[0].mode,
        RepoMode::Mirror,
        "the drift is corrected"
    );
    assert!(scene.has_event("media", "DriftCorrected").await);
}

#[tokio::test]
async fn default_credentials_serve_objects_without_a_secret_ref() {
    let mut scene = Scene::new("default").await;
    let default = format!("{}/{}", scene.namespace, support::scene::SECRET);
    scene.start_operator(&["--default-credentials-secret", &default]);
    let mut repo = scene.mirror("media");
    repo.spec.credentials_secret_ref = None;
    scene.create(&repo).await;
    scene.wait_ready("media").await;
    assert_eq!(scene.remote_repos().await.len(), 1);
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
async fn an_object_in_step_is_not_written_again() {
    let scene = Scene::with_operator("quiet").await;
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    // The create's bookkeeping ends with its record removed.
    let ready = scene
        .wait_for("media", "without a pending create", |r| !r.create_started())
        .await;
    let version = ready.metadata.resource_version.clone();

    // Let a few resyncs (every 3 s) look at the object.
    let lists_before = scene.calls("GET", "/repo").await;
    tokio::time::timeout(DEADLINE, async {
        while scene.calls("GET", "/repo").await < lists_before + 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the operator resyncs");
    let after = scene.repos.get("media").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, version,
        "nothing was written to the object"
    );
    assert_eq!(scene.calls("PUT", "/repo/{id}").await, 0);
}

#[tokio::test]
async fn statistics_reach_the_status_and_unchanged_figures_are_not_rewritten() {
    let mut scene = Scene::new("stats").await;
    scene.start_operator(&["--stats-interval", "1s"]);
    scene.create(&scene.mirror("busy")).await;
    let mut quiet = scene.mirror("quiet");
    quiet.spec.mode = RepositoryMode::Backup;
    quiet.spec.buckets.remove(0);
    scene.create(&quiet).await;
    let busy_id = scene
        .wait_ready("busy")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();
    scene.wait_ready("quiet").await;

    scene
        .control
        .set_repo_stats(&busy_id, &StatsPatch::repo(1_048_576, 2048, -512))
        .await
        .unwrap();
    let figures = |repo: &flashback_operator::crd::FlashbackRepository| {
        repo.status
            .as_ref()
            .and_then(|s| s.stats.as_ref())
            .map(|s| {
                (
                    s.total_upload_bytes,
                    s.total_download_bytes,
                    s.total_size_change,
                )
            })
    };
    let busy = scene
        .wait_for("busy", "carrying its statistics", |r| {
            figures(r) == Some((1_048_576, 2048, -512))
        })
        .await;
    scene
        .wait_for("quiet", "carrying zero statistics", |r| {
            figures(r) == Some((0, 0, 0))
        })
        .await;
    assert_eq!(
        condition(&busy, "Ready").unwrap().status,
        "True",
        "stats leave conditions alone"
    );

    // Two more passes over unchanged figures write nothing.
    let passes = scene.calls("GET", "/repo/stats").await;
    tokio::time::timeout(DEADLINE, async {
        while scene.calls("GET", "/repo/stats").await < passes + 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the stats task keeps its interval");
    let again = scene.repos.get("busy").await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        busy.metadata.resource_version
    );
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let mut scene = Scene::with_operator("metrics").await;
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    let url = scene.operator().endpoints_url().await;
    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let answer = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    // The Ready status is written before the reconcile that wrote it is counted: look until
    // the counters catch up.
    // Whole series, up to the value: a name inside a longer one does not count.
    let expected = [
        r#"flashback_operator_flashback_api_calls_total{endpoint="create_repo",status="200"} 1"#,
        r#"flashback_operator_repositories{condition="Ready",status="True"} 1"#,
        "flashback_operator_reconcile_duration_seconds_count ",
        r#"flashback_operator_reconciles_total{result="ok"} "#,
    ];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| {
                !text
                    .lines()
                    .any(|l| l == **e || l.starts_with(**e) && e.ends_with(' '))
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let scene = Scene::new("leader").await;
    let flags = [
        "--leader-election",
        "--leader-election-namespace",
        scene.namespace.as_str(),
        "--leader-election-lease-duration",
        "6s",
    ];
    let start = || Operator::start(&scene.namespace, scene.emulator.base_url(), &flags);
    let mut first = start();
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(scene.kube.clone(), &scene.namespace);
    let holder = || async {
        leases
            .get_opt("flashback-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    tokio::time::timeout(DEADLINE, async {
        while holder().await.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the first operator takes the Lease");
    let first_holder = holder().await.unwrap();
    let mut second = start();

    scene.create(&scene.mirror("before")).await;
    scene.wait_ready("before").await;
    tokio::time::timeout(DEADLINE, async {
        while !second.output().contains("waiting to lead") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the second operator stands by");
    assert!(
        second.output().contains("waiting to lead"),
        "{}",
        second.output()
    );
    assert!(
        !second.output().contains("Flashback call"),
        "the standby made no API call"
    );

    // The leader crashes: the standby takes over once the Lease expires.
    first.kill_hard();
    let mut replica = scene.mirror("after");
    replica.spec.mode = RepositoryMode::Backup;
    replica.spec.buckets.remove(0);
    scene.create(&replica).await;
    scene.wait_ready("after").await;
    let second_holder = holder().await.unwrap();
    assert_ne!(second_holder, first_holder);
    assert!(second.output().contains("became the leader"));

    // A graceful stop releases the Lease at once.
    assert!(second.terminate(), "the leader exits 0 on SIGTERM");
    assert_eq!(holder().await, None, "the Lease is released on shutdown");
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
async fn status_writes_by_others_do_not_trigger_a_reconcile() {
    let mut scene = Scene::new("predicate").await;
    scene.start_operator(&["--resync-interval", "1h"]);
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    let url = scene.operator().endpoints_url().await;
    let reconciles = || async {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("flashback_operator_reconciles_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    // Let the reconciles that follow a create (its own annotation writes) settle.
    let mut settled = reconciles().await;
    let mut quiet = 0;
    while quiet < 2 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = reconciles().await;
        quiet = if now == settled { quiet + 1 } else { 0 };
        settled = now;
    }

    scene
        .repos
        .patch_status(
            "media",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"remoteName": "written-by-someone-else"}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        reconciles().await,
        settled,
        "a status write triggered a reconcile"
    );

    // The same count does move for a change that matters.
    scene
        .annotate("media", annotations::RECONCILE_REQUESTED_AT, Some("now"))
        .await;
    tokio::time::timeout(DEADLINE, async {
        while reconciles().await == settled {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("an annotation change reconciles");
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops() {
    let scene = Scene::new("lost").await;
    let flags = [
        "--leader-election",
        "--leader-election-namespace",
        scene.namespace.as_str(),
        "--leader-election-lease-duration",
        "3s",
    ];
    let mut leader = Operator::start(&scene.namespace, scene.emulator.base_url(), &flags);
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(scene.kube.clone(), &scene.namespace);
    let lease = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(lease) = leases.get_opt("flashback-operator").await.unwrap() {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the operator takes the Lease");

    // Someone else takes the Lease (as another replica would after a partition). The leader
    // renews it every second, so retry when a renewal slips in between.
    drop(lease);
    tokio::time::timeout(DEADLINE, async {
        loop {
            let mut taken = leases.get("flashback-operator").await.unwrap();
            let spec = taken.spec.as_mut().unwrap();
            spec.holder_identity = Some("intruder".into());
            spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now(),
            ));
            match leases
                .replace("flashback-operator", &Default::default(), &taken)
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(status)) if status.is_conflict() => continue,
                Err(error) => panic!("cannot take the Lease: {error}"),
            }
        }
    })
    .await
    .expect("the Lease is taken over");
    let status = leader
        .wait_exit(DEADLINE)
        .expect("the operator stops without the Lease");
    assert!(
        !status.success(),
        "it exits non-zero, to be restarted as a standby"
    );
    assert!(
        leader
            .output()
            .contains("another replica holds the Lease now")
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
    patch_spec(&scene, "media", json!({"name": "renamed"})).await;
    scene.wait_ready("media").await;

    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "one repository: {remote:?}");
    assert_eq!(remote[0].name, "renamed");
    assert_eq!(scene.calls("POST", "/repo").await, 1);
}

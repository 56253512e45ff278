//! FlashbackBucket end to end: the real operator registers a cloud bucket in the emulator with
//! the credentials of its Secret, updates it when those change (and they appear nowhere else),
//! waits while a repository uses it before deregistering it, leaves it with Orphan, and never
//! registers a second one across a crash.

use std::collections::BTreeMap;
use std::time::Duration;

use flashback_emulator::{FailNext, Faults, Limits};
use flashback_operator::crd::FlashbackBucket;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

use crate::support::cluster::DEADLINE;
use crate::support::scene::{Scene, WORKSPACE};

pub(crate) const CLOUD_KEY: &str = "AKIACLOUDKEY0000001";

pub(crate) fn buckets(scene: &Scene) -> Api<FlashbackBucket> {
    Api::namespaced(scene.kube.clone(), &scene.namespace)
}

pub(crate) fn bucket(name: &str) -> FlashbackBucket {
    serde_saphyr::from_str(&format!(
        r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackBucket
metadata:
  name: {name}
spec:
  workspaceId: {WORKSPACE}
  storageType: S3
  bucket: media-{name}
  region: us-east-1
  credentialsSecretRef:
    name: flashback-token
  cloudCredentialsSecretRef:
    name: cloud
"#
    ))
    .expect("example YAML")
}

/// Writes the cloud credentials Secret `cloud` with this secret access key.
pub(crate) async fn put_cloud_secret(scene: &Scene, secret_key: &str) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("cloud".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            (
                "AWS_ACCESS_KEY_ID".to_string(),
                ByteString(CLOUD_KEY.as_bytes().to_vec()),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                ByteString(secret_key.as_bytes().to_vec()),
            ),
        ])),
        ..Default::default()
    };
    let secrets: Api<Secret> = Api::namespaced(scene.kube.clone(), &scene.namespace);
    secrets
        .patch(
            "cloud",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("the cloud Secret is written");
}

pub(crate) async fn wait_bucket(
    scene: &Scene,
    name: &str,
    what: &str,
    check: impl Fn(&FlashbackBucket) -> bool,
) -> FlashbackBucket {
    crate::support::wait::until(&buckets(scene), name, what, check).await
}

pub(crate) fn condition_is(
    bucket: &FlashbackBucket,
    type_: &str,
    status: &str,
    reason: &str,
) -> bool {
    bucket.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
    })
}

pub(crate) async fn wait_bucket_ready(scene: &Scene, name: &str) -> FlashbackBucket {
    wait_bucket(scene, name, "Ready", |b| {
        condition_is(b, "Ready", "True", "Synced")
            && b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation
    })
    .await
}

pub(crate) async fn create_bucket(scene: &Scene, bucket: &FlashbackBucket) {
    buckets(scene)
        .create(&PostParams::default(), bucket)
        .await
        .expect("the bucket object is accepted");
}

pub(crate) async fn wait_bucket_gone(scene: &Scene, bucket: &FlashbackBucket) {
    crate::support::wait::deleted(&buckets(scene), bucket).await
}

#[tokio::test]
async fn a_bucket_is_registered_and_rotated_credentials_are_one_put_seen_nowhere_else() {
    let mut scene = Scene::with_operator("bucket").await;
    put_cloud_secret(&scene, "first-cloud-secret-0001").await;
    // The scene registers buckets of its own for its repositories.
    let posts = scene.calls("POST", "/bucket").await;
    create_bucket(&scene, &bucket("photos")).await;
    let ready = wait_bucket_ready(&scene, "photos").await;
    let bucket_id = ready.status.clone().unwrap().bucket_id.expect("an id");
    let listed = scene.api.list_buckets(Some(WORKSPACE)).await.unwrap();
    let remote = listed
        .iter()
        .find(|b| b.id == bucket_id)
        .expect("registered");
    assert_eq!(
        (
            remote.name.as_str(),
            remote.bucket.as_deref(),
            remote.region.as_deref()
        ),
        ("photos", Some("media-photos"), Some("us-east-1"))
    );
    assert_eq!(scene.calls("POST", "/bucket").await, posts + 1);
    assert_eq!(scene.calls("PUT", "/bucket/{id}").await, 0);

    // Rotating the cloud credentials: one PUT, nothing else.
    put_cloud_secret(&scene, "second-cloud-secret-0002").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while scene.calls("PUT", "/bucket/{id}").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no PUT after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(scene.calls("PUT", "/bucket/{id}").await, 1);
    assert_eq!(scene.calls("POST", "/bucket").await, posts + 1);

    let after = buckets(&scene).get("photos").await.unwrap();
    let status = serde_json::to_string(&after.status).unwrap();
    let events = scene.events("photos").await.join("\n");
    let output = scene.operator().output();
    for secret in [
        "first-cloud-secret-0001",
        "second-cloud-secret-0002",
        CLOUD_KEY,
    ] {
        assert!(!status.contains(secret), "status: {status}");
        assert!(!events.contains(secret), "events: {events}");
        assert!(!output.contains(secret), "operator log");
    }
    assert!(events.contains("Created: registered bucket"), "{events}");
    assert!(events.contains("Updated: updated bucket"), "{events}");
}

#[tokio::test]
async fn a_bucket_in_use_waits_with_a_reason_and_orphan_keeps_the_remote() {
    let scene = Scene::with_operator("bucket-use").await;
    put_cloud_secret(&scene, "cloud-secret-in-use-0001").await;
    create_bucket(&scene, &bucket("photos")).await;
    let ready = wait_bucket_ready(&scene, "photos").await;
    let bucket_id = ready.status.clone().unwrap().bucket_id.unwrap();
    // A repository groups the bucket.
    let mut repo = scene.mirror("album");
    repo.spec.mode = flashback_operator::crd::RepositoryMode::Backup;
    repo.spec.buckets = vec![flashback_operator::crd::RepositoryBucket {
        bucket_id: Some(bucket_id.clone()),
        bucket_ref: None,
        folder: None,
        master: false,
    }];
    scene.create(&repo).await;
    scene.wait_ready("album").await;

    buckets(&scene)
        .delete("photos", &DeleteParams::default())
        .await
        .unwrap();
    let waiting = wait_bucket(&scene, "photos", "waiting (BucketInUse)", |b| {
        condition_is(b, "Reconciling", "True", "BucketInUse")
    })
    .await;
    let message = waiting.status.unwrap().conditions[0].message.clone();
    assert!(
        message.starts_with(&format!("bucket {bucket_id} is used by a repository")),
        "{message}"
    );
    assert!(
        scene
            .api
            .list_buckets(Some(WORKSPACE))
            .await
            .unwrap()
            .iter()
            .any(|b| b.id == bucket_id),
        "still registered while in use"
    );

    // The repository lets go of it: the bucket goes, and its object with it.
    scene
        .repos
        .delete("album", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("album").await;
    wait_bucket_gone(&scene, &ready).await;
    assert!(
        !scene
            .api
            .list_buckets(Some(WORKSPACE))
            .await
            .unwrap()
            .iter()
            .any(|b| b.id == bucket_id)
    );

    // Orphan: the object goes, the registered bucket stays.
    let mut kept = bucket("kept");
    kept.spec.deletion_policy = flashback_operator::crd::DeletionPolicy::Orphan;
    create_bucket(&scene, &kept).await;
    let kept = wait_bucket_ready(&scene, "kept").await;
    let kept_id = kept.status.clone().unwrap().bucket_id.unwrap();
    buckets(&scene)
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    wait_bucket_gone(&scene, &kept).await;
    assert!(
        scene
            .api
            .list_buckets(Some(WORKSPACE))
            .await
            .unwrap()
            .iter()
            .any(|b| b.id == kept_id)
    );
}

#[tokio::test]
async fn a_crash_between_the_register_and_the_status_leaves_exactly_one_bucket() {
    let mut scene = Scene::new("bucket-crash").await;
    scene.put_token_secret(&scene.token.clone()).await;
    put_cloud_secret(&scene, "cloud-secret-crash-0001").await;
    scene.start_operator_at_failpoint("pause-after-bucket-create");
    let posts = scene.calls("POST", "/bucket").await;
    create_bucket(&scene, &bucket("photos")).await;
    scene
        .operator()
        .wait_for_output("failpoint pause-after-bucket-create reached")
        .await;
    scene.operator().kill_hard();
    let named =
        |list: &[flashback_client::Bucket]| list.iter().filter(|b| b.name == "photos").count();
    assert_eq!(
        named(&scene.api.list_buckets(Some(WORKSPACE)).await.unwrap()),
        1
    );

    scene.start_operator(&[]);
    let ready = wait_bucket_ready(&scene, "photos").await;
    let listed = scene.api.list_buckets(Some(WORKSPACE)).await.unwrap();
    assert_eq!(named(&listed), 1, "exactly one bucket: {listed:?}");
    assert_eq!(
        ready.status.unwrap().bucket_id.as_deref(),
        listed
            .iter()
            .find(|b| b.name == "photos")
            .map(|b| b.id.as_str())
    );
    assert_eq!(scene.calls("POST", "/bucket").await, posts + 1);
}

#[tokio::test]
async fn missing_cloud_credentials_stall_with_the_key_a_user_would_set() {
    let scene = Scene::with_operator("bucket-nocloud").await;
    create_bucket(&scene, &bucket("photos")).await;
    let stalled = wait_bucket(&scene, "photos", "Stalled (CloudSecretNotFound)", |b| {
        condition_is(b, "Stalled", "True", "CloudSecretNotFound")
    })
    .await;
    assert_eq!(
        stalled.status.unwrap().conditions[0].message,
        format!(
            "the cloud credentials Secret {}/cloud does not exist",
            scene.namespace
        )
    );
    // Created later, the Secret is picked up without touching the object.
    put_cloud_secret(&scene, "cloud-secret-late-0001").await;
    wait_bucket_ready(&scene, "photos").await;
}

/// A MIRROR repository whose master is the FlashbackBucket `photos` (by name) and whose other
/// bucket is one of the scene's (by id).
pub(crate) fn mirror_naming_photos(
    scene: &Scene,
    name: &str,
) -> flashback_operator::crd::FlashbackRepository {
    let mut repo = scene.mirror(name);
    repo.spec.buckets[0].bucket_id = None;
    repo.spec.buckets[0].bucket_ref = Some(flashback_operator::crd::BucketReference {
        name: "photos".into(),
    });
    repo
}

#[tokio::test]
async fn a_bucket_and_a_repository_naming_it_applied_with_one_kubectl_apply_become_ready() {
    // kubectl applies a directory's files in name order: the repository first, then the
    // bucket first.
    for (repo_file, bucket_file) in [
        ("a-repo.yaml", "b-bucket.yaml"),
        ("b-repo.yaml", "a-bucket.yaml"),
    ] {
        let scene = Scene::with_operator("bucket-ref").await;
        put_cloud_secret(&scene, "cloud-secret-ref-0001").await;
        let dir = tempfile::tempdir().unwrap();
        let to_yaml = |value: serde_json::Value| serde_saphyr::to_string(&value).unwrap();
        std::fs::write(
            dir.path().join(repo_file),
            to_yaml(serde_json::to_value(mirror_naming_photos(&scene, "album")).unwrap()),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(bucket_file),
            to_yaml(serde_json::to_value(bucket("photos")).unwrap()),
        )
        .unwrap();
        let kubectl = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/control-plane/bin/kubectl"
        );
        let applied = std::process::Command::new(kubectl)
            .args(["apply", "-n", &scene.namespace, "-f"])
            .arg(dir.path())
            .env("KUBECONFIG", crate::support::cluster::kubeconfig_path())
            .output()
            .expect("kubectl runs");
        assert!(
            applied.status.success(),
            "{}",
            String::from_utf8_lossy(&applied.stderr)
        );
        let bucket_id = wait_bucket_ready(&scene, "photos")
            .await
            .status
            .unwrap()
            .bucket_id
            .unwrap();
        let ready = scene.wait_ready("album").await;
        let repo_id = ready.status.unwrap().repo_id.unwrap();
        let remote = scene.remote_repos().await;
        let remote = remote.iter().find(|r| r.id == repo_id).unwrap();
        let master = remote.buckets.iter().find(|b| b.master).unwrap();
        assert_eq!(master.bucket_id, bucket_id, "{repo_file} and {bucket_file}");
    }
}

#[tokio::test]
async fn a_repository_naming_a_missing_bucket_says_so_and_proceeds_when_it_appears() {
    let scene = Scene::with_operator("bucket-later").await;
    put_cloud_secret(&scene, "cloud-secret-later-0002").await;
    scene.create(&mirror_naming_photos(&scene, "album")).await;
    let waiting = scene
        .wait_for("album", "waiting for its bucket", |repo| {
            crate::support::scene::condition(repo, "Reconciling")
                .is_some_and(|c| c.status == "True" && c.reason == "BucketNotReady")
        })
        .await;
    assert_eq!(
        crate::support::scene::condition(&waiting, "Ready").map(|c| c.message.as_str()),
        Some("waiting for the FlashbackBucket photos in this namespace to exist")
    );
    assert_eq!(
        scene.calls("POST", "/repo").await,
        0,
        "nothing is created meanwhile"
    );
    create_bucket(&scene, &bucket("photos")).await;
    wait_bucket_ready(&scene, "photos").await;
    // Woken by the bucket's change, well inside the 3 s resync.
    let started = std::time::Instant::now();
    scene.wait_ready("album").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_bucket_named_by_both_or_neither_id_and_ref_is_refused_at_admission() {
    let scene = Scene::new("bucket-cel").await;
    let mut both = mirror_naming_photos(&scene, "both");
    both.spec.buckets[0].bucket_id = Some("b1".into());
    let mut neither = mirror_naming_photos(&scene, "neither");
    neither.spec.buckets[0].bucket_ref = None;
    for repo in [both, neither] {
        let refused = scene
            .repos
            .create(&PostParams::default(), &repo)
            .await
            .expect_err("refused");
        assert!(
            refused
                .to_string()
                .contains("each bucket names exactly one of bucketId and bucketRef"),
            "{refused}"
        );
    }
}

#[tokio::test]
async fn bucket_statistics_reach_the_status() {
    let mut scene = Scene::new("bucket-stats").await;
    scene.put_token_secret(&scene.token.clone()).await;
    put_cloud_secret(&scene, "cloud-secret-stats-0001").await;
    scene.start_operator(&["--stats-interval", "1s"]);
    create_bucket(&scene, &bucket("photos")).await;
    let bucket_id = wait_bucket_ready(&scene, "photos")
        .await
        .status
        .unwrap()
        .bucket_id
        .unwrap();
    let figures = flashback_emulator::control::StatsPatch {
        total_count: Some("42".into()),
        ..flashback_emulator::control::StatsPatch::repo(1_048_576, 2048, -512)
    };
    scene
        .control
        .set_bucket_stats(&bucket_id, &figures)
        .await
        .unwrap();
    let with_stats = wait_bucket(&scene, "photos", "with statistics", |b| {
        b.status
            .as_ref()
            .and_then(|s| s.stats.as_ref())
            .is_some_and(|s| s.total_count == 42)
    })
    .await;
    let stats = with_stats.status.unwrap().stats.unwrap();
    assert_eq!(
        (
            stats.total_count,
            stats.total_upload_bytes,
            stats.total_download_bytes,
            stats.total_size_change
        ),
        (42, 1_048_576, 2048, -512)
    );
    assert!(scene.calls("GET", "/bucket/stats").await >= 1);
}

#[tokio::test]
async fn a_bucket_whose_cloud_secret_went_first_is_still_deregistered() {
    let scene = Scene::with_operator("bucket-nocloud-delete").await;
    put_cloud_secret(&scene, "cloud-secret-gone-0001").await;
    create_bucket(&scene, &bucket("photos")).await;
    let ready = wait_bucket_ready(&scene, "photos").await;
    let bucket_id = ready.status.clone().unwrap().bucket_id.unwrap();
    // The order `kubectl delete -f dir/` may take: the Secret before the bucket.
    let secrets: Api<Secret> = Api::namespaced(scene.kube.clone(), &scene.namespace);
    secrets
        .delete("cloud", &DeleteParams::default())
        .await
        .unwrap();
    buckets(&scene)
        .delete("photos", &DeleteParams::default())
        .await
        .unwrap();
    wait_bucket_gone(&scene, &ready).await;
    assert!(
        !scene
            .api
            .list_buckets(Some(WORKSPACE))
            .await
            .unwrap()
            .iter()
            .any(|b| b.id == bucket_id),
        "deregistered without the cloud credentials"
    );
}

#[tokio::test]
async fn a_delete_the_api_refuses_with_403_waits_a_resync_between_asks_and_says_why() {
    let scene = Scene::with_operator("bucket-refused").await;
    put_cloud_secret(&scene, "cloud-secret-refused-0001").await;
    create_bucket(&scene, &bucket("photos")).await;
    let ready = wait_bucket_ready(&scene, "photos").await;
    let bucket_id = ready.status.clone().unwrap().bucket_id.unwrap();
    // No repository lists the bucket, yet the API refuses its delete as it refuses one in
    // use (or one the token may not make): 403, no error code.
    scene
        .control
        .set_faults(&Faults::from(
            FailNext::new(1000, 403).on("DELETE", "/bucket/{id}"),
        ))
        .await
        .unwrap();
    buckets(&scene)
        .delete("photos", &DeleteParams::default())
        .await
        .unwrap();
    let refused = wait_bucket(&scene, "photos", "refused (BucketInUse)", |b| {
        condition_is(b, "Reconciling", "True", "BucketInUse")
    })
    .await;
    let message = refused.status.unwrap().conditions[0].message.clone();
    assert!(
        message.starts_with(&format!(
            "the Flashback API refused to delete bucket {bucket_id}: it is in use or not permitted"
        )) && message.contains("injected fault (HTTP 403)"),
        "{message}"
    );
    let deletes = scene.calls("DELETE", "/bucket/{id}").await;
    // About two resync intervals of the scene's operator (3 s).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let asked = scene.calls("DELETE", "/bucket/{id}").await - deletes;
    println!("DELETE /bucket refused with 403 for 7 s (3 s resync): {asked} more asks");
    assert!(asked <= 3, "{asked} deletes in 7 s: a loop, not a resync");

    // The API lets it go: so does the operator, at its next look.
    scene.control.clear_faults().await.unwrap();
    wait_bucket_gone(&scene, &ready).await;
    assert!(
        !scene
            .api
            .list_buckets(Some(WORKSPACE))
            .await
            .unwrap()
            .iter()
            .any(|b| b.id == bucket_id)
    );
}

#[tokio::test]
async fn a_register_over_the_bucket_quota_stalls_and_is_tried_once_per_resync() {
    let scene = Scene::with_operator("bucket-quota").await;
    put_cloud_secret(&scene, "cloud-secret-quota-0001").await;
    // Room for one more bucket than the scene's organisation holds.
    let held = scene.api.list_buckets(None).await.unwrap().len();
    scene
        .control
        .set_limits(&Limits {
            buckets_per_organisation: Some(held + 1),
        })
        .await
        .unwrap();
    create_bucket(&scene, &bucket("photos")).await;
    wait_bucket_ready(&scene, "photos").await;

    // Over the quota: 429, no error code, no Retry-After. Not a throttle: no retry helps.
    create_bucket(&scene, &bucket("videos")).await;
    let stalled = wait_bucket(&scene, "videos", "stalled (QuotaExceeded)", |b| {
        condition_is(b, "Stalled", "True", "QuotaExceeded")
    })
    .await;
    let message = &stalled.status.as_ref().unwrap().conditions;
    let message = &message
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .message;
    assert!(
        message.contains("quota is reached, and retrying does not help"),
        "{message}"
    );
    let posts = scene.calls("POST", "/bucket").await;
    // About three resync intervals of the scene's operator (3 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let asked = scene.calls("POST", "/bucket").await - posts;
    println!("POST /bucket over the quota for 10 s (3 s resync): {asked} more registers");
    assert!(asked <= 5, "{asked} registers in 10 s: a retry storm");

    // The quota grows: the next look registers it.
    scene.control.set_limits(&Limits::default()).await.unwrap();
    let videos = wait_bucket_ready(&scene, "videos").await;
    let listed = scene.api.list_buckets(None).await.unwrap();
    assert_eq!(listed.len(), held + 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|b| Some(&b.id) == videos.status.as_ref().unwrap().bucket_id.as_ref())
    );
}

#[tokio::test]
async fn a_bucket_name_taken_in_another_workspace_stalls_until_it_is_free() {
    let scene = Scene::with_operator("bucket-name-elsewhere").await;
    put_cloud_secret(&scene, "cloud-secret-elsewhere-0001").await;
    // Someone registered "photos" in another workspace of the organisation.
    let elsewhere = scene
        .api
        .create_bucket(&crate::support::bucket_write("photos", "ws-elsewhere"))
        .await
        .unwrap();
    create_bucket(&scene, &bucket("photos")).await;
    let stalled = wait_bucket(&scene, "photos", "stalled (NameAlreadyUsed)", |b| {
        condition_is(b, "Stalled", "True", "NameAlreadyUsed")
    })
    .await;
    let status = stalled.status.unwrap();
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap()
        .message;
    assert_eq!(
        message,
        &format!(
            "the Flashback API refused the name \"photos\": another bucket of the organisation \
             uses it, outside workspace {WORKSPACE}; choose another spec.name"
        )
    );
    assert_eq!(status.create_attempt, None, "nothing was registered");
    assert_eq!(status.bucket_id, None);

    // The name is freed: the next look registers it in the object's workspace.
    scene.api.delete_bucket(&elsewhere).await.unwrap();
    let ready = wait_bucket_ready(&scene, "photos").await;
    let bucket_id = ready.status.unwrap().bucket_id.unwrap();
    assert!(
        scene
            .api
            .list_buckets(Some(WORKSPACE))
            .await
            .unwrap()
            .iter()
            .any(|b| b.id == bucket_id && b.name == "photos")
    );
}

#[tokio::test]
async fn a_repository_naming_its_bucket_by_ref_has_its_drift_corrected() {
    let scene = Scene::with_operator("bucket-drift").await;
    put_cloud_secret(&scene, "drift-cloud-secret-0001").await;
    create_bucket(&scene, &bucket("photos")).await;
    wait_bucket_ready(&scene, "photos").await;
    scene.create(&mirror_naming_photos(&scene, "album")).await;
    let repo_id = scene
        .wait_ready("album")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();
    let renamed = flashback_emulator::RepoPatch {
        name: Some("renamed-by-hand".into()),
        ..flashback_emulator::RepoPatch::default()
    };
    scene.control.patch_repo(&repo_id, &renamed).await.unwrap();
    // Only a resync (every 3 s) can notice it.
    tokio::time::timeout(Duration::from_secs(12), async {
        while !scene
            .remote_repos()
            .await
            .iter()
            .any(|r| r.id == repo_id && r.name == "album")
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the drift is corrected within the deadline");
}

/// Calls of the emulator that write (POST, PUT, DELETE), as "METHOD route" lines.
pub(crate) async fn writes(scene: &Scene) -> Vec<String> {
    let calls = scene.control.calls().await.expect("call counters");
    calls
        .calls
        .iter()
        .filter(|c| matches!(c.method.as_str(), "POST" | "PUT" | "DELETE"))
        .map(|c| format!("{} {} {} x{}", c.method, c.route, c.status, c.count))
        .collect()
}

#[tokio::test]
async fn an_observe_only_bucket_needs_no_cloud_secret_never_writes_and_full_sends_it_once() {
    let scene = Scene::with_operator("bucket-observe").await;
    scene.control.reset_calls().await.unwrap();
    // The scene registered `primary` (cloud bucket `primary-cloud`, eu-west-1): by its name
    // alone it is not taken, even to observe it.
    let mut observed = bucket("primary");
    observed.spec.bucket = "primary-cloud".into();
    observed.spec.region = Some("eu-west-1".into());
    observed.spec.management_policy = flashback_operator::crd::ManagementPolicy::ObserveOnly;
    create_bucket(&scene, &observed).await;
    wait_bucket(&scene, "primary", "Stalled (NameAlreadyUsed)", |b| {
        condition_is(b, "Stalled", "True", "NameAlreadyUsed")
    })
    .await;
    // Observed by annotation, with no cloud credentials Secret at all.
    buckets(&scene)
        .patch(
            "primary",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "flashback.tech/bucket-id": scene.buckets[0]
            }}})),
        )
        .await
        .unwrap();
    let ready = wait_bucket(&scene, "primary", "Ready (Observed)", |b| {
        condition_is(b, "Ready", "True", "Observed")
    })
    .await;
    assert_eq!(
        ready.status.unwrap().bucket_id.as_deref(),
        Some(scene.buckets[0].as_str())
    );
    let api = buckets(&scene);
    let patch = |spec: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch(
                "primary",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("the spec change is accepted");
        }
    };
    patch(serde_json::json!({"region": "us-west-2"})).await;
    wait_bucket(&scene, "primary", "OutOfSync", |b| {
        condition_is(b, "Ready", "False", "OutOfSync")
    })
    .await;
    assert_eq!(writes(&scene).await, Vec::<String>::new());

    // Full: the credentials were never sent, so they are, once, with the spec.
    patch(serde_json::json!({"managementPolicy": "Full"})).await;
    wait_bucket(&scene, "primary", "Stalled (CloudSecretNotFound)", |b| {
        condition_is(b, "Stalled", "True", "CloudSecretNotFound")
    })
    .await;
    put_cloud_secret(&scene, "cloud-secret-observed-0001").await;
    wait_bucket_ready(&scene, "primary").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(writes(&scene).await, ["PUT /bucket/{id} 200 x1"]);
    let listed = scene.api.list_buckets(Some(WORKSPACE)).await.unwrap();
    let remote = listed.iter().find(|b| b.id == scene.buckets[0]).unwrap();
    assert_eq!(remote.region.as_deref(), Some("us-west-2"));

    // Back to ObserveOnly, then deleted: the bucket stays registered.
    patch(serde_json::json!({"managementPolicy": "ObserveOnly"})).await;
    wait_bucket(&scene, "primary", "Ready (Observed)", |b| {
        condition_is(b, "Ready", "True", "Observed")
    })
    .await;
    let object = buckets(&scene).get("primary").await.unwrap();
    buckets(&scene)
        .delete("primary", &DeleteParams::default())
        .await
        .unwrap();
    wait_bucket_gone(&scene, &object).await;
    assert_eq!(writes(&scene).await, ["PUT /bucket/{id} 200 x1"]);
    assert!(scene.events("primary").await.iter().any(|e| e
        == "Orphaned: left the bucket registered in Flashback: managementPolicy is ObserveOnly"));
}

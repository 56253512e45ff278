//! A repository's life end to end: create, change, drift, delete, adopt, pause, observe only,
//! and what the API server refuses before the operator sees it.
//!
//! End to end: the real `flashback-operator` binary, the real kube-apiserver of
//! `tests/control-plane/`, and the Flashback emulator over HTTP. Each test has its own
//! namespace, emulator and operator, so they run side by side.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::cluster::{DEADLINE, kubeconfig_path};
use crate::support::scene::{Scene, WORKSPACE, condition};
use flashback_client::{RepoMode, StorageType};
use flashback_emulator::control::RepoPatch;
use flashback_operator::crd::{DeletionPolicy, ManagementPolicy, RepositoryMode, annotations};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

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

    scene
        .patch_spec(
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
async fn adoption_makes_no_post_and_a_clash_without_it_stalls() {
    let scene = Scene::with_operator("adopt").await;
    // A repo that exists before any object names it.
    let mut existing = scene.mirror("existing");
    existing.metadata.name = Some("existing".into());
    let body = flashback_operator::controller::repository::plan::desired(&existing);
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
async fn paused_objects_make_no_remote_writes_and_converge_when_unpaused() {
    let scene = Scene::with_operator("paused").await;
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    scene
        .annotate("media", annotations::PAUSED, Some("true"))
        .await;
    scene.control.reset_calls().await.unwrap();

    scene
        .patch_spec(
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
async fn observe_only_reports_without_writing_and_never_deletes() {
    let scene = Scene::with_operator("observe").await;
    let mut watched = scene.mirror("watched");
    let existing_id = scene
        .api
        .create_repo(&flashback_operator::controller::repository::plan::desired(
            &watched,
        ))
        .await
        .expect("pre-existing repo");
    scene.control.reset_calls().await.unwrap();

    watched.spec.management_policy = ManagementPolicy::ObserveOnly;
    watched.spec.mode = RepositoryMode::Backup; // differs from the remote: still never written
    watched.spec.buckets[0].master = false;
    // Observed by annotation: by its name alone, not even observed.
    scene.create(&watched).await;
    let by_name = scene.wait_stalled("watched", "NameAlreadyUsed").await;
    assert_eq!(
        condition(&by_name, "Stalled").unwrap().message,
        format!(
            "a repository named \"watched\" already exists in workspace {WORKSPACE} (id \
             {existing_id}) and was not created for this object; to observe it, set the \
             annotation flashback.tech/repo-id: {existing_id}"
        )
    );
    scene
        .annotate("watched", "flashback.tech/repo-id", Some(&existing_id))
        .await;
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
    scene
        .patch_spec(
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
async fn status_writes_by_others_do_not_trigger_a_reconcile() {
    let mut scene = Scene::new("predicate").await;
    scene.start_operator(&["--resync-interval", "1h"]);
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    let operator = scene.operator.as_ref().expect("the operator was started");
    let reconciles = || async {
        let text = operator.metrics().await;
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

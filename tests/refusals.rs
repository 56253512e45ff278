//! What the real service refuses that a lenient server would take, met end to end: the
//! emulator refuses as the service does (`docs/emulator.md`, "Rules the reference leaves
//! open"), and the operator stalls with a reason and a message that tell a person what to
//! change.

use std::time::Duration;

use flashback_emulator::Rules;
use flashback_operator::crd::{FlashbackBucket, FlashbackRepository};
use serde_json::json;

use crate::buckets::{
    bucket, buckets, condition_is, create_bucket, put_cloud_secret, wait_bucket, wait_bucket_ready,
};
use crate::support::scene::{SECRET, Scene, WORKSPACE, condition};

/// A NORMAL repository over the scene's two buckets, each in its own folder.
fn normal(scene: &Scene, name: &str) -> FlashbackRepository {
    scene.over_both_buckets(name, "NORMAL", ["docs", "copies"], SECRET)
}

/// A MIRROR object `object` whose remote repository is named `name`, created.
async fn create_named(scene: &Scene, object: &str, name: &str) {
    let mut repo = scene.mirror(object);
    repo.spec.name = Some(name.into());
    scene.create(&repo).await;
}

/// [`create_named`], Ready, then deleted with its remote repository.
async fn made_and_deleted(scene: &Scene, object: &str, name: &str) {
    create_named(scene, object, name).await;
    scene.wait_ready(object).await;
    scene
        .repos
        .delete(object, &Default::default())
        .await
        .expect("the delete is accepted");
    scene.wait_gone(object).await;
}

fn stalled_message(repo: &FlashbackRepository) -> String {
    condition(repo, "Stalled")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn bucket_stalled_message(bucket: &FlashbackBucket) -> String {
    bucket
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Stalled"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// The folder of each bucket of the scene's one repository, as the emulator lists it.
async fn remote_folders(scene: &Scene) -> Vec<(String, Option<String>)> {
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "{remote:?}");
    let mut folders: Vec<_> = remote[0]
        .buckets
        .iter()
        .map(|b| (b.bucket_id.clone(), b.folder.clone()))
        .collect();
    folders.sort();
    folders
}

#[tokio::test]
async fn a_normal_repositorys_folder_edit_is_refused_and_stalls_saying_to_set_it_back() {
    let scene = Scene::with_operator("normal-folder").await;
    scene.create(&normal(&scene, "docs")).await;
    scene.wait_ready("docs").await;
    let before = remote_folders(&scene).await;

    scene
        .patch_spec(
            "docs",
            json!({"buckets": [
                {"bucketId": scene.buckets[0], "folder": "elsewhere"},
                {"bucketId": scene.buckets[1], "folder": "copies"}
            ]}),
        )
        .await;
    let stalled = scene.wait_stalled("docs", "SpecRejected").await;
    let message = stalled_message(&stalled);
    assert!(
        message.starts_with(
            "the Flashback API refused the repository with NORMAL_UNIT_CANNOT_EDIT_FOLDER: "
        ),
        "{message}"
    );
    assert!(
        message.ends_with(
            "; a NORMAL repository keeps the folder each of its buckets was given: set the \
             folder back in spec.buckets, or create another repository for the new folder"
        ),
        "{message}"
    );
    assert!(
        condition(&stalled, "Ready").is_some_and(|c| c.status == "False"),
        "{:?}",
        stalled.status
    );
    assert_eq!(remote_folders(&scene).await, before, "nothing changed");
    assert!(scene.has_event("docs", "SpecRejected").await);

    // Set back, the repository is in step again without a write.
    let puts = scene.calls("PUT", "/repo/{id}").await;
    scene
        .patch_spec(
            "docs",
            json!({"buckets": [
                {"bucketId": scene.buckets[0], "folder": "docs"},
                {"bucketId": scene.buckets[1], "folder": "copies"}
            ]}),
        )
        .await;
    scene.wait_ready("docs").await;
    assert_eq!(scene.calls("PUT", "/repo/{id}").await, puts);
}

#[tokio::test]
async fn a_name_a_deleted_repository_keeps_stalls_saying_so_and_once_freed_is_created() {
    let scene = Scene::with_operator("soft-delete").await;
    scene
        .control
        .set_rules(&Rules {
            soft_delete_keeps_names: true,
            ..Rules::default()
        })
        .await
        .unwrap();
    made_and_deleted(&scene, "first", "media").await;
    assert!(scene.remote_repos().await.is_empty(), "deleted remotely");

    create_named(&scene, "second", "media").await;
    let stalled = scene.wait_stalled("second", "NameAlreadyUsed").await;
    assert_eq!(
        stalled_message(&stalled),
        "the Flashback API refused the name \"media\" as taken, but no repository of that name \
         is listed in any workspace these credentials can list: most likely a deleted \
         repository still holds it (the service keeps the names of deleted repositories); \
         choose another spec.name"
    );
    assert!(stalled.status.as_ref().unwrap().repo_id.is_none());

    // A service that frees the names of what it deleted: the next resync creates it.
    scene.control.set_rules(&Rules::default()).await.unwrap();
    let ready = scene.wait_ready("second").await;
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1);
    assert_eq!(remote[0].name, "media");
    assert_eq!(ready.status.unwrap().repo_id.as_ref(), Some(&remote[0].id));
}

#[tokio::test]
async fn a_deleted_repositorys_name_freed_by_the_service_is_taken_at_once() {
    let scene = Scene::with_operator("hard-delete").await;
    made_and_deleted(&scene, "first", "media").await;
    create_named(&scene, "second", "media").await;
    scene.wait_ready("second").await;
    assert_eq!(scene.calls("POST", "/repo").await, 2, "no refused create");
}

#[tokio::test]
async fn a_workspace_listing_that_fails_holds_no_create_back() {
    let scene = Scene::with_operator("workspace-down").await;
    scene
        .control
        .set_rules(&Rules {
            workspaces: Some(vec![WORKSPACE.into()]),
            ..Rules::default()
        })
        .await
        .unwrap();
    let faults: flashback_emulator::Faults = serde_json::from_value(serde_json::json!({
        "errors": {"share": 1.0, "status": 502, "route": {"method": "GET", "route": "/workspace"}}
    }))
    .unwrap();
    scene.control.set_faults(&faults).await.unwrap();
    let mut repo = scene.mirror("unchecked");
    repo.spec.workspace_id = "ws-typo".into();
    scene.create(&repo).await;
    // No verdict: the create is sent, and the service's own refusal speaks.
    let stalled = scene.wait_stalled("unchecked", "SpecRejected").await;
    assert!(
        stalled_message(&stalled).contains("NOT_FOUND"),
        "{}",
        stalled_message(&stalled)
    );
    assert_eq!(scene.calls("POST", "/repo").await, 1);
}

#[tokio::test]
async fn a_workspace_the_organisation_lacks_stalls_before_any_create_until_it_exists() {
    let scene = Scene::with_operator("workspace").await;
    scene
        .control
        .set_rules(&Rules {
            workspaces: Some(vec![WORKSPACE.into()]),
            ..Rules::default()
        })
        .await
        .unwrap();
    put_cloud_secret(&scene, "cloud-secret-workspace-01").await;
    let mut repo = scene.mirror("typo");
    repo.spec.workspace_id = "ws-typo".into();
    scene.create(&repo).await;
    let mut photos = bucket("photos");
    photos.spec.workspace_id = "ws-typo".into();
    let registers = scene.calls("POST", "/bucket").await;
    create_bucket(&scene, &photos).await;

    let stalled = scene.wait_stalled("typo", "WorkspaceNotFound").await;
    assert_eq!(
        stalled_message(&stalled),
        format!(
            "the organisation of these credentials lists no workspace ws-typo (it has: \
             {WORKSPACE}); no repository was created: correct spec.workspaceId, or create the \
             workspace in Flashback (looked at again every resync)"
        )
    );
    let bucket_stalled = wait_bucket(&scene, "photos", "Stalled (WorkspaceNotFound)", |b| {
        condition_is(b, "Stalled", "True", "WorkspaceNotFound")
    })
    .await;
    assert!(
        bucket_stalled_message(&bucket_stalled).contains("no bucket was created"),
        "{}",
        bucket_stalled_message(&bucket_stalled)
    );
    assert_eq!(scene.calls("POST", "/repo").await, 0, "nothing was sent");
    assert_eq!(scene.calls("POST", "/bucket").await, registers);

    // Looked at again every resync (3 s), with one workspace listing per credential and
    // resync at most, however many objects wait.
    let listings = scene.calls("GET", "/workspace").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let more = scene.calls("GET", "/workspace").await - listings;
    println!("GET /workspace in 7 s with two stalled objects (3 s resync): {more}");
    assert!((1..=3).contains(&more), "{more} listings in 7 s");

    // The workspace is made in Flashback: both are created at the next look.
    scene
        .control
        .set_rules(&Rules {
            workspaces: Some(vec![WORKSPACE.into(), "ws-typo".into()]),
            ..Rules::default()
        })
        .await
        .unwrap();
    let bucket_ready = wait_bucket_ready(&scene, "photos").await;
    assert!(bucket_ready.status.unwrap().bucket_id.is_some());
    scene.wait_ready("typo").await;
}

#[tokio::test]
async fn cloud_credentials_the_provider_refuses_stall_the_bucket_on_register_and_update() {
    // A resync of a minute: what follows a change of the Secret is that change's doing.
    let mut scene = Scene::new("cloud-refused").await;
    scene.start_operator(&["--resync-interval", "60s"]);
    let rejecting = Rules {
        rejected_cloud_keys: vec![crate::buckets::CLOUD_KEY.into()],
        ..Rules::default()
    };
    scene.control.set_rules(&rejecting).await.unwrap();
    put_cloud_secret(&scene, "cloud-secret-refused-0001").await;
    create_bucket(&scene, &bucket("photos")).await;
    let refused = wait_bucket(
        &scene,
        "photos",
        "Stalled (CloudCredentialsRejected)",
        |b| condition_is(b, "Stalled", "True", "CloudCredentialsRejected"),
    )
    .await;
    let message = bucket_stalled_message(&refused);
    assert!(
        message.starts_with(
            "the Flashback API refused the bucket \"media-photos\" with HTTP 400 and no error \
             code, its answer when the storage provider refuses the cloud credentials"
        ),
        "{message}"
    );
    assert!(message.contains(&format!(
        "check the access key and secret in the Secret {}/cloud",
        scene.namespace
    )));
    assert!(refused.status.as_ref().unwrap().bucket_id.is_none());
    let listed = scene.api.list_buckets(None).await.unwrap();
    assert!(
        !listed.iter().any(|b| b.name == "photos"),
        "nothing registered"
    );

    // The cloud takes the credentials again; a new secret in the Secret registers at once.
    scene.control.set_rules(&Rules::default()).await.unwrap();
    let changed = std::time::Instant::now();
    put_cloud_secret(&scene, "cloud-secret-refused-0002").await;
    let ready = wait_bucket_ready(&scene, "photos").await;
    assert!(
        changed.elapsed() < Duration::from_secs(15),
        "registered {:?} after the Secret changed, not at once",
        changed.elapsed()
    );
    let bucket_id = ready.status.unwrap().bucket_id.unwrap();

    // Refused on an update too: the bucket stays as registered, and says why.
    scene.control.set_rules(&rejecting).await.unwrap();
    put_cloud_secret(&scene, "cloud-secret-refused-0003").await;
    wait_bucket(
        &scene,
        "photos",
        "Stalled (CloudCredentialsRejected)",
        |b| condition_is(b, "Stalled", "True", "CloudCredentialsRejected"),
    )
    .await;
    let listed = scene.api.list_buckets(None).await.unwrap();
    assert!(listed.iter().any(|b| b.id == bucket_id));
    scene.control.set_rules(&Rules::default()).await.unwrap();
    put_cloud_secret(&scene, "cloud-secret-refused-0004").await;
    let ready = wait_bucket_ready(&scene, "photos").await;
    assert_eq!(ready.status.unwrap().bucket_id, Some(bucket_id));
    assert_eq!(
        buckets(&scene)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

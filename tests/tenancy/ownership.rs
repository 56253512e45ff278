//! Ids and ownership: deleting an object deletes only a repository it verified and recorded,
//! an ambiguous create never claims a repository another object made, a rename or a delete
//! after a crash finds what the crashed create made and leaks nothing, and a name taken in
//! another workspace stalls instead of looping.

use std::time::Duration;

use flashback_emulator::{FailNext, Faults};
use flashback_operator::crd::annotations;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::{backup, stalled_message};
use crate::support::scene::{Scene, WORKSPACE, condition};

#[tokio::test]
async fn deleting_an_object_deletes_only_a_repository_it_verified_and_recorded() {
    let scene = Scene::with_operator("verified").await;
    // An older object, Ready with a repository of its own, will ask for the owner's id.
    scene.create(&backup(&scene, "hoarder", 9)).await;
    scene.wait_ready("hoarder").await;
    scene.create(&scene.mirror("owner")).await;
    let owned = scene
        .wait_ready("owner")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();

    // A repository no object manages, named by an object of another workspace: not adopted.
    let mut unmanaged_body =
        flashback_operator::controller::repository::plan::desired(&backup(&scene, "unmanaged", 0));
    unmanaged_body.name = "unmanaged".into();
    let unmanaged = scene.api.create_repo(&unmanaged_body).await.unwrap();
    let mut elsewhere = scene.mirror("elsewhere");
    elsewhere.spec.workspace_id = "ws-someone-else".into();
    scene.create(&elsewhere).await;
    scene
        .annotate("elsewhere", annotations::REPO_ID, Some(&unmanaged))
        .await;
    scene.wait_stalled("elsewhere", "AdoptedRepoNotFound").await;
    // ...and one of the same workspace may not take over what another object manages.
    scene.create(&scene.mirror("thief")).await;
    scene
        .annotate("thief", annotations::REPO_ID, Some(&owned))
        .await;
    let thief = scene.wait_stalled("thief", "ManagedByAnotherObject").await;
    let message = stalled_message(&thief);
    assert_eq!(
        message,
        format!(
            "repository {owned} is managed by another FlashbackRepository; an object adopts \
             only a repository that no other object manages"
        )
    );
    assert!(!message.contains(&scene.namespace));

    for name in ["elsewhere", "thief"] {
        scene
            .repos
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        scene.wait_gone(name).await;
    }
    let remote: Vec<String> = scene
        .remote_repos()
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(
        remote.contains(&owned) && remote.contains(&unmanaged),
        "{remote:?}"
    );
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 0);
    assert_eq!(scene.calls("PUT", "/repo/{id}").await, 0);
    scene.wait_ready("owner").await;

    // The older object asking for the id by annotation holds nothing: the owner's delete
    // still deletes its repository.
    scene
        .annotate("hoarder", annotations::REPO_ID, Some(&owned))
        .await;
    scene
        .wait_stalled("hoarder", "ManagedByAnotherObject")
        .await;
    scene
        .repos
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("owner").await;
    let remote: Vec<String> = scene
        .remote_repos()
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(!remote.contains(&owned), "{remote:?}");
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 1);
}

#[tokio::test]
async fn an_ambiguous_create_never_claims_a_repository_another_object_made() {
    let mut scene = Scene::new("ambiguous").await;
    // The first create gets a 500: its outcome is unknown to the operator.
    let faults = Faults::from(FailNext::new(1, 500).on("POST", "/repo"));
    scene.control.set_faults(&faults).await.unwrap();
    scene.start_operator(&[]);
    let mut late = scene.mirror("late");
    late.spec.name = Some("same".into());
    scene.create(&late).await;
    scene
        .wait_for("late", "failed its first create", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "RemoteUnavailable")
        })
        .await;
    // Held still (paused) while another object creates the same repository.
    scene
        .annotate("late", annotations::PAUSED, Some("true"))
        .await;
    scene
        .wait_for("late", "paused", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "Paused")
        })
        .await;
    let mut early = scene.mirror("early");
    early.spec.name = Some("same".into());
    scene.create(&early).await;
    let theirs = scene
        .wait_ready("early")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();

    scene.annotate("late", annotations::PAUSED, None).await;
    let late = scene.wait_stalled("late", "NameAlreadyUsed").await;
    assert!(
        stalled_message(&late).contains("is managed by another FlashbackRepository"),
        "{}",
        stalled_message(&late)
    );
    assert!(late.status.unwrap().repo_id.is_none());

    scene
        .repos
        .delete("late", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("late").await;
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "{remote:?}");
    assert_eq!(remote[0].id, theirs);
    assert_eq!(scene.calls("PUT", "/repo/{id}").await, 0);
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 0);
}

/// Starts the operator at the failpoint after the remote create and kills it there.
async fn crash_after_the_remote_create(scene: &mut Scene, name: &str) {
    scene.start_operator_at_failpoint("pause-after-remote-create");
    scene.create(&scene.mirror(name)).await;
    scene
        .operator()
        .wait_for_output("failpoint pause-after-remote-create reached")
        .await;
    scene.operator().kill_hard();
    assert_eq!(scene.remote_repos().await.len(), 1);
}

async fn rename(scene: &Scene, name: &str, remote_name: &str) {
    scene
        .repos
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"name": remote_name}})),
        )
        .await
        .expect("rename is accepted");
}

#[tokio::test]
async fn a_rename_after_a_crash_renames_the_repository_the_crashed_create_made() {
    let mut scene = Scene::new("crashrename").await;
    crash_after_the_remote_create(&mut scene, "media").await;
    rename(&scene, "media", "renamed").await;

    scene.start_operator(&[]);
    let ready = scene.wait_ready("media").await;
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "no second repository: {remote:?}");
    assert_eq!(remote[0].name, "renamed");
    assert_eq!(ready.status.unwrap().repo_id, Some(remote[0].id.clone()));
    assert_eq!(scene.calls("POST", "/repo").await, 1);
}

#[tokio::test]
async fn a_delete_after_a_crash_and_a_rename_leaks_nothing() {
    let mut scene = Scene::new("crashdelete").await;
    crash_after_the_remote_create(&mut scene, "media").await;
    rename(&scene, "media", "renamed").await;
    scene
        .repos
        .delete("media", &DeleteParams::default())
        .await
        .unwrap();

    scene.start_operator(&[]);
    scene.wait_gone("media").await;
    assert!(scene.remote_repos().await.is_empty(), "nothing leaked");
}

#[tokio::test]
async fn a_name_used_in_another_workspace_stalls_instead_of_looping() {
    let mut scene = Scene::new("namedelsewhere").await;
    let other_bucket = scene
        .api
        .create_bucket(&crate::support::bucket_write("other", "ws-other"))
        .await
        .unwrap();
    let mut taken = crate::support::repo(
        "taken",
        flashback_client::RepoMode::Backup,
        &[(&other_bucket, false)],
    );
    taken.workspace_id = Some("ws-other".into());
    scene.api.create_repo(&taken).await.unwrap();
    scene.start_operator(&[]);

    scene.create(&scene.mirror("taken")).await;
    let stalled = scene.wait_stalled("taken", "NameAlreadyUsed").await;
    assert_eq!(
        stalled_message(&stalled),
        format!(
            "the Flashback API refused the name \"taken\": another repository of the \
             organisation uses it, outside workspace {WORKSPACE}; choose another spec.name"
        )
    );
    // Stalled, it is looked at again only at the resync pace (3 s here), not every second.
    let posts = scene.calls("POST", "/repo").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let more = scene.calls("POST", "/repo").await - posts;
    println!("POST /repo while stalled for 7 s: {more}");
    assert!(more <= 3, "{more} creates in 7 s");
    let events = scene.events("taken").await;
    let stalls = events
        .iter()
        .filter(|e| e.starts_with("NameAlreadyUsed:"))
        .count();
    assert_eq!(stalls, 1, "one Event for the stall: {events:?}");
}

//! FlashbackAccessKey end to end: the real operator writes a live repository key into a Secret
//! that workloads mount with `envFrom`, keeps exactly one live key across crashes, rotates on
//! request or when the Secret is lost, never touches a Secret it does not own, and deletes the
//! key with its object. Real kube-apiserver, the operator binary, the emulator over HTTP (its
//! control API tells whether a Secret's id and secret are a live key).

use std::collections::BTreeMap;
use std::time::Duration;

use flashback_operator::crd::{FlashbackAccessKey, annotations};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::support::cluster::DEADLINE;
use crate::support::scene::Scene;

const ENDPOINT: &str = "https://s3-us-east-1-aws.flashback.tech";

/// A scene with the operator and a Ready MIRROR repository `media`; returns its remote id.
async fn with_repository(prefix: &str) -> (Scene, String) {
    let scene = Scene::with_operator(prefix).await;
    scene.create(&scene.mirror("media")).await;
    let repo = scene.wait_ready("media").await;
    let repo_id = repo.status.and_then(|s| s.repo_id).expect("a repo id");
    (scene, repo_id)
}

pub(crate) fn keys(scene: &Scene) -> Api<FlashbackAccessKey> {
    Api::namespaced(scene.kube.clone(), &scene.namespace)
}

fn secrets(scene: &Scene) -> Api<Secret> {
    Api::namespaced(scene.kube.clone(), &scene.namespace)
}

pub(crate) fn access_key(name: &str, access: &str) -> FlashbackAccessKey {
    serde_saphyr::from_str(&format!(
        r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackAccessKey
metadata:
  name: {name}
spec:
  repositoryRef:
    name: media
  accessType: {access}
  endpoint: {ENDPOINT}
"#
    ))
    .expect("example YAML")
}

pub(crate) async fn create_key(scene: &Scene, key: &FlashbackAccessKey) {
    keys(scene)
        .create(&PostParams::default(), key)
        .await
        .expect("the key object is accepted");
}

/// Waits until `check` holds for the key object, or fails with its last status.
pub(crate) async fn wait_key(
    scene: &Scene,
    name: &str,
    what: &str,
    check: impl Fn(&FlashbackAccessKey) -> bool,
) -> FlashbackAccessKey {
    crate::support::wait::until(&keys(scene), name, what, check).await
}

fn condition_is(key: &FlashbackAccessKey, type_: &str, status: &str, reason: &str) -> bool {
    key.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
    })
}

pub(crate) async fn wait_key_ready(scene: &Scene, name: &str) -> FlashbackAccessKey {
    wait_key(scene, name, "Ready", |key| {
        condition_is(key, "Ready", "True", "Synced")
            && key.status.as_ref().and_then(|s| s.observed_generation) == key.metadata.generation
    })
    .await
}

/// Deletes the key object and waits until the operator released it.
async fn delete_and_wait_gone(scene: &Scene, key: &FlashbackAccessKey) {
    let name = key.name_any();
    // Orphaning: the garbage collector leaves the key's Secret (owned by the key) alone, so a
    // Secret that goes is one the operator deleted.
    keys(scene)
        .delete(&name, &DeleteParams::orphan())
        .await
        .expect("the key object is deleted");
    let released = tokio::time::timeout(
        DEADLINE,
        await_condition(
            keys(scene),
            &name,
            conditions::is_deleted(&key.uid().unwrap()),
        ),
    )
    .await;
    assert!(
        matches!(released, Ok(Ok(_))),
        "{name} was not released within {DEADLINE:?}"
    );
}

/// The Secret's data as text.
async fn secret_data(scene: &Scene, name: &str) -> BTreeMap<String, String> {
    let secret = secrets(scene).get(name).await.expect("the Secret exists");
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("text")))
        .collect()
}

/// Whether the Secret's id and secret are a live key of the repository.
async fn secret_is_live(scene: &Scene, repo_id: &str, data: &BTreeMap<String, String>) -> bool {
    scene
        .control
        .verify_repo_key(
            repo_id,
            &data["AWS_ACCESS_KEY_ID"],
            &data["AWS_SECRET_ACCESS_KEY"],
        )
        .await
        .expect("the emulator answers")
}

async fn remote_keys(scene: &Scene, repo_id: &str) -> Vec<flashback_emulator::control::ListedKey> {
    scene
        .control
        .repo_keys(repo_id)
        .await
        .expect("the emulator lists keys")
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(DEADLINE, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} did not happen within {DEADLINE:?}");
}

#[tokio::test]
async fn a_write_key_reaches_a_secret_and_nowhere_else() {
    let (mut scene, repo_id) = with_repository("key-write").await;
    create_key(&scene, &access_key("app", "WRITE")).await;
    let key = wait_key_ready(&scene, "app").await;

    let data = secret_data(&scene, "app").await;
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_ENDPOINT_URL",
            "AWS_SECRET_ACCESS_KEY"
        ]
    );
    assert_eq!(data["AWS_ENDPOINT_URL"], ENDPOINT);
    assert!(secret_is_live(&scene, &repo_id, &data).await);
    let listed = remote_keys(&scene, &repo_id).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].access_type, "WRITE");
    assert_eq!(listed[0].key, data["AWS_ACCESS_KEY_ID"]);
    let status = key.status.clone().unwrap();
    assert_eq!(status.key_id.as_deref(), Some(listed[0].id.as_str()));
    assert_eq!(
        status.access_key_id.as_deref(),
        Some(listed[0].key.as_str())
    );
    assert_eq!(status.secret_name.as_deref(), Some("app"));

    let secret = secrets(&scene).get("app").await.unwrap();
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(&owner.uid), owner.controller),
        ("FlashbackAccessKey", key.uid().as_ref(), Some(true))
    );
    assert_eq!(
        secret.labels().get("flashback.tech/access-key"),
        key.uid().as_ref()
    );

    // The plain secret is in the Secret and nowhere else.
    let plain = &data["AWS_SECRET_ACCESS_KEY"];
    let status_json = serde_json::to_string(&key.status).unwrap();
    assert!(
        !status_json.contains(plain.as_str()),
        "status: {status_json}"
    );
    let events = scene.events_with("app", "Created").await.join("\n");
    assert!(!events.contains(plain.as_str()), "events: {events}");
    assert!(events.contains("Created: wrote key"), "events: {events}");
    let metrics = reqwest::get(format!(
        "{}/metrics",
        scene.operator().endpoints_url().await
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(!metrics.contains(plain.as_str()));
    assert!(
        !scene.operator().output().contains(plain.as_str()),
        "operator log"
    );

    // A changed access type updates the key in place: same id, no new secret.
    keys(&scene)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"accessType": "READ"}})),
        )
        .await
        .unwrap();
    wait_key_ready(&scene, "app").await;
    let listed = remote_keys(&scene, &repo_id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].access_type.as_str(), listed[0].key.as_str()),
        ("READ", data["AWS_ACCESS_KEY_ID"].as_str())
    );
    assert_eq!(scene.calls("PUT", "/repo/{id}/apikey/{keyId}").await, 1);
    assert_eq!(scene.calls("POST", "/repo/{id}/apikey").await, 1);

    // In step, the key is quiet: its own status and Secret writes wake nothing that calls out.
    let listed_before = scene.calls("GET", "/repo/{id}/apikey").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(scene.calls("GET", "/repo/{id}/apikey").await, listed_before);
    assert_eq!(scene.calls("POST", "/repo/{id}/apikey").await, 1);

    // A label or an annotation someone adds (a policy engine, a backup tool) is no edit of
    // the key: no rotation, no call.
    secrets(&scene)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "payments"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(scene.calls("POST", "/repo/{id}/apikey").await, 1);
    assert_eq!(scene.calls("GET", "/repo/{id}/apikey").await, listed_before);
    assert_eq!(secret_data(&scene, "app").await, data);
}

#[tokio::test]
async fn a_crash_between_the_key_create_and_the_secret_write_leaves_one_live_key() {
    let mut scene = Scene::new("key-crash").await;
    scene.put_token_secret(&scene.token.clone()).await;
    scene.start_operator_at_failpoint("pause-after-key-create");
    scene.create(&scene.mirror("media")).await;
    let repo = scene.wait_ready("media").await;
    let repo_id = repo.status.and_then(|s| s.repo_id).unwrap();
    create_key(&scene, &access_key("app", "WRITE")).await;
    scene
        .operator()
        .wait_for_output("failpoint pause-after-key-create reached")
        .await;
    scene.operator().kill_hard();
    assert_eq!(
        remote_keys(&scene, &repo_id).await.len(),
        1,
        "a live key nobody holds"
    );
    assert!(secrets(&scene).get_opt("app").await.unwrap().is_none());

    scene.start_operator(&[]);
    wait_key_ready(&scene, "app").await;
    let listed = remote_keys(&scene, &repo_id).await;
    assert_eq!(listed.len(), 1, "exactly one live key: {listed:?}");
    let data = secret_data(&scene, "app").await;
    assert_eq!(listed[0].key, data["AWS_ACCESS_KEY_ID"]);
    assert!(secret_is_live(&scene, &repo_id, &data).await);
}

#[tokio::test]
async fn rotation_replaces_the_key_and_a_deleted_secret_comes_back_with_a_new_one() {
    let (scene, repo_id) = with_repository("key-rotate").await;
    create_key(&scene, &access_key("app", "WRITE")).await;
    let first = wait_key_ready(&scene, "app").await;
    let first_data = secret_data(&scene, "app").await;
    let first_id = first.status.unwrap().key_id.unwrap();

    keys(&scene)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {annotations::ROTATE_REQUESTED_AT: "1"}}}),
            ),
        )
        .await
        .unwrap();
    let rotated = wait_key(&scene, "app", "rotated", |key| {
        key.status
            .as_ref()
            .and_then(|s| s.last_handled_rotate_at.as_deref())
            == Some("1")
    })
    .await;
    let second_id = rotated.status.unwrap().key_id.unwrap();
    assert_ne!(second_id, first_id);
    let second_data = secret_data(&scene, "app").await;
    assert!(secret_is_live(&scene, &repo_id, &second_data).await);
    assert!(
        !secret_is_live(&scene, &repo_id, &first_data).await,
        "the old key is deleted"
    );
    let listed = remote_keys(&scene, &repo_id).await;
    assert_eq!(
        listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        [second_id.as_str()]
    );
    assert!(scene.has_event("app", "Rotated").await);

    secrets(&scene)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    let old_access_key_id = second_data["AWS_ACCESS_KEY_ID"].clone();
    wait_until("the Secret comes back with a new key", || async {
        let Ok(Some(secret)) = secrets(&scene).get_opt("app").await else {
            return false;
        };
        secret
            .data
            .and_then(|d| d.get("AWS_ACCESS_KEY_ID").cloned())
            .is_some_and(|id| id.0 != old_access_key_id.as_bytes())
    })
    .await;
    wait_key_ready(&scene, "app").await;
    let third_data = secret_data(&scene, "app").await;
    assert!(secret_is_live(&scene, &repo_id, &third_data).await);
    assert!(!secret_is_live(&scene, &repo_id, &second_data).await);
    assert_eq!(remote_keys(&scene, &repo_id).await.len(), 1);
}

#[tokio::test]
async fn a_secret_the_key_does_not_own_stalls_and_stays_untouched() {
    let (scene, repo_id) = with_repository("key-foreign").await;
    let foreign = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("app".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "password".to_string(),
            ByteString(b"hunter2".to_vec()),
        )])),
        ..Default::default()
    };
    let before = secrets(&scene)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    create_key(&scene, &access_key("app", "WRITE")).await;
    let stalled = wait_key(&scene, "app", "Stalled (SecretNotOwned)", |key| {
        condition_is(key, "Stalled", "True", "SecretNotOwned")
    })
    .await;
    let message = stalled.status.unwrap().conditions[0].message.clone();
    assert!(
        message.starts_with("the Secret app exists and was not created"),
        "{message}"
    );
    let after = secrets(&scene).get("app").await.unwrap();
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "untouched"
    );
    assert_eq!(
        secret_data(&scene, "app").await,
        BTreeMap::from([("password".to_string(), "hunter2".to_string())])
    );
    assert!(
        remote_keys(&scene, &repo_id).await.is_empty(),
        "no key made"
    );
    assert!(scene.has_event("app", "SecretNotOwned").await);
}

#[tokio::test]
async fn deleting_the_key_deletes_it_remotely_and_its_secret() {
    let (scene, repo_id) = with_repository("key-delete").await;
    create_key(&scene, &access_key("app", "WRITE")).await;
    let key = wait_key_ready(&scene, "app").await;
    delete_and_wait_gone(&scene, &key).await;
    assert!(remote_keys(&scene, &repo_id).await.is_empty());
    assert!(secrets(&scene).get_opt("app").await.unwrap().is_none());
    assert_eq!(scene.calls("DELETE", "/repo/{id}/apikey/{keyId}").await, 1);
}

#[tokio::test]
async fn a_key_whose_repository_goes_first_is_revoked_says_why_it_waits_and_is_released() {
    let scene = Scene::with_operator("key-orphan").await;
    // The repository is left in Flashback when its object goes: its keys must not be.
    let mut orphaned = scene.mirror("media");
    orphaned.spec.deletion_policy = flashback_operator::crd::DeletionPolicy::Orphan;
    scene.create(&orphaned).await;
    let repo_id = scene
        .wait_ready("media")
        .await
        .status
        .and_then(|s| s.repo_id)
        .unwrap();
    create_key(&scene, &access_key("app", "WRITE")).await;
    let key = wait_key_ready(&scene, "app").await;
    let data = secret_data(&scene, "app").await;
    scene
        .repos
        .delete("media", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("media").await;
    assert!(
        scene.remote_repos().await.iter().any(|r| r.id == repo_id),
        "the repository is left in Flashback"
    );
    assert!(
        remote_keys(&scene, &repo_id).await.is_empty(),
        "its key is revoked"
    );
    assert!(!secret_is_live(&scene, &repo_id, &data).await);
    let waiting = wait_key(&scene, "app", "waiting for its repository", |key| {
        condition_is(key, "Reconciling", "True", "RepositoryNotFound")
    })
    .await;
    let ready = waiting
        .status
        .clone()
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.message.as_str()),
        (
            "False",
            "waiting for the FlashbackRepository media in this namespace to exist"
        )
    );
    assert_eq!(waiting.status.as_ref().unwrap().key_id, None);
    delete_and_wait_gone(&scene, &key).await;
    assert!(secrets(&scene).get_opt("app").await.unwrap().is_none());
}

#[tokio::test]
async fn a_key_for_a_repository_created_later_becomes_ready_without_a_poll() {
    let scene = Scene::with_operator("key-later").await;
    create_key(&scene, &access_key("app", "READ")).await;
    wait_key(&scene, "app", "waiting", |key| {
        condition_is(key, "Reconciling", "True", "RepositoryNotFound")
    })
    .await;
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    // Well inside the 3 s resync: woken by the repository's change.
    let started = std::time::Instant::now();
    wait_key_ready(&scene, "app").await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_examples_key_becomes_ready_and_its_deployment_mounts_that_secret() {
    let scene = Scene::with_operator("key-example").await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut repo = scene.mirror("media-mirror");
    repo.metadata.name = Some("media-mirror".into());
    scene.create(&repo).await;
    let key: FlashbackAccessKey = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("examples/access-key.yaml")).unwrap(),
    )
    .expect("the example is a FlashbackAccessKey");
    create_key(&scene, &key).await;
    let ready = wait_key_ready(&scene, "media-mirror-writer").await;
    let secret_name = ready.status.unwrap().secret_name.unwrap();
    let data = secret_data(&scene, &secret_name).await;
    assert_eq!(data["AWS_ENDPOINT_URL"], ENDPOINT);

    let deployment: k8s_openapi::api::apps::v1::Deployment = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("examples/app-using-access-key.yaml")).unwrap(),
    )
    .expect("the example is a Deployment");
    let env_from = deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env_from
        .clone()
        .unwrap();
    assert_eq!(
        env_from[0].secret_ref.as_ref().map(|s| s.name.as_str()),
        Some(secret_name.as_str())
    );
    // The API server accepts it as written.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(scene.kube.clone(), &scene.namespace);
    deployments
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &deployment,
        )
        .await
        .expect("the example Deployment is valid");
}

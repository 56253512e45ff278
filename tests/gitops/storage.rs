//! What both engines apply from Git: the storage directory (a FlashbackBucket, a
//! FlashbackRepository naming it by `bucketRef`, a FlashbackAccessKey and a ConfigMap), and
//! the checks on the operator's objects and the emulator that the engines' tests share.

use std::collections::BTreeMap;
use std::time::Duration;

use flashback_operator::crd::{FlashbackAccessKey, FlashbackBucket, FlashbackRepository};
use k8s_openapi::NamespaceResourceScope;
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use crate::buckets::{bucket, mirror_naming_photos};
use crate::support::cluster::DEADLINE;
use crate::support::git::GitServer;
use crate::support::scene::{Scene, WORKSPACE};
use crate::support::wait;

/// The directory of the repository that holds the storage.
pub const STORAGE: &str = "storage";

/// A file written (`Some`) or removed (`None`) by a commit.
pub type Change<'a> = (&'a str, Option<&'a str>);

/// What [`commit_storage`] holds, as [`storage_objects`] lists it.
pub const STORAGE_OBJECTS: [&str; 3] = [
    "FlashbackAccessKey/album-writer",
    "FlashbackBucket/photos",
    "FlashbackRepository/album",
];

const NOTES: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: team-notes
data:
  owner: platform
";

/// Commits the storage directory: the bucket `photos`, the repository `album` naming it by
/// `bucketRef` (master, folder `folder`) and the key `album-writer`, and a ConfigMap that
/// stays when they go. Returns the commit's id.
pub fn commit_storage(scene: &Scene, git: &GitServer, folder: &str, message: &str) -> String {
    let mut album = mirror_naming_photos(scene, "album");
    album.spec.buckets[0].folder = Some(folder.into());
    let key: FlashbackAccessKey = serde_json::from_value(json!({
        "apiVersion": "flashback.tech/v1alpha1",
        "kind": "FlashbackAccessKey",
        "metadata": {"name": "album-writer"},
        "spec": {"repositoryRef": {"name": "album"}, "accessType": "WRITE"},
    }))
    .unwrap();
    git.commit(
        &[
            (
                &format!("{STORAGE}/bucket.yaml"),
                Some(&yaml(&bucket("photos"))),
            ),
            (&format!("{STORAGE}/repository.yaml"), Some(&yaml(&album))),
            (&format!("{STORAGE}/key.yaml"), Some(&yaml(&key))),
            (&format!("{STORAGE}/notes.yaml"), Some(NOTES)),
        ],
        message,
    )
}

/// Commits the removal of the bucket, repository and key (the ConfigMap stays).
pub fn commit_storage_removal(git: &GitServer, message: &str) -> String {
    git.commit(
        &[
            (&format!("{STORAGE}/bucket.yaml"), None),
            (&format!("{STORAGE}/repository.yaml"), None),
            (&format!("{STORAGE}/key.yaml"), None),
        ],
        message,
    )
}

pub fn yaml<T: serde::Serialize>(object: &T) -> String {
    serde_saphyr::to_string(&serde_json::to_value(object).unwrap()).unwrap()
}

pub fn typed<K: Resource<DynamicType = (), Scope = NamespaceResourceScope>>(
    scene: &Scene,
) -> Api<K> {
    Api::namespaced(scene.kube.clone(), &scene.namespace)
}

/// The operator's objects in the scene's namespace: "Kind/name" → resourceVersion.
pub async fn storage_objects(scene: &Scene) -> BTreeMap<String, String> {
    let mut objects = BTreeMap::new();
    list_into::<FlashbackBucket>(scene, &mut objects).await;
    list_into::<FlashbackRepository>(scene, &mut objects).await;
    list_into::<FlashbackAccessKey>(scene, &mut objects).await;
    objects
}

async fn list_into<K>(scene: &Scene, objects: &mut BTreeMap<String, String>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    for object in typed::<K>(scene)
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        objects.insert(
            format!("{}/{}", K::kind(&()), object.name_any()),
            object.resource_version().unwrap_or_default(),
        );
    }
}

/// Whether the operator's object is Ready at its current generation.
pub fn is_ready<K: serde::Serialize>(object: &K) -> bool {
    let object = serde_json::to_value(object).unwrap();
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "Ready"
                && c["status"] == "True"
                && c["observedGeneration"] == object["metadata"]["generation"]
        })
}

/// Waits until the three storage objects are Ready (the repository holding the operator's
/// finalizer); returns the remote repository's id.
pub async fn wait_storage_ready(scene: &Scene) -> String {
    let album = scene.wait_ready("album").await;
    assert!(
        album
            .finalizers()
            .iter()
            .any(|f| f == flashback_operator::crd::FINALIZER)
    );
    // The bucket was Ready before the repository could be; the key becomes Ready after it.
    wait::until(
        &typed::<FlashbackBucket>(scene),
        "photos",
        "Ready",
        is_ready,
    )
    .await;
    wait::until(
        &typed::<FlashbackAccessKey>(scene),
        "album-writer",
        "Ready",
        is_ready,
    )
    .await;
    album.status.unwrap().repo_id.unwrap()
}

/// After a commit that moved the album's master folder to `folder`: the remote repository
/// `repo_id` has it, and the emulator saw exactly one write since its calls were reset, a PUT
/// of the repository.
pub async fn assert_one_put(scene: &Scene, repo_id: &str, folder: &str) {
    let album = scene.wait_ready("album").await;
    assert_eq!(album.metadata.generation, Some(2));
    let remote = scene.remote_repos().await;
    let remote = remote
        .iter()
        .find(|r| r.id == repo_id)
        .expect("the remote repository");
    let master = remote.buckets.iter().find(|b| b.master).unwrap();
    assert_eq!(master.folder.as_deref(), Some(folder));
    assert_eq!(scene.calls("PUT", "/repo/{id}").await, 1);
    assert_eq!(
        crate::buckets::writes(scene).await,
        vec!["PUT /repo/{id} 200 x1".to_owned()]
    );
}

/// After the storage files left Git: the objects go (their finalizers deleted the remote
/// repository, key and bucket), the emulator keeps nothing of them, and the ConfigMap stays.
pub async fn assert_pruned(scene: &Scene) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let left = storage_objects(scene).await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not pruned within {DEADLINE:?}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(scene.remote_repos().await.is_empty());
    let buckets = scene.api.list_buckets(Some(WORKSPACE)).await.unwrap();
    let mut ids: Vec<&str> = buckets.iter().map(|b| b.id.as_str()).collect();
    ids.sort_unstable();
    let mut scene_buckets: Vec<&str> = scene.buckets.iter().map(String::as_str).collect();
    scene_buckets.sort_unstable();
    assert_eq!(
        ids, scene_buckets,
        "the bucket photos is left in the emulator"
    );
    let writes = crate::buckets::writes(scene).await;
    for delete in ["DELETE /repo/{id} 200", "DELETE /bucket/{id} 200"] {
        assert!(writes.iter().any(|w| w.starts_with(delete)), "{writes:?}");
    }
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = typed(scene);
    assert!(configmaps.get_opt("team-notes").await.unwrap().is_some());
}

/// The broken repositories both engines are given: one naming a bucket id the API does not
/// know, one naming a credentials Secret that does not exist, each with the reason and message
/// the operator stalls it with.
pub struct Broken {
    pub name: &'static str,
    pub file: String,
    pub yaml: String,
    pub reason: &'static str,
    pub message: String,
}

pub fn broken_repositories(scene: &Scene) -> [Broken; 2] {
    let mut unknown_bucket = scene.mirror("unknown-bucket");
    unknown_bucket.spec.buckets[1].bucket_id = Some("no-such-bucket".into());
    let mut no_secret = scene.mirror("no-secret");
    no_secret.spec.credentials_secret_ref.as_mut().unwrap().name = "missing".into();
    [
        Broken {
            name: "unknown-bucket",
            file: format!("{STORAGE}/unknown-bucket.yaml"),
            yaml: yaml(&unknown_bucket),
            reason: "SpecRejected",
            message: "the Flashback API refused the repository with NOT_FOUND: bucket no-such-bucket not found"
                .to_owned(),
        },
        Broken {
            name: "no-secret",
            file: format!("{STORAGE}/no-secret.yaml"),
            yaml: yaml(&no_secret),
            reason: "SecretNotFound",
            message: format!(
                "the credentials Secret {}/missing does not exist",
                scene.namespace
            ),
        },
    ]
}

/// The chart's finalizer policy, as a release named `release` watching the scene's namespace
/// installs it: the API server adds the finalizer at create, a field no GitOps engine wrote.
/// Removed when dropped.
pub async fn finalizer_policy(scene: &Scene, release: &str) -> crate::support::policy::Applied {
    let probe = scene.mirror("policy-probe");
    crate::support::policy::Applied::new(release, &scene.namespace, &scene.repos, &probe).await
}

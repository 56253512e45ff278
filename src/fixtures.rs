//! Objects for unit tests, built from YAML the way a person would write them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{FlashbackRepository, FlashbackRepositoryStatus, annotations};
use flashback_client::{Repo, RepoWrite};

/// A MIRROR repository with a master and a second bucket, credentials from a Secret.
pub fn repo(namespace: &str, name: &str) -> FlashbackRepository {
    let mut repo: FlashbackRepository = serde_saphyr::from_str(&format!(
        r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackRepository
metadata:
  name: {name}
  namespace: {namespace}
  uid: 00000000-0000-0000-0000-000000000001
  generation: 1
spec:
  name: {name}
  workspaceId: ws-1
  storageType: S3
  mode: MIRROR
  buckets:
    - bucketId: b1
      folder: media
      master: true
    - bucketId: b2
  credentialsSecretRef:
    name: flashback-token
"#
    ))
    .expect("fixture YAML is a FlashbackRepository");
    repo.metadata.annotations = None;
    repo
}

pub fn annotate(repo: &mut FlashbackRepository, key: &str, value: &str) {
    repo.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), value.to_string());
}

pub fn paused(mut repo: FlashbackRepository) -> FlashbackRepository {
    annotate(&mut repo, annotations::PAUSED, "true");
    repo
}

pub fn status_with_id(repo_id: &str) -> FlashbackRepositoryStatus {
    FlashbackRepositoryStatus {
        repo_id: Some(repo_id.to_string()),
        ..FlashbackRepositoryStatus::default()
    }
}

pub fn ready_status(repo_id: &str, generation: i64) -> FlashbackRepositoryStatus {
    FlashbackRepositoryStatus {
        repo_id: Some(repo_id.to_string()),
        observed_generation: Some(generation),
        conditions: vec![condition("Ready", "True", "Synced", generation)],
        ..FlashbackRepositoryStatus::default()
    }
}

pub fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: String::new(),
        observed_generation: Some(generation),
        last_transition_time: time("2026-11-26T19:00:00Z"),
    }
}

pub fn time(rfc3339: &str) -> Time {
    serde_json::from_value(serde_json::Value::String(rfc3339.to_string()))
        .expect("an RFC 3339 time")
}

/// The repository the API would list after a create with this body.
pub fn remote_repo(id: &str, body: &RepoWrite) -> Repo {
    body.as_listed(id)
}

/// A WRITE key of the repository `media`, written into the Secret of its own name.
pub fn access_key(namespace: &str, name: &str) -> crate::crd::FlashbackAccessKey {
    serde_saphyr::from_str(&format!(
        r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackAccessKey
metadata:
  name: {name}
  namespace: {namespace}
  uid: 00000000-0000-0000-0000-0000000000aa
  generation: 1
spec:
  repositoryRef:
    name: media
  accessType: WRITE
"#
    ))
    .expect("the fixture is a valid FlashbackAccessKey")
}

pub fn annotate_key(key: &mut crate::crd::FlashbackAccessKey, name: &str, value: &str) {
    key.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(name.to_string(), value.to_string());
}

/// An S3 bucket `photos` in ws-1 with its cloud credentials in the Secret `cloud`.
pub fn bucket(namespace: &str, name: &str) -> crate::crd::FlashbackBucket {
    serde_saphyr::from_str(&format!(
        r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackBucket
metadata:
  name: {name}
  namespace: {namespace}
  uid: 00000000-0000-0000-0000-0000000000bb
  generation: 1
spec:
  workspaceId: ws-1
  storageType: S3
  bucket: media-{name}
  region: us-east-1
  cloudCredentialsSecretRef:
    name: cloud
"#
    ))
    .expect("the fixture is a valid FlashbackBucket")
}

pub fn annotate_bucket(bucket: &mut crate::crd::FlashbackBucket, name: &str, value: &str) {
    bucket
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(name.to_string(), value.to_string());
}

/// The API and credentials the objects of unit tests act with: the default URL and the
/// `flashback-token` Secret of `team-a`.
pub fn identity() -> crate::controller::ownership::Identity {
    crate::controller::ownership::Identity::new(
        &"https://backend.flashback.tech/".parse().unwrap(),
        &crate::controller::credentials::SecretName {
            namespace: "team-a".into(),
            name: "flashback-token".into(),
        },
    )
}

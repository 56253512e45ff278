//! The `FlashbackRepository` kind: a Flashback storage repository kept in step with the object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PLAIN_TEXT, SecretReference, annotations};

/// A Flashback storage repository: a group of buckets on S3, GCS, Azure Blob or compatible
/// services that Flashback serves in MIRROR or BACKUP mode, kept in step with this object.
// Each printer column repeats `type_ = "string"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flashback.tech",
    version = "v1alpha1",
    kind = "FlashbackRepository",
    namespaced,
    status = "FlashbackRepositoryStatus",
    shortname = "fbrepo",
    category = "flashback",
    doc = "A Flashback storage repository kept in step with this object",
    printcolumn(
        name = "Remote Name",
        type_ = "string",
        json_path = ".status.remoteName"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Repo ID", type_ = "string", json_path = ".status.repoId"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    )
)]
#[x_kube(
    validation = Rule::new("self.buckets.filter(b, b.master).size() <= 1")
        .message("at most one bucket may have master: true"),
    validation = Rule::new("self.mode != 'MIRROR' || self.buckets.exists_one(b, b.master)")
        .message("MIRROR mode needs exactly one bucket with master: true"),
    validation = Rule::new("self.buckets.all(b, !has(b.bucketId) || self.buckets.exists_one(c, has(c.bucketId) && c.bucketId == b.bucketId))")
        .message("bucket ids must be unique"),
    validation = Rule::new("self.buckets.all(b, !has(b.bucketRef) || self.buckets.exists_one(c, has(c.bucketRef) && c.bucketRef.name == b.bucketRef.name))")
        .message("bucketRef names must be unique"),
)]
#[serde(rename_all = "camelCase")]
pub struct FlashbackRepositorySpec {
    /// Name of the repository in Flashback, unique within the organisation. Defaults to the
    /// object's metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(PLAIN_TEXT).message("name must not start or end with whitespace, nor hold control characters such as a line break"))]
    pub name: Option<String>,

    /// The Flashback workspace that owns the repository. Immutable once set.
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("workspaceId is immutable"),
        validation = Rule::new(PLAIN_TEXT).message("workspaceId must not start or end with whitespace, nor hold control characters such as a line break"),
    )]
    #[schemars(length(min = 1, max = 253))]
    pub workspace_id: String,

    /// Storage API the repository speaks: S3, GCS, AZURE or BLOB.
    pub storage_type: StorageType,

    /// How the repository uses its buckets: MIRROR (one master, copies kept in step),
    /// BACKUP or NORMAL.
    pub mode: RepositoryMode,

    /// The buckets the repository groups, at least one. Bucket ids are unique; in MIRROR mode
    /// exactly one bucket is the master.
    #[schemars(length(min = 1, max = 64))]
    pub buckets: Vec<RepositoryBucket>,

    /// A Secret in this object's namespace holding the Flashback API token (key `token`) and
    /// optionally the API URL (key `apiUrl`). When unset, the operator's default credentials
    /// are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,

    /// What happens to the remote repository when this object is deleted: Delete (the
    /// default) deletes it, Orphan leaves it in Flashback.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Full (the default) lets the operator create, update and delete the remote repository;
    /// ObserveOnly only reads it (found by the annotation flashback.tech/repo-id, never by
    /// name) and reports what it sees.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
}

/// One bucket of a repository: by its id in Flashback, or by the FlashbackBucket that
/// registers it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("has(self.bucketId) != has(self.bucketRef)")
        .message("each bucket names exactly one of bucketId and bucketRef"),
)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryBucket {
    /// Id of a bucket registered in Flashback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(PLAIN_TEXT).message("bucketId must not start or end with whitespace, nor hold control characters such as a line break"))]
    pub bucket_id: Option<String>,

    /// A FlashbackBucket in this namespace: the repository waits until it is Ready and uses
    /// its id, and follows it when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_ref: Option<BucketReference>,

    /// Folder inside the bucket that the repository uses; the bucket root when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(PLAIN_TEXT).message("folder must not start or end with whitespace, nor hold control characters such as a line break"))]
    pub folder: Option<String>,

    /// Whether this bucket is the master of a MIRROR repository.
    #[serde(default)]
    pub master: bool,
}

/// A reference to a FlashbackBucket in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BucketReference {
    /// Name of the FlashbackBucket.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Storage API of a repository.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageType {
    S3,
    GCS,
    AZURE,
    BLOB,
}

/// How a repository uses its buckets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum RepositoryMode {
    Mirror,
    Backup,
    Normal,
}

/// What deleting the object does to the remote repository.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Orphan,
}

/// How much the operator may do to the remote object (a repository or a bucket).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ManagementPolicy {
    #[default]
    Full,
    ObserveOnly,
}

/// What the operator last saw of the remote repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlashbackRepositoryStatus {
    /// Id of the remote repository in Flashback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_id: Option<String>,

    /// Where the id was confirmed. An id recorded with other credentials or another API is
    /// acted on only once a listing with the current ones shows it under this object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_with: Option<super::RecordedWith>,

    /// Name of the remote repository the operator manages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,

    /// The metadata.generation that the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling and Stalled, as kstatus reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Usage statistics of the remote repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<RepositoryStats>,

    /// The value of the flashback.tech/reconcile-requested-at annotation that the operator
    /// last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,

    /// The create of the remote repository whose outcome is not yet known, written before the
    /// create is sent and removed when its result is recorded. After a crash or an ambiguous
    /// answer, only the repository with this name and body, created since, is taken as the
    /// result of this object's create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_attempt: Option<CreateAttempt>,
}

/// One attempt to create the remote repository, as the status records it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CreateAttempt {
    /// When the first attempt whose outcome is unknown started; kept across attempts.
    pub started_at: Time,
    /// New for every attempt.
    pub nonce: String,
    /// The repository name the attempt sent.
    pub name: String,
    /// A fingerprint of the whole request body the attempt sent.
    pub sent: String,
    /// The SHA-256 of the API URL the attempt was sent to (not the URL): only a listing of
    /// that API can show what it made. Absent in records from before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The SHA-256 of the credentials Secret's namespace and name the attempt was sent with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

/// Usage statistics reported by Flashback.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStats {
    /// Bytes uploaded through the repository.
    pub total_upload_bytes: i64,
    /// Bytes downloaded through the repository.
    pub total_download_bytes: i64,
    /// Net change of stored bytes; negative when more was deleted than written.
    pub total_size_change: i64,
    /// When the operator read these figures.
    pub observed_at: Time,
}

impl FlashbackRepository {
    /// The remote repository's name: `spec.name`, or the object's name when unset.
    pub fn remote_name(&self) -> &str {
        self.spec
            .name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        super::annotation(&self.metadata, key)
    }

    /// The repository id named by the adoption annotation, if any.
    pub fn adopted_repo_id(&self) -> Option<&str> {
        self.annotation(annotations::REPO_ID)
            .map(str::trim)
            .filter(|id| !id.is_empty())
    }

    /// Whether remote writes are paused by annotation.
    pub fn is_paused(&self) -> bool {
        self.annotation(annotations::PAUSED)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// The reconcile-requested-at value when the operator has not yet acted on it.
    pub fn pending_reconcile_request(&self) -> Option<&str> {
        let requested = self.annotation(annotations::RECONCILE_REQUESTED_AT)?;
        let handled = self
            .status
            .as_ref()
            .and_then(|s| s.last_handled_reconcile_at.as_deref());
        (handled != Some(requested)).then_some(requested)
    }

    /// The value of the reconcile-requested-at annotation, if any.
    pub fn reconcile_requested_at(&self) -> Option<&str> {
        self.annotation(annotations::RECONCILE_REQUESTED_AT)
    }

    /// Whether a remote create of this object started and its outcome is not yet recorded.
    pub fn create_started(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.create_attempt.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn remote_name_defaults_to_the_object_name() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.spec.name = Some("team-a-media".into());
        assert_eq!(repo.remote_name(), "team-a-media");
        repo.spec.name = None;
        assert_eq!(repo.remote_name(), "media");
    }

    #[test]
    fn only_a_true_paused_annotation_pauses() {
        for (value, paused) in [
            ("true", true),
            (" True ", true),
            ("false", false),
            ("yes", false),
        ] {
            let mut repo = fixtures::repo("team-a", "media");
            fixtures::annotate(&mut repo, annotations::PAUSED, value);
            assert_eq!(repo.is_paused(), paused, "{value:?}");
        }
        assert!(!fixtures::repo("team-a", "media").is_paused());
    }

    #[test]
    fn a_reconcile_request_is_pending_until_the_status_says_it_was_handled() {
        let mut repo = fixtures::repo("team-a", "media");
        assert_eq!(repo.pending_reconcile_request(), None);
        fixtures::annotate(&mut repo, annotations::RECONCILE_REQUESTED_AT, "t1");
        assert_eq!(repo.pending_reconcile_request(), Some("t1"));
        repo.status = Some(FlashbackRepositoryStatus {
            last_handled_reconcile_at: Some("t1".into()),
            ..FlashbackRepositoryStatus::default()
        });
        assert_eq!(repo.pending_reconcile_request(), None);
        fixtures::annotate(&mut repo, annotations::RECONCILE_REQUESTED_AT, "t2");
        assert_eq!(repo.pending_reconcile_request(), Some("t2"));
    }

    #[test]
    fn a_blank_adoption_annotation_adopts_nothing() {
        let mut repo = fixtures::repo("team-a", "media");
        fixtures::annotate(&mut repo, annotations::REPO_ID, "  ");
        assert_eq!(repo.adopted_repo_id(), None);
        fixtures::annotate(&mut repo, annotations::REPO_ID, " r1 ");
        assert_eq!(repo.adopted_repo_id(), Some("r1"));
    }
}

//! The `FlashbackBucket` kind: a cloud bucket registered in Flashback, its cloud credentials
//! held in a Secret, kept in step with the object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{
    CreateAttempt, DeletionPolicy, ManagementPolicy, PLAIN_TEXT, SecretReference, StorageType,
    annotations,
};

/// The keys of a cloud credentials Secret, named as a user of that cloud would: the AWS SDK's
/// environment names for S3 and S3-compatible services (GCS HMAC keys included), the Azure
/// CLI's for Azure Blob.
pub mod cloud_keys {
    pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    pub const AZURE_STORAGE_ACCOUNT: &str = "AZURE_STORAGE_ACCOUNT";
    pub const AZURE_STORAGE_KEY: &str = "AZURE_STORAGE_KEY";
}

/// A cloud bucket registered in Flashback, so that repositories can group it.
// Each printer column repeats `type_ = "string"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flashback.tech",
    version = "v1alpha1",
    kind = "FlashbackBucket",
    namespaced,
    status = "FlashbackBucketStatus",
    shortname = "fbbucket",
    category = "flashback",
    doc = "A cloud bucket registered in Flashback, kept in step with this object",
    printcolumn(name = "Bucket", type_ = "string", json_path = ".spec.bucket"),
    printcolumn(name = "Storage", type_ = "string", json_path = ".spec.storageType"),
    printcolumn(name = "Bucket ID", type_ = "string", json_path = ".status.bucketId"),
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
#[serde(rename_all = "camelCase")]
pub struct FlashbackBucketSpec {
    /// Name of the bucket in Flashback, unique within the organisation. Defaults to the
    /// object's metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(PLAIN_TEXT).message("name must not start or end with whitespace, nor hold control characters such as a line break"))]
    pub name: Option<String>,

    /// The Flashback workspace that owns the bucket. Immutable once set.
    #[x_kube(
        validation = Rule::new("self == oldSelf").message("workspaceId is immutable"),
        validation = Rule::new(PLAIN_TEXT).message("workspaceId must not start or end with whitespace, nor hold control characters such as a line break"),
    )]
    #[schemars(length(min = 1, max = 253))]
    pub workspace_id: String,

    /// The cloud's storage API: S3 (and S3-compatible services), GCS, AZURE or BLOB.
    pub storage_type: StorageType,

    /// The bucket's name at the cloud provider.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(PLAIN_TEXT).message("bucket must not start or end with whitespace, nor hold control characters such as a line break"))]
    pub bucket: String,

    /// The cloud region of the bucket, if the provider needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,

    /// The endpoint of an S3- or GCS-compatible service; the provider's own when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: Option<String>,

    /// A Secret in this object's namespace holding the Flashback API token (key `token`) and
    /// optionally the API URL (key `apiUrl`). When unset, the operator's default credentials
    /// are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,

    /// A Secret in this object's namespace holding the cloud credentials: AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY for S3 and GCS (HMAC keys), AZURE_STORAGE_ACCOUNT and
    /// AZURE_STORAGE_KEY for AZURE and BLOB. A change of its data updates the bucket. With
    /// managementPolicy ObserveOnly it is not read, and need not exist.
    pub cloud_credentials_secret_ref: SecretReference,

    /// What happens to the bucket in Flashback when this object is deleted: Delete (the
    /// default) deletes it once no repository uses it, Orphan leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Full (the default) lets the operator register, update and delete the bucket;
    /// ObserveOnly only reads it (found by the adoption annotation, never by name) and reports
    /// whether it matches the spec, never writing and never reading the cloud credentials.
    #[serde(default)]
    pub management_policy: ManagementPolicy,
}

/// What the operator last saw of the bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlashbackBucketStatus {
    /// Id of the bucket in Flashback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_id: Option<String>,

    /// Where the id was confirmed. An id recorded with other credentials or another API is
    /// acted on only once a listing with the current ones shows it under this object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_with: Option<super::RecordedWith>,

    /// The bucket's status as the Flashback API reports it (e.g. ACTIVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,

    /// The SHA-256 of the cloud credentials the bucket was last written with (not the
    /// credentials): another digest means the Secret's data changed, and the bucket is updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_credentials_digest: Option<String>,

    /// The metadata.generation that the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling and Stalled, as kstatus reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The value of the flashback.tech/reconcile-requested-at annotation that the operator
    /// last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,

    /// The create of the bucket whose outcome is not yet known, written before the create is
    /// sent and removed when its result is recorded. After a crash or an ambiguous answer, only
    /// a bucket with this name and body, created since, is taken as this object's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_attempt: Option<CreateAttempt>,

    /// Usage statistics of the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<BucketStats>,
}

/// Usage statistics of a bucket, as Flashback reports them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BucketStats {
    /// Objects stored in the bucket.
    pub total_count: i64,
    /// Bytes uploaded to the bucket.
    pub total_upload_bytes: i64,
    /// Bytes downloaded from the bucket.
    pub total_download_bytes: i64,
    /// Net change of stored bytes; negative when more was deleted than written.
    pub total_size_change: i64,
    /// When the operator read these figures.
    pub observed_at: Time,
}

impl FlashbackBucket {
    /// The bucket's name in Flashback: `spec.name`, or the object's name when unset.
    pub fn remote_name(&self) -> &str {
        self.spec
            .name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }

    /// The bucket id named by the adoption annotation, if any.
    pub fn adopted_bucket_id(&self) -> Option<&str> {
        super::annotation(&self.metadata, annotations::BUCKET_ID)
            .map(str::trim)
            .filter(|id| !id.is_empty())
    }

    /// Whether remote writes are paused by annotation.
    pub fn is_paused(&self) -> bool {
        super::annotation(&self.metadata, annotations::PAUSED)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// Whether a remote create started and its outcome is not yet recorded.
    pub fn create_started(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.create_attempt.is_some())
    }
}

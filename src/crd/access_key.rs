//! The `FlashbackAccessKey` kind: a repository access key whose id and secret the operator
//! writes into a Secret, so that workloads read and write the repository with any S3 SDK.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{RepositoryReference, annotations};

/// The Secret keys the operator writes, named as every AWS SDK reads them from the environment.
pub mod secret_keys {
    pub const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
    pub const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
    pub const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
}

/// The label on every Secret the operator writes for a FlashbackAccessKey; its value is the
/// key object's uid (a name may be longer than a label value can be).
pub const ACCESS_KEY_LABEL: &str = "flashback.tech/access-key";

/// A repository access key for workloads, written into a Secret as `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and (with an endpoint) `AWS_ENDPOINT_URL`, so that `envFrom:
/// secretRef` works with every AWS SDK.
// Each printer column repeats `type_ = "string"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flashback.tech",
    version = "v1alpha1",
    kind = "FlashbackAccessKey",
    namespaced,
    status = "FlashbackAccessKeyStatus",
    shortname = "fbkey",
    category = "flashback",
    doc = "A Flashback repository access key, written into a Secret for workloads",
    printcolumn(
        name = "Repository",
        type_ = "string",
        json_path = ".spec.repositoryRef.name"
    ),
    printcolumn(name = "Access", type_ = "string", json_path = ".spec.accessType"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secretName"),
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
    validation = Rule::new("self.repositoryRef == oldSelf.repositoryRef")
        .message("repositoryRef is immutable: create another FlashbackAccessKey for another repository"),
    validation = Rule::new("has(self.secretName) == has(oldSelf.secretName) && (!has(self.secretName) || self.secretName == oldSelf.secretName)")
        .message("secretName is immutable: create another FlashbackAccessKey for another Secret"),
)]
#[serde(rename_all = "camelCase")]
pub struct FlashbackAccessKeySpec {
    /// The FlashbackRepository in this namespace that the key opens. Immutable.
    pub repository_ref: RepositoryReference,

    /// What the key may do: READ, WRITE or ADMIN. A change updates the key in place.
    pub access_type: AccessType,

    /// The Secret in this namespace that receives the key. Defaults to the object's name.
    /// Immutable. The operator writes only a Secret it created for this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub secret_name: Option<String>,

    /// The S3-compatible URL workloads should use (for example
    /// https://s3-us-east-1-aws.flashback.tech), written as AWS_ENDPOINT_URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: Option<String>,
}

/// What a repository access key may do.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessType {
    READ,
    WRITE,
    ADMIN,
}

/// What the operator last saw of the key and its Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlashbackAccessKeyStatus {
    /// Id of the live key in Flashback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,

    /// The live key's access key id (public; its secret is only in the Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,

    /// The Secret that holds the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// The SHA-256 of the data the operator wrote into the Secret (not the data itself): data
    /// with another digest was changed by someone, and the key is rotated to restore it.
    /// Labels, annotations and other metadata may change freely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_digest: Option<String>,

    /// The access type the live key was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<AccessType>,

    /// The metadata.generation that the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Reconciling and Stalled, as kstatus reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The value of the flashback.tech/rotate-requested-at annotation that the operator last
    /// acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_rotate_at: Option<String>,
}

impl FlashbackAccessKey {
    /// The Secret that receives the key: `spec.secretName`, or the object's name.
    pub fn secret_name(&self) -> &str {
        self.spec
            .secret_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }

    /// The rotate-requested-at value when the operator has not yet acted on it.
    pub fn pending_rotation(&self) -> Option<&str> {
        let requested = super::annotation(&self.metadata, annotations::ROTATE_REQUESTED_AT)?;
        let handled = self
            .status
            .as_ref()
            .and_then(|s| s.last_handled_rotate_at.as_deref());
        (handled != Some(requested)).then_some(requested)
    }

    /// The value of the rotate-requested-at annotation, if any.
    pub fn rotate_requested_at(&self) -> Option<&str> {
        super::annotation(&self.metadata, annotations::ROTATE_REQUESTED_AT)
    }
}

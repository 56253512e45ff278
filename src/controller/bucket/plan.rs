//! Pure decisions for a `FlashbackBucket`: what the bucket should be, whether the registered
//! one is, which one is this object's, and what to tell a person. No I/O here.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use kube::ResourceExt;

use crate::controller::answers;
use crate::controller::conditions::State;
use crate::controller::create_attempt::CreateAttempt;
use crate::controller::management::{self, Step};
use crate::controller::ownership::{self, Claim, Identity};
use crate::controller::reason::Reason;
use crate::controller::stall::{Stall, recorded_elsewhere};
use crate::crd::{FlashbackBucket, ManagementPolicy, StorageType, annotations, cloud_keys};
use flashback_client::{self as flashback, ApiError, Bucket, BucketWrite};

/// A bucket's cloud credentials, as its Secret holds them. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct CloudCredentials {
    pub key: String,
    pub secret: String,
}

impl fmt::Debug for CloudCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CloudCredentials(***)")
    }
}

impl CloudCredentials {
    /// The SHA-256 of the credentials: what the status records of them (never them).
    pub fn digest(&self) -> String {
        crate::controller::digest::digest([
            ("key", self.key.as_bytes()),
            ("secret", self.secret.as_bytes()),
        ])
    }
}

/// The Secret keys of the cloud credentials for a storage type: (access key id, secret).
pub fn cloud_key_names(storage: StorageType) -> (&'static str, &'static str) {
    match storage {
        StorageType::S3 | StorageType::GCS => (
            cloud_keys::AWS_ACCESS_KEY_ID,
            cloud_keys::AWS_SECRET_ACCESS_KEY,
        ),
        StorageType::AZURE | StorageType::BLOB => (
            cloud_keys::AZURE_STORAGE_ACCOUNT,
            cloud_keys::AZURE_STORAGE_KEY,
        ),
    }
}

/// The cloud credentials in the bucket's Secret (`None`: the Secret does not exist), or the
/// stall that says what is missing. The values are never quoted.
pub fn cloud_credentials(
    bucket: &FlashbackBucket,
    data: Option<&BTreeMap<String, ByteString>>,
) -> Result<CloudCredentials, Stall> {
    let secret = format!(
        "{}/{}",
        bucket.namespace().unwrap_or_default(),
        bucket.spec.cloud_credentials_secret_ref.name
    );
    let Some(data) = data else {
        return Err(Stall {
            reason: Reason::CloudSecretNotFound,
            message: format!("the cloud credentials Secret {secret} does not exist"),
        });
    };
    let value = |key: &str| -> Result<String, Stall> {
        data.get(key)
            .and_then(|bytes| std::str::from_utf8(&bytes.0).ok())
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Stall {
                reason: Reason::CloudCredentialsMissing,
                message: format!(
                    "the cloud credentials Secret {secret} has no non-empty text key `{key}` \
                     (a {:?} bucket needs `{}` and `{}`)",
                    bucket.spec.storage_type,
                    cloud_key_names(bucket.spec.storage_type).0,
                    cloud_key_names(bucket.spec.storage_type).1
                ),
            })
    };
    let (key, secret_key) = cloud_key_names(bucket.spec.storage_type);
    Ok(CloudCredentials {
        key: value(key)?,
        secret: value(secret_key)?,
    })
}

fn storage(storage: StorageType) -> flashback::StorageType {
    match storage {
        StorageType::S3 => flashback::StorageType::S3,
        StorageType::GCS => flashback::StorageType::Gcs,
        StorageType::AZURE => flashback::StorageType::Azure,
        StorageType::BLOB => flashback::StorageType::Blob,
    }
}

/// The bucket the spec asks for, as the API's create and update body.
pub fn desired(bucket: &FlashbackBucket, cloud: &CloudCredentials) -> BucketWrite {
    let spec = &bucket.spec;
    BucketWrite {
        name: bucket.remote_name().to_string(),
        bucket: spec.bucket.clone(),
        storage_type: storage(spec.storage_type),
        key: cloud.key.clone(),
        secret: cloud.secret.clone(),
        region: spec.region.clone(),
        endpoint: spec.endpoint.clone(),
        workspace_id: spec.workspace_id.clone(),
    }
}

/// The update body of a bucket listed as `listed`: the spec's bucket, carrying over the
/// optional fields the spec leaves out (`region`, `endpoint`, perhaps set in the web console).
/// A `PUT` replaces the whole bucket, so what it leaves out, it takes away. Nothing else the
/// listing holds (`status`, `createdAt`) is a field a write takes.
pub fn desired_over(
    bucket: &FlashbackBucket,
    cloud: &CloudCredentials,
    listed: &Bucket,
) -> BucketWrite {
    let mut body = desired(bucket, cloud);
    body.region = body.region.or_else(|| listed.region.clone());
    body.endpoint = body.endpoint.or_else(|| listed.endpoint.clone());
    body
}

/// Whether a listed bucket is what the spec asks for; an optional field the spec leaves out
/// may hold anything (see [`desired_over`]).
pub fn shape_matches(bucket: &FlashbackBucket, listed: &Bucket) -> bool {
    let spec = &bucket.spec;
    let wanted = shape(
        bucket.remote_name(),
        &spec.bucket,
        &storage(spec.storage_type),
        spec.region.as_deref().or(listed.region.as_deref()),
        spec.endpoint.as_deref().or(listed.endpoint.as_deref()),
    );
    listed_shape(listed) == wanted
}

/// What a bucket is, minus its credentials, in a fixed order: the fingerprint of a create.
fn shape(
    name: &str,
    bucket: &str,
    storage: &flashback::StorageType,
    region: Option<&str>,
    endpoint: Option<&str>,
) -> [String; 5] {
    [
        name.to_string(),
        bucket.to_string(),
        storage.as_str().to_string(),
        region.unwrap_or_default().to_string(),
        endpoint.unwrap_or_default().to_string(),
    ]
}

/// The shape of the bucket the spec asks for.
pub fn desired_shape(bucket: &FlashbackBucket) -> [String; 5] {
    let spec = &bucket.spec;
    shape(
        bucket.remote_name(),
        &spec.bucket,
        &storage(spec.storage_type),
        spec.region.as_deref(),
        spec.endpoint.as_deref(),
    )
}

/// The shape of a listed bucket.
pub fn listed_shape(remote: &Bucket) -> [String; 5] {
    shape(
        &remote.name,
        remote.bucket.as_deref().unwrap_or_default(),
        &remote.storage_type,
        remote.region.as_deref(),
        remote.endpoint.as_deref(),
    )
}

/// Whether a remote bucket was made by `attempt`.
pub fn made_by(attempt: &CreateAttempt, remote: &Bucket) -> bool {
    let fields = listed_shape(remote);
    let fields: Vec<&[u8]> = fields.iter().map(String::as_bytes).collect();
    attempt.made_as(&remote.name, &fields, remote.created_at.as_deref())
}

/// The record of the next create attempt.
pub fn next_attempt(bucket: &FlashbackBucket, now: k8s_openapi::jiff::Timestamp) -> CreateAttempt {
    let previous = bucket
        .status
        .as_ref()
        .and_then(|s| s.create_attempt.as_ref());
    let fields = desired_shape(bucket);
    let fields: Vec<&[u8]> = fields.iter().map(String::as_bytes).collect();
    CreateAttempt::begin(previous, bucket.remote_name(), &fields, now)
}

/// What a reconcile should do with the registered bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Create,
    /// It exists and differs from the spec, or its cloud credentials changed: send it whole.
    Update {
        bucket_id: String,
    },
    InSync {
        bucket_id: String,
    },
    /// ObserveOnly: report the bucket, never write.
    Observe {
        bucket_id: String,
        in_sync: bool,
    },
    /// Paused by annotation: report, never write.
    Paused {
        bucket_id: Option<String>,
        in_sync: bool,
    },
    Stall(Stall),
}

/// Decides from the object, its workspace's buckets, `held` (whether another object's status
/// records a bucket id) and the digest of the cloud credentials the Secret holds now (`None`
/// under ObserveOnly, which never reads them). The bucket is found by the adoption annotation,
/// else by the id in status, else as what this object's unfinished register made, never by
/// its name alone (under ObserveOnly either); a bucket another object manages is never
/// adopted, claimed or observed.
/// In step means the listing matches the spec and, under Full, the credentials last sent are
/// the Secret's: the API never shows the credentials a bucket holds, so a bucket adopted or
/// switched to Full is sent the Secret's once.
pub fn decide(
    bucket: &FlashbackBucket,
    listing: &[Bucket],
    identity: &Identity,
    held: impl Fn(&str) -> bool,
    credentials_digest: Option<&str>,
) -> Decision {
    let status = bucket.status.as_ref();
    let recorded = status.and_then(|s| s.bucket_id.as_deref());
    let recorded_here = identity.confirmed(status.and_then(|s| s.recorded_with.as_ref()));
    let workspace = &bucket.spec.workspace_id;
    let observe_only = bucket.spec.management_policy == ManagementPolicy::ObserveOnly;
    let by_id = |id: &str| listing.iter().find(|b| b.id == id);
    let name = bucket.remote_name();
    let found = if let Some(id) = bucket.adopted_bucket_id() {
        if held(id) {
            return Decision::Stall(managed_elsewhere(id));
        }
        match by_id(id) {
            Some(remote) => Some(remote),
            None => {
                return Decision::Stall(Stall {
                    reason: Reason::AdoptedBucketNotFound,
                    message: format!(
                        "no bucket with id {id} exists in workspace {workspace} (named by \
                         annotation {})",
                        annotations::BUCKET_ID
                    ),
                });
            }
        }
    } else if let Some(remote) = recorded
        .and_then(by_id)
        .filter(|remote| recorded_here || remote.name == name)
    {
        // Recorded with these credentials, or, after they changed, listed with the new ones
        // under this object's name.
        if held(&remote.id) {
            return Decision::Stall(managed_elsewhere(&remote.id));
        }
        Some(remote)
    } else if let Some(id) = recorded.filter(|_| !recorded_here) {
        return Decision::Stall(recorded_elsewhere("bucket", id, name, workspace));
    } else if let Some(remote) = status
        .and_then(|s| s.create_attempt.as_ref())
        .filter(|attempt| identity.sent(attempt))
        .and_then(|attempt| {
            listing
                .iter()
                .find(|b| made_by(attempt, b) && !held(&b.id) && answers::plausible_id(&b.id))
        })
    {
        Some(remote)
    } else if let Some(remote) = listing.iter().find(|b| b.name == name) {
        if held(&remote.id) {
            return Decision::Stall(Stall {
                reason: Reason::NameAlreadyUsed,
                message: format!(
                    "a bucket named {name:?} already exists in workspace {workspace} and is \
                     managed by another FlashbackBucket; choose another spec.name"
                ),
            });
        }
        // Not even to observe it: a name is no consent, and a bucket another object is
        // registering right now (its id not yet in its status) would be taken from it.
        let verb = if observe_only { "observe" } else { "manage" };
        return Decision::Stall(Stall {
            reason: Reason::NameAlreadyUsed,
            message: format!(
                "a bucket named {name:?} already exists in workspace {workspace} (id {}) and \
                 was not registered for this object; to {verb} it, set the annotation {}: {}",
                remote.id,
                annotations::BUCKET_ID,
                remote.id
            ),
        });
    } else {
        None
    };
    let found = found.map(|remote| {
        let recorded_for_it = recorded == Some(remote.id.as_str());
        let credentials_current = observe_only
            || (recorded_for_it
                && credentials_digest.is_some()
                && status.and_then(|s| s.cloud_credentials_digest.as_deref())
                    == credentials_digest);
        let in_sync = shape_matches(bucket, remote) && credentials_current;
        (remote.id.clone(), in_sync)
    });
    match management::step(bucket.spec.management_policy, bucket.is_paused(), found) {
        Step::Create => Decision::Create,
        Step::Update(bucket_id) => Decision::Update { bucket_id },
        Step::InSync(bucket_id) => Decision::InSync { bucket_id },
        Step::Observe { id, in_sync } => Decision::Observe {
            bucket_id: id,
            in_sync,
        },
        Step::Paused { id, in_sync } => Decision::Paused {
            bucket_id: id,
            in_sync,
        },
        Step::NotFound => Decision::Stall(management::not_found("bucket", name, workspace)),
    }
}

fn managed_elsewhere(bucket_id: &str) -> Stall {
    Stall {
        reason: Reason::ManagedByAnotherObject,
        message: format!(
            "bucket {bucket_id} is managed by another FlashbackBucket; an object adopts only a \
             bucket that no other object manages"
        ),
    }
}

/// Whether `other` manages the bucket `bucket_id` rather than `me`, who acts with `identity`
/// (see [`ownership::holds`]).
pub fn holds(
    other: &FlashbackBucket,
    me: &FlashbackBucket,
    bucket_id: &str,
    identity: &Identity,
) -> bool {
    ownership::holds(&claim(other), &claim(me), bucket_id, identity)
}

/// What an object's status records of its bucket, as [`ownership`] reads it.
pub fn claim(bucket: &FlashbackBucket) -> Claim<'_> {
    let status = bucket.status.as_ref();
    Claim {
        uid: bucket.metadata.uid.as_deref(),
        id: status.and_then(|s| s.bucket_id.as_deref()),
        with: status.and_then(|s| s.recorded_with.as_ref()),
        created: bucket.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

/// Whether the listed `remote` is what the attempt the status records made.
pub fn made_by_attempt(bucket: &FlashbackBucket, remote: &Bucket, identity: &Identity) -> bool {
    bucket
        .status
        .as_ref()
        .and_then(|s| s.create_attempt.as_ref())
        .filter(|attempt| identity.sent(attempt))
        .is_some_and(|attempt| made_by(attempt, remote))
}

/// The buckets a delete deregisters: the recorded one (where it was confirmed, or listed under
/// the object's name after its credentials changed) and what an unfinished create made, each
/// only while no other object holds it. `held` names the ones left in place for that reason.
pub fn doomed<'a>(
    bucket: &FlashbackBucket,
    listing: &'a [Bucket],
    identity: &Identity,
    held: impl Fn(&str) -> bool,
) -> (Vec<&'a Bucket>, Vec<&'a Bucket>) {
    let status = bucket.status.as_ref();
    let recorded = status.and_then(|s| s.bucket_id.as_deref());
    let recorded_here = identity.confirmed(status.and_then(|s| s.recorded_with.as_ref()));
    listing
        .iter()
        .filter(|remote| {
            let ours = recorded == Some(remote.id.as_str())
                && (recorded_here || remote.name == bucket.remote_name());
            ours || made_by_attempt(bucket, remote, identity)
        })
        .partition(|remote| !held(&remote.id))
}

/// The recorded bucket id, when it was confirmed with `identity` and no create is unfinished:
/// a delete needs no listing to know what to deregister.
pub fn recorded_here<'a>(bucket: &'a FlashbackBucket, identity: &Identity) -> Option<&'a str> {
    let status = bucket.status.as_ref()?;
    let confirmed =
        status.recorded_with.is_some() && identity.confirmed(status.recorded_with.as_ref());
    (confirmed && status.create_attempt.is_none())
        .then_some(status.bucket_id.as_deref())
        .flatten()
}

/// How soon a delete looks again while a repository of the operator names the bucket: a look
/// at the watch cache, no API call.
pub const IN_USE_LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether a FlashbackRepository of the bucket's namespace still names it, by `bucketRef` or by
/// id. Only its own namespace counts: another tenant's object naming the id must not hold the
/// delete (a repository elsewhere that really uses it makes the API refuse the delete).
pub fn used_by_a_repository(
    bucket: &FlashbackBucket,
    bucket_id: &str,
    repositories: &[std::sync::Arc<crate::crd::FlashbackRepository>],
) -> bool {
    let namespace = bucket.namespace();
    let name = bucket.name_any();
    repositories
        .iter()
        .filter(|repo| repo.namespace() == namespace)
        .any(|repo| {
            repo.spec.buckets.iter().any(|b| {
                b.bucket_id.as_deref() == Some(bucket_id)
                    || b.bucket_ref.as_ref().is_some_and(|r| r.name == name)
            })
        })
}

/// The first of `repos` (listed by the API) that groups the bucket `bucket_id`: while one does,
/// the API refuses to delete the bucket.
pub fn listed_as_used<'a>(
    bucket_id: &str,
    repos: impl IntoIterator<Item = &'a flashback::Repo>,
) -> Option<&'a flashback::Repo> {
    repos
        .into_iter()
        .find(|repo| repo.buckets.iter().any(|b| b.bucket_id == bucket_id))
}

/// The status the API reports for a listed bucket, when it is a plain word the operator will
/// write into the object's status (a server can answer anything).
pub fn reported_status(listing: &[Bucket], bucket_id: &str) -> Option<String> {
    listing
        .iter()
        .find(|b| b.id == bucket_id)
        .and_then(|b| b.status.clone())
        .filter(|status| answers::plausible_id(status))
}

/// Why deleting the object leaves the bucket registered, if it does.
pub fn kept_on_delete(bucket: &FlashbackBucket) -> Option<&'static str> {
    let spec = &bucket.spec;
    management::kept_on_delete(
        spec.management_policy,
        spec.deletion_policy,
        bucket.is_paused(),
    )
}

/// Ready: the registered bucket matches the spec.
pub fn synced() -> State {
    State::Ready {
        reason: Reason::Synced,
        message: "the registered bucket matches the spec".into(),
    }
}

/// ObserveOnly: what the object says after looking at the registered bucket.
pub fn observed(in_sync: bool) -> State {
    management::observed("the registered bucket", in_sync)
}

/// Waiting: paused by annotation.
pub fn paused(exists: bool, in_sync: bool) -> State {
    if in_sync {
        return State::Ready {
            reason: Reason::Synced,
            message: "the registered bucket matches the spec; remote writes are paused".into(),
        };
    }
    State::Waiting {
        reason: Reason::Paused,
        message: format!(
            "remote writes are paused by the annotation {}: \"true\"; the bucket {}",
            annotations::PAUSED,
            if exists {
                "differs from the spec"
            } else {
                "has not been registered"
            }
        ),
    }
}

/// Reconciling: a delete waits while a repository uses the bucket.
pub fn in_use(bucket_id: &str) -> State {
    State::Progressing {
        reason: Reason::BucketInUse,
        message: format!(
            "bucket {bucket_id} is used by a repository: it is deleted once no repository uses \
             it (or set deletionPolicy: Orphan to release the object and keep it)"
        ),
    }
}

/// The stall of a register refused with `NAME_ALREADY_USED` while the bucket's workspace lists
/// no bucket of that name: another workspace of the organisation has it.
pub fn name_used_elsewhere(name: &str, workspace: &str) -> Stall {
    Stall {
        reason: Reason::NameAlreadyUsed,
        message: format!(
            "the Flashback API refused the name {name:?}: another bucket of the organisation \
             uses it, outside workspace {workspace}; choose another spec.name"
        ),
    }
}

/// The stall of a register or update the API refused with HTTP 400 and no error code: its
/// answer when the storage provider refuses the cloud credentials (the reference gives it for
/// `validate`, and says a register checks them first). `None` for any other failure.
pub fn cloud_credentials_refused(bucket: &FlashbackBucket, error: &ApiError) -> Option<Stall> {
    let error = match error {
        ApiError::RetriesExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    let ApiError::Rejected {
        status: 400,
        message,
    } = error
    else {
        return None;
    };
    let secret = format!(
        "{}/{}",
        bucket.namespace().unwrap_or_default(),
        bucket.spec.cloud_credentials_secret_ref.name
    );
    Some(Stall {
        reason: Reason::CloudCredentialsRejected,
        message: format!(
            "the Flashback API refused the bucket {:?} with HTTP 400 and no error code, its \
             answer when the storage provider refuses the cloud credentials or the bucket, \
             region or endpoint they are for: {message}; check the access key and secret in \
             the Secret {secret}, and spec.bucket, spec.region and spec.endpoint (a change of \
             that Secret is tried at once, and it is looked at again every resync)",
            bucket.spec.bucket
        ),
    })
}

/// Reconciling: the API refused the delete with 403, its answer both to a bucket in use and to
/// a token that may not delete it.
pub fn delete_refused(bucket_id: &str, message: &str) -> State {
    State::Progressing {
        reason: Reason::BucketInUse,
        message: format!(
            "the Flashback API refused to delete bucket {bucket_id}: it is in use or not \
             permitted ({message}); asked again every resync (or set deletionPolicy: Orphan to \
             release the object and keep it)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> Identity {
        fixtures::identity()
    }
    use crate::crd::FlashbackBucketStatus;
    use crate::fixtures;

    fn cloud() -> CloudCredentials {
        CloudCredentials {
            key: "AK".into(),
            secret: "SK".into(),
        }
    }

    /// The bucket `bucket` would register, listed under `id`.
    fn listed(bucket: &FlashbackBucket, id: &str) -> Bucket {
        let body = desired(bucket, &cloud());
        Bucket {
            id: id.into(),
            name: body.name,
            bucket: Some(body.bucket),
            storage_type: body.storage_type,
            region: body.region,
            endpoint: body.endpoint,
            status: Some("ACTIVE".into()),
            workspace_id: Some(body.workspace_id),
            created_at: Some("2026-11-28T12:00:00Z".into()),
        }
    }

    fn none_held(_: &str) -> bool {
        false
    }

    fn recorded(bucket: &mut FlashbackBucket, id: &str, digest: &str) {
        bucket.status = Some(FlashbackBucketStatus {
            bucket_id: Some(id.into()),
            cloud_credentials_digest: Some(digest.into()),
            ..Default::default()
        });
    }

    #[test]
    fn a_bare_400_on_a_register_or_update_is_the_cloud_refusing_the_credentials() {
        let bucket = fixtures::bucket("team-a", "photos");
        let refused = ApiError::Rejected {
            status: 400,
            message: "Bucket credentials validation failed".into(),
        };
        let stall = cloud_credentials_refused(&bucket, &refused).unwrap();
        assert_eq!(stall.reason, Reason::CloudCredentialsRejected);
        assert!(
            stall.message.starts_with(&format!(
                "the Flashback API refused the bucket {:?} with HTTP 400 and no error code, its \
                 answer when the storage provider refuses the cloud credentials or the bucket, \
                 region or endpoint they are for",
                bucket.spec.bucket
            )) && stall.message.contains(&format!(
                "check the access key and secret in the Secret team-a/{}",
                bucket.spec.cloud_credentials_secret_ref.name
            )),
            "{}",
            stall.message
        );
        assert!(
            stall
                .message
                .contains("Bucket credentials validation failed")
        );
        let exhausted = ApiError::RetriesExhausted {
            attempts: 1,
            last: Box::new(refused),
        };
        assert!(cloud_credentials_refused(&bucket, &exhausted).is_some());
        for other in [
            ApiError::Rejected {
                status: 405,
                message: "no".into(),
            },
            ApiError::InvalidSpec {
                code: "INVALID_REQUEST".into(),
                message: "bucket is required".into(),
            },
        ] {
            assert_eq!(cloud_credentials_refused(&bucket, &other), None, "{other}");
        }
    }

    #[test]
    fn a_new_bucket_is_registered_and_a_recorded_one_is_updated_when_its_credentials_change() {
        let mut bucket = fixtures::bucket("team-a", "photos");
        let digest = cloud().digest();
        assert_eq!(
            decide(&bucket, &[], &here(), none_held, Some(&digest)),
            Decision::Create
        );
        let remote = listed(&bucket, "b1");
        recorded(&mut bucket, "b1", &digest);
        assert_eq!(
            decide(
                &bucket,
                std::slice::from_ref(&remote),
                &here(),
                none_held,
                Some(&digest)
            ),
            Decision::InSync {
                bucket_id: "b1".into()
            }
        );
        assert_eq!(
            decide(
                &bucket,
                std::slice::from_ref(&remote),
                &here(),
                none_held,
                Some("another digest")
            ),
            Decision::Update {
                bucket_id: "b1".into()
            },
            "rotated cloud credentials"
        );
        bucket.spec.region = Some("eu-west-1".into());
        assert_eq!(
            decide(
                &bucket,
                std::slice::from_ref(&remote),
                &here(),
                none_held,
                Some(&digest)
            ),
            Decision::Update {
                bucket_id: "b1".into()
            },
            "a changed spec"
        );
    }

    #[test]
    fn an_update_keeps_a_region_and_endpoint_the_spec_leaves_out_and_they_are_no_drift() {
        let mut bucket = fixtures::bucket("team-a", "photos");
        bucket.spec.region = None;
        bucket.spec.endpoint = None;
        let mut remote = listed(&bucket, "b1");
        remote.region = Some("set-in-the-console".into());
        remote.endpoint = Some("https://s3.example.com".into());
        assert!(shape_matches(&bucket, &remote));
        let body = desired_over(&bucket, &cloud(), &remote);
        assert_eq!(body.region.as_deref(), Some("set-in-the-console"));
        assert_eq!(body.endpoint.as_deref(), Some("https://s3.example.com"));
        // A value the spec names wins, and differs.
        bucket.spec.region = Some("eu-west-1".into());
        assert!(!shape_matches(&bucket, &remote));
        let body = desired_over(&bucket, &cloud(), &remote);
        assert_eq!(body.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn a_name_taken_stalls_unless_adopted_and_adoption_needs_the_id_listed() {
        let mut bucket = fixtures::bucket("team-a", "photos");
        let remote = listed(&bucket, "b9");
        let Decision::Stall(stall) = decide(
            &bucket,
            std::slice::from_ref(&remote),
            &here(),
            none_held,
            Some("d"),
        ) else {
            panic!("a stall");
        };
        assert_eq!(stall.reason, Reason::NameAlreadyUsed);
        assert!(
            stall.message.contains("flashback.tech/bucket-id: b9"),
            "{}",
            stall.message
        );
        fixtures::annotate_bucket(&mut bucket, annotations::BUCKET_ID, "b9");
        assert_eq!(
            decide(
                &bucket,
                std::slice::from_ref(&remote),
                &here(),
                none_held,
                Some("d")
            ),
            Decision::Update {
                bucket_id: "b9".into()
            },
            "adopted, then written with this object's credentials"
        );
        let Decision::Stall(stall) = decide(&bucket, &[], &here(), none_held, Some("d")) else {
            panic!("a stall");
        };
        assert_eq!(stall.reason, Reason::AdoptedBucketNotFound);
        let Decision::Stall(stall) = decide(
            &bucket,
            std::slice::from_ref(&remote),
            &here(),
            |id| id == "b9",
            Some("d"),
        ) else {
            panic!("a stall");
        };
        assert_eq!(stall.reason, Reason::ManagedByAnotherObject);
    }

    #[test]
    fn the_fingerprint_a_bucket_records_never_changes() {
        // Objects keep it across upgrades: another value would not recognise their creates.
        let bucket = fixtures::bucket("team-a", "photos");
        let attempt = next_attempt(&bucket, "2026-11-26T19:00:00Z".parse().unwrap());
        assert_eq!(attempt.sent, "c67b8febeafa6b6f");
    }

    #[test]
    fn after_a_crash_only_the_bucket_the_attempt_sent_is_claimed() {
        let mut bucket = fixtures::bucket("team-a", "photos");
        let attempt = next_attempt(&bucket, "2026-11-28T11:59:00Z".parse().unwrap());
        bucket.status = Some(FlashbackBucketStatus {
            create_attempt: Some(attempt),
            ..Default::default()
        });
        let made = listed(&bucket, "b1");
        assert_eq!(
            decide(
                &bucket,
                std::slice::from_ref(&made),
                &here(),
                none_held,
                Some("d")
            ),
            Decision::Update {
                bucket_id: "b1".into()
            }
        );
        let mut other_body = made.clone();
        other_body.bucket = Some("someone-elses".into());
        let Decision::Stall(stall) = decide(&bucket, &[other_body], &here(), none_held, Some("d"))
        else {
            panic!("a bucket of that name but another body is not ours");
        };
        assert_eq!(stall.reason, Reason::NameAlreadyUsed);
    }

    #[test]
    fn a_delete_deregisters_only_what_is_its_own_and_nobody_else_holds() {
        let mut bucket = fixtures::bucket("team-c", "photos");
        let theirs = listed(&bucket, "b-team-a");
        // A refused register leaves no record; an unfinished one matches only what it sent.
        bucket.status = Some(FlashbackBucketStatus {
            create_attempt: Some(next_attempt(
                &bucket,
                "2026-11-28T11:59:00Z".parse().unwrap(),
            )),
            ..Default::default()
        });
        let listing = [theirs.clone()];
        let (gone, left) = doomed(&bucket, &listing, &here(), |id| id == "b-team-a");
        assert!(gone.is_empty(), "held by another object");
        assert_eq!(left.len(), 1);
        let (gone, _) = doomed_none_held(&bucket, &listing);
        assert_eq!(gone.len(), 1, "what the attempt made, nobody holding it");

        // A recorded id is deleted without a listing only where it was confirmed.
        let mut recorded = fixtures::bucket("team-a", "photos");
        recorded.status = Some(FlashbackBucketStatus {
            bucket_id: Some("b1".into()),
            recorded_with: Some(here().record(
                None,
                None,
                "b1",
                &crate::fixtures::time("2026-12-07T10:00:00Z"),
                None,
            )),
            ..Default::default()
        });
        assert_eq!(recorded_here(&recorded, &here()), Some("b1"));
        let elsewhere = Identity::new(
            &"http://127.0.0.1:9/".parse().unwrap(),
            &crate::controller::credentials::SecretName::default(),
        );
        assert_eq!(recorded_here(&recorded, &elsewhere), None);
        let mut renamed = listed(&recorded, "b1");
        renamed.name = "victims-bucket".into();
        let renamed = [renamed];
        let (not_ours, _) = doomed(&recorded, &renamed, &elsewhere, none_held);
        assert!(
            not_ours.is_empty(),
            "listed with other credentials under another name"
        );
        let (ours, _) = doomed(&recorded, &renamed, &here(), none_held);
        assert_eq!(ours.len(), 1);
    }

    fn doomed_none_held<'a>(
        bucket: &FlashbackBucket,
        listing: &'a [Bucket],
    ) -> (Vec<&'a Bucket>, Vec<&'a Bucket>) {
        doomed(bucket, listing, &here(), none_held)
    }

    #[test]
    fn only_a_repository_of_the_buckets_namespace_holds_its_delete_locally() {
        let bucket = fixtures::bucket("team-a", "photos");
        let mut by_ref = fixtures::repo("team-a", "album");
        by_ref.spec.buckets[0].bucket_id = None;
        by_ref.spec.buckets[0].bucket_ref = Some(crate::crd::BucketReference {
            name: "photos".into(),
        });
        let mut by_id = fixtures::repo("team-a", "other");
        by_id.spec.buckets[0].bucket_id = Some("b1".into());
        let mut elsewhere = fixtures::repo("team-x", "squatter");
        elsewhere.spec.buckets[0].bucket_id = Some("b1".into());
        let uses = |repos: Vec<crate::crd::FlashbackRepository>| {
            let repos: Vec<_> = repos.into_iter().map(std::sync::Arc::new).collect();
            used_by_a_repository(&bucket, "b1", &repos)
        };
        assert!(uses(vec![by_ref]));
        assert!(uses(vec![by_id]));
        assert!(
            !uses(vec![elsewhere]),
            "another tenant naming the id holds nothing"
        );
        assert!(!uses(vec![]));
    }

    #[test]
    fn a_name_taken_in_another_workspace_stalls_naming_the_workspace() {
        let stall = name_used_elsewhere("photos", "ws-1");
        assert_eq!(stall.reason, Reason::NameAlreadyUsed);
        assert_eq!(
            stall.message,
            "the Flashback API refused the name \"photos\": another bucket of the organisation \
             uses it, outside workspace ws-1; choose another spec.name"
        );
    }

    #[test]
    fn a_listed_repository_grouping_the_bucket_holds_its_delete() {
        let listed = |id: &str, buckets: &[&str]| -> flashback::Repo {
            let buckets: Vec<_> = buckets
                .iter()
                .map(|b| serde_json::json!({"bucketId": b, "master": false}))
                .collect();
            serde_json::from_value(serde_json::json!({
                "id": id, "name": id, "storageType": "S3", "mode": "BACKUP", "buckets": buckets
            }))
            .unwrap()
        };
        let repos = [listed("r1", &["b2"]), listed("r2", &["b3", "b1"])];
        assert_eq!(
            listed_as_used("b1", &repos).map(|r| r.id.as_str()),
            Some("r2")
        );
        assert_eq!(listed_as_used("b9", &repos), None);
        assert_eq!(listed_as_used("b1", &[]), None);

        let refused = delete_refused("b1", "Insufficient permissions or bucket in use");
        assert_eq!(refused.reason(), Reason::BucketInUse);
        assert!(matches!(refused, State::Progressing { .. }), "{refused:?}");
    }

    #[test]
    fn observe_only_finds_a_bucket_by_annotation_reports_it_without_credentials_and_never_writes() {
        let mut bucket = fixtures::bucket("team-a", "photos");
        bucket.spec.management_policy = ManagementPolicy::ObserveOnly;
        let remote = listed(&bucket, "b9");
        let observed = |bucket: &FlashbackBucket, listing: &[Bucket]| {
            decide(bucket, listing, &here(), none_held, None)
        };
        // By its name alone: no consent, and perhaps another's register in flight.
        let Decision::Stall(stall) = observed(&bucket, std::slice::from_ref(&remote)) else {
            panic!("a bucket is not observed by its name alone");
        };
        assert_eq!(stall.reason, Reason::NameAlreadyUsed);
        assert!(
            stall
                .message
                .ends_with("to observe it, set the annotation flashback.tech/bucket-id: b9"),
            "{}",
            stall.message
        );
        fixtures::annotate_bucket(&mut bucket, annotations::BUCKET_ID, "b9");
        assert_eq!(
            observed(&bucket, std::slice::from_ref(&remote)),
            Decision::Observe {
                bucket_id: "b9".into(),
                in_sync: true
            },
            "found by annotation, no credentials read"
        );
        let mut drifted = remote.clone();
        drifted.bucket = Some("another-cloud-bucket".into());
        assert_eq!(
            observed(&bucket, &[drifted]),
            Decision::Observe {
                bucket_id: "b9".into(),
                in_sync: false
            }
        );
        let Decision::Stall(stall) = observed(&bucket, &[]) else {
            panic!("nothing to observe");
        };
        assert_eq!(stall.reason, Reason::AdoptedBucketNotFound);
        let Decision::Stall(stall) = decide(
            &bucket,
            std::slice::from_ref(&remote),
            &here(),
            |id| id == "b9",
            None,
        ) else {
            panic!("another object's bucket is not observed");
        };
        assert_eq!(stall.reason, Reason::ManagedByAnotherObject);
        fixtures::annotate_bucket(&mut bucket, annotations::PAUSED, "true");
        assert!(matches!(
            observed(&bucket, std::slice::from_ref(&remote)),
            Decision::Observe { .. }
        ));
        assert_eq!(
            kept_on_delete(&bucket),
            Some("managementPolicy is ObserveOnly")
        );
        assert_eq!(observed_state(true), Reason::Observed);
        assert_eq!(observed_state(false), Reason::OutOfSync);
    }

    fn observed_state(in_sync: bool) -> Reason {
        observed(in_sync).reason()
    }

    #[test]
    fn an_observed_bucket_switched_to_full_is_sent_its_credentials_once() {
        let mut bucket = fixtures::bucket("team-a", "photos");
        fixtures::annotate_bucket(&mut bucket, annotations::BUCKET_ID, "b9");
        let remote = listed(&bucket, "b9");
        // What ObserveOnly recorded: the id, never a credentials digest.
        bucket.status = Some(FlashbackBucketStatus {
            bucket_id: Some("b9".into()),
            ..Default::default()
        });
        let digest = cloud().digest();
        assert_eq!(
            decide(
                &bucket,
                std::slice::from_ref(&remote),
                &here(),
                none_held,
                Some(&digest)
            ),
            Decision::Update {
                bucket_id: "b9".into()
            }
        );
        recorded(&mut bucket, "b9", &digest);
        assert_eq!(
            decide(
                &bucket,
                std::slice::from_ref(&remote),
                &here(),
                none_held,
                Some(&digest)
            ),
            Decision::InSync {
                bucket_id: "b9".into()
            },
            "once sent, in step"
        );
    }

    #[test]
    fn paused_writes_nothing_and_a_delete_keeps_what_orphan_or_paused_keeps() {
        let mut bucket = fixtures::bucket("team-a", "photos");
        fixtures::annotate_bucket(&mut bucket, annotations::PAUSED, "true");
        assert_eq!(
            decide(&bucket, &[], &here(), none_held, Some("d")),
            Decision::Paused {
                bucket_id: None,
                in_sync: false
            }
        );
        assert_eq!(kept_on_delete(&bucket), Some("remote writes are paused"));
        assert_eq!(paused(false, false).reason(), Reason::Paused);
        let mut orphan = fixtures::bucket("team-a", "photos");
        assert_eq!(kept_on_delete(&orphan), None);
        orphan.spec.deletion_policy = crate::crd::DeletionPolicy::Orphan;
        assert_eq!(kept_on_delete(&orphan), Some("deletionPolicy is Orphan"));
    }

    #[test]
    fn cloud_credentials_are_read_by_the_names_of_their_cloud_and_never_quoted() {
        let mut bucket = fixtures::bucket("team-a", "photos");
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, ByteString> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect()
        };
        let aws = data(&[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK\n"),
        ]);
        assert_eq!(cloud_credentials(&bucket, Some(&aws)).unwrap(), cloud());
        assert_eq!(format!("{:?}", cloud()), "CloudCredentials(***)");
        let missing = cloud_credentials(&bucket, None).unwrap_err();
        assert_eq!(missing.reason, Reason::CloudSecretNotFound);
        assert_eq!(
            missing.message,
            "the cloud credentials Secret team-a/cloud does not exist"
        );
        bucket.spec.storage_type = StorageType::AZURE;
        let wrong = cloud_credentials(&bucket, Some(&aws)).unwrap_err();
        assert_eq!(wrong.reason, Reason::CloudCredentialsMissing);
        assert!(
            wrong.message.contains("`AZURE_STORAGE_ACCOUNT`"),
            "{}",
            wrong.message
        );
        assert!(!wrong.message.contains("SK"), "never a value");
    }

    #[test]
    fn only_plain_answers_reach_the_status() {
        let bucket = fixtures::bucket("team-a", "photos");
        let mut remote = listed(&bucket, "b1");
        assert_eq!(
            reported_status(std::slice::from_ref(&remote), "b1").as_deref(),
            Some("ACTIVE")
        );
        remote.status = Some("x".repeat(10_000));
        assert_eq!(reported_status(std::slice::from_ref(&remote), "b1"), None);
        // A bucket the attempt made, under an id the operator will not write: not claimed.
        let mut attempted = bucket.clone();
        attempted.status = Some(FlashbackBucketStatus {
            create_attempt: Some(next_attempt(
                &bucket,
                "2026-11-28T11:59:00Z".parse().unwrap(),
            )),
            ..Default::default()
        });
        let odd = listed(&bucket, "b1\nInjected: line");
        assert!(matches!(
            decide(&attempted, &[odd], &here(), none_held, Some("d")),
            Decision::Stall(_)
        ));
    }
}

//! Types that mirror the wire format of `flashback-api.md`, field for field.
//!
//! Read types are tolerant: unknown fields are ignored and unknown enum values are kept in an
//! `Other` variant, so a server that grows a new mode does not break the operator. Bucket
//! credentials embedded in read responses (`key`, `secret`) and the encrypted secrets of listed
//! repository keys are never deserialized, so they cannot end up in a log line or a Kubernetes
//! status by accident; the one plain secret the API answers is held in a [`KeySecret`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::listing::Held;
use super::secret::KeySecret;

/// Declares a string enum of the wire that keeps values it does not know.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($variant,)+
            /// A value this client does not know, kept as sent so it round-trips.
            Other(String),
        }

        impl $name {
            /// The values the contract names.
            pub const KNOWN: &'static [&'static str] = &[$($wire),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Other(value) => value,
                }
            }

            /// The bytes it owns on the heap: an unknown value's text.
            #[allow(dead_code, reason = "only the kinds a listing holds are counted")]
            fn heap_bytes(&self) -> usize {
                match self {
                    Self::Other(value) => value.capacity(),
                    _ => 0,
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match value.as_str() {
                    $($wire => Self::$variant,)+
                    _ => Self::Other(value),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                match value {
                    $name::Other(value) => value,
                    known => known.as_str().to_owned(),
                }
            }
        }

        impl FromStr for $name {
            type Err = std::convert::Infallible;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Ok(Self::from(value.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Where a repo's buckets live. The reference names `AZURE`, the TypeScript client `BLOB`.
    StorageType { S3 => "S3", Gcs => "GCS", Azure => "AZURE", Blob => "BLOB" }
}

wire_enum! {
    /// How a repo uses its buckets. The reference names `BACKUP`, the TypeScript client `NORMAL`.
    RepoMode { Mirror => "MIRROR", Backup => "BACKUP", Normal => "NORMAL" }
}

wire_enum! {
    /// What a repository access key may do.
    AccessType { Read => "READ", Write => "WRITE", Admin => "ADMIN" }
}

/// Filters of `GET /repo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoFilter {
    pub workspace_id: Option<String>,
    pub repo_id: Option<String>,
}

impl RepoFilter {
    pub fn workspace(workspace_id: impl Into<String>) -> Self {
        Self {
            workspace_id: Some(workspace_id.into()),
            repo_id: None,
        }
    }

    pub fn repo(repo_id: impl Into<String>) -> Self {
        Self {
            workspace_id: None,
            repo_id: Some(repo_id.into()),
        }
    }
}

/// Body of `POST /repo` and `PUT /repo/{id}`: the whole desired repo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoWrite {
    pub name: String,
    pub storage_type: StorageType,
    pub mode: RepoMode,
    /// Required on POST; on PUT the server keeps the current workspace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub repo_buckets: Vec<RepoBucketWrite>,
    /// Out of scope for the operator; passed through when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_ai_llms: Vec<AiLlmRef>,
}

impl RepoWrite {
    /// The repository as `GET /repo` lists it once this body was accepted under `id`.
    pub fn as_listed(&self, id: &str) -> Repo {
        Repo {
            id: id.to_owned(),
            name: self.name.clone(),
            storage_type: self.storage_type.clone(),
            mode: self.mode.clone(),
            workspace_id: self.workspace_id.clone(),
            created_at: None,
            buckets: self
                .repo_buckets
                .iter()
                .map(|b| RepoBucket {
                    bucket_id: b.bucket_id.clone(),
                    folder: b.folder.clone(),
                    master: b.master,
                })
                .collect(),
            disabled: None,
            ai_llms: self.repo_ai_llms.clone(),
        }
    }
}

/// One bucket of a [`RepoWrite`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoBucketWrite {
    pub bucket_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    #[serde(default)]
    pub master: bool,
}

/// `{"aiLlmId": ...}` of `repoAiLlms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiLlmRef {
    pub ai_llm_id: String,
}

/// A repo as `GET /repo` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repo {
    pub id: String,
    pub name: String,
    pub storage_type: StorageType,
    pub mode: RepoMode,
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// RFC 3339, as sent.
    #[serde(default)]
    pub created_at: Option<String>,
    /// `buckets` on read (`repoBuckets` on write). Absent or `null` reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub buckets: Vec<RepoBucket>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// `aiLlms`: the AI models attached to the repo (in the web console), by id alone.
    /// Absent or `null` reads as empty.
    #[serde(default, deserialize_with = "listed_ai_llms")]
    pub ai_llms: Vec<AiLlmRef>,
}

impl Held for Repo {
    fn held_bytes(&self) -> usize {
        let text = |value: &Option<String>| value.as_ref().map_or(0, String::capacity);
        std::mem::size_of::<Self>()
            + self.id.capacity()
            + self.name.capacity()
            + self.storage_type.heap_bytes()
            + self.mode.heap_bytes()
            + text(&self.workspace_id)
            + text(&self.created_at)
            + self.buckets.capacity() * std::mem::size_of::<RepoBucket>()
            + self
                .buckets
                .iter()
                .map(|b| b.bucket_id.capacity() + text(&b.folder))
                .sum::<usize>()
            + self.ai_llms.capacity() * std::mem::size_of::<AiLlmRef>()
            + self
                .ai_llms
                .iter()
                .map(|m| m.ai_llm_id.capacity())
                .sum::<usize>()
    }
}

/// Reads `aiLlms` for the ids alone: an entry's `aiLlmId`, else its `id`, else the entry
/// itself when it is a string. Whatever else an entry carries (a model's settings, perhaps its
/// provider's key) is never kept, so it cannot reach a log; an entry without an id is skipped
/// rather than failing the whole listing.
fn listed_ai_llms<'de, D>(deserializer: D) -> Result<Vec<AiLlmRef>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Id(String),
        Object {
            #[serde(default, rename = "aiLlmId")]
            ai_llm_id: Option<String>,
            #[serde(default)]
            id: Option<String>,
        },
        Unreadable(serde::de::IgnoredAny),
    }
    let entries = Option::<Vec<Entry>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(entries
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Id(id) => Some(id),
            Entry::Object { ai_llm_id, id } => ai_llm_id.or(id),
            Entry::Unreadable(_) => None,
        })
        .map(|ai_llm_id| AiLlmRef { ai_llm_id })
        .collect())
}

/// One bucket of a listed [`Repo`]. The embedded `bucket` object, which may carry credentials,
/// is deliberately not read.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoBucket {
    pub bucket_id: String,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub master: bool,
}

/// Usage figures of one repo (`GET /repo/stats`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoStats {
    pub repo_id: String,
    pub total_upload_bytes: u128,
    pub total_download_bytes: u128,
    /// Can be negative: more was deleted than written.
    pub total_size_change: i128,
}

/// Body of `POST /bucket`. `Debug` hides `key` and `secret`.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketWrite {
    pub name: String,
    /// The bucket's name at the cloud provider.
    pub bucket: String,
    pub storage_type: StorageType,
    pub key: String,
    pub secret: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub workspace_id: String,
}

impl fmt::Debug for BucketWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketWrite")
            .field("name", &self.name)
            .field("bucket", &self.bucket)
            .field("storage_type", &self.storage_type)
            .field("key", &"***")
            .field("secret", &"***")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("workspace_id", &self.workspace_id)
            .finish()
    }
}

/// A bucket as `GET /bucket` lists it. Credentials are never returned, and never read.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub bucket: Option<String>,
    pub storage_type: StorageType,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Seen: `ACTIVE`, `ONLINE`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// Usage figures of one bucket (`GET /bucket/stats`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketStats {
    pub bucket_id: String,
    pub total_count: u128,
    pub total_upload_bytes: u128,
    pub total_download_bytes: u128,
    pub total_size_change: i128,
}

/// What a repository access key is called and may do: the body of
/// `PUT /repo/{repoId}/apikey/{keyId}`, and of `POST /repo/{repoId}/apikey` with the `repoId`
/// added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoKeyWrite {
    pub name: String,
    pub access_type: AccessType,
}

/// The answer of `POST /repo/{repoId}/apikey`: the only time the API shows the plain secret.
/// `Debug` prints the secret as `***`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CreatedRepoKey {
    /// The key's id, which names it in `PUT` and `DELETE`.
    pub id: String,
    /// The access key id a workload signs with.
    pub key: String,
    pub secret: KeySecret,
}

/// A repository access key as `GET /repo/{repoId}/apikey` lists it. The encrypted `secret` the
/// API lists too is deliberately not read: nobody can use it, and it has no business in a log.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoKey {
    pub id: String,
    pub name: String,
    pub access_type: AccessType,
    /// The access key id.
    pub key: String,
    /// RFC 3339, as sent.
    #[serde(default)]
    pub created_at: Option<String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

// ---- response envelopes (crate-private) ----

#[derive(Deserialize)]
pub(crate) struct ReposBody {
    // Required: a success body without its list must not read as "nothing exists".
    #[serde(deserialize_with = "null_as_empty")]
    pub repos: Vec<Repo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RepoIdBody {
    pub repo_id: String,
}

#[derive(Deserialize)]
pub(crate) struct BucketsBody {
    // Required: a success body without its list must not read as "nothing exists".
    #[serde(deserialize_with = "null_as_empty")]
    pub buckets: Vec<Bucket>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BucketIdBody {
    pub bucket_id: String,
}

/// Body of `POST /repo/{repoId}/apikey`: the write plus the repo it is for, which the contract
/// wants in the body as well as in the path.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RepoKeyCreate<'a> {
    pub repo_id: &'a str,
    #[serde(flatten)]
    pub key: &'a RepoKeyWrite,
}

#[derive(Deserialize)]
pub(crate) struct RepoKeysBody {
    // Required: a success body without its list must not read as "no keys".
    #[serde(deserialize_with = "null_as_empty")]
    pub keys: Vec<RepoKey>,
}

/// Body of `POST /user/refresh` and `POST /user/logout`.
#[derive(Serialize)]
pub(crate) struct RefreshRequest<'a> {
    pub refresh_token: &'a str,
}

/// Body of `POST /user/login`. Deliberately not `Debug`: it holds a password.
#[derive(Serialize)]
pub(crate) struct LoginRequest<'a> {
    pub email: &'a str,
    pub password: &'a str,
}

/// What a login or a refresh answers: the session's new tokens. Read into
/// [`crate::SessionTokens`] at once; not `Debug`, since it holds them in the clear.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionBody {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// A number in the client's types; seconds or milliseconds since the epoch are both
    /// read, and so is an RFC 3339 time.
    #[serde(default)]
    pub expires_at: Option<Value>,
    #[serde(default)]
    pub user: Option<LoginUser>,
}

/// Who logged in, as a login answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginUser {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
}

/// Any success body whose content the caller does not need.
#[derive(Deserialize)]
pub(crate) struct Ignored {}

#[derive(Deserialize)]
pub(crate) struct StatsBody {
    // Required: a success body without its list must not read as "nothing exists".
    #[serde(deserialize_with = "null_as_empty")]
    pub stats: Vec<WireStats>,
}

/// One entry of a stats list, before its decimal strings are checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireStats {
    #[serde(default)]
    pub repo_id: Option<String>,
    #[serde(default)]
    pub bucket_id: Option<String>,
    #[serde(default)]
    pub total_count: Option<Value>,
    #[serde(default)]
    pub total_upload_bytes: Option<Value>,
    #[serde(default)]
    pub total_download_bytes: Option<Value>,
    #[serde(default)]
    pub total_size_change: Option<Value>,
}

/// The figures repos and buckets both report, checked.
struct Totals {
    upload_bytes: u128,
    download_bytes: u128,
    size_change: i128,
}

impl WireStats {
    fn totals(&mut self, endpoint: &'static str) -> Result<Totals, ApiError> {
        Ok(Totals {
            upload_bytes: unsigned(endpoint, "totalUploadBytes", self.total_upload_bytes.take())?,
            download_bytes: unsigned(
                endpoint,
                "totalDownloadBytes",
                self.total_download_bytes.take(),
            )?,
            size_change: signed(endpoint, "totalSizeChange", self.total_size_change.take())?,
        })
    }

    pub(crate) fn into_repo_stats(mut self, endpoint: &'static str) -> Result<RepoStats, ApiError> {
        let repo_id = self
            .repo_id
            .take()
            .ok_or_else(|| ApiError::decode(endpoint, "stats entry without repoId"))?;
        let totals = self.totals(endpoint)?;
        Ok(RepoStats {
            repo_id,
            total_upload_bytes: totals.upload_bytes,
            total_download_bytes: totals.download_bytes,
            total_size_change: totals.size_change,
        })
    }

    pub(crate) fn into_bucket_stats(
        mut self,
        endpoint: &'static str,
    ) -> Result<BucketStats, ApiError> {
        let bucket_id = self
            .bucket_id
            .take()
            .ok_or_else(|| ApiError::decode(endpoint, "stats entry without bucketId"))?;
        let total_count = unsigned(endpoint, "totalCount", self.total_count.take())?;
        let totals = self.totals(endpoint)?;
        Ok(BucketStats {
            bucket_id,
            total_count,
            total_upload_bytes: totals.upload_bytes,
            total_download_bytes: totals.download_bytes,
            total_size_change: totals.size_change,
        })
    }
}

/// The text of a big integer the API sends as a decimal string (a plain JSON integer is accepted
/// too). A missing or `null` figure reads as zero: a repo nobody used yet.
fn decimal_text(
    endpoint: &'static str,
    field: &str,
    value: Option<Value>,
) -> Result<String, ApiError> {
    match value {
        None | Some(Value::Null) => Ok("0".to_owned()),
        Some(Value::String(text)) => Ok(text.trim().to_owned()),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => Ok(number.to_string()),
        // The value itself is never quoted: the server may be anyone's.
        Some(_) => Err(ApiError::decode(
            endpoint,
            format!("{field} is not a decimal integer"),
        )),
    }
}

fn unsigned(endpoint: &'static str, field: &str, value: Option<Value>) -> Result<u128, ApiError> {
    let text = decimal_text(endpoint, field, value)?;
    text.parse::<u128>().map_err(|source| {
        ApiError::decode_with(
            endpoint,
            format!("{field} is not a non-negative decimal integer"),
            source,
        )
    })
}

fn signed(endpoint: &'static str, field: &str, value: Option<Value>) -> Result<i128, ApiError> {
    let text = decimal_text(endpoint, field, value)?;
    text.parse::<i128>().map_err(|source| {
        ApiError::decode_with(
            endpoint,
            format!("{field} is not a decimal integer"),
            source,
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A repository as the API lists it, one bucket and an access key (whose fields are not
    /// kept), holds few enough bytes decoded that the client's default listing (150,000
    /// repositories, 64 MiB decoded) fits a workspace of that many.
    #[test]
    fn a_listed_repository_holds_a_few_hundred_bytes_decoded() {
        use crate::listing::Held;
        let repo: Repo = serde_json::from_value(json!({
            "id": "f4f5b8de-e04f-4d39-90f2-e19b7478d21d",
            "name": "repo-00010",
            "storageType": "S3",
            "mode": "BACKUP",
            "workspaceId": "0d8c5a0e-54b1-4a4c-9d0b-3f1c2a7e6b11",
            "createdAt": "2026-12-08T01:51:55.123Z",
            "disabled": false,
            "buckets": [{"bucketId": "991ba2aa-e45d-49a3-af6b-b5d8da3e08ba", "folder": "media", "master": false}],
            "aiLlms": [],
            "apiKeys": [{"id": "k1", "name": "ci", "accessType": "READ", "key": "AKIA", "secret": {"sealed": "x"}, "createdAt": "2026-12-08T01:51:55Z"}],
            "aiApiKeys": []
        }))
        .unwrap();
        let held = repo.held_bytes();
        println!("one listed repository holds {held} bytes decoded");
        assert!(held * 150_000 <= 64 << 20, "{held} bytes");
    }

    fn stats(value: Value) -> Result<RepoStats, ApiError> {
        serde_json::from_value::<WireStats>(value)
            .unwrap()
            .into_repo_stats("repo_stats")
    }

    #[test]
    fn stats_parse_big_and_negative_figures() {
        let parsed = stats(json!({
            "repoId": "r1",
            "totalUploadBytes": "340282366920938463463374607431768211455",
            "totalDownloadBytes": 12,
            "totalSizeChange": "-4096"
        }))
        .unwrap();
        assert_eq!(parsed.repo_id, "r1");
        assert_eq!(parsed.total_upload_bytes, u128::MAX);
        assert_eq!(parsed.total_download_bytes, 12);
        assert_eq!(parsed.total_size_change, -4096);
    }

    #[test]
    fn stats_garbage_is_a_decode_error_naming_the_field() {
        let err = stats(json!({"repoId": "r1", "totalUploadBytes": "12abc"})).unwrap_err();
        assert_eq!(err.metric_label(), "decode");
        assert!(err.to_string().contains("totalUploadBytes"), "{err}");

        let err = stats(json!({"repoId": "r1", "totalDownloadBytes": "-5"})).unwrap_err();
        assert!(err.to_string().contains("totalDownloadBytes"), "{err}");

        let err = stats(json!({"repoId": "r1", "totalSizeChange": 1.5})).unwrap_err();
        assert!(err.to_string().contains("totalSizeChange"), "{err}");

        let err = stats(json!({"totalSizeChange": "1"})).unwrap_err();
        assert!(err.to_string().contains("repoId"), "{err}");
    }

    #[test]
    fn unknown_enum_values_are_kept_and_round_trip() {
        let mode: RepoMode = serde_json::from_value(json!("ARCHIVE")).unwrap();
        assert_eq!(mode, RepoMode::Other("ARCHIVE".to_owned()));
        assert_eq!(serde_json::to_value(&mode).unwrap(), json!("ARCHIVE"));
        let storage: StorageType = serde_json::from_value(json!("AZURE")).unwrap();
        assert_eq!(storage, StorageType::Azure);
        assert_eq!("BLOB".parse::<StorageType>().unwrap(), StorageType::Blob);
    }

    #[test]
    fn repo_write_uses_the_wire_names() {
        let write = RepoWrite {
            name: "media".to_owned(),
            storage_type: StorageType::S3,
            mode: RepoMode::Mirror,
            workspace_id: Some("ws-1".to_owned()),
            repo_buckets: vec![RepoBucketWrite {
                bucket_id: "b1".to_owned(),
                folder: Some("media".to_owned()),
                master: true,
            }],
            repo_ai_llms: vec![],
        };
        assert_eq!(
            serde_json::to_value(&write).unwrap(),
            json!({
                "name": "media", "storageType": "S3", "mode": "MIRROR", "workspaceId": "ws-1",
                "repoBuckets": [{"bucketId": "b1", "folder": "media", "master": true}]
            })
        );
    }

    #[test]
    fn repo_read_ignores_extras_and_never_keeps_bucket_credentials() {
        let repo: Repo = serde_json::from_value(json!({
            "id": "r1", "name": "media", "storageType": "GCS", "mode": "BACKUP",
            "workspaceId": "ws-1", "createdAt": "2026-11-26T19:00:00Z",
            "apiKeys": [], "walletAddress": null,
            "buckets": [{"bucketId": "b1", "folder": null, "master": false,
                         "bucket": {"id": "b1", "key": "AKIAEXAMPLEKEY", "secret": "enc:c2VjcmV0"}}]
        }))
        .unwrap();
        assert_eq!(repo.buckets[0].bucket_id, "b1");
        assert_eq!(repo.disabled, None);
        let printed = format!("{repo:?}");
        assert!(!printed.contains("AKIAEXAMPLEKEY") && !printed.contains("c2VjcmV0"));
    }

    #[test]
    fn a_listed_repo_keeps_its_ai_models_by_id_and_nothing_else_of_them() {
        let repo: Repo = serde_json::from_value(json!({
            "id": "r1", "name": "media", "storageType": "S3", "mode": "MIRROR",
            "aiLlms": [
                {"aiLlmId": "llm-1", "id": "link-9", "aiLlm": {"apiKey": "sk-EXAMPLESECRET"}},
                {"id": "llm-2", "name": "summaries", "apiKey": "sk-OTHERSECRET"},
                "llm-3",
                {"name": "no id"},
                7
            ]
        }))
        .unwrap();
        let ids: Vec<_> = repo.ai_llms.iter().map(|a| a.ai_llm_id.as_str()).collect();
        assert_eq!(ids, ["llm-1", "llm-2", "llm-3"]);
        let printed = format!("{repo:?}");
        assert!(!printed.contains("EXAMPLESECRET") && !printed.contains("OTHERSECRET"));
    }

    #[test]
    fn a_listed_repo_without_ai_models_reads_as_having_none() {
        for ai_llms in [json!(null), json!([])] {
            let repo: Repo = serde_json::from_value(json!({
                "id": "r1", "name": "media", "storageType": "S3", "mode": "MIRROR",
                "aiLlms": ai_llms
            }))
            .unwrap();
            assert!(repo.ai_llms.is_empty());
        }
        let repo: Repo = serde_json::from_value(json!({
            "id": "r1", "name": "media", "storageType": "S3", "mode": "MIRROR"
        }))
        .unwrap();
        assert!(repo.ai_llms.is_empty());
    }

    #[test]
    fn a_list_answer_without_its_list_is_refused() {
        assert!(serde_json::from_str::<ReposBody>(r#"{"success": true}"#).is_err());
        let empty: ReposBody = serde_json::from_str(r#"{"success": true, "repos": null}"#).unwrap();
        assert!(empty.repos.is_empty());
    }

    #[test]
    fn a_key_create_sends_the_repo_id_and_the_wire_names() {
        let write = RepoKeyWrite {
            name: "app".to_owned(),
            access_type: AccessType::Write,
        };
        let body = RepoKeyCreate {
            repo_id: "r1",
            key: &write,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            json!({"repoId": "r1", "name": "app", "accessType": "WRITE"})
        );
        assert_eq!(
            serde_json::to_value(&write).unwrap(),
            json!({"name": "app", "accessType": "WRITE"})
        );
        assert_eq!("ADMIN".parse::<AccessType>().unwrap(), AccessType::Admin);
    }

    #[test]
    fn a_created_key_prints_without_its_secret() {
        let created: CreatedRepoKey = serde_json::from_value(json!({
            "success": true, "id": "k1", "key": "AKIAREPOKEY000000001",
            "secret": "plain-secret-0123456789"
        }))
        .unwrap();
        assert_eq!(created.secret.expose(), "plain-secret-0123456789");
        let printed = format!("{created:?}");
        assert!(!printed.contains("plain-secret"), "{printed}");
        assert_eq!(
            printed,
            r#"CreatedRepoKey { id: "k1", key: "AKIAREPOKEY000000001", secret: *** }"#
        );
    }

    #[test]
    fn a_listed_key_never_keeps_its_encrypted_secret() {
        let body: RepoKeysBody = serde_json::from_value(json!({
            "success": true,
            "keys": [{"id": "k1", "name": "app", "accessType": "READ", "key": "AKIAREPOKEY000000001",
                      "secret": {"key": "a1b2", "iv": "c3d4", "authTag": "e5f6", "message": "0718"},
                      "createdAt": "2026-11-26T19:00:00Z"}]
        }))
        .unwrap();
        assert_eq!(
            body.keys,
            [RepoKey {
                id: "k1".to_owned(),
                name: "app".to_owned(),
                access_type: AccessType::Read,
                key: "AKIAREPOKEY000000001".to_owned(),
                created_at: Some("2026-11-26T19:00:00Z".to_owned()),
            }]
        );
        let printed = format!("{:?}", body.keys);
        assert!(
            !printed.contains("a1b2") && !printed.contains("0718"),
            "{printed}"
        );
        assert!(serde_json::from_str::<RepoKeysBody>(r#"{"success": true}"#).is_err());
    }

    #[test]
    fn bucket_write_debug_hides_credentials() {
        let write = BucketWrite {
            name: "b".to_owned(),
            bucket: "b".to_owned(),
            storage_type: StorageType::S3,
            key: "AKIAEXAMPLEKEY".to_owned(),
            secret: "very-secret".to_owned(),
            region: None,
            endpoint: None,
            workspace_id: "ws".to_owned(),
        };
        let printed = format!("{write:?}");
        assert!(!printed.contains("AKIAEXAMPLEKEY") && !printed.contains("very-secret"));
    }
}

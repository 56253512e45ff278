//! The emulated organisations and their rules: validation, isolation, persistence. No HTTP here.
//!
//! Each accepted token is one organisation; nothing in one is visible from another. Repos and
//! buckets are kept by id in ordered maps, with a name index so a create stays O(1) in the
//! number of repos; a list is one scan of the organisation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Storage types a write may name (the reference's and the TypeScript client's, together).
pub const STORAGE_TYPES: &[&str] = &["S3", "GCS", "AZURE", "BLOB"];
/// Repo modes a write may name (the reference's and the TypeScript client's, together).
pub const MODES: &[&str] = &["MIRROR", "BACKUP", "NORMAL"];
/// What a repository access key may do.
pub const ACCESS_TYPES: &[&str] = &["READ", "WRITE", "ADMIN"];

/// The reference's words for a `DELETE /bucket/{id}` refused while a repository uses it.
pub const BUCKET_IN_USE_MESSAGE: &str = "Insufficient permissions or bucket in use";

/// A refused request: the HTTP status, the `error_code` (if the API sends one) and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: Option<&'static str>,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Some(code),
            message: message.into(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_REQUEST", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", message)
    }

    /// True for refusals of the request's content, which the real API sometimes answers as
    /// HTTP 200 with `"success": false`.
    pub fn is_validation(&self) -> bool {
        self.code.is_some() && (400..500).contains(&self.status) && self.status != 401
    }
}

/// Usage figures, kept as the decimal strings the API sends. They are not checked, so the
/// control API can make the emulator send garbage to a client under test.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub total_count: String,
    pub total_upload_bytes: String,
    pub total_download_bytes: String,
    pub total_size_change: String,
}

impl Default for Figures {
    fn default() -> Self {
        let zero = || "0".to_owned();
        Self {
            total_count: zero(),
            total_upload_bytes: zero(),
            total_download_bytes: zero(),
            total_size_change: zero(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoRecord {
    pub id: String,
    pub name: String,
    pub storage_type: String,
    pub mode: String,
    pub workspace_id: String,
    pub created_at: String,
    pub units: Vec<Unit>,
    #[serde(default)]
    pub ai_llms: Vec<Value>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub stats: Figures,
    /// Its access keys, oldest first. They go when the repo goes.
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
}

/// A repository access key. The plain secret is never kept: the API answers it once, to the
/// create, so the emulator keeps only its SHA-256, to check a secret later (the
/// `/_emulator/repos/{id}/keys/verify` route), and a sealed look-alike to list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub access_type: String,
    /// The access key id: 20 uppercase letters and digits, like an AWS one.
    pub key: String,
    /// The secret's SHA-256, lowercase hex.
    pub secret_sha256: String,
    /// What `GET /repo/{id}/apikey` shows of the secret.
    pub secret: SealedSecret,
    pub created_at: String,
}

impl KeyRecord {
    /// True when `secret` is this key's secret.
    pub fn accepts(&self, secret: &str) -> bool {
        sha256_hex(secret.as_bytes()) == self.secret_sha256
    }
}

/// A key just made: the only moment its plain secret exists.
pub struct NewKey {
    pub id: String,
    pub key: String,
    pub secret: String,
}

/// How long a key secret is, like an AWS secret access key.
pub const KEY_SECRET_LEN: usize = 40;

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// An access key id: 20 uppercase letters and digits.
fn new_access_key_id() -> String {
    random_text(20, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
}

/// A key secret: letters and digits only, so it travels in a query string unescaped.
fn new_key_secret() -> String {
    random_text(
        KEY_SECRET_LEN,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    )
}

/// One bucket of a repo (a "unit" in the API's error codes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    pub bucket_id: String,
    pub folder: Option<String>,
    pub master: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketRecord {
    pub id: String,
    pub name: String,
    pub bucket: String,
    pub storage_type: String,
    /// The access key, which the real API embeds in listed repos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What the API shows of the secret. The secret itself is never kept: the API never
    /// returns it, so the emulator has no use for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SealedSecret>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub workspace_id: String,
    pub status: String,
    pub created_at: String,
    #[serde(default)]
    pub stats: Figures,
}

/// A bucket secret as the API shows it: the `{key, iv, authTag, message}` of an AES-GCM
/// envelope. The emulator's are random hex of the real sizes, sealing nothing, and new at every
/// write of a secret, as a fresh IV would make them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecret {
    pub key: String,
    pub iv: String,
    pub auth_tag: String,
    pub message: String,
}

impl SealedSecret {
    fn new() -> Self {
        fn random_hex(bytes: usize) -> String {
            let mut rng = rand::rng();
            (0..bytes)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect()
        }
        Self {
            key: random_hex(32),
            iv: random_hex(12),
            auth_tag: random_hex(16),
            message: random_hex(32),
        }
    }
}

/// Body of `POST /repo`, `PUT /repo/{id}` and `POST /repo/validate`, read leniently so that
/// every check below can answer with the API's own error instead of a parse failure.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoWriteBody {
    pub name: Option<String>,
    pub storage_type: Option<String>,
    pub mode: Option<String>,
    pub workspace_id: Option<String>,
    pub repo_id: Option<String>,
    pub repo_buckets: Option<Vec<UnitBody>>,
    pub repo_ai_llms: Option<Vec<Value>>,
}

/// A RepoBucket of a write: `bucketId`, or an embedded `bucket` object with an `id`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitBody {
    pub bucket_id: Option<String>,
    pub folder: Option<String>,
    pub master: Option<bool>,
    pub bucket: Option<EmbeddedBucket>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EmbeddedBucket {
    pub id: Option<String>,
}

/// Body of `POST /bucket` and `PUT /bucket/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketWriteBody {
    pub name: Option<String>,
    pub bucket: Option<String>,
    pub storage_type: Option<String>,
    pub key: Option<String>,
    pub secret: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub workspace_id: Option<String>,
}

/// Body of `POST /repo/{id}/apikey` and `PUT /repo/{id}/apikey/{keyId}`, read leniently like
/// the others. The create's `repoId` is read and ignored: the path names the repo.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyWriteBody {
    pub name: Option<String>,
    pub access_type: Option<String>,
    pub repo_id: Option<String>,
}

/// A key write that passed every check.
struct ValidKey {
    name: String,
    access_type: String,
}

impl ValidKey {
    /// Both fields are required, on a create and on an update alike.
    fn check(body: KeyWriteBody) -> Result<Self, Failure> {
        let name = body
            .name
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| Failure::invalid_request("name is required"))?;
        let access_type = required_enum(
            body.access_type,
            "accessType",
            ACCESS_TYPES,
            "INVALID_REQUEST",
        )?;
        Ok(Self { name, access_type })
    }
}

/// One organisation: what one token sees.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Org {
    pub repos: BTreeMap<String, RepoRecord>,
    pub buckets: BTreeMap<String, BucketRecord>,
    /// Repo name → id. Rebuilt on load, so not persisted.
    #[serde(skip)]
    names: HashMap<String, String>,
    /// Names of deleted repositories and buckets (the service's deletes are soft), and the
    /// workspaces calls named: see [`crate::rules`].
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub deleted_repo_names: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub deleted_bucket_names: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub workspaces: BTreeSet<String>,
}

/// A bucket write that passed every check, ready to store.
struct ValidBucket {
    name: String,
    bucket: String,
    storage_type: String,
    key: Option<String>,
    secret: Option<SealedSecret>,
    region: Option<String>,
    endpoint: Option<String>,
    workspace_id: Option<String>,
}

impl ValidBucket {
    /// The checks of a bucket write; `workspaceId` is required unless `updating`.
    fn check(body: BucketWriteBody, updating: bool) -> Result<Self, Failure> {
        let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        let required = |value: Option<String>, field: &str| {
            given(value).ok_or_else(|| Failure::invalid_request(format!("{field} is required")))
        };
        let name = required(body.name, "name")?;
        let bucket = required(body.bucket, "bucket")?;
        let workspace_id = if updating {
            given(body.workspace_id)
        } else {
            Some(required(body.workspace_id, "workspaceId")?)
        };
        let storage_type = required_enum(
            body.storage_type,
            "storageType",
            STORAGE_TYPES,
            "INVALID_STORAGE_TYPE",
        )?;
        Ok(Self {
            name,
            bucket,
            storage_type,
            key: given(body.key),
            secret: given(body.secret).map(|_| SealedSecret::new()),
            region: given(body.region),
            endpoint: given(body.endpoint),
            workspace_id,
        })
    }
}

/// A write that passed every check, ready to store.
struct ValidRepo {
    name: String,
    storage_type: String,
    mode: String,
    workspace_id: Option<String>,
    units: Vec<Unit>,
    ai_llms: Option<Vec<Value>>,
}

impl Org {
    fn rebuild_index(&mut self) {
        self.names = self
            .repos
            .values()
            .map(|repo| (repo.name.clone(), repo.id.clone()))
            .collect();
    }

    /// `GET /repo`: the repos matching both filters.
    pub fn list_repos<'a>(
        &'a self,
        workspace_id: Option<&'a str>,
        repo_id: Option<&'a str>,
    ) -> impl Iterator<Item = &'a RepoRecord> + 'a {
        let by_id: Box<dyn Iterator<Item = &RepoRecord>> = match repo_id {
            Some(id) => Box::new(self.repos.get(id).into_iter()),
            None => Box::new(self.repos.values()),
        };
        by_id.filter(move |repo| workspace_id.is_none_or(|ws| repo.workspace_id == ws))
    }

    /// `POST /repo`.
    pub fn create_repo(
        &mut self,
        body: RepoWriteBody,
        id: String,
        now: String,
    ) -> Result<String, Failure> {
        let valid = self.validate(body, None)?;
        let workspace_id = valid
            .workspace_id
            .ok_or_else(|| Failure::invalid_request("workspaceId is required"))?;
        self.names.insert(valid.name.clone(), id.clone());
        self.repos.insert(
            id.clone(),
            RepoRecord {
                id: id.clone(),
                name: valid.name,
                storage_type: valid.storage_type,
                mode: valid.mode,
                workspace_id,
                created_at: now,
                units: valid.units,
                ai_llms: valid.ai_llms.unwrap_or_default(),
                disabled: false,
                stats: Figures::default(),
                keys: Vec::new(),
            },
        );
        Ok(id)
    }

    /// `PUT /repo/{id}`: a full replacement, checked like a create but against the others.
    /// An absent `workspaceId` keeps the current one.
    pub fn update_repo(&mut self, id: &str, body: RepoWriteBody) -> Result<(), Failure> {
        if !self.repos.contains_key(id) {
            return Err(Failure::not_found(format!("repo {id} not found")));
        }
        let valid = self.validate(body, Some(id))?;
        let repo = self.repos.get_mut(id).expect("checked above");
        if repo.name != valid.name {
            self.names.remove(&repo.name);
            self.names.insert(valid.name.clone(), id.to_owned());
        }
        repo.name = valid.name;
        repo.storage_type = valid.storage_type;
        repo.mode = valid.mode;
        if let Some(workspace_id) = valid.workspace_id {
            repo.workspace_id = workspace_id;
        }
        repo.units = valid.units;
        repo.ai_llms = valid.ai_llms.unwrap_or_default();
        Ok(())
    }

    /// `DELETE /repo/{id}`. The API's 404 here carries a `message` and no `error_code`.
    pub fn delete_repo(&mut self, id: &str) -> Result<(), Failure> {
        let repo = self.repos.remove(id).ok_or_else(|| Failure {
            status: 404,
            code: None,
            message: format!("Repository {id} not found"),
        })?;
        self.names.remove(&repo.name);
        Ok(())
    }

    /// `POST /repo/validate` and `POST /repo/{id}/validate`: the unit rules of a write, without
    /// storing anything. `exclude` is the repo the write would replace, whose own buckets do not
    /// clash with it.
    pub fn validate_units_only(
        &self,
        body: RepoWriteBody,
        exclude: Option<&str>,
    ) -> Result<(), Failure> {
        let mode = required_enum(body.mode, "mode", MODES, "INVALID_MODE")?;
        self.check_units(&mode, body.repo_buckets.unwrap_or_default(), exclude)
            .map(|_| ())
    }

    /// Refuses an id that names no repo of this organisation.
    pub fn repo_exists(&self, id: &str) -> Result<(), Failure> {
        if self.repos.contains_key(id) {
            Ok(())
        } else {
            Err(Failure::not_found(format!("repo {id} not found")))
        }
    }

    /// Every rule of a repo write, `exclude` being the repo that is replaced (if any).
    fn validate(&self, body: RepoWriteBody, exclude: Option<&str>) -> Result<ValidRepo, Failure> {
        let name = body
            .name
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| Failure::invalid_request("name is required"))?;
        let workspace_id = body.workspace_id.filter(|ws| !ws.trim().is_empty());
        if exclude.is_none() && workspace_id.is_none() {
            return Err(Failure::invalid_request("workspaceId is required"));
        }
        let storage_type = required_enum(
            body.storage_type,
            "storageType",
            STORAGE_TYPES,
            "INVALID_STORAGE_TYPE",
        )?;
        let mode = required_enum(body.mode, "mode", MODES, "INVALID_MODE")?;
        if let Some(holder) = self.names.get(&name)
            && Some(holder.as_str()) != exclude
        {
            return Err(Failure::new(
                409,
                "NAME_ALREADY_USED",
                format!("a repository named {name:?} already exists"),
            ));
        }
        let units = self.check_units(&mode, body.repo_buckets.unwrap_or_default(), exclude)?;
        Ok(ValidRepo {
            name,
            storage_type,
            mode,
            workspace_id,
            units,
            ai_llms: body.repo_ai_llms,
        })
    }

    fn check_units(
        &self,
        mode: &str,
        bodies: Vec<UnitBody>,
        exclude: Option<&str>,
    ) -> Result<Vec<Unit>, Failure> {
        let mut seen = HashSet::new();
        let mut units = Vec::with_capacity(bodies.len());
        for body in bodies {
            let bucket_id = body
                .bucket_id
                .or_else(|| body.bucket.and_then(|bucket| bucket.id))
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    Failure::invalid_request("every repoBuckets entry needs a bucketId")
                })?;
            if !self.buckets.contains_key(&bucket_id) {
                return Err(Failure::not_found(format!("bucket {bucket_id} not found")));
            }
            if !seen.insert(bucket_id.clone()) {
                return Err(Failure::invalid_request(format!(
                    "bucket {bucket_id} is listed twice"
                )));
            }
            units.push(Unit {
                bucket_id,
                folder: body.folder,
                master: body.master.unwrap_or(false),
            });
        }
        if mode == "MIRROR" {
            match units.iter().filter(|unit| unit.master).count() {
                0 => {
                    return Err(Failure::new(
                        400,
                        "MIRROR_MASTER_UNIT_MISSING",
                        "a MIRROR repository needs one master bucket",
                    ));
                }
                1 => {}
                n => {
                    return Err(Failure::new(
                        400,
                        "MIRROR_MASTER_UNIT_COUNT_INVALID",
                        format!("a MIRROR repository needs exactly one master bucket, got {n}"),
                    ));
                }
            }
            for unit in &units {
                let other = self.repos.values().find(|repo| {
                    Some(repo.id.as_str()) != exclude
                        && repo.mode == "MIRROR"
                        && repo.units.iter().any(|u| u.bucket_id == unit.bucket_id)
                });
                if let Some(other) = other {
                    return Err(Failure::new(
                        409,
                        "MIRROR_UNIT_ALREADY_IN_OTHER_REPO",
                        format!(
                            "bucket {} already serves the MIRROR repository {}",
                            unit.bucket_id, other.id
                        ),
                    ));
                }
            }
        }
        let current = exclude.and_then(|id| self.repos.get(id));
        crate::rules::normal_units(mode, &units, current, self.repos.values())?;
        Ok(units)
    }

    fn repo_mut(&mut self, id: &str) -> Result<&mut RepoRecord, Failure> {
        self.repos
            .get_mut(id)
            .ok_or_else(|| Failure::not_found(format!("repo {id} not found")))
    }

    /// `GET /repo/{id}/apikey`.
    pub fn repo_keys(&self, repo_id: &str) -> Result<&[KeyRecord], Failure> {
        self.repos
            .get(repo_id)
            .map(|repo| repo.keys.as_slice())
            .ok_or_else(|| Failure::not_found(format!("repo {repo_id} not found")))
    }

    /// `POST /repo/{id}/apikey`: a new key under `id`, with a fresh access key id and secret.
    pub fn create_key(
        &mut self,
        repo_id: &str,
        body: KeyWriteBody,
        id: String,
        now: String,
    ) -> Result<NewKey, Failure> {
        let repo = self.repo_mut(repo_id)?;
        let valid = ValidKey::check(body)?;
        let created = NewKey {
            id,
            key: new_access_key_id(),
            secret: new_key_secret(),
        };
        repo.keys.push(KeyRecord {
            id: created.id.clone(),
            name: valid.name,
            access_type: valid.access_type,
            key: created.key.clone(),
            secret_sha256: sha256_hex(created.secret.as_bytes()),
            secret: SealedSecret::new(),
            created_at: now,
        });
        Ok(created)
    }

    /// `PUT /repo/{id}/apikey/{keyId}`: a new name and access type; the key and secret stay.
    pub fn update_key(
        &mut self,
        repo_id: &str,
        key_id: &str,
        body: KeyWriteBody,
    ) -> Result<(), Failure> {
        let key = self
            .repo_mut(repo_id)?
            .keys
            .iter_mut()
            .find(|key| key.id == key_id)
            .ok_or_else(|| Failure::not_found(format!("key {key_id} not found")))?;
        let valid = ValidKey::check(body)?;
        key.name = valid.name;
        key.access_type = valid.access_type;
        Ok(())
    }

    /// `DELETE /repo/{id}/apikey/{keyId}`.
    pub fn delete_key(&mut self, repo_id: &str, key_id: &str) -> Result<(), Failure> {
        let keys = &mut self.repo_mut(repo_id)?.keys;
        let before = keys.len();
        keys.retain(|key| key.id != key_id);
        if keys.len() == before {
            return Err(Failure::not_found(format!("key {key_id} not found")));
        }
        Ok(())
    }

    /// `GET /repo/stats`: the figures of `ids` (all repos when `None`); unknown ids are skipped.
    pub fn repo_stats<'a>(&'a self, ids: Option<&'a [String]>) -> Vec<&'a RepoRecord> {
        match ids {
            Some(ids) => ids.iter().filter_map(|id| self.repos.get(id)).collect(),
            None => self.repos.values().collect(),
        }
    }

    pub fn list_buckets<'a>(
        &'a self,
        workspace_id: Option<&'a str>,
    ) -> impl Iterator<Item = &'a BucketRecord> + 'a {
        self.buckets
            .values()
            .filter(move |bucket| workspace_id.is_none_or(|ws| bucket.workspace_id == ws))
    }

    /// `POST /bucket`, with no quota.
    pub fn create_bucket(
        &mut self,
        body: BucketWriteBody,
        id: String,
        now: String,
    ) -> Result<String, Failure> {
        self.create_bucket_within(body, id, now, None)
    }

    /// `POST /bucket` for an organisation that may hold at most `quota` buckets. Over it, the
    /// reference's bucket quota refusal: 429 with no error code (and no `Retry-After`: no
    /// wait lifts it). Its wording is not published: the message is the emulator's.
    pub fn create_bucket_within(
        &mut self,
        body: BucketWriteBody,
        id: String,
        now: String,
        quota: Option<usize>,
    ) -> Result<String, Failure> {
        let valid = ValidBucket::check(body, false)?;
        self.bucket_name_free(&valid.name, None)?;
        if let Some(quota) = quota
            && self.buckets.len() >= quota
        {
            return Err(Failure {
                status: 429,
                code: None,
                message: format!("Bucket quota exceeded: the organisation may hold {quota}"),
            });
        }
        self.buckets.insert(
            id.clone(),
            BucketRecord {
                id: id.clone(),
                name: valid.name,
                bucket: valid.bucket,
                storage_type: valid.storage_type,
                key: valid.key,
                secret: valid.secret,
                region: valid.region,
                endpoint: valid.endpoint,
                workspace_id: valid.workspace_id.expect("required on create"),
                status: "ACTIVE".to_owned(),
                created_at: now,
                stats: Figures::default(),
            },
        );
        Ok(id)
    }

    /// `PUT /bucket/{id}`: a full replacement, checked like a create. The contract is silent on
    /// what an update leaves out; like a real server behind a form that never shows the stored
    /// credentials, an absent `workspaceId`, `key` or `secret` keeps the current one.
    pub fn update_bucket(
        &mut self,
        id: &str,
        body: BucketWriteBody,
    ) -> Result<&BucketRecord, Failure> {
        if !self.buckets.contains_key(id) {
            return Err(Failure::not_found(format!("bucket {id} not found")));
        }
        let valid = ValidBucket::check(body, true)?;
        self.bucket_name_free(&valid.name, Some(id))?;
        let record = self.buckets.get_mut(id).expect("checked above");
        record.name = valid.name;
        record.bucket = valid.bucket;
        record.storage_type = valid.storage_type;
        record.region = valid.region;
        record.endpoint = valid.endpoint;
        if let Some(workspace_id) = valid.workspace_id {
            record.workspace_id = workspace_id;
        }
        if valid.key.is_some() {
            record.key = valid.key;
        }
        if valid.secret.is_some() {
            record.secret = valid.secret;
        }
        Ok(record)
    }

    /// Refuses a bucket name another bucket of the organisation (any workspace) has, `exclude`
    /// being the bucket an update replaces. The reference says names are unique in the
    /// organisation but publishes no code for a clash: repositories' `NAME_ALREADY_USED`, and
    /// their status, are a guess.
    fn bucket_name_free(&self, name: &str, exclude: Option<&str>) -> Result<(), Failure> {
        match self
            .buckets
            .values()
            .find(|b| b.name == name && Some(b.id.as_str()) != exclude)
        {
            Some(holder) => Err(Failure::new(
                409,
                "NAME_ALREADY_USED",
                format!(
                    "a bucket named {name:?} already exists (workspace {})",
                    holder.workspace_id
                ),
            )),
            None => Ok(()),
        }
    }

    /// `GET /bucket/{id}/status` and the like: one bucket, or the API's `NOT_FOUND`.
    pub fn bucket(&self, id: &str) -> Result<&BucketRecord, Failure> {
        self.buckets
            .get(id)
            .ok_or_else(|| Failure::not_found(format!("bucket {id} not found")))
    }

    /// `GET /bucket/available`: the buckets (of `workspace_id`, if given) that no repo uses.
    pub fn available_buckets<'a>(
        &'a self,
        workspace_id: Option<&'a str>,
    ) -> impl Iterator<Item = &'a BucketRecord> + 'a {
        let used: HashSet<&str> = self
            .repos
            .values()
            .flat_map(|repo| repo.units.iter().map(|unit| unit.bucket_id.as_str()))
            .collect();
        self.list_buckets(workspace_id)
            .filter(move |bucket| !used.contains(bucket.id.as_str()))
    }

    /// `DELETE /bucket/{id}`: refused while a repo still uses the bucket, as the reference
    /// says the service does: HTTP 403, a message, and no `error_code` (the same answer as a
    /// token that may not delete it).
    pub fn delete_bucket(&mut self, id: &str) -> Result<(), Failure> {
        if !self.buckets.contains_key(id) {
            return Err(Failure {
                status: 404,
                code: None,
                message: format!("Bucket {id} not found"),
            });
        }
        if self
            .repos
            .values()
            .any(|repo| repo.units.iter().any(|unit| unit.bucket_id == id))
        {
            return Err(Failure {
                status: 403,
                code: None,
                message: BUCKET_IN_USE_MESSAGE.to_owned(),
            });
        }
        self.buckets.remove(id);
        Ok(())
    }

    pub fn bucket_stats<'a>(&'a self, ids: Option<&'a [String]>) -> Vec<&'a BucketRecord> {
        match ids {
            Some(ids) => ids.iter().filter_map(|id| self.buckets.get(id)).collect(),
            None => self.buckets.values().collect(),
        }
    }
}

fn required_enum(
    value: Option<String>,
    field: &str,
    allowed: &[&str],
    code: &'static str,
) -> Result<String, Failure> {
    match value {
        Some(value) if allowed.contains(&value.as_str()) => Ok(value),
        Some(value) => Err(Failure::new(
            400,
            code,
            format!("{field} {value:?} is not one of {}", allowed.join(", ")),
        )),
        None => Err(Failure::invalid_request(format!("{field} is required"))),
    }
}

/// Every organisation, keyed by its token.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Store {
    pub orgs: BTreeMap<String, Org>,
}

impl Store {
    /// Reads a state file; a missing file is an empty store.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", path.display()));
            }
        };
        let mut store: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an emulator state file", path.display()))?;
        store.orgs.values_mut().for_each(Org::rebuild_index);
        Ok(store)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the store is plain data")
    }

    /// Makes sure each token has an organisation.
    pub fn ensure_orgs<'a>(&mut self, tokens: impl IntoIterator<Item = &'a String>) {
        for token in tokens {
            self.orgs.entry(token.clone()).or_default();
        }
    }

    pub fn org(&self, token: &str) -> Option<&Org> {
        self.orgs.get(token)
    }

    pub fn org_mut(&mut self, token: &str) -> Option<&mut Org> {
        self.orgs.get_mut(token)
    }

    /// A repo by id in whichever organisation holds it (for the control API).
    pub fn repo_anywhere(&mut self, id: &str) -> Option<&mut RepoRecord> {
        self.orgs.values_mut().find_map(|org| org.repos.get_mut(id))
    }

    /// Renames a repo found with [`Self::repo_anywhere`], keeping the name index right.
    pub fn rename_anywhere(&mut self, id: &str, name: String) -> bool {
        for org in self.orgs.values_mut() {
            if let Some(repo) = org.repos.get_mut(id) {
                org.names.remove(&repo.name);
                org.names.insert(name.clone(), id.to_owned());
                repo.name = name;
                return true;
            }
        }
        false
    }

    /// The keys of a repo in whichever organisation holds it (for the control API).
    pub fn repo_keys_anywhere(&self, repo_id: &str) -> Option<&[KeyRecord]> {
        self.orgs
            .values()
            .find_map(|org| org.repos.get(repo_id))
            .map(|repo| repo.keys.as_slice())
    }

    /// True when repo `repo_id` has a key with access key id `key` whose secret is `secret`.
    pub fn key_is_live(&self, repo_id: &str, key: &str, secret: &str) -> bool {
        self.repo_keys_anywhere(repo_id)
            .into_iter()
            .flatten()
            .any(|record| record.key == key && record.accepts(secret))
    }

    pub fn bucket_anywhere(&mut self, id: &str) -> Option<&mut BucketRecord> {
        self.orgs
            .values_mut()
            .find_map(|org| org.buckets.get_mut(id))
    }
}

/// Replaces `path` with `bytes` atomically: a reader sees the old file or the new one, never a
/// torn one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = std::path::PathBuf::from(temp);
    let mut file =
        std::fs::File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The SHA-256 of `bytes`, as lowercase hex: what the emulator keeps of a key's secret.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> RepoWriteBody {
        serde_json::from_value(value).unwrap()
    }

    fn org_with_buckets(ids: &[&str]) -> Org {
        let mut org = Org::default();
        for id in ids {
            let bucket = serde_json::from_value(json!({
                "name": id, "bucket": id, "storageType": "S3", "workspaceId": "ws"
            }))
            .unwrap();
            org.create_bucket(bucket, (*id).to_owned(), "now".to_owned())
                .unwrap();
        }
        org
    }

    fn mirror(name: &str, units: Value) -> RepoWriteBody {
        body(
            json!({"name": name, "storageType": "S3", "mode": "MIRROR", "workspaceId": "ws",
                    "repoBuckets": units}),
        )
    }

    fn code(result: Result<impl std::fmt::Debug, Failure>) -> &'static str {
        result.unwrap_err().code.unwrap()
    }

    #[test]
    fn mirror_rules() {
        let mut org = org_with_buckets(&["b1", "b2", "b3"]);
        let none = mirror("a", json!([{"bucketId": "b1"}]));
        assert_eq!(
            code(org.create_repo(none, "r0".into(), "t".into())),
            "MIRROR_MASTER_UNIT_MISSING"
        );
        let two = mirror(
            "a",
            json!([{"bucketId": "b1", "master": true}, {"bucketId": "b2", "master": true}]),
        );
        assert_eq!(
            code(org.create_repo(two, "r0".into(), "t".into())),
            "MIRROR_MASTER_UNIT_COUNT_INVALID"
        );
        let ok = mirror(
            "a",
            json!([{"bucketId": "b1", "master": true}, {"bucket": {"id": "b2"}}]),
        );
        org.create_repo(ok, "r1".into(), "t".into()).unwrap();
        let taken = mirror(
            "b",
            json!([{"bucketId": "b3", "master": true}, {"bucketId": "b2"}]),
        );
        assert_eq!(
            code(org.create_repo(taken, "r2".into(), "t".into())),
            "MIRROR_UNIT_ALREADY_IN_OTHER_REPO"
        );
        // Replacing a repo does not clash with itself.
        let same = mirror("a", json!([{"bucketId": "b2", "master": true}]));
        org.update_repo("r1", same).unwrap();
        assert_eq!(org.repos["r1"].units.len(), 1);
    }

    #[test]
    fn names_are_unique_per_org_and_freed_by_delete_and_rename() {
        let mut org = org_with_buckets(&[]);
        let normal = |name: &str| {
            body(json!({"name": name, "storageType": "GCS", "mode": "NORMAL", "workspaceId": "ws"}))
        };
        org.create_repo(normal("a"), "r1".into(), "t".into())
            .unwrap();
        let clash = org
            .create_repo(normal("a"), "r2".into(), "t".into())
            .unwrap_err();
        assert_eq!((clash.status, clash.code), (409, Some("NAME_ALREADY_USED")));
        org.update_repo("r1", normal("b")).unwrap();
        org.create_repo(normal("a"), "r2".into(), "t".into())
            .unwrap();
        org.delete_repo("r1").unwrap();
        org.create_repo(normal("b"), "r3".into(), "t".into())
            .unwrap();
        assert_eq!(org.delete_repo("r1").unwrap_err().status, 404);
    }

    #[test]
    fn field_checks() {
        let mut org = org_with_buckets(&[]);
        let mut try_create = |value: Value| org.create_repo(body(value), "r".into(), "t".into());
        assert_eq!(
            code(try_create(
                json!({"storageType": "S3", "mode": "NORMAL", "workspaceId": "w"})
            )),
            "INVALID_REQUEST"
        );
        assert_eq!(
            code(try_create(
                json!({"name": "a", "storageType": "S3", "mode": "NORMAL"})
            )),
            "INVALID_REQUEST"
        );
        assert_eq!(
            code(try_create(
                json!({"name": "a", "storageType": "FTP", "mode": "NORMAL", "workspaceId": "w"})
            )),
            "INVALID_STORAGE_TYPE"
        );
        assert_eq!(
            code(try_create(
                json!({"name": "a", "storageType": "S3", "mode": "LOOSE", "workspaceId": "w"})
            )),
            "INVALID_MODE"
        );
        assert_eq!(
            code(try_create(
                json!({"name": "a", "storageType": "S3", "mode": "NORMAL", "workspaceId": "w", "repoBuckets": [{"bucketId": "nope"}]})
            )),
            "NOT_FOUND"
        );
    }

    #[test]
    fn over_the_bucket_quota_a_register_is_a_bare_429_until_one_goes() {
        let mut org = org_with_buckets(&["b1"]);
        let bucket = |name: &str| -> BucketWriteBody {
            serde_json::from_value(json!({
                "name": name, "bucket": name, "storageType": "S3", "workspaceId": "other"
            }))
            .unwrap()
        };
        let refused = org
            .create_bucket_within(bucket("b2"), "b2".into(), "t".into(), Some(1))
            .unwrap_err();
        assert_eq!((refused.status, refused.code), (429, None));
        assert!(!refused.is_validation(), "never answered as 200");
        org.delete_bucket("b1").unwrap();
        org.create_bucket_within(bucket("b2"), "b2".into(), "t".into(), Some(1))
            .unwrap();
    }

    #[test]
    fn bucket_names_are_unique_per_org_across_workspaces() {
        let mut org = org_with_buckets(&["b1", "b2"]);
        let elsewhere: BucketWriteBody = serde_json::from_value(json!({
            "name": "b1", "bucket": "x", "storageType": "S3", "workspaceId": "other"
        }))
        .unwrap();
        let clash = org
            .create_bucket(elsewhere, "b3".into(), "t".into())
            .unwrap_err();
        assert_eq!((clash.status, clash.code), (409, Some("NAME_ALREADY_USED")));
        let rename: BucketWriteBody =
            serde_json::from_value(json!({"name": "b1", "bucket": "b2", "storageType": "S3"}))
                .unwrap();
        assert_eq!(code(org.update_bucket("b2", rename)), "NAME_ALREADY_USED");
        let same: BucketWriteBody =
            serde_json::from_value(json!({"name": "b2", "bucket": "y", "storageType": "S3"}))
                .unwrap();
        org.update_bucket("b2", same).unwrap();
        org.delete_bucket("b1").unwrap();
        let again: BucketWriteBody = serde_json::from_value(json!({
            "name": "b1", "bucket": "x", "storageType": "S3", "workspaceId": "other"
        }))
        .unwrap();
        org.create_bucket(again, "b3".into(), "t".into()).unwrap();
    }

    #[test]
    fn buckets_in_use_cannot_be_deleted() {
        let mut org = org_with_buckets(&["b1"]);
        org.create_repo(
            mirror("a", json!([{"bucketId": "b1", "master": true}])),
            "r1".into(),
            "t".into(),
        )
        .unwrap();
        let refused = org.delete_bucket("b1").unwrap_err();
        assert_eq!(
            (refused.status, refused.code, refused.message.as_str()),
            (403, None, BUCKET_IN_USE_MESSAGE)
        );
        assert!(org.buckets.contains_key("b1"));
        org.delete_repo("r1").unwrap();
        org.delete_bucket("b1").unwrap();
        assert_eq!(org.delete_bucket("b1").unwrap_err().status, 404);
    }

    fn key_body(name: &str, access_type: &str) -> KeyWriteBody {
        serde_json::from_value(json!({"name": name, "accessType": access_type})).unwrap()
    }

    fn org_with_repo(id: &str) -> Org {
        let mut org = Org::default();
        let normal =
            body(json!({"name": id, "storageType": "S3", "mode": "NORMAL", "workspaceId": "ws"}));
        org.create_repo(normal, id.to_owned(), "t".into()).unwrap();
        org
    }

    #[test]
    fn a_new_key_looks_like_an_aws_one_and_only_its_hash_is_kept() {
        let mut org = org_with_repo("r1");
        let created = org
            .create_key("r1", key_body("app", "WRITE"), "k1".into(), "t".into())
            .unwrap();
        assert_eq!(created.id, "k1");
        assert_eq!(created.key.len(), 20);
        assert!(
            created
                .key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            "{}",
            created.key
        );
        assert_eq!(created.secret.len(), KEY_SECRET_LEN);
        assert!(created.secret.bytes().all(|b| b.is_ascii_alphanumeric()));

        let stored = &org.repos["r1"].keys[0];
        assert_eq!(
            (
                stored.id.as_str(),
                stored.name.as_str(),
                stored.access_type.as_str()
            ),
            ("k1", "app", "WRITE")
        );
        assert_eq!(stored.secret_sha256, sha256_hex(created.secret.as_bytes()));
        assert!(stored.accepts(&created.secret));
        assert!(!stored.accepts(&created.secret.to_lowercase()));
        let saved = String::from_utf8(serde_json::to_vec(&org).unwrap()).unwrap();
        assert!(!saved.contains(&created.secret), "{saved}");
    }

    #[test]
    fn key_writes_are_checked_and_unknown_repos_and_keys_are_not_found() {
        let mut org = org_with_repo("r1");
        let mut create = |repo: &str, body: KeyWriteBody| {
            org.create_key(repo, body, "k".into(), "t".into())
                .map(|_| ())
        };
        assert_eq!(code(create("nope", key_body("a", "READ"))), "NOT_FOUND");
        let refused = create("r1", key_body("a", "OWNER")).unwrap_err();
        assert_eq!(
            (refused.status, refused.code, refused.message.as_str()),
            (
                400,
                Some("INVALID_REQUEST"),
                r#"accessType "OWNER" is not one of READ, WRITE, ADMIN"#
            )
        );
        assert_eq!(code(create("r1", key_body(" ", "READ"))), "INVALID_REQUEST");
        assert_eq!(
            code(create("r1", KeyWriteBody::default())),
            "INVALID_REQUEST"
        );
        assert!(org.repos["r1"].keys.is_empty(), "nothing refused is kept");

        org.create_key("r1", key_body("a", "READ"), "k1".into(), "t".into())
            .unwrap();
        let key = org.repos["r1"].keys[0].key.clone();
        org.update_key("r1", "k1", key_body("b", "ADMIN")).unwrap();
        let updated = &org.repos["r1"].keys[0];
        assert_eq!(
            (
                updated.name.as_str(),
                updated.access_type.as_str(),
                updated.key.as_str()
            ),
            ("b", "ADMIN", key.as_str())
        );
        assert_eq!(
            code(org.update_key("r1", "k1", key_body("b", "READ_ONLY"))),
            "INVALID_REQUEST"
        );
        assert_eq!(
            code(org.update_key("r1", "k9", key_body("b", "READ"))),
            "NOT_FOUND"
        );
        assert_eq!(
            code(org.update_key("r9", "k1", key_body("b", "READ"))),
            "NOT_FOUND"
        );
        assert_eq!(code(org.delete_key("r1", "k9")), "NOT_FOUND");
        org.delete_key("r1", "k1").unwrap();
        assert_eq!(org.delete_key("r1", "k1").unwrap_err().status, 404);
        assert!(org.repo_keys("r1").unwrap().is_empty());
        assert_eq!(code(org.repo_keys("r9")), "NOT_FOUND");
    }

    #[test]
    fn a_deleted_repo_takes_its_keys_along() {
        let mut store = Store::default();
        store.ensure_orgs(&["t1".to_owned()]);
        let org = store.org_mut("t1").unwrap();
        org.create_repo(
            body(json!({"name": "a", "storageType": "S3", "mode": "NORMAL", "workspaceId": "ws"})),
            "r1".into(),
            "t".into(),
        )
        .unwrap();
        let created = org
            .create_key("r1", key_body("app", "READ"), "k1".into(), "t".into())
            .unwrap();
        assert!(store.key_is_live("r1", &created.key, &created.secret));
        assert!(!store.key_is_live("r1", &created.key, "wrong"));
        assert!(!store.key_is_live("r2", &created.key, &created.secret));

        let org = store.org_mut("t1").unwrap();
        org.delete_repo("r1").unwrap();
        // A repo of the same name is a new repo: it starts without keys.
        org.create_repo(
            body(json!({"name": "a", "storageType": "S3", "mode": "NORMAL", "workspaceId": "ws"})),
            "r2".into(),
            "t".into(),
        )
        .unwrap();
        assert!(!store.key_is_live("r1", &created.key, &created.secret));
        assert_eq!(store.repo_keys_anywhere("r1"), None);
        assert_eq!(store.repo_keys_anywhere("r2"), Some(&[][..]));
    }

    #[test]
    fn a_state_file_without_keys_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        // A repo as written before keys existed.
        let old = json!({"orgs": {"t1": {"buckets": {}, "repos": {"r1": {
            "id": "r1", "name": "a", "storageType": "S3", "mode": "NORMAL",
            "workspaceId": "ws", "createdAt": "t", "units": []
        }}}}});
        std::fs::write(&path, old.to_string()).unwrap();
        let loaded = Store::load(&path).unwrap();
        assert!(loaded.org("t1").unwrap().repos["r1"].keys.is_empty());
    }

    #[test]
    fn the_store_round_trips_through_a_file_with_its_name_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut store = Store::default();
        store.ensure_orgs(&["t1".to_owned()]);
        let org = store.org_mut("t1").unwrap();
        org.create_repo(
            body(json!({"name": "a", "storageType": "S3", "mode": "BACKUP", "workspaceId": "ws"})),
            "r1".into(),
            "t".into(),
        )
        .unwrap();
        write_atomically(&path, &store.to_bytes()).unwrap();
        let mut loaded = Store::load(&path).unwrap();
        assert_eq!(loaded.org("t1").unwrap().repos["r1"].name, "a");
        let again =
            body(json!({"name": "a", "storageType": "S3", "mode": "BACKUP", "workspaceId": "ws"}));
        assert_eq!(
            code(
                loaded
                    .org_mut("t1")
                    .unwrap()
                    .create_repo(again, "r2".into(), "t".into())
            ),
            "NAME_ALREADY_USED"
        );
        assert!(
            Store::load(&dir.path().join("missing.json"))
                .unwrap()
                .orgs
                .is_empty()
        );
    }
}

//! The pure half of the export: an organisation's listing in, manifests out. Each bucket
//! becomes a FlashbackBucket and each repository a FlashbackRepository that adopt them (by the
//! annotations `flashback.tech/bucket-id` and `flashback.tech/repo-id`) under the management
//! and deletion policies asked; access keys and cloud credentials, which cannot be exported,
//! become comments saying what to do instead. The same listing always gives the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use flashback_client::{self as flashback, Bucket, Repo, RepoKey};
use kube::api::ObjectMeta;
use serde::Serialize;

use super::names;
use crate::controller::answers::plausible_id;
use crate::controller::bucket::plan::cloud_key_names;
use crate::crd::{
    AccessType, BucketReference, DeletionPolicy, FlashbackAccessKey, FlashbackAccessKeySpec,
    FlashbackBucket, FlashbackBucketSpec, FlashbackRepository, FlashbackRepositorySpec,
    ManagementPolicy, RepositoryBucket, RepositoryMode, RepositoryReference, SecretReference,
    StorageType, annotations,
};

/// What the export read of an organisation.
#[derive(Debug, Clone, Default)]
pub struct Organisation {
    /// The API it was read from.
    pub api_url: String,
    /// The workspaces exported, each with its buckets and repositories.
    pub workspaces: Vec<Workspace>,
    /// The organisation's buckets outside the exported workspaces: a repository may group one,
    /// and a comment then says which it is.
    pub buckets_elsewhere: Vec<Bucket>,
    /// The remote objects some object of the cluster already manages.
    pub managed: Managed,
}

/// One workspace as listed.
#[derive(Debug, Clone, Default)]
pub struct Workspace {
    pub id: String,
    pub buckets: Vec<Bucket>,
    /// Each repository with its access keys.
    pub repos: Vec<(Repo, Vec<RepoKey>)>,
}

/// Remote ids the cluster's objects already manage, each with the object that does
/// (`namespace/name`).
#[derive(Debug, Clone, Default)]
pub struct Managed {
    pub repos: BTreeMap<String, String>,
    pub buckets: BTreeMap<String, String>,
}

/// How to write the objects.
#[derive(Debug, Clone)]
pub struct Options {
    pub management_policy: ManagementPolicy,
    pub deletion_policy: DeletionPolicy,
    /// The namespace the objects name; none, `kubectl apply -n` chooses.
    pub namespace: Option<String>,
    /// The Flashback credentials Secret each object names; none, the operator's default.
    pub credentials_secret: Option<String>,
    /// Leave out what the cluster already manages, rather than marking it.
    pub skip_managed: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            management_policy: ManagementPolicy::ObserveOnly,
            deletion_policy: DeletionPolicy::Orphan,
            namespace: None,
            credentials_secret: None,
            skip_managed: false,
        }
    }
}

/// The export: a header saying what it is, then one manifest per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifests {
    /// Comment lines: what was exported, from where, under which policies, and what was not.
    pub header: String,
    pub objects: Vec<Manifest>,
}

/// One object: its file name, and its text (comments, then the YAML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub file: String,
    pub text: String,
}

/// The file `kubectl apply -k` reads in a directory export.
pub const KUSTOMIZATION: &str = "kustomization.yaml";

impl Manifests {
    /// Everything as one multi-document YAML stream.
    pub fn stream(&self) -> String {
        let mut out = self.header.clone();
        for object in &self.objects {
            out.push_str("---\n");
            out.push_str(&object.text);
        }
        out
    }

    /// Every file of a directory export, `kustomization.yaml` (with the header) included.
    pub fn files(&self) -> Result<Vec<(String, String)>, serde_saphyr::ser::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Kustomization<'a> {
            api_version: &'a str,
            kind: &'a str,
            resources: Vec<&'a str>,
        }
        let kustomization = Kustomization {
            api_version: "kustomize.config.k8s.io/v1beta1",
            kind: "Kustomization",
            resources: self.objects.iter().map(|o| o.file.as_str()).collect(),
        };
        let mut files = vec![(
            KUSTOMIZATION.to_owned(),
            format!(
                "{}{}",
                self.header,
                serde_saphyr::to_string(&kustomization)?
            ),
        )];
        files.extend(
            self.objects
                .iter()
                .map(|o| (o.file.clone(), o.text.clone())),
        );
        Ok(files)
    }
}

/// The manifests of `org` written as `options` ask.
/// Whether the object managing an id (`namespace/name`) is the very object this export writes
/// for it (`name`, in the namespace asked for; any namespace when none was).
fn is_this(by: &str, name: &str, options: &Options) -> bool {
    let (namespace, managing) = by.split_once('/').unwrap_or(("", by));
    managing == name
        && options
            .namespace
            .as_deref()
            .is_none_or(|asked| asked == namespace)
}

pub fn render(
    org: &Organisation,
    options: &Options,
) -> Result<Manifests, serde_saphyr::ser::Error> {
    let mut notes = Vec::new();
    let exported_ids: BTreeSet<&str> = org
        .workspaces
        .iter()
        .flat_map(|w| w.buckets.iter().map(|b| b.id.as_str()))
        .collect();

    // Buckets: what can be written, named before anything is left out, so that a name never
    // depends on --skip-managed; then minus what another object manages, when asked.
    let mut seen = BTreeSet::new();
    let mut candidates = Vec::new();
    for workspace in &org.workspaces {
        for bucket in &workspace.buckets {
            if !seen.insert(bucket.id.as_str()) {
                notes.push(format!("bucket id {} is listed twice", quoted(&bucket.id)));
            } else if let Err(why) = exportable_bucket(bucket, &workspace.id) {
                notes.push(format!(
                    "bucket {} (id {}): {why}",
                    quoted(&bucket.name),
                    quoted(&bucket.id)
                ));
            } else {
                candidates.push((workspace.id.as_str(), bucket));
            }
        }
    }
    let bucket_names = names::assign(
        candidates
            .iter()
            .map(|(_, b)| (b.id.as_str(), b.name.as_str())),
        "bucket",
    );
    let mut buckets = Vec::new();
    for (workspace, bucket) in candidates {
        // The object this export writes, applied before, manages it: that is no other.
        let managed = org
            .managed
            .buckets
            .get(&bucket.id)
            .filter(|by| !is_this(by, &bucket_names[&bucket.id], options));
        if let (Some(by), true) = (managed, options.skip_managed) {
            notes.push(format!(
                "bucket {} (id {}): already managed by FlashbackBucket {by}",
                quoted(&bucket.name),
                bucket.id
            ));
        } else {
            buckets.push((workspace, bucket, managed));
        }
    }
    // A repository names a bucket by `bucketRef` when it is written here and no other object
    // manages it (a FlashbackBucket that would stall), by `bucketId` otherwise.
    let by_ref: BTreeMap<&str, &str> = buckets
        .iter()
        .filter(|(_, _, managed)| managed.is_none())
        .map(|(_, b, _)| (b.id.as_str(), bucket_names[&b.id].as_str()))
        .collect();

    let mut seen = BTreeSet::new();
    let mut candidates = Vec::new();
    for workspace in &org.workspaces {
        for (repo, keys) in &workspace.repos {
            if !seen.insert(repo.id.as_str()) {
                notes.push(format!(
                    "repository id {} is listed twice",
                    quoted(&repo.id)
                ));
            } else if let Err(why) = exportable_repo(repo, &workspace.id) {
                notes.push(format!(
                    "repository {} (id {}): {why}",
                    quoted(&repo.name),
                    quoted(&repo.id)
                ));
            } else {
                candidates.push((workspace.id.as_str(), repo, keys));
            }
        }
    }
    let repo_names = names::assign(
        candidates
            .iter()
            .map(|(_, r, _)| (r.id.as_str(), r.name.as_str())),
        "repository",
    );
    let mut repos = Vec::new();
    for (workspace, repo, keys) in candidates {
        let managed = org
            .managed
            .repos
            .get(&repo.id)
            .filter(|by| !is_this(by, &repo_names[&repo.id], options));
        if let (Some(by), true) = (managed, options.skip_managed) {
            notes.push(format!(
                "repository {} (id {}): already managed by FlashbackRepository {by}",
                quoted(&repo.name),
                repo.id
            ));
        } else {
            repos.push((workspace, repo, keys, managed));
        }
    }

    let secret_names = secret_names(&bucket_names, options.credentials_secret.as_deref());
    let mut objects = Vec::new();
    for (workspace, bucket, managed) in &buckets {
        let name = &bucket_names[&bucket.id];
        let secret = &secret_names[&bucket.id];
        objects.push(Manifest {
            file: format!("bucket-{name}.yaml"),
            text: format!(
                "{}{}",
                bucket_comment(bucket, workspace, secret, *managed, options),
                serde_saphyr::to_string(&bucket_object(bucket, workspace, name, secret, options))?
            ),
        });
    }
    for (workspace, repo, keys, managed) in &repos {
        let name = &repo_names[&repo.id];
        let (object, elsewhere) = repo_object(repo, workspace, name, &by_ref, options);
        let mut comment = repo_comment(repo, workspace, *managed);
        for id in elsewhere {
            comment.push_str(&comment_lines(&bucket_elsewhere(id, org, &exported_ids)));
        }
        comment.push_str(&keys_comment(keys, name, options)?);
        objects.push(Manifest {
            file: format!("repository-{name}.yaml"),
            text: format!("{comment}{}", serde_saphyr::to_string(&object)?),
        });
    }
    objects.sort_by(|a, b| a.file.cmp(&b.file));
    notes.sort();
    Ok(Manifests {
        header: header(org, options, buckets.len(), repos.len(), &notes),
        objects,
    })
}

/// Why a listed bucket cannot be written as a FlashbackBucket, if it cannot.
fn exportable_bucket(bucket: &Bucket, workspace: &str) -> Result<(), String> {
    if !plausible_id(&bucket.id) {
        return Err("its id is not one the operator writes into an annotation".into());
    }
    if !plain(&bucket.name) || !plain(workspace) {
        return Err("its name or workspace has spaces at an end or control characters".into());
    }
    if !bucket.bucket.as_deref().is_some_and(plain) {
        return Err("it is listed without the name of its cloud bucket".into());
    }
    storage(&bucket.storage_type).map(|_| ()).ok_or_else(|| {
        format!(
            "its storage type {} is unknown",
            quoted(bucket.storage_type.as_str())
        )
    })
}

/// Why a listed repository cannot be written as a FlashbackRepository, if it cannot: the API
/// server would refuse what it would be.
fn exportable_repo(repo: &Repo, workspace: &str) -> Result<(), String> {
    if !plausible_id(&repo.id) {
        return Err("its id is not one the operator writes into an annotation".into());
    }
    if !plain(&repo.name) || !plain(workspace) {
        return Err("its name or workspace has spaces at an end or control characters".into());
    }
    if storage(&repo.storage_type).is_none() {
        return Err(format!(
            "its storage type {} is unknown",
            quoted(repo.storage_type.as_str())
        ));
    }
    let Some(mode) = mode(&repo.mode) else {
        return Err(format!(
            "its mode {} is unknown",
            quoted(repo.mode.as_str())
        ));
    };
    if !(1..=64).contains(&repo.buckets.len()) {
        return Err(format!(
            "it groups {} buckets, and a FlashbackRepository groups 1 to 64",
            repo.buckets.len()
        ));
    }
    let ids: BTreeSet<&str> = repo.buckets.iter().map(|b| b.bucket_id.as_str()).collect();
    if ids.len() != repo.buckets.len() || !ids.iter().all(|id| plausible_id(id)) {
        return Err("its bucket ids repeat or are not plain".into());
    }
    let masters = repo.buckets.iter().filter(|b| b.master).count();
    if masters > 1 || (mode == RepositoryMode::Mirror && masters != 1) {
        return Err(format!("it has {masters} master buckets"));
    }
    let folders_ok = repo.buckets.iter().all(|b| {
        let folder = b.folder.as_deref().unwrap_or_default();
        folder.is_empty() || (plain(folder) && folder.chars().count() <= 1024)
    });
    if !folders_ok {
        return Err("a folder has spaces at an end or control characters".into());
    }
    Ok(())
}

/// The FlashbackBucket adopting `bucket`.
fn bucket_object(
    bucket: &Bucket,
    workspace: &str,
    name: &str,
    secret: &str,
    options: &Options,
) -> FlashbackBucket {
    let region = bucket
        .region
        .clone()
        .filter(|r| (1..=64).contains(&r.chars().count()));
    // A spec without a region or endpoint matches whatever the bucket has: only values the
    // API server takes are written.
    let endpoint = bucket.endpoint.clone().filter(|e| {
        e.len() <= 2048
            && ["http://", "https://"]
                .iter()
                .any(|scheme| e.strip_prefix(scheme).is_some_and(|rest| !rest.is_empty()))
            && !e.chars().any(char::is_whitespace)
    });
    let mut object = FlashbackBucket::new(
        name,
        FlashbackBucketSpec {
            name: (bucket.name != name).then(|| bucket.name.clone()),
            workspace_id: workspace.to_owned(),
            storage_type: storage(&bucket.storage_type).expect("checked by exportable_bucket"),
            bucket: bucket.bucket.clone().unwrap_or_default(),
            region,
            endpoint,
            credentials_secret_ref: credentials(options),
            cloud_credentials_secret_ref: SecretReference {
                name: secret.to_owned(),
            },
            deletion_policy: options.deletion_policy,
            management_policy: options.management_policy,
        },
    );
    object.metadata = metadata(name, annotations::BUCKET_ID, &bucket.id, options);
    object
}

/// The FlashbackRepository adopting `repo`, and the ids of the buckets it names by id because
/// they are not written here.
/// A key's access type as the comment shows it: one the API documents as it is, any other
/// quoted (a server is anyone's, and a newline in it would end the comment).
fn access_word_of(access: &flashback::AccessType) -> String {
    match access.as_str() {
        known @ ("READ" | "WRITE" | "ADMIN") => known.to_owned(),
        other => quoted(other),
    }
}

fn repo_object<'a>(
    repo: &'a Repo,
    workspace: &str,
    name: &str,
    by_ref: &BTreeMap<&str, &str>,
    options: &Options,
) -> (FlashbackRepository, Vec<&'a str>) {
    let mut elsewhere = Vec::new();
    // In the order of their ids, whatever order the API lists them in: the operator compares
    // buckets regardless of order, and a second export must be the first byte for byte.
    let mut listed: Vec<_> = repo.buckets.iter().collect();
    listed.sort_by(|a, b| (&a.bucket_id, &a.folder).cmp(&(&b.bucket_id, &b.folder)));
    let buckets = listed
        .into_iter()
        .map(|b| {
            let reference = by_ref.get(b.bucket_id.as_str());
            if reference.is_none() {
                elsewhere.push(b.bucket_id.as_str());
            }
            RepositoryBucket {
                bucket_id: reference.is_none().then(|| b.bucket_id.clone()),
                bucket_ref: reference.map(|name| BucketReference {
                    name: (*name).to_owned(),
                }),
                folder: b.folder.clone().filter(|f| !f.is_empty()),
                master: b.master,
            }
        })
        .collect();
    let mut object = FlashbackRepository::new(
        name,
        FlashbackRepositorySpec {
            name: (repo.name != name).then(|| repo.name.clone()),
            workspace_id: workspace.to_owned(),
            storage_type: storage(&repo.storage_type).expect("checked by exportable_repo"),
            mode: mode(&repo.mode).expect("checked by exportable_repo"),
            buckets,
            credentials_secret_ref: credentials(options),
            deletion_policy: options.deletion_policy,
            management_policy: options.management_policy,
        },
    );
    object.metadata = metadata(name, annotations::REPO_ID, &repo.id, options);
    (object, elsewhere)
}

fn metadata(name: &str, annotation: &str, id: &str, options: &Options) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: options.namespace.clone(),
        annotations: Some(BTreeMap::from([(annotation.to_owned(), id.to_owned())])),
        ..ObjectMeta::default()
    }
}

fn credentials(options: &Options) -> Option<SecretReference> {
    options
        .credentials_secret
        .clone()
        .map(|name| SecretReference { name })
}

/// The cloud credentials Secret of each bucket, by id: `<bucket>-cloud`, unless that is the
/// Flashback credentials Secret's name.
fn secret_names(
    bucket_names: &BTreeMap<String, String>,
    credentials: Option<&str>,
) -> BTreeMap<String, String> {
    bucket_names
        .iter()
        .map(|(id, name)| {
            let secret = format!("{name}-cloud");
            let secret = if Some(secret.as_str()) == credentials {
                format!("{name}-cloud-credentials")
            } else {
                secret
            };
            (id.clone(), secret)
        })
        .collect()
}

fn bucket_comment(
    bucket: &Bucket,
    workspace: &str,
    secret: &str,
    managed: Option<&String>,
    options: &Options,
) -> String {
    let storage = storage(&bucket.storage_type).expect("checked by exportable_bucket");
    let (key, secret_key) = cloud_key_names(storage);
    let namespace = options
        .namespace
        .as_deref()
        .map(|ns| format!(" -n {ns}"))
        .unwrap_or_default();
    let when = match options.management_policy {
        ManagementPolicy::ObserveOnly => {
            "ObserveOnly does not read them; before switching the bucket to Full, create the \
             Secret it names"
        }
        ManagementPolicy::Full => {
            "Full sends them to Flashback once adopted; create the Secret it names before \
             applying"
        }
    };
    let mut text = comment_lines(&format!(
        "Bucket {} (id {}) of workspace {workspace}.",
        quoted(&bucket.name),
        bucket.id
    ));
    if let Some(by) = managed {
        text.push_str(&comment_lines(&already_managed("FlashbackBucket", by)));
    }
    text.push_str(&comment_lines(&format!(
        "Its cloud credentials are never exported: {when}, from the values in these environment \
         variables:"
    )));
    text.push_str(&format!(
        "#   kubectl create secret generic {secret}{namespace} \
         --from-literal={key}=\"${key}\" --from-literal={secret_key}=\"${secret_key}\"\n"
    ));
    text
}

fn repo_comment(repo: &Repo, workspace: &str, managed: Option<&String>) -> String {
    let mut text = comment_lines(&format!(
        "Repository {} (id {}) of workspace {workspace}: {}, {} bucket{}.",
        quoted(&repo.name),
        repo.id,
        repo.mode.as_str(),
        repo.buckets.len(),
        if repo.buckets.len() == 1 { "" } else { "s" }
    ));
    if let Some(by) = managed {
        text.push_str(&comment_lines(&already_managed("FlashbackRepository", by)));
    }
    text
}

fn already_managed(kind: &str, by: &str) -> String {
    format!(
        "Already managed by the {kind} {by}: applied too, this object would stall \
         (ManagedByAnotherObject). Leave it out, or export with --skip-managed."
    )
}

/// What a comment says of a bucket a repository groups that is not written here.
fn bucket_elsewhere(id: &str, org: &Organisation, exported: &BTreeSet<&str>) -> String {
    let listed = org.buckets_elsewhere.iter().find(|b| b.id == id);
    let why = if exported.contains(id) {
        match org.managed.buckets.get(id) {
            Some(by) => format!(
                "is managed by the FlashbackBucket {by}, so this repository does not name it by \
                 bucketRef; applied in another namespace than that object's, it stalls with \
                 ManagedByAnotherObject (a repository groups no other namespace's bucket)"
            ),
            None => "is not written as a FlashbackBucket here".to_owned(),
        }
    } else if let Some(bucket) = listed {
        format!(
            "is {} of workspace {}, which is not exported",
            quoted(&bucket.name),
            bucket.workspace_id.as_deref().unwrap_or("(none listed)")
        )
    } else {
        "is not listed by the organisation".to_owned()
    };
    format!("Bucket {id} {why}: named by bucketId.")
}

/// The access keys of a repository, as comments: their secrets cannot be exported, so each is
/// listed, with a FlashbackAccessKey that issues a new one.
fn keys_comment(
    keys: &[RepoKey],
    repo: &str,
    options: &Options,
) -> Result<String, serde_saphyr::ser::Error> {
    let mut sorted: Vec<&RepoKey> = keys.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    let Some(first) = sorted.first().copied() else {
        return Ok(String::new());
    };
    let mut text = comment_lines(
        "Access keys: their secrets cannot be exported (the API shows a secret only when the key \
         is made). To give a workload a key, issue a new one with a FlashbackAccessKey like the \
         one below (the operator writes it into a Secret), then revoke the old one:",
    );
    for key in sorted {
        text.push_str(&format!(
            "#   {} {}, access key id {}, id {}\n",
            quoted(&key.name),
            access_word_of(&key.access_type),
            quoted(&key.key),
            quoted(&key.id)
        ));
    }
    let access = match &first.access_type {
        flashback::AccessType::Write => AccessType::WRITE,
        flashback::AccessType::Admin => AccessType::ADMIN,
        _ => AccessType::READ,
    };
    let mut example = FlashbackAccessKey::new(
        &format!("{repo}-{}", access_word(access)),
        FlashbackAccessKeySpec {
            repository_ref: RepositoryReference {
                name: repo.to_owned(),
            },
            access_type: access,
            secret_name: None,
            endpoint: None,
        },
    );
    example.metadata.namespace = options.namespace.clone();
    for line in serde_saphyr::to_string(&example)?.lines() {
        text.push_str(&format!("#   {line}\n"));
    }
    Ok(text)
}

fn access_word(access: AccessType) -> &'static str {
    match access {
        AccessType::READ => "read",
        AccessType::WRITE => "write",
        AccessType::ADMIN => "admin",
    }
}

fn header(
    org: &Organisation,
    options: &Options,
    buckets: usize,
    repos: usize,
    notes: &[String],
) -> String {
    let workspaces: Vec<&str> = org.workspaces.iter().map(|w| w.id.as_str()).collect();
    let policy = match options.management_policy {
        ManagementPolicy::ObserveOnly => {
            "managementPolicy: ObserveOnly: the operator only reads them and reports (Ready when \
             Flashback matches the object, OutOfSync when it does not); set Full on an object to \
             let the operator correct it"
        }
        ManagementPolicy::Full => {
            "managementPolicy: Full: the operator corrects what differs from the objects, and \
             sends each bucket its cloud credentials once"
        }
    };
    let deletion = match options.deletion_policy {
        DeletionPolicy::Orphan => {
            "deletionPolicy: Orphan: deleting an object leaves what it adopted in Flashback"
        }
        DeletionPolicy::Delete => {
            "deletionPolicy: Delete: deleting an object deletes what it adopted in Flashback"
        }
    };
    let credentials = match &options.credentials_secret {
        Some(secret) => format!("Objects name the Flashback token Secret {secret}."),
        None => "Objects use the operator's default Flashback credentials.".to_owned(),
    };
    let mut text = comment_lines(&format!(
        "Exported by `flashback-operator export` from {} (workspace{} {}): {buckets} \
         FlashbackBucket{}, {repos} FlashbackRepositor{}. Each adopts what exists (annotations \
         {} and {}) and creates nothing. {policy}. {deletion}. {credentials} Cloud credentials \
         and access key secrets are never exported: each bucket says which Secret to create, \
         each repository lists its keys.",
        org.api_url,
        if workspaces.len() == 1 { "" } else { "s" },
        if workspaces.is_empty() {
            "none".to_owned()
        } else {
            workspaces.join(", ")
        },
        if buckets == 1 { "" } else { "s" },
        if repos == 1 { "y" } else { "ies" },
        annotations::BUCKET_ID,
        annotations::REPO_ID,
    ));
    if !notes.is_empty() {
        text.push_str(&comment_lines("Not exported:"));
        for note in notes {
            text.push_str(&format!("#   {note}\n"));
        }
    }
    text
}

/// `text` as comment lines of at most about 100 columns.
fn comment_lines(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > 100 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        // Words come from the API too: a control character never reaches the file as is.
        for c in word.chars() {
            if c.is_control() {
                line.extend(c.escape_default());
            } else {
                line.push(c);
            }
        }
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A remote value in a comment: quoted, its control characters escaped, so that no value can
/// end the comment and add YAML of its own.
fn quoted(value: &str) -> String {
    format!("{value:?}")
}

/// What the CRDs take as a name or an id: no space at either end, no control character.
fn plain(value: &str) -> bool {
    !value.is_empty()
        && value.trim() == value
        && !value.chars().any(char::is_control)
        && value.chars().count() <= 253
}

fn storage(storage: &flashback::StorageType) -> Option<StorageType> {
    Some(match storage {
        flashback::StorageType::S3 => StorageType::S3,
        flashback::StorageType::Gcs => StorageType::GCS,
        flashback::StorageType::Azure => StorageType::AZURE,
        flashback::StorageType::Blob => StorageType::BLOB,
        flashback::StorageType::Other(_) => return None,
    })
}

fn mode(mode: &flashback::RepoMode) -> Option<RepositoryMode> {
    Some(match mode {
        flashback::RepoMode::Mirror => RepositoryMode::Mirror,
        flashback::RepoMode::Backup => RepositoryMode::Backup,
        flashback::RepoMode::Normal => RepositoryMode::Normal,
        flashback::RepoMode::Other(_) => return None,
    })
}

#[cfg(test)]
mod tests {

    /// The file of the repository "Café Backups" (`r2`): its name was made valid, so it
    /// carries its id's suffix.
    fn cafe_file() -> String {
        let names = crate::export::names::assign([("r2", "Café Backups")], "repository");
        format!("repository-{}.yaml", names["r2"])
    }
    use super::*;
    use crate::controller::bucket::plan as bucket_plan;
    use crate::controller::repository::plan as repo_plan;

    fn bucket(id: &str, name: &str, workspace: &str, storage: &str) -> Bucket {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "bucket": format!("cloud-{id}"), "storageType": storage,
            "region": "eu-west-1", "workspaceId": workspace, "status": "ACTIVE"
        }))
        .unwrap()
    }

    /// A repository; `buckets` are (bucket id, folder, master).
    fn repo(id: &str, name: &str, mode: &str, buckets: &[(&str, &str, bool)]) -> Repo {
        let buckets: Vec<_> = buckets
            .iter()
            .map(|(b, folder, master)| {
                serde_json::json!({"bucketId": b, "folder": folder, "master": master})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "storageType": "S3", "mode": mode, "buckets": buckets
        }))
        .unwrap()
    }

    fn key(id: &str, name: &str, access: &str) -> RepoKey {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "accessType": access, "key": format!("AKIA{id}")
        }))
        .unwrap()
    }

    /// Two workspaces: buckets of each storage type, colliding and non-ASCII names, a
    /// repository of each mode, one grouping a bucket of the other workspace, and keys.
    fn organisation() -> Organisation {
        Organisation {
            api_url: "https://backend.flashback.tech/".into(),
            workspaces: vec![
                Workspace {
                    id: "ws-a".into(),
                    buckets: vec![
                        bucket("b1", "Media", "ws-a", "S3"),
                        bucket("b2", "media", "ws-a", "GCS"),
                        bucket("b3", "照片", "ws-a", "AZURE"),
                    ],
                    repos: vec![
                        (
                            repo(
                                "r1",
                                "media",
                                "MIRROR",
                                &[("b1", "m", true), ("b2", "", false)],
                            ),
                            vec![key("k2", "writer", "WRITE"), key("k1", "reader", "READ")],
                        ),
                        (
                            repo(
                                "r2",
                                "Café Backups",
                                "BACKUP",
                                &[("b3", "", false), ("b4", "x", false)],
                            ),
                            vec![],
                        ),
                        (
                            repo("r3", "notes", "NORMAL", &[("b1", "notes", false)]),
                            vec![],
                        ),
                    ],
                },
                Workspace {
                    id: "ws-b".into(),
                    buckets: vec![bucket("b4", "archive", "ws-b", "BLOB")],
                    repos: vec![],
                },
            ],
            buckets_elsewhere: vec![],
            managed: Managed::default(),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(manifest: &Manifest) -> T {
        serde_saphyr::from_str(&manifest.text).unwrap_or_else(|e| panic!("{}: {e}", manifest.file))
    }

    fn named<'a>(manifests: &'a Manifests, file: &str) -> &'a Manifest {
        manifests
            .objects
            .iter()
            .find(|m| m.file == file)
            .unwrap_or_else(|| {
                panic!(
                    "no {file} among {:?}",
                    manifests
                        .objects
                        .iter()
                        .map(|m| &m.file)
                        .collect::<Vec<_>>()
                )
            })
    }

    #[test]
    fn a_bucket_is_written_to_be_adopted_with_its_cloud_secret_as_a_command() {
        let manifests = render(&organisation(), &Options::default()).unwrap();
        assert_eq!(
            named(&manifests, "bucket-media.yaml").text,
            r#"# Bucket "media" (id b2) of workspace ws-a.
# Its cloud credentials are never exported: ObserveOnly does not read them; before switching the
# bucket to Full, create the Secret it names, from the values in these environment variables:
#   kubectl create secret generic media-cloud --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackBucket
metadata:
  annotations:
    flashback.tech/bucket-id: b2
  name: media
spec:
  workspaceId: ws-a
  storageType: GCS
  bucket: cloud-b2
  region: eu-west-1
  cloudCredentialsSecretRef:
    name: media-cloud
  deletionPolicy: Orphan
  managementPolicy: ObserveOnly
"#
        );
    }

    #[test]
    fn a_repository_names_its_buckets_by_ref_and_lists_its_keys_as_comments() {
        let manifests = render(&organisation(), &Options::default()).unwrap();
        let text = &named(&manifests, "repository-media.yaml").text;
        let media =
            names::assign([("b1", "Media"), ("b2", "media"), ("b3", "照片")], "bucket")["b1"]
                .clone();
        assert!(
            text.starts_with(
                "# Repository \"media\" (id r1) of workspace ws-a: MIRROR, 2 buckets.\n\
             # Access keys: their secrets cannot be exported"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "#   \"reader\" READ, access key id \"AKIAk1\", id \"k1\"\n#   \"writer\" WRITE"
            ),
            "{text}"
        );
        assert!(
            text.contains("#   kind: FlashbackAccessKey\n#   metadata:\n#     name: media-read\n"),
            "{text}"
        );
        let object: FlashbackRepository = parse(named(&manifests, "repository-media.yaml"));
        assert_eq!(object.spec.name, None, "the remote name is the object's");
        assert_eq!(
            object.spec.buckets[0].bucket_ref.as_ref().unwrap().name,
            media
        );
        assert_eq!(object.spec.buckets[0].folder.as_deref(), Some("m"));
        assert_eq!(
            object.spec.buckets[1].folder, None,
            "an empty folder is the root"
        );
        assert_eq!(object.adopted_repo_id(), Some("r1"));
    }

    #[test]
    fn every_object_is_what_the_operator_would_observe_as_in_step() {
        let org = organisation();
        let manifests = render(&org, &Options::default()).unwrap();
        let mut ids = BTreeMap::new();
        let listed: Vec<Bucket> = org
            .workspaces
            .iter()
            .flat_map(|w| w.buckets.clone())
            .collect();
        for manifest in manifests
            .objects
            .iter()
            .filter(|m| m.file.starts_with("bucket-"))
        {
            let object: FlashbackBucket = parse(manifest);
            let decision = bucket_plan::decide(
                &object,
                &listed,
                &crate::fixtures::identity(),
                |_| false,
                None,
            );
            let bucket_plan::Decision::Observe {
                bucket_id,
                in_sync: true,
            } = decision
            else {
                panic!("{}: {decision:?}", manifest.file);
            };
            ids.insert(object.metadata.name.clone().unwrap(), bucket_id);
        }
        assert_eq!(ids.len(), 4);
        let repos: Vec<Repo> = org
            .workspaces
            .iter()
            .flat_map(|w| w.repos.iter().map(|(r, _)| r.clone()))
            .collect();
        let workspace = crate::controller::workspace::Workspace::from(repos);
        for manifest in manifests
            .objects
            .iter()
            .filter(|m| m.file.starts_with("repository-"))
        {
            let object: FlashbackRepository = parse(manifest);
            let resolved = repo_plan::resolve_buckets(&object, |name| {
                repo_plan::NamedBucket::Ready(ids[name].clone())
            })
            .unwrap();
            let decision =
                repo_plan::decide(&resolved, &workspace, &crate::fixtures::identity(), |_| {
                    false
                });
            assert!(
                matches!(decision, repo_plan::Decision::Observe { in_sync: true, .. }),
                "{}: {decision:?}",
                manifest.file
            );
        }
    }

    #[test]
    fn names_are_valid_unique_and_keep_the_remote_name_in_the_spec_when_they_differ() {
        let manifests = render(&organisation(), &Options::default()).unwrap();
        let files: Vec<&str> = manifests.objects.iter().map(|m| m.file.as_str()).collect();
        assert_eq!(files.len(), 7);
        let unique: BTreeSet<&&str> = files.iter().collect();
        assert_eq!(unique.len(), files.len());
        let cafe: FlashbackRepository = parse(named(&manifests, &cafe_file()));
        assert_eq!(cafe.spec.name.as_deref(), Some("Café Backups"));
        for manifest in manifests
            .objects
            .iter()
            .filter(|m| m.file.starts_with("bucket-"))
        {
            let object: FlashbackBucket = parse(manifest);
            let name = object.metadata.name.clone().unwrap();
            assert!(names::is_valid(&name), "{name}");
            assert_eq!(manifest.file, format!("bucket-{name}.yaml"));
            if object.spec.name.is_some() {
                assert_ne!(object.spec.name.as_deref(), Some(name.as_str()));
            }
        }
    }

    #[test]
    fn the_same_organisation_listed_in_another_order_gives_the_same_bytes() {
        let org = organisation();
        let mut shuffled = org.clone();
        shuffled.workspaces.reverse();
        for workspace in &mut shuffled.workspaces {
            workspace.buckets.reverse();
            workspace.repos.reverse();
            for (repo, keys) in &mut workspace.repos {
                repo.buckets.reverse();
                keys.reverse();
            }
        }
        let options = Options::default();
        let first = render(&org, &options).unwrap();
        // The header names the workspaces in the order they are given: the caller sorts them.
        shuffled.workspaces.reverse();
        assert_eq!(first, render(&shuffled, &options).unwrap());
        assert_eq!(first.stream(), render(&org, &options).unwrap().stream());
    }

    #[test]
    fn a_bucket_of_a_workspace_not_exported_is_named_by_id_and_said_to_be_elsewhere() {
        let mut org = organisation();
        let elsewhere = org.workspaces.pop().unwrap();
        org.buckets_elsewhere = elsewhere.buckets;
        let manifests = render(&org, &Options::default()).unwrap();
        let manifest = named(&manifests, &cafe_file());
        assert!(
            manifest.text.contains(
                "# Bucket b4 is \"archive\" of workspace ws-b, which is not exported: named by \
                 bucketId.\n"
            ),
            "{}",
            manifest.text
        );
        let object: FlashbackRepository = parse(manifest);
        assert_eq!(object.spec.buckets[1].bucket_id.as_deref(), Some("b4"));
        assert_eq!(object.spec.buckets[1].bucket_ref, None);
        org.buckets_elsewhere.clear();
        let manifests = render(&org, &Options::default()).unwrap();
        assert!(
            named(&manifests, &cafe_file())
                .text
                .contains("# Bucket b4 is not listed by the organisation: named by bucketId.\n")
        );
    }

    #[test]
    fn an_empty_workspace_gives_a_header_and_an_empty_kustomization() {
        let org = Organisation {
            api_url: "https://backend.flashback.tech/".into(),
            workspaces: vec![Workspace {
                id: "ws-empty".into(),
                ..Workspace::default()
            }],
            ..Organisation::default()
        };
        let manifests = render(&org, &Options::default()).unwrap();
        assert!(manifests.objects.is_empty());
        let words = manifests
            .header
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            words.starts_with(
                "# Exported by `flashback-operator export` from https://backend.flashback.tech/ \
                 (workspace ws-empty): # 0 FlashbackBuckets, 0 FlashbackRepositories."
            ),
            "{words}"
        );
        assert!(manifests.stream().lines().all(|l| l.starts_with('#')));
        let files = manifests.files().unwrap();
        assert_eq!(files.len(), 1);
        assert!(
            files[0].1.ends_with(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n"
            ),
            "{}",
            files[0].1
        );
    }

    #[test]
    fn a_directory_holds_one_file_per_object_and_a_kustomization_naming_them_all() {
        let manifests = render(&organisation(), &Options::default()).unwrap();
        let files = manifests.files().unwrap();
        let (name, kustomization) = &files[0];
        assert_eq!(name, KUSTOMIZATION);
        let parsed: serde_json::Value = serde_saphyr::from_str(kustomization).unwrap();
        let resources: Vec<&str> = parsed["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let written: Vec<&str> = files[1..].iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(resources, written);
        // The stream is the header and the same objects, each its own document.
        let stream = manifests.stream();
        assert_eq!(
            stream.matches("\n---\n").count() + usize::from(stream.starts_with("---")),
            7
        );
        for (_, text) in &files[1..] {
            assert!(stream.contains(text.as_str()));
        }
    }

    #[test]
    fn full_namespace_and_credentials_are_written_as_asked() {
        let options = Options {
            management_policy: ManagementPolicy::Full,
            deletion_policy: DeletionPolicy::Delete,
            namespace: Some("team-a".into()),
            credentials_secret: Some("flashback-token".into()),
            skip_managed: false,
        };
        let manifests = render(&organisation(), &options).unwrap();
        let bucket = named(&manifests, "bucket-media.yaml");
        assert!(
            bucket.text.contains(
                "# Its cloud credentials are never exported: Full sends them to Flashback once \
             adopted; create the Secret it names before applying"
            ) || bucket.text.contains("Full sends them to Flashback once"),
            "{}",
            bucket.text
        );
        assert!(
            bucket
                .text
                .contains("generic media-cloud -n team-a --from-literal")
        );
        let object: FlashbackBucket = parse(bucket);
        assert_eq!(object.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(object.spec.management_policy, ManagementPolicy::Full);
        assert_eq!(object.spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(
            object
                .spec
                .credentials_secret_ref
                .map(|s| s.name)
                .as_deref(),
            Some("flashback-token")
        );
    }

    #[test]
    fn what_another_object_manages_is_marked_or_left_out_and_this_exports_own_objects_are_not() {
        let mut org = organisation();
        org.managed
            .repos
            .insert("r1".into(), "team-a/someone-elses".into());
        org.managed
            .buckets
            .insert("b3".into(), "team-a/theirs".into());
        let marked = render(&org, &Options::default()).unwrap();
        let text = &named(&marked, "repository-media.yaml").text;
        assert!(
            text.contains("# Already managed by the FlashbackRepository team-a/someone-elses:"),
            "{text}"
        );
        // A bucket another object manages is named by id, never by a FlashbackBucket that
        // would stall.
        let cafe_manifest = named(&marked, &cafe_file());
        let cafe: FlashbackRepository = parse(cafe_manifest);
        assert_eq!(cafe.spec.buckets[0].bucket_id.as_deref(), Some("b3"));
        assert!(
            cafe_manifest
                .text
                .contains("# Bucket b3 is managed by the FlashbackBucket team-a/theirs, so this"),
            "{}",
            cafe_manifest.text
        );
        let skipped = render(
            &org,
            &Options {
                skip_managed: true,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(skipped.objects.len(), 5);
        assert!(
            skipped.header.contains(
                "#   repository \"media\" (id r1): already managed by FlashbackRepository \
             team-a/someone-elses\n"
            ),
            "{}",
            skipped.header
        );

        // Exported, applied, exported again: the objects that manage the ids are this
        // export's own, and the second export is the first.
        let first = render(&organisation(), &Options::default()).unwrap();
        let mut applied = organisation();
        for manifest in &first.objects {
            let object: serde_json::Value = serde_saphyr::from_str(&manifest.text).unwrap();
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            let annotations = &object["metadata"]["annotations"];
            if let Some(id) = annotations["flashback.tech/repo-id"].as_str() {
                applied
                    .managed
                    .repos
                    .insert(id.into(), format!("team-a/{name}"));
            }
            if let Some(id) = annotations["flashback.tech/bucket-id"].as_str() {
                applied
                    .managed
                    .buckets
                    .insert(id.into(), format!("team-a/{name}"));
            }
        }
        assert!(!applied.managed.repos.is_empty() && !applied.managed.buckets.is_empty());
        let again = render(&applied, &Options::default()).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn what_no_object_can_express_is_listed_as_not_exported() {
        let mut org = organisation();
        org.workspaces[0]
            .repos
            .push((repo("r9", "empty", "BACKUP", &[]), vec![]));
        org.workspaces[0].repos.push((
            repo(
                "r8",
                "two-masters",
                "MIRROR",
                &[("b1", "", true), ("b2", "", true)],
            ),
            vec![],
        ));
        let mut odd = repo("r7", "odd", "BACKUP", &[("b1", "", false)]);
        odd.mode = flashback::RepoMode::Other("ARCHIVE".into());
        org.workspaces[0].repos.push((odd, vec![]));
        let manifests = render(&org, &Options::default()).unwrap();
        assert_eq!(
            manifests.objects.len(),
            7,
            "only the seven that can be written"
        );
        for note in [
            "#   repository \"empty\" (id \"r9\"): it groups 0 buckets, and a FlashbackRepository groups 1 to 64\n",
            "#   repository \"two-masters\" (id \"r8\"): it has 2 master buckets\n",
            "#   repository \"odd\" (id \"r7\"): its mode \"ARCHIVE\" is unknown\n",
        ] {
            assert!(
                manifests.header.contains(note),
                "{note}\n{}",
                manifests.header
            );
        }
    }

    #[test]
    fn no_remote_value_can_end_a_comment_and_add_yaml_of_its_own() {
        let mut org = organisation();
        org.workspaces[0].repos[0]
            .1
            .push(key("k9", "x\nkind: Secret\r\n---", "READ"));
        org.workspaces[0].repos[0]
            .1
            .push(key("k8", "typed", "READ\n---\nkind: Secret"));
        org.workspaces[0].buckets[0].name = "evil\nkind: Secret".into();
        let manifests = render(&org, &Options::default()).unwrap();
        let stream = manifests.stream();
        assert!(
            !stream.lines().any(|l| l.starts_with("kind: Secret")),
            "{stream}"
        );
        assert!(
            stream.contains(r#""x\nkind: Secret\r\n---" READ"#),
            "{stream}"
        );
        assert!(
            stream.contains(r#""typed" "READ\n---\nkind: Secret""#),
            "{stream}"
        );
        assert!(manifests.header.contains(
            "#   bucket \"evil\\nkind: Secret\" (id \"b1\"): its name or workspace has spaces at an end or control characters\n"
        ), "{}", manifests.header);
    }
}

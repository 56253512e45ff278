//! Pure decisions: what the remote repository should look like, whether it does, what to do
//! about it, and what to tell a person: the repository's own stalls, when a delete keeps the
//! remote, and the messages of every state (the stall rules every kind shares are in
//! [`stall`](crate::controller::stall)). No I/O here, so every rule has a plain unit test.

use crate::controller::conditions::State;
use crate::controller::credentials::CredentialsError;
use crate::controller::management::{self, Step};
use crate::controller::ownership::{self, Claim, Identity};
use crate::controller::reason::Reason;
use crate::controller::repository::create_attempt;
use crate::controller::stall::{Stall, api_stall_for, credentials_stall, recorded_elsewhere};
use crate::controller::workspace::Workspace;
use crate::crd::{FlashbackRepository, ManagementPolicy, RepositoryMode, StorageType, annotations};

use flashback_client::{self as flashback, ApiError, Repo, RepoBucketWrite, RepoWrite};

/// The repository the spec asks for, as the API's create body. It attaches no AI models: the
/// spec has no say in them.
pub fn desired(repo: &FlashbackRepository) -> RepoWrite {
    let spec = &repo.spec;
    RepoWrite {
        name: repo.remote_name().to_string(),
        storage_type: match spec.storage_type {
            StorageType::S3 => flashback::StorageType::S3,
            StorageType::GCS => flashback::StorageType::Gcs,
            StorageType::AZURE => flashback::StorageType::Azure,
            StorageType::BLOB => flashback::StorageType::Blob,
        },
        mode: match spec.mode {
            RepositoryMode::Mirror => flashback::RepoMode::Mirror,
            RepositoryMode::Backup => flashback::RepoMode::Backup,
            RepositoryMode::Normal => flashback::RepoMode::Normal,
        },
        workspace_id: Some(spec.workspace_id.clone()),
        repo_buckets: spec
            .buckets
            .iter()
            .map(|b| RepoBucketWrite {
                bucket_id: b.bucket_id.clone().unwrap_or_default(),
                folder: b.folder.clone(),
                master: b.master,
            })
            .collect(),
        repo_ai_llms: Vec::new(),
    }
}

/// The update body of a repository listed as `listed`: the spec's repository, carrying over
/// what the spec has no say in (the AI models attached in the web console). A `PUT` replaces
/// the whole repository, so what it leaves out, it takes away from whoever attached it.
/// Nothing else the listing holds (`disabled`, keys, `createdAt`) is a field a write takes.
pub fn desired_over(repo: &FlashbackRepository, listed: Option<&Repo>) -> RepoWrite {
    let mut body = desired(repo);
    if let Some(listed) = listed {
        body.repo_ai_llms = listed.ai_llms.clone();
    }
    body
}

/// Where a FlashbackBucket that a repository names stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedBucket {
    Missing,
    /// Not Ready yet (or being deleted).
    NotReady,
    /// Ready, with its id in Flashback.
    Ready(String),
}

impl NamedBucket {
    /// An ObserveOnly bucket that differs from its spec (`OutOfSync`) counts as Ready: it
    /// exists under the id it records, and only its own fields are out of step.
    pub fn of(bucket: Option<&crate::crd::FlashbackBucket>) -> Self {
        let Some(bucket) = bucket else {
            return NamedBucket::Missing;
        };
        let status = bucket.status.as_ref();
        let ready = status.is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == "Ready" && (c.status == "True" || c.reason == Reason::OutOfSync.as_str())
            })
        });
        match status.and_then(|s| s.bucket_id.clone()) {
            Some(id) if ready && bucket.metadata.deletion_timestamp.is_none() => {
                NamedBucket::Ready(id)
            }
            _ => NamedBucket::NotReady,
        }
    }
}

/// The stall of a repository that names a bucket a FlashbackBucket of another namespace
/// manages: another tenant's cloud bucket is not this one's to group (nor to reach through a
/// key of this repository). Named by id, or by a `bucketRef` resolved to an id (a
/// FlashbackBucket of this namespace that came to record another's bucket, by whatever way,
/// passes on nothing).
pub fn foreign_bucket(
    repo: &FlashbackRepository,
    buckets: &[std::sync::Arc<crate::crd::FlashbackBucket>],
) -> Option<Stall> {
    use kube::ResourceExt;
    let namespace = repo.namespace();
    let foreign = |id: &str| {
        buckets.iter().any(|bucket| {
            bucket.namespace() != namespace
                && bucket.status.as_ref().and_then(|s| s.bucket_id.as_deref()) == Some(id)
        })
    };
    let entry = repo
        .spec
        .buckets
        .iter()
        .find(|b| b.bucket_id.as_deref().is_some_and(foreign))?;
    let id = entry.bucket_id.as_deref().unwrap_or_default();
    let message = match &entry.bucket_ref {
        None => format!(
            "bucket {id} is managed by a FlashbackBucket of another namespace; a repository names \
             by id only buckets no other namespace manages (name a FlashbackBucket of its own \
             namespace by bucketRef)"
        ),
        Some(reference) => format!(
            "the FlashbackBucket {} of this namespace records bucket {id}, which a \
             FlashbackBucket of another namespace manages; a repository groups no other \
             namespace's bucket",
            reference.name
        ),
    };
    Some(Stall {
        reason: Reason::ManagedByAnotherObject,
        message,
    })
}

/// Whether the repository names any bucket by `bucketRef`.
pub fn names_buckets(repo: &FlashbackRepository) -> bool {
    repo.spec.buckets.iter().any(|b| b.bucket_ref.is_some())
}

/// The repository with every `bucketRef` replaced by the id of its FlashbackBucket, or the
/// state it waits in, naming the first bucket that is not Ready.
pub fn resolve_buckets(
    repo: &FlashbackRepository,
    lookup: impl Fn(&str) -> NamedBucket,
) -> Result<FlashbackRepository, State> {
    let mut resolved = repo.clone();
    for bucket in &mut resolved.spec.buckets {
        let Some(reference) = &bucket.bucket_ref else {
            continue;
        };
        let name = &reference.name;
        match lookup(name) {
            NamedBucket::Ready(id) => bucket.bucket_id = Some(id),
            NamedBucket::Missing => {
                return Err(State::Progressing {
                    reason: Reason::BucketNotReady,
                    message: format!(
                        "waiting for the FlashbackBucket {name} in this namespace to exist"
                    ),
                });
            }
            NamedBucket::NotReady => {
                return Err(State::Progressing {
                    reason: Reason::BucketNotReady,
                    message: format!("waiting for the FlashbackBucket {name} to be Ready"),
                });
            }
        }
    }
    Ok(resolved)
}

/// Whether the remote repository already is what the spec asks for. Bucket order is not
/// significant; an unset folder equals an empty one.
pub fn matches(desired: &RepoWrite, remote: &Repo) -> bool {
    let want = bucket_set(
        desired
            .repo_buckets
            .iter()
            .map(|b| (b.bucket_id.as_str(), b.folder.as_deref(), b.master)),
    );
    let have = bucket_set(
        remote
            .buckets
            .iter()
            .map(|b| (b.bucket_id.as_str(), b.folder.as_deref(), b.master)),
    );
    desired.name == remote.name
        && desired.storage_type == remote.storage_type
        && desired.mode == remote.mode
        && (remote.workspace_id.is_none() || remote.workspace_id == desired.workspace_id)
        && want == have
}

/// Buckets as a sorted list of (id, folder, master), an unset folder read as empty.
fn bucket_set<'a>(
    buckets: impl Iterator<Item = (&'a str, Option<&'a str>, bool)>,
) -> Vec<(&'a str, &'a str, bool)> {
    let mut set: Vec<_> = buckets
        .map(|(id, folder, master)| (id, folder.unwrap_or(""), master))
        .collect();
    set.sort_unstable();
    set
}

/// What a reconcile should do with the remote repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No repository exists yet: create one.
    Create,
    /// The repository exists and differs from the spec: send the whole spec.
    Update {
        repo_id: String,
    },
    /// The repository exists and matches the spec.
    InSync {
        repo_id: String,
    },
    /// ObserveOnly: report the repository, never write.
    Observe {
        repo_id: String,
        in_sync: bool,
    },
    /// Paused by annotation: report, never write. No id when nothing was created yet.
    Paused {
        repo_id: Option<String>,
        in_sync: bool,
    },
    Stall(Stall),
}

/// Decides from the object, the listing of its workspace, and `held`, which tells whether
/// another object manages a repository id (see [`holds`]). The repository is found by the
/// adoption annotation, else by the id in status, else as the result of this object's own
/// unfinished create (the create marker); never by its name alone (under ObserveOnly either).
/// A repository that another object manages is never adopted, claimed or observed.
pub fn decide(
    repo: &FlashbackRepository,
    workspace: &Workspace,
    identity: &Identity,
    held: impl Fn(&str) -> bool,
) -> Decision {
    let desired = desired(repo);
    let status = repo.status.as_ref();
    let recorded = status.and_then(|s| s.repo_id.as_deref());
    let recorded_here = identity.confirmed(status.and_then(|s| s.recorded_with.as_ref()));
    let workspace_id = &repo.spec.workspace_id;
    let observe_only = repo.spec.management_policy == ManagementPolicy::ObserveOnly;
    let by_id = |id: &str| workspace.by_id(id);
    let by_name = workspace.named(&desired.name).next();

    let found = if let Some(id) = repo.adopted_repo_id() {
        if held(id) {
            return Decision::Stall(managed_elsewhere(id));
        }
        match by_id(id) {
            Some(remote) => Some(remote),
            None => {
                return Decision::Stall(Stall {
                    reason: Reason::AdoptedRepoNotFound,
                    message: format!(
                        "no repository with id {id} exists in workspace {workspace_id} \
                         (named by annotation {})",
                        annotations::REPO_ID
                    ),
                });
            }
        }
    } else if let Some(remote) = recorded
        .and_then(by_id)
        .filter(|remote| recorded_here || remote.name == desired.name)
    {
        // Recorded with these credentials, or, after they changed, listed with the new ones
        // under this object's name.
        if held(&remote.id) {
            return Decision::Stall(managed_elsewhere(&remote.id));
        }
        Some(remote)
    } else if let Some(id) = recorded.filter(|_| !recorded_here) {
        return Decision::Stall(recorded_elsewhere(
            "repository",
            id,
            &desired.name,
            workspace_id,
        ));
    } else if let Some(remote) = create_attempt::read(repo)
        .filter(|attempt| identity.sent(attempt))
        .and_then(|attempt| {
            workspace
                .named(&attempt.name)
                .find(|r| create_attempt::made(&attempt, r) && !held(&r.id))
        })
    {
        Some(remote)
    } else if let Some(remote) = by_name {
        if held(&remote.id) {
            return Decision::Stall(Stall {
                reason: Reason::NameAlreadyUsed,
                message: format!(
                    "a repository named {:?} already exists in workspace {workspace_id} and \
                     is managed by another FlashbackRepository; choose another spec.name",
                    desired.name
                ),
            });
        }
        // Not even to observe it: a name is no consent, and another object's repository
        // between its create and its status write would be taken from it (and, switched to
        // Full, written over).
        let verb = if observe_only { "observe" } else { "manage" };
        return Decision::Stall(Stall {
            reason: Reason::NameAlreadyUsed,
            message: format!(
                "a repository named {:?} already exists in workspace {workspace_id} (id {}) and \
                 was not created for this object; to {verb} it, set the annotation {}: {}",
                desired.name,
                remote.id,
                annotations::REPO_ID,
                remote.id
            ),
        });
    } else {
        None
    };

    let found = found.map(|remote| (remote.id.clone(), matches(&desired, remote)));
    match management::step(repo.spec.management_policy, repo.is_paused(), found) {
        Step::Create => Decision::Create,
        Step::Update(repo_id) => Decision::Update { repo_id },
        Step::InSync(repo_id) => Decision::InSync { repo_id },
        Step::Observe { id, in_sync } => Decision::Observe {
            repo_id: id,
            in_sync,
        },
        Step::Paused { id, in_sync } => Decision::Paused {
            repo_id: id,
            in_sync,
        },
        Step::NotFound => Decision::Stall(management::not_found(
            "repository",
            &desired.name,
            workspace_id,
        )),
    }
}

/// The stall of an object asked to adopt a repository another object manages. It names
/// neither that object nor its namespace: they may be another tenant's.
fn managed_elsewhere(repo_id: &str) -> Stall {
    Stall {
        reason: Reason::ManagedByAnotherObject,
        message: format!(
            "repository {repo_id} is managed by another FlashbackRepository; an object adopts \
             only a repository that no other object manages"
        ),
    }
}

/// Whether `other` manages the repository `repo_id` rather than `me`, who acts with
/// `identity` (see [`ownership::holds`]): its status records the id on the same API, and `me`
/// did not record it there first.
pub fn holds(
    other: &FlashbackRepository,
    me: &FlashbackRepository,
    repo_id: &str,
    identity: &Identity,
) -> bool {
    ownership::holds(&claim(other), &claim(me), repo_id, identity)
}

/// What an object's status records of its repository, as [`ownership`] reads it.
pub fn claim(repo: &FlashbackRepository) -> Claim<'_> {
    let status = repo.status.as_ref();
    Claim {
        uid: repo.metadata.uid.as_deref(),
        id: status.and_then(|s| s.repo_id.as_deref()),
        with: status.and_then(|s| s.recorded_with.as_ref()),
        created: repo.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

/// Whether a resync must reconcile the object: the decision would change the remote, or the
/// status does not already say what the decision would make it say.
pub fn needs_reconcile(repo: &FlashbackRepository, decision: &Decision) -> bool {
    let Some(status) = &repo.status else {
        return true;
    };
    let released = status.repo_id.is_some()
        && !repo
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == crate::crd::FINALIZER);
    if status.observed_generation != repo.metadata.generation
        || repo.pending_reconcile_request().is_some()
        || released
    {
        return true;
    }
    let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
    let (ready, reason, repo_id) = match decision {
        Decision::Create | Decision::Update { .. } => return true,
        Decision::Stall(stall) => {
            return !condition("Stalled")
                .is_some_and(|c| c.status == "True" && c.reason == stall.reason.as_str());
        }
        Decision::InSync { repo_id } => ("True", Reason::Synced, Some(repo_id)),
        Decision::Observe { repo_id, in_sync } => {
            let reason = observed(*in_sync).reason();
            (
                if *in_sync { "True" } else { "False" },
                reason,
                Some(repo_id),
            )
        }
        Decision::Paused { repo_id, in_sync } => {
            let reason = paused(repo_id.is_some(), *in_sync).reason();
            (
                if *in_sync { "True" } else { "False" },
                reason,
                repo_id.as_ref(),
            )
        }
    };
    // An id recorded before records were kept is recorded anew by the reconcile.
    !(condition("Ready").is_some_and(|c| c.status == ready && c.reason == reason.as_str())
        && repo_id.is_none_or(|id| status.repo_id.as_ref() == Some(id))
        && (repo_id.is_none() || status.recorded_with.is_some()))
}

/// Whether an update corrects drift (the remote changed behind the operator's back) rather
/// than applying a new spec: the spec generation was already reconciled to Ready.
pub fn is_drift(repo: &FlashbackRepository) -> bool {
    let Some(status) = &repo.status else {
        return false;
    };
    status.observed_generation.is_some()
        && status.observed_generation == repo.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Ready: the remote repository matches the spec.
pub fn synced() -> State {
    State::Ready {
        reason: Reason::Synced,
        message: "the remote repository matches the spec".into(),
    }
}

/// Reconciling, before a create: the status write that also records the attempt.
pub fn creating() -> State {
    State::Progressing {
        reason: Reason::Creating,
        message: "creating the remote repository".into(),
    }
}

/// Reconciling, before an update.
pub fn updating() -> State {
    State::Progressing {
        reason: Reason::Updating,
        message: "updating the remote repository".into(),
    }
}

/// ObserveOnly: what the object says after looking at its remote repository.
pub fn observed(in_sync: bool) -> State {
    management::observed("the remote repository", in_sync)
}

/// Paused by annotation: in step, or waiting, saying whether a remote repository exists.
pub fn paused(exists: bool, in_sync: bool) -> State {
    if in_sync {
        return State::Ready {
            reason: Reason::Synced,
            message: "the remote repository matches the spec; remote writes are paused".into(),
        };
    }
    State::Waiting {
        reason: Reason::Paused,
        message: format!(
            "remote writes are paused by the annotation {}: \"true\"; the remote repository {}",
            annotations::PAUSED,
            if exists {
                "differs from the spec"
            } else {
                "has not been created"
            }
        ),
    }
}

/// Reconciling after a failed API call that is worth another try.
pub fn retrying(operation: &str, error: &ApiError) -> State {
    State::Progressing {
        reason: Reason::RemoteUnavailable,
        message: format!("could not {operation}, will retry: {error}"),
    }
}

/// The Event of an update: drift corrected, or a new generation applied.
pub fn updated(repo: &FlashbackRepository, drift: bool, repo_id: &str) -> (Reason, String) {
    if drift {
        (
            Reason::DriftCorrected,
            format!(
                "remote repository {repo_id} had changed outside the operator and was set back \
                 to the spec"
            ),
        )
    } else {
        (
            Reason::Updated,
            format!(
                "updated remote repository {repo_id} to generation {}",
                repo.metadata.generation.unwrap_or_default()
            ),
        )
    }
}

/// The Event when the adoption annotation makes `repo` take over `repo_id`, naming the
/// repository it managed before, if any, which is left in Flashback; `None` when `repo`
/// already manages `repo_id` or was not asked to adopt it.
pub fn adoption_note(repo: &FlashbackRepository, repo_id: &str) -> Option<String> {
    let known = repo.status.as_ref().and_then(|s| s.repo_id.as_deref());
    if known == Some(repo_id) || repo.adopted_repo_id() != Some(repo_id) {
        return None;
    }
    Some(match known {
        Some(previous) => format!(
            "adopted remote repository {repo_id}; the repository it managed before, \
             {previous}, is left in Flashback as it is"
        ),
        None => format!("adopted remote repository {repo_id}"),
    })
}

/// Why deleting the object leaves its remote repository in Flashback, if it does.
pub fn kept_on_delete(repo: &FlashbackRepository) -> Option<&'static str> {
    let spec = &repo.spec;
    management::kept_on_delete(
        spec.management_policy,
        spec.deletion_policy,
        repo.is_paused(),
    )
}

/// The stall of a delete that has no usable credentials: it keeps the remote repository, and
/// says how to release the object anyway.
pub fn delete_without_credentials(problem: &CredentialsError) -> Stall {
    let mut stall = credentials_stall(problem);
    stall.message.push_str(
        "; the remote repository is kept until then (set deletionPolicy: Orphan to release the \
         object without deleting it)",
    );
    stall
}

/// `POST /repo` refused the name and the workspace shows no repository of that name: another
/// workspace of the organisation uses it.
pub fn name_used_elsewhere(name: &str, workspace: &str) -> Stall {
    Stall {
        reason: Reason::NameAlreadyUsed,
        message: format!(
            "the Flashback API refused the name {name:?}: another repository of the \
             organisation uses it, outside workspace {workspace}; choose another spec.name"
        ),
    }
}

/// The stall an API error means for the repository, or `None` when it is worth a retry (see
/// [`api_stall_for`]).
pub fn api_stall(error: &ApiError, repo: &FlashbackRepository) -> Option<Stall> {
    api_stall_for(error, repo, "repository", repo.remote_name())
}

/// The FlashbackAccessKeys (of `keys`) that name `repo` and still hold a live key.
pub fn keys_holding(
    repo: &FlashbackRepository,
    keys: &[std::sync::Arc<crate::crd::FlashbackAccessKey>],
) -> Vec<String> {
    use kube::ResourceExt;
    let mut names: Vec<String> = keys
        .iter()
        .filter(|key| {
            key.namespace() == repo.namespace()
                && Some(&key.spec.repository_ref.name) == repo.metadata.name.as_ref()
                && key.status.as_ref().is_some_and(|s| s.key_id.is_some())
        })
        .map(|key| key.name_any())
        .collect();
    names.sort();
    names
}

/// Reconciling while a deletion waits for the keys of `holding` to be revoked.
pub fn waiting_for_keys(holding: &[String]) -> State {
    State::Progressing {
        reason: Reason::AccessKeysRemaining,
        message: format!(
            "waiting for the keys of the FlashbackAccessKeys {} to be revoked",
            holding.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API and credentials the objects of these tests act with.
    fn here() -> Identity {
        crate::fixtures::identity()
    }
    use crate::crd::{DeletionPolicy, ManagementPolicy, RepositoryBucket};
    use crate::fixtures;

    fn remote_of(repo: &FlashbackRepository, id: &str) -> Repo {
        fixtures::remote_repo(id, &desired(repo))
    }

    fn none_held(_: &str) -> bool {
        false
    }

    /// Marks `repo` as having started a create of its current spec at `at`.
    fn mark(repo: &mut FlashbackRepository, at: &str) {
        let attempt = create_attempt::next(None, &desired(repo), at.parse().unwrap());
        repo.status
            .get_or_insert_with(Default::default)
            .create_attempt = Some(attempt);
    }

    #[test]
    fn an_id_recorded_with_other_credentials_counts_only_when_listed_under_the_objects_name() {
        let mut repo = fixtures::repo("team-a", "media");
        let mut status = fixtures::ready_status("r1", 1);
        let elsewhere = Identity::new(
            &"http://127.0.0.1:9/".parse().unwrap(),
            &crate::controller::credentials::SecretName {
                namespace: "team-a".into(),
                name: "own".into(),
            },
        );
        status.recorded_with = Some(elsewhere.record(
            None,
            None,
            "r1",
            &fixtures::time("2026-12-07T10:00:00Z"),
            None,
        ));
        repo.status = Some(status);

        // Listed here under another name: someone else's repository, not acted on.
        let mut theirs = remote_of(&repo, "r1");
        theirs.name = "victims-name".into();
        let Decision::Stall(stall) =
            decide(&repo, &Workspace::from(vec![theirs]), &here(), none_held)
        else {
            panic!("a stall");
        };
        assert_eq!(stall.reason, Reason::CredentialsChanged);
        assert_eq!(
            stall.message,
            "the repository id r1 in the status was recorded with other credentials or another \
             API, and the current ones do not list a repository \"media\" with that id in \
             workspace ws-1; restore the credentials, or adopt a repository they list by \
             annotation"
        );
        // Not listed at all: the same, never a create over it.
        let Decision::Stall(stall) = decide(&repo, &Workspace::default(), &here(), none_held)
        else {
            panic!("a stall");
        };
        assert_eq!(stall.reason, Reason::CredentialsChanged);
        // Listed under its own name: confirmed anew, unless another object holds it.
        let ours = remote_of(&repo, "r1");
        assert_eq!(
            decide(
                &repo,
                &Workspace::from(vec![ours.clone()]),
                &here(),
                none_held
            ),
            Decision::InSync {
                repo_id: "r1".into()
            }
        );
        let Decision::Stall(stall) = decide(&repo, &Workspace::from(vec![ours]), &here(), |id| {
            id == "r1"
        }) else {
            panic!("a stall");
        };
        assert_eq!(stall.reason, Reason::ManagedByAnotherObject);
        // With the credentials that confirmed it, as before: gone there, made again.
        assert_eq!(
            decide(&repo, &Workspace::default(), &elsewhere, none_held),
            Decision::Create
        );
    }

    #[test]
    fn a_bucket_another_namespace_manages_is_not_named_by_id() {
        let repo = fixtures::repo("team-a", "media");
        let named = repo.spec.buckets[0].bucket_id.clone().unwrap();
        let mut theirs = fixtures::bucket("team-b", "photos");
        theirs.status = Some(crate::crd::FlashbackBucketStatus {
            bucket_id: Some(named.clone()),
            ..Default::default()
        });
        let mut ours = fixtures::bucket("team-a", "photos");
        ours.status = theirs.status.clone();
        let stall = foreign_bucket(&repo, &[std::sync::Arc::new(theirs)]).expect("a stall");
        assert_eq!(stall.reason, Reason::ManagedByAnotherObject);
        assert!(
            stall
                .message
                .starts_with(&format!("bucket {named} is managed"))
        );
        assert_eq!(foreign_bucket(&repo, &[std::sync::Arc::new(ours)]), None);
        assert_eq!(foreign_bucket(&repo, &[]), None);
    }

    #[test]
    fn a_bucket_ref_resolved_to_another_namespaces_bucket_is_refused_too() {
        let mut repo = fixtures::repo("team-a", "media");
        let named = repo.spec.buckets[0].bucket_id.clone().unwrap();
        // As resolved from `bucketRef: photos` of team-a, whose status came to record it.
        repo.spec.buckets[0].bucket_ref = Some(crate::crd::BucketReference {
            name: "photos".into(),
        });
        let mut theirs = fixtures::bucket("team-b", "photos");
        theirs.status = Some(crate::crd::FlashbackBucketStatus {
            bucket_id: Some(named.clone()),
            ..Default::default()
        });
        let stall = foreign_bucket(&repo, &[std::sync::Arc::new(theirs)]).expect("a stall");
        assert_eq!(stall.reason, Reason::ManagedByAnotherObject);
        assert_eq!(
            stall.message,
            format!(
                "the FlashbackBucket photos of this namespace records bucket {named}, which a \
                 FlashbackBucket of another namespace manages; a repository groups no other \
                 namespace's bucket"
            )
        );
    }

    #[test]
    fn desired_follows_the_spec_and_defaults_the_name() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.spec.name = None;
        let body = desired(&repo);
        assert_eq!(body.name, "media");
        assert_eq!(body.mode, flashback::RepoMode::Mirror);
        assert_eq!(body.workspace_id.as_deref(), Some("ws-1"));
        assert_eq!(body.repo_buckets.len(), 2);
        assert!(body.repo_buckets[0].master);
        assert_eq!(body.repo_buckets[1].folder, None);
    }

    fn attached(ids: &[&str]) -> Vec<flashback::AiLlmRef> {
        ids.iter()
            .map(|id| flashback::AiLlmRef {
                ai_llm_id: id.to_string(),
            })
            .collect()
    }

    #[test]
    fn an_update_keeps_the_ai_models_attached_in_the_console() {
        let repo = fixtures::repo("team-a", "media");
        let mut listed = remote_of(&repo, "r1");
        listed.ai_llms = attached(&["llm-1", "llm-2"]);
        let body = desired_over(&repo, Some(&listed));
        assert_eq!(body.repo_ai_llms, attached(&["llm-1", "llm-2"]));
        // Everything else is still the spec's.
        assert_eq!(
            RepoWrite {
                repo_ai_llms: Vec::new(),
                ..body
            },
            desired(&repo)
        );
    }

    #[test]
    fn an_update_takes_the_rest_from_the_spec_not_from_the_listing() {
        let repo = fixtures::repo("team-a", "media");
        let mut listed = remote_of(&repo, "r1");
        listed.name = "renamed-by-hand".into();
        listed.mode = flashback::RepoMode::Backup;
        listed.buckets.clear();
        listed.disabled = Some(true);
        assert_eq!(desired_over(&repo, Some(&listed)), desired(&repo));
    }

    #[test]
    fn an_update_of_a_repository_not_in_the_view_sends_the_spec_alone() {
        let repo = fixtures::repo("team-a", "media");
        assert_eq!(desired_over(&repo, None), desired(&repo));
    }

    #[test]
    fn a_create_attaches_no_ai_models() {
        let repo = fixtures::repo("team-a", "media");
        assert!(desired(&repo).repo_ai_llms.is_empty());
        let sent = serde_json::to_value(desired(&repo)).unwrap();
        assert!(sent.get("repoAiLlms").is_none(), "{sent}");
    }

    #[test]
    fn ai_models_attached_in_the_console_are_no_drift() {
        let repo = fixtures::repo("team-a", "media");
        let mut listed = remote_of(&repo, "r1");
        listed.ai_llms = attached(&["llm-1"]);
        assert!(matches(&desired(&repo), &listed));
        assert!(matches(&desired_over(&repo, Some(&listed)), &listed));
        let mut recorded = repo.clone();
        recorded.status = Some(fixtures::status_with_id("r1"));
        assert_eq!(
            decide(
                &recorded,
                &Workspace::from(vec![listed]),
                &here(),
                none_held
            ),
            Decision::InSync {
                repo_id: "r1".into()
            }
        );
    }

    #[test]
    fn matching_ignores_bucket_order_but_not_content() {
        let repo = fixtures::repo("team-a", "media");
        let want = desired(&repo);
        let mut remote = remote_of(&repo, "r1");
        remote.buckets.reverse();
        assert!(matches(&want, &remote));

        remote.buckets[0].master = !remote.buckets[0].master;
        assert!(!matches(&want, &remote));

        let mut renamed = remote_of(&repo, "r1");
        renamed.name = "other".into();
        assert!(!matches(&want, &renamed));
    }

    #[test]
    fn missing_repo_is_created() {
        let repo = fixtures::repo("team-a", "media");
        assert_eq!(
            decide(&repo, &Workspace::default(), &here(), none_held),
            Decision::Create
        );
    }

    #[test]
    fn known_repo_is_updated_only_when_it_differs() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.status = Some(fixtures::status_with_id("r1"));
        let remote = remote_of(&repo, "r1");
        assert_eq!(
            decide(
                &repo,
                &Workspace::from(vec![remote.clone()]),
                &here(),
                none_held
            ),
            Decision::InSync {
                repo_id: "r1".into()
            }
        );

        repo.spec.buckets.push(RepositoryBucket {
            bucket_id: Some("b3".into()),
            bucket_ref: None,
            folder: None,
            master: false,
        });
        assert_eq!(
            decide(&repo, &Workspace::from(vec![remote]), &here(), none_held),
            Decision::Update {
                repo_id: "r1".into()
            }
        );
    }

    #[test]
    fn a_name_we_did_not_create_stalls_unless_adopted() {
        let mut repo = fixtures::repo("team-a", "media");
        let other = remote_of(&repo, "someone-elses");
        let Decision::Stall(stall) = decide(
            &repo,
            &Workspace::from(vec![other.clone()]),
            &here(),
            none_held,
        ) else {
            panic!("expected a stall");
        };
        assert_eq!(stall.reason, Reason::NameAlreadyUsed);
        assert!(
            stall
                .message
                .contains("flashback.tech/repo-id: someone-elses"),
            "{}",
            stall.message
        );

        fixtures::annotate(&mut repo, annotations::REPO_ID, "someone-elses");
        assert_eq!(
            decide(&repo, &Workspace::from(vec![other]), &here(), none_held),
            Decision::InSync {
                repo_id: "someone-elses".into()
            }
        );
    }

    #[test]
    fn an_attempt_sent_to_another_api_claims_nothing_listed_here() {
        let mut repo = fixtures::repo("team-a", "media");
        mark(&mut repo, "2026-11-26T19:00:00Z");
        let own_server = Identity::new(
            &"http://127.0.0.1:9/".parse().unwrap(),
            &crate::controller::credentials::SecretName {
                namespace: "team-a".into(),
                name: "own".into(),
            },
        );
        let status = repo.status.as_mut().unwrap();
        let sent = own_server.stamp(status.create_attempt.take().unwrap());
        status.create_attempt = Some(sent);
        let mut theirs = remote_of(&repo, "r1");
        theirs.created_at = Some("2026-11-26T19:00:02Z".into());
        let Decision::Stall(stall) = decide(
            &repo,
            &Workspace::from(vec![theirs.clone()]),
            &here(),
            none_held,
        ) else {
            panic!("a stall");
        };
        assert_eq!(stall.reason, Reason::NameAlreadyUsed);
        assert_eq!(
            decide(
                &repo,
                &Workspace::from(vec![theirs]),
                &own_server,
                none_held
            ),
            Decision::InSync {
                repo_id: "r1".into()
            },
            "where it was sent, it claims what it made"
        );
    }

    #[test]
    fn after_a_crash_the_repo_we_created_is_found_by_the_name_it_was_sent_under() {
        let mut repo = fixtures::repo("team-a", "media");
        mark(&mut repo, "2026-11-26T19:00:00Z");
        let mut ours = remote_of(&repo, "r1");
        ours.created_at = Some("2026-11-26T19:00:02Z".into());
        assert_eq!(
            decide(
                &repo,
                &Workspace::from(vec![ours.clone()]),
                &here(),
                none_held
            ),
            Decision::InSync {
                repo_id: "r1".into()
            }
        );
        // Renamed before the operator came back: still found, and renamed by an update.
        repo.spec.name = Some("renamed".into());
        assert_eq!(
            decide(&repo, &Workspace::from(vec![ours]), &here(), none_held),
            Decision::Update {
                repo_id: "r1".into()
            }
        );
    }

    #[test]
    fn a_marker_never_claims_a_repo_that_another_object_holds_or_did_not_send() {
        let mut repo = fixtures::repo("team-a", "media");
        mark(&mut repo, "2026-11-26T19:00:00Z");
        let mut same = remote_of(&repo, "r1");
        same.created_at = Some("2026-11-26T19:00:02Z".into());
        let Decision::Stall(stall) =
            decide(&repo, &Workspace::from(vec![same.clone()]), &here(), |id| {
                id == "r1"
            })
        else {
            panic!("expected a stall");
        };
        assert_eq!(stall.reason, Reason::NameAlreadyUsed);
        assert!(!stall.message.contains("r1"), "{}", stall.message);

        let mut other_buckets = same.clone();
        other_buckets.buckets[1].bucket_id = "b9".into();
        assert!(matches!(
            decide(
                &repo,
                &Workspace::from(vec![other_buckets]),
                &here(),
                none_held
            ),
            Decision::Stall(Stall {
                reason: Reason::NameAlreadyUsed,
                ..
            })
        ));
        // Without a marker, a repository of the name is never claimed.
        repo.status = None;
        assert!(matches!(
            decide(&repo, &Workspace::from(vec![same]), &here(), none_held),
            Decision::Stall(Stall {
                reason: Reason::NameAlreadyUsed,
                ..
            })
        ));
    }

    #[test]
    fn an_id_another_object_manages_is_never_adopted() {
        let mut repo = fixtures::repo("team-b", "thief");
        fixtures::annotate(&mut repo, annotations::REPO_ID, "r1");
        let remote = remote_of(&repo, "r1");
        let Decision::Stall(stall) = decide(
            &repo,
            &Workspace::from(vec![remote.clone()]),
            &here(),
            |id| id == "r1",
        ) else {
            panic!("expected a stall");
        };
        assert_eq!(stall.reason, Reason::ManagedByAnotherObject);
        assert!(!stall.message.contains("team-a"), "{}", stall.message);
        // Once its own status records it and no older object's does, it is this object's.
        repo.status = Some(fixtures::status_with_id("r1"));
        assert_eq!(
            decide(&repo, &Workspace::from(vec![remote]), &here(), none_held),
            Decision::InSync {
                repo_id: "r1".into()
            }
        );
    }

    #[test]
    fn an_id_is_held_only_by_an_object_whose_status_records_it() {
        let mut owner = fixtures::repo("team-a", "owner");
        owner.metadata.uid = Some("uid-a".into());
        owner.metadata.creation_timestamp = Some(fixtures::time("2026-11-26T10:00:00Z"));
        let mut other = fixtures::repo("team-b", "other");
        other.metadata.uid = Some("uid-b".into());
        other.metadata.creation_timestamp = Some(fixtures::time("2026-11-26T09:00:00Z"));

        assert!(
            !holds(&owner, &owner, "r1", &here()),
            "an object never holds against itself"
        );
        owner.status = Some(fixtures::status_with_id("r1"));
        assert!(holds(&owner, &other, "r1", &here()));
        assert!(!holds(&owner, &other, "r2", &here()));

        // Asking by annotation, even from an older object, holds nothing.
        fixtures::annotate(&mut other, annotations::REPO_ID, "r1");
        assert!(!holds(&other, &owner, "r1", &here()));

        // Should both record it from before records were kept, each holds against the other:
        // neither acts until a person decides.
        other.status = Some(fixtures::status_with_id("r1"));
        assert!(holds(&other, &owner, "r1", &here()));
        assert!(holds(&owner, &other, "r1", &here()));
        // With records, the first to record it holds it, whatever the objects' ages.
        let at = |time: &str| here().record(None, None, "r1", &fixtures::time(time), None);
        owner.status.as_mut().unwrap().recorded_with = Some(at("2026-12-07T10:00:00Z"));
        other.status.as_mut().unwrap().recorded_with = Some(at("2026-12-07T11:00:00Z"));
        assert!(holds(&owner, &other, "r1", &here()));
        assert!(!holds(&other, &owner, "r1", &here()));
    }

    #[test]
    fn adopting_an_unknown_id_stalls() {
        let mut repo = fixtures::repo("team-a", "media");
        fixtures::annotate(&mut repo, annotations::REPO_ID, "nope");
        let Decision::Stall(stall) = decide(&repo, &Workspace::default(), &here(), none_held)
        else {
            panic!("expected a stall");
        };
        assert_eq!(stall.reason, Reason::AdoptedRepoNotFound);
    }

    #[test]
    fn a_repo_deleted_behind_our_back_is_created_again() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.status = Some(fixtures::status_with_id("gone"));
        mark(&mut repo, "2026-11-26T19:00:00Z");
        assert_eq!(
            decide(&repo, &Workspace::default(), &here(), none_held),
            Decision::Create
        );
    }

    #[test]
    fn paused_and_observe_only_never_write() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.status = Some(fixtures::status_with_id("r1"));
        let mut remote = remote_of(&repo, "r1");
        remote.name = "drifted".into();

        fixtures::annotate(&mut repo, annotations::PAUSED, "true");
        assert_eq!(
            decide(
                &repo,
                &Workspace::from(vec![remote.clone()]),
                &here(),
                none_held
            ),
            Decision::Paused {
                repo_id: Some("r1".into()),
                in_sync: false
            }
        );
        assert_eq!(
            decide(
                &fixtures::paused(fixtures::repo("team-a", "new")),
                &Workspace::default(),
                &here(),
                none_held
            ),
            Decision::Paused {
                repo_id: None,
                in_sync: false
            }
        );

        let mut observed = fixtures::repo("team-a", "media");
        observed.spec.management_policy = ManagementPolicy::ObserveOnly;
        assert!(matches!(
            decide(&observed, &Workspace::default(), &here(), none_held),
            Decision::Stall(Stall {
                reason: Reason::RemoteNotFound,
                ..
            })
        ));
        observed.status = Some(fixtures::status_with_id("r1"));
        assert_eq!(
            decide(
                &observed,
                &Workspace::from(vec![remote]),
                &here(),
                none_held
            ),
            Decision::Observe {
                repo_id: "r1".into(),
                in_sync: false
            }
        );
    }

    #[test]
    fn a_resync_reconciles_only_what_is_out_of_step() {
        let mut repo = fixtures::repo("team-a", "media");
        let in_sync = Decision::InSync {
            repo_id: "r1".into(),
        };
        assert!(needs_reconcile(&repo, &in_sync), "no status yet");
        repo.status = Some(fixtures::ready_status("r1", 1));
        assert!(
            needs_reconcile(&repo, &in_sync),
            "its finalizer was taken off"
        );
        repo.metadata.finalizers = Some(vec![crate::crd::FINALIZER.into()]);
        assert!(
            needs_reconcile(&repo, &in_sync),
            "an id recorded before records were kept is recorded anew"
        );
        repo.status.as_mut().unwrap().recorded_with = Some(here().record(
            None,
            None,
            "r1",
            &fixtures::time("2026-12-07T10:00:00Z"),
            None,
        ));
        assert!(!needs_reconcile(&repo, &in_sync), "in step: nothing to do");
        assert!(needs_reconcile(
            &repo,
            &Decision::Update {
                repo_id: "r1".into()
            }
        ));
        assert!(
            needs_reconcile(&repo, &Decision::Create),
            "gone behind our back"
        );
        assert!(
            needs_reconcile(
                &repo,
                &Decision::InSync {
                    repo_id: "r2".into()
                }
            ),
            "the status names another repository"
        );
        repo.metadata.generation = Some(2);
        assert!(needs_reconcile(&repo, &in_sync), "a new generation");
        repo.metadata.generation = Some(1);
        fixtures::annotate(&mut repo, annotations::RECONCILE_REQUESTED_AT, "now");
        assert!(needs_reconcile(&repo, &in_sync), "a person asked");
    }

    #[test]
    fn a_resync_leaves_a_stall_alone_until_its_reason_changes() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.metadata.finalizers = Some(vec![crate::crd::FINALIZER.into()]);
        let mut status = fixtures::status_with_id("r1");
        status.observed_generation = Some(1);
        status.conditions = vec![
            fixtures::condition("Ready", "False", "NameAlreadyUsed", 1),
            fixtures::condition("Stalled", "True", "NameAlreadyUsed", 1),
        ];
        repo.status = Some(status);
        let stall = |reason| {
            Decision::Stall(Stall {
                reason,
                message: String::new(),
            })
        };
        assert!(!needs_reconcile(&repo, &stall(Reason::NameAlreadyUsed)));
        assert!(needs_reconcile(&repo, &stall(Reason::AdoptedRepoNotFound)));
        assert!(
            needs_reconcile(&repo, &Decision::Create),
            "the name is free now"
        );
    }

    #[test]
    fn drift_is_an_update_of_an_already_ready_generation() {
        let mut repo = fixtures::repo("team-a", "media");
        assert!(!is_drift(&repo));
        repo.metadata.generation = Some(3);
        repo.status = Some(fixtures::ready_status("r1", 3));
        assert!(is_drift(&repo));
        repo.metadata.generation = Some(4);
        assert!(!is_drift(&repo));
    }

    #[test]
    fn a_delete_without_credentials_says_how_to_release() {
        let name: crate::controller::credentials::SecretName = "team-a/token".parse().unwrap();
        let on_delete = delete_without_credentials(&CredentialsError::SecretNotFound(name));
        assert_eq!(on_delete.reason, Reason::SecretNotFound);
        assert_eq!(
            on_delete.message,
            "the credentials Secret team-a/token does not exist; the remote repository is kept \
             until then (set deletionPolicy: Orphan to release the object without deleting it)"
        );
    }

    #[test]
    fn a_delete_keeps_the_remote_for_observe_only_orphan_or_paused() {
        let repo = fixtures::repo("team-a", "media");
        assert_eq!(kept_on_delete(&repo), None);
        let mut orphan = repo.clone();
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        assert_eq!(kept_on_delete(&orphan), Some("deletionPolicy is Orphan"));
        let mut observe = repo.clone();
        observe.spec.management_policy = ManagementPolicy::ObserveOnly;
        assert_eq!(
            kept_on_delete(&observe),
            Some("managementPolicy is ObserveOnly")
        );
        assert_eq!(
            kept_on_delete(&fixtures::paused(repo)),
            Some("remote writes are paused")
        );
    }

    #[test]
    fn waiting_and_paused_states_say_why_in_words() {
        assert_eq!(
            paused(false, false),
            State::Waiting {
                reason: Reason::Paused,
                message: "remote writes are paused by the annotation flashback.tech/paused: \
                          \"true\"; the remote repository has not been created"
                    .into(),
            }
        );
        assert_eq!(paused(true, false).reason(), Reason::Paused);
        assert!(
            paused(true, false)
                .message()
                .ends_with("differs from the spec")
        );
        assert_eq!(
            paused(true, true),
            State::Ready {
                reason: Reason::Synced,
                message: "the remote repository matches the spec; remote writes are paused".into(),
            }
        );
        assert_eq!(observed(true).reason(), Reason::Observed);
        assert_eq!(observed(false).reason(), Reason::OutOfSync);
        assert_eq!(
            observed(false).message(),
            "observed the remote repository; it differs from the spec, and managementPolicy \
             ObserveOnly never writes"
        );
        let error = ApiError::RateLimited { retry_after: None };
        assert_eq!(
            retrying("list repositories", &error),
            State::Progressing {
                reason: Reason::RemoteUnavailable,
                message: "could not list repositories, will retry: rate limited by the \
                          Flashback API"
                    .into(),
            }
        );
        assert_eq!(
            name_used_elsewhere("media", "ws-1"),
            Stall {
                reason: Reason::NameAlreadyUsed,
                message: "the Flashback API refused the name \"media\": another repository of \
                          the organisation uses it, outside workspace ws-1; choose another \
                          spec.name"
                    .into(),
            }
        );
    }

    #[test]
    fn updates_and_adoptions_are_told_apart() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.metadata.generation = Some(4);
        assert_eq!(
            updated(&repo, false, "r1"),
            (
                Reason::Updated,
                "updated remote repository r1 to generation 4".into()
            )
        );
        assert_eq!(updated(&repo, true, "r1").0, Reason::DriftCorrected);

        assert_eq!(adoption_note(&repo, "r1"), None, "not asked to adopt");
        fixtures::annotate(&mut repo, annotations::REPO_ID, "r1");
        assert_eq!(
            adoption_note(&repo, "r1").as_deref(),
            Some("adopted remote repository r1")
        );
        repo.status = Some(fixtures::status_with_id("r0"));
        assert_eq!(
            adoption_note(&repo, "r1").as_deref(),
            Some(
                "adopted remote repository r1; the repository it managed before, r0, is left \
                 in Flashback as it is"
            )
        );
        repo.status = Some(fixtures::status_with_id("r1"));
        assert_eq!(adoption_note(&repo, "r1"), None, "already its own");
    }

    #[test]
    fn a_deletion_waits_only_for_keys_of_this_repository_that_hold_one() {
        let repo = fixtures::repo("team-a", "media");
        let with = |namespace: &str, name: &str, repository: &str, holds: bool| {
            let mut key = fixtures::access_key(namespace, name);
            key.spec.repository_ref.name = repository.into();
            if holds {
                key.status = Some(crate::crd::FlashbackAccessKeyStatus {
                    key_id: Some("k1".into()),
                    ..Default::default()
                });
            }
            std::sync::Arc::new(key)
        };
        let keys = [
            with("team-a", "writer", "media", true),
            with("team-a", "reader", "media", true),
            with("team-a", "revoked", "media", false),
            with("team-a", "other", "photos", true),
            with("team-b", "elsewhere", "media", true),
        ];
        let holding = keys_holding(&repo, &keys);
        assert_eq!(holding, ["reader", "writer"]);
        assert_eq!(
            waiting_for_keys(&holding),
            State::Progressing {
                reason: Reason::AccessKeysRemaining,
                message: "waiting for the keys of the FlashbackAccessKeys reader, writer to be \
                          revoked"
                    .into(),
            }
        );
    }

    #[test]
    fn bucket_refs_resolve_to_ready_ids_or_name_what_they_wait_for() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.spec.buckets[1].bucket_id = None;
        repo.spec.buckets[1].bucket_ref = Some(crate::crd::BucketReference {
            name: "photos".into(),
        });
        assert!(names_buckets(&repo));
        let resolved = resolve_buckets(&repo, |name| {
            assert_eq!(name, "photos");
            NamedBucket::Ready("b7".into())
        })
        .unwrap();
        assert_eq!(desired(&resolved).repo_buckets[1].bucket_id, "b7");
        assert_eq!(
            resolve_buckets(&repo, |_| NamedBucket::Missing).unwrap_err(),
            State::Progressing {
                reason: Reason::BucketNotReady,
                message: "waiting for the FlashbackBucket photos in this namespace to exist".into(),
            }
        );
        assert_eq!(
            resolve_buckets(&repo, |_| NamedBucket::NotReady)
                .unwrap_err()
                .message(),
            "waiting for the FlashbackBucket photos to be Ready"
        );
        let mut bucket = fixtures::bucket("team-a", "photos");
        assert_eq!(NamedBucket::of(None), NamedBucket::Missing);
        assert_eq!(NamedBucket::of(Some(&bucket)), NamedBucket::NotReady);
        bucket.status = Some(crate::crd::FlashbackBucketStatus {
            bucket_id: Some("b7".into()),
            conditions: vec![fixtures::condition("Ready", "True", "Synced", 1)],
            ..Default::default()
        });
        assert_eq!(
            NamedBucket::of(Some(&bucket)),
            NamedBucket::Ready("b7".into())
        );
        // Observed, and differing from its spec: it still exists under that id.
        let status = bucket.status.as_mut().unwrap();
        status.conditions = vec![fixtures::condition("Ready", "False", "OutOfSync", 1)];
        assert_eq!(
            NamedBucket::of(Some(&bucket)),
            NamedBucket::Ready("b7".into())
        );
        let status = bucket.status.as_mut().unwrap();
        status.conditions = vec![fixtures::condition("Ready", "False", "Paused", 1)];
        assert_eq!(NamedBucket::of(Some(&bucket)), NamedBucket::NotReady);
    }
}

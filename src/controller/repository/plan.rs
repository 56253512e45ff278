//! Pure decisions: what the remote repository should look like, whether it does, and what to
//! do about it. No I/O here, so every rule has a plain unit test.

use crate::controller::create_marker::CreateAttempt;
use crate::crd::{FlashbackRepository, ManagementPolicy, RepositoryMode, StorageType, annotations};

use flashback_client::{self as flashback, Repo, RepoBucketWrite, RepoWrite};

/// The repository the spec asks for, as the API's create and update body.
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
                bucket_id: b.bucket_id.clone(),
                folder: b.folder.clone(),
                master: b.master,
            })
            .collect(),
        repo_ai_llms: Vec::new(),
    }
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

/// A problem only a person can fix, with a CamelCase reason and a message for that person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub reason: &'static str,
    pub message: String,
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
/// unfinished create (the create marker), else, ObserveOnly, by name. A repository that
/// another object manages is never adopted, claimed or observed.
pub fn decide(
    repo: &FlashbackRepository,
    workspace: &[Repo],
    held: impl Fn(&str) -> bool,
) -> Decision {
    let desired = desired(repo);
    let workspace_id = &repo.spec.workspace_id;
    let observe_only = repo.spec.management_policy == ManagementPolicy::ObserveOnly;
    let by_id = |id: &str| workspace.iter().find(|r| r.id == id);
    let by_name = workspace.iter().find(|r| r.name == desired.name);

    let found = if let Some(id) = repo.adopted_repo_id() {
        if held(id) {
            return Decision::Stall(managed_elsewhere(id));
        }
        match by_id(id) {
            Some(remote) => Some(remote),
            None => {
                return Decision::Stall(Stall {
                    reason: "AdoptedRepoNotFound",
                    message: format!(
                        "no repository with id {id} exists in workspace {workspace_id} \
                         (named by annotation {})",
                        annotations::REPO_ID
                    ),
                });
            }
        }
    } else if let Some(remote) = repo
        .status
        .as_ref()
        .and_then(|s| s.repo_id.as_deref())
        .and_then(by_id)
    {
        if held(&remote.id) {
            return Decision::Stall(managed_elsewhere(&remote.id));
        }
        Some(remote)
    } else if let Some(remote) = CreateAttempt::read(repo)
        .and_then(|attempt| workspace.iter().find(|r| attempt.made(r) && !held(&r.id)))
    {
        Some(remote)
    } else if let Some(remote) = by_name {
        if held(&remote.id) {
            return Decision::Stall(Stall {
                reason: "NameAlreadyUsed",
                message: format!(
                    "a repository named {:?} already exists in workspace {workspace_id} and \
                     is managed by another FlashbackRepository; choose another spec.name",
                    desired.name
                ),
            });
        }
        if !observe_only {
            return Decision::Stall(Stall {
                reason: "NameAlreadyUsed",
                message: format!(
                    "a repository named {:?} already exists in workspace {workspace_id} \
                     (id {}) and was not created for this object; to manage it, set the \
                     annotation {}: {}",
                    desired.name,
                    remote.id,
                    annotations::REPO_ID,
                    remote.id
                ),
            });
        }
        Some(remote)
    } else {
        None
    };

    match found {
        Some(remote) => {
            let repo_id = remote.id.clone();
            let in_sync = matches(&desired, remote);
            if observe_only {
                Decision::Observe { repo_id, in_sync }
            } else if repo.is_paused() {
                Decision::Paused {
                    repo_id: Some(repo_id),
                    in_sync,
                }
            } else if in_sync {
                Decision::InSync { repo_id }
            } else {
                Decision::Update { repo_id }
            }
        }
        None if observe_only => Decision::Stall(Stall {
            reason: "RemoteNotFound",
            message: format!(
                "managementPolicy is ObserveOnly and no repository named {:?} exists in \
                 workspace {workspace_id}",
                desired.name
            ),
        }),
        None if repo.is_paused() => Decision::Paused {
            repo_id: None,
            in_sync: false,
        },
        None => Decision::Create,
    }
}

/// The stall of an object asked to adopt a repository another object manages. It names
/// neither that object nor its namespace: they may be another tenant's.
fn managed_elsewhere(repo_id: &str) -> Stall {
    Stall {
        reason: "ManagedByAnotherObject",
        message: format!(
            "repository {repo_id} is managed by another FlashbackRepository; an object adopts \
             only a repository that no other object manages"
        ),
    }
}

/// Whether `other` manages the repository `repo_id` rather than `me`: its status records the
/// id (it created it, or adopted it after finding it in its workspace). Asking for an id by
/// annotation holds nothing. Should two objects ever both record one id, the older (ties by
/// uid) holds it, so that exactly one of them acts on it.
pub fn holds(other: &FlashbackRepository, me: &FlashbackRepository, repo_id: &str) -> bool {
    let recorded = |r: &FlashbackRepository| {
        r.status.as_ref().and_then(|s| s.repo_id.as_deref()) == Some(repo_id)
    };
    let age = |r: &FlashbackRepository| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.metadata.uid.clone(),
        )
    };
    other.metadata.uid != me.metadata.uid
        && recorded(other)
        && !(recorded(me) && age(me) < age(other))
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
                .is_some_and(|c| c.status == "True" && c.reason == stall.reason);
        }
        Decision::InSync { repo_id } => ("True", "Synced", Some(repo_id)),
        Decision::Observe { repo_id, in_sync } if *in_sync => ("True", "Observed", Some(repo_id)),
        Decision::Observe { repo_id, .. } => ("False", "OutOfSync", Some(repo_id)),
        Decision::Paused { repo_id, in_sync } if *in_sync => ("True", "Synced", repo_id.as_ref()),
        Decision::Paused { repo_id, .. } => ("False", "Paused", repo_id.as_ref()),
    };
    !(condition("Ready").is_some_and(|c| c.status == ready && c.reason == reason)
        && repo_id.is_none_or(|id| status.repo_id.as_ref() == Some(id)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ManagementPolicy, RepositoryBucket};
    use crate::fixtures;

    fn remote_of(repo: &FlashbackRepository, id: &str) -> Repo {
        fixtures::remote_repo(id, &desired(repo))
    }

    fn none_held(_: &str) -> bool {
        false
    }

    /// Marks `repo` as having started a create of its current spec at `at`.
    fn mark(repo: &mut FlashbackRepository, at: &str) {
        let attempt = CreateAttempt::next(None, &desired(repo), at.parse().unwrap());
        repo.status
            .get_or_insert_with(Default::default)
            .create_attempt = Some(attempt);
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
        assert_eq!(decide(&repo, &[], none_held), Decision::Create);
    }

    #[test]
    fn known_repo_is_updated_only_when_it_differs() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.status = Some(fixtures::status_with_id("r1"));
        let remote = remote_of(&repo, "r1");
        assert_eq!(
            decide(&repo, std::slice::from_ref(&remote), none_held),
            Decision::InSync {
                repo_id: "r1".into()
            }
        );

        repo.spec.buckets.push(RepositoryBucket {
            bucket_id: "b3".into(),
            folder: None,
            master: false,
        });
        assert_eq!(
            decide(&repo, &[remote], none_held),
            Decision::Update {
                repo_id: "r1".into()
            }
        );
    }

    #[test]
    fn a_name_we_did_not_create_stalls_unless_adopted() {
        let mut repo = fixtures::repo("team-a", "media");
        let other = remote_of(&repo, "someone-elses");
        let Decision::Stall(stall) = decide(&repo, std::slice::from_ref(&other), none_held) else {
            panic!("expected a stall");
        };
        assert_eq!(stall.reason, "NameAlreadyUsed");
        assert!(
            stall
                .message
                .contains("flashback.tech/repo-id: someone-elses"),
            "{}",
            stall.message
        );

        fixtures::annotate(&mut repo, annotations::REPO_ID, "someone-elses");
        assert_eq!(
            decide(&repo, &[other], none_held),
            Decision::InSync {
                repo_id: "someone-elses".into()
            }
        );
    }

    #[test]
    fn after_a_crash_the_repo_we_created_is_found_by_the_name_it_was_sent_under() {
        let mut repo = fixtures::repo("team-a", "media");
        mark(&mut repo, "2026-11-26T19:00:00Z");
        let mut ours = remote_of(&repo, "r1");
        ours.created_at = Some("2026-11-26T19:00:02Z".into());
        assert_eq!(
            decide(&repo, std::slice::from_ref(&ours), none_held),
            Decision::InSync {
                repo_id: "r1".into()
            }
        );
        // Renamed before the operator came back: still found, and renamed by an update.
        repo.spec.name = Some("renamed".into());
        assert_eq!(
            decide(&repo, &[ours], none_held),
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
        let Decision::Stall(stall) = decide(&repo, std::slice::from_ref(&same), |id| id == "r1")
        else {
            panic!("expected a stall");
        };
        assert_eq!(stall.reason, "NameAlreadyUsed");
        assert!(!stall.message.contains("r1"), "{}", stall.message);

        let mut other_buckets = same.clone();
        other_buckets.buckets[1].bucket_id = "b9".into();
        assert!(matches!(
            decide(&repo, &[other_buckets], none_held),
            Decision::Stall(Stall {
                reason: "NameAlreadyUsed",
                ..
            })
        ));
        // Without a marker, a repository of the name is never claimed.
        repo.status = None;
        assert!(matches!(
            decide(&repo, &[same], none_held),
            Decision::Stall(Stall {
                reason: "NameAlreadyUsed",
                ..
            })
        ));
    }

    #[test]
    fn an_id_another_object_manages_is_never_adopted() {
        let mut repo = fixtures::repo("team-b", "thief");
        fixtures::annotate(&mut repo, annotations::REPO_ID, "r1");
        let remote = remote_of(&repo, "r1");
        let Decision::Stall(stall) = decide(&repo, std::slice::from_ref(&remote), |id| id == "r1")
        else {
            panic!("expected a stall");
        };
        assert_eq!(stall.reason, "ManagedByAnotherObject");
        assert!(!stall.message.contains("team-a"), "{}", stall.message);
        // Once its own status records it and no older object's does, it is this object's.
        repo.status = Some(fixtures::status_with_id("r1"));
        assert_eq!(
            decide(&repo, &[remote], none_held),
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
            !holds(&owner, &owner, "r1"),
            "an object never holds against itself"
        );
        owner.status = Some(fixtures::status_with_id("r1"));
        assert!(holds(&owner, &other, "r1"));
        assert!(!holds(&owner, &other, "r2"));

        // Asking by annotation, even from an older object, holds nothing.
        fixtures::annotate(&mut other, annotations::REPO_ID, "r1");
        assert!(!holds(&other, &owner, "r1"));

        // Should both record it, the older holds it, whoever asks.
        other.status = Some(fixtures::status_with_id("r1"));
        assert!(holds(&other, &owner, "r1"));
        assert!(!holds(&owner, &other, "r1"));
    }

    #[test]
    fn adopting_an_unknown_id_stalls() {
        let mut repo = fixtures::repo("team-a", "media");
        fixtures::annotate(&mut repo, annotations::REPO_ID, "nope");
        let Decision::Stall(stall) = decide(&repo, &[], none_held) else {
            panic!("expected a stall");
        };
        assert_eq!(stall.reason, "AdoptedRepoNotFound");
    }

    #[test]
    fn a_repo_deleted_behind_our_back_is_created_again() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.status = Some(fixtures::status_with_id("gone"));
        mark(&mut repo, "2026-11-26T19:00:00Z");
        assert_eq!(decide(&repo, &[], none_held), Decision::Create);
    }

    #[test]
    fn paused_and_observe_only_never_write() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.status = Some(fixtures::status_with_id("r1"));
        let mut remote = remote_of(&repo, "r1");
        remote.name = "drifted".into();

        fixtures::annotate(&mut repo, annotations::PAUSED, "true");
        assert_eq!(
            decide(&repo, std::slice::from_ref(&remote), none_held),
            Decision::Paused {
                repo_id: Some("r1".into()),
                in_sync: false
            }
        );
        assert_eq!(
            decide(
                &fixtures::paused(fixtures::repo("team-a", "new")),
                &[],
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
            decide(&observed, &[], none_held),
            Decision::Stall(Stall {
                reason: "RemoteNotFound",
                ..
            })
        ));
        observed.status = Some(fixtures::status_with_id("r1"));
        assert_eq!(
            decide(&observed, &[remote], none_held),
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
        assert!(!needs_reconcile(&repo, &stall("NameAlreadyUsed")));
        assert!(needs_reconcile(&repo, &stall("AdoptedRepoNotFound")));
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
}

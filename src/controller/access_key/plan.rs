//! Pure decisions for a `FlashbackAccessKey`: whether its repository lets it act, which remote
//! keys are this object's, whether the Secret still holds a live key of it, and what to do.
//! No I/O here.
//!
//! The rule that keeps exactly one live key: the plain secret exists only in the create answer
//! and in the Secret, so a key of this object that the Secret does not hold is of no use to
//! anyone (left by a crash between the create and the Secret write, or by a rotation) and is
//! deleted before anything else; a new key is created only when the Secret holds none that is
//! live and untouched, and the key it replaces is deleted once the Secret holds the new one.

use kube::ResourceExt;

use crate::controller::conditions::State;
use crate::controller::reason::Reason;
use crate::controller::stall::Stall;
use crate::crd::{AccessType, FlashbackAccessKey, FlashbackRepository};
use flashback_client::{self as flashback, RepoKey};

/// Where the referenced repository stands, as far as a key of it cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repository {
    /// No FlashbackRepository of that name in the namespace.
    Missing,
    /// Being deleted: its remote repository, with its keys, goes with it.
    Deleting,
    /// Not Ready, or no remote repository yet.
    NotReady,
    /// Ready, with this remote id.
    Ready { repo_id: String },
}

impl Repository {
    pub fn of(repo: Option<&FlashbackRepository>) -> Self {
        let Some(repo) = repo else {
            return Repository::Missing;
        };
        if repo.metadata.deletion_timestamp.is_some() {
            return Repository::Deleting;
        }
        let status = repo.status.as_ref();
        // Ready for the spec as it is now: a spec just changed (its credentials, say) is not
        // yet the repository the Ready condition speaks of.
        let ready = status.is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == "True"
                    && c.observed_generation == repo.metadata.generation
            })
        });
        match status.and_then(|s| s.repo_id.clone()) {
            Some(repo_id) if ready => Repository::Ready { repo_id },
            _ => Repository::NotReady,
        }
    }

    /// The remote repository id whose keys this object may have made, ready or not; `None`
    /// when there is none.
    pub fn remote_id(repo: Option<&FlashbackRepository>) -> Option<String> {
        repo?.status.as_ref()?.repo_id.clone()
    }
}

/// What the key's Secret is, as far as the operator may touch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretState {
    Absent,
    /// Exists and is not this object's: never written, never deleted.
    NotOwned,
    /// This object's: the access key id it holds (if any), the digest of its data (see
    /// [`digest`]) and its resourceVersion (for a conditional replace).
    Owned {
        access_key_id: Option<String>,
        digest: String,
        resource_version: String,
    },
}

/// What a reconcile of a key object does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Only a person can fix this.
    Stall(Stall),
    /// The Secret is intact, but the key it holds is not in the repository's list: look again
    /// later (a list a moment behind the create), never issue a key for it (a server that
    /// never lists it would make the operator issue keys without end).
    NotListed { key_id: String },
    /// Create a new key, write it into the Secret, then delete `retire` (the key the Secret
    /// held before, if any). `why` says what made a new key necessary.
    Issue { why: Issue, retire: Option<String> },
    /// The Secret holds a live key of this object: record it, and update its access type
    /// when the spec changed it.
    InSync { key: RepoKey, update_access: bool },
}

/// Why a new key is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// No key yet.
    First,
    /// A person asked for a rotation.
    Requested,
    /// The Secret was deleted, or holds no live key of this object.
    SecretLost,
    /// The Secret's data was changed by someone else (its digest is not the one written).
    SecretEdited,
}

impl Issue {
    /// The reason of the Event that reports the new key.
    pub fn reason(self) -> Reason {
        match self {
            Issue::First => Reason::Created,
            _ => Reason::Rotated,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Issue::First => "the first key",
            Issue::Requested => "a rotation was requested",
            Issue::SecretLost => "the Secret was deleted or held no live key",
            Issue::SecretEdited => "the Secret was changed by someone else",
        }
    }
}

/// The prefix of the names of the remote keys this object creates: its uid, which no other
/// object shares, so keys of other objects (or made by hand) are never touched.
pub fn key_name_prefix(key: &FlashbackAccessKey) -> String {
    format!("k8s-{}-", key.uid().unwrap_or_default())
}

/// The name of a new remote key of this object.
pub fn new_key_name(key: &FlashbackAccessKey, nonce: &str) -> String {
    format!("{}{nonce}", key_name_prefix(key))
}

/// The remote keys of `key` among `listed`.
pub fn own_keys<'a>(key: &FlashbackAccessKey, listed: &'a [RepoKey]) -> Vec<&'a RepoKey> {
    let prefix = key_name_prefix(key);
    listed
        .iter()
        .filter(|k| k.name.starts_with(&prefix))
        .collect()
}

/// The key the Secret holds, if it is a live key of this object.
pub fn held<'a>(
    key: &FlashbackAccessKey,
    listed: &'a [RepoKey],
    secret: &SecretState,
) -> Option<&'a RepoKey> {
    let SecretState::Owned {
        access_key_id: Some(id),
        ..
    } = secret
    else {
        return None;
    };
    own_keys(key, listed).into_iter().find(|k| &k.key == id)
}

/// This object's remote keys that the Secret does not hold: useless to anyone, deleted first.
pub fn unheld(key: &FlashbackAccessKey, listed: &[RepoKey], secret: &SecretState) -> Vec<String> {
    let held = held(key, listed, secret).map(|k| k.id.clone());
    own_keys(key, listed)
        .into_iter()
        .filter(|k| Some(&k.id) != held.as_ref())
        .map(|k| k.id.clone())
        .collect()
}

/// Whether the key is in step without asking the API: the Secret holds the data the operator
/// wrote for the recorded key, no rotation is pending and the access type is the one given.
/// Then a wake (a repository status change, the echo of the operator's own write) costs no call.
pub fn settled(key: &FlashbackAccessKey, secret: &SecretState) -> bool {
    let Some(status) = &key.status else {
        return false;
    };
    let SecretState::Owned { digest, .. } = secret else {
        return false;
    };
    status.key_id.is_some()
        && status.secret_digest.as_ref() == Some(digest)
        && status.access_type == Some(key.spec.access_type)
        && key.pending_rotation().is_none()
}

/// Decides for a key whose repository is Ready, from its Secret and the repository's keys.
pub fn decide(key: &FlashbackAccessKey, secret: &SecretState, listed: &[RepoKey]) -> Decision {
    let held = held(key, listed, secret);
    let status = key.status.as_ref();
    let recorded = status.and_then(|s| s.secret_digest.as_deref());
    match secret {
        SecretState::NotOwned => Decision::Stall(Stall {
            reason: Reason::SecretNotOwned,
            message: format!(
                "the Secret {} exists and was not created for this FlashbackAccessKey; the \
                 operator never writes a Secret it does not own: delete it, or choose another \
                 spec.secretName",
                key.secret_name()
            ),
        }),
        SecretState::Absent => Decision::Issue {
            why: if status.and_then(|s| s.key_id.as_ref()).is_none() {
                Issue::First
            } else {
                Issue::SecretLost
            },
            retire: None,
        },
        SecretState::Owned { digest, .. } if recorded != Some(digest.as_str()) => Decision::Issue {
            why: Issue::SecretEdited,
            retire: held.map(|k| k.id.clone()),
        },
        SecretState::Owned { .. } => match held {
            None => Decision::NotListed {
                key_id: status.and_then(|s| s.key_id.clone()).unwrap_or_default(),
            },
            Some(held) if key.pending_rotation().is_some() => Decision::Issue {
                why: Issue::Requested,
                retire: Some(held.id.clone()),
            },
            Some(held) => Decision::InSync {
                key: held.clone(),
                update_access: access_type(key.spec.access_type) != held.access_type,
            },
        },
    }
}

/// The most unheld keys one reconcile deletes: a list that names thousands (a hostile server
/// can answer anything) is worked off a few at a time, each reconcile taking its turn.
pub const DELETES_PER_RECONCILE: usize = 10;

/// The client's access type for the spec's.
pub fn access_type(access: AccessType) -> flashback::AccessType {
    match access {
        AccessType::READ => flashback::AccessType::Read,
        AccessType::WRITE => flashback::AccessType::Write,
        AccessType::ADMIN => flashback::AccessType::Admin,
    }
}

/// Waiting: the repository's id was not confirmed with the credentials it has now (they
/// changed, and its own reconcile has not confirmed the id with them yet).
pub fn id_unconfirmed(key: &FlashbackAccessKey) -> State {
    State::Progressing {
        reason: Reason::RepositoryNotReady,
        message: format!(
            "waiting for the FlashbackRepository {} to confirm its repository with its current \
             credentials",
            key.spec.repository_ref.name
        ),
    }
}

/// Waiting: the repository's remote writes are paused, and its keys with them.
pub fn repository_paused(key: &FlashbackAccessKey) -> State {
    State::Waiting {
        reason: Reason::Paused,
        message: format!(
            "the FlashbackRepository {} is paused by the annotation {}: \"true\"; no key is \
             issued, rotated or revoked until it is resumed",
            key.spec.repository_ref.name,
            crate::crd::annotations::PAUSED
        ),
    }
}

/// Reconciling while the repository does not let the key act; `None` once it does.
pub fn waiting(key: &FlashbackAccessKey, repository: &Repository) -> Option<State> {
    let name = &key.spec.repository_ref.name;
    let (reason, message) = match repository {
        Repository::Ready { .. } => return None,
        Repository::Missing => (
            Reason::RepositoryNotFound,
            format!("waiting for the FlashbackRepository {name} in this namespace to exist"),
        ),
        Repository::Deleting => (
            Reason::RepositoryNotReady,
            format!(
                "the FlashbackRepository {name} is being deleted; this object's keys were \
                 revoked"
            ),
        ),
        Repository::NotReady => (
            Reason::RepositoryNotReady,
            format!("waiting for the FlashbackRepository {name} to be Ready"),
        ),
    };
    Some(State::Progressing { reason, message })
}

/// Ready: the Secret holds a live key.
pub fn ready(key: &FlashbackAccessKey) -> State {
    State::Ready {
        reason: Reason::Synced,
        message: format!(
            "the Secret {} holds a live {:?} key of the repository",
            key.secret_name(),
            key.spec.access_type
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::answers::{implausible_answer, plausible_id};
    use crate::controller::digest::digest;
    use crate::crd::FlashbackAccessKeyStatus;
    use crate::fixtures;

    fn listed(id: &str, name: &str, access_key_id: &str) -> RepoKey {
        RepoKey {
            id: id.into(),
            name: name.into(),
            access_type: flashback::AccessType::Write,
            key: access_key_id.into(),
            created_at: None,
        }
    }

    fn owned(access_key_id: &str, digest: &str) -> SecretState {
        SecretState::Owned {
            access_key_id: Some(access_key_id.into()),
            digest: digest.into(),
            resource_version: "7".into(),
        }
    }

    /// A key object whose status says key k1 was written with data of digest `digest`.
    fn recorded(digest: &str) -> FlashbackAccessKey {
        let mut key = fixtures::access_key("team-a", "app");
        key.status = Some(FlashbackAccessKeyStatus {
            key_id: Some("k1".into()),
            secret_digest: Some(digest.into()),
            access_type: Some(AccessType::WRITE),
            ..Default::default()
        });
        key
    }

    #[test]
    fn only_keys_named_for_this_object_are_its_own() {
        let key = fixtures::access_key("team-a", "app");
        let prefix = key_name_prefix(&key);
        assert_eq!(prefix, "k8s-00000000-0000-0000-0000-0000000000aa-");
        let keys = [
            listed("k1", &format!("{prefix}n1"), "AK1"),
            listed("k2", "k8s-00000000-0000-0000-0000-0000000000bb-n1", "AK2"),
            listed("k3", "made-by-hand", "AK3"),
        ];
        let own: Vec<&str> = own_keys(&key, &keys)
            .iter()
            .map(|k| k.id.as_str())
            .collect();
        assert_eq!(own, ["k1"]);
        assert_eq!(new_key_name(&key, "n2"), format!("{prefix}n2"));
    }

    #[test]
    fn a_secret_of_someone_else_stalls() {
        let key = fixtures::access_key("team-a", "app");
        let Decision::Stall(stall) = decide(&key, &SecretState::NotOwned, &[]) else {
            panic!("a stall");
        };
        assert_eq!(stall.reason, Reason::SecretNotOwned);
        assert!(
            stall.message.starts_with("the Secret app exists"),
            "{}",
            stall.message
        );
    }

    #[test]
    fn the_first_key_is_issued_and_nothing_is_retired() {
        let key = fixtures::access_key("team-a", "app");
        assert_eq!(
            decide(&key, &SecretState::Absent, &[]),
            Decision::Issue {
                why: Issue::First,
                retire: None
            }
        );
    }

    #[test]
    fn an_intact_secret_needs_no_call_unless_rotation_or_access_changes() {
        let mut key = recorded("d1");
        assert!(settled(&key, &owned("AK1", "d1")));
        assert!(!settled(&key, &owned("AK1", "d2")), "data edited");
        assert!(!settled(&key, &SecretState::Absent));
        key.spec.access_type = AccessType::READ;
        assert!(!settled(&key, &owned("AK1", "d1")), "access type changed");
        let mut rotate = recorded("d1");
        fixtures::annotate_key(
            &mut rotate,
            crate::crd::annotations::ROTATE_REQUESTED_AT,
            "t1",
        );
        assert!(!settled(&rotate, &owned("AK1", "d1")));
    }

    #[test]
    fn a_held_untouched_key_is_in_sync_and_an_access_change_is_an_update() {
        let mut key = recorded("d1");
        let prefix = key_name_prefix(&key);
        let keys = [listed("k1", &format!("{prefix}a"), "AK1")];
        assert_eq!(
            decide(&key, &owned("AK1", "d1"), &keys),
            Decision::InSync {
                key: keys[0].clone(),
                update_access: false
            }
        );
        key.spec.access_type = AccessType::READ;
        assert_eq!(
            decide(&key, &owned("AK1", "d1"), &keys),
            Decision::InSync {
                key: keys[0].clone(),
                update_access: true
            }
        );
    }

    #[test]
    fn an_edited_lost_or_rotated_secret_gets_a_new_key_and_the_old_one_retires() {
        let mut key = recorded("d1");
        let prefix = key_name_prefix(&key);
        let keys = [listed("k1", &format!("{prefix}a"), "AK1")];
        assert_eq!(
            decide(&key, &owned("AK1", "d2"), &keys),
            Decision::Issue {
                why: Issue::SecretEdited,
                retire: Some("k1".into())
            }
        );
        assert_eq!(
            decide(&key, &SecretState::Absent, &keys),
            Decision::Issue {
                why: Issue::SecretLost,
                retire: None
            }
        );
        fixtures::annotate_key(&mut key, crate::crd::annotations::ROTATE_REQUESTED_AT, "t1");
        assert_eq!(
            decide(&key, &owned("AK1", "d1"), &keys),
            Decision::Issue {
                why: Issue::Requested,
                retire: Some("k1".into())
            }
        );
    }

    #[test]
    fn an_intact_secret_whose_key_is_not_listed_waits_instead_of_issuing() {
        let key = recorded("d1");
        let prefix = key_name_prefix(&key);
        // A server that lists the key under another access key id, or not at all.
        let keys = [listed("k1", &format!("{prefix}a"), "SOMETHING-ELSE")];
        assert_eq!(
            decide(&key, &owned("AK1", "d1"), &keys),
            Decision::NotListed {
                key_id: "k1".into()
            }
        );
        assert_eq!(
            decide(&key, &owned("AK1", "d1"), &[]),
            Decision::NotListed {
                key_id: "k1".into()
            }
        );
    }

    #[test]
    fn keys_of_this_object_the_secret_does_not_hold_are_deleted_first() {
        let key = recorded("d1");
        let prefix = key_name_prefix(&key);
        let keys = [
            listed("k1", &format!("{prefix}a"), "AK1"),
            listed("k2", &format!("{prefix}b"), "AK2"),
            listed("k3", "someone-elses", "AK3"),
        ];
        assert_eq!(unheld(&key, &keys, &owned("AK1", "d1")), ["k2"]);
        assert_eq!(unheld(&key, &keys, &SecretState::Absent), ["k1", "k2"]);
    }

    #[test]
    fn digests_follow_the_data_not_its_order_and_ids_must_be_plain() {
        let a = digest([("A", b"1".as_slice()), ("B", b"2".as_slice())]);
        assert_eq!(a, digest([("B", b"2".as_slice()), ("A", b"1".as_slice())]));
        assert_ne!(a, digest([("A", b"12".as_slice()), ("B", b"".as_slice())]));
        assert_eq!(a.len(), 64);
        assert!(plausible_id("5f0c6a1e-0b0d-4c1a-9d5e-3a2b1c0d9e8f"));
        assert!(plausible_id("AKIAIOSFODNN7EXAMPLE"));
        assert!(!plausible_id(""));
        assert!(!plausible_id(&"a".repeat(129)));
        assert!(!plausible_id("id with spaces"));
        assert!(!plausible_id("id\nline"));
        assert_eq!(
            implausible_answer("key id").reason,
            Reason::UnexpectedAnswer
        );
    }

    #[test]
    fn the_repository_must_be_ready_and_the_wait_names_it() {
        let key = fixtures::access_key("team-a", "app");
        assert_eq!(Repository::of(None), Repository::Missing);
        let mut repo = fixtures::repo("team-a", "media");
        assert_eq!(Repository::of(Some(&repo)), Repository::NotReady);
        repo.status = Some(fixtures::ready_status("r1", 1));
        assert_eq!(
            Repository::of(Some(&repo)),
            Repository::Ready {
                repo_id: "r1".into()
            }
        );
        assert_eq!(
            waiting(
                &key,
                &Repository::Ready {
                    repo_id: "r1".into()
                }
            ),
            None
        );
        let missing = waiting(&key, &Repository::Missing).unwrap();
        assert_eq!(missing.reason(), Reason::RepositoryNotFound);
        assert_eq!(
            missing.message(),
            "waiting for the FlashbackRepository media in this namespace to exist"
        );
        repo.metadata.deletion_timestamp = Some(fixtures::time("2026-11-28T12:00:00Z"));
        assert_eq!(Repository::of(Some(&repo)), Repository::Deleting);
        assert_eq!(
            waiting(&key, &Repository::Deleting).unwrap().reason(),
            Reason::RepositoryNotReady
        );
    }
}

//! The one vocabulary of reasons: every condition reason and every Event reason the operator
//! writes is a [`Reason`], so a person reading `kubectl describe` finds each of them in the
//! README's tables (a test checks that the README names them all).

use std::fmt;

macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// A CamelCase reason, as conditions and Events carry it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])+ $name,)+
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)+];

            /// The reason as written in a condition or an Event.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)+
                }
            }

            /// What the reason means: its doc comment, one source line per line.
            pub fn description(self) -> &'static str {
                match self {
                    $(Reason::$name => concat!($($doc, "\n"),+),)+
                }
            }
        }
    };
}

reasons! {
    // In step.
    /// Ready: the remote repository matches the spec.
    Synced,
    /// Ready, ObserveOnly: the remote repository or bucket was observed and matches the spec.
    Observed,

    // Out of step by choice.
    /// Waiting: remote writes are paused by annotation and the remote differs or is missing.
    Paused,
    /// Waiting, ObserveOnly: the remote repository or bucket differs from the spec.
    OutOfSync,

    // Working.
    /// Reconciling: a create is in flight.
    Creating,
    /// Reconciling: an update is in flight.
    Updating,
    /// Reconciling: a Flashback API call failed and will be retried.
    RemoteUnavailable,
    /// Reconciling (and a Warning Event): the remote repository could not be deleted yet.
    DeleteFailed,

    // A person must act (Stalled).
    /// The credentials Secret does not exist.
    SecretNotFound,
    /// The operator may not read the credentials Secret.
    SecretForbidden,
    /// The credentials Secret has no `token` key.
    TokenMissing,
    /// The token is not text (a bearer token must be a header value).
    TokenNotText,
    /// The Secret's `apiUrl` is not a URL the operator can call.
    InvalidApiUrl,
    /// The Secret's `apiUrl` names a host `--allowed-api-hosts` does not allow.
    ApiUrlNotAllowed,
    /// Neither a `credentialsSecretRef` nor the operator's default credentials.
    NoCredentials,
    /// The Flashback API rejected the token.
    Unauthorized,
    /// The Flashback API refused the refresh token (revoked, expired or already used): a new
    /// login must put a new `refreshToken` in the Secret.
    RefreshTokenRefused,
    /// The session of the credentials cannot be kept: the Secret `<name>-session` is not the
    /// operator's.
    SessionNotKept,
    /// The Flashback API does not let the token do this.
    Forbidden,
    /// The credentials cannot be used to build a client, or the Secret named is a session
    /// Secret the operator keeps for another.
    InvalidCredentials,
    /// The Flashback API answered more than the operator reads.
    ResponseTooLarge,
    /// The remote name is taken by a repository this object may not claim.
    NameAlreadyUsed,
    /// The Flashback API refused the repository (with its error code).
    SpecRejected,
    /// The repository named by the adoption annotation does not exist.
    AdoptedRepoNotFound,
    /// The repository is managed by another object.
    ManagedByAnotherObject,
    /// The recorded id was confirmed with other credentials or another API, and the current
    /// ones do not list it under the object's name.
    CredentialsChanged,
    /// ObserveOnly, and no repository or bucket of that name exists.
    RemoteNotFound,
    /// A key's Secret exists and was not created for it.
    SecretNotOwned,
    /// A bucket's cloud credentials Secret does not exist.
    CloudSecretNotFound,
    /// A bucket's cloud credentials Secret lacks a key its storage type needs.
    CloudCredentialsMissing,
    /// The bucket named by the adoption annotation does not exist.
    AdoptedBucketNotFound,
    /// The Kubernetes API refused the key's Secret as the operator would write it.
    SecretRejected,
    /// The Flashback API answered an id the operator will not write anywhere.
    UnexpectedAnswer,
    /// The Flashback API refused a create with 429 and no `Retry-After`: a quota (its bucket
    /// quota) that no retry lifts. Looked at again every resync interval.
    QuotaExceeded,
    /// The organisation of the credentials has no workspace of the spec's `workspaceId`
    /// (`GET /workspace` does not list it): nothing is created. Looked at again every resync.
    WorkspaceNotFound,
    /// The Flashback API refused a bucket's cloud credentials (HTTP 400 without an error code,
    /// its answer when the storage provider refuses them): the cloud credentials Secret must
    /// change.
    CloudCredentialsRejected,

    // Waiting on another object (Reconciling).
    /// A key's FlashbackRepository does not exist.
    RepositoryNotFound,
    /// A key's FlashbackRepository is not Ready, or is being deleted.
    RepositoryNotReady,
    /// A repository's FlashbackBucket does not exist or is not Ready.
    BucketNotReady,
    /// The key the Secret holds is not in the repository's key list (yet): looked at again.
    KeyNotListed,
    /// A repository being deleted waits for the keys of its FlashbackAccessKeys to be revoked.
    AccessKeysRemaining,
    /// A bucket being deleted waits while a repository uses it, or while the API refuses its
    /// delete with 403 (its answer both to a bucket in use and to a token that may not).
    BucketInUse,

    // Events only.
    /// A remote repository was created.
    Created,
    /// The remote repository was updated to a new generation.
    Updated,
    /// The remote repository had changed outside the operator and was set back.
    DriftCorrected,
    /// The adoption annotation made the object take over a repository.
    Adopted,
    /// The remote repository was deleted with its object.
    Deleted,
    /// The remote repository was left in Flashback when its object went.
    Orphaned,
    /// A delete found the repository managed by another object and left it.
    LeftInPlace,
    /// A stall ended.
    StallResolved,
    /// A key was replaced by a new one (requested, or its Secret was lost or edited).
    Rotated,

    // The reason of a condition that does not hold.
    /// The Reconciling condition is False.
    NotReconciling,
    /// The Stalled condition is False.
    NotStalled,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readmes_status_section_names_every_reason() {
        let readme = include_str!("../../docs/resources.md");
        let section = readme
            .split("\n### Status\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has a Status section");
        let missing: Vec<&str> = Reason::ALL
            .iter()
            .map(|reason| reason.as_str())
            .filter(|name| !section.contains(&format!("`{name}`")))
            .collect();
        assert_eq!(
            missing,
            Vec::<&str>::new(),
            "reasons the README does not name"
        );
    }

    #[test]
    fn reasons_are_camel_case_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let name = reason.as_str();
            assert!(name.starts_with(|c: char| c.is_ascii_uppercase()), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
            assert!(seen.insert(name), "{name} twice");
        }
        assert_eq!(Reason::Synced.to_string(), "Synced");
    }
}

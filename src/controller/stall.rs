//! What only a person can fix, and the rules every kind shares for it: a [`Stall`] (a reason
//! and a message for that person), and which credentials problems and API errors are stalls
//! rather than something a retry fixes. Pure, so each rule has a plain unit test; a kind's own
//! stalls (a name taken, an adoption refused) are in its `plan`.

use crate::controller::conditions::State;
use crate::controller::credentials::{self, CredentialsError};
use crate::controller::reason::Reason;
use flashback_client::ApiError;

/// A problem only a person can fix, with a CamelCase reason and a message for that person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub reason: Reason,
    pub message: String,
}

impl Stall {
    pub fn state(self) -> State {
        State::Stalled {
            reason: self.reason,
            message: self.message,
        }
    }
}

/// The stall of a credentials problem.
pub fn credentials_stall(problem: &CredentialsError) -> Stall {
    Stall {
        reason: match problem {
            CredentialsError::SecretNotFound(_) => Reason::SecretNotFound,
            CredentialsError::TokenMissing(_) => Reason::TokenMissing,
            CredentialsError::TokenNotText(..) => Reason::TokenNotText,
            CredentialsError::InvalidApiUrl(..) => Reason::InvalidApiUrl,
            CredentialsError::ApiUrlNotAllowed(..) => Reason::ApiUrlNotAllowed,
            CredentialsError::SecretForbidden(_) => Reason::SecretForbidden,
            CredentialsError::SessionSecretNamed(_) => Reason::InvalidCredentials,
            CredentialsError::NoDefault => Reason::NoCredentials,
        },
        message: problem.to_string(),
    }
}

/// The stall an API error means for an object of any kind, or `None` when it is worth a
/// retry: `subject` names what the API refused ("repository", "bucket"), `name` its remote
/// name, and the object's credentials Secret is named as the token's source.
pub fn api_stall_for(
    error: &ApiError,
    object: &impl credentials::Credentialed,
    subject: &str,
    name: &str,
) -> Option<Stall> {
    let error = match error {
        ApiError::RetriesExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    // An answer the client cannot read (a proxy's error page, say) is worth another try.
    if error.is_transient() || matches!(error, ApiError::Decode { .. }) {
        return None;
    }
    let secret = credentials::secret_for(object, None)
        .map(|name| format!("the Secret {name}"))
        .unwrap_or_else(|_| "the operator's default credentials".into());
    let login = credentials::secret_for(object, None)
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "NAMESPACE/NAME".into());
    let (reason, message) = match error {
        ApiError::Unauthorized => (
            Reason::Unauthorized,
            format!("the Flashback API rejected the token from {secret}"),
        ),
        ApiError::SessionRefused { message } => (
            Reason::RefreshTokenRefused,
            format!(
                "the Flashback API refused the refresh token from {secret} ({message}): it was \
                 revoked, expired or already used. Log in again \
                 (`flashback-operator login --email YOU --secret {login}`) to put a new \
                 `refreshToken` in it; every object of these credentials recovers on its own"
            ),
        ),
        ApiError::SessionStore { message, .. } => (
            Reason::SessionNotKept,
            format!("the session of {secret} cannot be kept: {message}"),
        ),
        ApiError::Forbidden { message } => (
            Reason::Forbidden,
            format!("the Flashback API does not let the token from {secret} do this: {message}"),
        ),
        ApiError::ResponseTooLarge { .. } => (
            Reason::ResponseTooLarge,
            format!("the Flashback API named by {secret} cannot be used: {error}"),
        ),
        ApiError::Config { reason, .. } => (
            Reason::InvalidCredentials,
            format!("the credentials from {secret} cannot be used: {reason}"),
        ),
        ApiError::NameAlreadyUsed { .. } => (
            Reason::NameAlreadyUsed,
            format!(
                "the Flashback API refused the name {name:?}: another {subject} of the \
                 organisation uses it"
            ),
        ),
        ApiError::InvalidSpec { code, message } => (
            Reason::SpecRejected,
            match crate::controller::api_codes::advice(code) {
                Some(advice) => {
                    format!(
                        "the Flashback API refused the {subject} with {code}: {message}; {advice}"
                    )
                }
                None => format!("the Flashback API refused the {subject} with {code}: {message}"),
            },
        ),
        ApiError::NotFound { message } => (
            Reason::SpecRejected,
            format!("the Flashback API refused the {subject} with NOT_FOUND: {message}"),
        ),
        other => (
            Reason::SpecRejected,
            format!("the Flashback API refused the {subject}: {other}"),
        ),
    };
    Some(Stall { reason, message })
}

/// The stall of a create refused as over a quota, or `None`: HTTP 429 without `Retry-After`
/// (the client hands a create such an answer back at once). The API answers its bucket quota
/// so, with no error code; a throttle would say how long to wait, and a 429 with
/// `Retry-After` stays one. `subject` names what was created, `name` its remote name.
pub fn create_quota_stall(error: &ApiError, subject: &str, name: &str) -> Option<Stall> {
    matches!(error, ApiError::RateLimited { retry_after: None }).then(|| Stall {
        reason: Reason::QuotaExceeded,
        message: format!(
            "the Flashback API refused to create the {subject} {name:?} with HTTP 429 and no \
             Retry-After: the organisation's {subject} quota is reached, and retrying does not \
             help; delete a {subject} or raise the quota (looked at again every resync)"
        ),
    })
}

/// The stall of an object whose recorded id was confirmed with other credentials or another
/// API, which the current ones do not list under its name.
pub fn recorded_elsewhere(kind: &str, id: &str, name: &str, workspace_id: &str) -> Stall {
    Stall {
        reason: Reason::CredentialsChanged,
        message: format!(
            "the {kind} id {id} in the status was recorded with other credentials or another \
             API, and the current ones do not list a {kind} {name:?} with that id in workspace \
             {workspace_id}; restore the credentials, or adopt a {kind} they list by annotation"
        ),
    }
}

/// The stall of a create refused with `NAME_ALREADY_USED` for a name that no workspace of the
/// organisation lists: a deleted repository or bucket still holds it, as the service keeps the
/// names of what it deleted (its deletes are soft). `kind` and `kinds` name what was created.
pub fn name_held_by_deleted(kind: &str, kinds: &str, name: &str) -> Stall {
    Stall {
        reason: Reason::NameAlreadyUsed,
        message: format!(
            "the Flashback API refused the name {name:?} as taken, but no {kind} of that name \
             is listed in any workspace these credentials can list: most likely a deleted \
             {kind} still holds it (the service keeps the names of deleted {kinds}); choose \
             another spec.name"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::FlashbackRepository;
    use crate::fixtures;

    /// The stall of `error` for a repository, as its reconcile asks for it.
    fn repository_stall(error: &ApiError, repo: &FlashbackRepository) -> Option<Stall> {
        api_stall_for(error, repo, "repository", repo.remote_name())
    }

    #[test]
    fn api_errors_a_person_must_fix_stall_and_the_rest_are_retried() {
        let repo = fixtures::repo("team-a", "media");
        let transient = ApiError::Transient {
            status: Some(503),
            reason: "unavailable".into(),
            retry_after: None,
            source: None,
        };
        assert_eq!(repository_stall(&transient, &repo), None);
        assert_eq!(
            repository_stall(&ApiError::RateLimited { retry_after: None }, &repo),
            None
        );
        let exhausted = ApiError::RetriesExhausted {
            attempts: 4,
            last: Box::new(transient),
        };
        assert_eq!(
            repository_stall(&exhausted, &repo),
            None,
            "judged by the last failure"
        );
        let decode = ApiError::Decode {
            endpoint: "list_repos",
            detail: "not JSON".into(),
            source: None,
        };
        assert_eq!(
            repository_stall(&decode, &repo),
            None,
            "a proxy's page is worth a retry"
        );

        let unauthorized = repository_stall(&ApiError::Unauthorized, &repo).unwrap();
        assert_eq!(unauthorized.reason, Reason::Unauthorized);
        assert_eq!(
            unauthorized.message,
            "the Flashback API rejected the token from the Secret team-a/flashback-token"
        );
        let invalid = ApiError::InvalidSpec {
            code: "INVALID_BUCKET".into(),
            message: "no bucket b9".into(),
        };
        let rejected = repository_stall(&invalid, &repo).unwrap();
        assert_eq!(rejected.reason, Reason::SpecRejected);
        assert_eq!(
            rejected.message,
            "the Flashback API refused the repository with INVALID_BUCKET: no bucket b9"
        );
        let taken = ApiError::NameAlreadyUsed {
            message: "taken".into(),
        };
        assert_eq!(
            repository_stall(&taken, &repo).unwrap().reason,
            Reason::NameAlreadyUsed
        );
        let mut defaulted = repo.clone();
        defaulted.spec.credentials_secret_ref = None;
        let forbidden = ApiError::Forbidden {
            message: "read only".into(),
        };
        assert_eq!(
            repository_stall(&forbidden, &defaulted).unwrap().message,
            "the Flashback API does not let the token from the operator's default credentials \
             do this: read only"
        );
    }

    #[test]
    fn a_create_answered_429_without_retry_after_is_a_quota_and_with_it_a_throttle() {
        let quota = create_quota_stall(
            &ApiError::RateLimited { retry_after: None },
            "bucket",
            "photos",
        )
        .unwrap();
        assert_eq!(quota.reason, Reason::QuotaExceeded);
        assert!(
            quota.message.starts_with(
                "the Flashback API refused to create the bucket \"photos\" with HTTP 429 and no \
                 Retry-After"
            ),
            "{}",
            quota.message
        );
        let throttled = ApiError::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(2)),
        };
        assert_eq!(create_quota_stall(&throttled, "bucket", "photos"), None);
        let coded = ApiError::QuotaExceeded {
            message: "later".into(),
            retry_after: None,
        };
        assert_eq!(
            create_quota_stall(&coded, "bucket", "photos"),
            None,
            "QUOTA_EXCEEDED waits and retries"
        );
        let exhausted = ApiError::RetriesExhausted {
            attempts: 4,
            last: Box::new(throttled),
        };
        assert_eq!(create_quota_stall(&exhausted, "bucket", "photos"), None);
    }

    #[test]
    fn a_name_no_listing_shows_is_held_by_a_deleted_one() {
        let stall = name_held_by_deleted("repository", "repositories", "media");
        assert_eq!(stall.reason, Reason::NameAlreadyUsed);
        assert_eq!(
            stall.message,
            "the Flashback API refused the name \"media\" as taken, but no repository of that \
             name is listed in any workspace these credentials can list: most likely a deleted \
             repository still holds it (the service keeps the names of deleted repositories); \
             choose another spec.name"
        );
    }

    #[test]
    fn each_credentials_problem_has_its_own_reason() {
        let name: credentials::SecretName = "team-a/token".parse().unwrap();
        let cases = [
            (
                CredentialsError::SecretNotFound(name.clone()),
                Reason::SecretNotFound,
            ),
            (
                CredentialsError::TokenMissing(name.clone()),
                Reason::TokenMissing,
            ),
            (
                CredentialsError::TokenNotText(name.clone(), "token"),
                Reason::TokenNotText,
            ),
            (
                CredentialsError::SecretForbidden(name),
                Reason::SecretForbidden,
            ),
            (CredentialsError::NoDefault, Reason::NoCredentials),
        ];
        for (problem, reason) in cases {
            let stall = credentials_stall(&problem);
            assert_eq!(stall.reason, reason);
            assert_eq!(stall.message, problem.to_string());
        }
    }
}

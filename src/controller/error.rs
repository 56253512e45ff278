//! Errors that end a reconcile early. All of them are worth a retry with backoff: problems
//! only a person can fix are not errors here but a `Stalled` status.

use std::time::Duration;

use flashback_client::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),

    #[error("Flashback API call to {operation} failed: {source}")]
    Remote {
        operation: &'static str,
        #[source]
        source: ApiError,
    },

    /// The object changed since it was read; the reconcile decides again on the new version.
    #[error("the object changed since it was read")]
    Stale,

    /// The remote does not show yet what the operator expects of it; looked at again after a
    /// backoff.
    #[error("{0}")]
    NotYet(String),

    /// The object was relabelled to another shard in the middle of the reconcile: this
    /// operator no longer acts on it (the other shard goes on).
    #[error("the object left this shard (its labels no longer match --selector)")]
    LeftShard,

    /// Deletion must wait for a person (credentials missing or rejected); the finalizer stays.
    #[error("the remote repository cannot be deleted yet: {0}")]
    CleanupBlocked(String),
}

impl Error {
    /// The least time to wait before the next try, when the API said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Remote { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// A short, stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::Stale => "stale",
            Error::Remote { source, .. } => source.metric_label(),
            Error::CleanupBlocked(_) => "cleanup_blocked",
            Error::NotYet(_) => "not_yet",
            Error::LeftShard => "left_shard",
        }
    }
}

impl Error {
    /// A failed conditional write: a conflict means the object changed, anything else is the
    /// Kubernetes API failing.
    pub fn from_write(error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if status.is_conflict() => Error::Stale,
            other => Error::Kube(other),
        }
    }

    /// Whether this only says that the object changed under the reconcile.
    pub fn is_stale(&self) -> bool {
        matches!(self, Error::Stale)
    }
}

impl From<kube::Error> for Error {
    fn from(error: kube::Error) -> Self {
        Error::Kube(error)
    }
}

//! A client for the Flashback platform API (`flashback-api.md`).
//!
//! It knows nothing of Kubernetes: typed requests and answers, bearer auth, a token-bucket rate
//! limit shared by clones, and retries of transient failures with capped, jittered backoff.

mod client;
mod decode;
mod error;
mod listing;
mod rate_limit;
mod retry;
mod secret;
mod session;
mod types;
mod workspace;

pub use client::{
    CallObserver, CallRecord, ClientConfig, DEFAULT_BASE_URL, FlashbackClient, Login,
};
pub use error::ApiError;
pub use rate_limit::RateLimit;
/// The URL type the client takes, so that callers need no HTTP crate of their own.
pub use reqwest::Url;
pub use retry::RetryPolicy;
pub use secret::{KeySecret, Token};
pub use session::{
    Auth, Claim, Session, SessionStore, SessionTokens, StoreError, StoreFuture, Stored,
};
pub use types::{
    AccessType, AiLlmRef, Bucket, BucketStats, BucketWrite, CreatedRepoKey, LoginUser, Repo,
    RepoBucket, RepoBucketWrite, RepoFilter, RepoKey, RepoKeyWrite, RepoMode, RepoStats, RepoWrite,
    StorageType,
};
pub use workspace::Workspace;

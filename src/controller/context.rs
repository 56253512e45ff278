//! What every reconcile shares: clients, the remote view, the event recorder, settings.

use kube::runtime::events::Recorder;

use kube::runtime::reflector::Store;

use crate::controller::backoff::Backoff;
use crate::controller::credentials::{
    ApiUrls, Credentials, CredentialsCache, CredentialsError, SecretName,
};
use crate::controller::fairness::Fairness;
use crate::controller::remote::Remote;
use crate::crd::FlashbackRepository;

/// A named step where a test can stop the operator, to kill it exactly there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Failpoint {
    /// Stop after the remote create answered, before the status is written.
    PauseAfterRemoteCreate,
}

/// An object's credentials: from the cache, or read from its Secret.
impl Context {
    pub async fn credentials_of(
        &self,
        repo: &FlashbackRepository,
    ) -> Result<Result<Credentials, CredentialsError>, kube::Error> {
        self.credentials
            .resolve(
                &self.kube,
                repo,
                self.default_credentials.as_ref(),
                &self.api_urls,
            )
            .await
    }
}

pub struct Context {
    pub kube: kube::Client,
    pub remote: Remote,
    pub recorder: Recorder,
    pub backoff: Backoff,
    pub fairness: Fairness,
    /// Credentials as last read from each Secret; the Secret watch keeps it current.
    pub credentials: std::sync::Arc<CredentialsCache>,
    /// Every object the operator watches: who manages which remote repository.
    pub store: Store<FlashbackRepository>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Where credentials may send their token.
    pub api_urls: ApiUrls,
    pub default_credentials: Option<SecretName>,
    pub failpoint: Option<Failpoint>,
}

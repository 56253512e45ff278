//! What every reconcile shares: the settings, the Kubernetes client, the remote view, the
//! event recorder, backoff, fairness, the credentials cache and the metrics.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use crate::controller::backoff::Backoff;
use crate::controller::credentials::{Credentials, CredentialsCache, CredentialsError};
use crate::controller::fairness::Fairness;
use crate::controller::remote::{Remote, RemoteSettings};
use crate::crd::{FlashbackAccessKey, FlashbackRepository};
use crate::metrics::Metrics;
use crate::settings::Settings;
use flashback_client::CallRecord;

pub struct Context {
    pub settings: Arc<Settings>,
    pub kube: kube::Client,
    pub remote: Remote,
    pub recorder: Recorder,
    pub backoff: Backoff,
    pub fairness: Fairness,
    /// Credentials as last read from each Secret; the Secret watch keeps it current.
    pub credentials: Arc<CredentialsCache>,
    /// Every repository object the operator watches: who manages which remote repository.
    pub repositories: Store<FlashbackRepository>,
    /// Every access key object the operator watches.
    pub access_keys: Store<FlashbackAccessKey>,
    pub metrics: Arc<Metrics>,
}

impl Context {
    pub fn new(
        kube: &kube::Client,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        repositories: Store<FlashbackRepository>,
        access_keys: Store<FlashbackAccessKey>,
    ) -> Self {
        let observer_metrics = metrics.clone();
        Context {
            kube: kube.clone(),
            remote: Remote::new(RemoteSettings {
                rate: settings.api_rate,
                burst: settings.api_burst,
                listing_max_age: settings.listing_max_age(),
                stats_batch_size: usize::from(settings.stats_batch_size),
                observer: Some(Arc::new(move |call: &CallRecord| {
                    observer_metrics.api_call(call)
                })),
            }),
            recorder: Recorder::new(
                kube.clone(),
                Reporter {
                    controller: "flashback-operator".into(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            ),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            credentials: Arc::default(),
            fairness: Fairness::new(
                usize::from(settings.concurrency),
                usize::from(settings.namespace_concurrency),
            ),
            repositories,
            access_keys,
            metrics,
            settings,
        }
    }

    /// Whether `namespace` is being deleted (or gone). Not knowing (the operator may not read
    /// namespaces) counts as no.
    pub async fn namespace_terminating(&self, namespace: &str) -> bool {
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.kube.clone());
        match namespaces.get_opt(namespace).await {
            Ok(found) => found.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
            Err(error) => {
                tracing::debug!(error = %error, "cannot tell whether the namespace is being deleted");
                false
            }
        }
    }

    /// An object's credentials: from the cache, or read from its Secret.
    pub async fn credentials_of(
        &self,
        repo: &FlashbackRepository,
    ) -> Result<Result<Credentials, CredentialsError>, kube::Error> {
        self.credentials
            .resolve(&self.kube, repo, &self.settings)
            .await
    }
}

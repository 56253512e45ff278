//! What every reconcile shares: the settings, the Kubernetes client, the remote view, the
//! Event publisher, backoff, fairness, the credentials cache and the metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::Store;

use crate::controller::backoff::Backoff;
use crate::controller::credentials::{
    Credentialed, Credentials, CredentialsCache, CredentialsError,
};
use crate::controller::error::Error;
use crate::controller::events::Publisher;
use crate::controller::fairness::{Fairness, Requeue};
use crate::controller::known_workspaces::KnownWorkspaces;
use crate::controller::remote::{Remote, RemoteSettings};
use crate::controller::shard::{self, Selector};
use crate::controller::status_write::KindStatus;
use crate::crd::{FlashbackAccessKey, FlashbackBucket, FlashbackRepository};
use crate::metrics::Metrics;
use crate::settings::Settings;
use flashback_client::CallRecord;

/// A watch cache per kind: a shard's own objects, or every object of the watched namespaces
/// whatever the selector (who holds which remote id, which bucket a repository uses, which keys
/// a repository has are questions about all of them; a shard reads these, and acts only on
/// its own objects).
#[derive(Clone)]
pub struct Stores {
    pub repositories: Store<FlashbackRepository>,
    pub access_keys: Store<FlashbackAccessKey>,
    pub buckets: Store<FlashbackBucket>,
}

/// One [`Requeue`] per kind.
pub struct Requeues {
    pub repositories: Requeue<FlashbackRepository>,
    pub access_keys: Requeue<FlashbackAccessKey>,
    pub buckets: Requeue<FlashbackBucket>,
}

pub struct Context {
    pub settings: Arc<Settings>,
    pub kube: kube::Client,
    pub remote: Remote,
    /// Which workspaces each credential's organisation has, asked before a create.
    pub workspaces: KnownWorkspaces,
    /// The names each credential's organisation lists, asked when a create's name is refused.
    pub organisation_names: crate::controller::organisation_names::OrganisationNames,
    pub events: Publisher,
    pub backoff: Backoff,
    pub fairness: Fairness,
    /// Where each kind's parked objects go back to its controller.
    pub requeue: Requeues,
    /// Credentials as last read from each Secret; the Secret watch keeps it current.
    pub credentials: Arc<CredentialsCache>,
    /// The repository objects this operator serves (those of its selector).
    pub repositories: Store<FlashbackRepository>,
    /// The access key objects this operator serves.
    pub access_keys: Store<FlashbackAccessKey>,
    /// The bucket objects this operator serves.
    pub buckets: Store<FlashbackBucket>,
    /// Every object of each kind, served here or by another shard.
    pub everyone: Stores,
    /// The selector of the objects this operator serves (`--selector`), if any.
    pub shard: Option<Selector>,
    /// When this process first reconciled each object (by uid), and whether its status then
    /// said Reconciling (it arrived mid-act), for the hand-over wait.
    first_seen: Mutex<HashMap<String, (Instant, bool)>>,
    pub metrics: Arc<Metrics>,
}

/// Sessions kept in Secrets beside the credentials Secrets, claimed in this process's name.
fn session_stores(kube: &kube::Client) -> crate::controller::remote::SessionStores {
    let kube = kube.clone();
    let holder = format!(
        "{}/{:016x}",
        std::env::var("POD_NAME").unwrap_or_else(|_| "flashback-operator".into()),
        rand::random::<u64>()
    );
    Arc::new(move |origin| {
        Arc::new(crate::controller::session::SecretSessionStore::new(
            kube.clone(),
            origin.secret.clone(),
            &origin.refresh_token,
            holder.clone(),
        ))
    })
}

impl Context {
    pub fn new(
        kube: &kube::Client,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        own: Stores,
        everyone: Stores,
        shard: Option<Selector>,
        requeue: Requeues,
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
                sessions: settings.sessions.then(|| session_stores(kube)),
            }),
            workspaces: KnownWorkspaces::new(settings.resync_interval),
            organisation_names: crate::controller::organisation_names::OrganisationNames::new(
                settings.resync_interval.min(Duration::from_secs(60)),
            ),
            events: Publisher::new(
                kube.clone(),
                "flashback-operator",
                std::env::var("POD_NAME").ok(),
            ),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            credentials: Arc::default(),
            fairness: Fairness::new(
                usize::from(settings.concurrency),
                usize::from(settings.namespace_concurrency),
            ),
            requeue,
            repositories: own.repositories,
            access_keys: own.access_keys,
            buckets: own.buckets,
            everyone,
            shard,
            first_seen: Mutex::default(),
            metrics,
            settings,
        }
    }

    /// Whether this operator serves `object` now: without a selector, every object; with
    /// one, an object whose labels match it, as the reconcile holds it and as the watch last
    /// showed it in `store` (the objects of this shard). Checked before every remote write,
    /// so that a shard stops acting on an object the moment its watch sees it relabelled to
    /// another shard, even in the middle of a reconcile.
    pub fn serves<K>(&self, store: &Store<K>, object: &K) -> bool
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        use kube::ResourceExt;
        let Some(selector) = &self.shard else {
            return true;
        };
        let watched = store.get(&kube::runtime::reflector::ObjectRef::from(object));
        let left = !selector.matches(object.labels())
            || !watched.is_some_and(|w| selector.matches(w.labels()));
        if left {
            tracing::info!(
                namespace = object.namespace().unwrap_or_default(),
                name = object.name_any(),
                "the object left this shard (its labels no longer match --selector): \
                 this shard stops acting on it"
            );
        }
        !left
    }

    /// How long `object` must wait before this shard acts on it (see
    /// [`shard::handover_wait`]): only with a selector, only when its status said an act was
    /// in flight when this process first saw it and still does, and only within the grace
    /// after that first sight.
    fn handover_wait<K>(&self, object: &K) -> Option<Duration>
    where
        K: kube::Resource + kube::core::object::HasStatus,
        K::Status: KindStatus,
    {
        self.shard.as_ref()?;
        let uid = object.meta().uid.clone()?;
        let in_flight = object.status().is_some_and(|status| {
            status.conditions().iter().any(|c| {
                c.type_ == crate::controller::conditions::RECONCILING && c.status == "True"
            })
        });
        let (since, arrived_in_flight) = *self
            .first_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(uid)
            .or_insert_with(|| (Instant::now(), in_flight));
        shard::handover_wait(
            arrived_in_flight,
            in_flight,
            since.elapsed(),
            self.settings.handover_grace,
        )
    }

    /// `object` left this shard: should it come back mid-act, it waits again.
    pub fn left_shard<K: kube::Resource>(&self, object: &K) {
        if let Some(uid) = &object.meta().uid {
            let mut first_seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
            first_seen.remove(uid);
        }
    }

    /// Forgets when objects that are gone were first seen; returns how many are left.
    pub fn forget_first_seen(&self, live: impl Fn(&str) -> bool) -> usize {
        let mut first_seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
        first_seen.retain(|uid, _| live(uid));
        first_seen.len()
    }

    /// Runs one reconcile of `object` in its namespace's turn (waiting for the turn is not
    /// reconcile time), then records it: its failures' backoff forgotten on success, the
    /// metrics either way. Every kind's reconcile goes through here.
    ///
    /// An object whose namespace has no turn free is parked (see [`Fairness`]) and this
    /// returns at once: it is sent back through `requeue` when a turn ends. The reconcile is
    /// made by `reconcile` only once the turn is taken, and on the heap, so that one waiting
    /// for a shared turn holds a few hundred bytes, not the whole state of a reconcile.
    pub async fn reconcile_in_turn<K, F>(
        &self,
        object: &K,
        requeue: &Requeue<K>,
        reconcile: impl FnOnce() -> F,
    ) -> Result<kube::runtime::controller::Action, Error>
    where
        K: kube::Resource<DynamicType = ()> + kube::core::object::HasStatus + 'static,
        K::Status: KindStatus,
        F: std::future::Future<Output = Result<kube::runtime::controller::Action, Error>>,
    {
        use kube::ResourceExt;
        let namespace = object.namespace().unwrap_or_default();
        if let Some(wait) = self.handover_wait(object) {
            tracing::info!(
                namespace,
                name = object.name_any(),
                wait = ?wait,
                "the object came to this shard in the middle of an act: waiting until the \
                 shard it left can no longer be acting on it"
            );
            return Ok(kube::runtime::controller::Action::requeue(wait));
        }
        let turn = self
            .fairness
            .turn(&namespace, &Requeue::key(object), requeue.wake(object))
            .await;
        let Some(_turn) = turn else {
            // Parked: its controller hears of it again when the namespace has a turn free.
            tracing::debug!(
                namespace,
                name = object.name_any(),
                "parked until a turn is free"
            );
            return Ok(kube::runtime::controller::Action::await_change());
        };
        tracing::debug!(namespace, name = object.name_any(), "reconciling");
        let started = std::time::Instant::now();
        let result = Box::pin(reconcile()).await;
        if result.is_ok() {
            self.backoff
                .reset(&crate::controller::backoff::key_of(object));
        }
        self.metrics
            .reconciled(result.as_ref().err().map(Error::label), started.elapsed());
        result
    }

    /// What a controller's run reported as an error, the same for every kind. An object it
    /// was to reconcile was gone (deleted, or out of the selector), perhaps one woken from
    /// parking, whose turn then goes to the next parked object of its namespace; that is
    /// expected, and a failed reconcile was already logged by [`Context::after_failure`], so
    /// only a failing watch or runner is worth a warning here.
    pub fn after_error<E1, E2>(&self, kind: &str, error: &kube::runtime::controller::Error<E1, E2>)
    where
        E1: std::error::Error,
        E2: std::error::Error,
    {
        use kube::runtime::controller::Error;
        match error {
            Error::ObjectNotFound(object) => {
                self.fairness
                    .never_came(object.namespace.as_deref().unwrap_or_default());
                tracing::debug!(kind, error = %error, "controller error");
            }
            Error::ReconcilerFailed(..) => {
                tracing::debug!(kind, error = %error, "controller error")
            }
            Error::QueueError(_) | Error::RunnerError(_) => {
                tracing::warn!(kind, error = %error, "controller error");
            }
        }
    }

    /// What kube-runtime does after a failed reconcile of `object`: look again after its
    /// backoff (never sooner than a `Retry-After`), saying why unless the object only changed.
    pub fn after_failure<K>(&self, object: &K, error: &Error) -> kube::runtime::controller::Action
    where
        K: kube::Resource,
        K::DynamicType: Default,
    {
        use kube::ResourceExt;
        let delay = self.backoff.next(
            &crate::controller::backoff::key_of(object),
            error.retry_after(),
        );
        if error.is_stale() {
            // Not a failure: the watch brings the new version. Backing off still bounds a
            // cache that stays behind.
            tracing::debug!(name = object.name_any(), retry_in = ?delay, "the object changed while it was reconciled; looking again");
        } else {
            tracing::warn!(
                kind = K::kind(&Default::default()).as_ref(),
                namespace = object.namespace().unwrap_or_default(),
                name = object.name_any(),
                error = %error,
                reason = error.label(),
                retry_in = ?delay,
                "reconcile failed"
            );
        }
        kube::runtime::controller::Action::requeue(delay)
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

    /// The API and credentials an object acts with, as its status records them beside an id.
    pub fn identity_of(
        &self,
        object: &impl Credentialed,
        credentials: &Credentials,
    ) -> crate::controller::ownership::Identity {
        let default = self.settings.default_credentials_secret.as_ref();
        // An object with credentials has a Secret they came from.
        let secret =
            crate::controller::credentials::secret_for(object, default).unwrap_or_default();
        crate::controller::ownership::Identity::new(&credentials.api_url, &secret)
    }

    /// An object's credentials: from the cache, or read from its Secret.
    pub async fn credentials_of(
        &self,
        object: &impl Credentialed,
    ) -> Result<Result<Credentials, CredentialsError>, kube::Error> {
        self.credentials
            .resolve(&self.kube, object, &self.settings)
            .await
    }
}

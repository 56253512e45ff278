//! The controller: watches `FlashbackRepository` objects (and the Secrets they name) and runs
//! a reconcile for each one that needs a look.

pub mod backoff;
pub mod context;
pub mod create_marker;
pub mod credentials;
pub mod error;
pub mod fairness;
pub mod leader;
pub mod plan;
pub mod reconcile;
pub mod remote;
pub mod resync;
pub mod stats;
pub mod status;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

pub use context::Failpoint;

use crate::cli::RunArgs;
use crate::controller::backoff::Backoff;
use crate::controller::context::Context;
use crate::controller::credentials::{ApiUrls, CredentialsCache, SecretName};
use crate::controller::fairness::Fairness;
use crate::controller::remote::{Remote, RemoteSettings};
use crate::crd::FlashbackRepository;
use crate::http;
use crate::metrics::Metrics;
use flashback_client::CallRecord;

/// What `flashback-operator run` was asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api_url: flashback_client::Url,
    pub namespace: Option<String>,
    /// A label selector the objects must match.
    pub selector: Option<String>,
    pub default_credentials: Option<SecretName>,
    pub resync_interval: Duration,
    pub stats_interval: Duration,
    pub stats_batch_size: u16,
    pub concurrency: u16,
    pub namespace_concurrency: u16,
    pub allowed_api_hosts: Vec<String>,
    pub api_rate: f64,
    pub api_burst: u32,
    pub metrics_address: SocketAddr,
    /// Where to hold the leader Lease; no election when `None`.
    pub leader_election: Option<leader::LeaseSettings>,
    pub failpoint: Option<Failpoint>,
}

impl Settings {
    /// The settings for these arguments; an error names a flag to fix.
    pub fn from_args(args: RunArgs) -> Result<Self, String> {
        let leader_election = if args.leader_election {
            let namespace = args
                .leader_election_namespace
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .filter(|ns| !ns.is_empty())
                .ok_or("--leader-election needs --leader-election-namespace (or POD_NAMESPACE)")?;
            Some(leader::LeaseSettings {
                namespace,
                name: args.leader_election_lease,
                identity: replica_identity(),
                duration: args.leader_election_lease_duration,
            })
        } else {
            None
        };
        Ok(Self {
            api_url: args.api_url,
            namespace: args.namespace,
            selector: args.selector,
            default_credentials: args.default_credentials_secret,
            resync_interval: args.resync_interval,
            stats_interval: args.stats_interval,
            stats_batch_size: args.stats_batch_size,
            concurrency: args.concurrency,
            namespace_concurrency: args.namespace_concurrency,
            allowed_api_hosts: args.allowed_api_hosts,
            api_rate: args.api_rate,
            api_burst: args.api_burst,
            metrics_address: args.metrics_address,
            leader_election,
            failpoint: args.failpoint,
        })
    }
}

/// This replica's name in the Lease: the pod name when there is one, made unique per process.
fn replica_identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "flashback-operator".into());
    format!("{base}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// How long one listing of a workspace serves reconciles: long enough that the objects of a
/// resync sweep share it, short enough that drift is seen a few seconds after a resync.
fn listing_max_age(resync_interval: Duration) -> Duration {
    (resync_interval / 20).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// Runs the operator until SIGTERM or ctrl-c, then lets in-flight reconciles finish. With
/// leader election, it first waits to hold the Lease, and stops (with an error, so that the
/// process exits non-zero and is restarted) if it loses it.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let kube = Client::try_default()
        .await
        .context("cannot reach Kubernetes (in-cluster config or KUBECONFIG)")?;
    let repos: Api<FlashbackRepository> = namespaced_or_all(&kube, settings.namespace.as_deref());

    // One signal stops everything: the HTTP endpoints, the election, the controller (after
    // its in-flight reconciles) and the stats task.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        }
    });
    let stopped = move || {
        let mut stop_rx = stop_rx.clone();
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        }
    };

    let (store, writer) = reflector::store();
    let metrics = Arc::new(Metrics::new(store.clone()));
    let ready = Arc::new(AtomicBool::new(false));
    let endpoints = http::Endpoints {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let listener = http::bind(settings.metrics_address)
        .await
        .with_context(|| {
            format!(
                "cannot listen on --metrics-address {}",
                settings.metrics_address
            )
        })?;
    let server = tokio::spawn(http::serve(listener, endpoints, stopped()));

    // A missing CRD or missing permissions are for a person to fix: say so and wait, rather
    // than exit into a crash loop.
    if !wait_until_listable(&repos, stopped()).await {
        return finish(server).await;
    }

    let elector = settings
        .leader_election
        .clone()
        .map(|lease| leader::Elector::new(kube.clone(), lease));
    if let Some(elector) = &elector {
        // A standby replica is healthy and ready: it is doing its job by waiting.
        ready.store(true, Ordering::Relaxed);
        if elector.acquire(stopped()).await.is_none() {
            return finish(server).await;
        }
        ready.store(false, Ordering::Relaxed);
    }

    let context = Arc::new(context(&kube, &settings, metrics, store.clone()));

    let mut watched = watcher::Config::default();
    if let Some(selector) = &settings.selector {
        watched = watched.labels(selector);
    }
    let objects = watcher(repos, watched)
        .default_backoff()
        // Nothing reads them, and they were a third of the cache's memory.
        .modify(|repo| repo.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(worth_a_reconcile, Default::default());
    let secret_changes = secret_changes(&kube, &settings, context.credentials.clone());
    let default_secret = settings.default_credentials.clone();
    let users_store = store.clone();
    let changed_secrets = context.credentials.clone();

    info!(
        namespace = settings.namespace.as_deref().unwrap_or("<all>"),
        resync_interval = ?settings.resync_interval,
        stats_interval = ?settings.stats_interval,
        concurrency = settings.concurrency,
        "flashback-operator starting"
    );
    let became_ready = {
        let store = store.clone();
        async move {
            if store.wait_until_ready().await.is_ok() {
                ready.store(true, Ordering::Relaxed);
            }
        }
    };
    // The resync sweep names the objects it finds out of step; the controller reconciles them.
    let (due_tx, due_rx) = tokio::sync::mpsc::channel(1024);
    let resync = resync::run(
        store.clone(),
        context.clone(),
        settings.resync_interval,
        due_tx,
        stopped(),
    );
    let store_for_housekeeping = store.clone();
    let context_for_housekeeping = context.clone();
    let statistics = stats::run(
        store.clone(),
        context.clone(),
        settings.stats_interval,
        stopped(),
    );
    let controller = Controller::for_stream(objects, store)
        .watches_stream(secret_changes, move |secret| {
            let name = SecretName {
                namespace: secret.namespace().unwrap_or_default(),
                name: secret.name_any(),
            };
            // Before the reconciles it starts: they read the Secret afresh.
            changed_secrets.forget(&name);
            users_of_secret(&users_store, &name, default_secret.as_ref())
        })
        // Unbounded here: `Fairness` bounds reconciles per namespace and in all, and a
        // reconcile waiting for its namespace's turn must not hold a slot another needs.
        .reconcile_on(tokio_stream_of(due_rx))
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        .graceful_shutdown_on(stopped())
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(error = %error, "controller error");
            }
        });
    let housekeeping = housekeeping(
        store_for_housekeeping,
        context_for_housekeeping,
        settings.resync_interval,
        stopped(),
    );
    let work = async {
        tokio::join!(
            controller,
            statistics,
            resync,
            housekeeping,
            futures::future::select(Box::pin(became_ready), Box::pin(stopped())).map(|_| ())
        )
    };
    match &elector {
        None => {
            work.await;
        }
        Some(elector) => tokio::select! {
            // Finished (after SIGTERM): the Lease goes only once no reconcile is in flight.
            _ = work => elector.release().await,
            // Lost: dropping `work` cancels every reconcile at once; none may run without it.
            () = elector.hold() => {
                let _ = stop_tx.send(true);
                let _ = finish(server).await;
                anyhow::bail!("lost the leader Lease; stopped so that a fresh start can stand for it again");
            }
        },
    }
    finish(server).await
}

/// The messages of a channel as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// Every resync interval, forgets what no object needs any more (backoff of objects that are
/// gone, clients of credentials nobody uses, listings too old to serve) and reports what is
/// left in `flashback_operator_tracked_entries`.
async fn housekeeping(
    store: Store<FlashbackRepository>,
    ctx: Arc<Context>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    every(&store, interval, First::AfterInterval, stop, || async {
        let live: std::collections::HashSet<String> = store
            .state()
            .iter()
            .map(|repo| reconcile::object_key(repo))
            .collect();
        let backoff = ctx.backoff.retain(|key| live.contains(key));
        // Every object is looked at once per resync: a client unused for two is nobody's.
        let (clients, listings) = ctx.remote.forget_unused(interval * 2);
        ctx.metrics.tracked("backoff", backoff);
        ctx.metrics.tracked("api_clients", clients);
        ctx.metrics.tracked("listings", listings);
        ctx.metrics
            .tracked("credentials", ctx.credentials.remembered());
    })
    .await;
}

/// When a periodic task first runs.
pub(crate) enum First {
    AtOnce,
    AfterInterval,
}

/// Runs `work` every `interval` once the object cache is filled, until `stop` resolves.
pub(crate) async fn every<Work, Done>(
    store: &Store<FlashbackRepository>,
    interval: Duration,
    first: First,
    stop: impl std::future::Future<Output = ()>,
    mut work: Work,
) where
    Work: FnMut() -> Done,
    Done: std::future::Future<Output = ()>,
{
    tokio::pin!(stop);
    if tokio::select! {
        ready = store.wait_until_ready() => ready.is_err(),
        () = &mut stop => true,
    } {
        return;
    }
    if matches!(first, First::AtOnce) {
        work().await;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut stop => return,
        }
        work().await;
    }
}

/// What every reconcile shares.
fn context(
    kube: &Client,
    settings: &Settings,
    metrics: Arc<Metrics>,
    store: Store<FlashbackRepository>,
) -> Context {
    let observer_metrics = metrics.clone();
    Context {
        kube: kube.clone(),
        remote: Remote::new(RemoteSettings {
            rate: settings.api_rate,
            burst: settings.api_burst,
            listing_max_age: listing_max_age(settings.resync_interval),
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
        store,
        metrics,
        api_urls: ApiUrls {
            default: settings.api_url.clone(),
            allowed_hosts: settings.allowed_api_hosts.clone(),
        },
        default_credentials: settings.default_credentials.clone(),
        failpoint: settings.failpoint,
    }
}

/// Secrets appearing or changing, as metadata only: the operator never holds their data in a
/// cache. Watching one namespace, the default Secret may live in another: it is watched there
/// by name. The watch's initial listing is left out: every object is reconciled at start anyway,
/// and one Secret shared by a thousand objects would start a thousand more reconciles.
fn secret_changes(
    kube: &Client,
    settings: &Settings,
    cache: Arc<CredentialsCache>,
) -> BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>> {
    let secrets: Api<PartialObjectMeta<Secret>> =
        namespaced_or_all(kube, settings.namespace.as_deref());
    let relisted = {
        let cache = cache.clone();
        move || cache.forget_all()
    };
    let changes = changes_only(watcher(secrets, watcher::Config::default()), relisted);
    match (&settings.namespace, &settings.default_credentials) {
        (Some(watched), Some(default)) if *watched != default.namespace => {
            let api: Api<PartialObjectMeta<Secret>> =
                Api::namespaced(kube.clone(), &default.namespace);
            let by_name =
                watcher::Config::default().fields(&format!("metadata.name={}", default.name));
            let default_changes = changes_only(watcher(api, by_name), move || cache.forget_all());
            futures::stream::select(changes, default_changes).boxed()
        }
        _ => changes.boxed(),
    }
}

/// The objects a watch sees change after its initial listing. `relisted` is called when the
/// watch lists afresh (at start, and after a disconnect), since changes made meanwhile are not
/// reported one by one.
fn changes_only<K: Send + 'static>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    relisted: impl Fn() + Send + Sync + 'static,
) -> BoxStream<'static, Result<K, watcher::Error>> {
    let relisted = Arc::new(relisted);
    events
        .default_backoff()
        .filter_map(move |event| {
            let relisted = relisted.clone();
            async move {
                match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                        Some(Ok(object))
                    }
                    Ok(watcher::Event::Init) => {
                        relisted();
                        None
                    }
                    Ok(watcher::Event::InitApply(_) | watcher::Event::InitDone) => None,
                    Err(error) => Some(Err(error)),
                }
            }
        })
        .boxed()
}

/// Waits until FlashbackRepositories can be listed, saying why not at each try; `false` when
/// stopped first.
async fn wait_until_listable(
    repos: &Api<FlashbackRepository>,
    stop: impl std::future::Future<Output = ()>,
) -> bool {
    tokio::pin!(stop);
    let mut delay = Duration::from_secs(1);
    loop {
        match repos.list(&ListParams::default().limit(1)).await {
            Ok(_) => return true,
            Err(error) => warn!(
                error = %error,
                retry_in = ?delay,
                "cannot list FlashbackRepositories: is the CRD installed \
                 (flashback-operator crds | kubectl apply -f -) and may this account list them?"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut stop => return false,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Waits for the HTTP endpoints to close and reports how they ended.
async fn finish(server: tokio::task::JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    server
        .await
        .context("the HTTP endpoints task failed")?
        .context("cannot serve the HTTP endpoints")?;
    info!("flashback-operator stopped");
    Ok(())
}

fn namespaced_or_all<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// A fingerprint of what a reconcile depends on: the spec (generation), annotations,
/// finalizers other than the operator's own, and deletion. The operator's own writes (the
/// status, with the record of a create attempt, and its finalizer) change none of these, so
/// its bookkeeping never triggers a reconcile (nor cuts a backoff short).
pub(crate) fn worth_a_reconcile(repo: &FlashbackRepository) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    predicates::generation(repo).hash(&mut hasher);
    repo.metadata.annotations.hash(&mut hasher);
    for finalizer in repo.finalizers() {
        if finalizer != crate::crd::FINALIZER {
            finalizer.hash(&mut hasher);
        }
    }
    repo.metadata.deletion_timestamp.is_some().hash(&mut hasher);
    Some(hasher.finish())
}

/// Objects whose credentials come from `secret`: those naming it, and, for the operator's
/// default Secret, those naming none.
fn users_of_secret(
    store: &Store<FlashbackRepository>,
    secret: &SecretName,
    default: Option<&SecretName>,
) -> Vec<ObjectRef<FlashbackRepository>> {
    store
        .state()
        .iter()
        .filter(|repo| credentials::secret_for(repo, default).as_ref() == Ok(secret))
        .map(|repo| ObjectRef::from(repo.as_ref()))
        .collect()
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                warn!(error = %error, "cannot listen for SIGTERM; only ctrl-c stops gracefully");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => info!("SIGTERM received, finishing in-flight reconciles"),
        _ = tokio::signal::ctrl_c() => info!("interrupt received, finishing in-flight reconciles"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::annotations;
    use crate::fixtures;

    #[test]
    fn status_writes_do_not_call_for_a_reconcile_but_spec_and_annotations_do() {
        let repo = fixtures::repo("team-a", "media");
        let before = worth_a_reconcile(&repo);

        let mut status_only = repo.clone();
        status_only.status = Some(fixtures::ready_status("r1", 1));
        status_only.metadata.resource_version = Some("42".into());
        assert_eq!(worth_a_reconcile(&status_only), before);

        let mut new_generation = repo.clone();
        new_generation.metadata.generation = Some(2);
        assert_ne!(worth_a_reconcile(&new_generation), before);

        let mut requested = repo.clone();
        fixtures::annotate(&mut requested, annotations::RECONCILE_REQUESTED_AT, "now");
        assert_ne!(worth_a_reconcile(&requested), before);

        let mut finalized = repo.clone();
        finalized.metadata.finalizers = Some(vec![crate::crd::FINALIZER.into()]);
        assert_eq!(
            worth_a_reconcile(&finalized),
            before,
            "the operator's own finalizer is bookkeeping"
        );
        finalized
            .metadata
            .finalizers
            .as_mut()
            .unwrap()
            .push("example.com/other".into());
        assert_ne!(worth_a_reconcile(&finalized), before);

        let mut deleted = repo.clone();
        deleted.metadata.deletion_timestamp = Some(fixtures::time("2026-11-26T19:00:00Z"));
        assert_ne!(worth_a_reconcile(&deleted), before);
    }

    #[test]
    fn secret_changes_reach_the_objects_that_use_the_secret() {
        let (store, mut writer) = reflector::store::<FlashbackRepository>();
        let with_ref = fixtures::repo("team-a", "with-ref");
        let mut without_ref = fixtures::repo("team-a", "without-ref");
        without_ref.spec.credentials_secret_ref = None;
        let other_namespace = fixtures::repo("team-b", "elsewhere");
        for repo in [&with_ref, &without_ref, &other_namespace] {
            writer.apply_watcher_event(&watcher::Event::Apply(repo.clone()));
        }
        let default: SecretName = "flashback-system/default".parse().unwrap();
        let names = |secret: &str| {
            let mut names: Vec<String> =
                users_of_secret(&store, &secret.parse().unwrap(), Some(&default))
                    .into_iter()
                    .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                    .collect();
            names.sort();
            names
        };
        assert_eq!(names("team-a/flashback-token"), ["team-a/with-ref"]);
        assert_eq!(names("team-b/flashback-token"), ["team-b/elsewhere"]);
        assert_eq!(names("flashback-system/default"), ["team-a/without-ref"]);
        assert!(names("team-a/unrelated").is_empty());
    }

    #[test]
    fn listings_live_a_twentieth_of_the_resync_within_bounds() {
        let age = |seconds| listing_max_age(Duration::from_secs(seconds));
        assert_eq!(age(600), Duration::from_secs(5));
        assert_eq!(age(60), Duration::from_secs(3));
        assert_eq!(age(3), Duration::from_millis(500));
    }
}

//! The controller: one folder per kind the operator serves, and what the kinds share.
//!
//! - [`repository`]: the `FlashbackRepository` kind (its wiring, plan, reconcile steps,
//!   status, create record and resync sweep).
//! - [`access_key`]: the `FlashbackAccessKey` kind (a repository key written into a Secret).
//! - [`bucket`]: the `FlashbackBucket` kind (a cloud bucket registered in Flashback).
//! - Shared: [`context`] (what every reconcile shares), [`credentials`] (which Secret, read
//!   once per change), [`remote`] (API clients per credential and batched listings),
//!   [`conditions`] and [`reason`] (the status vocabulary), [`status_write`] (how every kind
//!   writes its status), [`stall`] (what only a person can
//!   fix, and which credentials problems and API errors are that), [`management`] (what
//!   managementPolicy and the paused annotation allow), [`events`], [`backoff`],
//!   [`create_attempt`] (the record that tells an object's create from anyone else's),
//!   [`fairness`] (turns per namespace), [`finalizer`], [`leader`] (election), [`periodic`]
//!   tasks, [`stats`] (usage figures of every kind), [`answers`] (what is taken of a
//!   server's answers), [`api_codes`] (what each refusal code asks a person to change), [`digest`] (of secret data), [`ownership`] (which object holds a
//!   remote id), [`known_workspaces`] (which workspaces a credential's organisation has),
//!   [`watches`] (a kind's objects, Secrets), [`runner`] (what every kind's controller
//!   loop shares), [`shard`] (which objects a shard serves, and the hand-over between shards),
//!   [`error`], and the test-only [`failpoint`].
//!
//! Adding a kind means a folder like `repository/` and one line in [`run`].

pub mod access_key;
pub mod answers;
pub mod api_codes;
pub mod backoff;
pub mod bucket;
pub mod conditions;
pub mod context;
pub mod create_attempt;
pub mod credentials;
pub mod digest;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod fairness;
pub mod finalizer;
pub mod known_workspaces;
pub mod leader;
pub mod management;
pub mod organisation_names;
pub mod ownership;
pub mod periodic;
pub mod reason;
pub mod remote;
pub mod repository;
pub mod runner;
pub mod session;
pub mod shard;
pub mod stall;
pub mod stats;
pub mod status_write;
pub mod watches;
pub mod workspace;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt;
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::controller::context::{Context, Requeues};
use crate::controller::fairness::Requeue;
use crate::controller::leader::LeaseSettings;
use crate::controller::periodic::First;
use crate::crd::FlashbackRepository;
use crate::http;
use crate::metrics::Metrics;
use crate::settings::Settings;

/// Runs the operator until SIGTERM or ctrl-c, then lets in-flight reconciles finish for at most
/// `--shutdown-grace` and cancels those still in flight. With leader election, it first waits
/// to hold the Lease, and stops (with an error, so that the process exits non-zero and is
/// restarted) if it loses it.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    crate::memory::limit_arenas();
    let settings = Arc::new(settings);
    let kube = Client::try_default()
        .await
        .context("cannot reach Kubernetes (in-cluster config or KUBECONFIG)")?;
    let repos: Api<FlashbackRepository> =
        watches::namespaced_or_all(&kube, settings.namespace.as_deref());

    // One signal stops everything: the HTTP endpoints, the election, the controllers (after
    // their in-flight reconciles, within the shutdown grace) and the periodic tasks.
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

    let shard = match settings.selector.as_deref().map(shard::Selector::parse) {
        None => None,
        Some(Ok(selector)) => Some(selector),
        Some(Err(problem)) => anyhow::bail!("--selector: {problem}"),
    };
    let (store, writer) = reflector::store();
    let (key_store, key_writer) = reflector::store();
    let (bucket_store, bucket_writer) = reflector::store();
    // With a selector, a second store per kind holds every object (one watch fills both).
    let (everyone, repo_all, key_all, bucket_all) = if shard.is_some() {
        let (repositories, repo_all) = reflector::store();
        let (access_keys, key_all) = reflector::store();
        let (buckets, bucket_all) = reflector::store();
        let everyone = context::Stores {
            repositories,
            access_keys,
            buckets,
        };
        (everyone, Some(repo_all), Some(key_all), Some(bucket_all))
    } else {
        let everyone = context::Stores {
            repositories: store.clone(),
            access_keys: key_store.clone(),
            buckets: bucket_store.clone(),
        };
        (everyone, None, None, None)
    };
    let metrics = Arc::new(Metrics::new(store.clone(), &settings.leader_election_lease));
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

    let elector = LeaseSettings::from_settings(&settings)
        .map(|lease| leader::Elector::new(kube.clone(), lease));
    if let Some(elector) = &elector {
        // A standby replica is healthy and ready: it is doing its job by waiting.
        ready.store(true, Ordering::Relaxed);
        if elector.acquire(stopped()).await.is_none() {
            return finish(server).await;
        }
        ready.store(false, Ordering::Relaxed);
    }

    metrics.leading(true);
    let (repositories_requeue, repositories_parked) = Requeue::channel();
    let (access_keys_requeue, access_keys_parked) = Requeue::channel();
    let (buckets_requeue, buckets_parked) = Requeue::channel();
    let context = Arc::new(Context::new(
        &kube,
        settings.clone(),
        metrics,
        context::Stores {
            repositories: store.clone(),
            access_keys: key_store,
            buckets: bucket_store,
        },
        everyone,
        shard,
        Requeues {
            repositories: repositories_requeue,
            access_keys: access_keys_requeue,
            buckets: buckets_requeue,
        },
    ));
    info!(
        namespace = settings.namespace.as_deref().unwrap_or("<all>"),
        resync_interval = ?settings.resync_interval,
        stats_interval = ?settings.stats_interval,
        concurrency = settings.concurrency,
        "flashback-operator starting"
    );
    // Ready once every watch cache the operator acts on is filled.
    let became_ready = {
        let store = store.clone();
        let keys = context.access_keys.clone();
        let with_keys = settings.access_keys;
        async move {
            let repositories = store.wait_until_ready().await.is_ok();
            let access_keys = !with_keys || keys.wait_until_ready().await.is_ok();
            if repositories && access_keys {
                ready.store(true, Ordering::Relaxed);
            }
        }
    };
    let housekeeping = housekeeping(store, context.clone(), settings.resync_interval, stopped());
    let give_back_memory =
        crate::memory::give_back_freed_memory(crate::memory::TRIM_PERIOD, stopped());
    let work = async {
        tokio::join!(
            // One line per kind.
            repository::run(
                repos,
                watches::Feed {
                    own: writer,
                    everyone: repo_all,
                },
                repositories_parked,
                context.clone(),
                &stopped
            ),
            access_key::run(
                &kube,
                watches::Feed {
                    own: key_writer,
                    everyone: key_all,
                },
                access_keys_parked,
                context.clone(),
                &stopped,
                settings.access_keys
            ),
            bucket::run(
                &kube,
                watches::Feed {
                    own: bucket_writer,
                    everyone: bucket_all,
                },
                buckets_parked,
                context,
                &stopped
            ),
            housekeeping,
            give_back_memory,
            futures::future::select(Box::pin(became_ready), Box::pin(stopped())).map(|_| ())
        )
    };
    // After SIGTERM the controllers let in-flight reconciles finish; but one waiting on a
    // tenant's hanging API would hold the exit, and the Lease, past the Pod's grace period. What
    // is still in flight after the shutdown grace is dropped, as when the Lease is lost.
    let work = async {
        tokio::select! {
            _ = work => {}
            () = grace_over(stopped(), settings.shutdown_grace) => warn!(
                grace = ?settings.shutdown_grace,
                "reconciles still in flight after the shutdown grace were cancelled"
            ),
        }
    };
    match &elector {
        None => {
            work.await;
        }
        Some(elector) => tokio::select! {
            // Finished (after SIGTERM): the Lease goes only once no reconcile is in flight.
            () = work => elector.release().await,
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

/// Resolves `grace` after `stop` does.
async fn grace_over(stop: impl std::future::Future<Output = ()>, grace: Duration) {
    stop.await;
    tokio::time::sleep(grace).await;
}

/// The namespace and the key an object is parked under.
fn parked_as<K>(object: &K) -> (String, String)
where
    K: kube::Resource<DynamicType = ()> + 'static,
{
    (
        object.meta().namespace.clone().unwrap_or_default(),
        Requeue::key(object),
    )
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
    periodic::every(&store, interval, First::AfterInterval, stop, || async {
        // Backoff entries of objects of every kind that are gone.
        let repositories = store.state();
        let access_keys = ctx.access_keys.state();
        let buckets = ctx.buckets.state();
        let uids: std::collections::HashSet<&str> = repositories
            .iter()
            .filter_map(|repo| repo.metadata.uid.as_deref())
            .chain(
                access_keys
                    .iter()
                    .filter_map(|key| key.metadata.uid.as_deref()),
            )
            .chain(
                buckets
                    .iter()
                    .filter_map(|bucket| bucket.metadata.uid.as_deref()),
            )
            .collect();
        ctx.metrics.tracked(
            "first_seen",
            ctx.forget_first_seen(|uid| uids.contains(uid)),
        );
        let live: std::collections::HashSet<String> = repositories
            .iter()
            .map(|repo| backoff::key_of(repo.as_ref()))
            .chain(access_keys.iter().map(|key| backoff::key_of(key.as_ref())))
            .chain(
                buckets
                    .iter()
                    .map(|bucket| backoff::key_of(bucket.as_ref())),
            )
            .collect();
        let backoff = ctx.backoff.retain(|key| live.contains(key));
        // Every object is looked at once per resync: a client unused for two is nobody's.
        let (clients, listings) = ctx.remote.forget_unused(interval.saturating_mul(2));
        ctx.metrics.tracked("backoff", backoff);
        ctx.metrics.tracked("api_clients", clients);
        ctx.metrics.tracked("listings", listings);
        ctx.metrics.tracked("events", ctx.events.forget_old());
        // Parked objects that are gone; free turns go to the others.
        let live: std::collections::HashSet<(String, String)> = repositories
            .iter()
            .map(|repo| parked_as(repo.as_ref()))
            .chain(access_keys.iter().map(|key| parked_as(key.as_ref())))
            .chain(buckets.iter().map(|bucket| parked_as(bucket.as_ref())))
            .collect();
        let parked = ctx
            .fairness
            .tidy(|namespace, key| live.contains(&(namespace.to_string(), key.to_string())));
        ctx.metrics.tracked("parked", parked);
        // Credentials of Secrets no object names any more.
        let default = ctx.settings.default_credentials_secret.as_ref();
        let named: std::collections::HashSet<credentials::SecretName> = repositories
            .iter()
            .filter_map(|repo| credentials::secret_for(repo, default).ok())
            .chain(
                buckets
                    .iter()
                    .filter_map(|bucket| credentials::secret_for(bucket, default).ok()),
            )
            .collect();
        let remembered = ctx.credentials.retain(|name| named.contains(name));
        ctx.metrics.tracked("credentials", remembered);
    })
    .await;
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

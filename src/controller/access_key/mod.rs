//! The `FlashbackAccessKey` kind: its controller (the watch, and what wakes a reconcile: a
//! change of the key object, of the Secret it owns, or of the repository it names) and its
//! reconcile in steps.
//!
//! - [`plan`]: pure decisions (whose keys, which to delete, when to issue a new one).
//! - [`reconcile`]: one reconcile as observe → decide → act → report; the only I/O.

pub mod plan;
pub mod reconcile;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::{runner, watches};
use crate::crd::{ACCESS_KEY_LABEL, FlashbackAccessKey, FlashbackRepository};

/// Runs the access key controller until `stopped` resolves; nothing when `enabled` is false
/// (`--access-keys=false`: the operator then never writes a Secret).
pub async fn run<Stop, StopFuture>(
    kube: &Client,
    feed: watches::Feed<FlashbackAccessKey>,
    parked: UnboundedReceiver<ObjectRef<FlashbackAccessKey>>,
    ctx: Arc<Context>,
    stopped: &Stop,
    enabled: bool,
) where
    Stop: Fn() -> StopFuture,
    StopFuture: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    if !enabled {
        return;
    }
    let namespace = ctx.settings.namespace.clone();
    let keys: Api<FlashbackAccessKey> = watches::namespaced_or_all(kube, namespace.as_deref());
    let secrets: Api<PartialObjectMeta<Secret>> =
        watches::namespaced_or_all(kube, namespace.as_deref());
    let repos: Api<PartialObjectMeta<FlashbackRepository>> =
        watches::namespaced_or_all(kube, namespace.as_deref());
    let store = ctx.access_keys.clone();
    let leaving = ctx.clone();
    let left = move |object: &FlashbackAccessKey| leaving.left_shard(object);
    let objects = watches::objects(keys, ctx.shard.clone(), feed, left);
    let mapping = store.clone();
    // Only the Secrets the operator wrote for a key, as metadata: a change or a deletion of
    // one wakes its owner, which restores it.
    let owned_secrets = watcher(secrets, watcher::Config::default().labels(ACCESS_KEY_LABEL))
        .default_backoff()
        .touched_objects();
    // A repository that changes (becomes Ready, is deleted) wakes the keys that name it.
    let repository_changes = watcher(repos, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let controller = Controller::for_stream(objects, store)
        .owns_stream(owned_secrets)
        .watches_stream(repository_changes, move |repo| {
            let namespace = repo.namespace();
            let name = repo.name_any();
            mapping
                .state()
                .into_iter()
                .filter(|key| key.namespace() == namespace && key.spec.repository_ref.name == name)
                .map(|key| ObjectRef::from(key.as_ref()))
                .collect::<Vec<_>>()
        });
    runner::run(controller, parked, ctx, stopped, reconcile, error_policy).await;
}

/// The entry point kube-runtime calls for every key object that needs a look.
pub async fn reconcile(key: Arc<FlashbackAccessKey>, ctx: Arc<Context>) -> Result<Action, Error> {
    let step = || async {
        match reconcile::Reconcile::new(&ctx, &key).await? {
            None => Ok(Action::await_change()),
            Some(step) if key.metadata.deletion_timestamp.is_some() => step.delete().await,
            Some(step) => step.apply().await,
        }
    };
    ctx.reconcile_in_turn(key.as_ref(), &ctx.requeue.access_keys, step)
        .await
}

/// Called by kube-runtime when `reconcile` failed: back off per object.
pub fn error_policy(key: Arc<FlashbackAccessKey>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.after_failure(key.as_ref(), error)
}

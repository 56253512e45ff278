//! The `FlashbackBucket` kind: its controller (the watch, and what wakes a reconcile: a change
//! of the object, of its Flashback credentials Secret or of its cloud credentials Secret) and
//! its reconcile in steps.
//!
//! - [`plan`]: pure decisions (which bucket is this object's, whether it is in step, what to
//!   tell a person).
//! - [`reconcile`]: one reconcile as observe → decide → act → report; the only I/O.

pub mod plan;
pub mod reconcile;

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::controller::context::Context;
use crate::controller::credentials::{self, SecretName};
use crate::controller::error::Error;
use crate::controller::{runner, watches};
use crate::crd::FlashbackBucket;

/// Runs the bucket controller until `stopped` resolves.
pub async fn run<Stop, StopFuture>(
    kube: &Client,
    feed: watches::Feed<FlashbackBucket>,
    parked: UnboundedReceiver<ObjectRef<FlashbackBucket>>,
    ctx: Arc<Context>,
    stopped: &Stop,
) where
    Stop: Fn() -> StopFuture,
    StopFuture: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let settings = ctx.settings.clone();
    let api: Api<FlashbackBucket> = watches::namespaced_or_all(kube, settings.namespace.as_deref());
    let leaving = ctx.clone();
    let left = move |object: &FlashbackBucket| leaving.left_shard(object);
    let objects = watches::objects(api, ctx.shard.clone(), feed, left);
    let store = ctx.buckets.clone();
    let users = store.clone();
    let default_secret = settings.default_credentials_secret.clone();
    let cloud_secrets = store.clone();
    let is_cloud_secret = move |name: &SecretName| {
        cloud_secrets.state().iter().any(|bucket| {
            bucket.namespace().as_deref() == Some(name.namespace.as_str())
                && bucket.spec.cloud_credentials_secret_ref.name == name.name
        })
    };
    let secret_changes =
        watches::secret_changes(kube, &settings, ctx.credentials.clone(), is_cloud_secret);
    let (stats_store, stats_ctx) = (ctx.buckets.clone(), ctx.clone());
    let controller =
        Controller::for_stream(objects, store).watches_stream(secret_changes, move |secret| {
            let name = SecretName {
                namespace: secret.namespace().unwrap_or_default(),
                name: secret.name_any(),
            };
            users_of_secret(&users.state(), &name, default_secret.as_ref())
        });
    let run = runner::run(controller, parked, ctx, stopped, reconcile, error_policy);
    let statistics =
        crate::controller::stats::run(stats_store, stats_ctx, settings.stats_interval, stopped());
    tokio::join!(run, statistics);
}

/// Buckets whose Flashback credentials or cloud credentials come from `secret`.
fn users_of_secret(
    buckets: &[Arc<FlashbackBucket>],
    secret: &SecretName,
    default: Option<&SecretName>,
) -> Vec<ObjectRef<FlashbackBucket>> {
    buckets
        .iter()
        .filter(|bucket| {
            let cloud = bucket.namespace().as_deref() == Some(secret.namespace.as_str())
                && bucket.spec.cloud_credentials_secret_ref.name == secret.name;
            cloud || credentials::secret_for(bucket.as_ref(), default).as_ref() == Ok(secret)
        })
        .map(|bucket| ObjectRef::from(bucket.as_ref()))
        .collect()
}

/// The entry point kube-runtime calls for every bucket object that needs a look.
pub async fn reconcile(bucket: Arc<FlashbackBucket>, ctx: Arc<Context>) -> Result<Action, Error> {
    let step = || async {
        let step = reconcile::Reconcile::new(&ctx, &bucket);
        if bucket.metadata.deletion_timestamp.is_some() {
            step.delete().await
        } else {
            step.apply().await
        }
    };
    ctx.reconcile_in_turn(bucket.as_ref(), &ctx.requeue.buckets, step)
        .await
}

/// Called by kube-runtime when `reconcile` failed: back off per object.
pub fn error_policy(bucket: Arc<FlashbackBucket>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.after_failure(bucket.as_ref(), error)
}

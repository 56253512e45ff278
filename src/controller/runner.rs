//! Runs one kind's kube-runtime `Controller` once the kind has said what wakes its objects: the
//! part every kind shares. Parked objects come back when their namespace has a turn free,
//! concurrency is left to [`Fairness`](crate::controller::fairness::Fairness), in-flight
//! reconciles finish on shutdown, failures are counted, and a watch that never filled its
//! cache does not hold the shutdown.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::Controller;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::controller::{periodic, watches};

/// Runs `controller` until `stopped` resolves: `reconcile` for every object that needs a look,
/// `error_policy` after a failure.
pub async fn run<K, ReconcileFuture, Stop, StopFuture>(
    controller: Controller<K>,
    parked: UnboundedReceiver<ObjectRef<K>>,
    ctx: Arc<Context>,
    stopped: &Stop,
    reconcile: impl FnMut(Arc<K>, Arc<Context>) -> ReconcileFuture,
    error_policy: impl Fn(Arc<K>, &Error, Arc<Context>) -> Action,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    ReconcileFuture: Future<Output = Result<Action, Error>> + Send + 'static,
    Stop: Fn() -> StopFuture,
    StopFuture: Future<Output = ()> + Send + Sync + 'static,
{
    let store = controller.store();
    let never_ready = periodic::stopped_before_ready(&store, stopped());
    let context = ctx.clone();
    let run = controller
        // Unbounded here: `Fairness` bounds reconciles per namespace and in all, and parks
        // the objects whose namespace has no turn free (they come back through `parked`).
        .reconcile_on(watches::parked(parked))
        .with_config(controller::Config::default().concurrency(0))
        .graceful_shutdown_on(stopped())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async {
            if let Err(error) = result {
                context.after_error(&K::kind(&()), &error);
            }
        });
    tokio::select! {
        () = run => {}
        () = never_ready => {}
    }
}

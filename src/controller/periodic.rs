//! Periodic tasks (resync sweeps, statistics, housekeeping): each runs every interval once the
//! watch cache is filled, until the operator stops.

use std::time::Duration;

use kube::runtime::reflector::Store;

/// When a periodic task first runs.
pub enum First {
    AtOnce,
    AfterInterval,
}

/// Runs `work` every `interval` once `store` is filled, until `stop` resolves.
pub async fn every<K, Work, Done>(
    store: &Store<K>,
    interval: Duration,
    first: First,
    stop: impl std::future::Future<Output = ()>,
    mut work: Work,
) where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
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

/// Resolves when `stop` does while `store` has not been filled yet, and never otherwise. A
/// kube-runtime controller holds its runner until its store is filled, and its graceful
/// shutdown stops the watch that would fill it: a stop during the first listing would wait
/// forever. With no reconcile started (none can before the store is filled), the controller
/// can simply be dropped then.
pub async fn stopped_before_ready<K>(store: &Store<K>, stop: impl std::future::Future<Output = ()>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    use futures::FutureExt;
    stop.await;
    if store.wait_until_ready().now_or_never().is_some() {
        std::future::pending::<()>().await;
    }
}

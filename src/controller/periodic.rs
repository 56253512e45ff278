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

//! Periodic tasks (resync sweeps, statistics, housekeeping): each runs every interval once the
//! watch cache is filled, until the operator stops. A task that calls tenants' APIs starts one
//! pass per group (a credential, a workspace) through [`Passes`], so that no group waits on
//! another's.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::Store;
use tokio::task::JoinSet;
use tracing::warn;

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

/// The passes of one periodic task, one per group, each its own task: a tick starts them and
/// returns, so one tenant's API that hangs delays only its own group's pass, never another
/// group's or the next tick. A group whose previous pass is still in flight is skipped, so a
/// hostile tenant holds at most one pass per group (each call of it bounded by the client's
/// timeouts). Dropping the passes cancels those in flight: the operator is stopping.
pub struct Passes<Key> {
    in_flight: Arc<Mutex<HashSet<Key>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl<Key> Default for Passes<Key> {
    fn default() -> Self {
        Self {
            in_flight: Arc::default(),
            tasks: Mutex::default(),
        }
    }
}

impl<Key> Passes<Key>
where
    Key: Eq + Hash + Clone + Send + 'static,
{
    /// Starts `pass` of `key` as its own task, unless the previous pass of `key` is still in
    /// flight; returns whether it started.
    pub fn start<Pass>(&self, key: Key, pass: Pass) -> bool
    where
        Pass: std::future::Future<Output = ()> + Send + 'static,
    {
        if !self
            .in_flight
            .lock()
            .expect("passes lock")
            .insert(key.clone())
        {
            return false;
        }
        // Ends the pass's turn however the pass ends: done, panicked or cancelled.
        let turn = Turn {
            in_flight: self.in_flight.clone(),
            key,
        };
        let mut tasks = self.tasks.lock().expect("passes lock");
        // Finished passes are reaped here, so the set holds only those in flight.
        while let Some(finished) = tasks.try_join_next() {
            if let Err(error) = finished
                && error.is_panic()
            {
                warn!(error = %error, "a periodic pass panicked");
            }
        }
        tasks.spawn(async move {
            let _turn = turn;
            pass.await;
        });
        true
    }

    /// How many passes are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().expect("passes lock").len()
    }
}

/// A pass in flight; its group may start another once this is dropped.
struct Turn<Key: Eq + Hash> {
    in_flight: Arc<Mutex<HashSet<Key>>>,
    key: Key,
}

impl<Key: Eq + Hash> Drop for Turn<Key> {
    fn drop(&mut self) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            in_flight.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// Waits (bounded) until `passes` has `count` passes in flight.
    async fn until_in_flight(passes: &Passes<&'static str>, count: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while passes.in_flight() != count {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the passes settle");
    }

    #[tokio::test]
    async fn a_group_whose_pass_hangs_is_skipped_and_the_others_start_and_finish() {
        let passes = Passes::default();
        let (_never, hanging) = oneshot::channel::<()>();
        assert!(passes.start("hostile", async move {
            let _ = hanging.await;
        }));
        let (done_tx, done) = oneshot::channel();
        assert!(passes.start("honest", async move {
            let _ = done_tx.send(());
        }));
        done.await
            .expect("the honest pass ran while the other hangs");
        until_in_flight(&passes, 1).await;

        assert!(!passes.start("hostile", async {}), "one pass per group");
        let (done_tx, done) = oneshot::channel();
        assert!(
            passes.start("honest", async move {
                let _ = done_tx.send(());
            }),
            "a finished group starts again"
        );
        done.await.expect("the honest pass ran again");
    }

    #[tokio::test]
    async fn a_pass_that_panicked_does_not_keep_its_group_from_starting_again() {
        let passes = Passes::default();
        assert!(passes.start("group", async { panic!("a pass that panics") }));
        until_in_flight(&passes, 0).await;
        assert!(passes.start("group", async {}));
    }

    #[tokio::test]
    async fn dropping_the_passes_cancels_those_in_flight() {
        let passes = Passes::default();
        let (_never, hanging) = oneshot::channel::<()>();
        let (dropped_tx, dropped) = oneshot::channel::<()>();
        assert!(passes.start("hostile", async move {
            let _told_when_dropped = dropped_tx;
            let _ = hanging.await;
        }));
        drop(passes);
        tokio::time::timeout(Duration::from_secs(5), dropped)
            .await
            .expect("the pass in flight was cancelled")
            .expect_err("cancelled, not finished");
    }
}

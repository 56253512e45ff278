//! Reconciles take turns fairly between namespaces. At most `per_namespace` reconciles of one
//! namespace run at once, and at most `total` in all; a reconcile waits for its namespace's
//! turn *before* it takes one of the shared ones. So a namespace whose Flashback API hangs,
//! or that holds thousands of objects, only ever holds its own share, and the others' objects
//! never queue behind it. (A tenant's credentials live in its own namespace, so this bounds
//! each tenant credential too; the operator's default credentials are shared on purpose.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Fairness {
    total: Arc<Semaphore>,
    per_namespace: usize,
    /// Only namespaces with a reconcile running or waiting have an entry.
    namespaces: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A reconcile's turn; the next one may start when it is dropped.
pub struct Turn<'a> {
    fairness: &'a Fairness,
    namespace: String,
    semaphore: Arc<Semaphore>,
    permits: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
}

impl Fairness {
    pub fn new(total: usize, per_namespace: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_namespace: per_namespace.max(1),
            namespaces: Mutex::default(),
        }
    }

    /// Waits for a turn for an object of `namespace`: first the namespace's, then a shared one.
    pub async fn turn(&self, namespace: &str) -> Turn<'_> {
        let semaphore = self
            .lock()
            .entry(namespace.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_namespace)))
            .clone();
        let mut turn = Turn {
            fairness: self,
            namespace: namespace.to_string(),
            semaphore,
            permits: None,
        };
        // Neither semaphore is ever closed.
        let own = turn.semaphore.clone().acquire_owned().await.expect("open");
        let shared = self.total.clone().acquire_owned().await.expect("open");
        turn.permits = Some((own, shared));
        turn
    }

    /// Namespaces with a reconcile running or waiting.
    pub fn busy_namespaces(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Semaphore>>> {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.permits = None;
        let mut namespaces = self.fairness.lock();
        // Only the map and this turn still know the semaphore: nobody runs or waits.
        if Arc::strong_count(&self.semaphore) == 2 {
            namespaces.remove(&self.namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_busy_namespace_never_holds_back_another() {
        let fairness = Fairness::new(3, 2);
        let first = fairness.turn("hostile").await;
        let second = fairness.turn("hostile").await;
        // A third of the same namespace waits, and takes no shared turn while it waits.
        let waiting = tokio::time::timeout(Duration::from_millis(50), fairness.turn("hostile"));
        assert!(waiting.await.is_err());
        let honest = tokio::time::timeout(Duration::from_millis(50), fairness.turn("honest"));
        assert!(
            honest.await.is_ok(),
            "another namespace gets a turn at once"
        );
        drop((first, second));
    }

    #[tokio::test]
    async fn the_total_bounds_every_namespace_together() {
        let fairness = Fairness::new(2, 2);
        let _a = fairness.turn("a").await;
        let _b = fairness.turn("b").await;
        let third = tokio::time::timeout(Duration::from_millis(50), fairness.turn("c"));
        assert!(third.await.is_err());
    }

    #[tokio::test]
    async fn a_namespace_is_forgotten_when_nothing_runs_or_waits() {
        let fairness = Fairness::new(4, 1);
        let first = fairness.turn("team-a").await;
        let waiter = {
            let fairness = &fairness;
            async move { fairness.turn("team-a").await }
        };
        tokio::pin!(waiter);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut waiter)
                .await
                .is_err()
        );
        drop(first);
        assert_eq!(fairness.busy_namespaces(), 1, "the waiter still needs it");
        let second = waiter.await;
        drop(second);
        assert_eq!(fairness.busy_namespaces(), 0);
    }
}

//! Reconciles take turns fairly between namespaces. At most `per_namespace` reconciles of one
//! namespace run at once, and at most `total` in all; a reconcile takes its namespace's turn
//! *before* it waits for one of the shared ones. So a namespace whose Flashback API hangs, or
//! that holds thousands of objects, only ever holds its own share, and the others' objects
//! never queue behind it. (A tenant's credentials live in its own namespace, so this bounds
//! each tenant credential too; the operator's default credentials are shared on purpose.)
//!
//! An object whose namespace has no free turn does not wait in a reconcile: it is *parked*
//! (once, however often it is asked for), and its controller is told to reconcile it again
//! when one of that namespace's turns ends, first parked first. So after a burst of 10,000
//! creates in one namespace, 10,000 names wait in a queue, not 10,000 reconciles in the
//! controller's runner (which polls every reconcile it holds whenever one of them finishes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Called once, when a parked object may have its turn.
pub type Wake = Box<dyn FnOnce() + Send>;

pub struct Fairness {
    total: Arc<Semaphore>,
    per_namespace: usize,
    /// Only namespaces with a reconcile running or an object parked have an entry.
    namespaces: Mutex<HashMap<String, Namespace>>,
}

#[derive(Default)]
struct Namespace {
    /// The objects holding a turn (running, or waiting for a shared turn).
    running: HashSet<String>,
    parked: VecDeque<(String, Wake)>,
    /// The keys in `parked`, so that an object is parked once.
    parked_keys: HashSet<String>,
}

/// A reconcile's turn; the namespace's next parked object is woken when it is dropped.
pub struct Turn<'a> {
    fairness: &'a Fairness,
    namespace: String,
    key: String,
    /// Taken last, given back first.
    shared: Option<OwnedSemaphorePermit>,
}

impl Fairness {
    pub fn new(total: usize, per_namespace: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_namespace: per_namespace.max(1),
            namespaces: Mutex::default(),
        }
    }

    /// A turn for the object `key` of `namespace`: its namespace's at once if one is free,
    /// then a shared one (waiting for it). With none free in the namespace the object is
    /// parked and `None` returned: `wake` is called once one of the namespace's turns ends.
    pub async fn turn(&self, namespace: &str, key: &str, wake: Wake) -> Option<Turn<'_>> {
        {
            let mut namespaces = self.lock();
            let entry = namespaces.entry(namespace.to_string()).or_default();
            // kube-runtime never runs one object twice at once; should it, the second waits.
            if entry.running.len() >= self.per_namespace || entry.running.contains(key) {
                if entry.parked_keys.insert(key.to_string()) {
                    entry.parked.push_back((key.to_string(), wake));
                }
                return None;
            }
            entry.running.insert(key.to_string());
            // Parked before and given a turn by another trigger: its queue entry is stale now
            // (skipped when its turn in the queue comes).
            entry.parked_keys.remove(key);
        }
        // From here the namespace's turn is this one's, and given back when dropped, even if
        // the wait for a shared turn is cancelled.
        let mut turn = Turn {
            fairness: self,
            namespace: namespace.to_string(),
            key: key.to_string(),
            shared: None,
        };
        // The semaphore is never closed.
        turn.shared = Some(self.total.clone().acquire_owned().await.expect("open"));
        Some(turn)
    }

    /// Takes the parked objects of `namespace` that its free turns can serve (a woken object
    /// that never comes, being deleted meanwhile, must not leave a turn unused), and forgets
    /// the namespace once nothing runs or waits in it.
    fn wake_into_free_turns(
        &self,
        namespaces: &mut HashMap<String, Namespace>,
        namespace: &str,
    ) -> Vec<Wake> {
        let Some(entry) = namespaces.get_mut(namespace) else {
            return Vec::new();
        };
        let mut wakes = Vec::new();
        while entry.running.len() + wakes.len() < self.per_namespace {
            let Some((key, wake)) = entry.parked.pop_front() else {
                break;
            };
            // Not parked any more (it had a turn meanwhile): a stale entry.
            if entry.parked_keys.remove(&key) {
                wakes.push(wake);
            }
        }
        if entry.running.is_empty() && entry.parked.is_empty() {
            namespaces.remove(namespace);
        }
        wakes
    }

    /// An object woken from `namespace` will never come (kube-runtime found it gone): its
    /// place goes to the next parked one.
    pub fn never_came(&self, namespace: &str) {
        let wakes = self.wake_into_free_turns(&mut self.lock(), namespace);
        for wake in wakes {
            wake();
        }
    }

    /// Forgets the parked objects `live` does not accept (gone since they were parked), and
    /// wakes parked objects into every free turn; returns how many objects are parked.
    pub fn tidy(&self, live: impl Fn(&str, &str) -> bool) -> usize {
        let wakes: Vec<Wake> = {
            let mut namespaces = self.lock();
            let names: Vec<String> = namespaces.keys().cloned().collect();
            let mut wakes = Vec::new();
            for namespace in names {
                if let Some(entry) = namespaces.get_mut(&namespace) {
                    entry.parked_keys.retain(|key| live(&namespace, key));
                    let keys = &entry.parked_keys;
                    entry.parked.retain(|(key, _)| keys.contains(key));
                }
                wakes.extend(self.wake_into_free_turns(&mut namespaces, &namespace));
            }
            wakes
        };
        for wake in wakes {
            wake();
        }
        self.parked()
    }

    /// Whether the object `key` of `namespace` is parked: a reconcile of it is to come.
    pub fn is_parked(&self, namespace: &str, key: &str) -> bool {
        self.lock()
            .get(namespace)
            .is_some_and(|n| n.parked_keys.contains(key))
    }

    /// Namespaces with a reconcile running or an object parked.
    pub fn busy_namespaces(&self) -> usize {
        self.lock().len()
    }

    /// Objects parked in `namespace`.
    pub fn parked_in(&self, namespace: &str) -> usize {
        self.lock()
            .get(namespace)
            .map_or(0, |n| n.parked_keys.len())
    }

    /// Objects parked, in every namespace.
    pub fn parked(&self) -> usize {
        self.lock().values().map(|n| n.parked_keys.len()).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Namespace>> {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.shared = None;
        let wakes = {
            let mut namespaces = self.fairness.lock();
            let Some(entry) = namespaces.get_mut(&self.namespace) else {
                return;
            };
            entry.running.remove(&self.key);
            self.fairness
                .wake_into_free_turns(&mut namespaces, &self.namespace)
        };
        // Outside the lock: waking sends to a controller, which may reconcile at once.
        for wake in wakes {
            wake();
        }
    }
}

/// The way back to one kind's controller for its parked objects: the controller reconciles
/// what arrives on the other end (at most one entry per parked object).
pub struct Requeue<K: Resource>(UnboundedSender<ObjectRef<K>>);

impl<K> Requeue<K>
where
    K: Resource<DynamicType = ()> + 'static,
{
    pub fn channel() -> (Self, UnboundedReceiver<ObjectRef<K>>) {
        let (sender, receiver) = unbounded_channel();
        (Self(sender), receiver)
    }

    /// The key `object` is parked under: unique among every kind's objects of a namespace.
    pub fn key(object: &K) -> String {
        format!(
            "{}/{}",
            K::kind(&()),
            object.meta().name.as_deref().unwrap_or_default()
        )
    }

    /// Sends `object` back to its controller when called.
    pub fn wake(&self, object: &K) -> Wake {
        let (sender, object) = (self.0.clone(), ObjectRef::from(object));
        // The controller may have stopped: nothing is left to reconcile then.
        Box::new(move || {
            let _ = sender.send(object);
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A wake that records which key it woke.
    fn recorder() -> (Arc<Mutex<Vec<String>>>, impl Fn(&str) -> Wake) {
        let woken: Arc<Mutex<Vec<String>>> = Arc::default();
        let make = {
            let woken = woken.clone();
            move |key: &str| -> Wake {
                let (woken, key) = (woken.clone(), key.to_string());
                Box::new(move || woken.lock().unwrap().push(key))
            }
        };
        (woken, make)
    }

    #[tokio::test]
    async fn a_busy_namespace_never_holds_back_another() {
        let (woken, wake) = recorder();
        let fairness = Fairness::new(3, 2);
        let first = fairness.turn("hostile", "a", wake("a")).await.unwrap();
        let second = fairness.turn("hostile", "b", wake("b")).await.unwrap();
        // A third of the same namespace is parked, and takes no shared turn.
        assert!(fairness.turn("hostile", "c", wake("c")).await.is_none());
        let honest = tokio::time::timeout(
            Duration::from_millis(50),
            fairness.turn("honest", "d", wake("d")),
        );
        assert!(
            honest.await.is_ok_and(|turn| turn.is_some()),
            "another namespace gets a turn at once"
        );
        drop((first, second));
        assert_eq!(*woken.lock().unwrap(), ["c"]);
    }

    #[tokio::test]
    async fn parked_objects_are_woken_first_parked_first_and_once_each() {
        let (woken, wake) = recorder();
        let fairness = Fairness::new(4, 1);
        let running = fairness.turn("team-a", "a", wake("a")).await.unwrap();
        for key in ["b", "c", "b", "d", "c"] {
            assert!(fairness.turn("team-a", key, wake(key)).await.is_none());
        }
        assert_eq!(fairness.parked(), 3, "each object is parked once");
        assert_eq!(
            (fairness.parked_in("team-a"), fairness.parked_in("team-b")),
            (3, 0)
        );
        assert!(fairness.is_parked("team-a", "b") && fairness.is_parked("team-a", "d"));
        assert!(!fairness.is_parked("team-a", "a"), "running, not parked");
        assert!(!fairness.is_parked("team-a", "e") && !fairness.is_parked("team-b", "b"));
        drop(running);
        assert!(!fairness.is_parked("team-a", "b"), "woken");
        assert_eq!(*woken.lock().unwrap(), ["b"]);
        // The woken object takes the free turn; its end wakes the next.
        let b = fairness.turn("team-a", "b", wake("b")).await.unwrap();
        drop(b);
        assert_eq!(*woken.lock().unwrap(), ["b", "c"]);
        assert_eq!(fairness.parked(), 1);
    }

    #[tokio::test]
    async fn the_total_bounds_every_namespace_together() {
        let (_, wake) = recorder();
        let fairness = Fairness::new(2, 2);
        let _a = fairness.turn("a", "a", wake("a")).await;
        let _b = fairness.turn("b", "b", wake("b")).await;
        let third = tokio::time::timeout(
            Duration::from_millis(50),
            fairness.turn("c", "c", wake("c")),
        );
        assert!(third.await.is_err(), "waits for a shared turn");
        assert_eq!(
            fairness.busy_namespaces(),
            2,
            "a wait cancelled gives its namespace's turn back"
        );
    }

    #[tokio::test]
    async fn a_namespace_is_forgotten_when_nothing_runs_or_is_parked() {
        let (woken, wake) = recorder();
        let fairness = Fairness::new(4, 1);
        let first = fairness.turn("team-a", "a", wake("a")).await.unwrap();
        assert!(fairness.turn("team-a", "b", wake("b")).await.is_none());
        drop(first);
        assert_eq!(fairness.parked(), 0);
        assert_eq!(
            fairness.busy_namespaces(),
            0,
            "b is woken, and parked no more"
        );
        let second = fairness.turn("team-a", "b", wake("b")).await.unwrap();
        drop(second);
        assert_eq!(fairness.busy_namespaces(), 0);
        assert_eq!(*woken.lock().unwrap(), ["b"]);
    }

    #[tokio::test]
    async fn free_turns_are_filled_and_a_woken_object_that_never_comes_passes_its_place_on() {
        let (woken, wake) = recorder();
        let fairness = Fairness::new(8, 2);
        let a = fairness.turn("team-a", "a", wake("a")).await.unwrap();
        let b = fairness.turn("team-a", "b", wake("b")).await.unwrap();
        for key in ["c", "d", "e", "f"] {
            assert!(fairness.turn("team-a", key, wake(key)).await.is_none());
        }
        drop(a);
        assert_eq!(*woken.lock().unwrap(), ["c"]);
        // Every free turn is offered a parked object (one woken may never come).
        drop(b);
        assert_eq!(*woken.lock().unwrap(), ["c", "d", "e"]);
        // c was deleted meanwhile: kube-runtime reports it gone, and f gets its place.
        fairness.never_came("team-a");
        assert_eq!(*woken.lock().unwrap(), ["c", "d", "e", "f"]);
        assert_eq!(fairness.parked(), 0);
    }

    #[tokio::test]
    async fn an_object_given_a_turn_another_way_is_not_woken_for_its_old_place() {
        let (woken, wake) = recorder();
        let fairness = Fairness::new(8, 1);
        let a = fairness.turn("team-a", "a", wake("a")).await.unwrap();
        assert!(fairness.turn("team-a", "b", wake("b")).await.is_none());
        assert!(fairness.turn("team-a", "c", wake("c")).await.is_none());
        drop(a);
        assert_eq!(*woken.lock().unwrap(), ["b"]);
        // c comes first, by another trigger, and takes the turn; b parks again.
        let c = fairness.turn("team-a", "c", wake("c")).await.unwrap();
        assert!(fairness.turn("team-a", "b", wake("b")).await.is_none());
        assert_eq!(fairness.parked(), 1);
        drop(c);
        assert_eq!(
            *woken.lock().unwrap(),
            ["b", "b"],
            "c's old place is skipped"
        );
    }

    #[tokio::test]
    async fn tidying_forgets_parked_objects_that_are_gone_and_fills_free_turns() {
        let (woken, wake) = recorder();
        let fairness = Fairness::new(8, 1);
        let a = fairness.turn("team-a", "a", wake("a")).await.unwrap();
        for key in ["gone", "kept"] {
            assert!(fairness.turn("team-a", key, wake(key)).await.is_none());
        }
        assert_eq!(fairness.tidy(|_, key| key != "gone"), 1);
        assert!(woken.lock().unwrap().is_empty(), "no turn is free yet");
        drop(a);
        assert_eq!(*woken.lock().unwrap(), ["kept"]);
        assert_eq!(fairness.tidy(|_, _| true), 0);
        assert_eq!(fairness.busy_namespaces(), 0);
    }
}

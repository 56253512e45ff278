//! Per-object exponential backoff for reconciles that failed with a transient error.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The key of an object's backoff: its uid (namespace/name before it has one).
pub fn key_of<K: kube::Resource>(object: &K) -> String {
    use kube::ResourceExt;
    object.uid().unwrap_or_else(|| {
        format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        )
    })
}

/// Counts consecutive failures per object and turns them into the next delay.
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: Mutex::default(),
        }
    }

    /// Records one more failure of `key` and returns how long to wait; never less than
    /// `at_least` (a `Retry-After` the API gave).
    pub fn next(&self, key: &str, at_least: Option<Duration>) -> Duration {
        let failures = {
            let mut map = self.failures.lock().expect("backoff lock");
            let count = map.entry(key.to_string()).or_default();
            *count = count.saturating_add(1);
            *count
        };
        let delay = delay(failures, self.base, self.cap, rand::random::<f64>());
        delay.max(at_least.unwrap_or_default())
    }

    /// Forgets the failures of every key `keep` refuses (objects that are gone); returns how
    /// many keys are left.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut map = self.failures.lock().expect("backoff lock");
        map.retain(|key, _| keep(key));
        map.len()
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn reset(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

/// The delay after `failures` consecutive failures: `base * 2^(failures-1)` capped at `cap`,
/// then jittered into its upper half so that objects failing together spread out but none
/// retries much sooner than the schedule. `jitter` is in `[0, 1)`.
pub fn delay(failures: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(31);
    let full = base.saturating_mul(1u32 << exponent).min(cap);
    full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(300);

    #[test]
    fn doubles_per_failure_within_its_jitter_band() {
        assert_eq!(delay(1, BASE, CAP, 0.0), Duration::from_millis(500));
        assert_eq!(
            delay(1, BASE, CAP, 0.999_999),
            Duration::from_millis(999) + Duration::from_nanos(999_500)
        );
        assert_eq!(delay(4, BASE, CAP, 0.0), Duration::from_secs(4));
        assert_eq!(delay(4, BASE, CAP, 0.5), Duration::from_secs(6));
    }

    #[test]
    fn never_exceeds_the_cap_even_after_many_failures() {
        for failures in [10, 40, u32::MAX] {
            assert!(delay(failures, BASE, CAP, 0.999) <= CAP);
            assert!(delay(failures, BASE, CAP, 0.0) >= CAP / 2);
        }
    }

    #[test]
    fn failures_are_counted_per_object_and_reset_on_success() {
        let backoff = Backoff::new(BASE, CAP);
        let first = backoff.next("a", None);
        let second = backoff.next("a", None);
        let other = backoff.next("b", None);
        assert!(first <= BASE && second >= BASE, "{first:?} then {second:?}");
        assert!(other <= BASE, "another object starts from the base");
        backoff.reset("a");
        assert!(backoff.next("a", None) <= BASE);
    }

    #[test]
    fn the_failures_of_objects_that_are_gone_are_forgotten() {
        let backoff = Backoff::new(BASE, CAP);
        backoff.next("gone", None);
        backoff.next("here", None);
        assert_eq!(backoff.retain(|key| key == "here"), 1);
        assert!(backoff.next("gone", None) <= BASE, "starts afresh");
    }

    #[test]
    fn retry_after_is_a_floor() {
        let backoff = Backoff::new(BASE, CAP);
        assert_eq!(
            backoff.next("a", Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
    }
}

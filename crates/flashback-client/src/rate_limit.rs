//! A token bucket that bounds the call rate of one API credential.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls per second, with bursts of up to `burst` calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained calls per second. Zero, negative or infinite means "no limit".
    pub per_second: f64,
    /// Calls allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 10.0,
            burst: 20,
        }
    }
}

impl RateLimit {
    pub fn unlimited() -> Self {
        Self {
            per_second: f64::INFINITY,
            burst: 1,
        }
    }

    fn is_unlimited(&self) -> bool {
        !(self.per_second.is_finite() && self.per_second > 0.0)
    }
}

/// The bucket arithmetic, with time passed in so it can be tested without a clock.
///
/// A call *reserves* a token, possibly driving the level below zero; the deficit tells how long
/// that caller must wait. Callers are thus served in arrival order and the rate holds however
/// many wait at once.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
    /// No call before this instant: the server asked for quiet (`Retry-After`).
    paused_until: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst.max(1)),
            updated: now,
            paused_until: None,
        }
    }

    /// Holds every call back until `until`.
    pub(crate) fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }

    /// How long from `now` the server's pause still holds every call back.
    pub(crate) fn paused_for(&self, now: Instant) -> Duration {
        self.paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// Takes one token at `now`; returns how long the caller must wait before it may call.
    pub(crate) fn reserve(&mut self, now: Instant) -> Duration {
        // A paused bucket serves its callers as if they arrived when the pause ends.
        let start = self.paused_until.filter(|p| *p > now).unwrap_or(now);
        let paused = start - now;
        if self.limit.is_unlimited() {
            return paused;
        }
        let elapsed = start.saturating_duration_since(self.updated).as_secs_f64();
        let capacity = f64::from(self.limit.burst.max(1));
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(capacity);
        self.updated = self.updated.max(start);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            paused
        } else {
            paused + Duration::from_secs_f64(-self.tokens / self.limit.per_second)
        }
    }
}

/// A token bucket shared by every clone of one client.
#[derive(Clone, Debug)]
pub(crate) struct RateLimiter {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            bucket: Arc::new(Mutex::new(TokenBucket::new(limit, Instant::now()))),
        }
    }

    /// Holds back every call of every clone for `wait` (a server's `Retry-After`).
    pub(crate) fn pause_for(&self, wait: Duration) {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket.pause_until(Instant::now() + wait);
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        // A poisoned lock only means another task panicked mid-update; the level is still usable.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a call is allowed and returns how long that took. A server's pause that
    /// is set while the caller waits holds it back too: a call that queued before a 429 never
    /// goes out inside the quiet period the 429 asked for. When the pause would hold the
    /// caller longer than `max_wait`, it gets `Err(remaining pause)` at once instead, so that
    /// no task sits idle for minutes.
    pub(crate) async fn acquire(&self, max_wait: Duration) -> Result<Duration, Duration> {
        let started = Instant::now();
        let wait = {
            let mut bucket = self.bucket();
            let paused = bucket.paused_for(started);
            if paused > max_wait {
                return Err(paused);
            }
            bucket.reserve(started)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        loop {
            let paused = self.bucket().paused_for(Instant::now());
            if paused.is_zero() {
                return Ok(started.elapsed());
            }
            if paused > max_wait {
                return Err(paused);
            }
            tokio::time::sleep(paused).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_is_free_then_calls_are_spaced_by_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(
            RateLimit {
                per_second: 10.0,
                burst: 3,
            },
            start,
        );
        let waits: Vec<Duration> = (0..5).map(|_| bucket.reserve(start)).collect();
        assert_eq!(waits, [ms(0), ms(0), ms(0), ms(100), ms(200)]);
    }

    #[test]
    fn tokens_refill_with_time_up_to_the_burst() {
        let start = Instant::now();
        let limit = RateLimit {
            per_second: 10.0,
            burst: 2,
        };
        let mut bucket = TokenBucket::new(limit, start);
        bucket.reserve(start);
        bucket.reserve(start);
        // 250 ms later 2.5 tokens came back, capped at the burst of 2.
        let later = start + ms(250);
        assert_eq!(bucket.reserve(later), ms(0));
        assert_eq!(bucket.reserve(later), ms(0));
        assert_eq!(bucket.reserve(later), ms(100));
        // An hour of silence still only buys one burst.
        let much_later = later + Duration::from_secs(3600);
        let waits: Vec<Duration> = (0..3).map(|_| bucket.reserve(much_later)).collect();
        assert_eq!(waits, [ms(0), ms(0), ms(100)]);
    }

    #[test]
    fn a_pause_holds_every_caller_back_then_the_rate_resumes() {
        let start = Instant::now();
        let limit = RateLimit {
            per_second: 10.0,
            burst: 1,
        };
        let mut bucket = TokenBucket::new(limit, start);
        bucket.pause_until(start + ms(1000));
        bucket.pause_until(start + ms(500)); // a shorter pause never shortens a longer one
        assert_eq!(bucket.reserve(start + ms(200)), ms(800));
        assert_eq!(bucket.reserve(start + ms(200)), ms(900));
        assert_eq!(bucket.reserve(start + ms(2000)), ms(0));

        let mut unlimited = TokenBucket::new(RateLimit::unlimited(), start);
        unlimited.pause_until(start + ms(300));
        assert_eq!(unlimited.reserve(start), ms(300));
        assert_eq!(unlimited.reserve(start + ms(300)), ms(0));
    }

    #[test]
    fn unlimited_never_waits() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(RateLimit::unlimited(), start);
        assert!((0..1000).all(|_| bucket.reserve(start).is_zero()));
    }

    #[tokio::test]
    async fn clones_share_one_bucket() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 20.0,
            burst: 1,
        });
        let clone = limiter.clone();
        let hour = Duration::from_secs(3600);
        assert!(limiter.acquire(hour).await.unwrap() < ms(5));
        let waited = clone.acquire(hour).await.unwrap();
        assert!(waited > ms(30) && waited <= ms(60), "{waited:?}");
    }

    #[tokio::test]
    async fn a_pause_set_while_a_caller_waits_holds_it_back_too() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 1,
        });
        let hour = Duration::from_secs(3600);
        limiter.acquire(hour).await.unwrap();
        // The next caller queues for ~100 ms; a 429 arrives meanwhile asking for 300 ms.
        let queued = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire(hour).await }
        });
        tokio::time::sleep(ms(20)).await;
        let paused_at = Instant::now();
        limiter.pause_for(ms(300));
        queued.await.unwrap().unwrap();
        assert!(paused_at.elapsed() >= ms(300), "{:?}", paused_at.elapsed());
    }

    #[tokio::test]
    async fn a_pause_longer_than_the_caller_may_wait_fails_at_once() {
        let limiter = RateLimiter::new(RateLimit::unlimited());
        limiter.pause_for(Duration::from_secs(120));
        let started = Instant::now();
        let remaining = limiter.acquire(Duration::from_secs(10)).await.unwrap_err();
        assert!(started.elapsed() < ms(50));
        assert!(remaining > Duration::from_secs(119), "{remaining:?}");
    }
}

//! When to call again, and how long to wait first. Pure: the caller supplies the jitter.

use std::time::Duration;

use super::error::ApiError;

/// A bounded retry budget with exponential backoff and full jitter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Ceiling of the first wait; it doubles on every further failure.
    pub base_delay: Duration,
    /// Cap of any single wait. A `Retry-After` longer than this is not slept through in-process:
    /// the error goes back to the caller, whose own requeue honours it.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The largest wait after `failed_attempts` failures: `base * 2^(failed_attempts - 1)`,
    /// capped at `max_delay`.
    pub fn backoff_ceiling(&self, failed_attempts: u32) -> Duration {
        let doublings = failed_attempts.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// The wait after `failed_attempts` failures: uniform in `[0, ceiling]` ("full jitter",
    /// `jitter` in `[0, 1]`), but never shorter than the server's `Retry-After`.
    pub fn backoff(
        &self,
        failed_attempts: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Duration {
        let jittered = self
            .backoff_ceiling(failed_attempts)
            .mul_f64(jitter.clamp(0.0, 1.0));
        jittered.max(retry_after.unwrap_or(Duration::ZERO))
    }

    /// What to do after attempt number `attempts_made` failed with `error`.
    ///
    /// `idempotent` is false for `POST` (create): sending it again after a timeout or a 500 could
    /// create a second repo, because the first may have been stored before the answer was lost.
    /// So a create is retried only when the server certainly did not act (connection refused,
    /// 429, 503); otherwise the transient error goes back to the caller, who looks the repo up
    /// by name before creating again. A create answered 429 without `Retry-After` goes back at
    /// once too: the API answers a bucket quota so (429, no code, no `Retry-After`), which no
    /// retry lifts, and only the caller knows whether its call was one a quota can refuse.
    pub(crate) fn decide(
        &self,
        attempts_made: u32,
        error: &ApiError,
        idempotent: bool,
        jitter: f64,
    ) -> Decision {
        // A server that did not answer in time is not asked again at once: the caller backs
        // off, so a server that never answers holds a caller for one timeout, not four.
        if !error.is_transient()
            || error.is_timeout()
            || (!idempotent && !error.request_not_processed())
        {
            return Decision::Fail;
        }
        if error
            .retry_after()
            .is_some_and(|wait| wait > self.max_delay)
        {
            return Decision::Fail;
        }
        if !idempotent && matches!(error, ApiError::RateLimited { retry_after: None }) {
            return Decision::Fail;
        }
        if attempts_made >= self.max_attempts {
            // With a budget of one there was nothing to exhaust: report the failure itself.
            return if attempts_made > 1 {
                Decision::Exhausted
            } else {
                Decision::Fail
            };
        }
        Decision::Retry(self.backoff(attempts_made, jitter, error.retry_after()))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Return the error as it is: retrying cannot help or is not safe.
    Fail,
    /// The budget is spent: wrap the error in `RetriesExhausted`.
    Exhausted,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
        }
    }

    fn server_error(status: u16, retry_after: Option<Duration>) -> ApiError {
        ApiError::Transient {
            status: Some(status),
            reason: "boom".to_owned(),
            retry_after,
            source: None,
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy();
        let ceilings: Vec<u128> = (1..=6).map(|n| p.backoff_ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(p.backoff_ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_spans_zero_to_ceiling_and_respects_retry_after() {
        let p = policy();
        assert_eq!(p.backoff(2, 0.0, None), Duration::ZERO);
        assert_eq!(p.backoff(2, 0.5, None), Duration::from_millis(200));
        assert_eq!(p.backoff(2, 1.0, None), Duration::from_millis(400));
        assert_eq!(p.backoff(2, 7.0, None), Duration::from_millis(400));
        let retry_after = Some(Duration::from_millis(900));
        assert_eq!(p.backoff(1, 0.1, retry_after), Duration::from_millis(900));
    }

    #[test]
    fn transient_errors_retry_until_the_budget_is_spent() {
        let p = policy();
        let err = server_error(500, None);
        assert_eq!(
            p.decide(1, &err, true, 1.0),
            Decision::Retry(Duration::from_millis(200))
        );
        assert_eq!(
            p.decide(3, &err, true, 1.0),
            Decision::Retry(Duration::from_millis(800))
        );
        assert_eq!(p.decide(4, &err, true, 1.0), Decision::Exhausted);
        assert_eq!(
            RetryPolicy::never().decide(1, &err, true, 1.0),
            Decision::Fail
        );
    }

    #[test]
    fn permanent_errors_are_never_retried() {
        let err = ApiError::NameAlreadyUsed {
            message: "x".to_owned(),
        };
        assert_eq!(policy().decide(1, &err, true, 0.5), Decision::Fail);
        assert_eq!(
            policy().decide(1, &ApiError::Unauthorized, true, 0.5),
            Decision::Fail
        );
    }

    #[test]
    fn a_create_is_resent_only_when_the_server_did_not_act() {
        let p = policy();
        assert_eq!(
            p.decide(1, &server_error(500, None), false, 1.0),
            Decision::Fail
        );
        assert!(matches!(
            p.decide(1, &server_error(503, None), false, 1.0),
            Decision::Retry(_)
        ));
        let throttled = ApiError::RateLimited {
            retry_after: Some(Duration::from_millis(300)),
        };
        assert!(matches!(
            p.decide(1, &throttled, false, 1.0),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn a_create_answered_429_without_retry_after_goes_back_to_the_caller_at_once() {
        let p = policy();
        let bare = ApiError::RateLimited { retry_after: None };
        assert_eq!(p.decide(1, &bare, false, 1.0), Decision::Fail);
        assert!(
            matches!(p.decide(1, &bare, true, 1.0), Decision::Retry(_)),
            "a read is a throttle's to slow down"
        );
    }

    #[test]
    fn a_retry_after_beyond_the_cap_goes_back_to_the_caller() {
        let err = ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(policy().decide(1, &err, true, 0.5), Decision::Fail);
        let err = ApiError::RateLimited {
            retry_after: Some(Duration::from_millis(700)),
        };
        assert_eq!(
            policy().decide(1, &err, true, 0.0),
            Decision::Retry(Duration::from_millis(700))
        );
    }
}

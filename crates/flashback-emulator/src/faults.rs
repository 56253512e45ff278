//! Fault injection: added latency, random 5xx, random 429, and "fail the next N calls".
//!
//! Faults apply to the public API routes only, never to `/_emulator/`. Each fault can be
//! narrowed to one route (method + route template such as `/repo/{id}`). Randomness comes from
//! a seedable generator, so a test that sets `seed` sees the same answers on every run.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The fault settings, as `PUT /_emulator/faults` takes them and `GET` returns them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Seed of the generator behind `errors.share` and `rateLimit.share`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// A share of answers replaced by a server error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<RandomErrors>,
    /// A share of answers replaced by 429 with a `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RandomRateLimit>,
    /// The next `count` calls fail; `GET` shows how many remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_next: Option<FailNext>,
    /// Answer refused writes (validation errors with an `error_code`) as HTTP 200 with
    /// `"success": false`, as the real API sometimes does.
    #[serde(default)]
    pub success_false_under_200: bool,
}

/// A method and route template, e.g. `{"method": "POST", "route": "/repo"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteFilter {
    /// Any method when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub route: String,
}

impl RouteFilter {
    fn matches(&self, method: &str, route: &str) -> bool {
        self.route == route
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

fn applies(filter: &Option<RouteFilter>, method: &str, route: &str) -> bool {
    filter.as_ref().is_none_or(|f| f.matches(method, route))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Latency {
    pub ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteFilter>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RandomErrors {
    /// Between 0 and 1.
    pub share: f64,
    /// A 5xx; 503 when absent.
    #[serde(default = "default_error_status")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteFilter>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RandomRateLimit {
    /// Between 0 and 1.
    pub share: f64,
    /// Sent as `Retry-After`; 1 when absent.
    #[serde(default = "default_retry_after")]
    pub retry_after_seconds: u64,
    /// E.g. `QUOTA_EXCEEDED`; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteFilter>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailNext {
    pub count: u32,
    /// Any 4xx or 5xx; 500 when absent.
    #[serde(default = "default_fail_status")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteFilter>,
}

impl FailNext {
    /// The next `count` calls on any route answer `status`.
    pub fn new(count: u32, status: u16) -> Self {
        Self {
            count,
            status,
            error_code: None,
            retry_after_seconds: None,
            route: None,
        }
    }

    /// Narrowed to one method and route template, e.g. `("POST", "/repo")`.
    pub fn on(mut self, method: &str, route: &str) -> Self {
        self.route = Some(RouteFilter {
            method: Some(method.to_owned()),
            route: route.to_owned(),
        });
        self
    }
}

impl From<FailNext> for Faults {
    fn from(fail_next: FailNext) -> Self {
        Faults {
            fail_next: Some(fail_next),
            ..Faults::default()
        }
    }
}

fn default_error_status() -> u16 {
    503
}

fn default_retry_after() -> u64 {
    1
}

fn default_fail_status() -> u16 {
    500
}

impl Faults {
    /// Refuses settings that cannot mean anything.
    pub fn check(&self) -> Result<(), String> {
        let share_ok = |share: f64| (0.0..=1.0).contains(&share);
        if let Some(errors) = &self.errors {
            if !share_ok(errors.share) {
                return Err("errors.share must be between 0 and 1".to_owned());
            }
            if !(500..=599).contains(&errors.status) {
                return Err("errors.status must be a 5xx".to_owned());
            }
        }
        if let Some(rate_limit) = &self.rate_limit
            && !share_ok(rate_limit.share)
        {
            return Err("rateLimit.share must be between 0 and 1".to_owned());
        }
        if let Some(fail_next) = &self.fail_next
            && !(400..=599).contains(&fail_next.status)
        {
            return Err("failNext.status must be a 4xx or 5xx".to_owned());
        }
        Ok(())
    }
}

/// An answer that replaces the real one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    pub status: u16,
    pub error_code: Option<String>,
    pub retry_after_seconds: Option<u64>,
}

/// What the faults make of one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub delay: Duration,
    pub injected: Option<Injected>,
}

/// The live fault settings and the generator.
pub struct FaultState {
    faults: Faults,
    rng: StdRng,
}

impl Default for FaultState {
    fn default() -> Self {
        Self::new(Faults::default())
    }
}

impl FaultState {
    pub fn new(faults: Faults) -> Self {
        let rng = match faults.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self { faults, rng }
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Decides the fate of one request: `failNext` first, then `rateLimit`, then `errors`.
    pub fn judge(&mut self, method: &str, route: &str) -> Verdict {
        let delay = match &self.faults.latency {
            Some(latency) if applies(&latency.route, method, route) => {
                Duration::from_millis(latency.ms)
            }
            _ => Duration::ZERO,
        };
        let injected = self.injected(method, route);
        Verdict { delay, injected }
    }

    fn injected(&mut self, method: &str, route: &str) -> Option<Injected> {
        if let Some(fail) = &mut self.faults.fail_next
            && fail.count > 0
            && applies(&fail.route, method, route)
        {
            fail.count -= 1;
            return Some(Injected {
                status: fail.status,
                error_code: fail.error_code.clone(),
                retry_after_seconds: fail.retry_after_seconds,
            });
        }
        if let Some(limit) = &self.faults.rate_limit
            && applies(&limit.route, method, route)
            && self.rng.random_bool(limit.share)
        {
            return Some(Injected {
                status: 429,
                error_code: limit.error_code.clone(),
                retry_after_seconds: Some(limit.retry_after_seconds),
            });
        }
        if let Some(errors) = &self.faults.errors
            && applies(&errors.route, method, route)
            && self.rng.random_bool(errors.share)
        {
            return Some(Injected {
                status: errors.status,
                error_code: errors.error_code.clone(),
                retry_after_seconds: errors.retry_after_seconds,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn faults(value: serde_json::Value) -> Faults {
        let faults: Faults = serde_json::from_value(value).unwrap();
        faults.check().unwrap();
        faults
    }

    #[test]
    fn fail_next_counts_down_on_its_route_only() {
        let mut state = FaultState::new(faults(json!({
            "failNext": {"count": 2, "status": 503, "route": {"method": "POST", "route": "/repo"}}
        })));
        assert_eq!(state.judge("GET", "/repo").injected, None);
        assert_eq!(state.judge("post", "/repo").injected.unwrap().status, 503);
        assert!(state.judge("POST", "/repo").injected.is_some());
        assert_eq!(state.judge("POST", "/repo").injected, None);
        assert_eq!(state.faults().fail_next.as_ref().unwrap().count, 0);
    }

    #[test]
    fn a_seed_makes_random_faults_repeatable() {
        let settings = faults(json!({"seed": 7, "errors": {"share": 0.5}}));
        let run = |settings: &Faults| {
            let mut state = FaultState::new(settings.clone());
            (0..200)
                .map(|_| state.judge("GET", "/repo").injected.is_some())
                .collect::<Vec<_>>()
        };
        let first = run(&settings);
        assert_eq!(first, run(&settings));
        let failed = first.iter().filter(|f| **f).count();
        assert!((60..140).contains(&failed), "{failed} of 200");
    }

    #[test]
    fn rate_limit_answers_carry_retry_after_and_latency_applies() {
        let mut state = FaultState::new(faults(json!({
            "latency": {"ms": 25},
            "rateLimit": {"share": 1.0, "retryAfterSeconds": 3, "errorCode": "QUOTA_EXCEEDED"}
        })));
        let verdict = state.judge("GET", "/repo/stats");
        assert_eq!(verdict.delay, Duration::from_millis(25));
        let injected = verdict.injected.unwrap();
        assert_eq!(
            (injected.status, injected.retry_after_seconds),
            (429, Some(3))
        );
        assert_eq!(injected.error_code.as_deref(), Some("QUOTA_EXCEEDED"));
    }

    #[test]
    fn nonsense_is_refused() {
        let bad: Faults = serde_json::from_value(json!({"errors": {"share": 2.0}})).unwrap();
        assert!(bad.check().is_err());
        let bad: Faults =
            serde_json::from_value(json!({"errors": {"share": 0.1, "status": 404}})).unwrap();
        assert!(bad.check().is_err());
        assert!(serde_json::from_value::<Faults>(json!({"typo": 1})).is_err());
    }
}

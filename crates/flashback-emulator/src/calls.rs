//! Counters of the calls the emulator answered, and a watch on `Retry-After` being obeyed.
//!
//! A call is counted under its method, its route template (`/repo/{id}`) and its status. A
//! call to a path the API does not have is counted too, under its raw path without the query
//! (`GET /repos` → route `/repos`, status 404), so a test sees which wrong path a client used:
//! no template can be mistaken for it, as a raw path never holds `{`. A known path with a
//! method it does not take is counted under its template, with status 405. `/_emulator/` calls
//! are never counted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `GET /_emulator/calls`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallStats {
    /// Every public API call answered since the last reset.
    pub total: u64,
    /// Calls that arrived from a token before a `Retry-After` given to that token had expired,
    /// leaving out those that arrived within [`IN_FLIGHT_GRACE`] of the answer that asked for
    /// quiet: the client had sent them before it could read that answer.
    pub retry_after_violations: u64,
    /// One entry per (method, route template, status).
    pub calls: Vec<CallCount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCount {
    pub method: String,
    /// The route template, e.g. `/repo/{id}`; the raw path for a path no route matches.
    pub route: String,
    pub status: u16,
    pub count: u64,
}

impl CallStats {
    /// Calls of `method` on `route`, whatever their status.
    pub fn count(&self, method: &str, route: &str) -> u64 {
        self.matching(method, route, |_| true)
    }

    /// Calls of `method` on `route` answered with `status`.
    pub fn count_status(&self, method: &str, route: &str, status: u16) -> u64 {
        self.matching(method, route, |s| s == status)
    }

    fn matching(&self, method: &str, route: &str, status: impl Fn(u16) -> bool) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.method == method && c.route == route && status(c.status))
            .map(|c| c.count)
            .sum()
    }
}

/// How long after an answer that asked for quiet a call still counts as sent before the
/// client could read it. On loopback an answer is read within microseconds; calls sent
/// together with the throttled one land within a few milliseconds.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_millis(50);

/// The live counters.
#[derive(Default)]
pub struct CallLog {
    counts: HashMap<(String, String, u16), u64>,
    /// Per token: (when the latest `Retry-After` was answered, no call should arrive before).
    quiet: HashMap<String, (Instant, Instant)>,
    violations: u64,
}

impl CallLog {
    /// Notes a call arriving at `now` from `token`; counts it if it ignores a `Retry-After`.
    pub fn arrived(&mut self, token: Option<&str>, now: Instant) {
        if let Some((asked_at, until)) = token.and_then(|t| self.quiet.get(t))
            && now < *until
            && now >= *asked_at + IN_FLIGHT_GRACE
        {
            self.violations += 1;
        }
    }

    /// Notes an answer; `quiet_until` is set when it carried a `Retry-After`.
    pub fn answered(
        &mut self,
        method: &str,
        route: &str,
        status: u16,
        token: Option<&str>,
        quiet_until: Option<Instant>,
    ) {
        *self
            .counts
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        if let (Some(token), Some(until)) = (token, quiet_until) {
            let now = Instant::now();
            let entry = self.quiet.entry(token.to_owned()).or_insert((now, until));
            *entry = (now, entry.1.max(until));
        }
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }

    pub fn snapshot(&self) -> CallStats {
        let sorted: BTreeMap<_, _> = self.counts.iter().collect();
        CallStats {
            total: self.counts.values().sum(),
            retry_after_violations: self.violations,
            calls: sorted
                .into_iter()
                .map(|((method, route, status), count)| CallCount {
                    method: method.clone(),
                    route: route.clone(),
                    status: *status,
                    count: *count,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status() {
        let mut log = CallLog::default();
        log.answered("GET", "/repo", 200, Some("t"), None);
        log.answered("GET", "/repo", 200, Some("t"), None);
        log.answered("GET", "/repo", 503, Some("t"), None);
        log.answered("DELETE", "/repo/{id}", 404, None, None);
        let stats = log.snapshot();
        assert_eq!(stats.total, 4);
        assert_eq!(stats.count("GET", "/repo"), 3);
        assert_eq!(stats.count_status("GET", "/repo", 200), 2);
        assert_eq!(stats.count("DELETE", "/repo/{id}"), 1);
        log.reset();
        assert_eq!(log.snapshot(), CallStats::default());
    }

    #[test]
    fn an_early_call_from_the_same_token_is_a_violation() {
        let mut log = CallLog::default();
        let t0 = Instant::now();
        log.answered(
            "GET",
            "/repo",
            429,
            Some("a"),
            Some(t0 + Duration::from_secs(1)),
        );
        log.arrived(Some("b"), t0 + Duration::from_millis(100));
        log.arrived(Some("a"), t0 + Duration::from_secs(1));
        // Sent before the client could read the 429: in flight, not a violation.
        log.arrived(Some("a"), t0 + Duration::from_millis(5));
        assert_eq!(log.snapshot().retry_after_violations, 0);
        log.arrived(Some("a"), t0 + Duration::from_millis(500));
        assert_eq!(log.snapshot().retry_after_violations, 1);
    }
}

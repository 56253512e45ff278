//! Prometheus metrics: reconciles and their failures, reconcile duration, Flashback API calls
//! by endpoint and status, time spent waiting for the rate limiter, and objects by condition.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::FlashbackRepository;
use flashback_client::CallRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    endpoint: &'static str,
    /// The HTTP status, or `none` when no answer came (connection failure, timeout).
    status: String,
}

/// Every metric the operator exports. Cheap to share: the metric types are internally
/// synchronised.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    reconcile_duration: Histogram,
    api_calls: Family<CallLabels, Counter>,
    rate_limit_wait: Counter<f64, std::sync::atomic::AtomicU64>,
    tracked: Family<KindLabels, Gauge>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The metrics, with objects by condition counted from `store` at each scrape.
    pub fn new(store: Store<FlashbackRepository>) -> Self {
        let mut registry = Registry::with_prefix("flashback_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result (ok, error)",
            reconciles.clone(),
        );
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by reason",
            failures.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            reconcile_duration.clone(),
        );
        let api_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "flashback_api_calls",
            "Flashback API calls by client endpoint and HTTP status",
            api_calls.clone(),
        );
        let rate_limit_wait = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "rate_limit_wait_seconds",
            "Time Flashback API calls waited for their credential's rate limiter",
            rate_limit_wait.clone(),
        );
        let tracked = Family::<KindLabels, Gauge>::default();
        registry.register(
            "tracked_entries",
            "Entries the operator keeps in memory, by kind (api_clients, listings, backoff), \
             as of the last housekeeping pass",
            tracked.clone(),
        );
        registry.register_collector(Box::new(RepositoriesByCondition { store }));
        Self {
            tracked,
            registry,
            reconciles,
            failures,
            reconcile_duration,
            api_calls,
            rate_limit_wait,
        }
    }

    /// Records one reconcile: its outcome (`None` for success, else the failure's label)
    /// and how long it took.
    pub fn reconciled(&self, failure: Option<&'static str>, took: Duration) {
        let result = if failure.is_some() { "error" } else { "ok" };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        if let Some(reason) = failure {
            self.failures.get_or_create(&ReasonLabels { reason }).inc();
        }
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Records one Flashback API exchange, as the client reports it.
    pub fn api_call(&self, call: &CallRecord) {
        let status = call
            .status
            .map_or_else(|| "none".to_string(), |s| s.to_string());
        self.api_calls
            .get_or_create(&CallLabels {
                endpoint: call.endpoint,
                status,
            })
            .inc();
        if !call.rate_limit_wait.is_zero() {
            self.rate_limit_wait
                .inc_by(call.rate_limit_wait.as_secs_f64());
        }
    }

    /// Records how many entries of a kind the operator keeps in memory.
    pub fn tracked(&self, kind: &'static str, entries: usize) {
        self.tracked
            .get_or_create(&KindLabels { kind })
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Counts the watched objects by condition at scrape time, from the controller's own cache.
#[derive(Debug)]
struct RepositoriesByCondition {
    store: Store<FlashbackRepository>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    condition: String,
    status: String,
}

impl Collector for RepositoriesByCondition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let family = Family::<ConditionLabels, Gauge>::default();
        for repo in self.store.state() {
            for (condition, status) in conditions_of(&repo) {
                family
                    .get_or_create(&ConditionLabels { condition, status })
                    .inc();
            }
        }
        // The registry adds its prefix to this name too.
        let metric = encoder.encode_descriptor(
            "repositories",
            "FlashbackRepository objects by condition and status",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// (condition, status) for Ready, Reconciling and Stalled; `Unknown` before the first status.
fn conditions_of(repo: &Arc<FlashbackRepository>) -> Vec<(String, String)> {
    ["Ready", "Reconciling", "Stalled"]
        .into_iter()
        .map(|type_| {
            let status = repo
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
                .map_or("Unknown", |c| c.status.as_str());
            (type_.to_string(), status.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;
    use kube::runtime::watcher;

    use super::*;
    use crate::fixtures;

    #[test]
    fn reconciles_calls_and_objects_show_up_in_the_text() {
        let (store, mut writer) = reflector::store::<FlashbackRepository>();
        let mut ready = fixtures::repo("team-a", "ready");
        ready.status = Some(fixtures::ready_status("r1", 1));
        writer.apply_watcher_event(&watcher::Event::Apply(ready));
        writer.apply_watcher_event(&watcher::Event::Apply(fixtures::repo("team-a", "new")));
        let metrics = Metrics::new(store);

        metrics.reconciled(None, Duration::from_millis(12));
        metrics.reconciled(Some("transient"), Duration::from_millis(40));
        metrics.api_call(&CallRecord {
            endpoint: "list_repos",
            status: Some(200),
            duration: Duration::from_millis(3),
            rate_limit_wait: Duration::from_millis(250),
        });
        metrics.api_call(&CallRecord {
            endpoint: "create_repo",
            status: None,
            duration: Duration::from_secs(30),
            rate_limit_wait: Duration::ZERO,
        });

        let text = metrics.render();
        for line in [
            r#"flashback_operator_reconciles_total{result="ok"} 1"#,
            r#"flashback_operator_reconciles_total{result="error"} 1"#,
            r#"flashback_operator_reconcile_failures_total{reason="transient"} 1"#,
            "flashback_operator_reconcile_duration_seconds_count 2",
            r#"flashback_operator_flashback_api_calls_total{endpoint="list_repos",status="200"} 1"#,
            r#"flashback_operator_flashback_api_calls_total{endpoint="create_repo",status="none"} 1"#,
            "flashback_operator_rate_limit_wait_seconds_total 0.25",
            r#"flashback_operator_repositories{condition="Ready",status="True"} 1"#,
            r#"flashback_operator_repositories{condition="Ready",status="Unknown"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing the series {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("flashback_operator_flashback_operator"),
            "a name carries the prefix twice:\n{text}"
        );
    }
}

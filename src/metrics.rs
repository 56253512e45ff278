//! Prometheus metrics: reconciles and their failures, reconcile duration, Flashback API calls
//! by endpoint and status and their latency, time spent waiting for the rate limiter, objects
//! by condition, the build, whether this replica leads, and the process itself (CPU, memory,
//! open files, read from `/proc/self`, with the standard `process_` names).

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
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    lease: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
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
    /// The standard `process_` metrics, which carry no prefix.
    process: Registry,
    api_call_duration: Family<EndpointLabels, Histogram>,
    leader: Gauge,
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
    /// The metrics, with objects by condition counted from `store` at each scrape. `lease`
    /// names the leader Lease this replica takes part in (each shard has its own), so that a
    /// shard with no leader shows apart from the others.
    pub fn new(store: Store<FlashbackRepository>, lease: &str) -> Self {
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
            "Reconciles that failed, by reason (transient, rate_limited, kubernetes, ...)",
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
            "Flashback API calls by client endpoint (list_repos, create_repo, ...) and HTTP status \
             (none when no answer came)",
            api_calls.clone(),
        );
        let api_call_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 13))
        });
        registry.register(
            "flashback_api_call_duration_seconds",
            "Flashback API call latency by client endpoint, on the wire (rate-limit wait excluded)",
            api_call_duration.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The operator's version; always 1", build_info);
        let leaders = Family::<LeaseLabels, Gauge>::default();
        let leader = leaders
            .get_or_create(&LeaseLabels {
                lease: lease.to_string(),
            })
            .clone();
        registry.register(
            "leader",
            "1 while this replica reconciles (it holds the leader Lease, or runs without \
             election), 0 while it stands by; by the Lease's name",
            leaders,
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
            "Entries the operator keeps in memory, by kind (api_clients, listings, backoff, \
             credentials, events: recent Events, for counting repeats, parked: objects waiting \
             for their namespace's turn, first_seen: objects a shard knows since when), as of \
             the last housekeeping pass",
            tracked.clone(),
        );
        registry.register_collector(Box::new(RepositoriesByCondition { store }));
        let mut process = Registry::default();
        process.register_collector(Box::new(ProcessCollector));
        Self {
            process,
            api_call_duration,
            leader,
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
        self.api_call_duration
            .get_or_create(&EndpointLabels {
                endpoint: call.endpoint,
            })
            .observe(call.duration.as_secs_f64());
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

    /// Whether this replica reconciles (leads, or runs without election).
    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &self.process))
            .and_then(|()| encode_eof(&mut text))
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
            "FlashbackRepository objects by condition (Ready, Reconciling, Stalled) and status \
             (True, False, Unknown), counted from the watch cache at each scrape",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// The standard process metrics of the Prometheus client libraries, read from `/proc/self` at
/// each scrape; a figure that cannot be read is left out.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let figures = process::read();
        let mut gauge = |name: &str, help: &str, value: Option<f64>| -> Result<(), fmt::Error> {
            let Some(value) = value else {
                return Ok(());
            };
            let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            gauge.set(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)
        };
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            figures.resident_bytes,
        )?;
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            figures.virtual_bytes,
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors",
            figures.open_fds,
        )?;
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors",
            figures.max_fds,
        )?;
        gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            figures.start_time_seconds,
        )?;
        if let Some(cpu) = figures.cpu_seconds {
            let counter = Counter::<f64, std::sync::atomic::AtomicU64>::default();
            counter.inc_by(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// Figures of this process from `/proc` (Linux).
mod process {
    /// What `/proc/self` tells; `None` where it cannot be read.
    #[derive(Debug, Default, PartialEq)]
    pub struct Figures {
        pub cpu_seconds: Option<f64>,
        pub resident_bytes: Option<f64>,
        pub virtual_bytes: Option<f64>,
        pub open_fds: Option<f64>,
        pub max_fds: Option<f64>,
        pub start_time_seconds: Option<f64>,
    }

    /// Clock ticks per second (`USER_HZ`), 100 on every Linux the operator runs on; the
    /// resident size is read in bytes from `/proc/self/status`, whatever the page size.
    const TICKS_PER_SECOND: f64 = 100.0;

    pub fn read() -> Figures {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| boot_time(&text));
        let limits = std::fs::read_to_string("/proc/self/limits").ok();
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as f64);
        let mut figures = stat
            .as_deref()
            .map(|stat| from_stat(stat, boot_time))
            .unwrap_or_default();
        figures.open_fds = open_fds;
        figures.resident_bytes = status.as_deref().and_then(resident_bytes);
        figures.max_fds = limits.as_deref().and_then(max_open_files);
        figures
    }

    /// Parses `/proc/self/stat`: the fields after the command name (which may hold spaces and
    /// parentheses, so the text after the last `)` is split).
    pub fn from_stat(stat: &str, boot_time: Option<f64>) -> Figures {
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return Figures::default();
        };
        // `rest` starts with field 3 (state); fields are 1-based in proc(5).
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu = match (field(14), field(15)) {
            (Some(user), Some(system)) => Some((user + system) / TICKS_PER_SECOND),
            _ => None,
        };
        Figures {
            cpu_seconds: cpu,
            virtual_bytes: field(23),
            start_time_seconds: match (boot_time, field(22)) {
                (Some(boot), Some(ticks)) => Some(boot + ticks / TICKS_PER_SECOND),
                _ => None,
            },
            ..Figures::default()
        }
    }

    /// The `VmRSS` line of `/proc/self/status`, in bytes.
    pub fn resident_bytes(status: &str) -> Option<f64> {
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024.0)
    }

    /// The `btime` line of `/proc/stat`.
    pub fn boot_time(stat: &str) -> Option<f64> {
        stat.lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The soft limit of `Max open files` in `/proc/self/limits`.
    pub fn max_open_files(limits: &str) -> Option<f64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
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
        let metrics = Metrics::new(store, "fb");

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

    #[test]
    fn latency_build_leadership_and_the_process_are_exported() {
        let (store, _writer) = reflector::store::<FlashbackRepository>();
        let metrics = Metrics::new(store, "fb-blue");
        metrics.api_call(&CallRecord {
            endpoint: "list_repos",
            status: Some(200),
            duration: Duration::from_millis(3),
            rate_limit_wait: Duration::ZERO,
        });
        let text = metrics.render();
        let build = format!(
            r#"flashback_operator_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        );
        for line in [
            r#"flashback_operator_flashback_api_call_duration_seconds_count{endpoint="list_repos"} 1"#,
            r#"flashback_operator_flashback_api_call_duration_seconds_bucket{le="0.005",endpoint="list_repos"} 1"#,
            build.as_str(),
            r#"flashback_operator_leader{lease="fb-blue"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing the series {line:?} in\n{text}"
            );
        }
        metrics.leading(true);
        assert!(
            metrics
                .render()
                .lines()
                .any(|l| l == r#"flashback_operator_leader{lease="fb-blue"} 1"#)
        );
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_start_time_seconds") > 1.7e9);
        assert!(value("process_cpu_seconds_total") >= 0.0);
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn proc_stat_fields_are_read_past_a_command_name_with_spaces() {
        let stat = "4242 (flashback (op) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    250 50 0 0 20 0 12 0 1000 104857600 2560 18446744073709551615";
        let figures = process::from_stat(stat, Some(1_700_000_000.0));
        assert_eq!(figures.cpu_seconds, Some(3.0));
        assert_eq!(figures.virtual_bytes, Some(104_857_600.0));
        assert_eq!(
            figures.resident_bytes, None,
            "read from /proc/self/status instead"
        );
        assert_eq!(
            process::resident_bytes("Name:\tx\nVmRSS:\t   36864 kB\nThreads:\t4\n"),
            Some(36864.0 * 1024.0)
        );
        assert_eq!(figures.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(
            process::boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1.7e9)
        );
        assert_eq!(
            process::max_open_files(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            1024                 524288               files\n"
            ),
            Some(1024.0)
        );
    }
}

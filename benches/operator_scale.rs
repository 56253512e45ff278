//! The operator at scale: `BENCH_OBJECTS` FlashbackRepositories (default 1,000; up to
//! 100,000) in one namespace and workspace, against the real kube-apiserver, the release
//! operator binary and the emulator. It measures, in the same run, the API server's floor (a
//! bare client making each object and the two patches a create needs at least), then the
//! operator, installed as the chart installs it (its finalizer policy included): how long
//! until every object is Ready, what each create cost the API server, what one resync costs,
//! how fast a new object becomes Ready during a resync sweep, what a statistics pass and a
//! quiet period cost, the operator's memory, and the CPU each process used. It prints each
//! figure beside its target and exits non-zero when one is missed. One watch follows the
//! objects in both phases, so both carry the same observer.
//!
//! `BENCH_OPERATOR_ARGS` adds operator flags, for experiments.
//!
//! Needs the local control plane: `make bench` runs it under `tests/control-plane/with.sh`.
//! Bounded: at most 100,000 objects, and for each phase ten minutes or a minute per 1,000
//! objects, whichever is longer.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashback_operator::crd::{FlashbackRepository, RepositoryMode};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use support::operator::Operator;
use support::scene::Scene;
use tokio::sync::Notify;

/// How long one phase may take: ten minutes, or a minute per 1,000 objects.
fn phase_deadline() -> Duration {
    Duration::from_secs(600).max(Duration::from_secs(objects() as u64 * 60 / 1000))
}
const RESYNC: Duration = Duration::from_secs(30);
const STATS_INTERVAL: Duration = Duration::from_secs(30);
/// New objects created one by one during a resync sweep, to time their way to Ready.
const PROBES: usize = 20;

fn objects() -> usize {
    std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 100_000)
}

/// Extra flags for the operator, for experiments (`BENCH_OPERATOR_ARGS="--namespace-concurrency
/// 8"`); the figures in docs/developing.md are measured without any.
fn extra_operator_args() -> Vec<String> {
    std::env::var("BENCH_OPERATOR_ARGS")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(objects()))
}

/// One line of the table: the figure, the target, and whether it is met.
struct Row {
    what: &'static str,
    figure: String,
    target: String,
    met: bool,
}

async fn run(count: usize) -> anyhow::Result<()> {
    let scene = Scene::new("scale").await;
    let template = backup(&scene);

    // The floor: the same objects, made by a bare client with the writes a create needs at
    // least (the object, a metadata patch as adding its finalizer is, a status with the id),
    // four at a time. The same watch
    // that follows the operator's objects follows these, until it has seen every id: both
    // phases carry the same observer, and end when it has seen the last write.
    let floor_namespace = support::cluster::test_namespace(&scene.kube, "scale-floor").await;
    let floor_api: Api<FlashbackRepository> = Api::namespaced(scene.kube.clone(), &floor_namespace);
    let floor_done = Readiness::watch(floor_api.clone(), has_id);
    let mut processes = Processes::of_control_plane();
    processes.add("emulator", scene.emulator.pid());
    let cpu_before = processes.cpu_seconds();
    let started = Instant::now();
    stream::iter(0..count)
        .map(|n| {
            let api = floor_api.clone();
            let mut repo = template.clone();
            repo.metadata.name = Some(format!("repo-{n:05}"));
            async move { floor_create(&api, repo).await }
        })
        .buffer_unordered(4)
        .try_collect::<Vec<_>>()
        .await?;
    floor_done.wait_for_count(count).await?;
    let floor = started.elapsed();
    drop(floor_done);
    let floor_cpu = processes.used_since(&cpu_before);
    // The operator's phase starts from the API server the floor started from: without the
    // floor's objects, which would otherwise weigh on everything it does after (its heap and
    // garbage collection, its periodic consistency check of the watch cache against etcd,
    // which lists every object of the kind). Not timed.
    let cleared = Instant::now();
    floor_api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    while !floor_api
        .list(&ListParams::default().limit(1))
        .await?
        .items
        .is_empty()
    {
        anyhow::ensure!(
            cleared.elapsed() < phase_deadline(),
            "the floor's objects were not deleted in time"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let floor_cleared = cleared.elapsed();

    // The operator, with realistic settings but for the API rate, which would only measure
    // itself.
    let resync = format!("{}s", RESYNC.as_secs());
    let stats = format!("{}s", STATS_INTERVAL.as_secs());
    let extra = extra_operator_args();
    let mut args = vec![
        "--resync-interval",
        &resync,
        "--stats-interval",
        &stats,
        "--api-rate",
        "1000",
        "--api-burst",
        "1000",
    ];
    args.extend(extra.iter().map(String::as_str));
    // Readiness is followed with one watch, as the operator sees it: polling lists of every
    // object would load the API server the benchmark measures (a list of 10,000 objects
    // costs it about a second of CPU).
    let ready = Readiness::watch(scene.repos.clone(), is_ready);
    // As the chart installs it: the API server adds the finalizer when an object is created.
    let _policy =
        support::policy::Applied::new("scale", &scene.namespace, &scene.repos, &template).await;
    let operator = Operator::start_as(
        &support::cluster::kubeconfig_path(),
        &[("RUST_LOG".to_string(), "info".to_string())],
        &scene.namespace,
        scene.emulator.base_url(),
        &args,
    );
    processes.add("operator", operator.pid());
    let writes_before = api_server_writes(&scene.kube).await?;
    let cpu_before = processes.cpu_seconds();
    let started = Instant::now();
    stream::iter(0..count)
        .map(|n| {
            let mut repo = template.clone();
            repo.metadata.name = Some(format!("repo-{n:05}"));
            let api = scene.repos.clone();
            async move { api.create(&PostParams::default(), &repo).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    ready.wait_for_count(count).await?;
    let all_ready = started.elapsed();
    let operator_cpu = processes.used_since(&cpu_before);
    let operator_cpu_per_1000 =
        processes.used_by("operator", &cpu_before) / (count as f64 / 1000.0);
    let writes_after = api_server_writes(&scene.kube).await?;
    let per_create = |key: &str| {
        (writes_after.get(key).copied().unwrap_or(0) - writes_before.get(key).copied().unwrap_or(0))
            as f64
            / count as f64
    };
    let (creates, metadata, status, events) = (
        per_create("post flashbackrepositories"),
        per_create("patch flashbackrepositories"),
        per_create("patch flashbackrepositories/status"),
        per_create("post events"),
    );

    // The first statistics of every object are written once (a write per object, by the
    // first pass after the burst); then one stats interval counts the calls of a pass, and
    // one whole resync interval with nothing to change follows, the stats task running too,
    // and in its middle, new objects one by one.
    ready.wait_for_measured(count).await?;
    let measured = started.elapsed();
    let stats_calls = one_stats_pass(&scene).await?;
    scene.control.reset_calls().await?;
    let quiet_before = api_server_writes(&scene.kube).await?;
    let secrets_before = quiet_before.get("get secrets").copied().unwrap_or(0);
    tokio::time::sleep(RESYNC / 2).await;
    let mut latencies = Vec::new();
    for n in 0..PROBES {
        let mut repo = template.clone();
        repo.metadata.name = Some(format!("probe-{n:02}"));
        let asked = Instant::now();
        scene.repos.create(&PostParams::default(), &repo).await?;
        ready.wait_for(&format!("probe-{n:02}")).await?;
        latencies.push(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(RESYNC / 2 + Duration::from_secs(5)).await;
    let quiet_after = api_server_writes(&scene.kube).await?;
    let calls = scene.control.calls().await?;
    let resync_lists = calls.count("GET", "/repo");
    let remote_writes: u64 = calls
        .calls
        .iter()
        .filter(|c| c.method != "GET")
        .map(|c| c.count)
        .sum::<u64>()
        - PROBES as u64;
    let kube_writes: u64 = quiet_after
        .iter()
        .filter(|(key, _)| is_write(key) && operator_writes(key))
        .map(|(key, after)| after - quiet_before.get(key).copied().unwrap_or(0))
        .sum::<u64>();
    let quiet_by_kind: Vec<String> = quiet_after
        .iter()
        .filter(|(key, _)| is_write(key))
        .filter_map(|(key, after)| {
            let delta = after - quiet_before.get(key).copied().unwrap_or(0);
            (delta > 0).then(|| format!("{key}: {delta}"))
        })
        .collect();
    // The probes' own writes are not quiet-period writes: each one's create, two statuses and
    // Event, and its first statistics when the stats task measured it before the period
    // ended.
    let mut probe_stats = 0;
    for n in 0..PROBES {
        let probe = scene.repos.get(&format!("probe-{n:02}")).await?;
        if probe.status.is_some_and(|s| s.stats.is_some()) {
            probe_stats += 1;
        }
    }
    let kube_writes = kube_writes.saturating_sub(4 * PROBES as u64 + probe_stats);
    let secret_gets = quiet_after.get("get secrets").copied().unwrap_or(0) - secrets_before;
    latencies.sort();
    let p95 = latencies[(latencies.len() * 95).div_ceil(100) - 1];
    let rss_kib = operator.memory_kib("VmRSS:").unwrap_or(0);
    let peak_kib = operator.peak_memory_kib().unwrap_or(0);
    // Where the resident bytes are: the heap and other anonymous memory, or mapped files (the
    // binary's own pages).
    let (anon_kib, file_kib) = (
        operator.memory_kib("RssAnon:").unwrap_or(0),
        operator.memory_kib("RssFile:").unwrap_or(0),
    );

    // The targets of the scale issue: 1.45x and 80 MiB at 10,000 objects, 1.6x and 600 MiB
    // at 100,000; 1.5x below 10,000.
    let (floor_factor, memory_mib) = match count {
        100_000.. => (1.6, 600),
        10_000.. => (1.45, 80),
        _ => (1.5, 80),
    };
    // Operator CPU per 1,000 objects at 100,000 must stay within 1.2x of the figure at 10,000,
    // given as BENCH_CPU_PER_1000_AT_10000 (from a run at 10,000); otherwise it is printed.
    let cpu_reference: Option<f64> = std::env::var("BENCH_CPU_PER_1000_AT_10000")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|_| count >= 100_000);
    let batches = count.div_ceil(100) as u64;
    let rows = [
        Row {
            what: "API-server floor (object, metadata, status; 4 at a time)",
            figure: format!("{:.1} s", floor.as_secs_f64()),
            target: "-".into(),
            met: true,
        },
        Row {
            what: "all Ready after",
            figure: format!(
                "{:.1} s ({:.2}x the floor)",
                all_ready.as_secs_f64(),
                all_ready.as_secs_f64() / floor.as_secs_f64()
            ),
            target: format!("<= {floor_factor}x the floor"),
            met: all_ready.as_secs_f64() <= floor_factor * floor.as_secs_f64(),
        },
        Row {
            what: "API-server writes per create (object, metadata, status, Event)",
            figure: format!("{creates:.1} + {metadata:.2} + {status:.2} + {events:.2}"),
            target: "1 + 0 + 2 + 1".into(),
            met: metadata <= 0.05 && status <= 2.05,
        },
        Row {
            what: "GET /repo during one resync",
            figure: resync_lists.to_string(),
            // Each probe's create lists, and is confirmed by a `GET /repo?repoId=` of its
            // own: the emulator counts both under the route `/repo`.
            target: "1 (one workspace) + what the probes list and confirm".into(),
            met: resync_lists <= 1 + 2 * PROBES as u64,
        },
        Row {
            what: "Secret GETs during one resync",
            figure: secret_gets.to_string(),
            target: "~0".into(),
            met: secret_gets <= 2,
        },
        Row {
            what: "new object -> Ready during a resync, p95",
            figure: format!("{:.3} s", p95.as_secs_f64()),
            target: "<= 0.2 s".into(),
            met: p95 <= Duration::from_millis(200),
        },
        Row {
            what: "API-server writes in the quiet period (probes aside)",
            figure: kube_writes.to_string(),
            target: "0".into(),
            met: kube_writes == 0,
        },
        Row {
            what: "remote writes in the quiet period (probes aside)",
            figure: remote_writes.to_string(),
            target: "0".into(),
            met: remote_writes == 0,
        },
        Row {
            what: "GET /repo/stats in one statistics pass",
            figure: stats_calls.to_string(),
            target: format!("ceil(N/100) = {batches}"),
            met: stats_calls == batches,
        },
        Row {
            what: "operator memory after the quiet resync (VmRSS; peak VmHWM)",
            figure: format!(
                "{:.1} MiB ({:.1} MiB)",
                rss_kib as f64 / 1024.0,
                peak_kib as f64 / 1024.0
            ),
            target: format!("<= {memory_mib} MiB"),
            met: rss_kib <= memory_mib * 1024,
        },
        Row {
            what: "operator CPU seconds per 1,000 objects until all Ready",
            figure: format!("{operator_cpu_per_1000:.2} s"),
            target: match cpu_reference {
                Some(reference) => format!("<= 1.2 x {reference:.2} s (at 10,000)"),
                None => "printed".into(),
            },
            met: cpu_reference.is_none_or(|reference| operator_cpu_per_1000 <= 1.2 * reference),
        },
    ];
    println!(
        "operator_scale: {count} objects, one namespace and workspace, resync {resync}, \
         stats {stats}, operator flags beyond these: {extra:?}"
    );
    for row in &rows {
        println!(
            "  {:<62} {:>24}   target {:<34} {}",
            row.what,
            row.figure,
            row.target,
            if row.met { "ok" } else { "MISSED" }
        );
    }
    println!(
        "  API-server writes in the quiet period by kind, probes included: {}",
        quiet_by_kind.join(", ")
    );
    println!(
        "  operator resident memory: {:.1} MiB anonymous (heap and stacks), {:.1} MiB mapped files",
        anon_kib as f64 / 1024.0,
        file_kib as f64 / 1024.0
    );
    println!(
        "  every object's first statistics written after {:.1} s",
        measured.as_secs_f64()
    );
    println!("  CPU seconds used while the floor ran: {floor_cpu}");
    println!(
        "  the floor's objects deleted before the operator's phase, in {:.1} s (not timed)",
        floor_cleared.as_secs_f64()
    );
    println!("  CPU seconds used until every object was Ready: {operator_cpu}");
    let missed: Vec<_> = rows.iter().filter(|r| !r.met).map(|r| r.what).collect();
    anyhow::ensure!(missed.is_empty(), "targets missed: {}", missed.join("; "));
    Ok(())
}

/// The `GET /repo/stats` calls of the next whole statistics pass: from the first call after
/// now until none has come for three seconds (a pass's calls follow one another closely).
async fn one_stats_pass(scene: &Scene) -> anyhow::Result<u64> {
    let count = || async { anyhow::Ok(scene.control.calls().await?.count("GET", "/repo/stats")) };
    let deadline = Instant::now() + 3 * STATS_INTERVAL;
    let before = count().await?;
    let mut last = before;
    let mut last_change = Instant::now();
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no whole statistics pass within {:?}",
            3 * STATS_INTERVAL
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = count().await?;
        if now != last {
            (last, last_change) = (now, Instant::now());
        } else if last > before && last_change.elapsed() >= Duration::from_secs(3) {
            return Ok(last - before);
        }
    }
}

/// One object the way the floor counts it: created, then a metadata patch (what adding the
/// finalizer costs, but a label, so that the objects can then be deleted at once), then a
/// status.
async fn floor_create(
    api: &Api<FlashbackRepository>,
    repo: FlashbackRepository,
) -> kube::Result<()> {
    let name = repo.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), &repo).await?;
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"flashback.tech/bench": "floor"}}})),
    )
    .await?;
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"repoId": name}})),
    )
    .await?;
    Ok(())
}

/// The API server's own request counters, as "verb resource[/subresource]" → count, from
/// its /metrics (the admin identity may read them).
async fn api_server_writes(kube: &Client) -> anyhow::Result<BTreeMap<String, u64>> {
    let text = kube
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await?;
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let mut resource = label("resource");
        let subresource = label("subresource");
        if !subresource.is_empty() {
            resource = format!("{resource}/{subresource}");
        }
        let key = format!("{} {resource}", label("verb").to_lowercase());
        *counts.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
    }
    Ok(counts)
}

/// Whether the operator (without leader election, as here) writes this "verb resource": the
/// API server's own writes in a quiet period (the `kubernetes` Service's endpoints, its
/// identity Lease) are not the operator's.
fn operator_writes(key: &str) -> bool {
    let resource = key.split_once(' ').map_or("", |(_, resource)| resource);
    resource.starts_with("flashback") || resource == "events" || resource == "secrets"
}

/// Whether a "verb resource" key of [`api_server_writes`] is a write.
fn is_write(key: &str) -> bool {
    ["post ", "put ", "patch ", "delete ", "deletecollection "]
        .iter()
        .any(|verb| key.starts_with(verb))
}

/// A BACKUP repository on the scene's replica bucket (any number of them can share it).
fn backup(scene: &Scene) -> FlashbackRepository {
    let mut repo = scene.mirror("template");
    repo.spec.mode = RepositoryMode::Backup;
    repo.spec.buckets.remove(0);
    repo
}

/// Whether the floor's writes reached the object: its status holds the id.
fn has_id(repo: &FlashbackRepository) -> bool {
    repo.status.as_ref().is_some_and(|s| s.repo_id.is_some())
}

fn is_ready(repo: &FlashbackRepository) -> bool {
    support::scene::condition(repo, "Ready").is_some_and(|c| c.status == "True")
}

/// The processes of a run whose CPU time is counted, by name (this benchmark's own process,
/// with its client and watch, is `bench`).
struct Processes {
    named: Vec<(&'static str, u32)>,
    ticks_per_second: f64,
}

impl Processes {
    /// This process, etcd and kube-apiserver (from the control plane's pid files).
    fn of_control_plane() -> Self {
        let run = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/control-plane/run");
        let pid_of = |name: &str| {
            std::fs::read_to_string(run.join(format!("{name}.pid")))
                .ok()
                .and_then(|pid| pid.trim().parse().ok())
        };
        let ticks = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0);
        let mut processes = Self {
            named: vec![("bench", std::process::id())],
            ticks_per_second: ticks,
        };
        processes.add("kube-apiserver", pid_of("kube-apiserver"));
        processes.add("etcd", pid_of("etcd"));
        processes
    }

    fn add(&mut self, name: &'static str, pid: Option<u32>) {
        if let Some(pid) = pid {
            self.named.push((name, pid));
        }
    }

    /// User and system CPU seconds of each process so far (0 for one that is gone).
    fn cpu_seconds(&self) -> Vec<f64> {
        self.named
            .iter()
            .map(|(_, pid)| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // The fields after the command name (which may hold spaces) start at field 3;
                // utime and stime are fields 14 and 15.
                let fields: Vec<&str> = stat
                    .rsplit_once(") ")
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                let ticks = |n: usize| {
                    fields
                        .get(n - 3)
                        .and_then(|f| f.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                (ticks(14) + ticks(15)) / self.ticks_per_second
            })
            .collect()
    }

    /// CPU seconds the process `name` used since `before` (0 when it is not followed).
    fn used_by(&self, name: &str, before: &[f64]) -> f64 {
        self.named
            .iter()
            .zip(self.cpu_seconds())
            .enumerate()
            .find(|(_, ((named, _), _))| *named == name)
            .map(|(n, (_, now))| now - before.get(n).copied().unwrap_or(0.0))
            .unwrap_or(0.0)
    }

    /// "name 1.2 s, ..." of the CPU used since `before` (figures of processes added since
    /// count from zero).
    fn used_since(&self, before: &[f64]) -> String {
        self.named
            .iter()
            .zip(self.cpu_seconds())
            .enumerate()
            .map(|(n, ((name, _), now))| {
                format!(
                    "{name} {:.1} s",
                    now - before.get(n).copied().unwrap_or(0.0)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Which objects are Ready, as one watch sees them.
struct Readiness {
    ready: Arc<Mutex<HashSet<String>>>,
    /// Objects whose status holds statistics.
    measured: Arc<Mutex<HashSet<String>>>,
    changed: Arc<Notify>,
    watch: tokio::task::JoinHandle<()>,
}

impl Readiness {
    /// Follows the objects of `api`; `done` tells one that counts.
    fn watch(api: Api<FlashbackRepository>, done: fn(&FlashbackRepository) -> bool) -> Self {
        let ready: Arc<Mutex<HashSet<String>>> = Arc::default();
        let measured: Arc<Mutex<HashSet<String>>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let watch = tokio::spawn({
            let (ready, measured, changed) = (ready.clone(), measured.clone(), changed.clone());
            async move {
                let mut events = std::pin::pin!(
                    watcher(api, watcher::Config::default())
                        .default_backoff()
                        .applied_objects()
                );
                while let Some(event) = events.next().await {
                    let Ok(repo) = event else { continue };
                    let name = repo.metadata.name.clone().unwrap_or_default();
                    if repo.status.as_ref().is_some_and(|s| s.stats.is_some()) {
                        measured.lock().expect("not poisoned").insert(name.clone());
                    }
                    let mut set = ready.lock().expect("not poisoned");
                    if done(&repo) {
                        set.insert(name);
                    } else {
                        set.remove(&name);
                    }
                    changed.notify_waiters();
                }
            }
        });
        Self {
            ready,
            measured,
            changed,
            watch,
        }
    }

    async fn wait_until(
        &self,
        what: &str,
        set: &Mutex<HashSet<String>>,
        done: impl Fn(&HashSet<String>) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = phase_deadline();
        let waited = tokio::time::timeout(deadline, async {
            loop {
                let notified = self.changed.notified();
                if done(&set.lock().expect("not poisoned")) {
                    return;
                }
                // A notification between the check and this wait is not lost: `notified` was
                // made before the check. The timeout is a guard against a watch that stalls.
                let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            }
        })
        .await;
        let seen = set.lock().expect("not poisoned").len();
        anyhow::ensure!(
            waited.is_ok(),
            "{what} not done after {deadline:?} ({seen} objects done)"
        );
        Ok(())
    }

    async fn wait_for(&self, name: &str) -> anyhow::Result<()> {
        self.wait_until(name, &self.ready, |ready| ready.contains(name))
            .await
    }

    async fn wait_for_count(&self, count: usize) -> anyhow::Result<()> {
        self.wait_until("every object Ready", &self.ready, |ready| {
            ready.len() >= count
        })
        .await
    }

    async fn wait_for_measured(&self, count: usize) -> anyhow::Result<()> {
        self.wait_until("statistics of every object", &self.measured, |m| {
            m.len() >= count
        })
        .await
    }
}

impl Drop for Readiness {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

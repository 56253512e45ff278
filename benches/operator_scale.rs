//! The operator at scale: `BENCH_OBJECTS` FlashbackRepositories (default 1,000; up to
//! 10,000) in one namespace and workspace, against the real kube-apiserver, the release
//! operator binary and the emulator. It measures, in the same run, the API server's floor (a
//! bare client making each object and the two patches a create needs at least), then the
//! operator: how long until every object is Ready, what each create cost the API server, what
//! one resync costs, how fast a new object becomes Ready during a resync sweep, what a quiet
//! period costs, and the operator's memory. It prints each figure beside its target and exits
//! non-zero when one is missed.
//!
//! Needs the local control plane: `make bench` runs it under `tests/control-plane/with.sh`.
//! Bounded: at most 10,000 objects, and ten minutes for each phase.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flashback_operator::crd::{FINALIZER, FlashbackRepository, RepositoryMode};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::operator::Operator;
use support::scene::Scene;

const PHASE_DEADLINE: Duration = Duration::from_secs(600);
const RESYNC: Duration = Duration::from_secs(30);
const STATS_INTERVAL: Duration = Duration::from_secs(30);
/// New objects created one by one during a resync sweep, to time their way to Ready.
const PROBES: usize = 20;

fn objects() -> usize {
    std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 10_000)
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
    // least (the object, its finalizer, a status with the id), four at a time.
    let floor_namespace = support::cluster::test_namespace(&scene.kube, "scale-floor").await;
    let floor_api: Api<FlashbackRepository> = Api::namespaced(scene.kube.clone(), &floor_namespace);
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
    let floor = started.elapsed();

    // The operator, with realistic settings but for the API rate, which would only measure
    // itself.
    let resync = format!("{}s", RESYNC.as_secs());
    let stats = format!("{}s", STATS_INTERVAL.as_secs());
    let operator = Operator::start_as(
        &support::cluster::kubeconfig_path(),
        &[("RUST_LOG".to_string(), "info".to_string())],
        &scene.namespace,
        scene.emulator.base_url(),
        &[
            "--resync-interval",
            &resync,
            "--stats-interval",
            &stats,
            "--api-rate",
            "1000",
            "--api-burst",
            "1000",
        ],
    );
    let writes_before = api_server_writes(&scene.kube).await?;
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
    wait_all_ready(&scene.repos, count).await?;
    let ready = started.elapsed();
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

    // The first statistics of every object are written once (a write per object); after
    // that, one whole resync interval with nothing to change, the stats task running too,
    // and in its middle, new objects one by one.
    tokio::time::sleep(STATS_INTERVAL + Duration::from_secs(5)).await;
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
        wait_ready(&scene.repos, &format!("probe-{n:02}")).await?;
        latencies.push(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(RESYNC / 2 + Duration::from_secs(5)).await;
    let quiet_after = api_server_writes(&scene.kube).await?;
    let calls = scene.control.calls().await?;
    let resync_lists = calls.count("GET", "/repo");
    let stats_calls = calls.count("GET", "/repo/stats");
    let remote_writes: u64 = calls
        .calls
        .iter()
        .filter(|c| c.method != "GET")
        .map(|c| c.count)
        .sum::<u64>()
        - PROBES as u64;
    let kube_writes: u64 = quiet_after
        .iter()
        .filter(|(key, _)| is_write(key))
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
    // The probes' own writes (three and an Event each) are not quiet-period writes.
    let kube_writes = kube_writes.saturating_sub(5 * PROBES as u64);
    let secret_gets = quiet_after.get("get secrets").copied().unwrap_or(0) - secrets_before;
    latencies.sort();
    let p95 = latencies[(latencies.len() * 95).div_ceil(100) - 1];
    let rss_kib = operator.memory_kib("VmRSS:").unwrap_or(0);
    let peak_kib = operator.peak_memory_kib().unwrap_or(0);

    let floor_factor = if count >= 10_000 { 2.0 } else { 1.5 };
    let batches = count.div_ceil(100) as u64;
    let rows = [
        Row {
            what: "API-server floor (object, finalizer, status; 4 at a time)",
            figure: format!("{:.1} s", floor.as_secs_f64()),
            target: "-".into(),
            met: true,
        },
        Row {
            what: "all Ready after",
            figure: format!(
                "{:.1} s ({:.2}x the floor)",
                ready.as_secs_f64(),
                ready.as_secs_f64() / floor.as_secs_f64()
            ),
            target: format!("<= {floor_factor}x the floor"),
            met: ready.as_secs_f64() <= floor_factor * floor.as_secs_f64(),
        },
        Row {
            what: "API-server writes per create (object, metadata, status, Event)",
            figure: format!("{creates:.1} + {metadata:.2} + {status:.2} + {events:.2}"),
            target: "1 + 1 + 2 + 1".into(),
            met: metadata <= 1.05 && status <= 2.05,
        },
        Row {
            what: "GET /repo during one resync",
            figure: resync_lists.to_string(),
            target: "1 (one workspace) + what the probes list".into(),
            met: resync_lists <= 1 + PROBES as u64,
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
            what: "GET /repo/stats per stats interval",
            figure: stats_calls.to_string(),
            target: format!("ceil(N/100) = {batches}"),
            met: stats_calls <= batches + 1,
        },
        Row {
            what: "operator memory when all are Ready (VmRSS; peak VmHWM)",
            figure: format!(
                "{:.1} MiB ({:.1} MiB)",
                rss_kib as f64 / 1024.0,
                peak_kib as f64 / 1024.0
            ),
            target: "<= 150 MiB at 10,000".into(),
            met: rss_kib <= 150 * 1024,
        },
    ];
    println!(
        "operator_scale: {count} objects, one namespace and workspace, resync {resync}, \
         stats {stats}, default concurrency"
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
    let missed: Vec<_> = rows.iter().filter(|r| !r.met).map(|r| r.what).collect();
    anyhow::ensure!(missed.is_empty(), "targets missed: {}", missed.join("; "));
    Ok(())
}

/// One object the way the floor counts it: created, then its finalizer, then a status.
async fn floor_create(
    api: &Api<FlashbackRepository>,
    repo: FlashbackRepository,
) -> kube::Result<()> {
    let name = repo.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), &repo).await?;
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": [FINALIZER]}})),
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

fn is_ready(repo: &FlashbackRepository) -> bool {
    support::scene::condition(repo, "Ready").is_some_and(|c| c.status == "True")
}

async fn wait_ready(api: &Api<FlashbackRepository>, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if api.get(name).await.is_ok_and(|r| is_ready(&r)) {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < PHASE_DEADLINE, "{name} never Ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_all_ready(api: &Api<FlashbackRepository>, count: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await?;
        let ready = list.items.iter().filter(|r| is_ready(r)).count();
        if ready == count {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < PHASE_DEADLINE,
            "only {ready} of {count} objects Ready after {PHASE_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

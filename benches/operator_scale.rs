//! The operator at scale: `BENCH_OBJECTS` FlashbackRepositories (default 500) in one
//! namespace and workspace, against the real kube-apiserver, the release operator binary and
//! the emulator. Prints how long they take to become Ready, how many API calls that cost, what
//! one resync of all of them costs, and the operator's peak memory.
//!
//! Needs the local control plane: `make bench` runs it under `tests/control-plane/with.sh`.
//! Bounded: at most `BENCH_OBJECTS` objects, and five minutes for each phase.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use flashback_operator::crd::{FlashbackRepository, RepositoryMode};
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::{ListParams, PostParams};
use support::operator::Operator;
use support::scene::Scene;

const PHASE_DEADLINE: Duration = Duration::from_secs(300);
const RESYNC: &str = "20s";

fn objects() -> usize {
    std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
        .clamp(1, 5000)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(objects()))
}

async fn run(count: usize) -> anyhow::Result<()> {
    let scene = Scene::new("scale").await;
    // Realistic defaults for everything but the API rate, which would only measure itself.
    let operator = Operator::start_as(
        &support::cluster::kubeconfig_path(),
        &[("RUST_LOG".to_string(), "info".to_string())],
        &scene.namespace,
        scene.emulator.base_url(),
        &[
            "--resync-interval",
            RESYNC,
            "--api-rate",
            "500",
            "--api-burst",
            "500",
        ],
    );
    let template = backup(&scene);

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
    let created = started.elapsed();
    wait_all_ready(&scene, count, started).await?;
    let ready = started.elapsed();
    let calls = scene.control.calls().await?;
    let posts = calls.count("POST", "/repo");
    let lists = calls.count("GET", "/repo");

    // One full resync of every object, with nothing to change.
    scene.control.reset_calls().await?;
    let resync = humantime::parse_duration(RESYNC)?;
    tokio::time::sleep(resync + Duration::from_secs(5)).await;
    let calls = scene.control.calls().await?;
    let resync_lists = calls.count("GET", "/repo");
    let resync_writes: u64 = calls
        .calls
        .iter()
        .filter(|c| c.method != "GET")
        .map(|c| c.count)
        .sum();
    let peak_kib = operator.peak_memory_kib().unwrap_or(0);

    println!(
        "operator_scale: {count} objects, one namespace and workspace, resync {RESYNC}, default concurrency (4 per namespace)"
    );
    println!(
        "  objects created on the API server in  {:>8.2} s",
        created.as_secs_f64()
    );
    println!(
        "  all Ready after                        {:>8.2} s  ({:.0} objects/s)",
        ready.as_secs_f64(),
        count as f64 / ready.as_secs_f64()
    );
    println!("  POST /repo while creating              {posts:>8}  (one per object)");
    println!("  GET /repo while creating               {lists:>8}");
    println!("  GET /repo during one resync            {resync_lists:>8}  (batched per workspace)");
    println!("  remote writes during that resync       {resync_writes:>8}");
    println!(
        "  operator peak memory (VmHWM)           {:>8.1} MiB",
        peak_kib as f64 / 1024.0
    );
    anyhow::ensure!(
        posts == count as u64,
        "expected one POST per object, saw {posts}"
    );
    anyhow::ensure!(
        resync_writes == 0,
        "a resync with nothing to change wrote {resync_writes} times"
    );
    Ok(())
}

/// A BACKUP repository on the scene's replica bucket (any number of them can share it).
fn backup(scene: &Scene) -> FlashbackRepository {
    let mut repo = scene.mirror("template");
    repo.spec.mode = RepositoryMode::Backup;
    repo.spec.buckets.remove(0);
    repo
}

async fn wait_all_ready(scene: &Scene, count: usize, started: Instant) -> anyhow::Result<()> {
    loop {
        let list = scene.repos.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|r| support::scene::condition(r, "Ready").is_some_and(|c| c.status == "True"))
            .count();
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

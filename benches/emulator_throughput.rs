//! Throughput of the emulator under the read load of an operator at scale.
//!
//! `cargo bench --bench emulator_throughput` starts the emulator in-process, creates 1000 repos
//! over 20 workspaces, then has `BENCH_CONCURRENCY` clients (default 16) send `BENCH_REQUESTS`
//! requests in total (default 20000): 70% `GET /repo?workspaceId=` (50 repos each), 30%
//! `GET /repo/stats?repoId=` with 50 ids. It prints requests per second and latency
//! percentiles. A second run measures `POST /repo` with a state file (half as many
//! requests). Bounded in count and in time (2 minutes per run).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flashback_client::{
    BucketWrite, ClientConfig, FlashbackClient, RateLimit, RepoBucketWrite, RepoMode, RepoWrite,
    StorageType, Token,
};
use flashback_emulator::{EmulatorConfig, RunningEmulator};

const TOKEN: &str = "bench-token";
const WORKSPACES: usize = 20;
const REPOS: usize = 1000;
const STATS_BATCH: usize = 50;
const DEADLINE: Duration = Duration::from_secs(120);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let requests = setting("BENCH_REQUESTS", 20_000);
    let concurrency = setting("BENCH_CONCURRENCY", 16).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(requests, concurrency))
}

async fn run(requests: usize, concurrency: usize) -> anyhow::Result<()> {
    let emulator = RunningEmulator::start(EmulatorConfig {
        tokens: vec![TOKEN.to_owned()],
        state_file: None,
        ..Default::default()
    })
    .await?;
    let base = emulator.base_url().to_owned();
    let ids = Arc::new(seed(&base).await?);
    emulator.control().reset_calls().await?;

    let reads = drive(concurrency, requests, move |http, n| {
        let url = if n % 10 < 7 {
            format!("{base}/repo?workspaceId=ws-{}", n % WORKSPACES)
        } else {
            let start = (n * STATS_BATCH) % REPOS;
            format!(
                "{base}/repo/stats?repoId={}",
                ids[start..start + STATS_BATCH].join(",")
            )
        };
        http.get(url)
    })
    .await?;
    let answered = emulator.control().calls().await?.total;
    anyhow::ensure!(
        answered == reads.count as u64,
        "the emulator counted {answered} calls"
    );
    println!(
        "emulator_throughput: {REPOS} repos in {WORKSPACES} workspaces, {concurrency} concurrent clients"
    );
    reads.print("reads: 70% GET /repo?workspaceId= (50 repos), 30% GET /repo/stats (50 ids)");
    emulator.shutdown().await?;

    // Writes with a state file: every create schedules an atomic rewrite of the whole file.
    let dir = tempfile::tempdir()?;
    let emulator = RunningEmulator::start(EmulatorConfig {
        tokens: vec![TOKEN.to_owned()],
        state_file: Some(dir.path().join("state.json")),
        ..Default::default()
    })
    .await?;
    let base = emulator.base_url().to_owned();
    let creates = (requests / 2).max(1);
    let writes = drive(concurrency, creates, move |http, n| {
        http.post(format!("{base}/repo")).json(&serde_json::json!({
            "name": format!("repo-{n}"), "storageType": "S3", "mode": "NORMAL",
            "workspaceId": format!("ws-{}", n % WORKSPACES),
        }))
    })
    .await?;
    writes.print("writes: POST /repo with --state-file");
    emulator.shutdown().await?;
    let saved = std::fs::read_to_string(dir.path().join("state.json"))?;
    anyhow::ensure!(
        saved.matches("\"createdAt\"").count() == creates,
        "the state file lacks repos"
    );
    Ok(())
}

struct Run {
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn print(&self, what: &str) {
        let pct = |p: f64| ms(self.latencies[((self.latencies.len() - 1) as f64 * p) as usize]);
        println!(
            "  {what}: {} requests in {:.2} s = {:.0} requests/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.count,
            self.elapsed.as_secs_f64(),
            self.count as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0)
        );
    }
}

/// Sends `count` requests from `concurrency` workers (within [`DEADLINE`]); every answer must
/// be a success.
async fn drive(
    concurrency: usize,
    count: usize,
    request: impl Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> anyhow::Result<Run> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, next, request) = (http.clone(), next.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count || started.elapsed() > DEADLINE {
                    return anyhow::Ok(latencies);
                }
                let sent = Instant::now();
                let response = request(&http, n).bearer_auth(TOKEN).send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                response.bytes().await?;
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Run {
        count: latencies.len(),
        elapsed,
        latencies,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Creates the buckets and repos through the real client; returns the repo ids.
async fn seed(base: &str) -> anyhow::Result<Vec<String>> {
    let mut config = ClientConfig::new(base.parse()?, Token::new(TOKEN));
    config.rate_limit = RateLimit::unlimited();
    let client = FlashbackClient::new(config)?;
    let mut buckets = Vec::new();
    for w in 0..WORKSPACES {
        buckets.push(
            client
                .create_bucket(&BucketWrite {
                    name: format!("bucket-{w}"),
                    bucket: format!("cloud-bucket-{w}"),
                    storage_type: StorageType::S3,
                    key: "AKIABENCH".to_owned(),
                    secret: "bench-secret".to_owned(),
                    region: Some("eu-west-1".to_owned()),
                    endpoint: None,
                    workspace_id: format!("ws-{w}"),
                })
                .await?,
        );
    }
    let mut ids = Vec::with_capacity(REPOS);
    for n in 0..REPOS {
        let w = n % WORKSPACES;
        ids.push(
            client
                .create_repo(&RepoWrite {
                    name: format!("repo-{n}"),
                    storage_type: StorageType::S3,
                    mode: RepoMode::Normal,
                    workspace_id: Some(format!("ws-{w}")),
                    repo_buckets: vec![RepoBucketWrite {
                        bucket_id: buckets[w].clone(),
                        folder: Some(format!("repo-{n}")),
                        master: false,
                    }],
                    repo_ai_llms: vec![],
                })
                .await?,
        );
    }
    Ok(ids)
}

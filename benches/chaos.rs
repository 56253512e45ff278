//! `make chaos`: the operator under fire, against the real kube-apiserver, the release
//! operator binary and the emulator. Four scenes, each bounded in count and time, each
//! printing its figures; the process exits non-zero when any promise is missed:
//!
//! 1. SIGKILLs of the operator at random moments while `CHAOS_OBJECTS` objects (default
//!    1,000) are created: every object Ready, exactly one remote repository each, and none
//!    left once every object is deleted.
//! 2. Faults (20 % HTTP 500, 10 % 429 with `Retry-After`, 200 ms latency) during creates and
//!    updates: everything converges, no `Retry-After` is ignored, no duplicate.
//! 3. kube-apiserver and etcd restarted in the middle of a burst: converges, no duplicate.
//! 4. Two tenants sharing one Flashback organisation: a hostile one (adopting the other's id,
//!    the same names, an API URL that hangs and one that answers without end) and an honest
//!    one, whose objects become Ready in their normal time and whose repositories nobody
//!    touches.
//!
//! Needs the local control plane: `make chaos` runs it under `tests/control-plane/with.sh`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use flashback_emulator::Faults;
use flashback_operator::crd::{FlashbackRepository, RepositoryMode, annotations};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::cluster::test_namespace;
use support::hostile::{Behaviour, HostileServer};
use support::operator::Operator;
use support::scene::{SECRET, Scene, condition};

const PHASE_DEADLINE: Duration = Duration::from_secs(600);
const KILLS: usize = 20;

fn objects() -> usize {
    std::env::var("CHAOS_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(10, 5000)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut misses = Vec::new();
        let mut report = |name: &'static str, result: anyhow::Result<()>| match result {
            Ok(()) => println!("chaos: {name}: ok\n"),
            Err(error) => {
                println!("chaos: {name}: MISSED: {error:#}\n");
                misses.push(name);
            }
        };
        report("kills", kills(objects()).await);
        report("faults", faults(objects() / 10).await);
        report("two tenants", two_tenants(50).await);
        // Last: it takes the control plane down and up again.
        report(
            "control plane restart",
            restart_control_plane(objects() / 5).await,
        );
        ensure!(misses.is_empty(), "missed: {}", misses.join(", "));
        Ok(())
    })
}

/// The flags every operator of these scenes runs with: realistic but for the API rate, which
/// would only measure itself.
const FLAGS: &[&str] = &[
    "--resync-interval",
    "30s",
    "--api-rate",
    "500",
    "--api-burst",
    "500",
];

fn operator(scene: &Scene, extra: &[&str]) -> Operator {
    let flags: Vec<&str> = FLAGS.iter().chain(extra).copied().collect();
    Operator::start_as(
        &support::cluster::kubeconfig_path(),
        &[("RUST_LOG".to_string(), "info".to_string())],
        &scene.namespace,
        scene.emulator.base_url(),
        &flags,
    )
}

/// A BACKUP repository on the scene's replica bucket, in a folder of its own.
fn backup(scene: &Scene, name: &str) -> FlashbackRepository {
    let mut repo = scene.mirror(name);
    repo.spec.mode = RepositoryMode::Backup;
    repo.spec.buckets.remove(0);
    repo.spec.buckets[0].folder = Some(name.to_string());
    repo
}

async fn create_all(
    api: &Api<FlashbackRepository>,
    repos: Vec<FlashbackRepository>,
) -> anyhow::Result<()> {
    stream::iter(repos)
        .map(|repo| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &repo).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// How many of the objects are Ready at their current generation.
async fn ready_count(api: &Api<FlashbackRepository>) -> anyhow::Result<(usize, usize)> {
    let list = api.list(&ListParams::default()).await?;
    let ready = list
        .items
        .iter()
        .filter(|r| {
            condition(r, "Ready").is_some_and(|c| c.status == "True")
                && r.status.as_ref().and_then(|s| s.observed_generation) == r.metadata.generation
        })
        .count();
    Ok((ready, list.items.len()))
}

async fn wait_all_ready(api: &Api<FlashbackRepository>, count: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        // The API server may be restarting: a failed look is no verdict.
        if let Ok((ready, _)) = ready_count(api).await
            && ready == count
        {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < PHASE_DEADLINE,
            "not every object was Ready after {PHASE_DEADLINE:?} ({:?})",
            ready_count(api).await.ok()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every object has its own remote repository, and there are no others.
async fn exactly_one_repo_each(scene: &Scene, count: usize) -> anyhow::Result<()> {
    let remote = scene.remote_repos().await;
    let names: BTreeSet<&str> = remote.iter().map(|r| r.name.as_str()).collect();
    let list = scene.repos.list(&ListParams::default()).await?;
    let recorded: BTreeSet<String> = list
        .items
        .iter()
        .filter_map(|r| r.status.as_ref()?.repo_id.clone())
        .collect();
    let listed: BTreeSet<String> = remote.iter().map(|r| r.id.clone()).collect();
    println!(
        "  remote repositories {:>6}, distinct names {:>6}, objects {count:>6}",
        remote.len(),
        names.len()
    );
    ensure!(
        remote.len() == count,
        "{} remote repositories for {count} objects",
        remote.len()
    );
    ensure!(
        names.len() == count,
        "duplicate names among the remote repositories"
    );
    ensure!(
        recorded == listed,
        "the ids in status are not the remote repositories"
    );
    Ok(())
}

async fn delete_all_and_check_nothing_is_left(scene: &Scene) -> anyhow::Result<()> {
    // The API server's delete-collection returns once it has marked every object; the
    // operator releases them meanwhile.
    let started = Instant::now();
    scene
        .repos
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    while !scene
        .repos
        .list(&ListParams::default())
        .await?
        .items
        .is_empty()
    {
        ensure!(
            started.elapsed() < PHASE_DEADLINE,
            "objects were not released in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = scene.remote_repos().await.len();
    println!(
        "  deleted every object in {:.1} s; remote repositories left: {left}",
        started.elapsed().as_secs_f64()
    );
    ensure!(left == 0, "{left} remote repositories leaked");
    Ok(())
}

async fn kills(count: usize) -> anyhow::Result<()> {
    println!("chaos: {KILLS} SIGKILLs while {count} objects are created");
    let scene = Scene::new("chaos-kills").await;
    let mut running = operator(&scene, &[]);
    let repos: Vec<_> = (0..count)
        .map(|n| backup(&scene, &format!("repo-{n:05}")))
        .collect();
    let started = Instant::now();
    let creating = tokio::spawn({
        let api = scene.repos.clone();
        async move { create_all(&api, repos).await }
    });
    let mut mid_burst = 0;
    for _ in 0..KILLS {
        let pause = Duration::from_millis(rand::random_range(200..1200));
        tokio::time::sleep(pause).await;
        running.kill_hard();
        if ready_count(&scene.repos).await?.0 < count {
            mid_burst += 1;
        }
        running = operator(&scene, &[]);
    }
    creating.await??;
    let took = wait_all_ready(&scene.repos, count).await?;
    println!(
        "  all {count} Ready {:.1} s after the first create; {mid_burst} of {KILLS} kills landed mid-burst ({:.1} s of it waiting)",
        started.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    ensure!(
        mid_burst * 2 >= KILLS,
        "only {mid_burst} kills landed mid-burst"
    );
    exactly_one_repo_each(&scene, count).await?;
    delete_all_and_check_nothing_is_left(&scene).await
}

async fn faults(count: usize) -> anyhow::Result<()> {
    println!(
        "chaos: 20% HTTP 500, 10% 429, 200 ms latency while {count} objects are created and updated"
    );
    let scene = Scene::new("chaos-faults").await;
    let faults: Faults = serde_json::from_value(json!({
        "errors": {"share": 0.2, "status": 500},
        "rateLimit": {"share": 0.1, "retryAfterSeconds": 1},
        "latency": {"ms": 200},
        "seed": 42
    }))?;
    scene.control.set_faults(&faults).await?;
    let _operator = operator(&scene, &[]);
    let repos: Vec<_> = (0..count)
        .map(|n| backup(&scene, &format!("repo-{n:05}")))
        .collect();
    create_all(&scene.repos, repos).await?;
    let created = wait_all_ready(&scene.repos, count).await?;
    for n in 0..count {
        scene
            .repos
            .patch(
                &format!("repo-{n:05}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"buckets": [{"bucketId": scene.buckets[1], "folder": format!("moved-{n}")}]}})),
            )
            .await?;
    }
    let updated = wait_all_ready(&scene.repos, count).await?;
    let calls = scene.control.calls().await?;
    let failed: u64 = calls
        .calls
        .iter()
        .filter(|c| c.status >= 429)
        .map(|c| c.count)
        .sum();
    println!(
        "  created in {:.1} s, updated in {:.1} s; {} calls, {failed} answered with a fault, {} Retry-After violations",
        created.as_secs_f64(),
        updated.as_secs_f64(),
        calls.total,
        calls.retry_after_violations
    );
    ensure!(calls.retry_after_violations == 0, "Retry-After was ignored");
    scene.control.clear_faults().await?;
    exactly_one_repo_each(&scene, count).await
}

/// The run directory of the control plane the tests use.
fn control_plane_run() -> PathBuf {
    support::cluster::kubeconfig_path()
        .parent()
        .expect("the kubeconfig lives in the control plane's directory")
        .join("run")
}

/// Kills one control plane process (SIGKILL, as a crash would, by the pid its pid file
/// names) and returns its command line, to start it again with the same state and ports.
fn stop(name: &str) -> anyhow::Result<Vec<String>> {
    let run = control_plane_run();
    let pid: u32 = std::fs::read_to_string(run.join(format!("{name}.pid")))?
        .trim()
        .parse()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .with_context(|| format!("{name} is not running"))?;
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    let started = Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "{name} did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(argv)
}

fn start(name: &str, argv: &[String]) -> anyhow::Result<()> {
    let run = control_plane_run();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(run.join(format!("{name}.log")))?;
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    std::fs::write(run.join(format!("{name}.pid")), format!("{}\n", child.id()))?;
    // Left running for down.sh, which stops it by its pid file.
    std::mem::forget(child);
    Ok(())
}

async fn restart_control_plane(count: usize) -> anyhow::Result<()> {
    println!("chaos: kube-apiserver and etcd restarted while {count} objects are created");
    let scene = Scene::new("chaos-restart").await;
    let _operator = operator(&scene, &[]);
    let repos: Vec<_> = (0..count)
        .map(|n| backup(&scene, &format!("repo-{n:05}")))
        .collect();
    create_all(&scene.repos, repos).await?;
    let (ready_before, _) = ready_count(&scene.repos).await?;
    let down = Instant::now();
    let apiserver = stop("kube-apiserver")?;
    let etcd = stop("etcd")?;
    start("etcd", &etcd)?;
    start("kube-apiserver", &apiserver)?;
    let back = loop {
        if scene
            .repos
            .list(&ListParams::default().limit(1))
            .await
            .is_ok()
        {
            break down.elapsed();
        }
        ensure!(
            down.elapsed() < Duration::from_secs(120),
            "the API server did not come back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let took = wait_all_ready(&scene.repos, count).await?;
    println!(
        "  {ready_before} of {count} Ready when the control plane went down; back after {:.1} s; all Ready {:.1} s later",
        back.as_secs_f64(),
        took.as_secs_f64()
    );
    ensure!(ready_before < count, "the restart landed after the burst");
    exactly_one_repo_each(&scene, count).await
}

async fn two_tenants(count: usize) -> anyhow::Result<()> {
    println!("chaos: an honest tenant ({count} objects) beside a hostile one");
    let honest = Scene::new("chaos-honest").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let selector = format!("chaos-run={run}");
    let label = |mut repo: FlashbackRepository| {
        repo.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("chaos-run".into(), run.clone());
        repo
    };
    let flags: Vec<&str> = FLAGS
        .iter()
        .copied()
        .chain(["--selector", &selector, "--allowed-api-hosts", "127.0.0.1"])
        .collect();
    let _operator = Operator::start_cluster_wide(honest.emulator.base_url(), &flags);

    // The honest tenant's normal time, alone.
    let alone: Vec<_> = (0..count)
        .map(|n| label(backup(&honest, &format!("alone-{n:03}"))))
        .collect();
    create_all(&honest.repos, alone).await?;
    let normal = wait_all_ready(&honest.repos, count).await?;
    let before: BTreeMap<String, String> = honest
        .remote_repos()
        .await
        .into_iter()
        .map(|r| (r.id.clone(), format!("{r:?}")))
        .collect();
    honest.control.reset_calls().await?;

    // The hostile tenant: the same organisation (the same token), another namespace.
    let hostile_namespace = test_namespace(&honest.kube, "chaos-hostile").await;
    let hostile: Api<FlashbackRepository> =
        Api::namespaced(honest.kube.clone(), &hostile_namespace);
    let hanging = HostileServer::start(Behaviour::Hang).await;
    let huge = HostileServer::start(Behaviour::Huge(1 << 30)).await;
    let secrets: Api<Secret> = Api::namespaced(honest.kube.clone(), &hostile_namespace);
    for (name, url) in [
        (SECRET, None),
        ("hang", Some(&hanging.url)),
        ("huge", Some(&huge.url)),
    ] {
        let mut data = json!({"token": honest.token});
        if let Some(url) = url {
            data["apiUrl"] = json!(url);
        }
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
        }))?;
        secrets.create(&PostParams::default(), &secret).await?;
    }
    let victims: Vec<String> = before.keys().take(10).cloned().collect();
    let mut attacks = Vec::new();
    for (n, id) in victims.iter().enumerate() {
        let mut thief = label(backup(&honest, &format!("thief-{n:03}")));
        thief
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(annotations::REPO_ID.into(), id.clone());
        attacks.push(thief);
        // The same remote names as the honest tenant's.
        attacks.push(label(backup(&honest, &format!("alone-{n:03}"))));
    }
    for (secret, prefix) in [("hang", "hang"), ("huge", "huge")] {
        for n in 0..10 {
            let mut repo = label(backup(&honest, &format!("{prefix}-{n:03}")));
            repo.spec.credentials_secret_ref.as_mut().unwrap().name = secret.into();
            attacks.push(repo);
        }
    }
    create_all(&hostile, attacks).await?;

    // The honest tenant carries on: new objects, in their normal time.
    let more: Vec<_> = (0..count)
        .map(|n| label(backup(&honest, &format!("more-{n:03}"))))
        .collect();
    create_all(&honest.repos, more).await?;
    let under_attack = wait_all_ready(&honest.repos, 2 * count).await?;
    let stalled = hostile
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|r| condition(r, "Stalled").is_some_and(|c| c.status == "True"))
        .map(|r| {
            format!(
                "{}: {}",
                r.name_any(),
                condition(r, "Stalled")
                    .map(|c| c.reason.clone())
                    .unwrap_or_default()
            )
        })
        .count();
    let after: BTreeMap<String, String> = honest
        .remote_repos()
        .await
        .into_iter()
        .filter(|r| before.contains_key(&r.id))
        .map(|r| (r.id.clone(), format!("{r:?}")))
        .collect();
    let calls = honest.control.calls().await?;
    let rewrites = calls.count("PUT", "/repo/{id}") + calls.count("DELETE", "/repo/{id}");
    println!(
        "  honest objects Ready: alone in {:.1} s, beside the hostile tenant in {:.1} s",
        normal.as_secs_f64(),
        under_attack.as_secs_f64()
    );
    println!(
        "  hostile objects stalled: {stalled}; calls held by the hanging API: {}; honest repositories rewritten or deleted: {rewrites}",
        hanging.requests()
    );
    ensure!(
        under_attack <= normal * 2 + Duration::from_secs(3),
        "the honest tenant slowed from {normal:?} to {under_attack:?}"
    );
    ensure!(after == before, "an honest repository changed");
    ensure!(
        rewrites == 0,
        "{rewrites} PUT or DELETE calls reached the organisation"
    );
    Ok(())
}

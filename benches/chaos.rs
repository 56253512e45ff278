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
//! 5. The newer kinds: an honest tenant with buckets, repositories and keys beside a hostile
//!    one whose own server answers creates with the honest ids and lists new keys on every
//!    call, who then switches to the shared credentials, deletes buckets in use and whose
//!    API hangs: nothing honest is deregistered, rewritten or keyed, honest drift is corrected
//!    within a resync interval and a read timeout, what the hostile tenant causes per minute
//!    stays within its printed bounds, and SIGTERM ends the operator within its grace.
//!
//! `CHAOS_SCENES` (e.g. `kinds`, or `kills,faults`) runs only the scenes named.
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
use flashback_operator::crd::{
    FlashbackAccessKey, FlashbackBucket, FlashbackRepository, RepositoryMode, annotations,
};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use support::cluster::test_namespace;
use support::hostile::{Behaviour, HostileServer, Impostor};
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
        let chosen = std::env::var("CHAOS_SCENES").unwrap_or_default();
        let wanted = |scene: &str| chosen.is_empty() || chosen.split(',').any(|s| s == scene);
        if wanted("kills") {
            report("kills", kills(objects()).await);
        }
        if wanted("faults") {
            report("faults", faults(objects() / 10).await);
        }
        if wanted("tenants") {
            report("two tenants", two_tenants(50).await);
        }
        if wanted("kinds") {
            report(
                "buckets and keys beside a hostile tenant",
                new_kinds().await,
            );
        }
        // Last: it takes the control plane down and up again.
        if wanted("restart") {
            report(
                "control plane restart",
                restart_control_plane(objects() / 5).await,
            );
        }
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

/// How many of each honest kind, and of each hostile attack, scene 5 makes.
const KINDS: usize = 5;
/// Scene 5's resync interval: short, so that drift and stalls are looked at often.
const KINDS_RESYNC: Duration = Duration::from_secs(10);
/// The operator's read timeout (`--read-timeout`'s default).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A FlashbackBucket in `namespace` with credentials from `secret`.
fn bucket_object(name: &str, secret: &str, run: &str) -> anyhow::Result<FlashbackBucket> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "flashback.tech/v1alpha1", "kind": "FlashbackBucket",
        "metadata": {"name": name, "labels": {"chaos-run": run}},
        "spec": {
            "workspaceId": support::scene::WORKSPACE, "storageType": "S3",
            "bucket": format!("cloud-{name}"), "region": "us-east-1",
            "credentialsSecretRef": {"name": secret},
            "cloudCredentialsSecretRef": {"name": "cloud"},
        },
    }))?)
}

/// A BACKUP repository naming the FlashbackBucket `bucket`, with credentials from `secret`.
fn repository_object(
    scene: &Scene,
    name: &str,
    bucket: &str,
    secret: &str,
    run: &str,
) -> FlashbackRepository {
    let mut repo = backup(scene, name);
    repo.spec.buckets[0].bucket_id = None;
    repo.spec.buckets[0].bucket_ref = Some(flashback_operator::crd::BucketReference {
        name: bucket.to_string(),
    });
    repo.spec.credentials_secret_ref.as_mut().unwrap().name = secret.to_string();
    repo.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("chaos-run".into(), run.to_string());
    repo
}

fn key_object(name: &str, repository: &str, run: &str) -> anyhow::Result<FlashbackAccessKey> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "flashback.tech/v1alpha1", "kind": "FlashbackAccessKey",
        "metadata": {"name": name, "labels": {"chaos-run": run}},
        "spec": {"repositoryRef": {"name": repository}, "accessType": "READ",
                 "endpoint": "https://s3-us-east-1-aws.flashback.tech"},
    }))?)
}

async fn put_secret(
    kube: &kube::Client,
    namespace: &str,
    name: &str,
    data: serde_json::Value,
) -> anyhow::Result<()> {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data
    }))?;
    Api::<Secret>::namespaced(kube.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply("chaos").force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// Waits until every object of `api` has Ready True.
async fn wait_kind_ready<K>(
    api: &Api<K>,
    count: usize,
    ready: impl Fn(&K) -> bool,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let started = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await?;
        if list.items.iter().filter(|o| ready(o)).count() == count {
            return Ok(());
        }
        ensure!(started.elapsed() < PHASE_DEADLINE, "not all Ready in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready_in(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// What the honest tenant has in Flashback: its buckets, repositories and keys, as listed.
async fn honest_remote(
    scene: &Scene,
    repo_ids: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut seen = BTreeMap::new();
    for bucket in scene
        .api
        .list_buckets(Some(support::scene::WORKSPACE))
        .await?
    {
        seen.insert(format!("bucket {}", bucket.id), format!("{bucket:?}"));
    }
    for repo in scene.remote_repos().await {
        seen.insert(format!("repo {}", repo.id), format!("{repo:?}"));
    }
    for id in repo_ids {
        let keys: BTreeSet<String> = scene
            .control
            .repo_keys(id)
            .await?
            .into_iter()
            .map(|k| format!("{} {} {}", k.id, k.key, k.access_type))
            .collect();
        seen.insert(format!("keys of {id}"), format!("{keys:?}"));
    }
    Ok(seen)
}

async fn new_kinds() -> anyhow::Result<()> {
    println!("chaos: buckets, repositories and keys of an honest tenant beside a hostile one");
    let honest = Scene::new("chaos-kinds").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let selector = format!("chaos-run={run}");
    let resync = format!("{}s", KINDS_RESYNC.as_secs());
    let mut operator = Operator::start_cluster_wide(
        honest.emulator.base_url(),
        &[
            "--resync-interval",
            &resync,
            "--selector",
            &selector,
            "--allowed-api-hosts",
            "127.0.0.1",
            "--leader-election",
            "--leader-election-namespace",
            &honest.namespace,
        ],
    );
    let kube = honest.kube.clone();
    let cloud = json!({"AWS_ACCESS_KEY_ID": "AKIAHONEST", "AWS_SECRET_ACCESS_KEY": "honest"});
    put_secret(&kube, &honest.namespace, "cloud", cloud.clone()).await?;

    // The honest tenant: buckets, repositories naming them, a key on each.
    let buckets: Api<FlashbackBucket> = Api::namespaced(kube.clone(), &honest.namespace);
    let keys: Api<FlashbackAccessKey> = Api::namespaced(kube.clone(), &honest.namespace);
    for n in 0..KINDS {
        buckets
            .create(
                &PostParams::default(),
                &bucket_object(&format!("b{n}"), SECRET, &run)?,
            )
            .await?;
        let repo = repository_object(&honest, &format!("r{n}"), &format!("b{n}"), SECRET, &run);
        honest.repos.create(&PostParams::default(), &repo).await?;
        keys.create(
            &PostParams::default(),
            &key_object(&format!("k{n}"), &format!("r{n}"), &run)?,
        )
        .await?;
    }
    wait_kind_ready(&buckets, KINDS, |b| {
        b.status.as_ref().is_some_and(|s| ready_in(&s.conditions))
    })
    .await?;
    wait_kind_ready(&honest.repos, KINDS, |r| {
        r.status.as_ref().is_some_and(|s| ready_in(&s.conditions))
    })
    .await?;
    wait_kind_ready(&keys, KINDS, |k| {
        k.status.as_ref().is_some_and(|s| ready_in(&s.conditions))
    })
    .await?;
    let repo_ids: Vec<String> = honest
        .repos
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|r| r.status.and_then(|s| s.repo_id))
        .collect();
    let bucket_ids: Vec<String> = buckets
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|b| b.status.and_then(|s| s.bucket_id))
        .collect();
    let before = honest_remote(&honest, &repo_ids).await?;

    // The hostile tenant.
    let namespace = test_namespace(&kube, "chaos-kinds-hostile").await;
    let impostor = Impostor::start(&repo_ids[0], &bucket_ids[0]).await;
    let flooder = Impostor::start("r-keyring-0001", "b-keyring-0001").await;
    let hanging = HostileServer::start(Behaviour::Hang).await;
    put_secret(&kube, &namespace, SECRET, json!({"token": honest.token})).await?;
    for (name, url) in [
        ("own", &impostor.url),
        ("keys", &flooder.url),
        ("hang", &hanging.url),
    ] {
        let data = json!({"token": "own", "apiUrl": url});
        put_secret(&kube, &namespace, name, data).await?;
    }
    put_secret(&kube, &namespace, "cloud", cloud).await?;
    let hostile_buckets: Api<FlashbackBucket> = Api::namespaced(kube.clone(), &namespace);
    let hostile_repos: Api<FlashbackRepository> = Api::namespaced(kube.clone(), &namespace);
    let hostile_keys: Api<FlashbackAccessKey> = Api::namespaced(kube.clone(), &namespace);
    let mut hostile_objects = 0;
    // Keys on a repository of its own server, which lists 20 new "own" keys on every call.
    for n in 0..KINDS {
        let key = hostile_keys
            .create(
                &PostParams::default(),
                &key_object(&format!("flood-{n}"), "keyring", &run)?,
            )
            .await?;
        flooder.flood_keys_of(&key.uid().unwrap_or_default());
        hostile_objects += 1;
    }
    // A bucket of the organisation that no FlashbackBucket manages (one the honest tenant
    // manages is refused by id to another namespace).
    let by_id = |mut repo: FlashbackRepository| {
        repo.spec.buckets[0].bucket_ref = None;
        repo.spec.buckets[0].bucket_id = Some(honest.buckets[1].clone());
        repo
    };
    let keyring = by_id(repository_object(&honest, "keyring", "", "keys", &run));
    hostile_repos
        .create(&PostParams::default(), &keyring)
        .await?;
    // Lures: its own server answers their creates with the honest ids.
    let lure = by_id(repository_object(&honest, "lure", "", "own", &run));
    hostile_repos.create(&PostParams::default(), &lure).await?;
    hostile_buckets
        .create(&PostParams::default(), &bucket_object("lure", "own", &run)?)
        .await?;
    hostile_objects += 3;
    // Buckets in use, on the shared credentials, then deleted.
    for n in 0..KINDS {
        hostile_buckets
            .create(
                &PostParams::default(),
                &bucket_object(&format!("used-{n}"), SECRET, &run)?,
            )
            .await?;
        let user = repository_object(
            &honest,
            &format!("user-{n}"),
            &format!("used-{n}"),
            SECRET,
            &run,
        );
        hostile_repos.create(&PostParams::default(), &user).await?;
        hostile_objects += 2;
    }
    // Repositories whose API hangs, a workspace each.
    for n in 0..KINDS {
        let mut hang = backup(&honest, &format!("hang-{n}"));
        hang.spec.workspace_id = format!("ws-hang-{n}");
        hang.spec.credentials_secret_ref.as_mut().unwrap().name = "hang".into();
        hang.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("chaos-run".into(), run.clone());
        hostile_repos.create(&PostParams::default(), &hang).await?;
        hostile_objects += 1;
    }
    // The lure records what the impostor answered; the users of buckets become Ready.
    let settled = Instant::now();
    loop {
        let repos = hostile_repos.list(&ListParams::default()).await?.items;
        let recorded = repos
            .iter()
            .filter(|r| r.name_any() == "lure")
            .filter(|r| r.status.as_ref().and_then(|s| s.repo_id.as_ref()).is_some())
            .count();
        let users = repos
            .iter()
            .filter(|r| r.name_any().starts_with("user-"))
            .filter(|r| r.status.as_ref().is_some_and(|s| ready_in(&s.conditions)))
            .count();
        if recorded == 1 && users == KINDS {
            break;
        }
        ensure!(
            settled.elapsed() < PHASE_DEADLINE,
            "the hostile objects did not settle"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Then it switches its lures to the shared credentials, and deletes its buckets in use.
    let to_shared = json!({"spec": {"credentialsSecretRef": {"name": SECRET}}});
    hostile_repos
        .patch("lure", &PatchParams::default(), &Patch::Merge(&to_shared))
        .await?;
    hostile_buckets
        .patch("lure", &PatchParams::default(), &Patch::Merge(&to_shared))
        .await?;
    for n in 0..KINDS {
        hostile_buckets
            .delete(&format!("used-{n}"), &DeleteParams::default())
            .await?;
    }

    // A minute under attack: what the hostile tenant causes, and honest drift corrected.
    honest.control.reset_calls().await?;
    let deletes_before = flooder.key_deletes();
    let window = Instant::now();
    let drifted = &repo_ids[1];
    honest
        .control
        .patch_repo(
            drifted,
            &serde_json::from_value(json!({"name": "drifted"}))?,
        )
        .await?;
    let mut corrected = None;
    while window.elapsed() < Duration::from_secs(60) {
        if corrected.is_none()
            && honest
                .remote_repos()
                .await
                .iter()
                .any(|r| &r.id == drifted && r.name != "drifted")
        {
            corrected = Some(window.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let minutes = window.elapsed().as_secs_f64() / 60.0;
    let calls = honest.control.calls().await?;
    let shared_calls: u64 = calls.total;
    let key_deletes = flooder.key_deletes() - deletes_before;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(kube.clone(), &namespace)
        .list(&ListParams::default())
        .await?
        .items;
    let event_objects = events.len();
    let event_repeats: i64 = events
        .iter()
        .map(|e| e.series.as_ref().map_or(1, |s| i64::from(s.count)))
        .sum();
    let after = honest_remote(&honest, &repo_ids).await?;
    let changed: Vec<&String> = before
        .iter()
        .filter(|(what, seen)| {
            what.as_str() != format!("repo {drifted}") && after.get(*what) != Some(seen)
        })
        .map(|(what, _)| what)
        .collect();
    let destructive = calls.count("DELETE", "/bucket/{id}")
        + calls.count("DELETE", "/repo/{id}")
        + calls.count("POST", "/repo/{id}/apikey")
        + calls.count("DELETE", "/repo/{id}/apikey/{keyId}");

    // Bounds: a key object deletes at most 10 keys a reconcile and backs off from 1 s
    // doubling (at most 7 reconciles in a minute); the shared API sees at most 3 calls per
    // object per resync interval; an object's Events are a few series.
    let per_resync = 60.0 / KINDS_RESYNC.as_secs_f64();
    let all_objects = (hostile_objects + 3 * KINDS) as f64;
    let calls_bound = 3.0 * all_objects * per_resync;
    let deletes_bound = 70.0 * KINDS as f64;
    let events_bound = 4 * hostile_objects;
    println!(
        "  hostile tenant: {hostile_objects} objects; per minute: {:.0} calls to the shared API \
         (bound {calls_bound:.0}), {:.0} key DELETEs at its own server (bound {deletes_bound:.0}), \
         {event_objects} Events in its namespace, {event_repeats} with repeats (bound {events_bound} Events)",
        shared_calls as f64 / minutes,
        key_deletes as f64 / minutes,
    );
    println!(
        "  honest: {} of {} remote buckets, repositories and key sets changed; {destructive} \
         deletes or key creates at the shared API; drift corrected after {:?} (bound {:?})",
        changed.len(),
        before.len(),
        corrected,
        KINDS_RESYNC + READ_TIMEOUT
    );

    // SIGTERM with the hostile tenant's calls hanging.
    let stop = Instant::now();
    let clean = operator.terminate();
    let exit = stop.elapsed();
    println!("  SIGTERM to exit with a hanging tenant: {exit:.1?} (exit 0: {clean})");

    ensure!(changed.is_empty(), "honest state changed: {changed:?}");
    ensure!(
        destructive == 0,
        "{destructive} destructive calls reached the organisation"
    );
    ensure!(
        corrected.is_some_and(|took| took <= KINDS_RESYNC + READ_TIMEOUT),
        "drift corrected after {corrected:?}"
    );
    ensure!(
        (shared_calls as f64 / minutes) <= calls_bound,
        "too many calls"
    );
    ensure!(
        (key_deletes as f64 / minutes) <= deletes_bound,
        "too many key deletes"
    );
    ensure!(event_objects <= events_bound, "too many Events");
    ensure!(
        clean && exit <= Duration::from_secs(20),
        "SIGTERM took {exit:?}"
    );
    Ok(())
}

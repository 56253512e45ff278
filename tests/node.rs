//! The operator as users run it: the image `make image` builds, installed by `helm install` of
//! the chart on the local cluster with a real node (containerd + kubelet, see
//! tests/control-plane/node.sh), reconciling against the emulator on the host. The node's Pods
//! use the host's network (no CNI here), so the chart runs with `hostNetwork: true` and the
//! in-cluster API address set through `extraEnv`.
//!
//! One story, in order, because the cluster takes seconds to start and the image a minute to
//! build: the image; install and Ready; create, update, drift, delete; a second release sharing
//! the Lease takes over when the leader's Pod is deleted, within the shutdown grace although a
//! tenant's API hangs; upgrade rolls the Pod; the Pods' logs hold no token; uninstall leaves
//! the CRD.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use flashback_client::{
    ClientConfig, FlashbackClient, Repo, RepoFilter, RepoMode, RetryPolicy, Token,
};
use flashback_emulator::control::{EmulatorControl, EmulatorProcess, RepoPatch};
use flashback_operator::crd::FlashbackRepository;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::support::hostile::{Behaviour, HostileServer};
use crate::support::node::{
    NodeCluster, process_status, root, root_is_read_only, run_bounded, run_ok,
};
use crate::support::scene::condition;

const RELEASE_NAMESPACE: &str = "flashback-system";
const TEAM: &str = "team-a";
/// A tenant whose Flashback API never answers.
const HOSTILE: &str = "team-hostile";
const WORKSPACE: &str = "ws-node";
const LEASE: &str = "flashback-operator";
/// How long a Pod may take from `helm install` (or a deletion) to Ready. Measured here: about
/// 5 s with the image imported; the bound leaves room for a loaded 2-core machine.
const POD_READY_BOUND: Duration = Duration::from_secs(60);
const DEADLINE: Duration = Duration::from_secs(60);

fn image_script(args: &[&str]) -> String {
    run_ok(
        Command::new(root().join("demo/image.sh"))
            .args(args)
            .env("IMAGE_PROFILE", "debug")
            .env("IMAGE_SKIP_BUILD", "1"),
        Duration::from_secs(300),
    )
}

/// `make image` with the debug binaries `cargo test` has just built (a release build would
/// compile everything a second time); the image is otherwise the one users get.
fn build_image() -> PathBuf {
    let version = env!("CARGO_PKG_VERSION");
    let output = run_bounded(
        Command::new("make")
            .args(["-s", "image", "IMAGE_PROFILE=debug"])
            .current_dir(root())
            // A make of its own, not a part of the `make test` that runs this test.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .env("IMAGE_SKIP_BUILD", "1"),
        Duration::from_secs(300),
    );
    assert!(
        output.status.success(),
        "make image failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let archive = root().join(format!("target/image/flashback-operator-{version}.oci.tar"));
    assert!(archive.exists(), "make image wrote {}", archive.display());
    archive
}

fn check_image() {
    let inspect: serde_json::Value =
        serde_json::from_str(&image_script(&["inspect"])).expect("podman inspect is JSON");
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "the image runs as non-root");
    assert_eq!(
        config["Entrypoint"],
        json!(["/usr/local/bin/flashback-operator"]),
        "the operator is the entrypoint"
    );
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(labels["org.opencontainers.image.source"].is_string());

    let version = image_script(&["run", "--version"]);
    assert_eq!(
        version.trim(),
        format!("flashback-operator {}", env!("CARGO_PKG_VERSION")),
        "`flashback-operator --version` runs inside the image"
    );
    let emulator = image_script(&[
        "run",
        "--entrypoint",
        "/usr/local/bin/flashback-emulator",
        "--version",
    ]);
    assert!(emulator.starts_with("flashback-emulator "), "{emulator}");
    // No shell to exec into.
    let shell = run_bounded(
        Command::new(root().join("demo/image.sh"))
            .args(["run", "--entrypoint", "/bin/sh", "-c", "true"])
            .env("IMAGE_SKIP_BUILD", "1"),
        Duration::from_secs(60),
    );
    assert!(!shell.status.success(), "the image has no /bin/sh");
}

/// The emulator on the host's loopback, which hostNetwork Pods reach as well.
struct Remote {
    _process: EmulatorProcess,
    url: String,
    token: String,
    control: EmulatorControl,
    api: FlashbackClient,
    buckets: Vec<String>,
}

impl Remote {
    async fn start() -> Self {
        let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
        let process = EmulatorProcess::spawn(crate::support::emulator_bin(), &[&token], None)
            .await
            .expect("the emulator starts");
        let mut config = ClientConfig::new(
            process.base_url().parse().unwrap(),
            Token::new(token.clone()),
        );
        config.retry = RetryPolicy::never();
        let api = FlashbackClient::new(config).expect("client");
        let mut buckets = Vec::new();
        for name in ["primary", "replica", "third"] {
            buckets.push(
                api.create_bucket(&crate::support::bucket_write(name, WORKSPACE))
                    .await
                    .expect("bucket is created"),
            );
        }
        Self {
            url: process.base_url().to_owned(),
            control: process.control(),
            _process: process,
            token,
            api,
            buckets,
        }
    }

    async fn repos(&self) -> Vec<Repo> {
        self.api
            .list_repos(&RepoFilter::default())
            .await
            .expect("the emulator lists repositories")
    }

    async fn calls(&self, method: &str, route: &str) -> u64 {
        self.control
            .calls()
            .await
            .expect("call counters")
            .count(method, route)
    }
}

/// A Helm release of the chart, configured for the node: hostNetwork with the metrics port on
/// loopback, in-cluster config pointed at the API server, the image `make image` built.
fn install_values(cluster: &NodeCluster, remote: &Remote, metrics_port: u16) -> Vec<String> {
    [
        "hostNetwork=true".to_owned(),
        "metrics.bindAddress=127.0.0.1".to_owned(),
        format!("metrics.port={metrics_port}"),
        "image.pullPolicy=Never".to_owned(),
        format!("apiUrl={}", remote.url),
        "resyncInterval=3s".to_owned(),
        // The hostile tenant's API, on the host's loopback too.
        "allowedApiHosts[0]=127.0.0.1".to_owned(),
        "logLevel=info\\,flashback_operator=debug".to_owned(),
        format!("leaderElection.leaseName={LEASE}"),
        "extraEnv[0].name=KUBERNETES_SERVICE_HOST".to_owned(),
        "extraEnv[0].value=127.0.0.1".to_owned(),
        "extraEnv[1].name=KUBERNETES_SERVICE_PORT".to_owned(),
    ]
    .into_iter()
    .flat_map(|value| ["--set".to_owned(), value])
    // An env value is a string, whatever it looks like.
    .chain([
        "--set-string".to_owned(),
        format!("extraEnv[1].value={}", cluster.api_server_port()),
    ])
    .collect()
}

fn helm(cluster: &NodeCluster, verb: &str, release: &str, values: &[String]) -> String {
    let chart = root().join("charts/flashback-operator");
    let mut args = vec![
        verb.to_owned(),
        release.to_owned(),
        chart.display().to_string(),
        "--namespace".to_owned(),
        RELEASE_NAMESPACE.to_owned(),
    ];
    if verb == "install" {
        args.push("--create-namespace".to_owned());
    }
    args.extend(values.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.helm(&args)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The release's Pods that are not being deleted.
async fn release_pods(kube: &Client, release: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(kube.clone(), RELEASE_NAMESPACE);
    pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .expect("pods are listed")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until the release's Deployment is available with one Ready Pod, not `not_this` (a Pod
/// being replaced); returns the Pod.
async fn wait_pod_ready(kube: &Client, release: &str, not_this: Option<&str>) -> Pod {
    let deployments: Api<Deployment> = Api::namespaced(kube.clone(), RELEASE_NAMESPACE);
    let name = format!("{release}-flashback-operator");
    let until = Instant::now() + POD_READY_BOUND;
    loop {
        let available = deployments
            .get_opt(&name)
            .await
            .unwrap()
            .and_then(|d| d.status?.available_replicas)
            .unwrap_or(0);
        let pods = release_pods(kube, release).await;
        if available >= 1
            && let Some(pod) = pods
                .iter()
                .find(|p| is_ready(p) && p.metadata.name.as_deref() != not_this)
        {
            return pod.clone();
        }
        assert!(
            Instant::now() < until,
            "{name} has no Ready Pod within {POD_READY_BOUND:?}; Pods: {:#?}",
            pods.iter().map(|p| &p.status).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            Instant::now() < until,
            "{what} did not happen within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn mirror(name: &str, remote: &Remote, primary: usize, replica: usize) -> FlashbackRepository {
    serde_saphyr::from_str(&format!(
        r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackRepository
metadata:
  name: {name}
spec:
  workspaceId: {WORKSPACE}
  storageType: S3
  mode: MIRROR
  buckets:
    - bucketId: {primary}
      folder: media
      master: true
    - bucketId: {replica}
  credentialsSecretRef:
    name: flashback-token
"#,
        primary = remote.buckets[primary],
        replica = remote.buckets[replica],
    ))
    .expect("example YAML")
}

async fn wait_ready(repos: &Api<FlashbackRepository>, name: &str) -> FlashbackRepository {
    let until = Instant::now() + DEADLINE;
    loop {
        let repo = repos.get_opt(name).await.expect("get");
        if let Some(repo) = &repo
            && condition(repo, "Ready").is_some_and(|c| c.status == "True")
            && repo.status.as_ref().and_then(|s| s.observed_generation) == repo.metadata.generation
        {
            return repo.clone();
        }
        assert!(
            Instant::now() < until,
            "{name} not Ready within {DEADLINE:?}: {:#?}",
            repo.and_then(|r| r.status)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn lease_holder(kube: &Client) -> Option<String> {
    Api::<Lease>::namespaced(kube.clone(), RELEASE_NAMESPACE)
        .get_opt(LEASE)
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_image_on_a_real_node_and_reconciles_through_it() {
    // 1. The image: built without a daemon, non-root, the operator as entrypoint.
    let started = Instant::now();
    let archive = build_image();
    check_image();
    eprintln!("image built and checked in {:?}", started.elapsed());

    // The cluster with a node, and the image in its containerd.
    let started = Instant::now();
    let cluster = NodeCluster::up().await;
    cluster.import_image(&archive);
    eprintln!("node cluster up, image imported in {:?}", started.elapsed());
    let kube = cluster.kube.clone();
    let remote = Remote::start().await;

    Api::<Namespace>::all(kube.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": TEAM}})).unwrap(),
        )
        .await
        .expect("the team namespace is created");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "flashback-token"},
        "stringData": {"token": remote.token},
    }))
    .unwrap();
    Api::<Secret>::namespaced(kube.clone(), TEAM)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the token Secret is created");
    let repos: Api<FlashbackRepository> = Api::namespaced(kube.clone(), TEAM);

    // 2. helm install: the Deployment becomes available and its Pod Ready through /readyz.
    let leader_port = free_port();
    let started = Instant::now();
    helm(
        &cluster,
        "install",
        "fb",
        &install_values(&cluster, &remote, leader_port),
    );
    let pod = wait_pod_ready(&kube, "fb", None).await;
    eprintln!(
        "helm install to Pod Ready: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("fb-flashback-operator")
    );
    // The runtime enforces the chart's security context on the container's process.
    let pid = cluster.container_pid(&pod);
    let status = process_status(pid);
    assert_eq!(
        status["Uid"].split_whitespace().collect::<Vec<_>>(),
        ["65532"; 4],
        "runs as uid 65532"
    );
    assert_eq!(status["CapEff"], "0000000000000000", "no capabilities");
    assert_eq!(status["NoNewPrivs"], "1", "no privilege escalation");
    assert_eq!(status["Seccomp"], "2", "a seccomp filter (RuntimeDefault)");
    assert!(root_is_read_only(pid), "the root filesystem is read-only");
    let token_path = format!("/proc/{pid}/root/var/run/secrets/kubernetes.io/serviceaccount/token");
    let service_account_token =
        std::fs::read_to_string(&token_path).expect("the ServiceAccount token is mounted");
    assert!(service_account_token.len() > 100);

    // 3. Create, update, drift, delete, through the operator in the Pod.
    repos
        .create(&PostParams::default(), &mirror("media", &remote, 0, 1))
        .await
        .expect("the object is accepted");
    let ready = wait_ready(&repos, "media").await;
    let repo_id = ready.status.unwrap().repo_id.unwrap();
    assert_eq!(remote.repos().await.len(), 1);
    assert_eq!(remote.calls("POST", "/repo").await, 1);

    repos
        .patch(
            "media",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "BACKUP", "buckets": [
                {"bucketId": remote.buckets[0], "folder": "media", "master": false},
                {"bucketId": remote.buckets[1], "folder": "copy"}
            ]}})),
        )
        .await
        .expect("the spec change is accepted");
    wait_ready(&repos, "media").await;
    assert_eq!(remote.repos().await[0].mode, RepoMode::Backup);
    assert_eq!(remote.calls("PUT", "/repo/{id}").await, 1);

    remote
        .control
        .patch_repo(
            &repo_id,
            &RepoPatch {
                name: Some("renamed-by-hand".into()),
                ..RepoPatch::default()
            },
        )
        .await
        .expect("the emulator takes the change");
    wait_until("the drift is corrected", || async {
        remote.repos().await[0].name == "media"
    })
    .await;

    repos
        .delete("media", &DeleteParams::default())
        .await
        .unwrap();
    wait_until("the object is released", || async {
        repos.get_opt("media").await.unwrap().is_none()
    })
    .await;
    assert!(remote.repos().await.is_empty(), "the remote repo is gone");
    assert_eq!(remote.calls("DELETE", "/repo/{id}").await, 1);
    let mut logs = cluster.pod_logs(&pod);

    // 4. A second release, sharing the Lease (hostNetwork Pods of one Deployment would need the
    // same port on the one node): deleting the leader's Pod hands the Lease over, within the
    // shutdown grace although a tenant's API hangs under the leader's reconciles.
    let hanging = HostileServer::start(Behaviour::Hang).await;
    Api::<Namespace>::all(kube.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": HOSTILE}})).unwrap(),
        )
        .await
        .expect("the hostile namespace is created");
    let hostile_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "flashback-token"},
        "stringData": {"token": "whatever", "apiUrl": hanging.url},
    }))
    .unwrap();
    Api::<Secret>::namespaced(kube.clone(), HOSTILE)
        .create(&PostParams::default(), &hostile_secret)
        .await
        .expect("the hostile Secret is created");
    let hostile: Api<FlashbackRepository> = Api::namespaced(kube.clone(), HOSTILE);
    for i in 0..8 {
        hostile
            .create(
                &PostParams::default(),
                &mirror(&format!("hang-{i}"), &remote, 0, 1),
            )
            .await
            .expect("the object is accepted");
    }
    wait_until("the hostile objects reach their API", || async {
        hanging.in_flight() >= 1
    })
    .await;
    let holder = lease_holder(&kube)
        .await
        .expect("the leader holds the Lease");
    assert!(holder.starts_with(pod.metadata.name.as_deref().unwrap()));
    let standby_port = free_port();
    // The CRDs belong to the first release: one release per cluster manages them.
    let standby_values = [
        install_values(&cluster, &remote, standby_port),
        vec!["--set".into(), "crds.enabled=false".into()],
    ]
    .concat();
    helm(&cluster, "install", "fb-standby", &standby_values);
    let standby = wait_pod_ready(&kube, "fb-standby", None).await;
    // Every change of the Lease from now on: the leader's release is one (holder cleared),
    // however soon another Pod takes it after.
    let released = tokio::spawn({
        let leases: Api<Lease> = Api::namespaced(kube.clone(), RELEASE_NAMESPACE);
        async move {
            use futures::StreamExt;
            use kube::runtime::{WatchStreamExt, watcher};
            let named = watcher::Config::default().fields(&format!("metadata.name={LEASE}"));
            let mut changes = watcher(leases, named).applied_objects().boxed();
            while let Some(Ok(lease)) = changes.next().await {
                if lease.spec.and_then(|s| s.holder_identity).is_none() {
                    return Some(Instant::now());
                }
            }
            None
        }
    });
    assert!(
        hanging.in_flight() >= 1,
        "the leader's calls to the hostile API are in flight"
    );
    let deleted_at = Instant::now();
    cluster.kubectl(&[
        "-n",
        RELEASE_NAMESPACE,
        "delete",
        "pod",
        pod.metadata.name.as_deref().unwrap(),
        "--wait=false",
    ]);
    let standby_name = standby.metadata.name.clone().unwrap();
    // The leader releases the Lease on SIGTERM; the standby, or the Pod that replaces the
    // deleted one (whichever asks first), takes it.
    let deleted = pod.metadata.name.clone().unwrap();
    wait_until("another Pod takes the Lease", || async {
        lease_holder(&kube)
            .await
            .is_some_and(|h| !h.starts_with(&deleted))
    })
    .await;
    eprintln!("the Lease passed to {:?}", lease_holder(&kube).await);
    // Within the shutdown grace (10 s, a third of the Pod's 30 s) and the release (at most a
    // third of the Lease's 15 s), with room for a loaded machine, and well before the kubelet
    // would kill the Pod (30 s) with the Lease still held.
    let bound = Duration::from_secs(22);
    let released_after = tokio::time::timeout_at((deleted_at + bound).into(), released)
        .await
        .unwrap_or_else(|_| panic!("the leader did not release the Lease within {bound:?}"))
        .unwrap()
        .expect("the Lease watch ends only with the release")
        - deleted_at;
    let pods: Api<Pod> = Api::namespaced(kube.clone(), RELEASE_NAMESPACE);
    wait_until("the deleted Pod is gone", || async {
        pods.get_opt(&deleted).await.unwrap().is_none()
    })
    .await;
    let gone_after = deleted_at.elapsed();
    eprintln!(
        "leader Pod deleted while a tenant's API hangs: Lease released after {:.1} s, Pod gone \
         after {:.1} s",
        released_after.as_secs_f64(),
        gone_after.as_secs_f64()
    );
    assert!(
        gone_after < bound,
        "the Pod took {gone_after:?} to stop: its 30 s grace period ran out?"
    );
    let posts = remote.calls("POST", "/repo").await;
    repos
        .create(&PostParams::default(), &mirror("after", &remote, 2, 1))
        .await
        .expect("the object is accepted");
    wait_ready(&repos, "after").await;
    let after: Vec<Repo> = remote
        .repos()
        .await
        .into_iter()
        .filter(|r| r.name == "after")
        .collect();
    assert_eq!(after.len(), 1, "exactly one remote repo");
    assert_eq!(remote.calls("POST", "/repo").await, posts + 1);
    // The first release's Deployment has replaced its Pod, which now stands by.
    let replacement = wait_pod_ready(&kube, "fb", pod.metadata.name.as_deref()).await;

    // 5. helm upgrade with a changed value rolls the Pod, which keeps working. (The kubelet
    // removes a deleted Pod's log: read it first.)
    logs += &cluster.pod_logs(&standby);
    helm(
        &cluster,
        "upgrade",
        "fb-standby",
        &[
            standby_values.clone(),
            vec!["--set".into(), "resyncInterval=4s".into()],
        ]
        .concat(),
    );
    let rolled = wait_pod_ready(&kube, "fb-standby", Some(&standby_name)).await;
    let env = &rolled.spec.as_ref().unwrap().containers[0].env;
    assert!(
        env.iter()
            .flatten()
            .any(|e| e.name == "FLASHBACK_RESYNC_INTERVAL" && e.value.as_deref() == Some("4s")),
        "the new Pod has the new value"
    );
    repos
        .patch(
            "after",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "BACKUP", "buckets": [
                {"bucketId": remote.buckets[2], "folder": "media", "master": false}
            ]}})),
        )
        .await
        .expect("the spec change is accepted");
    wait_ready(&repos, "after").await;
    assert_eq!(
        remote
            .repos()
            .await
            .iter()
            .find(|r| r.name == "after")
            .map(|r| r.mode.clone()),
        Some(RepoMode::Backup)
    );

    // 6. No token in any operator Pod's log: neither the Flashback token nor the Pod's own.
    for pod in [&replacement, &rolled] {
        logs += &cluster.pod_logs(pod);
    }
    assert!(logs.contains("became the leader"), "the logs were read");
    assert!(
        !logs.contains(&remote.token),
        "a Flashback token in the logs"
    );
    assert!(
        !logs.contains(service_account_token.trim()),
        "the ServiceAccount token in the logs"
    );

    // helm uninstall leaves no operator Pod and keeps the CRD (and the objects).
    for release in ["fb", "fb-standby"] {
        cluster.helm(&["uninstall", release, "--namespace", RELEASE_NAMESPACE]);
    }
    wait_until("the operator Pods are gone", || async {
        let pods: Api<Pod> = Api::namespaced(kube.clone(), RELEASE_NAMESPACE);
        pods.list(&ListParams::default().labels("app.kubernetes.io/name=flashback-operator"))
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    assert!(
        Api::<CustomResourceDefinition>::all(kube.clone())
            .get_opt("flashbackrepositories.flashback.tech")
            .await
            .unwrap()
            .is_some(),
        "the CRD stays"
    );
    assert!(repos.get_opt("after").await.unwrap().is_some());
    drop(cluster);
}

//! The operator as users run it: the image `make image` builds, pushed with the chart to the
//! local cluster's registry and installed by `helm install oci://...` with the chart's default
//! networking, on a cluster with a real node, a pod network, kube-proxy and cluster DNS (see
//! tests/control-plane/node.sh). The emulator runs there too, as a Pod behind a Service that the
//! operator addresses by its cluster DNS name; tests reach it through a forwarder.
//!
//! The main story is one test, in order, because the image takes a minute to build: the image;
//! install and Ready (two replicas, in-cluster config, nothing forced into the environment);
//! create, update, drift, delete; the metrics Service scraped by a Pod by its DNS name; the
//! leader's Pod deleted while a tenant's API hangs, and the other replica takes over within
//! the shutdown grace; upgrade rolls the Pods; `kubectl logs` holds the operator's lines and no
//! token; uninstall leaves the CRD.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use flashback_client::{
    ClientConfig, FlashbackClient, Repo, RepoFilter, RepoMode, RetryPolicy, Token,
};
use flashback_emulator::control::{EmulatorControl, RepoPatch};
use flashback_operator::crd::FlashbackRepository;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::support::hostile::{Behaviour, HostileServer};
use crate::support::node::{
    Forward, NodeCluster, process_status, root, root_is_read_only, run_bounded, run_ok, tool,
};
use crate::support::scene::condition;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const RELEASE_NAMESPACE: &str = "flashback-system";
const TEAM: &str = "team-a";
/// A tenant whose Flashback API never answers.
const HOSTILE: &str = "team-hostile";
const WORKSPACE: &str = "ws-node";
const LEASE: &str = "flashback-operator";
const EMULATOR_NAMESPACE: &str = "flashback-emulator";
/// The emulator's Service, as the operator's Pods address it.
const EMULATOR_URL: &str = "http://flashback-emulator.flashback-emulator.svc.cluster.local:8090";
/// The main story's values beyond `helm_operator`'s: the team's Secret names the emulator by its
/// Service's DNS name in `apiUrl` (which allowedApiHosts lets it), and the chart's own apiUrl
/// leads nowhere, so every call goes where the Secret says.
const STORY_VALUES: [&str; 4] = [
    "--set",
    "apiUrl=https://flashback.invalid",
    "--set",
    "allowedApiHosts[1]=flashback-emulator.flashback-emulator.svc.cluster.local:8090",
];
/// How long Pods may take from `helm install` (or a deletion) to Ready. Measured here: about
/// 5 s with the image pulled; the bound leaves room for a loaded 2-core machine.
const POD_READY_BOUND: Duration = Duration::from_secs(90);
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
/// compile everything a second time), checked once per test process; the image is otherwise
/// the one users get.
async fn image() -> PathBuf {
    static IMAGE: OnceCell<PathBuf> = OnceCell::const_new();
    IMAGE
        .get_or_init(|| async {
            let started = Instant::now();
            let archive = build_image();
            check_image();
            eprintln!("image built and checked in {:?}", started.elapsed());
            archive
        })
        .await
        .clone()
}

fn build_image() -> PathBuf {
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
    let archive = root().join(format!("target/image/flashback-operator-{VERSION}.oci.tar"));
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

/// The emulator as a Pod behind a Service (demo/emulator-chart, from the operator's image in
/// the node's registry), reached from here through a forwarder to its ClusterIP.
struct Remote {
    _forward: Forward,
    token: String,
    control: EmulatorControl,
    api: FlashbackClient,
    buckets: Vec<String>,
}

impl Remote {
    async fn install(cluster: &NodeCluster) -> Self {
        let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
        let chart = root().join("demo/emulator-chart");
        cluster.helm(&[
            "install",
            "flashback-emulator",
            chart.to_str().unwrap(),
            "--namespace",
            EMULATOR_NAMESPACE,
            "--create-namespace",
            "--set",
            &format!("image={}/flashback-operator:{VERSION}", cluster.registry()),
            "--set",
            &format!("tokens={token}"),
            "--wait",
            "--timeout",
            "120s",
        ]);
        let service = cluster.cluster_ip(EMULATOR_NAMESPACE, "flashback-emulator");
        let forward = cluster.forward(&format!("{service}:8090"));
        let url = format!("http://{}", forward.address());
        let mut config = ClientConfig::new(url.parse().unwrap(), Token::new(token.clone()));
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
            control: EmulatorControl::new(&url).unwrap(),
            _forward: forward,
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

/// The cluster with a node, the image and the chart pushed to its registry, the emulator
/// installed behind its Service.
async fn node_with_emulator() -> (NodeCluster, Remote) {
    image().await;
    let cluster = NodeCluster::up().await;
    cluster.publish();
    let remote = Remote::install(&cluster).await;
    (cluster, remote)
}

/// `helm install|upgrade RELEASE oci://<registry>/charts/flashback-operator` with the chart's
/// default networking: the image from the registry, the emulator's Service as the API, two
/// replicas under one Lease; `extra` are more arguments (`--set`, `--set-json`, ...).
fn helm_operator(cluster: &NodeCluster, verb: &str, extra: &[&str]) {
    let chart = format!("oci://{}/charts/flashback-operator", cluster.registry());
    let mut args = vec![
        verb.to_owned(),
        "fb".to_owned(),
        chart,
        "--version".to_owned(),
        VERSION.to_owned(),
        "--plain-http".to_owned(),
        "--namespace".to_owned(),
        RELEASE_NAMESPACE.to_owned(),
    ];
    if verb == "install" {
        args.push("--create-namespace".to_owned());
    }
    let values = [
        format!("image.repository={}/flashback-operator", cluster.registry()),
        format!("apiUrl={EMULATOR_URL}"),
        "replicaCount=2".to_owned(),
        "resyncInterval=3s".to_owned(),
        // The hostile tenant's API, a server of this test exposed on the node IP.
        format!("allowedApiHosts[0]={}", cluster.node_ip()),
        "logLevel=info\\,flashback_operator=debug".to_owned(),
        format!("leaderElection.leaseName={LEASE}"),
    ];
    for value in values {
        args.extend(["--set".to_owned(), value]);
    }
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.helm(&args);
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// The operator's Pods that are not being deleted.
async fn operator_pods(kube: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(kube.clone(), RELEASE_NAMESPACE);
    pods.list(&ListParams::default().labels("app.kubernetes.io/instance=fb"))
        .await
        .expect("pods are listed")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until the Deployment has two available replicas and two Ready Pods none of which is
/// in `not_these` (Pods being replaced); returns them.
async fn wait_pods_ready(kube: &Client, not_these: &[String]) -> Vec<Pod> {
    let deployments: Api<Deployment> = Api::namespaced(kube.clone(), RELEASE_NAMESPACE);
    let until = Instant::now() + POD_READY_BOUND;
    loop {
        let available = deployments
            .get_opt("fb-flashback-operator")
            .await
            .unwrap()
            .and_then(|d| d.status?.available_replicas)
            .unwrap_or(0);
        let pods = operator_pods(kube).await;
        let ready: Vec<Pod> = pods
            .iter()
            .filter(|p| is_ready(p) && !not_these.iter().any(|n| n == name(p)))
            .cloned()
            .collect();
        if available >= 2 && ready.len() == 2 {
            return ready;
        }
        assert!(
            Instant::now() < until,
            "no two Ready operator Pods within {POD_READY_BOUND:?}; Pods: {:#?}",
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

async fn create_namespace(kube: &Client, name: &str) {
    Api::<Namespace>::all(kube.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .expect("the namespace is created");
}

async fn create_token_secret(kube: &Client, namespace: &str, data: serde_json::Value) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "flashback-token"},
        "stringData": data,
    }))
    .unwrap();
    Api::<Secret>::namespaced(kube.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the token Secret is created");
}

/// A Pod running tests/netprobe (pulled from the node's registry), Ready to `kubectl exec`.
async fn start_probe(
    cluster: &NodeCluster,
    namespace: &str,
    name: &str,
    labels: serde_json::Value,
) {
    let image = cluster.push_archive(&tool("netprobe-image.tar"), "flashback-netprobe:latest");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [{
                "name": "probe",
                "image": image,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
            "terminationGracePeriodSeconds": 1,
        },
    }))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(cluster.kube.clone(), namespace);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("the probe Pod is created");
    wait_until("the probe Pod is Ready", || async {
        pods.get_opt(name)
            .await
            .unwrap()
            .is_some_and(|p| is_ready(&p))
    })
    .await;
}

/// `netprobe get URL [-ca .. -token ..]` in the probe Pod: the HTTP status and the body.
fn probe_get(cluster: &NodeCluster, namespace: &str, pod: &str, args: &[&str]) -> (u16, String) {
    let mut command = vec!["/netprobe", "get"];
    command.extend_from_slice(args);
    let output = cluster.exec(namespace, pod, &command);
    assert!(
        output.status.success(),
        "netprobe get {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (status, body) = text.split_once('\n').unwrap_or((&text, ""));
    (status.parse().expect("a status code"), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_image_on_a_real_node_and_reconciles_through_it() {
    // 1. The image, pushed with the chart to the node's registry; the emulator as a Service.
    let started = Instant::now();
    let (cluster, remote) = node_with_emulator().await;
    eprintln!(
        "image checked, node cluster up, image and chart pushed, emulator Ready in {:?}",
        started.elapsed()
    );
    let kube = cluster.kube.clone();
    create_namespace(&kube, TEAM).await;
    create_token_secret(
        &kube,
        TEAM,
        json!({"token": remote.token, "apiUrl": EMULATOR_URL}),
    )
    .await;
    let repos: Api<FlashbackRepository> = Api::namespaced(kube.clone(), TEAM);

    // 2. helm install from oci://, with the chart's default networking: two Pods on the pod
    // network, Ready through /readyz, one of them the leader.
    let started = Instant::now();
    helm_operator(&cluster, "install", &STORY_VALUES);
    let pods = wait_pods_ready(&kube, &[]).await;
    eprintln!(
        "helm install to two Ready Pods: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for pod in &pods {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.host_network, None, "not on the host's network");
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("fb-flashback-operator")
        );
        let env = spec.containers[0].env.iter().flatten();
        assert!(
            !env.clone().any(|e| e.name.starts_with("KUBERNETES_")),
            "nothing forced into the environment: {:?}",
            env.map(|e| &e.name).collect::<Vec<_>>()
        );
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some(format!("{}/flashback-operator:{VERSION}", cluster.registry()).as_str()),
            "the image comes from the registry"
        );
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
        assert!(
            ip.is_some_and(|ip| ip.starts_with("10.244.0.")),
            "a pod IP: {ip:?}"
        );
    }
    wait_until("a Pod holds the Lease", || async {
        lease_holder(&kube).await.is_some()
    })
    .await;
    let holder = lease_holder(&kube).await.unwrap();
    let leader = pods
        .iter()
        .find(|p| holder.starts_with(name(p)))
        .unwrap_or_else(|| panic!("the Lease holder {holder} is one of the Pods"))
        .clone();
    let standby = pods
        .iter()
        .find(|p| name(p) != name(&leader))
        .unwrap()
        .clone();
    // The runtime enforces the chart's security context on the container's process.
    let pid = cluster.container_pid(&leader);
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

    // 3. Create, update, drift, delete, through the operator in the Pod, which reaches the
    // API server through the `kubernetes` Service and the emulator by its DNS name.
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

    // 4. The metrics Service, scraped by a Pod through its DNS name, answers from both
    // replicas: the leader (flashback_operator_leader 1) and the standby (0).
    start_probe(&cluster, TEAM, "scraper", json!({"app": "scraper"})).await;
    let metrics_url =
        "http://fb-flashback-operator-metrics.flashback-system.svc.cluster.local:8080/metrics";
    let build_info = format!(r#"flashback_operator_build_info{{version="{VERSION}"}} 1"#);
    let mut leader_lines = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (status, body) = probe_get(&cluster, TEAM, "scraper", &[metrics_url]);
        assert_eq!(status, 200);
        assert!(
            body.lines().any(|l| l == build_info),
            "{build_info} in:\n{body}"
        );
        leader_lines.extend(
            body.lines()
                .filter(|l| l.starts_with("flashback_operator_leader{"))
                .map(str::to_owned),
        );
        if leader_lines.len() == 2 {
            break;
        }
    }
    assert_eq!(
        leader_lines.into_iter().collect::<Vec<_>>(),
        [
            format!(r#"flashback_operator_leader{{lease="{LEASE}"}} 0"#),
            format!(r#"flashback_operator_leader{{lease="{LEASE}"}} 1"#)
        ],
        "the Service reaches both replicas"
    );

    // 5. The leader's Pod deleted while a tenant's API hangs under its reconciles: it releases
    // the Lease within the shutdown grace, and the other replica (or the Pod replacing the
    // deleted one, whichever asks first) takes it.
    let hanging = HostileServer::start(Behaviour::Hang).await;
    let hanging_port: u16 = hanging.url.rsplit(':').next().unwrap().parse().unwrap();
    let exposed = cluster.expose(hanging_port);
    create_namespace(&kube, HOSTILE).await;
    create_token_secret(
        &kube,
        HOSTILE,
        json!({"token": "whatever", "apiUrl": format!("http://{}", exposed.address())}),
    )
    .await;
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
    // The kubelet removes a deleted Pod's log: read it first.
    let mut logs = cluster.logs(&leader);
    assert!(
        logs.lines().any(|l| l.contains("became the leader")),
        "kubectl logs returns the operator's lines:\n{logs}"
    );
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
        name(&leader),
        "--wait=false",
    ]);
    let deleted = name(&leader).to_owned();
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
    let all_pods: Api<Pod> = Api::namespaced(kube.clone(), RELEASE_NAMESPACE);
    wait_until("the deleted Pod is gone", || async {
        all_pods.get_opt(&deleted).await.unwrap().is_none()
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
    // The Deployment has replaced the deleted Pod: two Ready replicas again.
    let replaced = wait_pods_ready(&kube, std::slice::from_ref(&deleted)).await;
    assert!(replaced.iter().any(|p| name(p) == name(&standby)));

    // 6. helm upgrade with a changed value rolls both Pods, which keep working.
    for pod in &replaced {
        logs += &cluster.logs(pod);
    }
    helm_operator(
        &cluster,
        "upgrade",
        &[&STORY_VALUES[..], &["--set", "resyncInterval=4s"]].concat(),
    );
    let old: Vec<String> = replaced.iter().map(|p| name(p).to_owned()).collect();
    let rolled = wait_pods_ready(&kube, &old).await;
    for pod in &rolled {
        let env = &pod.spec.as_ref().unwrap().containers[0].env;
        assert!(
            env.iter()
                .flatten()
                .any(|e| e.name == "FLASHBACK_RESYNC_INTERVAL" && e.value.as_deref() == Some("4s")),
            "the new Pod has the new value"
        );
    }
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

    // 7. No token in any operator Pod's log (kubectl logs): neither the Flashback token nor
    // the Pod's own.
    for pod in &rolled {
        logs += &cluster.logs(pod);
    }
    assert!(
        !logs.contains(&remote.token),
        "a Flashback token in the logs"
    );
    assert!(
        !logs.contains(service_account_token.trim()),
        "the ServiceAccount token in the logs"
    );

    // helm uninstall leaves no operator Pod and keeps the CRD (and the objects).
    cluster.helm(&["uninstall", "fb", "--namespace", RELEASE_NAMESPACE]);
    wait_until("the operator Pods are gone", || async {
        operator_pods(&kube).await.is_empty()
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
    drop(exposed);
    drop(cluster);
}

/// Cluster DNS and Services from inside a Pod: the API server's and the emulator's names
/// resolve to their ClusterIPs, and both answer there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_resolves_and_reaches_the_api_server_and_the_emulator_by_name() {
    let (cluster, remote) = node_with_emulator().await;
    start_probe(&cluster, "default", "probe", json!({"app": "probe"})).await;

    let emulator_ip = cluster.cluster_ip(EMULATOR_NAMESPACE, "flashback-emulator");
    let resolved = cluster.exec(
        "default",
        "probe",
        &[
            "/netprobe",
            "resolve",
            "kubernetes.default.svc.cluster.local",
            "flashback-emulator.flashback-emulator.svc.cluster.local",
            // The search path the kubelet writes: a Service's short names.
            "kubernetes.default",
            "flashback-emulator.flashback-emulator",
        ],
    );
    assert!(
        resolved.status.success(),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    assert_eq!(
        String::from_utf8(resolved.stdout).unwrap(),
        format!(
            "kubernetes.default.svc.cluster.local 10.0.0.1\n\
             flashback-emulator.flashback-emulator.svc.cluster.local {emulator_ip}\n\
             kubernetes.default 10.0.0.1\n\
             flashback-emulator.flashback-emulator {emulator_ip}\n"
        )
    );

    // The API server, verified with the cluster's CA and authenticated as the Pod's
    // ServiceAccount, as in-cluster config does.
    let secrets = "/var/run/secrets/kubernetes.io/serviceaccount";
    let (status, body) = probe_get(
        &cluster,
        "default",
        "probe",
        &[
            "-ca",
            &format!("{secrets}/ca.crt"),
            "-token",
            &format!("{secrets}/token"),
            "https://kubernetes.default.svc.cluster.local/version",
        ],
    );
    assert_eq!(status, 200, "{body}");
    let version: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(version["gitVersion"], "v1.36.3");

    // The emulator through its Service: its health route, and its API refusing a call that
    // carries no token.
    for (route, expected) in [("/_emulator/health", 200), ("/bucket", 401)] {
        let (status, body) = probe_get(
            &cluster,
            "default",
            "probe",
            &[&format!("{EMULATOR_URL}{route}")],
        );
        assert_eq!(status, expected, "{route}: {body}");
    }
    assert_eq!(remote.buckets.len(), 3);

    // `kubectl port-forward` to the Service (API server, kubelet, the Pod's network), as the
    // README shows for the metrics and the emulator.
    let mut forward = cluster
        .command("kubectl")
        .args([
            "-n",
            EMULATOR_NAMESPACE,
            "port-forward",
            "svc/flashback-emulator",
            ":8090",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl port-forward starts");
    let mut output = std::io::BufReader::new(forward.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut output, &mut line)
        .expect("kubectl port-forward says where it listens");
    // It goes on writing a line per connection: keep reading, or it dies on a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
    let port = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("kubectl port-forward printed {line:?}"));
    let health = reqwest::get(format!("http://127.0.0.1:{port}/_emulator/health")).await;
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(health.expect("the forwarded port answers").status(), 200);
    drop(cluster);
}

/// `down.sh --node` (what `make demo-down` and every node test end with) leaves no process,
/// mount or network namespace (and so no veth or bridge, which live and go with them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_down_script_leaves_nothing_behind() {
    let cluster = NodeCluster::up().await;
    start_probe(&cluster, "default", "probe", json!({"app": "probe"})).await;
    let netns = cluster.env["NODE_NETNS"].clone();
    let run = root().join("target/control-plane/node/run");
    let pids: Vec<(String, u32)> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let name = file.strip_suffix(".pid")?.to_owned();
            let pid = std::fs::read_to_string(entry.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((name, pid))
        })
        .collect();
    let mut names: Vec<&str> = pids.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "api-forward",
            "containerd",
            "coredns",
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-proxy",
            "kube-router",
            "kube-scheduler",
            "kubelet",
            "registry",
            "registry-forward",
        ],
        "every process of the node's cluster has a pid file"
    );
    assert!(namespaces().contains(&netns));
    // The node's namespace and every Pod's, by inode: the veths and bridges live in them, and
    // go when nothing (a process, a mount) holds them any more.
    let mut held = vec![namespace_inode(&format!("/run/netns/{netns}"))];
    held.extend(
        mounts_under(&run)
            .iter()
            .filter(|path| path.contains("/netns/"))
            .map(|path| namespace_inode(path)),
    );
    assert!(
        held.len() >= 2,
        "the node's and the probe Pod's namespaces: {held:?}"
    );
    let turn = cluster.down();

    for (name, pid) in &pids {
        // A process that has exited but is not yet reaped by init is a zombie: gone.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'));
        assert!(!running, "{name} (pid {pid}) still runs: {state}");
    }
    let shims = run_bounded(
        Command::new("pgrep").args(["-c", "-f", "containerd-shim"]),
        DEADLINE,
    );
    assert_eq!(
        String::from_utf8_lossy(&shims.stdout).trim(),
        "0",
        "no containerd shim"
    );
    assert!(
        !namespaces().contains(&netns),
        "the network namespace is gone"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let run = run.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&run)),
        "no mount under {run}"
    );
    for inode in &held {
        let name = format!("net:[{inode}]");
        let holders: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| {
                std::fs::read_link(entry.path().join("ns/net"))
                    .is_ok_and(|link| link.to_string_lossy() == name)
            })
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            holders.is_empty(),
            "{name} (and its veths) held by {holders:?}"
        );
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mountinfo.contains(&name),
            "{name} (and its veths) still mounted"
        );
    }
    drop(turn);
}

fn namespaces() -> String {
    run_ok(Command::new("ip").args(["netns", "list"]), DEADLINE)
}

/// The inode of the network namespace a path (a bind mount of one) names.
fn namespace_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .ino()
}

/// Mount points under `dir`.
fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let dir = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|path| path.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

/// The chart's NetworkPolicy on a node that enforces it (kube-router's policy controller):
/// the operator still reconciles, a Pod of a namespace `networkPolicy.metrics.from` names
/// scrapes its metrics, a Pod of another namespace cannot, and can once the policy is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_network_policy_keeps_the_operator_working_and_others_from_its_metrics() {
    let (cluster, remote) = node_with_emulator().await;
    let kube = cluster.kube.clone();
    create_namespace(&kube, TEAM).await;
    create_token_secret(&kube, TEAM, json!({"token": remote.token})).await;
    create_namespace(&kube, "monitoring").await;
    start_probe(&cluster, "monitoring", "scraper", json!({"app": "scraper"})).await;
    start_probe(&cluster, TEAM, "outsider", json!({"app": "outsider"})).await;

    // The cluster DNS and the API server are the node IP here (CoreDNS is a node process, and
    // the API server listens on a port of its own): the policy says so.
    let node = format!("{}/32", cluster.node_ip());
    let dns = format!(r#"networkPolicy.dns.to=[{{"ipBlock":{{"cidr":"{node}"}}}}]"#);
    let api_ports = format!(
        "networkPolicy.apiServer.ports=[443,{}]",
        cluster.api_server_port()
    );
    let api_cidrs = format!(r#"networkPolicy.apiServer.cidrs=["{node}"]"#);
    helm_operator(
        &cluster,
        "install",
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set-json",
            r#"networkPolicy.metrics.from=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]"#,
            "--set-json",
            &dns,
            "--set-json",
            &api_ports,
            "--set-json",
            &api_cidrs,
        ],
    );
    wait_pods_ready(&kube, &[]).await;
    let policy = cluster.kubectl(&[
        "-n",
        RELEASE_NAMESPACE,
        "get",
        "networkpolicy",
        "fb-flashback-operator",
        "-o",
        "jsonpath={.spec.policyTypes}",
    ]);
    assert_eq!(policy, r#"["Ingress","Egress"]"#);

    // Under the policy the operator reaches the API server, the DNS and the emulator.
    let repos: Api<FlashbackRepository> = Api::namespaced(kube.clone(), TEAM);
    repos
        .create(&PostParams::default(), &mirror("media", &remote, 0, 1))
        .await
        .expect("the object is accepted");
    wait_ready(&repos, "media").await;
    assert_eq!(remote.repos().await.len(), 1);

    let metrics =
        "http://fb-flashback-operator-metrics.flashback-system.svc.cluster.local:8080/metrics";
    let (status, _) = probe_get(&cluster, "monitoring", "scraper", &[metrics]);
    assert_eq!(status, 200, "a Pod of metrics.from scrapes");
    let refused = cluster.exec(TEAM, "outsider", &["/netprobe", "get", metrics]);
    assert!(
        !refused.status.success(),
        "a Pod outside metrics.from reached the metrics port: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    eprintln!(
        "outside metrics.from: {}",
        String::from_utf8_lossy(&refused.stderr).trim()
    );

    // It was the policy: without it the same Pod gets through.
    helm_operator(
        &cluster,
        "upgrade",
        &["--set", "networkPolicy.enabled=false"],
    );
    wait_until("the outsider reaches the metrics port", || async {
        cluster
            .exec(TEAM, "outsider", &["/netprobe", "get", metrics])
            .status
            .success()
    })
    .await;
    drop(cluster);
}

/// Flux's namespace on the cluster with a node.
const FLUX_NAMESPACE: &str = "flux-system";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_installs_the_chart_from_the_registry_and_its_pods_reconcile() {
    use crate::support::flux::{self, Flux, HELM, KUSTOMIZE};

    let (cluster, remote) = node_with_emulator().await;
    let kube = cluster.kube.clone();
    create_namespace(&kube, FLUX_NAMESPACE).await;
    let flux = Flux::start_on(
        &kube,
        &cluster.kubeconfig,
        FLUX_NAMESPACE,
        &[KUSTOMIZE, HELM],
    )
    .await;
    let git = crate::support::git::GitServer::start();
    let revision = git.commit_directory(&root().join("crds"), "flashback/crds", "the CRDs");
    flux::apply(
        &kube,
        FLUX_NAMESPACE,
        &flux::gitrepositories(),
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "platform"},
            "spec": {"interval": "1m", "url": git.url(), "ref": {"branch": "main"}},
        }),
    )
    .await;

    // integrations/flux/operator.yaml as shipped, with this cluster's registry (plain HTTP
    // here, hence `insecure`) and the values every node test gives the chart.
    let shipped = std::fs::read_to_string(root().join("integrations/flux/operator.yaml"))
        .expect("the shipped file");
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&shipped).expect("YAML");
    let started = Instant::now();
    for mut document in documents {
        let kind = document["kind"].as_str().unwrap().to_owned();
        let spec = &mut document["spec"];
        let resource = match kind.as_str() {
            "Kustomization" => flux::kustomizations(),
            "HelmRepository" => {
                spec["url"] = json!(format!("oci://{}/charts", cluster.registry()));
                spec["insecure"] = json!(true);
                flux::helmrepositories()
            }
            "HelmRelease" => {
                assert_eq!(
                    spec["chart"]["spec"]["version"], VERSION,
                    "operator.yaml names this version of the chart"
                );
                assert_eq!(spec["targetNamespace"], RELEASE_NAMESPACE);
                spec["releaseName"] = json!("fb");
                let values = &mut spec["values"];
                values["image"]["repository"] =
                    json!(format!("{}/flashback-operator", cluster.registry()));
                values["apiUrl"] = json!(EMULATOR_URL);
                values["replicaCount"] = json!(2);
                values["leaderElection"] = json!({"leaseName": LEASE});
                flux::helmreleases()
            }
            kind => panic!("unexpected {kind} in operator.yaml"),
        };
        flux::apply(&kube, FLUX_NAMESPACE, &resource, document).await;
    }

    // The CRDs are Flux's: created by the Kustomization, labelled with it.
    let flux_api =
        |resource| Api::<DynamicObject>::namespaced_with(kube.clone(), FLUX_NAMESPACE, &resource);
    crate::support::wait::until_within(
        POD_READY_BOUND,
        &flux_api(flux::kustomizations()),
        "flashback-crds",
        "Ready",
        |k| {
            flux::ready(k).is_some_and(|(status, _, _)| status == "True")
                && flux::applied_revision(k).ends_with(&revision)
        },
    )
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(kube.clone());
    for (_, crd) in flashback_operator::crd::crds() {
        let name = crd.metadata.name.clone().unwrap();
        let server = crds.get(&name).await.unwrap();
        let labels = server.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get("kustomize.toolkit.fluxcd.io/name")
                .map(String::as_str),
            Some("flashback-crds"),
            "{name}"
        );
    }

    // The release, pulled from the registry, is Ready once its Deployment is: helm-controller
    // waits for the Pods (pulled from the registry too) to be Ready.
    let released = crate::support::wait::until_within(
        POD_READY_BOUND,
        &flux_api(flux::helmreleases()),
        "flashback-operator",
        "Ready",
        |r| flux::ready(r).is_some_and(|(status, _, _)| status == "True"),
    )
    .await;
    // Read as soon as the release is Ready: its Pods already are (Helm's wait, which
    // helm-controller runs, counts them), not only later.
    let deployment = Api::<Deployment>::namespaced(kube.clone(), RELEASE_NAMESPACE)
        .get("fb-flashback-operator")
        .await
        .expect("the release's Deployment");
    assert_eq!(
        deployment.status.and_then(|s| s.ready_replicas),
        Some(2),
        "the release is Ready before its Pods"
    );
    let (_, reason, message) = flux::ready(&released).unwrap();
    assert_eq!(reason, "InstallSucceeded", "{message}");
    assert!(
        message.starts_with(&format!("Helm install succeeded for release {RELEASE_NAMESPACE}/fb.v1 with chart flashback-operator@{VERSION}")),
        "{message}"
    );
    eprintln!(
        "Flux: CRDs applied and the chart installed from the registry, Pods Ready, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pods = wait_pods_ready(&kube, &[]).await;
    for pod in &pods {
        assert_eq!(
            pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some(format!("{}/flashback-operator:{VERSION}", cluster.registry()).as_str()),
        );
    }
    // Flux keeps the release's record in the HelmRelease's namespace (its storageNamespace).
    let manifest = cluster.helm(&["get", "manifest", "fb", "--namespace", FLUX_NAMESPACE]);
    let kinds: std::collections::BTreeSet<String> =
        serde_saphyr::from_multiple::<serde_json::Value>(&manifest)
            .expect("the release's manifest")
            .iter()
            .filter_map(|doc| doc["kind"].as_str().map(str::to_owned))
            .collect();
    assert!(kinds.contains("Deployment"), "{kinds:?}");
    assert!(!kinds.contains("CustomResourceDefinition"), "{kinds:?}");

    // The operator Flux installed reconciles: a repository is Ready, one remote repository.
    create_namespace(&kube, TEAM).await;
    create_token_secret(&kube, TEAM, json!({"token": remote.token})).await;
    let repos: Api<FlashbackRepository> = Api::namespaced(kube.clone(), TEAM);
    repos
        .create(&PostParams::default(), &mirror("from-flux", &remote, 0, 1))
        .await
        .expect("the repository is created");
    let ready = wait_ready(&repos, "from-flux").await;
    let id = ready.status.unwrap().repo_id.expect("a repository id");
    let remote_repos = remote
        .api
        .list_repos(&RepoFilter::workspace(WORKSPACE))
        .await
        .unwrap();
    assert_eq!(
        remote_repos
            .iter()
            .filter(|r| r.name == "from-flux")
            .count(),
        1,
        "{remote_repos:?}"
    );
    assert!(remote_repos.iter().any(|r| r.id == id));
    drop(flux);
    drop(cluster);
}

//! Argo CD's application-controller, repo-server and redis (`tests/control-plane/build.sh
//! argocd` builds the first two from the Go module proxy; redis is Debian's), run as processes
//! against the local control plane, each test with its own. The controller's metrics listener
//! is bound to every interface and no flag changes that, so the three run in a network
//! namespace of their own (`unshare --net`, gone with its last process); forwarders carry the
//! API server's and the Git server's ports into it at the same numbers, so the kubeconfig and
//! the repository's URL work unchanged inside.
//!
//! Argo CD runs as its own development setup runs it outside a cluster
//! (`ARGOCD_FAKE_IN_CLUSTER=true` with a kubeconfig): the in-cluster destination
//! `https://kubernetes.default.svc` is the kubeconfig's API server. Its namespace holds what an
//! installation would: the CRDs, `argocd-cm` (patched by the test with
//! `integrations/argocd/argocd-cm.yaml`), `argocd-secret` and the AppProject `default`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::cluster::kubeconfig_path;
use super::node::{Forward, tool};

/// The repo-server's gRPC port inside the namespace.
const REPO_SERVER_PORT: u16 = 8081;
/// redis's port inside the namespace.
const REDIS_PORT: u16 = 6379;

/// The controller's name, for [`ArgoCd::log`].
pub const APPLICATION_CONTROLLER: &str = "application-controller";

/// How often the controller compares every Application with Git (`--app-resync`, seconds).
pub const RESYNC_SECONDS: u64 = 5;

/// Argo CD in a namespace of the cluster (its Applications live there). Every process is
/// killed when dropped, and the network namespace goes with them.
pub struct ArgoCd {
    pub namespace: String,
    // Dropped in order: the components, the forwarders, then the process holding the network
    // namespace.
    components: Vec<Component>,
    _forwards: Vec<Forward>,
    /// From a free port on this machine's loopback to redis in the namespace.
    redis: Forward,
    holder: Component,
}

struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Argo CD's Application.
pub fn applications() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

fn appprojects() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AppProject"),
        "appprojects",
    )
}

impl ArgoCd {
    /// Applies Argo CD's CRDs, writes its settings into `namespace` (`argocd-cm` as Argo CD's
    /// own install leaves it, then patched with `integrations/argocd/argocd-cm.yaml` exactly
    /// as its README says) and starts redis, the repo-server
    /// and the application-controller. `git_port` is the Git server's port on 127.0.0.1.
    pub async fn start(kube: &Client, namespace: &str, git_port: u16) -> Self {
        super::scene::apply_crds(kube, crds()).await;
        install_settings(kube, namespace).await;
        // The project's health checks, as integrations/argocd/README.md tells users to add them.
        super::node::run_ok(
            Command::new(tool("kubectl"))
                .args([
                    "-n",
                    namespace,
                    "patch",
                    "configmap",
                    "argocd-cm",
                    "--patch-file",
                ])
                .arg(super::node::root().join("integrations/argocd/argocd-cm.yaml"))
                .env("KUBECONFIG", kubeconfig_path()),
            Duration::from_secs(30),
        );

        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("argocd")
            .join(format!("{namespace}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("Argo CD's directory");
        let holder = Component::holder(&dir);
        let netns = format!("/proc/{}/ns/net", holder.child.id());
        let api_port = api_server_port();
        let forwards = [api_port, git_port]
            .into_iter()
            .map(|port| {
                let address = format!("127.0.0.1:{port}");
                Forward::start(&["forward.py", "--reverse", &netns, &address, &address])
            })
            .collect();
        let redis = format!("127.0.0.1:{REDIS_PORT}");
        let redis_forward = Forward::start(&["forward.py", &netns, "127.0.0.1:0", &redis]);
        let components = vec![
            Component::inside(
                "redis",
                &netns,
                &dir,
                Command::new(tool("redis-server")).args([
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    &REDIS_PORT.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]),
            ),
            Component::inside(
                "repo-server",
                &netns,
                &dir,
                Command::new(tool("argocd")).args([
                    "repo-server",
                    "--address=127.0.0.1",
                    &format!("--port={REPO_SERVER_PORT}"),
                    "--metrics-address=127.0.0.1",
                    "--disable-tls",
                    &format!("--redis={redis}"),
                    "--loglevel=debug",
                ]),
            ),
            Component::inside(
                APPLICATION_CONTROLLER,
                &netns,
                &dir,
                Command::new(tool("argocd")).args([
                    "application-controller",
                    &format!("--namespace={namespace}"),
                    &format!("--repo-server=127.0.0.1:{REPO_SERVER_PORT}"),
                    "--repo-server-plaintext",
                    &format!("--redis={redis}"),
                    &format!("--app-resync={RESYNC_SECONDS}"),
                    // No random delay on top (60 s by default): a comparison every period.
                    "--app-resync-jitter=0",
                    "--status-processors=2",
                    "--operation-processors=2",
                    "--loglevel=debug",
                ]),
            ),
        ];
        Self {
            namespace: namespace.to_owned(),
            components,
            _forwards: forwards,
            redis: redis_forward,
            holder,
        }
    }

    pub fn api(&self, kube: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(kube.clone(), &self.namespace, &applications())
    }

    /// The health Argo CD gives each resource of the Application `app`, as `argocd app get`
    /// and its UI show it: "Kind/name" → (status, message). Argo CD 3 keeps resource health in
    /// the resource tree the controller writes to redis (JSON, gzipped, split in shards of 100
    /// nodes), not in the Application, unless `--persist-resource-health` says otherwise.
    pub async fn resource_health(&self, app: &str) -> BTreeMap<String, (String, String)> {
        let port = self
            .redis
            .address()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse::<u16>().ok())
            .expect("the redis forwarder's port");
        let pattern = format!("app|resources-tree|{app}|*");
        tokio::task::spawn_blocking(move || {
            let mut redis = Redis::connect(port);
            let mut health = BTreeMap::new();
            for key in redis.keys(&pattern) {
                let Some(value) = redis.get(&key) else {
                    continue;
                };
                let json = if key.ends_with(".gz") {
                    gunzip(&value)
                } else {
                    value
                };
                let tree: serde_json::Value =
                    serde_json::from_slice(&json).expect("the resource tree is JSON");
                for node in tree["nodes"].as_array().into_iter().flatten() {
                    let text =
                        |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
                    if node["health"].is_object() {
                        health.insert(
                            format!("{}/{}", text(&node["kind"]), text(&node["name"])),
                            (
                                text(&node["health"]["status"]),
                                text(&node["health"]["message"]),
                            ),
                        );
                    }
                }
            }
            health
        })
        .await
        .expect("reading the resource tree")
    }

    /// Everything the component `name` has logged so far.
    pub fn log(&self, name: &str) -> String {
        self.components
            .iter()
            .find(|c| c.name == name)
            .map(|c| std::fs::read_to_string(&c.log).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// What an Argo CD installation keeps in its namespace, as its install manifests create it:
/// `argocd-cm` (labelled; only its `installationID` set), `argocd-secret` with the server's
/// signing key, and the AppProject `default` allowing everything (argocd-server would create
/// that one).
async fn install_settings(kube: &Client, namespace: &str) {
    let part_of =
        json!({"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"});
    // Each test's Argo CD is an installation of its own on one cluster, which Argo CD tells
    // apart by `installationID`: without it, every instance takes the objects another applied
    // for an Application of the same name as its own, and prunes them.
    let configmap: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "argocd-cm", "labels": part_of},
        "data": {"installationID": namespace},
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(kube.clone(), namespace)
        .create(&PostParams::default(), &configmap)
        .await
        .expect("argocd-cm is created");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "argocd-secret",
            "labels": {"app.kubernetes.io/name": "argocd-secret", "app.kubernetes.io/part-of": "argocd"},
        },
        "stringData": {"server.secretkey": uuid::Uuid::new_v4().simple().to_string()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(kube.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("argocd-secret is created");
    let project = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "default"},
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    });
    Api::<DynamicObject>::namespaced_with(kube.clone(), namespace, &appprojects())
        .patch(
            "default",
            &PatchParams::apply("e2e"),
            &Patch::Apply(&project),
        )
        .await
        .expect("the AppProject default is applied");
}

impl Component {
    /// A process that only holds a new network namespace with its loopback up; prints a line
    /// once it is.
    fn holder(dir: &Path) -> Self {
        let log = dir.join("netns.log");
        let mut child = Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && echo up && exec sleep infinity",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("unshare starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the namespace holder prints");
        assert_eq!(
            line.trim(),
            "up",
            "the network namespace: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Self {
            name: "netns",
            child,
            log,
        }
    }

    /// `command` run in the network namespace `netns`, logging to DIR/NAME.log.
    fn inside(name: &'static str, netns: &str, dir: &Path, command: &mut Command) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let mut nsenter = Command::new("nsenter");
        nsenter
            .arg(format!("--net={netns}"))
            .arg("--")
            .arg(command.get_program())
            .args(command.get_args())
            // The repo-server runs `git` and `helm` from here.
            .env("PATH", path_with_tools())
            .env("KUBECONFIG", kubeconfig_path())
            .env("ARGOCD_FAKE_IN_CLUSTER", "true")
            .env("ARGOCD_GPG_ENABLED", "false")
            .env("HOME", dir)
            // The repo-server's clones and its askpass socket (under /tmp by default, one path
            // for every installation) stay in the test's directory.
            .env("TMPDIR", dir)
            .env("ARGOCD_ASK_PASS_SOCK", dir.join("askpass.sock"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out);
        let child = nsenter.spawn().unwrap_or_else(|e| {
            panic!("{name} starts ({e}); run tests/control-plane/build.sh argocd (make test does)")
        });
        Self { name, child, log }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && self.name != "netns" {
            super::print_log_tail(&format!("Argo CD {}", self.name), &self.log);
        }
    }
}

/// Enough of redis' protocol (RESP) for KEYS and GET.
struct Redis {
    reader: BufReader<TcpStream>,
}

impl Redis {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("redis answers");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        Self {
            reader: BufReader::new(stream),
        }
    }

    fn command(&mut self, args: &[&str]) {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .expect("a request to redis");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("redis answers");
        line.trim_end().to_owned()
    }

    /// A bulk string ($N), or None for the null one ($-1).
    fn bulk(&mut self) -> Option<Vec<u8>> {
        let header = self.line();
        let length: i64 = header
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("redis answered {header:?}"));
        let length = usize::try_from(length).ok()?;
        let mut data = vec![0; length + 2];
        self.reader
            .read_exact(&mut data)
            .expect("redis' bulk string");
        data.truncate(length);
        Some(data)
    }

    fn keys(&mut self, pattern: &str) -> Vec<String> {
        self.command(&["KEYS", pattern]);
        let header = self.line();
        let count: usize = header
            .strip_prefix('*')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("redis answered {header:?}"));
        (0..count)
            .filter_map(|_| self.bulk())
            .map(|key| String::from_utf8(key).expect("a UTF-8 key"))
            .collect()
    }

    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.command(&["GET", key]);
        self.bulk()
    }
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip starts");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    // Written beside the reading below, so neither side waits on a full pipe.
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().expect("gzip ends");
    writer.join().unwrap().expect("gzip reads");
    assert!(output.status.success(), "gzip -dc failed");
    output.stdout
}

/// The machine's PATH with the control plane's tools (helm) in front.
fn path_with_tools() -> std::ffi::OsString {
    let mut paths = vec![tool("")];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("PATH")
}

/// The port of the local API server, from the kubeconfig's server URL.
fn api_server_port() -> u16 {
    let kubeconfig = std::fs::read_to_string(kubeconfig_path()).expect("the kubeconfig");
    kubeconfig
        .lines()
        .find_map(|line| line.trim().strip_prefix("server: https://127.0.0.1:"))
        .and_then(|port| port.trim().parse().ok())
        .expect("the kubeconfig names https://127.0.0.1:PORT")
}

/// Argo CD's Application and AppProject CRDs, from its module (linked by `build.sh argocd`).
fn crds() -> Vec<CustomResourceDefinition> {
    let dir = tool("argocd-crds");
    ["application-crd.yaml", "appproject-crd.yaml"]
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| {
                panic!(
                    "{} ({e}): run tests/control-plane/build.sh argocd (make test does)",
                    dir.display()
                )
            });
            serde_saphyr::from_str(&text).expect("a CRD")
        })
        .collect()
}

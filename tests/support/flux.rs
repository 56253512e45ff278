//! Flux's controllers (`tests/control-plane/build.sh flux` builds them from the Go module
//! proxy) run as processes against the local control plane, each test with its own, watching
//! only the test's namespace: source-controller (its artifact server on loopback),
//! kustomize-controller and, when asked, helm-controller. Every listener is on 127.0.0.1.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use super::cluster::kubeconfig_path;
use super::node::tool;

/// Flux's controllers, by the name of their binary.
pub const SOURCE: &str = "source-controller";
pub const KUSTOMIZE: &str = "kustomize-controller";
pub const HELM: &str = "helm-controller";

/// Flux's controllers watching one namespace. Each is killed when dropped.
pub struct Flux {
    controllers: Vec<Controller>,
}

struct Controller {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Flux {
    /// Applies the CRDs of `controllers` (source-controller's always) and starts them against
    /// the local control plane, watching `namespace` only.
    pub async fn start(kube: &Client, namespace: &str, controllers: &[&'static str]) -> Self {
        Self::start_on(kube, &kubeconfig_path(), namespace, controllers).await
    }

    /// [`Flux::start`] against the cluster of `kube` and `kubeconfig` (the cluster with a node).
    pub async fn start_on(
        kube: &Client,
        kubeconfig: &std::path::Path,
        namespace: &str,
        controllers: &[&'static str],
    ) -> Self {
        let mut names = vec![SOURCE];
        names.extend(controllers.iter().filter(|name| **name != SOURCE));
        for name in &names {
            super::scene::apply_crds(kube, crds(name)).await;
        }
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("flux")
            .join(format!("{namespace}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("storage")).expect("Flux's directory");
        let storage = format!("127.0.0.1:{}", free_port());
        let controllers = names
            .into_iter()
            .map(|name| {
                let mut flags = vec![
                    "--watch-all-namespaces=false".to_owned(),
                    "--metrics-addr=127.0.0.1:0".to_owned(),
                    format!("--health-addr=127.0.0.1:{}", free_port()),
                    "--log-level=debug".to_owned(),
                    // A Kustomization or HelmRelease waiting for another checks again soon.
                    "--requeue-dependency=2s".to_owned(),
                ];
                if name == SOURCE {
                    flags.extend([
                        format!("--storage-path={}", dir.join("storage").display()),
                        format!("--storage-addr={storage}"),
                        format!("--storage-adv-addr={storage}"),
                    ]);
                }
                Controller::start(name, kubeconfig, namespace, &dir, &flags)
            })
            .collect();
        Self { controllers }
    }

    /// Everything the controller `name` has logged so far.
    pub fn log(&self, name: &str) -> String {
        self.controllers
            .iter()
            .find(|c| c.name == name)
            .map(|c| std::fs::read_to_string(&c.log).unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Controller {
    fn start(
        name: &'static str,
        kubeconfig: &std::path::Path,
        namespace: &str,
        dir: &std::path::Path,
        flags: &[String],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let child = Command::new(tool(name))
            .args(flags)
            .env("KUBECONFIG", kubeconfig)
            .env("RUNTIME_NAMESPACE", namespace)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{name} starts ({e}); run tests/control-plane/build.sh flux (make test does)"
                )
            });
        Self { name, child, log }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            super::print_log_tail(self.name, &self.log);
        }
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn gitrepositories() -> ApiResource {
    resource(
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    )
}

pub fn kustomizations() -> ApiResource {
    resource(
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "kustomizations",
    )
}

pub fn helmrepositories() -> ApiResource {
    resource(
        "source.toolkit.fluxcd.io",
        "v1",
        "HelmRepository",
        "helmrepositories",
    )
}

pub fn helmreleases() -> ApiResource {
    resource(
        "helm.toolkit.fluxcd.io",
        "v2",
        "HelmRelease",
        "helmreleases",
    )
}

/// The Ready condition of a Flux object: status, reason, message.
pub fn ready(object: &DynamicObject) -> Option<(String, String, String)> {
    condition(object, "Ready")
}

pub fn condition(object: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
            (text("status"), text("reason"), text("message"))
        })
}

pub fn applied_revision(object: &DynamicObject) -> &str {
    object.data["status"]["lastAppliedRevision"]
        .as_str()
        .unwrap_or_default()
}

/// Applies `object` in `namespace`, as `kubectl apply --server-side` would.
pub async fn apply(kube: &Client, namespace: &str, resource: &ApiResource, object: Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    Api::<DynamicObject>::namespaced_with(kube.clone(), namespace, resource)
        .patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("{name} is applied: {e}"));
}

/// The CRDs of the controller `name`, from its module (linked by `build.sh flux`).
fn crds(name: &str) -> Vec<CustomResourceDefinition> {
    let dir = tool(&format!("{name}-crds"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{} ({e}): run tests/control-plane/build.sh flux (make test does)",
                dir.display()
            )
        })
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).expect("CRD file");
            serde_saphyr::from_str(&text).expect("a CRD")
        })
        .collect()
}

/// A port free on 127.0.0.1 a moment ago, for a server whose address must be known before it
/// starts (source-controller advertises its artifact URLs with it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

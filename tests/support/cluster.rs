//! The local control plane (`tests/control-plane/`): a kube client for it and per-test namespaces.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// The admin kubeconfig written by `tests/control-plane/up.sh`, or `$KUBECONFIG` when the
/// tests run under `tests/control-plane/with.sh`.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/control-plane/kubeconfig")
        })
}

/// A kube client for the local control plane. Panics with the command to run when the
/// control plane is not up: these tests never skip themselves.
pub async fn kube_client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "no control plane kubeconfig at {} ({e}); run these tests with `make test` \
             or start one with tests/control-plane/up.sh",
            path.display()
        )
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is valid");
    Client::try_from(config).expect("kube client builds")
}

/// Creates a namespace with a unique name for one test, so tests never see each other's
/// objects. Namespaces are not deleted: without a controller-manager they never finish
/// terminating, and the control plane's state is thrown away by `down.sh`.
pub async fn test_namespace(client: &Client, prefix: &str) -> String {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace is created");
    name
}

/// How long a test waits for something the control plane or the operator should do.
pub const DEADLINE: Duration = Duration::from_secs(30);

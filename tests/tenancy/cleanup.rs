//! What a tenant leaves behind does not stay: deleting a namespace releases objects whose
//! credentials went first, and what deleted objects and unused credentials leave in the
//! operator (metrics series among it) is forgotten.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::DeleteParams;

use super::{backup, put_secret, using};
use crate::support::cluster::DEADLINE;
use crate::support::scene::{SECRET, Scene};

/// Kubernetes' own namespace controller (kube-controller-manager running only that one,
/// built with the node's components), against the test control plane: it deletes what a
/// terminating namespace holds, in its own order, and then the namespace. Killed when dropped.
struct NamespaceController(std::process::Child);

impl NamespaceController {
    fn start() -> Self {
        let kubeconfig = crate::support::cluster::kubeconfig_path();
        let binary = kubeconfig
            .parent()
            .expect("the control plane's directory")
            .join("bin/kube-controller-manager");
        let log = std::fs::File::create(
            std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("namespace-controller-{}.log", std::process::id())),
        )
        .expect("log file");
        let child = std::process::Command::new(&binary)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args([
                "--controllers=namespace",
                "--leader-elect=false",
                "--secure-port=0",
            ])
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} does not start ({e}): make control-plane-node builds it",
                    binary.display()
                )
            });
        Self(child)
    }
}

impl Drop for NamespaceController {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn deleting_a_namespace_releases_objects_whose_credentials_went_first() {
    let mut scene = Scene::with_operator("nsdelete").await;
    scene.create(&scene.mirror("media")).await;
    let id = scene
        .wait_ready("media")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();

    // `kubectl delete namespace`: the namespace terminates, and its contents go in no order
    // the operator can count on; here the Secret before the object, as the namespace
    // controller often does.
    Api::<Namespace>::all(scene.kube.clone())
        .delete(&scene.namespace, &DeleteParams::default())
        .await
        .unwrap();
    Api::<Secret>::namespaced(scene.kube.clone(), &scene.namespace)
        .delete(SECRET, &DeleteParams::default())
        .await
        .unwrap();
    scene
        .repos
        .delete("media", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("media").await;

    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "left in Flashback, as the Warning says");
    let output = scene.operator().output();
    let note = format!(
        "the namespace is being deleted and the credentials Secret {}/{SECRET} does not \
         exist: released without deleting; remote repository {id} is left in Flashback",
        scene.namespace
    );
    assert!(
        output.contains(&note),
        "the log says what was left: {output}"
    );

    // Kubernetes' namespace controller then finishes the deletion: nothing of the operator's
    // holds the namespace.
    let _controller = NamespaceController::start();
    let namespaces: Api<Namespace> = Api::all(scene.kube.clone());
    let started = Instant::now();
    while namespaces
        .get_opt(&scene.namespace)
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the namespace was still there after 90 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value of one exact series in a /metrics text.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn what_deleted_objects_and_unused_credentials_leave_is_forgotten() {
    let mut scene = Scene::new("forget").await;
    // The same emulator under a second URL: a second credential, so a second client.
    let other_url = scene.emulator.base_url().replace("127.0.0.1", "localhost");
    put_secret(
        &scene.kube,
        &scene.namespace,
        "second",
        &[
            ("token", scene.token.as_bytes()),
            ("apiUrl", other_url.as_bytes()),
        ],
    )
    .await;
    scene.start_operator(&["--allowed-api-hosts", "localhost"]);
    scene.create(&scene.mirror("first")).await;
    scene
        .create(&using(backup(&scene, "second", 0), "second"))
        .await;
    scene.wait_ready("first").await;
    scene.wait_ready("second").await;

    let metrics = format!("{}/metrics", scene.operator().endpoints_url().await);
    let read = |metrics: String| async move {
        reqwest::get(&metrics).await.unwrap().text().await.unwrap()
    };
    let clients = r#"flashback_operator_tracked_entries{kind="api_clients"}"#;
    let backoff = r#"flashback_operator_tracked_entries{kind="backoff"}"#;
    let remembered = r#"flashback_operator_tracked_entries{kind="credentials"}"#;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = read(metrics.clone()).await;
        if series(&text, clients) == Some(2.0) && series(&text, remembered) == Some(2.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two clients and two Secrets were never reported"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    for name in ["first", "second"] {
        scene
            .repos
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        scene.wait_gone(name).await;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = read(metrics.clone()).await;
        // The Secrets no object names any more are forgotten too: a tenant renaming its
        // credentialsSecretRef again and again cannot grow the operator's memory.
        if series(&text, clients) == Some(0.0)
            && series(&text, backoff) == Some(0.0)
            && series(&text, remembered) == Some(0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "state was kept: {text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

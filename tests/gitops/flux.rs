//! Flux's source-controller and kustomize-controller apply a directory of Git holding a
//! FlashbackBucket, a FlashbackRepository naming it by `bucketRef` and a FlashbackAccessKey,
//! through the Kustomization of `integrations/flux/kustomization.yaml` (`wait: true`, the
//! health expressions). helm-controller installing the chart from the registry, with the CRDs
//! in a Kustomization of their own, runs on the cluster with a node (`tests/node.rs`), where
//! the registry and the Pods are.

use std::time::Duration;

use kube::Api;
use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

use super::storage::{
    Change, STORAGE, STORAGE_OBJECTS, assert_one_put, assert_pruned, broken_repositories,
    commit_storage, commit_storage_removal, finalizer_policy, storage_objects, wait_storage_ready,
};
use crate::buckets::put_cloud_secret;
use crate::support::flux::{
    Flux, KUSTOMIZE, applied_revision, condition, gitrepositories, kustomizations, ready,
};
use crate::support::git::{BRANCH, GitServer};
use crate::support::node::root;
use crate::support::scene::Scene;

/// How long a test waits for Flux: a reconcile of the source, then of the Kustomization and
/// its health checks, each polled every few seconds.
const FLUX_DEADLINE: Duration = Duration::from_secs(90);

/// A scene (emulator, namespace, token Secret), a Git server, and Flux watching the namespace.
struct Stage {
    scene: Scene,
    git: GitServer,
    flux: Flux,
}

impl Stage {
    /// Everything but the operator, with a GitRepository `config` following the Git server's
    /// branch and the controllers of `controllers` beside source-controller.
    async fn new(prefix: &str, controllers: &[&'static str]) -> Self {
        let scene = Scene::new(prefix).await;
        put_cloud_secret(&scene, "cloud-secret-flux-0001").await;
        let git = GitServer::start();
        let flux = Flux::start(&scene.kube, &scene.namespace, controllers).await;
        let stage = Self { scene, git, flux };
        stage
            .apply(
                &gitrepositories(),
                json!({
                    "apiVersion": "source.toolkit.fluxcd.io/v1",
                    "kind": "GitRepository",
                    "metadata": {"name": "config"},
                    "spec": {
                        "interval": "2s",
                        "url": stage.git.url(),
                        "ref": {"branch": BRANCH},
                    },
                }),
            )
            .await;
        stage
    }

    fn api(&self, resource: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.scene.kube.clone(), &self.scene.namespace, resource)
    }

    /// Applies `object` in the stage's namespace, as `kubectl apply --server-side` would.
    async fn apply(&self, resource: &ApiResource, object: Value) {
        crate::support::flux::apply(&self.scene.kube, &self.scene.namespace, resource, object)
            .await;
    }

    /// The Kustomization of integrations/flux/kustomization.yaml, pointed at the stage's
    /// GitRepository and directory and namespace, with a short interval: the rest (wait,
    /// health expressions, prune) as shipped.
    async fn apply_storage_kustomization(&self) {
        let shipped = std::fs::read_to_string(root().join("integrations/flux/kustomization.yaml"))
            .expect("the shipped Kustomization");
        let mut kustomization: Value = serde_saphyr::from_str(&shipped).expect("YAML");
        kustomization["metadata"]["namespace"] = json!(self.scene.namespace);
        let spec = &mut kustomization["spec"];
        spec["sourceRef"]["name"] = json!("config");
        spec["path"] = json!(format!("./{STORAGE}"));
        spec["targetNamespace"] = json!(self.scene.namespace);
        spec["interval"] = json!("5s");
        spec["retryInterval"] = json!("2s");
        spec["timeout"] = json!("3m");
        self.apply(&kustomizations(), kustomization).await;
    }

    fn commit_storage(&self, folder: &str, message: &str) -> String {
        commit_storage(&self.scene, &self.git, folder, message)
    }

    /// Waits until the Flux object `name` satisfies `check`, or fails saying what it is.
    async fn wait_flux(
        &self,
        resource: &ApiResource,
        name: &str,
        what: &str,
        check: impl Fn(&DynamicObject) -> bool,
    ) -> DynamicObject {
        crate::support::wait::until_within(FLUX_DEADLINE, &self.api(resource), name, what, check)
            .await
    }

    /// Waits until the Kustomization `name` is Ready at `revision` and returns it.
    async fn wait_applied(&self, name: &str, revision: &str) -> DynamicObject {
        self.wait_flux(&kustomizations(), name, "Ready", |k| {
            ready(k).is_some_and(|(status, _, _)| status == "True")
                && applied_revision(k).ends_with(revision)
        })
        .await
    }
}

#[tokio::test]
async fn flux_waits_for_the_operator_carries_a_commit_to_the_remote_and_prunes_what_leaves_git() {
    let mut stage = Stage::new("flux-story", &[KUSTOMIZE]).await;
    let first = stage.commit_storage("media", "storage for the album");
    stage.apply_storage_kustomization().await;

    // The operator is not running: Flux applies the objects and waits on their health.
    let waiting = stage
        .wait_flux(
            &kustomizations(),
            "flashback-storage",
            "waiting on health",
            |k| {
                condition(k, "Reconciling").is_some_and(|(status, reason, message)| {
                    status == "True"
                        && reason == "Progressing"
                        && message.starts_with("Running health checks")
                        && message.contains(&first)
                })
            },
        )
        .await;
    let (status, reason, _) = ready(&waiting).expect("a Ready condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "Progressing")
    );
    let applied = storage_objects(&stage.scene).await;
    assert_eq!(applied.keys().collect::<Vec<_>>(), STORAGE_OBJECTS);
    // Still waiting a few seconds later: nothing made the objects Ready.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = stage
        .api(&kustomizations())
        .get("flashback-storage")
        .await
        .unwrap();
    assert_eq!(
        ready(&still).unwrap().0,
        "Unknown",
        "{:#}",
        still.data["status"]
    );

    // The operator starts: the objects become Ready, and so does the Kustomization.
    stage.scene.start_operator(&[]);
    let applied = stage.wait_applied("flashback-storage", &first).await;
    let (_, reason, message) = ready(&applied).unwrap();
    assert_eq!(reason, "ReconciliationSucceeded");
    assert_eq!(message, format!("Applied revision: {BRANCH}@sha1:{first}"));
    let repo_id = wait_storage_ready(&stage.scene).await;

    // A change committed to Git reaches the remote repository: one PUT.
    stage.scene.control.reset_calls().await.unwrap();
    let second = stage.commit_storage("media-2026", "move the album's master folder");
    stage.wait_applied("flashback-storage", &second).await;
    assert_one_put(&stage.scene, &repo_id, "media-2026").await;

    // The files leave Git: Flux prunes the objects, their finalizers delete the remote
    // repository, key and bucket, and the Kustomization is Ready once they are gone.
    stage.scene.control.reset_calls().await.unwrap();
    let third = commit_storage_removal(&stage.git, "the album is retired");
    // Flux is Ready once it has sent the deletes; the objects go once the operator's
    // finalizers have deleted what they stand for.
    stage.wait_applied("flashback-storage", &third).await;
    assert_pruned(&stage.scene).await;
    drop(stage.flux);
}

#[tokio::test]
async fn a_broken_object_fails_the_kustomization_which_names_it() {
    let mut stage = Stage::new("flux-broken", &[KUSTOMIZE]).await;
    stage.scene.start_operator(&[]);
    let ns = stage.scene.namespace.clone();
    let [unknown, no_secret] = broken_repositories(&stage.scene);
    stage.apply_storage_kustomization().await;

    // Flux stops waiting at the first Failed object it sees, not at its timeout, and names it
    // (only that one: a second broken object is named once the first is fixed). The
    // operator's message is on the object the name leads to.
    let steps: [(&[Change], &str, &str, &str); 2] = [
        (
            &[(&unknown.file, Some(&unknown.yaml))],
            unknown.name,
            unknown.reason,
            &unknown.message,
        ),
        (
            &[
                (&unknown.file, None),
                (&no_secret.file, Some(&no_secret.yaml)),
            ],
            no_secret.name,
            no_secret.reason,
            &no_secret.message,
        ),
    ];
    for (files, name, reason, message) in steps {
        let revision = stage
            .git
            .commit(files, &format!("{name}: a broken repository"));
        let failed = stage
            .wait_flux(&kustomizations(), "flashback-storage", "failed", |k| {
                ready(k).is_some_and(|(status, reason, _)| {
                    status == "False" && reason == "HealthCheckFailed"
                }) && k.data["status"]["lastAttemptedRevision"]
                    .as_str()
                    .is_some_and(|r| r.ends_with(&revision))
            })
            .await;
        let (_, _, flux_message) = ready(&failed).unwrap();
        assert!(
            flux_message.starts_with("health check failed after "),
            "{flux_message}"
        );
        assert!(
            flux_message.ends_with(&format!(
                ": failed early due to stalled resources: \
                 [FlashbackRepository/{ns}/{name} status: 'Failed']"
            )),
            "{flux_message}"
        );
        let stalled = stage.scene.wait_stalled(name, reason).await;
        assert_eq!(
            crate::support::scene::condition(&stalled, "Stalled")
                .unwrap()
                .message,
            message
        );
    }
}

#[tokio::test]
async fn flux_and_the_operator_leave_ready_objects_alone_for_a_minute() {
    let mut stage = Stage::new("flux-drift", &[KUSTOMIZE]).await;
    let release = format!("fbflux-{}", &stage.scene.namespace[11..]);
    let _policy = finalizer_policy(&stage.scene, &release).await;
    // The operator resyncs every 3 s, Flux every 5 s: each has a dozen chances to write.
    stage.scene.start_operator(&[]);
    let revision = stage.commit_storage("media", "storage for the album");
    stage.apply_storage_kustomization().await;
    stage.wait_applied("flashback-storage", &revision).await;
    wait_storage_ready(&stage.scene).await;

    stage.scene.control.reset_calls().await.unwrap();
    let before = storage_objects(&stage.scene).await;
    let log_before = stage.flux.log(KUSTOMIZE).len();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = storage_objects(&stage.scene).await;
    let log = stage.flux.log(KUSTOMIZE)[log_before..].to_owned();

    // Flux reconciled again and again, and applied nothing: every object unchanged.
    let reconciles = log
        .lines()
        .filter(|line| {
            line.contains("Reconciliation finished") && line.contains("flashback-storage")
        })
        .count();
    assert!(
        reconciles >= 6,
        "{reconciles} reconciles in a minute:\n{log}"
    );
    let applies: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("\"configured\"") || line.contains("\"created\""))
        .collect();
    assert!(applies.is_empty(), "Flux applied again: {applies:#?}");
    // Nobody wrote to the objects, and the operator wrote nothing to the remote.
    assert_eq!(before, after);
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(
        crate::buckets::writes(&stage.scene).await,
        Vec::<String>::new()
    );
}

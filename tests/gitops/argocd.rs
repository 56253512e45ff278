//! Argo CD's application-controller and repo-server apply a directory of Git holding a
//! FlashbackBucket, a FlashbackRepository naming it by `bucketRef` and a FlashbackAccessKey,
//! through the Application of `integrations/argocd/application.yaml` (automated sync, prune,
//! self-heal), judging their health with `integrations/argocd/argocd-cm.yaml`; and the two
//! Applications of `integrations/argocd/operator.yaml` install the chart with the CRDs apart.
//!
//! After each commit the test asks for a refresh (`argocd.argoproj.io/refresh: normal`), as
//! a Git webhook would; without one Argo CD finds the commit at its next poll of Git.

use std::collections::BTreeMap;
use std::time::Duration;

use flashback_operator::crd::{FlashbackAccessKey, FlashbackBucket, FlashbackRepository};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::storage::{
    STORAGE, STORAGE_OBJECTS, assert_one_put, assert_pruned, broken_repositories, commit_storage,
    commit_storage_removal, finalizer_policy, storage_objects, typed, wait_storage_ready,
};
use crate::buckets::put_cloud_secret;
use crate::support::argocd::{APPLICATION_CONTROLLER, ArgoCd};
use crate::support::git::GitServer;
use crate::support::node::root;
use crate::support::scene::Scene;

/// How long a test waits for Argo CD: a refresh, a comparison, a sync and the health of what
/// it applied.
const ARGOCD_DEADLINE: Duration = Duration::from_secs(90);

/// The Application of integrations/argocd/application.yaml.
const STORAGE_APP: &str = "flashback-storage";

/// A scene (emulator, namespace, token Secret), a Git server, and Argo CD with its
/// Applications in the scene's namespace.
struct Stage {
    scene: Scene,
    git: GitServer,
    argocd: ArgoCd,
}

impl Stage {
    async fn new(prefix: &str) -> Self {
        let scene = Scene::new(prefix).await;
        put_cloud_secret(&scene, "cloud-secret-argo-0001").await;
        let git = GitServer::start();
        let argocd = ArgoCd::start(&scene.kube, &scene.namespace, git.port()).await;
        Self { scene, git, argocd }
    }

    fn apps(&self) -> Api<DynamicObject> {
        self.argocd.api(&self.scene.kube)
    }

    /// Applies an Application of integrations/argocd/`file` as shipped, but reading the
    /// stage's Git server, living in and deploying to the stage's namespace; `adjust` changes
    /// what else the test needs.
    async fn apply_shipped(&self, file: &str, adjust: impl Fn(&mut Value)) {
        let shipped = std::fs::read_to_string(root().join("integrations/argocd").join(file))
            .expect("the shipped Application");
        let documents: Vec<Value> = serde_saphyr::from_multiple(&shipped).expect("YAML");
        for mut app in documents {
            assert_eq!(app["kind"], "Application", "{file}");
            app["metadata"]["namespace"] = json!(self.scene.namespace);
            app["spec"]["source"]["repoURL"] = json!(self.git.url());
            if app["spec"]["destination"]["namespace"].is_string() {
                app["spec"]["destination"]["namespace"] = json!(self.scene.namespace);
            }
            adjust(&mut app);
            let name = app["metadata"]["name"].as_str().unwrap().to_owned();
            self.apps()
                .patch(&name, &PatchParams::apply("e2e"), &Patch::Apply(&app))
                .await
                .unwrap_or_else(|e| panic!("the Application {name} is applied: {e}"));
        }
    }

    /// The storage Application, reading the storage directory.
    async fn apply_storage_application(&self) {
        self.apply_shipped("application.yaml", |app| {
            assert_eq!(app["metadata"]["name"], STORAGE_APP);
            app["spec"]["source"]["path"] = json!(STORAGE);
        })
        .await;
    }

    /// What a Git webhook does: asks Argo CD to compare the Application with Git now.
    async fn refresh(&self, app: &str) {
        self.apps()
            .patch(
                app,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}
                })),
            )
            .await
            .expect("the refresh annotation");
    }

    /// Waits until the Application `app` is Synced at `revision` and its health is `health`.
    async fn wait_app(&self, app: &str, revision: &str, health: &str) -> DynamicObject {
        crate::support::wait::until_within(
            ARGOCD_DEADLINE,
            &self.apps(),
            app,
            &format!("Synced at {revision} and {health}"),
            |a| sync_status(a) == ("Synced", revision) && health_status(a) == health,
        )
        .await
    }
}

/// The random part of a test namespace's name (`PREFIX-SUFFIX`).
fn suffix(namespace: &str) -> &str {
    namespace.rsplit('-').next().unwrap()
}

fn sync_status(app: &DynamicObject) -> (&str, &str) {
    let sync = &app.data["status"]["sync"];
    (
        sync["status"].as_str().unwrap_or_default(),
        sync["revision"].as_str().unwrap_or_default(),
    )
}

fn health_status(app: &DynamicObject) -> &str {
    app.data["status"]["health"]["status"]
        .as_str()
        .unwrap_or_default()
}

/// How many times the controller compared the storage Application with Git in `log`.
fn comparisons(log: &str) -> usize {
    log.lines()
        .filter(|line| line.contains("Reconciliation completed") && line.contains(STORAGE_APP))
        .count()
}

/// The Application's sync history: one entry per sync.
fn history(app: &DynamicObject) -> Vec<Value> {
    app.data["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The Ready message the operator wrote on its object.
fn ready_message<K: serde::Serialize>(object: &K) -> String {
    crate::support::scene::ready_message(&serde_json::to_value(object).unwrap()).to_owned()
}

/// Each storage object with the health and message `health.lua` gives it in this state.
async fn storage_health_now(scene: &Scene, status: &str) -> BTreeMap<String, (String, String)> {
    let bucket = typed::<FlashbackBucket>(scene).get("photos").await.unwrap();
    let repo = typed::<FlashbackRepository>(scene)
        .get("album")
        .await
        .unwrap();
    let key = typed::<FlashbackAccessKey>(scene)
        .get("album-writer")
        .await
        .unwrap();
    BTreeMap::from([
        (
            "FlashbackAccessKey/album-writer".to_owned(),
            (status.to_owned(), ready_message(&key)),
        ),
        (
            "FlashbackBucket/photos".to_owned(),
            (status.to_owned(), ready_message(&bucket)),
        ),
        (
            "FlashbackRepository/album".to_owned(),
            (status.to_owned(), ready_message(&repo)),
        ),
    ])
}

/// Waits until Argo CD's resource tree shows `expected` for the operator's objects.
async fn wait_resource_health(
    stage: &Stage,
    app: &str,
    expected: &BTreeMap<String, (String, String)>,
) {
    let deadline = tokio::time::Instant::now() + ARGOCD_DEADLINE;
    loop {
        let mut health = stage.argocd.resource_health(app).await;
        health.retain(|name, _| name.starts_with("Flashback"));
        if &health == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Argo CD's resource health after {ARGOCD_DEADLINE:?}: {health:#?}, not {expected:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn argo_cd_waits_for_the_operator_carries_a_commit_to_the_remote_and_prunes_what_leaves_git()
{
    let mut stage = Stage::new("argocd-story").await;
    let first = commit_storage(&stage.scene, &stage.git, "media", "storage for the album");
    stage.apply_storage_application().await;

    // The operator is not running: Argo CD applies the objects and calls them Progressing,
    // with health.lua's message, and so the Application.
    stage.wait_app(STORAGE_APP, &first, "Progressing").await;
    assert_eq!(
        storage_objects(&stage.scene)
            .await
            .keys()
            .collect::<Vec<_>>(),
        STORAGE_OBJECTS
    );
    let waiting: BTreeMap<String, (String, String)> = STORAGE_OBJECTS
        .iter()
        .map(|name| {
            (
                (*name).to_owned(),
                (
                    "Progressing".to_owned(),
                    "waiting for the operator".to_owned(),
                ),
            )
        })
        .collect();
    wait_resource_health(&stage, STORAGE_APP, &waiting).await;
    // Still Progressing after two more comparisons: nothing made the objects Ready.
    let log_before = stage.argocd.log(APPLICATION_CONTROLLER).len();
    let deadline = tokio::time::Instant::now() + ARGOCD_DEADLINE;
    loop {
        let seen = comparisons(&stage.argocd.log(APPLICATION_CONTROLLER)[log_before..]);
        if seen >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{seen} comparisons in {ARGOCD_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let still = stage.apps().get(STORAGE_APP).await.unwrap();
    assert_eq!(health_status(&still), "Progressing");
    assert_eq!(sync_status(&still), ("Synced", first.as_str()));
    let mut health = stage.argocd.resource_health(STORAGE_APP).await;
    health.retain(|name, _| name.starts_with("Flashback"));
    assert_eq!(health, waiting);

    // The operator starts: the objects become Ready, Argo CD calls each Healthy with the
    // operator's Ready message, and the Application Healthy.
    stage.scene.start_operator(&[]);
    let repo_id = wait_storage_ready(&stage.scene).await;
    stage.wait_app(STORAGE_APP, &first, "Healthy").await;
    let healthy = storage_health_now(&stage.scene, "Healthy").await;
    assert_eq!(
        healthy["FlashbackRepository/album"].1,
        "the remote repository matches the spec"
    );
    wait_resource_health(&stage, STORAGE_APP, &healthy).await;

    // A change committed to Git reaches the remote repository: one PUT.
    stage.scene.control.reset_calls().await.unwrap();
    let second = commit_storage(
        &stage.scene,
        &stage.git,
        "media-2026",
        "move the album's master folder",
    );
    stage.refresh(STORAGE_APP).await;
    stage.wait_app(STORAGE_APP, &second, "Healthy").await;
    assert_one_put(&stage.scene, &repo_id, "media-2026").await;

    // The files leave Git: Argo CD prunes the objects, their finalizers delete the remote
    // repository, key and bucket, and the ConfigMap beside them stays.
    stage.scene.control.reset_calls().await.unwrap();
    let third = commit_storage_removal(&stage.git, "the album is retired");
    stage.refresh(STORAGE_APP).await;
    stage.wait_app(STORAGE_APP, &third, "Healthy").await;
    assert_pruned(&stage.scene).await;
    let app = stage.apps().get(STORAGE_APP).await.unwrap();
    let managed: Vec<String> = app.data["status"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(managed, ["ConfigMap/team-notes"]);
}

#[tokio::test]
async fn a_broken_object_degrades_the_application_with_the_operators_message() {
    let mut stage = Stage::new("argocd-broken").await;
    stage.scene.start_operator(&[]);
    let broken = broken_repositories(&stage.scene);
    commit_storage(&stage.scene, &stage.git, "media", "storage for the album");
    let files: Vec<(&str, Option<&str>)> = broken
        .iter()
        .map(|b| (b.file.as_str(), Some(b.yaml.as_str())))
        .collect();
    let revision = stage.git.commit(&files, "two broken repositories");
    stage.apply_storage_application().await;

    // Argo CD shows every broken object at once, Degraded with the operator's own message,
    // beside the Healthy ones; the Application is Degraded.
    stage.wait_app(STORAGE_APP, &revision, "Degraded").await;
    wait_storage_ready(&stage.scene).await;
    let mut expected = storage_health_now(&stage.scene, "Healthy").await;
    for b in &broken {
        stage.scene.wait_stalled(b.name, b.reason).await;
        expected.insert(
            format!("FlashbackRepository/{}", b.name),
            ("Degraded".to_owned(), b.message.clone()),
        );
    }
    wait_resource_health(&stage, STORAGE_APP, &expected).await;

    // Fixed in Git (the broken files removed): Healthy again.
    let files: Vec<(&str, Option<&str>)> = broken.iter().map(|b| (b.file.as_str(), None)).collect();
    let fixed = stage.git.commit(&files, "the broken repositories go");
    stage.refresh(STORAGE_APP).await;
    stage.wait_app(STORAGE_APP, &fixed, "Healthy").await;
}

#[tokio::test]
async fn argo_cd_and_the_operator_leave_ready_objects_alone_for_a_minute() {
    let mut stage = Stage::new("argocd-drift").await;
    let release = format!("fbargo-{}", suffix(&stage.scene.namespace));
    let _policy = finalizer_policy(&stage.scene, &release).await;
    // The operator resyncs every 3 s, Argo CD compares every 5 s with self-heal on: each has
    // a dozen chances to write in the minute.
    stage.scene.start_operator(&[]);
    let revision = commit_storage(&stage.scene, &stage.git, "media", "storage for the album");
    stage.apply_storage_application().await;
    wait_storage_ready(&stage.scene).await;
    stage.wait_app(STORAGE_APP, &revision, "Healthy").await;

    stage.scene.control.reset_calls().await.unwrap();
    let before = storage_objects(&stage.scene).await;
    let app_before = stage.apps().get(STORAGE_APP).await.unwrap();
    let log_before = stage.argocd.log(APPLICATION_CONTROLLER).len();
    // Sampled every 2 s: Synced and Healthy throughout.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let app = stage.apps().get(STORAGE_APP).await.unwrap();
        assert_eq!(
            (sync_status(&app), health_status(&app)),
            (("Synced", revision.as_str()), "Healthy"),
            "{:#}",
            app.data["status"]
        );
    }
    let after = storage_objects(&stage.scene).await;
    let app_after = stage.apps().get(STORAGE_APP).await.unwrap();
    let log = stage.argocd.log(APPLICATION_CONTROLLER)[log_before..].to_owned();

    // Argo CD compared again and again and synced nothing: one sync in its history, the
    // same operation, no automated sync in its log.
    let comparisons = comparisons(&log);
    assert!(
        comparisons >= 5,
        "{comparisons} comparisons in a minute:\n{log}"
    );
    let syncs: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("Initiated automated sync"))
        .collect();
    assert!(syncs.is_empty(), "Argo CD synced again: {syncs:#?}");
    assert_eq!(
        history(&app_after).len(),
        1,
        "{:#}",
        app_after.data["status"]
    );
    assert_eq!(history(&app_before), history(&app_after));
    assert_eq!(
        app_before.data["status"]["operationState"],
        app_after.data["status"]["operationState"]
    );
    // Nobody wrote to the objects, and the operator wrote nothing to the remote.
    assert_eq!(before, after);
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(
        crate::buckets::writes(&stage.scene).await,
        Vec::<String>::new()
    );
}

/// The cluster-wide objects the chart renders for a release (ClusterRoles, the finalizer
/// policy), deleted when the test ends: Argo CD, stopped with the test, would never prune them.
struct ClusterWide(String);

impl Drop for ClusterWide {
    fn drop(&mut self) {
        let _ = crate::support::node::run_bounded(
            std::process::Command::new(crate::support::node::tool("kubectl"))
                .args([
                    "delete",
                    "clusterrole,clusterrolebinding,mutatingadmissionpolicy,mutatingadmissionpolicybinding",
                    "--ignore-not-found",
                    "-l",
                    &format!("app.kubernetes.io/instance={}", self.0),
                ])
                .env("KUBECONFIG", crate::support::cluster::kubeconfig_path()),
            Duration::from_secs(30),
        );
    }
}

#[tokio::test]
async fn argo_cd_installs_the_chart_with_the_crds_in_an_application_of_their_own() {
    let stage = Stage::new("argocd-helm").await;
    let ns = stage.scene.namespace.clone();
    stage.git.commit_directory(
        &root().join("crds"),
        "flashback/crds",
        "the operator's CRDs",
    );
    let revision = stage.git.commit_directory(
        &root().join("charts/flashback-operator"),
        "flashback/charts/flashback-operator",
        "the operator's chart",
    );

    // integrations/argocd/operator.yaml as shipped, in this namespace and from this Git
    // server; the release watches this namespace only, under a name of its own (the chart's
    // cluster-wide objects carry it).
    let release = format!("fbargo-{}", suffix(&ns));
    let _cluster_wide = ClusterWide(release.clone());
    stage
        .apply_shipped("operator.yaml", |app| {
            if app["metadata"]["name"] == "flashback-operator" {
                let helm = &mut app["spec"]["source"]["helm"];
                helm["releaseName"] = json!(release);
                helm["valuesObject"]["watchNamespace"] = json!(ns);
            }
        })
        .await;

    // The CRDs are the flashback-crds Application's: the three, Synced with Git. (The API
    // server already holds them, as it would when CRDs are handed over, so Argo CD finds them
    // in step and has nothing to apply.)
    let crds_app = stage.wait_app("flashback-crds", &revision, "Healthy").await;
    let mut tracked: Vec<String> = crds_app.data["status"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}/{} {}",
                r["kind"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default()
            )
        })
        .collect();
    tracked.sort();
    let mut expected: Vec<String> = flashback_operator::crd::crds()
        .into_iter()
        .map(|(_, crd)| format!("CustomResourceDefinition/{} Synced", crd.name_any()))
        .collect();
    expected.sort();
    assert_eq!(tracked, expected);

    // The chart is rendered without the CRDs and synced: its Deployment, ServiceAccount, Role
    // and RoleBinding are in the cluster. (No Pod runs on this control plane, which has no
    // node, so the Deployment stays Progressing.)
    let app = crate::support::wait::until_within(
        ARGOCD_DEADLINE,
        &stage.apps(),
        "flashback-operator",
        "Synced",
        |a| {
            sync_status(a) == ("Synced", revision.as_str())
                && a.data["status"]["operationState"]["phase"] == "Succeeded"
        },
    )
    .await;
    let kinds: std::collections::BTreeSet<String> = app.data["status"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in ["Deployment", "ServiceAccount", "Role", "RoleBinding"] {
        assert!(
            kinds.contains(kind),
            "no {kind} in the Application: {kinds:?}"
        );
    }
    assert!(!kinds.contains("CustomResourceDefinition"), "{kinds:?}");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = typed(&stage.scene);
    let deployment = deployments
        .get_opt(&format!("{release}-flashback-operator"))
        .await
        .unwrap();
    assert!(deployment.is_some(), "the release's Deployment");
}

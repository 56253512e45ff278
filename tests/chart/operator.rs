//! The real operator on what the chart gives it: with the Deployment's environment and the
//! chart's ServiceAccount it makes repositories Ready, stalls with a reason on a Secret it may not
//! read, holds the Lease as long as the values say, and the chart's finalizer policy adds its
//! finalizer where it watches.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::{
    applied_release, kube_version, release, render, render_watching, service_account_kubeconfig,
    yaml_documents,
};
use crate::support::cluster::{DEADLINE, kube_client, test_namespace};
use crate::support::operator::Operator;
use crate::support::scene::{Scene, WORKSPACE};

/// The end of the argument: the real operator, configured by the environment the chart's
/// Deployment sets and authenticated as the chart's ServiceAccount, does its whole job in
/// the watched namespace (with a Secret there and with the default Secret of the release
/// namespace), and lets go of a deleted object.
#[tokio::test]
async fn the_operator_runs_on_the_charts_permissions_and_environment() {
    let mut scene = Scene::new("chart-run").await;
    let kube = scene.kube.clone();
    let version = kube_version(&kube).await;
    let namespace = test_namespace(&kube, "chart-run-ops").await;
    let release = release("fbrun");
    let rendered = render_watching(
        &version,
        &release,
        &namespace,
        &scene.namespace,
        "flashback-default",
        &["statsInterval=2s"],
    );
    rendered.apply();

    // The Deployment's environment, with the downward API filled in as the kubelet would.
    // (The test harness's --metrics-address flag wins over the chart's port, so that tests
    // running side by side do not share one.)
    let pod_name = format!("{release}-flashback-operator-0");
    let env = rendered.pod_env(&pod_name, &namespace);
    let config = service_account_kubeconfig(&namespace, &format!("{release}-flashback-operator"));
    scene.operator = Some(Operator::start_as(
        &config,
        &env,
        &scene.namespace,
        scene.emulator.base_url(),
        // An hour between resyncs: only the watch on the default Secret can explain the
        // object using it becoming Ready once the Secret appears.
        &["--resync-interval", "1h"],
    ));

    scene.create(&scene.mirror("own-secret")).await;
    let by_default: flashback_operator::crd::FlashbackRepository =
        serde_saphyr::from_str(&format!(
            r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackRepository
metadata:
  name: default-secret
spec:
  workspaceId: {WORKSPACE}
  storageType: S3
  mode: BACKUP
  buckets:
    - bucketId: {replica}
"#,
            replica = scene.buckets[1],
        ))
        .unwrap();
    scene.create(&by_default).await;
    scene.wait_stalled("default-secret", "SecretNotFound").await;
    // The default Secret, in the release namespace (outside the watched one), comes later.
    let default_secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "flashback-default", "namespace": namespace},
        "stringData": {"token": scene.token},
    }))
    .unwrap();
    Api::<Secret>::namespaced(kube.clone(), &namespace)
        .patch(
            "flashback-default",
            &PatchParams::apply("chart-test").force(),
            &Patch::Apply(&default_secret),
        )
        .await
        .expect("the default Secret is written");

    for name in ["own-secret", "default-secret"] {
        let ready = scene.wait_ready(name).await;
        assert!(
            ready.status.unwrap().repo_id.is_some(),
            "{name} has a repo id"
        );
        assert!(
            scene.has_event(name, "Created").await,
            "{name} has a Created Event"
        );
    }
    scene
        .wait_for("own-secret", "with statistics", |repo| {
            repo.status.as_ref().is_some_and(|s| s.stats.is_some())
        })
        .await;
    assert_eq!(scene.remote_repos().await.len(), 2);

    // Deletion: the operator deletes the remote and removes its finalizer.
    scene
        .repos
        .delete("own-secret", &Default::default())
        .await
        .expect("delete is accepted");
    scene.wait_gone("own-secret").await;
    let remaining: Vec<String> = scene
        .remote_repos()
        .await
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(remaining, ["default-secret"]);

    let output = scene.operator().output();
    assert!(
        !output.contains("forbidden"),
        "the operator was refused something:\n{output}"
    );
}

#[tokio::test]
async fn a_secret_the_operator_may_not_read_stalls_with_a_reason() {
    let scene = Scene::new("chart-forbidden").await;
    let kube = scene.kube.clone();
    let version = kube_version(&kube).await;
    let namespace = test_namespace(&kube, "chart-forbidden-ops").await;
    let release = release("fbforbid");
    let rendered = render_watching(
        &version,
        &release,
        &namespace,
        &scene.namespace,
        "granted",
        &[],
    );
    rendered.apply();
    let config = service_account_kubeconfig(&namespace, &format!("{release}-flashback-operator"));
    // The operator is pointed at a default Secret its RBAC does not cover.
    let not_granted = format!("{namespace}/not-granted");
    let mut scene = scene;
    scene.operator = Some(Operator::start_as(
        &config,
        &[],
        &scene.namespace,
        scene.emulator.base_url(),
        &["--default-credentials-secret", &not_granted],
    ));
    let mut repo = scene.mirror("media");
    repo.spec.credentials_secret_ref = None;
    scene.create(&repo).await;
    let stalled = scene.wait_stalled("media", "SecretForbidden").await;
    let message = &crate::support::scene::condition(&stalled, "Stalled")
        .unwrap()
        .message;
    assert!(message.contains(&not_granted), "{message}");
    assert!(scene.remote_repos().await.is_empty());
}

/// leaderElection.leaseDuration reaches the operator: the real binary, with the Deployment's
/// environment and the chart's ServiceAccount, holds the Lease for that long and reconciles.
#[tokio::test]
async fn the_lease_duration_of_the_values_is_the_one_the_operator_holds() {
    let mut scene = Scene::new("chart-lease").await;
    let kube = scene.kube.clone();
    let (namespace, fullname, rendered) =
        applied_release(&scene, "fblease", &["leaderElection.leaseDuration=9s"]).await;
    let pod_name = format!("{fullname}-0");
    let config = service_account_kubeconfig(&namespace, &fullname);
    scene.operator = Some(Operator::start_as(
        &config,
        &rendered.pod_env(&pod_name, &namespace),
        &scene.namespace,
        scene.emulator.base_url(),
        &[],
    ));

    let leases: Api<Lease> = Api::namespaced(kube.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let lease = loop {
        let held = leases
            .get_opt(&fullname)
            .await
            .unwrap()
            .and_then(|lease| lease.spec)
            .filter(|spec| spec.holder_identity.is_some());
        if let Some(spec) = held {
            break spec;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Lease {fullname} held in time:\n{}",
            scene.operator().output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(lease.lease_duration_seconds, Some(9));
    let holder = lease.holder_identity.unwrap();
    assert!(holder.starts_with(&format!("{pod_name}-")), "{holder}");

    scene.create(&scene.mirror("elected")).await;
    scene.wait_ready("elected").await;
}

/// The API server adds the operator's finalizer when an object is created, beside the
/// finalizers it has, in the watched namespace only; the operator then takes the object to
/// Ready and, deleted, releases it (the finalizer it never wrote is its to remove). Without the
/// MutatingAdmissionPolicy API (helm's offline default) or with `finalizerPolicy.enabled=false`
/// the chart renders no policy; with `accessKeys.enabled=false` it leaves access keys alone.
#[tokio::test]
async fn finalizer_policy_adds_the_finalizer_where_the_operator_watches() {
    let version = kube_version(&kube_client().await).await;
    let offline = render(&version, "fbpol", "default", &[]);
    assert!(!offline.yaml.contains("MutatingAdmissionPolicy"));
    let off = crate::support::policy::render("fbpol", "team-a", &["finalizerPolicy.enabled=false"]);
    assert_eq!(off, "");
    // An operator given a label selector leaves other objects alone: so does the policy.
    let selected = crate::support::policy::render(
        "fbpol",
        "team-a",
        &[
            "extraEnv[0].name=FLASHBACK_SELECTOR",
            "extraEnv[0].value=shard=a",
        ],
    );
    assert_eq!(selected, "");
    let resources = |yaml: &str| -> serde_json::Value {
        yaml_documents(yaml)
            .into_iter()
            .find(|d| d["kind"] == "MutatingAdmissionPolicy")
            .expect("a policy")["spec"]["matchConstraints"]["resourceRules"][0]["resources"]
            .clone()
    };
    assert_eq!(
        resources(&crate::support::policy::render("fbpol", "team-a", &[])),
        serde_json::json!([
            "flashbackrepositories",
            "flashbackbuckets",
            "flashbackaccesskeys"
        ])
    );
    assert_eq!(
        resources(&crate::support::policy::render(
            "fbpol",
            "team-a",
            &["accessKeys.enabled=false"]
        )),
        serde_json::json!(["flashbackrepositories", "flashbackbuckets"])
    );

    let mut scene = Scene::new("chart-policy").await;
    let elsewhere = test_namespace(&scene.kube, "chart-policy-other").await;
    let release = release("fbpol");
    let probe = |name: &str| {
        let mut repo = scene.mirror(name);
        repo.metadata.finalizers = Some(vec!["example.com/keep".into()]);
        repo
    };
    let _policy = crate::support::policy::Applied::new(
        &release,
        &scene.namespace,
        &scene.repos,
        &probe("probe"),
    )
    .await;

    let made = scene
        .repos
        .create(&Default::default(), &probe("media"))
        .await
        .unwrap();
    assert_eq!(
        made.metadata.finalizers,
        Some(vec![
            "example.com/keep".to_string(),
            "flashback.tech/finalizer".to_string()
        ]),
        "added on create, beside the object's own"
    );
    let other: Api<flashback_operator::crd::FlashbackRepository> =
        Api::namespaced(scene.kube.clone(), &elsewhere);
    let unwatched = other
        .create(&Default::default(), &scene.mirror("media"))
        .await
        .unwrap();
    assert_eq!(
        unwatched.metadata.finalizers, None,
        "not where the operator does not watch"
    );

    scene.start_operator(&[]);
    scene.wait_ready("media").await;
    scene
        .repos
        .patch(
            "media",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"finalizers": ["flashback.tech/finalizer"]}}),
            ),
        )
        .await
        .unwrap();
    scene
        .repos
        .delete("media", &Default::default())
        .await
        .unwrap();
    scene.wait_gone("media").await;
    assert!(
        scene.remote_repos().await.is_empty(),
        "deleted in Flashback too"
    );
}

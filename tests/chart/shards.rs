//! Sharding through the chart: with `sharding.shards`, the chart renders one Deployment per
//! shard; one real operator per rendered Deployment (its environment, the chart's
//! ServiceAccount) serves exactly the objects its label selects, each holding its own Lease,
//! and an object relabelled to the other shard in the middle of its create is handed over
//! with one remote repository, and no moment where both shards act on it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flashback_emulator::Faults;
use flashback_operator::crd::FlashbackRepository;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use super::{applied_release, pod_env_of, render_offline, service_account_kubeconfig};
use crate::support::cluster::DEADLINE;
use crate::support::operator::Operator;
use crate::support::scene::{Scene, WORKSPACE, condition};

const KEY: &str = "flashback.tech/shard";

/// Each shard has a PodDisruptionBudget of its own, over its own pods and no other shard's:
/// one budget over every shard's pods would let a drain evict every replica of one shard.
#[test]
fn each_shard_has_its_own_disruption_budget() {
    let rendered = render_offline(
        "fb",
        "flashback-system",
        &["sharding.shards={blue}", "podDisruptionBudget.enabled=true"],
    );
    let pod_labels: Vec<(String, serde_json::Value)> = rendered
        .all("Deployment")
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                d["spec"]["template"]["metadata"]["labels"].clone(),
            )
        })
        .collect();
    let budgets = rendered.all("PodDisruptionBudget");
    assert_eq!(
        budgets
            .iter()
            .map(|b| b["metadata"]["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["fb-flashback-operator", "fb-flashback-operator-blue"]
    );
    for budget in budgets {
        let name = budget["metadata"]["name"].as_str().unwrap();
        let selector = budget["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap();
        let selected: Vec<&str> = pod_labels
            .iter()
            .filter(|(_, labels)| selector.iter().all(|(k, v)| &labels[k] == v))
            .map(|(deployment, _)| deployment.as_str())
            .collect();
        assert_eq!(selected, [name], "{name} selects {selector:?}");
        assert_eq!(budget["spec"]["maxUnavailable"], 1, "{name}");
    }
}

/// A BACKUP repository (BACKUP repositories may share a bucket) in `shard`, or in the default
/// shard without one.
fn backup(scene: &Scene, name: &str, shard: Option<&str>) -> FlashbackRepository {
    let labels = shard.map(|shard| json!({KEY: shard})).unwrap_or(json!({}));
    serde_json::from_value(json!({
        "apiVersion": "flashback.tech/v1alpha1",
        "kind": "FlashbackRepository",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "workspaceId": WORKSPACE,
            "storageType": "S3",
            "mode": "BACKUP",
            "buckets": [{"bucketId": scene.buckets[1]}],
            "credentialsSecretRef": {"name": crate::support::scene::SECRET},
        },
    }))
    .unwrap()
}

/// One operator's /metrics, as series name with labels → value.
async fn metrics(operator: &Operator) -> BTreeMap<String, f64> {
    operator
        .metrics()
        .await
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn series(metrics: &BTreeMap<String, f64>, name: &str) -> f64 {
    metrics.get(name).copied().unwrap_or(0.0)
}

const CREATED: &str =
    r#"flashback_operator_flashback_api_calls_total{endpoint="create_repo",status="200"}"#;
const READY: &str = r#"flashback_operator_repositories{condition="Ready",status="True"}"#;

/// Every Flashback API call an operator made, whatever the endpoint and answer.
fn api_calls(metrics: &BTreeMap<String, f64>) -> f64 {
    metrics
        .iter()
        .filter(|(name, _)| name.starts_with("flashback_operator_flashback_api_calls_total{"))
        .map(|(_, value)| value)
        .sum()
}

#[tokio::test]
async fn two_shards_serve_their_own_objects_and_hand_one_over_without_overlap() {
    let mut scene = Scene::new("chart-shards").await;
    let kube = scene.kube.clone();
    let (namespace, fullname, rendered) = applied_release(
        &scene,
        "fbshard",
        &[
            "sharding.shards={blue}",
            "sharding.handoverGrace=6s",
            "statsInterval=1h",
        ],
    )
    .await;
    let config = service_account_kubeconfig(&namespace, &fullname);
    // One operator per rendered Deployment, as its pod would run: the default shard, then blue.
    let deployments = rendered.all("Deployment");
    assert_eq!(deployments.len(), 2);
    let shards: Vec<(String, Operator)> = deployments
        .iter()
        .map(|deployment| {
            let name = deployment["metadata"]["name"].as_str().unwrap().to_owned();
            let env = pod_env_of(deployment, &format!("{name}-0"), &namespace);
            let operator = Operator::start_as(
                &config,
                &env,
                &scene.namespace,
                scene.emulator.base_url(),
                &["--resync-interval", "1h"],
            );
            (name, operator)
        })
        .collect();
    let (default, blue) = (&shards[0].1, &shards[1].1);
    assert_eq!(shards[1].0, format!("{fullname}-blue"));

    // 200 objects: half without the key (the default shard's), half labelled blue.
    for i in 0..100 {
        scene
            .create(&backup(&scene, &format!("plain-{i:03}"), None))
            .await;
        scene
            .create(&backup(&scene, &format!("blue-{i:03}"), Some("blue")))
            .await;
    }
    let all_ready = |repos: &[FlashbackRepository]| {
        repos
            .iter()
            .filter(|r| condition(r, "Ready").is_some_and(|c| c.status == "True"))
            .count()
    };
    let deadline = Instant::now() + 3 * DEADLINE;
    loop {
        let repos = scene
            .repos
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        if all_ready(&repos) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 200 Ready in time",
            all_ready(&repos)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Each shard made exactly its own 100 repositories, and counts exactly its own as Ready.
    let (on_default, on_blue) = (metrics(default).await, metrics(blue).await);
    assert_eq!(series(&on_default, CREATED), 100.0);
    assert_eq!(series(&on_blue, CREATED), 100.0);
    assert_eq!(series(&on_default, READY), 100.0);
    assert_eq!(series(&on_blue, READY), 100.0);
    assert_eq!(scene.calls("POST", "/repo").await, 200);
    assert_eq!(scene.remote_repos().await.len(), 200);
    // Each holds its own Lease.
    let leases: Api<Lease> = Api::namespaced(kube.clone(), &namespace);
    for (name, _) in &shards {
        let holder = leases
            .get(name)
            .await
            .unwrap()
            .spec
            .and_then(|spec| spec.holder_identity)
            .unwrap_or_default();
        assert!(
            holder.starts_with(&format!("{name}-0-")),
            "{name}: {holder}"
        );
    }

    // A tenant labels an object into the other shard to take over a repository the default
    // shard's object manages: the blue shard sees every object's claim, and refuses.
    let taken = scene.repos.get("plain-000").await.unwrap();
    let taken_id = taken.status.unwrap().repo_id.unwrap();
    let mut thief = backup(&scene, "thief", Some("blue"));
    thief.metadata.annotations = Some(
        [(
            flashback_operator::crd::annotations::REPO_ID.to_string(),
            taken_id.clone(),
        )]
        .into(),
    );
    thief.spec.name = Some("plain-000".into());
    thief.spec.mode = serde_json::from_value(json!("NORMAL")).unwrap();
    scene.create(&thief).await;
    scene.wait_stalled("thief", "ManagedByAnotherObject").await;
    assert_eq!(
        scene.calls("PUT", "/repo/{id}").await,
        0,
        "nothing was written"
    );

    // Relabelled in the middle of its create: the default shard's POST takes 3 s; the
    // object moves to blue once the default shard has recorded the attempt.
    let slow: Faults = serde_json::from_value(json!({
        "latency": {"ms": 3000, "route": {"method": "POST", "route": "/repo"}}
    }))
    .unwrap();
    scene.control.set_faults(&slow).await.unwrap();
    scene.create(&backup(&scene, "moving", None)).await;
    scene
        .wait_for("moving", "a create in flight", |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.create_attempt.is_some())
        })
        .await;
    let before_default = api_calls(&metrics(default).await);
    let before_blue = api_calls(&metrics(blue).await);
    scene
        .repos
        .patch(
            "moving",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {KEY: "blue"}}})),
        )
        .await
        .unwrap();
    let relabelled = Instant::now();
    // Sampled every 50 ms: when the default shard's create answered, and when blue first
    // called the API.
    let (mut default_done, mut blue_started) = (None, None);
    let deadline = Instant::now() + DEADLINE;
    let moved = loop {
        let (now_default, now_blue) = (metrics(default).await, metrics(blue).await);
        if default_done.is_none() && series(&now_default, CREATED) == 101.0 {
            default_done = Some(relabelled.elapsed());
        }
        if blue_started.is_none() && api_calls(&now_blue) > before_blue {
            blue_started = Some(relabelled.elapsed());
        }
        let moving = scene.repos.get("moving").await.unwrap();
        if condition(&moving, "Ready").is_some_and(|c| c.status == "True") {
            break moving;
        }
        assert!(Instant::now() < deadline, "moving never became Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (default_done, blue_started) = (default_done.unwrap(), blue_started.unwrap());
    println!(
        "relabelled mid-create: the default shard's create answered after {default_done:?}, \
         blue's first call after {blue_started:?}"
    );
    assert!(
        default_done < blue_started,
        "blue acted ({blue_started:?}) before the default shard's create ended ({default_done:?})"
    );
    let (after_default, after_blue) = (metrics(default).await, metrics(blue).await);
    assert_eq!(
        api_calls(&after_default) - before_default,
        1.0,
        "the default shard's one call was the create it had begun; nothing after the relabel"
    );
    assert_eq!(
        series(&after_blue, CREATED),
        100.0,
        "blue claimed, never created"
    );
    assert_eq!(series(&after_blue, READY), 101.0);
    assert_eq!(series(&after_default, READY), 100.0);
    // The emulator: one create of it, one repository of its name, the one it records.
    assert_eq!(scene.calls("POST", "/repo").await, 201);
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 201);
    let named: Vec<_> = remote.iter().filter(|r| r.name == "moving").collect();
    assert_eq!(named.len(), 1);
    assert_eq!(
        moved.status.unwrap().repo_id.as_deref(),
        Some(named[0].id.as_str())
    );
    assert!(
        default.output().contains("the object left this shard"),
        "the default shard says why it stopped"
    );
    assert!(
        blue.output()
            .contains("came to this shard in the middle of an act")
    );
    drop(shards);
    scene.operator = None;
}

//! A hostile tenant against buckets, access keys and the ids a server answers, end to end: a
//! tenant's own server that answers creates with another tenant's ids, a refused register
//! beside another tenant's bucket, a server that lists new keys on every call, and the waits
//! (a bucket in use, a paused repository with keys) that must cost the shared credential
//! nothing. Real kube-apiserver, the operator binary, the emulator over HTTP; the tenant's own
//! server is `crate::support::hostile::Impostor`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flashback_emulator::{FailNext, Faults, StatsPatch};
use flashback_operator::crd::{
    FlashbackAccessKey, FlashbackBucket, FlashbackRepository, annotations,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::access_keys::{access_key, create_key, keys, wait_key, wait_key_ready};
use crate::buckets::{
    bucket, buckets, condition_is, create_bucket, mirror_naming_photos, put_cloud_secret,
    wait_bucket, wait_bucket_gone, wait_bucket_ready,
};
use crate::support::cluster::test_namespace;
use crate::support::hostile::Impostor;
use crate::support::operator::Operator;
use crate::support::scene::{SECRET, Scene, WORKSPACE, condition};
use crate::support::wait;

/// A Secret with these string values.
async fn put_secret(kube: &kube::Client, namespace: &str, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(kube.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("the Secret is written");
}

/// Labels an object with this test's run, so the operator it starts serves only its objects.
fn labelled<K: kube::Resource>(mut object: K, run: &str) -> K {
    object
        .meta_mut()
        .labels
        .get_or_insert_with(Default::default)
        .insert("hostile-run".into(), run.to_string());
    object
}

fn stalled_reason_of(repo: &FlashbackRepository) -> Option<String> {
    condition(repo, "Stalled")
        .filter(|c| c.status == "True")
        .map(|c| c.reason.clone())
}

fn bucket_stalled_reason(bucket: &FlashbackBucket) -> Option<String> {
    bucket.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .map(|c| c.reason.clone())
    })
}

#[tokio::test]
async fn a_create_answered_with_another_tenants_ids_never_reaches_them() {
    let victim = Scene::new("victim").await;
    let attacker_namespace = test_namespace(&victim.kube, "attacker").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let attacker_repos: Api<FlashbackRepository> =
        Api::namespaced(victim.kube.clone(), &attacker_namespace);
    let attacker_buckets: Api<FlashbackBucket> =
        Api::namespaced(victim.kube.clone(), &attacker_namespace);

    // The attacker's objects are the older ones (an older object used to win a tie), paused
    // until the attacker knows the victim's ids, and named like the victim's where a name
    // would otherwise give them away.
    let mut lure = labelled(victim.mirror("lure"), &run);
    lure.spec.name = Some("media".into());
    lure.spec.buckets[0].folder = Some("stolen".into());
    lure.spec.credentials_secret_ref.as_mut().unwrap().name = "own".into();
    lure.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotations::PAUSED.into(), "true".into());
    attacker_repos
        .create(&PostParams::default(), &lure)
        .await
        .unwrap();
    let mut lure_bucket = labelled(bucket("lure-bucket"), &run);
    lure_bucket
        .spec
        .credentials_secret_ref
        .as_mut()
        .unwrap()
        .name = "own".into();
    lure_bucket
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotations::PAUSED.into(), "true".into());
    attacker_buckets
        .create(&PostParams::default(), &lure_bucket)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let selector = format!("hostile-run={run}");
    let _operator = Operator::start_cluster_wide(
        victim.emulator.base_url(),
        &[
            "--selector",
            &selector,
            "--allowed-api-hosts",
            "127.0.0.1",
            "--resync-interval",
            "2s",
            "--stats-interval",
            "1s",
        ],
    );
    // The victim: a bucket and a repository, Ready on the shared API.
    put_cloud_secret(&victim, "victim-cloud-secret-0001").await;
    create_bucket(&victim, &labelled(bucket("photos"), &run)).await;
    let victim_bucket = wait_bucket_ready(&victim, "photos")
        .await
        .status
        .unwrap()
        .bucket_id
        .unwrap();
    victim.create(&labelled(victim.mirror("media"), &run)).await;
    let victim_repo = victim
        .wait_ready("media")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();
    victim
        .control
        .set_repo_stats(&victim_repo, &StatsPatch::repo("4096", 7, 4096))
        .await
        .unwrap();
    let before = victim
        .remote_repos()
        .await
        .into_iter()
        .find(|r| r.id == victim_repo)
        .unwrap();
    // A key object of the attacker waits on its lure: once that lure holds the victim's id
    // with the shared credentials, a key minted there would open the victim's data.
    let attacker_keys: Api<FlashbackAccessKey> =
        Api::namespaced(victim.kube.clone(), &attacker_namespace);
    let mut skeleton = labelled(access_key("skeleton", "ADMIN"), &run);
    skeleton.spec.repository_ref.name = "lure".into();
    attacker_keys
        .create(&PostParams::default(), &skeleton)
        .await
        .unwrap();

    // The attacker's own server answers its creates with the victim's ids and lists them back
    // exactly as sent.
    let impostor = Impostor::start(&victim_repo, &victim_bucket).await;
    put_secret(
        &victim.kube,
        &attacker_namespace,
        "own",
        &[("token", "attackers-own"), ("apiUrl", &impostor.url)],
    )
    .await;
    let cloud: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cloud"},
        "stringData": {"AWS_ACCESS_KEY_ID": "AKIAATTACKER", "AWS_SECRET_ACCESS_KEY": "x"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(victim.kube.clone(), &attacker_namespace)
        .create(&PostParams::default(), &cloud)
        .await
        .unwrap();
    let unpause = json!({"metadata": {"annotations": {annotations::PAUSED: null}}});
    // Both attacker objects take the same patches.
    let patch_both = |patch: serde_json::Value| {
        let (repos, buckets) = (attacker_repos.clone(), attacker_buckets.clone());
        async move {
            let params = PatchParams::default();
            repos
                .patch("lure", &params, &Patch::Merge(&patch))
                .await
                .unwrap();
            buckets
                .patch("lure-bucket", &params, &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    patch_both(unpause).await;
    // What its own server answered is recorded, confirmed by that server's own listing: on
    // that API only.
    let recorded = wait::until(&attacker_repos, "lure", "recording the answered id", |r| {
        r.status.as_ref().and_then(|s| s.repo_id.as_deref()) == Some(victim_repo.as_str())
    })
    .await;
    assert!(recorded.status.unwrap().recorded_with.is_some());
    wait::until(
        &attacker_buckets,
        "lure-bucket",
        "recording the answered id",
        |b| b.status.as_ref().and_then(|s| s.bucket_id.as_deref()) == Some(victim_bucket.as_str()),
    )
    .await;

    // Now the attacker's objects use the shared credentials, where those ids are real.
    put_secret(
        &victim.kube,
        &attacker_namespace,
        "shared",
        &[("token", &victim.token)],
    )
    .await;
    patch_both(json!({"spec": {"credentialsSecretRef": {"name": "shared"}}})).await;
    // Same name: listed under it, but the victim recorded that id on this API first.
    let lure = wait::until(&attacker_repos, "lure", "stalled", |r| {
        stalled_reason_of(r).is_some()
    })
    .await;
    assert_eq!(
        stalled_reason_of(&lure).as_deref(),
        Some("ManagedByAnotherObject")
    );
    // Another name: not listed under it with the new credentials.
    let lure_bucket = wait::until(&attacker_buckets, "lure-bucket", "stalled", |b| {
        bucket_stalled_reason(b).is_some()
    })
    .await;
    assert_eq!(
        bucket_stalled_reason(&lure_bucket).as_deref(),
        Some("CredentialsChanged")
    );
    // Several resyncs and statistics passes later the victim is untouched, and nothing of it
    // reached the attacker: no figures, no key.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let media_stats = victim
        .wait_for("media", "with statistics", |r| {
            r.status.as_ref().is_some_and(|s| s.stats.is_some())
        })
        .await;
    assert_eq!(
        media_stats
            .status
            .unwrap()
            .stats
            .unwrap()
            .total_upload_bytes,
        4096
    );
    let lure_now = attacker_repos.get("lure").await.unwrap();
    assert_eq!(
        lure_now.status.unwrap().stats.map(|s| s.total_upload_bytes),
        None,
        "the victim's figures never reach the attacker's status"
    );
    let media = victim.repos.get("media").await.unwrap();
    assert_eq!(stalled_reason_of(&media), None);
    assert_eq!(condition(&media, "Ready").unwrap().status, "True");
    let after = victim
        .remote_repos()
        .await
        .into_iter()
        .find(|r| r.id == victim_repo)
        .expect("the victim's repository is still there");
    assert_eq!(after, before, "the victim's repository is not rewritten");
    assert_eq!(victim.calls("PUT", "/repo/{id}").await, 0);
    assert_eq!(
        victim.calls("POST", "/repo/{id}/apikey").await,
        0,
        "no key minted on the victim's repository"
    );
    assert!(
        victim
            .control
            .repo_keys(&victim_repo)
            .await
            .unwrap()
            .is_empty()
    );

    // Deleting the attacker's objects deletes nothing of the victim's.
    attacker_repos
        .delete("lure", &DeleteParams::default())
        .await
        .unwrap();
    attacker_buckets
        .delete("lure-bucket", &DeleteParams::default())
        .await
        .unwrap();
    wait::deleted(&attacker_repos, &lure).await;
    wait::deleted(&attacker_buckets, &lure_bucket).await;
    assert_eq!(victim.calls("DELETE", "/repo/{id}").await, 0);
    assert_eq!(victim.calls("DELETE", "/bucket/{id}").await, 0);
    assert!(
        victim
            .api
            .list_buckets(Some(WORKSPACE))
            .await
            .unwrap()
            .iter()
            .any(|b| b.id == victim_bucket)
    );
    wait_bucket_ready(&victim, "photos").await;
    victim.wait_ready("media").await;
}

#[tokio::test]
async fn a_refused_bucket_register_never_deregisters_another_tenants_bucket() {
    let team_a = Scene::new("team-a").await;
    let team_c_namespace = test_namespace(&team_a.kube, "team-c").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let selector = format!("hostile-run={run}");
    // A refused register is tried again at the resync: an hour apart here, so that team-c's
    // stays refused (as bad cloud keys would) while team-a registers the name.
    let _operator = Operator::start_cluster_wide(
        team_a.emulator.base_url(),
        &["--selector", &selector, "--resync-interval", "1h"],
    );
    let team_c: Api<FlashbackBucket> = Api::namespaced(team_a.kube.clone(), &team_c_namespace);
    put_secret(
        &team_a.kube,
        &team_c_namespace,
        SECRET,
        &[("token", &team_a.token)],
    )
    .await;
    put_secret(
        &team_a.kube,
        &team_c_namespace,
        "cloud",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIATEAMC"),
            ("AWS_SECRET_ACCESS_KEY", "bad"),
        ],
    )
    .await;
    // team-c's register is refused, as the service refuses bad cloud keys: every time while
    // team-c's object is looked at (its Secret's watch event may bring a second look).
    let mut refuse = FailNext::new(100, 400).on("POST", "/bucket");
    refuse.error_code = Some("INVALID_CREDENTIALS".into());
    team_a
        .control
        .set_faults(&Faults {
            fail_next: Some(refuse),
            ..Faults::default()
        })
        .await
        .unwrap();
    let refused = labelled(bucket("photos"), &run);
    team_c
        .create(&PostParams::default(), &refused)
        .await
        .unwrap();
    let stalled = wait::until(&team_c, "photos", "stalled", |b| {
        bucket_stalled_reason(b).is_some()
    })
    .await;
    assert_eq!(
        bucket_stalled_reason(&stalled).as_deref(),
        Some("SpecRejected")
    );
    assert_eq!(
        stalled.status.as_ref().unwrap().create_attempt,
        None,
        "a refused register keeps no record that a later bucket could match"
    );
    // Nothing more wakes team-c's object (its resync is an hour away): the refusals end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    team_a.control.clear_faults().await.unwrap();

    // team-a registers a bucket of the same name and shape.
    put_cloud_secret(&team_a, "team-a-cloud-secret-0001").await;
    create_bucket(&team_a, &labelled(bucket("photos"), &run)).await;
    let team_a_bucket = wait_bucket_ready(&team_a, "photos")
        .await
        .status
        .unwrap()
        .bucket_id
        .unwrap();

    team_c
        .delete("photos", &DeleteParams::default())
        .await
        .unwrap();
    wait::deleted(&team_c, &stalled).await;
    assert_eq!(team_a.calls("DELETE", "/bucket/{id}").await, 0);
    assert!(
        team_a
            .api
            .list_buckets(Some(WORKSPACE))
            .await
            .unwrap()
            .iter()
            .any(|b| b.id == team_a_bucket),
        "team-a's bucket is still registered"
    );
    wait_bucket_ready(&team_a, "photos").await;
}

#[tokio::test]
async fn waiting_for_a_repository_to_let_go_of_a_bucket_costs_no_api_call() {
    let scene = Scene::with_operator("in-use").await;
    put_cloud_secret(&scene, "in-use-cloud-secret-0001").await;
    create_bucket(&scene, &bucket("photos")).await;
    let photos = wait_bucket_ready(&scene, "photos").await;
    scene.create(&mirror_naming_photos(&scene, "album")).await;
    scene.wait_ready("album").await;

    buckets(&scene)
        .delete("photos", &DeleteParams::default())
        .await
        .unwrap();
    wait_bucket(&scene, "photos", "waiting (BucketInUse)", |b| {
        condition_is(b, "Reconciling", "True", "BucketInUse")
    })
    .await;
    let (lists, deletes) = (
        scene.calls("GET", "/bucket").await,
        scene.calls("DELETE", "/bucket/{id}").await,
    );
    // Three resync intervals of the scene's operator.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let lists_while_waiting = scene.calls("GET", "/bucket").await - lists;
    let deletes_while_waiting = scene.calls("DELETE", "/bucket/{id}").await - deletes;
    println!(
        "while in use for 10 s: {lists_while_waiting} GET /bucket, {deletes_while_waiting} DELETE"
    );
    assert_eq!((lists_while_waiting, deletes_while_waiting), (0, 0));

    // The repository lets go: one DELETE, soon.
    let started = Instant::now();
    scene
        .repos
        .delete("album", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("album").await;
    wait_bucket_gone(&scene, &photos).await;
    println!(
        "bucket deregistered {:?} after its repository's delete",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(scene.calls("DELETE", "/bucket/{id}").await - deletes, 1);

    // A repository the operator does not manage: its workspace's listing shows it, so no
    // DELETE is sent at all, and the listing is asked once per resync, not in a loop.
    create_bucket(&scene, &bucket("shared")).await;
    let shared = wait_bucket_ready(&scene, "shared").await;
    let shared_id = shared.status.clone().unwrap().bucket_id.unwrap();
    let mut outside =
        flashback_operator::controller::repository::plan::desired(&scene.mirror("outside"));
    outside.mode = flashback_client::RepoMode::Backup;
    outside.repo_buckets = vec![flashback_client::RepoBucketWrite {
        bucket_id: shared_id.clone(),
        folder: None,
        master: false,
    }];
    let outside_id = scene.api.create_repo(&outside).await.unwrap();
    // Past the age of any repository listing the operator holds (500 ms with a 3 s resync).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deletes = scene.calls("DELETE", "/bucket/{id}").await;
    let lists = scene.calls("GET", "/repo").await;
    buckets(&scene)
        .delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    wait_bucket(&scene, "shared", "waiting (BucketInUse)", |b| {
        condition_is(b, "Reconciling", "True", "BucketInUse")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let asked = scene.calls("DELETE", "/bucket/{id}").await - deletes;
    let listed = scene.calls("GET", "/repo").await - lists;
    println!(
        "while a foreign repository holds the bucket for ~8 s (3 s resync): {asked} DELETE, \
         {listed} GET /repo"
    );
    assert_eq!(
        asked, 0,
        "the listing showed the repository: nothing to ask"
    );
    assert!((1..=4).contains(&listed), "{listed} listings");

    // The foreign repository lets go: the bucket goes at the next look.
    scene.api.delete_repo(&outside_id).await.unwrap();
    wait_bucket_gone(&scene, &shared).await;
    assert_eq!(scene.calls("DELETE", "/bucket/{id}").await - deletes, 1);
}

#[tokio::test]
async fn deleting_a_paused_repository_with_keys_writes_nothing_and_never_waits() {
    let scene = Scene::with_operator("paused-keys").await;
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    create_key(&scene, &access_key("reader", "READ")).await;
    let reader = wait_key_ready(&scene, "reader").await;
    let key_id = reader.status.clone().unwrap().key_id.unwrap();
    let repo_id = scene
        .repos
        .get("media")
        .await
        .unwrap()
        .status
        .unwrap()
        .repo_id
        .unwrap();
    scene
        .annotate("media", annotations::PAUSED, Some("true"))
        .await;
    // Its Secret goes too, as in a directory deleted with kubectl delete -f.
    let _ = Api::<Secret>::namespaced(scene.kube.clone(), &scene.namespace)
        .delete(reader.secret_name(), &DeleteParams::default())
        .await;

    let started = Instant::now();
    scene
        .repos
        .delete("media", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("media").await;
    println!(
        "paused repository with a key released after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(scene.calls("DELETE", "/repo/{id}/apikey/{keyId}").await, 0);
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 0);
    // Its key object says why it issues nothing.
    wait_key(&scene, "reader", "waiting on its repository", |k| {
        k.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
        })
    })
    .await;
    let left: Vec<String> = scene
        .control
        .repo_keys(&repo_id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(
        left,
        std::slice::from_ref(&key_id),
        "the key is left in Flashback with its repository"
    );
    keys(&scene)
        .delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    wait::deleted(&keys(&scene), &reader).await;
    assert_eq!(scene.calls("DELETE", "/repo/{id}/apikey/{keyId}").await, 0);
}

#[tokio::test]
async fn a_server_listing_new_keys_on_every_call_gets_a_growing_backoff_and_one_event_series() {
    let mut scene = Scene::new("key-flood").await;
    let impostor = Impostor::start("r-flood-0001", "b-flood-0001").await;
    put_secret(
        &scene.kube,
        &scene.namespace,
        "own",
        &[("token", "tenants-own"), ("apiUrl", &impostor.url)],
    )
    .await;
    scene.start_operator(&["--allowed-api-hosts", "127.0.0.1"]);
    // The keys first, waiting for their repository, so that the flood meets their first look.
    let mut flooded = Vec::new();
    for i in 0..3 {
        create_key(&scene, &access_key(&format!("flood-{i}"), "READ")).await;
        let uid = keys(&scene)
            .get(&format!("flood-{i}"))
            .await
            .unwrap()
            .uid()
            .unwrap();
        impostor.flood_keys_of(&uid);
        flooded.push(format!("flood-{i}"));
    }
    let mut media = scene.mirror("media");
    media.spec.credentials_secret_ref.as_mut().unwrap().name = "own".into();
    scene.create(&media).await;
    scene.wait_ready("media").await;

    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let deletes = impostor.key_deletes();
    let per_object = deletes as f64 / flooded.len() as f64;
    println!(
        "key DELETEs caused by a flooding server in {:?}: {deletes} for {} objects \
         ({per_object:.0} each; a reconcile deletes at most 10, then backs off 1 s, 2 s, 4 s ...)",
        started.elapsed(),
        flooded.len()
    );
    // The backoff doubles from 1 s: in 30 s at most 7 reconciles of 10 deletes each (the loop
    // this replaced, one reconcile a second, made 93 each here).
    assert!(
        per_object <= 70.0,
        "{per_object} DELETEs per object in 30 s"
    );
    assert!(
        deletes >= 10 * flooded.len() as u64,
        "each object did delete"
    );
    for name in &flooded {
        let deleted: Vec<String> = scene
            .events(name)
            .await
            .into_iter()
            .filter(|e| e.starts_with("Deleted:"))
            .collect();
        assert_eq!(
            deleted,
            ["Deleted: deleted 10 unused keys (the Secret does not hold them) of this object"],
            "one Event, its repeats counted into its series"
        );
    }
}

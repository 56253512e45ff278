//! One operator, many tenants, end to end: what a tenant who wants to hurt another can write
//! (annotations, names, Secrets, API URLs, the answers of a server it points the operator at)
//! never reaches another's repositories, stalls the operator for others, or exhausts it.
//! Real kube-apiserver, the real operator binary, the emulator over HTTP; the servers a
//! hostile tenant would run are `crate::support::hostile`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::cluster::{DEADLINE, test_namespace};
use crate::support::hostile::{Behaviour, HostileServer};
use crate::support::operator::Operator;
use crate::support::scene::{SECRET, Scene, WORKSPACE, condition};
use flashback_emulator::{FailNext, Faults};
use flashback_operator::crd::{FlashbackRepository, annotations};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// Writes a Secret with exactly these bytes under these keys.
async fn put_secret(kube: &kube::Client, namespace: &str, name: &str, data: &[(&str, &[u8])]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(kube.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("the Secret is written");
}

/// A Secret whose `apiUrl` sends the operator to `url` (a server of the test's).
async fn point_at(kube: &kube::Client, namespace: &str, name: &str, url: &str) {
    put_secret(
        kube,
        namespace,
        name,
        &[("token", b"whatever"), ("apiUrl", url.as_bytes())],
    )
    .await;
}

/// `repo` with its credentials from the Secret `secret`.
fn using(mut repo: FlashbackRepository, secret: &str) -> FlashbackRepository {
    repo.spec.credentials_secret_ref.as_mut().unwrap().name = secret.to_string();
    repo
}

/// A BACKUP repository over the scene's second bucket, in a folder of its own.
fn backup(scene: &Scene, name: &str, folder: usize) -> FlashbackRepository {
    let mut repo = scene.mirror(name);
    repo.spec.buckets.remove(0);
    repo.spec.buckets[0].folder = Some(format!("f{folder}"));
    repo.spec.mode = flashback_operator::crd::RepositoryMode::Backup;
    repo
}

fn stalled_message(repo: &FlashbackRepository) -> String {
    condition(repo, "Stalled").unwrap().message.clone()
}

#[tokio::test]
async fn deleting_an_object_deletes_only_a_repository_it_verified_and_recorded() {
    let scene = Scene::with_operator("verified").await;
    // An older object, Ready with a repository of its own, will ask for the owner's id.
    scene.create(&backup(&scene, "hoarder", 9)).await;
    scene.wait_ready("hoarder").await;
    scene.create(&scene.mirror("owner")).await;
    let owned = scene
        .wait_ready("owner")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();

    // A repository no object manages, named by an object of another workspace: not adopted.
    let mut unmanaged_body =
        flashback_operator::controller::repository::plan::desired(&backup(&scene, "unmanaged", 0));
    unmanaged_body.name = "unmanaged".into();
    let unmanaged = scene.api.create_repo(&unmanaged_body).await.unwrap();
    let mut elsewhere = scene.mirror("elsewhere");
    elsewhere.spec.workspace_id = "ws-someone-else".into();
    scene.create(&elsewhere).await;
    scene
        .annotate("elsewhere", annotations::REPO_ID, Some(&unmanaged))
        .await;
    scene.wait_stalled("elsewhere", "AdoptedRepoNotFound").await;
    // ...and one of the same workspace may not take over what another object manages.
    scene.create(&scene.mirror("thief")).await;
    scene
        .annotate("thief", annotations::REPO_ID, Some(&owned))
        .await;
    let thief = scene.wait_stalled("thief", "ManagedByAnotherObject").await;
    let message = stalled_message(&thief);
    assert_eq!(
        message,
        format!(
            "repository {owned} is managed by another FlashbackRepository; an object adopts \
             only a repository that no other object manages"
        )
    );
    assert!(!message.contains(&scene.namespace));

    for name in ["elsewhere", "thief"] {
        scene
            .repos
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        scene.wait_gone(name).await;
    }
    let remote: Vec<String> = scene
        .remote_repos()
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(
        remote.contains(&owned) && remote.contains(&unmanaged),
        "{remote:?}"
    );
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 0);
    assert_eq!(scene.calls("PUT", "/repo/{id}").await, 0);
    scene.wait_ready("owner").await;

    // The older object asking for the id by annotation holds nothing: the owner's delete
    // still deletes its repository.
    scene
        .annotate("hoarder", annotations::REPO_ID, Some(&owned))
        .await;
    scene
        .wait_stalled("hoarder", "ManagedByAnotherObject")
        .await;
    scene
        .repos
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("owner").await;
    let remote: Vec<String> = scene
        .remote_repos()
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(!remote.contains(&owned), "{remote:?}");
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 1);
}

#[tokio::test]
async fn an_ambiguous_create_never_claims_a_repository_another_object_made() {
    let mut scene = Scene::new("ambiguous").await;
    // The first create gets a 500: its outcome is unknown to the operator.
    let faults = Faults::from(FailNext::new(1, 500).on("POST", "/repo"));
    scene.control.set_faults(&faults).await.unwrap();
    scene.start_operator(&[]);
    let mut late = scene.mirror("late");
    late.spec.name = Some("same".into());
    scene.create(&late).await;
    scene
        .wait_for("late", "failed its first create", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "RemoteUnavailable")
        })
        .await;
    // Held still (paused) while another object creates the same repository.
    scene
        .annotate("late", annotations::PAUSED, Some("true"))
        .await;
    scene
        .wait_for("late", "paused", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "Paused")
        })
        .await;
    let mut early = scene.mirror("early");
    early.spec.name = Some("same".into());
    scene.create(&early).await;
    let theirs = scene
        .wait_ready("early")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();

    scene.annotate("late", annotations::PAUSED, None).await;
    let late = scene.wait_stalled("late", "NameAlreadyUsed").await;
    assert!(
        stalled_message(&late).contains("is managed by another FlashbackRepository"),
        "{}",
        stalled_message(&late)
    );
    assert!(late.status.unwrap().repo_id.is_none());

    scene
        .repos
        .delete("late", &DeleteParams::default())
        .await
        .unwrap();
    scene.wait_gone("late").await;
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "{remote:?}");
    assert_eq!(remote[0].id, theirs);
    assert_eq!(scene.calls("PUT", "/repo/{id}").await, 0);
    assert_eq!(scene.calls("DELETE", "/repo/{id}").await, 0);
}

/// Starts the operator at the failpoint after the remote create and kills it there.
async fn crash_after_the_remote_create(scene: &mut Scene, name: &str) {
    scene.start_operator_at_failpoint("pause-after-remote-create");
    scene.create(&scene.mirror(name)).await;
    scene
        .operator()
        .wait_for_output("failpoint pause-after-remote-create reached")
        .await;
    scene.operator().kill_hard();
    assert_eq!(scene.remote_repos().await.len(), 1);
}

async fn rename(scene: &Scene, name: &str, remote_name: &str) {
    scene
        .repos
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"name": remote_name}})),
        )
        .await
        .expect("rename is accepted");
}

#[tokio::test]
async fn a_rename_after_a_crash_renames_the_repository_the_crashed_create_made() {
    let mut scene = Scene::new("crashrename").await;
    crash_after_the_remote_create(&mut scene, "media").await;
    rename(&scene, "media", "renamed").await;

    scene.start_operator(&[]);
    let ready = scene.wait_ready("media").await;
    let remote = scene.remote_repos().await;
    assert_eq!(remote.len(), 1, "no second repository: {remote:?}");
    assert_eq!(remote[0].name, "renamed");
    assert_eq!(ready.status.unwrap().repo_id, Some(remote[0].id.clone()));
    assert_eq!(scene.calls("POST", "/repo").await, 1);
}

#[tokio::test]
async fn a_delete_after_a_crash_and_a_rename_leaks_nothing() {
    let mut scene = Scene::new("crashdelete").await;
    crash_after_the_remote_create(&mut scene, "media").await;
    rename(&scene, "media", "renamed").await;
    scene
        .repos
        .delete("media", &DeleteParams::default())
        .await
        .unwrap();

    scene.start_operator(&[]);
    scene.wait_gone("media").await;
    assert!(scene.remote_repos().await.is_empty(), "nothing leaked");
}

#[tokio::test]
async fn a_name_used_in_another_workspace_stalls_instead_of_looping() {
    let mut scene = Scene::new("namedelsewhere").await;
    let other_bucket = scene
        .api
        .create_bucket(&crate::support::bucket_write("other", "ws-other"))
        .await
        .unwrap();
    let mut taken = crate::support::repo(
        "taken",
        flashback_client::RepoMode::Backup,
        &[(&other_bucket, false)],
    );
    taken.workspace_id = Some("ws-other".into());
    scene.api.create_repo(&taken).await.unwrap();
    scene.start_operator(&[]);

    scene.create(&scene.mirror("taken")).await;
    let stalled = scene.wait_stalled("taken", "NameAlreadyUsed").await;
    assert_eq!(
        stalled_message(&stalled),
        format!(
            "the Flashback API refused the name \"taken\": another repository of the \
             organisation uses it, outside workspace {WORKSPACE}; choose another spec.name"
        )
    );
    // Stalled, it is looked at again only at the resync pace (3 s here), not every second.
    let posts = scene.calls("POST", "/repo").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let more = scene.calls("POST", "/repo").await - posts;
    println!("POST /repo while stalled for 7 s: {more}");
    assert!(more <= 3, "{more} creates in 7 s");
    let events = scene.events("taken").await;
    let stalls = events
        .iter()
        .filter(|e| e.starts_with("NameAlreadyUsed:"))
        .count();
    assert_eq!(stalls, 1, "one Event for the stall: {events:?}");
}

#[tokio::test]
async fn a_tenant_whose_api_hangs_does_not_delay_another() {
    let honest = Scene::new("honest").await;
    let hostile_namespace = test_namespace(&honest.kube, "hostile").await;
    let hanging = HostileServer::start(Behaviour::Hang).await;
    point_at(&honest.kube, &hostile_namespace, SECRET, &hanging.url).await;
    // Only this test's objects: tests beside it run operators of their own.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let label = |mut repo: FlashbackRepository| {
        repo.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("tenancy-run".into(), run.clone());
        repo
    };
    let hostile: Api<FlashbackRepository> =
        Api::namespaced(honest.kube.clone(), &hostile_namespace);
    // A workspace each, so that no listing is shared: every object makes its own call.
    for i in 0..12 {
        let mut repo = label(honest.mirror(&format!("hang-{i}")));
        repo.spec.workspace_id = format!("ws-hang-{i}");
        hostile.create(&PostParams::default(), &repo).await.unwrap();
    }
    let selector = format!("tenancy-run={run}");
    let _operator = Operator::start_cluster_wide(
        honest.emulator.base_url(),
        &["--selector", &selector, "--allowed-api-hosts", "127.0.0.1"],
    );
    // Wait until the hostile namespace holds every turn it may.
    tokio::time::timeout(DEADLINE, async {
        while hanging.in_flight() < 4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the hostile objects reach their API");

    let started = Instant::now();
    honest.create(&label(honest.mirror("media"))).await;
    honest.wait_ready("media").await;
    let took = started.elapsed();
    println!(
        "honest object Ready after {took:?} while {} calls hang",
        hanging.in_flight()
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        hanging.peak_in_flight(),
        4,
        "the hostile namespace held exactly its 4 turns"
    );
}

#[tokio::test]
async fn an_oversized_answer_is_refused_without_being_read() {
    let mut scene = Scene::new("huge").await;
    let huge = HostileServer::start(Behaviour::Huge(1 << 30)).await;
    point_at(&scene.kube, &scene.namespace, "huge", &huge.url).await;
    scene.start_operator(&["--allowed-api-hosts", "127.0.0.1"]);
    scene.create(&using(scene.mirror("media"), "huge")).await;
    let stalled = scene.wait_stalled("media", "ResponseTooLarge").await;
    assert_eq!(
        stalled_message(&stalled),
        format!(
            "the Flashback API named by the Secret {}/huge cannot be used: the answer of \
             list_repos held more than 16777216 bytes, the most the client reads",
            scene.namespace
        )
    );
    let peak = scene.operator().peak_memory_kib().unwrap();
    println!(
        "operator peak RSS with a 1 GiB answer offered: {} MiB",
        peak / 1024
    );
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB");

    // Small in bytes, but more objects than the client parses (each costs memory).
    let crowded = HostileServer::start(Behaviour::Objects(150_000)).await;
    point_at(&scene.kube, &scene.namespace, "crowded", &crowded.url).await;
    scene
        .create(&using(scene.mirror("crowded"), "crowded"))
        .await;
    let stalled = scene.wait_stalled("crowded", "ResponseTooLarge").await;
    assert_eq!(
        stalled_message(&stalled),
        format!(
            "the Flashback API named by the Secret {}/crowded cannot be used: the answer of \
             list_repos held more than 100000 JSON objects, the most the client reads",
            scene.namespace
        )
    );
}

#[tokio::test]
async fn retry_after_holds_back_every_call_of_the_credential() {
    let mut scene = Scene::new("retryafter").await;
    let faults: Faults = serde_json::from_value(json!({
        "rateLimit": {"share": 0.3, "retryAfterSeconds": 2},
        "seed": 11
    }))
    .unwrap();
    scene.control.set_faults(&faults).await.unwrap();
    scene.start_operator(&[]);
    let names: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        scene.create(&backup(&scene, name, i)).await;
    }
    for name in &names {
        scene
            .wait_for_within(Duration::from_secs(90), name, "Ready", |r| {
                condition(r, "Ready").is_some_and(|c| c.status == "True")
            })
            .await;
    }
    let calls = scene.control.calls().await.unwrap();
    println!(
        "Retry-After 2 s on 30% of calls: {} calls, {} answered 429, {} violations",
        calls.total,
        calls
            .calls
            .iter()
            .filter(|c| c.status == 429)
            .map(|c| c.count)
            .sum::<u64>(),
        calls.retry_after_violations
    );
    assert_eq!(calls.retry_after_violations, 0, "{calls:?}");

    // A pause longer than the client sleeps through: every object of the credential waits.
    let long = Faults::from(FailNext {
        retry_after_seconds: Some(12),
        ..FailNext::new(1, 429).on("GET", "/repo")
    });
    scene.control.set_faults(&long).await.unwrap();
    scene.control.reset_calls().await.unwrap();
    let asked = Instant::now();
    for name in names.iter().take(3) {
        scene
            .annotate(name, annotations::RECONCILE_REQUESTED_AT, Some("now"))
            .await;
    }
    for name in names.iter().take(3) {
        scene
            .wait_for(name, "handled the request", |r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.last_handled_reconcile_at.as_deref())
                    == Some("now")
                    && condition(r, "Ready").is_some_and(|c| c.status == "True")
            })
            .await;
    }
    let calls = scene.control.calls().await.unwrap();
    println!(
        "Retry-After 12 s: handled after {:?}, {} violations",
        asked.elapsed(),
        calls.retry_after_violations
    );
    assert_eq!(calls.retry_after_violations, 0, "{calls:?}");
    assert!(asked.elapsed() >= Duration::from_secs(12));

    // What a server may ask is capped, and the status says so.
    let absurd = Faults::from(FailNext {
        retry_after_seconds: Some(u64::MAX),
        ..FailNext::new(1, 429).on("GET", "/repo")
    });
    scene.control.set_faults(&absurd).await.unwrap();
    scene
        .annotate("r0", annotations::RECONCILE_REQUESTED_AT, Some("again"))
        .await;
    let parked = scene
        .wait_for("r0", "told to wait", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "RemoteUnavailable")
        })
        .await;
    assert_eq!(
        condition(&parked, "Ready").unwrap().message,
        "could not list repositories, will retry: rate limited by the Flashback API \
         (retry after 5m, the longest wait the client honours)"
    );
}

#[tokio::test]
async fn a_tenants_api_url_is_refused_unless_allowed_and_answers_are_never_quoted() {
    let mut scene = Scene::with_operator("ssrf").await;
    let server = HostileServer::start(Behaviour::Body(
        r#"{"success":true,"repos":"LEAKED-PAYLOAD-7f3a"}"#,
    ))
    .await;
    point_at(&scene.kube, &scene.namespace, "elsewhere", &server.url).await;
    scene
        .create(&using(scene.mirror("media"), "elsewhere"))
        .await;
    let stalled = scene.wait_stalled("media", "ApiUrlNotAllowed").await;
    assert_eq!(
        stalled_message(&stalled),
        format!(
            "the key `apiUrl` of the credentials Secret {}/elsewhere names the host \
             127.0.0.1, which the operator is not allowed to call (its --allowed-api-hosts)",
            scene.namespace
        )
    );
    assert_eq!(server.requests(), 0, "the operator never called it");

    // Allowed, the host is called; what it answers is never copied anywhere.
    scene.operator().kill_hard();
    scene.start_operator(&["--allowed-api-hosts", "127.0.0.1"]);
    let failing = scene
        .wait_for("media", "failing on the answer", |r| {
            condition(r, "Ready").is_some_and(|c| c.reason == "RemoteUnavailable")
        })
        .await;
    assert!(server.requests() > 0);
    let message = &condition(&failing, "Ready").unwrap().message;
    assert_eq!(
        message,
        "could not list repositories, will retry: could not decode the answer of list_repos: \
         the body is not the JSON this call answers (line 1, column 45)"
    );
    let events = scene.events("media").await.join("\n");
    let output = scene.operator().output();
    for (place, text) in [("events", &events), ("operator output", &output)] {
        assert!(!text.contains("LEAKED-PAYLOAD"), "{place} quote the answer");
    }

    // An allowed host cannot send the operator on to another one.
    let target = HostileServer::start(Behaviour::Body(r#"{"success":true,"repos":[]}"#)).await;
    let to: &'static str = Box::leak(target.url.clone().into_boxed_str());
    let redirector = HostileServer::start(Behaviour::Redirect(to)).await;
    point_at(
        &scene.kube,
        &scene.namespace,
        "redirecting",
        &redirector.url,
    )
    .await;
    scene
        .create(&using(scene.mirror("redirected"), "redirecting"))
        .await;
    let refused = scene.wait_stalled("redirected", "SpecRejected").await;
    assert!(redirector.requests() > 0);
    assert_eq!(target.requests(), 0, "the redirect was not followed");
    assert!(
        stalled_message(&refused).contains("(HTTP 307)"),
        "{}",
        stalled_message(&refused)
    );
}

#[tokio::test]
async fn blank_padded_or_multiline_names_are_refused_at_admission() {
    let scene = Scene::new("admission").await;
    let message = |field: &str| {
        format!(
            "{field} must not start or end with whitespace, nor hold control characters such as a line break"
        )
    };
    let [primary, replica] = &scene.buckets;
    let cases = [
        ("blank name", json!({"name": "   "}), "name"),
        ("padded name", json!({"name": " padded "}), "name"),
        ("two-line name", json!({"name": "a\nb"}), "name"),
        (
            "padded workspace",
            json!({"workspaceId": " ws"}),
            "workspaceId",
        ),
        (
            "blank bucket id",
            json!({"buckets": [{"bucketId": primary, "master": true}, {"bucketId": "  "}]}),
            "bucketId",
        ),
        (
            "tabbed folder",
            json!({"buckets": [{"bucketId": primary, "master": true, "folder": "media\t"}, {"bucketId": replica}]}),
            "folder",
        ),
    ];
    for (case, spec, field) in cases {
        let mut repo = serde_json::to_value(scene.mirror("bad")).unwrap();
        for (key, value) in spec.as_object().unwrap() {
            repo["spec"][key] = value.clone();
        }
        let repo: FlashbackRepository = serde_json::from_value(repo).unwrap();
        let refused = scene
            .repos
            .create(&PostParams::default(), &repo)
            .await
            .expect_err(case);
        let text = refused.to_string();
        assert!(text.contains(&message(field)), "{case}: {text}");
    }
    // A name with inner spaces is a name like any other.
    let mut fine = scene.mirror("fine");
    fine.spec.name = Some("media backups".into());
    scene.create(&fine).await;
}

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

#[tokio::test]
async fn credentials_problems_are_named_for_what_they_are() {
    let mut scene = Scene::new("blame").await;
    put_secret(
        &scene.kube,
        &scene.namespace,
        "binary",
        &[("token", &[0xff, 0xfe, 0x00, 0x41])],
    )
    .await;
    let with_user = scene
        .emulator
        .base_url()
        .replace("http://", "http://me:pw@");
    put_secret(
        &scene.kube,
        &scene.namespace,
        "userinfo",
        &[
            ("token", scene.token.as_bytes()),
            ("apiUrl", with_user.as_bytes()),
        ],
    )
    .await;
    scene.control.reset_calls().await.unwrap();
    scene.start_operator(&["--allowed-api-hosts", "127.0.0.1"]);
    scene.create(&using(scene.mirror("binary"), "binary")).await;
    scene
        .create(&using(scene.mirror("userinfo"), "userinfo"))
        .await;

    let binary = scene.wait_stalled("binary", "TokenNotText").await;
    assert_eq!(
        stalled_message(&binary),
        format!(
            "the key `token` of the credentials Secret {}/binary is not UTF-8 text",
            scene.namespace
        )
    );
    let userinfo = scene.wait_stalled("userinfo", "InvalidApiUrl").await;
    assert_eq!(
        stalled_message(&userinfo),
        format!(
            "the key `apiUrl` of the credentials Secret {}/userinfo carries a user name or \
             password; the token goes in the key `token`",
            scene.namespace
        )
    );
    assert!(!scene.operator().output().contains("pw@"));
    assert_eq!(scene.control.calls().await.unwrap().total, 0);
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

#[tokio::test]
async fn an_operator_with_a_selector_leaves_other_objects_alone() {
    // The selector flag is what the cluster-wide test above relies on: an operator with it
    // leaves objects without the label alone.
    let scene = Scene::new("selector").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let selector = format!("tenancy-run={run}");
    let _operator =
        Operator::start_cluster_wide(scene.emulator.base_url(), &["--selector", &selector]);
    let mut chosen = scene.mirror("chosen");
    chosen
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("tenancy-run".into(), run.clone());
    scene.create(&chosen).await;
    scene.create(&scene.mirror("ignored")).await;
    scene.wait_ready("chosen").await;
    let ignored = scene.repos.get("ignored").await.unwrap();
    // The status the CRD defaults at create, and nothing the operator wrote.
    assert_eq!(
        ignored.status,
        Some(flashback_operator::crd::FlashbackRepositoryStatus {
            observed_generation: Some(0),
            ..Default::default()
        })
    );
    assert!(ignored.finalizers().is_empty());
}

/// Objects parked behind a busy namespace and deleted before their turn do not hold up the
/// rest: kube-runtime reports each one gone when it is woken, and its place passes on. With
/// one turn per namespace and no resync or housekeeping within the test (an hour apart), only
/// that hand-over can bring the objects behind them to Ready.
#[tokio::test]
async fn parked_objects_deleted_before_their_turn_do_not_hold_up_the_rest() {
    let mut scene = Scene::new("parked").await;
    let hanging = HostileServer::start(Behaviour::Hang).await;
    point_at(&scene.kube, &scene.namespace, "hanging-token", &hanging.url).await;
    scene.start_operator(&[
        "--namespace-concurrency",
        "1",
        "--resync-interval",
        "1h",
        "--allowed-api-hosts",
        "127.0.0.1",
    ]);
    // The blocker holds the namespace's only turn while its call hangs (one read timeout).
    scene
        .create(&using(scene.mirror("blocker"), "hanging-token"))
        .await;
    tokio::time::timeout(DEADLINE, async {
        while hanging.in_flight() < 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the blocker reaches its API");
    for n in 0..6 {
        scene.create(&backup(&scene, &format!("p{n}"), n)).await;
    }
    // Parked, never reconciled, so without a finalizer: deleted at once.
    for name in ["p0", "p1", "p2", "blocker"] {
        scene
            .repos
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        scene.wait_gone(name).await;
    }
    assert_eq!(hanging.in_flight(), 1, "the turn is still held");
    for name in ["p3", "p4", "p5"] {
        scene.wait_ready(name).await;
    }
    let remote: Vec<String> = scene
        .remote_repos()
        .await
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(remote.len(), 3, "{remote:?}");
}

/// A tenant whose API never answers, with all its objects in one workspace: its reconciles,
/// and the resync of that workspace, queue for the one listing in flight, each for a read
/// timeout (10 s). Only this test's objects are served: see [`HangingTenant::selector`].
struct HangingTenant {
    server: HostileServer,
    run: String,
}

impl HangingTenant {
    async fn start(honest: &Scene, prefix: &str, objects: usize) -> Self {
        let namespace = test_namespace(&honest.kube, prefix).await;
        let server = HostileServer::start(Behaviour::Hang).await;
        point_at(&honest.kube, &namespace, SECRET, &server.url).await;
        let tenant = Self {
            server,
            run: uuid::Uuid::new_v4().simple().to_string(),
        };
        let repos: Api<FlashbackRepository> = Api::namespaced(honest.kube.clone(), &namespace);
        for i in 0..objects {
            let repo = tenant.label(honest.mirror(&format!("hang-{i}")));
            repos.create(&PostParams::default(), &repo).await.unwrap();
        }
        tenant
    }

    /// `repo`, labelled as one of this test's objects.
    fn label(&self, mut repo: FlashbackRepository) -> FlashbackRepository {
        repo.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("tenancy-run".into(), self.run.clone());
        repo
    }

    /// The selector of this test's objects: tests beside it run operators of their own.
    fn selector(&self) -> String {
        format!("tenancy-run={}", self.run)
    }

    /// Waits (bounded) until a call of the operator's hangs on the server.
    async fn wait_hanging(&self) {
        tokio::time::timeout(DEADLINE, async {
            while self.server.in_flight() < 1 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the hostile objects reach their API");
    }
}

/// Each (credential, workspace) is swept on its own: a resync that waits behind a tenant's
/// hanging API delays neither another tenant's resync nor the next one. Before, one sweep
/// waited for every workspace's listing, and the hanging workspace's waited behind its
/// reconciles (a read timeout each): drift was corrected some 50 s late.
#[tokio::test]
async fn a_tenant_whose_api_hangs_does_not_delay_anothers_drift_correction() {
    const RESYNC: Duration = Duration::from_secs(3);
    const READ_TIMEOUT: Duration = Duration::from_secs(10);
    let honest = Scene::new("resync-honest").await;
    let hostile = HangingTenant::start(&honest, "resync-hostile", 8).await;
    honest.create(&hostile.label(honest.mirror("media"))).await;
    let _operator = Operator::start_cluster_wide(
        honest.emulator.base_url(),
        &[
            "--selector",
            &hostile.selector(),
            "--allowed-api-hosts",
            "127.0.0.1",
            "--resync-interval",
            "3s",
        ],
    );
    let repo_id = honest
        .wait_ready("media")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();
    hostile.wait_hanging().await;
    // A resync has listed the honest workspace since: the drift is for the next one to see.
    let listed = honest.calls("GET", "/repo").await;
    tokio::time::timeout(RESYNC * 3, async {
        while honest.calls("GET", "/repo").await == listed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a resync lists the honest workspace");

    honest
        .control
        .patch_repo(
            &repo_id,
            &flashback_emulator::control::RepoPatch {
                name: Some("renamed-by-hand".into()),
                mode: Some("BACKUP".into()),
                ..Default::default()
            },
        )
        .await
        .expect("the emulator takes the change");
    let drifted = Instant::now();
    let bound = RESYNC + READ_TIMEOUT + Duration::from_secs(2);
    let corrected = tokio::time::timeout(bound, async {
        loop {
            let remote = honest.remote_repos().await;
            if remote[0].name == "media" && remote[0].mode == flashback_client::RepoMode::Mirror {
                return remote;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the drift was not corrected within {bound:?}"));
    println!(
        "drift corrected after {:?} while the hostile workspace's calls hang",
        drifted.elapsed()
    );
    let remote: Vec<_> = corrected
        .iter()
        .map(|r| (r.id.as_str(), r.name.as_str(), r.mode.clone()))
        .collect();
    assert_eq!(
        remote,
        [(
            repo_id.as_str(),
            "media",
            flashback_client::RepoMode::Mirror
        )]
    );
    assert_eq!(
        hostile.server.peak_in_flight(),
        1,
        "the hanging workspace is listed once at a time, by its reconciles and resyncs alike"
    );
}

/// SIGTERM while a tenant's calls hang: reconciles in flight get the shutdown grace (10 s by
/// default), those still waiting are then cancelled, the Lease is released and the process
/// exits 0, well within a Pod's 30 s grace period. Before, the exit waited for every hanging
/// reconcile in turn (40 s and more), and the kubelet killed the Pod with the Lease held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_whose_api_hangs_does_not_hold_the_operators_exit() {
    const GRACE: Duration = Duration::from_secs(10);
    // The Lease is released within a retry period: a third of its 6 s.
    const RELEASE: Duration = Duration::from_secs(2);
    let honest = Scene::new("exit-honest").await;
    let hostile = HangingTenant::start(&honest, "exit-hostile", 8).await;
    honest.create(&hostile.label(honest.mirror("media"))).await;
    let mut operator = Operator::start_cluster_wide(
        honest.emulator.base_url(),
        &[
            "--selector",
            &hostile.selector(),
            "--allowed-api-hosts",
            "127.0.0.1",
            "--leader-election",
            "--leader-election-namespace",
            &honest.namespace,
            "--leader-election-lease-duration",
            "6s",
        ],
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(honest.kube.clone(), &honest.namespace);
    let holder = || async {
        leases
            .get_opt("flashback-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    honest.wait_ready("media").await;
    hostile.wait_hanging().await;
    assert!(holder().await.is_some(), "the operator leads");

    let pid = operator.pid().unwrap().to_string();
    let asked = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = operator
        .wait_exit(Duration::from_secs(25))
        .expect("the operator exits well within a Pod's 30 s grace period");
    let took = asked.elapsed();
    println!("SIGTERM to exit: {took:?} while the hostile workspace's calls hang");
    assert!(status.success(), "it exits 0: {status:?}");
    let bound = GRACE + RELEASE + Duration::from_secs(3);
    assert!(took < bound, "took {took:?}, more than {bound:?}");
    assert_eq!(holder().await, None, "the Lease is released");
}

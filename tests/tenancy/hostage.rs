//! No tenant holds the others hostage: a tenant whose API hangs delays neither another's
//! reconciles nor its drift correction nor the operator's exit, an oversized answer is refused
//! without being held, Retry-After holds back every call of its credential, and objects parked
//! behind a busy namespace and deleted before their turn do not hold up the rest. The
//! cluster-wide operators here serve only their own test's objects, by label selector, which
//! `an_operator_with_a_selector_leaves_other_objects_alone` checks.

use std::time::{Duration, Instant};

use flashback_emulator::{FailNext, Faults};
use flashback_operator::crd::{FlashbackRepository, annotations};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{backup, point_at, stalled_message, using};
use crate::support::cluster::{DEADLINE, test_namespace};
use crate::support::hostile::{Behaviour, HostileServer};
use crate::support::operator::Operator;
use crate::support::scene::{SECRET, Scene, condition};

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
async fn an_oversized_answer_is_refused_without_being_held() {
    let mut scene = Scene::new("huge").await;
    scene.start_operator(&["--allowed-api-hosts", "127.0.0.1"]);
    // Past the listing's bound (128 MiB), read as it streams and never held.
    stalls_on(&scene, "huge", Behaviour::Huge(1 << 30), "134217728 bytes").await;
    // 13 MB of text, but more than the 64 MiB a listing may hold once decoded.
    stalls_on(
        &scene,
        "crowded",
        Behaviour::Costly(200),
        "67108864 bytes once decoded",
    )
    .await;
    // Well-formed, but more repositories than one listing may hold.
    stalls_on(
        &scene,
        "listed",
        Behaviour::Listed(150_001),
        "150000 entries",
    )
    .await;
    let peak = scene.operator().peak_memory_kib().unwrap();
    println!(
        "operator peak RSS after a 1 GiB answer, a listing costly to decode and 150,001 \
         repositories offered: {} MiB",
        peak / 1024
    );
    assert!(peak < 150 * 1024, "peak RSS {peak} KiB");
}

/// A repository named `name` using a Secret of that name, which points at a server behaving
/// so, stalls with `ResponseTooLarge` saying the listing held more than `past`.
async fn stalls_on(scene: &Scene, name: &str, behaviour: Behaviour, past: &str) {
    let server = HostileServer::start(behaviour).await;
    point_at(&scene.kube, &scene.namespace, name, &server.url).await;
    scene.create(&using(scene.mirror(name), name)).await;
    let stalled = scene.wait_stalled(name, "ResponseTooLarge").await;
    assert_eq!(
        stalled_message(&stalled),
        format!(
            "the Flashback API named by the Secret {}/{name} cannot be used: the answer of \
             list_repos held more than {past}, the most the client reads",
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

//! Argo CD and Flux judge the operator's objects by their status alone. Here the integrations
//! of `integrations/` judge objects the real operator wrote, exactly as the API server sent
//! them in a watch event, the way both tools read them: `integrations/argocd/health.lua` run by
//! `check.lua` in Debian's Lua 5.1 (the language of the gopher-lua Argo CD runs it in) and 5.4,
//! and `integrations/kstatus-check`, which asks kstatus, Flux's fork of it (what `wait: true`
//! uses) and Flux's evaluator of the `healthCheckExprs` of `integrations/flux/kustomization.yaml`.
//! `tests/control-plane/build.sh integrations` installs the one and builds the other.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use flashback_emulator::Faults;
use flashback_operator::crd::{
    FlashbackAccessKey, FlashbackRepository, ManagementPolicy, RepositoryMode, annotations,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Resource};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::cluster::{DEADLINE, kube_client, kubeconfig_path, test_namespace};
use crate::support::scene::{Scene, ready_message};

/// One tool's judgement of an object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Verdict {
    status: String,
    message: String,
    /// What the tool reported with its status; empty when nothing.
    #[serde(default)]
    error: String,
}

fn verdict(status: &str, message: &str) -> Verdict {
    Verdict {
        status: status.into(),
        message: message.into(),
        error: String::new(),
    }
}

/// What each tool makes of one object.
#[derive(Debug)]
struct Judged {
    /// Argo CD's health, from health.lua.
    argo: Verdict,
    /// sigs.k8s.io/cli-utils' kstatus.
    kstatus: Verdict,
    /// Flux's `healthCheckExprs` of integrations/flux/kustomization.yaml.
    flux: Verdict,
}

/// A tool of `target/control-plane/bin/`, which `build.sh integrations` links there.
fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/control-plane/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run tests/control-plane/build.sh integrations (make control-plane does)",
        path.display()
    );
    path
}

fn integration_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("integrations")
        .join(path)
}

/// Runs `program` with `object` on stdin and reads the JSON line it prints.
fn run_on<T: serde::de::DeserializeOwned>(mut program: Command, object: &Value) -> T {
    let mut child = program
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the program starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(object.to_string().as_bytes())
        .expect("the object is written to stdin");
    let output = child.wait_with_output().expect("the program runs");
    assert!(
        output.status.success(),
        "{program:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{program:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Argo CD's health of the object: the same in Lua 5.1 and 5.4, or the test fails.
fn argo_health(object: &Value) -> Verdict {
    let [lua51, lua54] = ["lua5.1", "lua5.4"].map(|lua| {
        let mut command = Command::new(tool(lua));
        command.arg(integration_file("argocd/check.lua"));
        run_on::<Verdict>(command, object)
    });
    assert_eq!(lua51, lua54, "Lua 5.1 and 5.4 disagree");
    lua51
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KstatusReport {
    kstatus: Verdict,
    flux_kstatus: Verdict,
    flux_cel: Verdict,
}

/// How Argo CD, kstatus and Flux judge `object`.
fn judge(object: &Value) -> Judged {
    let mut command = Command::new(tool("kstatus-check"));
    command
        .arg("-kustomization")
        .arg(integration_file("flux/kustomization.yaml"));
    let report: KstatusReport = run_on(command, object);
    // Flux's `wait: true` uses its fork of kstatus for kinds without expressions: the same code.
    assert_eq!(
        report.flux_kstatus, report.kstatus,
        "Flux's kstatus differs"
    );
    Judged {
        argo: argo_health(object),
        kstatus: report.kstatus,
        flux: report.flux_cel,
    }
}

/// Waits until the object of kind `K` named `name` satisfies `check`, then judges it as the
/// API server sent it: the very object checked, so no later write can slip in between.
async fn judge_when<K: Resource<DynamicType = ()>>(
    scene: &Scene,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Judged {
    let api: Api<DynamicObject> = Api::namespaced_with(
        scene.kube.clone(),
        &scene.namespace,
        &ApiResource::erase::<K>(&()),
    );
    let as_json = |object: &DynamicObject| serde_json::to_value(object).expect("JSON");
    let waited = tokio::time::timeout(
        DEADLINE,
        await_condition(api.clone(), name, |object: Option<&DynamicObject>| {
            object.is_some_and(|o| check(&as_json(o)))
        }),
    )
    .await;
    match waited {
        Ok(Ok(Some(object))) => judge(&as_json(&object)),
        other => panic!(
            "{name} did not become {what} ({other:?}); it is {:#}",
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .map(|o| as_json(&o)["status"].clone())
                .unwrap_or_default()
        ),
    }
}

/// Whether the object has the condition `type_` with this status and reason, at its current
/// generation.
fn has(object: &Value, type_: &str, status: &str, reason: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == type_
                && c["status"] == status
                && c["reason"] == reason
                && c["observedGeneration"] == object["metadata"]["generation"]
        })
}

fn keys(scene: &Scene) -> Api<FlashbackAccessKey> {
    Api::namespaced(scene.kube.clone(), &scene.namespace)
}

fn access_key(name: &str) -> FlashbackAccessKey {
    serde_json::from_value(json!({
        "apiVersion": "flashback.tech/v1alpha1",
        "kind": "FlashbackAccessKey",
        "metadata": {"name": name},
        "spec": {"repositoryRef": {"name": "media"}, "accessType": "WRITE"},
    }))
    .expect("an access key")
}

#[tokio::test]
async fn an_object_the_operator_has_not_seen_is_progressing_for_argo_and_flux() {
    // No operator: the objects stay as the API server stored them, as before an operator that
    // is down, slow or not installed gets to them.
    let scene = Scene::new("int-nostatus").await;
    scene.create(&scene.mirror("media")).await;
    keys(&scene)
        .create(&PostParams::default(), &access_key("app"))
        .await
        .expect("the key object is accepted");
    // The CRD defaults the status to `{observedGeneration: 0}`: nothing the operator wrote.
    let no_status = |o: &Value| o["status"] == json!({"observedGeneration": 0});

    for judged in [
        judge_when::<FlashbackRepository>(&scene, "media", "created", no_status).await,
        judge_when::<FlashbackAccessKey>(&scene, "app", "created", no_status).await,
    ] {
        assert_eq!(
            judged.argo,
            verdict("Progressing", "waiting for the operator")
        );
        // Without the CRD's status default, kstatus would find no condition and no
        // observedGeneration to go by and call the object Current: `wait: true` alone would
        // pass before the operator did anything. With it, generation 1 is not observed yet.
        assert_eq!(judged.kstatus.status, "InProgress", "{judged:?}");
        assert!(
            judged
                .kstatus
                .message
                .ends_with("generation is 1, but latest observed generation is 0"),
            "{judged:?}"
        );
        // Flux's expressions see a status without conditions: not ready, InProgress.
        assert_eq!(judged.flux, verdict("InProgress", ""), "{judged:?}");
    }
}

#[tokio::test]
async fn ready_is_healthy_and_a_generation_not_yet_observed_is_progressing() {
    let mut scene = Scene::with_operator("int-ready").await;
    scene.create(&scene.mirror("media")).await;

    let ready = judge_when::<FlashbackRepository>(&scene, "media", "Ready", |o| {
        has(o, "Ready", "True", "Synced") && o["status"]["observedGeneration"] == 1
    })
    .await;
    assert_eq!(
        ready.argo,
        verdict("Healthy", "the remote repository matches the spec")
    );
    assert_eq!(ready.kstatus, verdict("Current", "Resource is Ready"));
    assert_eq!(ready.flux, verdict("Current", ""));

    // A spec change the operator cannot see (it is down): Ready=True, of generation 1.
    scene.operator().kill_hard();
    scene.patch_spec("media", json!({"mode": "BACKUP"})).await;
    let stale = judge_when::<FlashbackRepository>(&scene, "media", "changed", |o| {
        o["metadata"]["generation"] == 2
    })
    .await;
    assert_eq!(
        stale.argo,
        verdict(
            "Progressing",
            "waiting for the operator to observe generation 2"
        )
    );
    assert_eq!(
        stale.kstatus,
        verdict(
            "InProgress",
            "FlashbackRepository generation is 2, but latest observed generation is 1"
        )
    );
    assert_eq!(stale.flux, verdict("InProgress", ""));
}

#[tokio::test]
async fn paused_repositories_are_suspended_whether_in_step_or_not() {
    let scene = Scene::with_operator("int-paused").await;
    let mut never_created = scene.mirror("never-created");
    never_created
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(annotations::PAUSED.into(), "true".into());
    scene.create(&never_created).await;
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    scene
        .annotate("media", annotations::PAUSED, Some("true"))
        .await;

    let message = "remote writes are paused by the annotation flashback.tech/paused: \"true\"; \
                   the remote repository has not been created";
    let waiting = judge_when::<FlashbackRepository>(&scene, "never-created", "paused", |o| {
        has(o, "Ready", "False", "Paused")
    })
    .await;
    assert_eq!(waiting.argo, verdict("Suspended", message));
    // Ready=False with Reconciling and Stalled False: kstatus goes by Ready.
    assert_eq!(waiting.kstatus, verdict("InProgress", message));
    assert_eq!(waiting.flux, verdict("InProgress", ""));

    let message = "the remote repository matches the spec; remote writes are paused";
    let in_step = judge_when::<FlashbackRepository>(&scene, "media", "paused in step", |o| {
        has(o, "Ready", "True", "Synced") && ready_message(o) == message
    })
    .await;
    assert_eq!(in_step.argo, verdict("Suspended", message));
    assert_eq!(in_step.kstatus, verdict("Current", "Resource is Ready"));
    assert_eq!(in_step.flux, verdict("Current", ""));
}

#[tokio::test]
async fn stalled_and_observe_only_out_of_sync_repositories_are_degraded() {
    let mut scene = Scene::new("int-stalled").await;
    scene.start_operator(&["--resync-interval", "1h"]);
    let mut unknown_bucket = scene.mirror("unknown-bucket");
    unknown_bucket.spec.buckets[1].bucket_id = Some("no-such-bucket".into());
    scene.create(&unknown_bucket).await;
    let mut no_secret = scene.mirror("no-secret");
    no_secret.spec.credentials_secret_ref.as_mut().unwrap().name = "missing".into();
    scene.create(&no_secret).await;
    let mut observed = scene.mirror("observed");
    let observed_id = scene
        .api
        .create_repo(&flashback_operator::controller::repository::plan::desired(
            &observed,
        ))
        .await
        .expect("the remote repository exists");
    observed.spec.management_policy = ManagementPolicy::ObserveOnly;
    observed.spec.mode = RepositoryMode::Backup;
    observed.spec.buckets[0].master = false;
    observed
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("flashback.tech/repo-id".into(), observed_id);
    scene.create(&observed).await;

    let message = "the Flashback API refused the repository with NOT_FOUND: \
                   bucket no-such-bucket not found";
    let judged = judge_when::<FlashbackRepository>(&scene, "unknown-bucket", "stalled", |o| {
        has(o, "Stalled", "True", "SpecRejected")
    })
    .await;
    assert_eq!(judged.argo, verdict("Degraded", message));
    assert_eq!(judged.kstatus, verdict("Failed", message));
    assert_eq!(judged.flux, verdict("Failed", ""));

    let message = format!(
        "the credentials Secret {}/missing does not exist",
        scene.namespace
    );
    let judged = judge_when::<FlashbackRepository>(&scene, "no-secret", "stalled", |o| {
        has(o, "Stalled", "True", "SecretNotFound")
    })
    .await;
    assert_eq!(judged.argo, verdict("Degraded", &message));
    assert_eq!(judged.kstatus, verdict("Failed", &message));
    assert_eq!(judged.flux, verdict("Failed", ""));

    let message = "observed the remote repository; it differs from the spec, and \
                   managementPolicy ObserveOnly never writes";
    let judged = judge_when::<FlashbackRepository>(&scene, "observed", "out of sync", |o| {
        has(o, "Ready", "False", "OutOfSync")
    })
    .await;
    assert_eq!(judged.argo, verdict("Degraded", message));
    assert_eq!(judged.kstatus, verdict("InProgress", message));
    assert_eq!(judged.flux, verdict("InProgress", ""));
}

#[tokio::test]
async fn buckets_are_judged_as_repositories_are() {
    use crate::buckets::{bucket, create_bucket, put_cloud_secret};
    use flashback_operator::crd::FlashbackBucket;
    let mut scene = Scene::new("int-buckets").await;
    scene.start_operator(&["--resync-interval", "1h"]);
    put_cloud_secret(&scene, "cloud-secret-integrations-01").await;
    create_bucket(&scene, &bucket("photos")).await;
    // The scene registered `primary` (cloud bucket `primary-cloud`, eu-west-1): observed by
    // annotation under ObserveOnly, with a region that differs.
    let mut observed = bucket("primary");
    observed
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("flashback.tech/bucket-id".into(), scene.buckets[0].clone());
    observed.spec.bucket = "primary-cloud".into();
    observed.spec.region = Some("us-west-2".into());
    observed.spec.management_policy = ManagementPolicy::ObserveOnly;
    create_bucket(&scene, &observed).await;
    let mut paused = bucket("paused");
    paused
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("flashback.tech/paused".into(), "true".into());
    create_bucket(&scene, &paused).await;

    // Each judged as the API server sent it; its Ready message, read back (the resync is an
    // hour: nothing rewrites it meanwhile), is the one Argo CD shows.
    let api: Api<FlashbackBucket> = Api::namespaced(scene.kube.clone(), &scene.namespace);
    let message_of = |name: &'static str| {
        let api = api.clone();
        async move {
            let object = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
            ready_message(&object).to_owned()
        }
    };
    let judged = judge_when::<FlashbackBucket>(&scene, "photos", "Ready", |o| {
        has(o, "Ready", "True", "Synced")
    })
    .await;
    let message = message_of("photos").await;
    assert_eq!(judged.argo, verdict("Healthy", &message));
    assert_eq!(judged.kstatus, verdict("Current", "Resource is Ready"));
    assert_eq!(judged.flux, verdict("Current", ""));

    let judged = judge_when::<FlashbackBucket>(&scene, "primary", "out of sync", |o| {
        has(o, "Ready", "False", "OutOfSync")
    })
    .await;
    let message = message_of("primary").await;
    assert_eq!(judged.argo, verdict("Degraded", &message));
    assert_eq!(judged.kstatus, verdict("InProgress", &message));
    assert_eq!(judged.flux, verdict("InProgress", ""));

    let judged = judge_when::<FlashbackBucket>(&scene, "paused", "paused", |o| {
        has(o, "Ready", "False", "Paused")
    })
    .await;
    let message = message_of("paused").await;
    assert_eq!(judged.argo, verdict("Suspended", &message));
}

#[tokio::test]
async fn a_repository_retrying_through_503s_is_progressing() {
    let mut scene = Scene::new("int-503").await;
    let unavailable: Faults = serde_json::from_value(json!({
        "failNext": {"count": 100000, "status": 503, "route": {"method": "POST", "route": "/repo"}}
    }))
    .unwrap();
    scene.control.set_faults(&unavailable).await.unwrap();
    scene.start_operator(&[]);
    scene.create(&scene.mirror("media")).await;

    // The client's four attempts, each refused; the reconcile is then tried again.
    let message = "could not create the repository, will retry: gave up after 4 attempts: \
                   transient failure (HTTP 503): injected fault (HTTP 503)";
    let judged = judge_when::<FlashbackRepository>(&scene, "media", "retrying", |o| {
        has(o, "Reconciling", "True", "RemoteUnavailable")
    })
    .await;
    assert_eq!(judged.argo, verdict("Progressing", message));
    assert_eq!(judged.kstatus, verdict("InProgress", message));
    assert_eq!(judged.flux, verdict("InProgress", ""));
}

#[tokio::test]
async fn an_access_key_progresses_while_its_repository_is_missing_then_is_healthy() {
    let scene = Scene::with_operator("int-key").await;
    keys(&scene)
        .create(&PostParams::default(), &access_key("app"))
        .await
        .expect("the key object is accepted");

    let message = "waiting for the FlashbackRepository media in this namespace to exist";
    let waiting = judge_when::<FlashbackAccessKey>(&scene, "app", "waiting", |o| {
        has(o, "Reconciling", "True", "RepositoryNotFound")
    })
    .await;
    assert_eq!(waiting.argo, verdict("Progressing", message));
    assert_eq!(waiting.kstatus, verdict("InProgress", message));
    assert_eq!(waiting.flux, verdict("InProgress", ""));

    scene.create(&scene.mirror("media")).await;
    let ready = judge_when::<FlashbackAccessKey>(&scene, "app", "Ready", |o| {
        has(o, "Ready", "True", "Synced")
    })
    .await;
    assert_eq!(
        ready.argo,
        verdict(
            "Healthy",
            "the Secret app holds a live WRITE key of the repository"
        )
    );
    assert_eq!(ready.kstatus, verdict("Current", "Resource is Ready"));
    assert_eq!(ready.flux, verdict("Current", ""));
}

#[tokio::test]
async fn the_documented_patch_puts_health_lua_under_every_key_of_argocd_cm() {
    let kube = kube_client().await;
    let namespace = test_namespace(&kube, "int-argocd-cm").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(kube, &namespace);
    // argocd-cm as an Argo CD installation leaves it, with a setting of its own.
    let installed: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "argocd-cm"},
        "data": {"url": "https://argocd.example.com"},
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &installed)
        .await
        .expect("argocd-cm is created");

    // The command of integrations/argocd/README.md, in this namespace rather than argocd.
    let patched = Command::new(tool("kubectl"))
        .args([
            "-n",
            &namespace,
            "patch",
            "configmap",
            "argocd-cm",
            "--patch-file",
        ])
        .arg(integration_file("argocd/argocd-cm.yaml"))
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("kubectl runs");
    assert!(
        patched.status.success(),
        "kubectl patch failed: {}",
        String::from_utf8_lossy(&patched.stderr)
    );

    let data = config_maps
        .get("argocd-cm")
        .await
        .expect("argocd-cm is read")
        .data
        .unwrap_or_default();
    assert_eq!(
        data.get("url").map(String::as_str),
        Some("https://argocd.example.com"),
        "the patch keeps Argo CD's own settings"
    );
    let script = std::fs::read_to_string(integration_file("argocd/health.lua")).unwrap();
    for kind in [
        "FlashbackRepository",
        "FlashbackBucket",
        "FlashbackAccessKey",
    ] {
        let key = format!("resource.customizations.health.flashback.tech_{kind}");
        assert_eq!(
            data.get(&key),
            Some(&script),
            "{key} is not integrations/argocd/health.lua as it is"
        );
    }
}

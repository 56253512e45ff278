//! One end-to-end scene: a namespace on the real API server, an emulator process with two
//! buckets, a token Secret, and (optionally) the operator watching that namespace.

use flashback_client::{ClientConfig, FlashbackClient, Repo, RepoFilter, RetryPolicy, Token};
use flashback_emulator::control::{EmulatorControl, EmulatorProcess};
use flashback_operator::crd::FlashbackRepository;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

use super::cluster::{DEADLINE, kube_client, test_namespace};
use super::operator::Operator;

pub const WORKSPACE: &str = "ws-e2e";
pub const SECRET: &str = "flashback-token";

pub struct Scene {
    pub kube: Client,
    pub namespace: String,
    pub repos: Api<FlashbackRepository>,
    pub token: String,
    pub emulator: EmulatorProcess,
    pub control: EmulatorControl,
    /// A client of the emulator with the scene's token, for checking what the operator did.
    pub api: FlashbackClient,
    pub buckets: [String; 2],
    pub operator: Option<Operator>,
}

impl Scene {
    /// Everything but the operator: call [`Scene::start_operator`] when the test is ready.
    pub async fn new(prefix: &str) -> Self {
        let kube = kube_client().await;
        install_crd(&kube).await;
        let namespace = test_namespace(&kube, prefix).await;
        let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
        let emulator = EmulatorProcess::spawn(super::emulator_bin(), &[&token], None)
            .await
            .expect("the emulator starts");
        let control = emulator.control();
        let mut config = ClientConfig::new(
            emulator.base_url().parse().unwrap(),
            Token::new(token.clone()),
        );
        config.retry = RetryPolicy::never();
        let api = FlashbackClient::new(config).expect("client");
        let mut buckets = Vec::new();
        for name in ["primary", "replica"] {
            let id = api
                .create_bucket(&super::bucket_write(name, WORKSPACE))
                .await
                .expect("bucket is created");
            buckets.push(id);
        }
        let scene = Self {
            repos: Api::namespaced(kube.clone(), &namespace),
            kube,
            namespace,
            token,
            emulator,
            control,
            api,
            buckets: buckets.try_into().unwrap(),
            operator: None,
        };
        scene.put_token_secret(&scene.token.clone()).await;
        scene
    }

    /// A scene with the operator already running.
    pub async fn with_operator(prefix: &str) -> Self {
        let mut scene = Self::new(prefix).await;
        scene.start_operator(&[]);
        scene
    }

    pub fn start_operator(&mut self, extra: &[&str]) {
        self.operator = Some(Operator::start(
            &self.namespace,
            self.emulator.base_url(),
            extra,
        ));
    }

    /// Starts the operator armed to stop for good at `failpoint` (one of
    /// `src/controller/failpoint.rs`, armed by the environment, never by a flag).
    pub fn start_operator_at_failpoint(&mut self, failpoint: &str) {
        self.operator = Some(Operator::start_as(
            &super::cluster::kubeconfig_path(),
            &[("FLASHBACK_FAILPOINT".into(), failpoint.into())],
            &self.namespace,
            self.emulator.base_url(),
            &[],
        ));
    }

    pub fn operator(&mut self) -> &mut Operator {
        self.operator.as_mut().expect("the operator was started")
    }

    /// Creates or replaces the token Secret named by the example objects.
    pub async fn put_token_secret(&self, token: &str) {
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), &self.namespace);
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET},
            "stringData": {"token": token},
        }))
        .unwrap();
        secrets
            .patch(
                SECRET,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&secret),
            )
            .await
            .expect("the token Secret is written");
    }

    /// Writes the Secret `name` afresh with exactly `data` (deleted first when it exists, so
    /// that no key of before is left), as a person replacing it would.
    pub async fn put_secret(&self, name: &str, data: &[(&str, &str)]) {
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), &self.namespace);
        let _ = secrets.delete(name, &Default::default()).await;
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| {
                        (
                            (*k).to_owned(),
                            k8s_openapi::ByteString(v.as_bytes().to_vec()),
                        )
                    })
                    .collect(),
            ),
            ..Secret::default()
        };
        let deadline = std::time::Instant::now() + DEADLINE;
        // A delete may take a moment to finish: create until the name is free.
        loop {
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(_) => return,
                Err(kube::Error::Api(status))
                    if status.code == 409 && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(error) => panic!("the Secret {name} is not written: {error}"),
            }
        }
    }

    /// A MIRROR repository over the scene's two buckets, as a person would write it.
    pub fn mirror(&self, name: &str) -> FlashbackRepository {
        serde_saphyr::from_str(&format!(
            r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackRepository
metadata:
  name: {name}
spec:
  workspaceId: {WORKSPACE}
  storageType: S3
  mode: MIRROR
  buckets:
    - bucketId: {primary}
      folder: media
      master: true
    - bucketId: {replica}
  credentialsSecretRef:
    name: {SECRET}
"#,
            primary = self.buckets[0],
            replica = self.buckets[1],
        ))
        .expect("example YAML")
    }

    /// A repository of `mode` (no master: BACKUP or NORMAL) over the scene's two buckets in
    /// the given folders, authenticated by the Secret `secret`.
    pub fn over_both_buckets(
        &self,
        name: &str,
        mode: &str,
        folders: [&str; 2],
        secret: &str,
    ) -> FlashbackRepository {
        serde_saphyr::from_str(&format!(
            r#"
apiVersion: flashback.tech/v1alpha1
kind: FlashbackRepository
metadata:
  name: {name}
spec:
  workspaceId: {WORKSPACE}
  storageType: S3
  mode: {mode}
  buckets:
    - bucketId: {primary}
      folder: {first}
    - bucketId: {replica}
      folder: {second}
  credentialsSecretRef:
    name: {secret}
"#,
            primary = self.buckets[0],
            replica = self.buckets[1],
            first = folders[0],
            second = folders[1],
        ))
        .expect("example YAML")
    }

    pub async fn create(&self, repo: &FlashbackRepository) -> FlashbackRepository {
        self.repos
            .create(&PostParams::default(), repo)
            .await
            .expect("the object is accepted")
    }

    /// Merges `spec` into the object's spec, as `kubectl patch --type merge` would.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.repos
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("spec change is accepted");
    }

    /// Sets (or, with `None`, removes) an annotation of an object, as a person would.
    pub async fn annotate(&self, name: &str, key: &str, value: Option<&str>) {
        self.repos
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .expect("annotation is written");
    }

    /// Waits until `check` holds for the object, or fails with its last status.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&FlashbackRepository) -> bool,
    ) -> FlashbackRepository {
        self.wait_for_within(DEADLINE, name, what, check).await
    }

    /// [`Scene::wait_for`] with its own deadline.
    pub async fn wait_for_within(
        &self,
        deadline: std::time::Duration,
        name: &str,
        what: &str,
        check: impl Fn(&FlashbackRepository) -> bool,
    ) -> FlashbackRepository {
        let waited = tokio::time::timeout(
            deadline,
            await_condition(
                self.repos.clone(),
                name,
                |obj: Option<&FlashbackRepository>| obj.is_some_and(&check),
            ),
        )
        .await;
        match waited {
            Ok(Ok(Some(repo))) => repo,
            Ok(other) => panic!("watching {name} failed: {other:?}"),
            Err(_) => {
                let now = self.repos.get_opt(name).await.ok().flatten();
                panic!(
                    "{name} did not become {what} within {deadline:?}; its status is {:#?}",
                    now.and_then(|r| r.status)
                )
            }
        }
    }

    /// Waits for Ready=True at the object's current generation.
    pub async fn wait_ready(&self, name: &str) -> FlashbackRepository {
        self.wait_for(name, "Ready", |repo| {
            condition(repo, "Ready").is_some_and(|c| c.status == "True")
                && repo.status.as_ref().and_then(|s| s.observed_generation)
                    == repo.metadata.generation
        })
        .await
    }

    /// Waits for Stalled=True with the given reason.
    pub async fn wait_stalled(&self, name: &str, reason: &str) -> FlashbackRepository {
        self.wait_for(name, &format!("Stalled ({reason})"), |repo| {
            condition(repo, "Stalled").is_some_and(|c| c.status == "True" && c.reason == reason)
        })
        .await
    }

    /// Waits until the object is gone from the API server (its finalizer released).
    pub async fn wait_gone(&self, name: &str) {
        let Some(uid) = self
            .repos
            .get_opt(name)
            .await
            .expect("get")
            .and_then(|r| r.metadata.uid)
        else {
            return;
        };
        tokio::time::timeout(
            DEADLINE,
            await_condition(self.repos.clone(), name, conditions::is_deleted(&uid)),
        )
        .await
        .unwrap_or_else(|_| panic!("{name} was not released within {DEADLINE:?}"))
        .expect("watching the object works");
    }

    /// Every repository the emulator holds for the scene's token.
    pub async fn remote_repos(&self) -> Vec<Repo> {
        self.api
            .list_repos(&RepoFilter::default())
            .await
            .expect("the emulator lists repositories")
    }

    /// Calls of `method` on `route` the emulator answered so far.
    pub async fn calls(&self, method: &str, route: &str) -> u64 {
        self.control
            .calls()
            .await
            .expect("call counters")
            .count(method, route)
    }

    /// Whether an Event with this reason is recorded for the object, waiting for it a few
    /// seconds: the operator publishes an Event once the status write it announces is in, so
    /// a test that saw the status may look a moment before the Event exists.
    pub async fn has_event(&self, name: &str, reason: &str) -> bool {
        let prefix = format!("{reason}:");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if self
                .events(name)
                .await
                .iter()
                .any(|e| e.starts_with(&prefix))
            {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The object's Events (as [`Scene::events`]) once one with this reason is among them.
    pub async fn events_with(&self, name: &str, reason: &str) -> Vec<String> {
        assert!(
            self.has_event(name, reason).await,
            "no {reason} Event for {name}: {:?}",
            self.events(name).await
        );
        self.events(name).await
    }

    /// Events recorded for an object, as "Reason: note" lines.
    pub async fn events(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.kube.clone(), &self.namespace);
        events
            .list(&Default::default())
            .await
            .expect("events are listed")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                )
            })
            .collect()
    }
}

pub fn condition<'a>(
    repo: &'a FlashbackRepository,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    repo.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Applies the operator's CRDs (generated from the Rust types) and waits until they are served.
pub async fn install_crd(kube: &Client) {
    apply_crds(
        kube,
        flashback_operator::crd::crds()
            .into_iter()
            .map(|(_, crd)| crd),
    )
    .await;
}

/// Applies CRDs (server-side, forced) and waits until each is served.
pub async fn apply_crds(kube: &Client, crds: impl IntoIterator<Item = CustomResourceDefinition>) {
    let api: Api<CustomResourceDefinition> = Api::all(kube.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("the CRD is applied");
        tokio::time::timeout(
            DEADLINE,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("the CRD is Established in time")
        .expect("watching the CRD works");
    }
}

/// The message of an object's Ready condition (any kind, as JSON), empty when it has none.
pub fn ready_message(object: &serde_json::Value) -> &str {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
}

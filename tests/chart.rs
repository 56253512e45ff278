//! The Helm chart `charts/flashback-operator/`, checked with the real `helm` and the real API
//! server: it lints, renders objects the API server accepts, refuses bad values with a message
//! naming them, ships the CRD of `crds/`, and grants the operator exactly the permissions it
//! uses — enough for the real operator, running as the chart's ServiceAccount, to make a
//! repository Ready.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::Deserialize as _;

use crate::support::cluster::{kube_client, kubeconfig_path, test_namespace};
use crate::support::operator::Operator;
use crate::support::scene::{Scene, WORKSPACE};

const CHART: &str = "charts/flashback-operator";
const CRD_FILE: &str = "flashbackrepositories.flashback.tech.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let path = root().join("target/control-plane/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing; run tests/control-plane/build.sh all (make test does)",
        path.display()
    );
    path
}

/// Runs a tool, feeding `stdin`, and returns its output whatever its exit status.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .expect("stdin is written");
    }
    child.wait_with_output().expect("the tool finishes")
}

/// Runs a tool that must succeed and returns its stdout.
fn run_ok(program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let output = run(program, args, stdin);
    assert!(
        output.status.success(),
        "{} {} failed: {}\n{}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout),
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn helm(args: &[&str]) -> Output {
    let chart = root().join(CHART);
    let args: Vec<&str> = args
        .iter()
        .map(|a| {
            if *a == CHART {
                chart.to_str().unwrap()
            } else {
                a
            }
        })
        .collect();
    run(&tool("helm"), &args, None)
}

/// A release name no other test uses: cluster-scoped objects are named after it.
fn release(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The API server's version, for `helm template --kube-version` (offline rendering would
/// otherwise assume an old Kubernetes and refuse the chart's kubeVersion).
async fn kube_version(kube: &Client) -> String {
    kube.apiserver_version()
        .await
        .expect("the API server reports its version")
        .git_version
}

/// `helm template` output for a release; `sets` are `--set` arguments.
struct Rendered {
    yaml: String,
    objects: Vec<serde_json::Value>,
}

impl Rendered {
    fn kinds(&self) -> BTreeSet<String> {
        self.objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    fn all(&self, kind: &str) -> Vec<&serde_json::Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &serde_json::Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "expected one {kind}, got {}", all.len());
        all[0]
    }

    /// The operator container's environment, `valueFrom` entries as "<fieldPath>".
    fn env(&self) -> BTreeMap<String, String> {
        self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let value = match e.get("value") {
                    Some(v) => v.as_str().unwrap().to_owned(),
                    None => format!(
                        "<{}>",
                        e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap()
                    ),
                };
                (e["name"].as_str().unwrap().to_owned(), value)
            })
            .collect()
    }

    /// Creates every rendered object on the API server (server-side apply, as the admin).
    fn apply(&self) {
        run_ok(
            &tool("kubectl"),
            &[
                "apply",
                "--server-side",
                "--field-manager=chart-test",
                "-f",
                "-",
            ],
            Some(&self.yaml),
        );
    }
}

fn render(kube_version: &str, release: &str, namespace: &str, sets: &[&str]) -> Rendered {
    let mut args = vec![
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = helm(&args);
    assert!(
        output.status.success(),
        "helm template {sets:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = String::from_utf8(output.stdout).unwrap();
    let objects = serde_yaml::Deserializer::from_str(&yaml)
        .map(|doc| serde_json::Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|o| !o.is_null())
        .collect();
    Rendered { yaml, objects }
}

/// A release in `namespace` that watches only `watched`, without leader election, with
/// `default_secret` (in the release namespace) as its default credentials.
fn render_watching(
    kube_version: &str,
    release: &str,
    namespace: &str,
    watched: &str,
    default_secret: &str,
    extra: &[&str],
) -> Rendered {
    let watch = format!("watchNamespace={watched}");
    let secret = format!("defaultCredentialsSecret.name={default_secret}");
    let mut sets = vec![
        watch.as_str(),
        "leaderElection.enabled=false",
        secret.as_str(),
    ];
    sets.extend(extra);
    render(kube_version, release, namespace, &sets)
}

/// Helm's error when rendering with these values must fail.
fn refused(kube_version: &str, sets: &[&str]) -> String {
    let mut args = vec!["template", "refused", CHART, "--kube-version", kube_version];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = helm(&args);
    assert!(
        !output.status.success(),
        "helm template accepted {sets:?}:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn chart_lints_strictly_in_both_rbac_scopes() {
    for sets in [
        vec![],
        vec![
            "watchNamespace=team-a",
            "leaderElection.enabled=false",
            "defaultCredentialsSecret.name=flashback-token",
        ],
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let output = helm(&args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "helm lint --strict {sets:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
    }
}

#[test]
fn chart_crd_is_the_one_in_crds_and_the_one_the_binary_prints() {
    let chart_copy = std::fs::read(root().join(CHART).join("crds").join(CRD_FILE)).unwrap();
    let source = std::fs::read(root().join("crds").join(CRD_FILE)).unwrap();
    assert!(
        chart_copy == source,
        "{CHART}/crds/{CRD_FILE} differs from crds/{CRD_FILE}; \
         copy it: cp crds/{CRD_FILE} {CHART}/crds/"
    );
    let printed = Command::new(env!("CARGO_BIN_EXE_flashback-operator"))
        .arg("crds")
        .output()
        .expect("flashback-operator crds runs");
    assert!(
        printed.stdout == chart_copy,
        "the chart's CRD differs from `flashback-operator crds`; run make crds and copy it"
    );
    // Helm installs crds/ only on the first install: the chart must say so where people look.
    for file in ["README.md", "values.yaml"] {
        let text = std::fs::read_to_string(root().join(CHART).join(file)).unwrap();
        assert!(
            text.contains("never upgrade") || text.contains("NEVER upgrades"),
            "{file} does not warn that Helm never upgrades the CRD"
        );
    }
}

#[tokio::test]
async fn schema_refuses_bad_values_naming_them() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;

    let typo = refused(&version, &["logFormt=json"]);
    assert!(
        typo.contains("additional properties 'logFormt' not allowed"),
        "{typo}"
    );

    let format = refused(&version, &["logFormat=xml"]);
    assert!(
        format.contains("/logFormat") && format.contains("'json', 'text'"),
        "{format}"
    );

    let replicas = refused(
        &version,
        &["replicaCount=2", "leaderElection.enabled=false"],
    );
    assert!(
        replicas.contains("/replicaCount") && replicas.contains("/leaderElection/enabled"),
        "{replicas}"
    );

    let duration = refused(&version, &["resyncInterval=10 minutes"]);
    assert!(duration.contains("/resyncInterval"), "{duration}");
    let zero = refused(&version, &["statsInterval=0s"]);
    assert!(zero.contains("/statsInterval"), "{zero}");

    let nested = refused(&version, &["leaderElection.enable=false"]);
    assert!(
        nested.contains("additional properties 'enable' not allowed"),
        "{nested}"
    );

    // Two replicas are fine with leader election, and durations may be compound.
    let two = render(
        &version,
        "two",
        "ops",
        &["replicaCount=2", "resyncInterval=1h30m"],
    );
    assert_eq!(two.one("Deployment")["spec"]["replicas"], 2);
    assert_eq!(two.env()["FLASHBACK_RESYNC_INTERVAL"], "1h30m");
}

#[tokio::test]
async fn default_render_is_accepted_by_the_api_server() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    let namespace = test_namespace(&kube, "chart").await;
    let release = release("fb");
    let rendered = render(&version, &release, &namespace, &[]);

    let expected: BTreeSet<String> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    .map(String::from)
    .into();
    assert_eq!(rendered.kinds(), expected);

    // The values a user would expect, on the way to the binary.
    let env = rendered.env();
    for (name, value) in [
        ("FLASHBACK_API_URL", "https://backend.flashback.tech"),
        ("FLASHBACK_RESYNC_INTERVAL", "10m"),
        ("FLASHBACK_STATS_INTERVAL", "5m"),
        ("FLASHBACK_CONCURRENCY", "16"),
        ("FLASHBACK_NAMESPACE_CONCURRENCY", "4"),
        ("FLASHBACK_LOG_FORMAT", "json"),
        ("FLASHBACK_METRICS_ADDRESS", "0.0.0.0:8080"),
        ("FLASHBACK_LEADER_ELECTION", "true"),
        ("FLASHBACK_LEADER_ELECTION_NAMESPACE", namespace.as_str()),
        ("POD_NAME", "<metadata.name>"),
        ("POD_NAMESPACE", "<metadata.namespace>"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    assert!(!env.contains_key("FLASHBACK_WATCH_NAMESPACE"), "{env:?}");
    assert!(
        !env.contains_key("FLASHBACK_ALLOWED_API_HOSTS"),
        "a tenant's Secret may name no API URL unless the values allow one: {env:?}"
    );
    assert!(!env.contains_key("FLASHBACK_DEFAULT_CREDENTIALS_SECRET"));

    for object in &rendered.objects {
        let labels = &object["metadata"]["labels"];
        for label in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                labels.get(label).is_some(),
                "{} lacks label {label}",
                object["kind"]
            );
        }
    }

    rendered.apply();

    // What the API server now holds (after its defaulting) is what the chart meant.
    let fullname = format!("{release}-flashback-operator");
    let deployment = Api::<Deployment>::namespaced(kube.clone(), &namespace)
        .get(&fullname)
        .await
        .expect("the Deployment was created");
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(fullname.as_str()));
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(
        pod_security.seccomp_profile.unwrap().type_,
        "RuntimeDefault"
    );
    let container = &pod.containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.capabilities.unwrap().drop,
        Some(vec!["ALL".to_owned()])
    );
    let port = &container.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("metrics"), 8080)
    );
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = probe.clone().unwrap().http_get.unwrap();
        (get.path.unwrap(), get.port)
    };
    let metrics_port =
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into());
    assert_eq!(
        probe_path(&container.liveness_probe),
        ("/healthz".to_owned(), metrics_port.clone())
    );
    assert_eq!(
        probe_path(&container.readiness_probe),
        ("/readyz".to_owned(), metrics_port.clone())
    );
    let resources = container.resources.clone().unwrap();
    assert_eq!(resources.requests.unwrap()["memory"].0, "64Mi");
    assert_eq!(resources.limits.unwrap()["memory"].0, "256Mi");

    let service = Api::<Service>::namespaced(kube.clone(), &namespace)
        .get(&format!("{fullname}-metrics"))
        .await
        .expect("the metrics Service was created");
    let service_port = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!(service_port.name.as_deref(), Some("metrics"));
    assert_eq!(service_port.target_port, Some(metrics_port));

    let binding = Api::<ClusterRoleBinding>::all(kube.clone())
        .get(&fullname)
        .await
        .expect("the ClusterRoleBinding was created");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (fullname.as_str(), Some(namespace.as_str()))
    );
}

#[tokio::test]
async fn namespaced_render_scopes_rbac_and_can_add_a_service_monitor() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    let namespace = test_namespace(&kube, "chart-ops").await;
    let watched = test_namespace(&kube, "chart-team").await;
    let release = release("fbns");
    let rendered = render_watching(
        &version,
        &release,
        &namespace,
        &watched,
        "flashback-default",
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.interval=15s",
        ],
    );
    let kinds = rendered.kinds();
    assert!(!kinds.contains("ClusterRole") && !kinds.contains("ClusterRoleBinding"));
    let role_namespaces: BTreeSet<&str> = rendered
        .all("Role")
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(
        role_namespaces,
        [namespace.as_str(), watched.as_str()].into(),
        "a Role in the watched namespace and one for the default Secret, none for leases"
    );
    let env = rendered.env();
    assert_eq!(env["FLASHBACK_WATCH_NAMESPACE"], watched);
    assert_eq!(
        env["FLASHBACK_DEFAULT_CREDENTIALS_SECRET"],
        format!("{namespace}/flashback-default")
    );
    assert_eq!(env["FLASHBACK_LEADER_ELECTION"], "false");
    assert!(!env.contains_key("FLASHBACK_LEADER_ELECTION_LEASE"));
    // Without leader election an old and a new pod must not run side by side.
    assert_eq!(
        rendered.one("Deployment")["spec"]["strategy"]["type"],
        "Recreate"
    );

    // The ServiceMonitor's CRD is not on the test server: check what it would scrape.
    let monitor = rendered.one("ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
    let service = rendered.one("Service");
    assert!(
        monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| service["metadata"]["labels"][k] == *v),
        "the ServiceMonitor selects the metrics Service"
    );

    // Everything but the ServiceMonitor is accepted by the API server.
    let without_monitor = render_watching(
        &version,
        &release,
        &namespace,
        &watched,
        "flashback-default",
        &[],
    );
    without_monitor.apply();
}

#[tokio::test]
async fn helm_install_and_upgrade_work_against_the_api_server() {
    let kube = kube_client().await;
    let namespace = test_namespace(&kube, "chart-install").await;
    let release = release("fbinst");
    let ns = namespace.as_str();
    let rel = release.as_str();

    let install = helm(&["install", rel, CHART, "--namespace", ns]);
    let notes = String::from_utf8_lossy(&install.stdout);
    assert!(
        install.status.success(),
        "helm install failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(notes.contains("never upgrades CRDs"), "{notes}");

    let deployments: Api<Deployment> = Api::namespaced(kube.clone(), ns);
    let fullname = format!("{release}-flashback-operator");
    let log_format = |deployment: Deployment| {
        deployment.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap()
            .into_iter()
            .find(|e| e.name == "FLASHBACK_LOG_FORMAT")
            .and_then(|e| e.value)
    };
    let installed = deployments.get(&fullname).await.expect("installed");
    assert_eq!(log_format(installed).as_deref(), Some("json"));

    let upgrade = helm(&[
        "upgrade",
        rel,
        CHART,
        "--namespace",
        ns,
        "--reuse-values",
        "--set",
        "logFormat=text",
    ]);
    assert!(
        upgrade.status.success(),
        "helm upgrade failed: {}",
        String::from_utf8_lossy(&upgrade.stderr)
    );
    let upgraded = deployments.get(&fullname).await.expect("upgraded");
    assert_eq!(log_format(upgraded).as_deref(), Some("text"));

    // A misspelt value is refused before anything changes on the server.
    let typo = helm(&[
        "upgrade",
        rel,
        CHART,
        "--namespace",
        ns,
        "--reuse-values",
        "--set",
        "replicas=2",
    ]);
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("'replicas' not allowed"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
    let history = helm(&["history", rel, "--namespace", ns, "--output", "json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(2),
        "no third revision: {history}"
    );
}

/// A ServiceAccount token (TokenRequest API) and a kubeconfig that uses it.
fn service_account_kubeconfig(namespace: &str, account: &str) -> PathBuf {
    let token = run_ok(
        &tool("kubectl"),
        &[
            "create",
            "token",
            account,
            "--namespace",
            namespace,
            "--duration=1h",
        ],
        None,
    );
    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig_path()).unwrap()).unwrap();
    let cluster = admin["clusters"][0]["cluster"].clone();
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "control-plane", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token.trim()}}],
        "contexts": [{"name": account, "context": {
            "cluster": "control-plane", "user": account, "namespace": namespace}}],
        "current-context": account,
    });
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chart-kubeconfigs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{namespace}-{account}.yaml"));
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();
    path
}

/// Asks the API server, as the identity of `kubeconfig`, whether an action is allowed.
fn can_i(kubeconfig: &Path, args: &[impl AsRef<str>]) -> bool {
    let mut all = vec![
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "auth",
        "can-i",
    ];
    all.extend(args.iter().map(AsRef::as_ref));
    let output = run(&tool("kubectl"), &all, None);
    match String::from_utf8_lossy(&output.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "kubectl auth can-i {all:?} answered {other:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn assert_allowed<S: AsRef<str>>(kubeconfig: &Path, checks: &[impl AsRef<[S]>]) {
    for check in checks {
        let check = check.as_ref();
        assert!(
            can_i(kubeconfig, check),
            "the operator may not {:?}",
            check.iter().map(AsRef::as_ref).collect::<Vec<_>>()
        );
    }
}

fn assert_denied<S: AsRef<str>>(kubeconfig: &Path, checks: &[impl AsRef<[S]>]) {
    for check in checks {
        let check = check.as_ref();
        assert!(
            !can_i(kubeconfig, check),
            "the operator may {:?}",
            check.iter().map(AsRef::as_ref).collect::<Vec<_>>()
        );
    }
}

/// `kubectl auth can-i --list` in a namespace: (resource, resource names, verbs) rows.
type Rules = BTreeSet<(String, String, String)>;

fn rules(kubeconfig: &Path, namespace: &str) -> Rules {
    let listing = run_ok(
        &tool("kubectl"),
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "auth",
            "can-i",
            "--list",
            "--no-headers",
            "--namespace",
            namespace,
        ],
        None,
    );
    listing
        .lines()
        .filter_map(|line| {
            // "RESOURCE [URLS] [NAMES] [VERBS]"; non-resource rows have no RESOURCE.
            let (resource, rest) = line.split_once('[')?;
            let resource = resource.trim();
            if resource.is_empty() {
                return None;
            }
            let groups: Vec<String> = format!("[{rest}")
                .split('[')
                .skip(1)
                .map(|g| {
                    let mut words: Vec<&str> = g.trim().trim_end_matches(']').split(' ').collect();
                    words.retain(|w| !w.is_empty());
                    words.sort_unstable();
                    words.join(" ")
                })
                .collect();
            Some((resource.to_owned(), groups[1].clone(), groups[2].clone()))
        })
        .collect()
}

fn rule(resource: &str, names: &str, verbs: &str) -> (String, String, String) {
    let mut verbs: Vec<&str> = verbs.split(' ').collect();
    verbs.sort_unstable();
    (resource.to_owned(), names.to_owned(), verbs.join(" "))
}

/// A ServiceAccount with no bindings: what every authenticated account may do anyway.
fn baseline_rules(namespace: &str) -> Rules {
    run_ok(
        &tool("kubectl"),
        &[
            "create",
            "serviceaccount",
            "nobody",
            "--namespace",
            namespace,
        ],
        None,
    );
    rules(&service_account_kubeconfig(namespace, "nobody"), namespace)
}

#[tokio::test]
async fn cluster_rbac_allows_what_the_operator_does_and_nothing_more() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    crate::support::scene::install_crd(&kube).await;
    let namespace = test_namespace(&kube, "chart-rbac").await;
    let release = release("fbrbac");
    let rendered = render(&version, &release, &namespace, &[]);
    rendered.apply();
    let account = format!("{release}-flashback-operator");
    let lease = account.clone();
    let config = service_account_kubeconfig(&namespace, &account);

    let repos = "flashbackrepositories.flashback.tech";
    let lease_ref = format!("leases.coordination.k8s.io/{lease}");
    let other_lease = "leases.coordination.k8s.io/someone-else";
    let ns = ["--namespace", namespace.as_str()];
    let elsewhere = ["--namespace", "team-elsewhere"];
    let all = ["--all-namespaces"];
    let with = |args: &[&str], scope: &[&str]| -> Vec<String> {
        args.iter().chain(scope).map(|s| (*s).to_owned()).collect()
    };
    let allowed: Vec<Vec<String>> = vec![
        with(&["get", repos], &elsewhere),
        with(&["list", repos], &all),
        with(&["watch", repos], &all),
        with(&["patch", repos], &elsewhere),
        with(&["get", repos, "--subresource=status"], &elsewhere),
        with(&["get", "namespaces"], &[]),
        with(&["patch", repos, "--subresource=status"], &elsewhere),
        with(&["list", "secrets"], &all),
        with(&["watch", "secrets"], &all),
        with(&["get", "secrets"], &elsewhere),
        with(&["create", "events.events.k8s.io"], &elsewhere),
        with(&["patch", "events.events.k8s.io"], &elsewhere),
        with(&["create", "leases.coordination.k8s.io"], &ns),
        with(&["get", &lease_ref], &ns),
        with(&["update", &lease_ref], &ns),
    ];
    let denied: Vec<Vec<String>> = vec![
        with(&["*", "*"], &all),
        with(&["create", "secrets"], &elsewhere),
        with(&["update", "secrets"], &elsewhere),
        with(&["patch", "secrets"], &elsewhere),
        with(&["delete", "secrets"], &elsewhere),
        with(&["create", repos], &elsewhere),
        with(&["delete", repos], &elsewhere),
        with(&["deletecollection", repos], &elsewhere),
        with(&["update", repos, "--subresource=status"], &elsewhere),
        with(&["update", repos], &elsewhere),
        with(&["list", "namespaces"], &[]),
        with(&["delete", "namespaces"], &[]),
        with(&["get", "configmaps"], &elsewhere),
        with(&["list", "pods"], &all),
        with(&["create", "events"], &elsewhere),
        with(&["delete", "events.events.k8s.io"], &elsewhere),
        with(&["create", "leases.coordination.k8s.io"], &elsewhere),
        with(&["get", &lease_ref], &elsewhere),
        with(&["get", other_lease], &ns),
        with(&["update", other_lease], &ns),
        with(&["list", "leases.coordination.k8s.io"], &ns),
        with(&["delete", &lease_ref], &ns),
        with(
            &["create", "customresourcedefinitions.apiextensions.k8s.io"],
            &[],
        ),
        with(&["create", "clusterrolebindings"], &[]),
    ];
    assert_allowed(&config, &allowed);
    assert_denied(&config, &denied);

    // The whole list, beyond what any account may do: exactly the chart's rules.
    let baseline = baseline_rules(&namespace);
    let granted: Rules = rules(&config, &namespace)
        .difference(&baseline)
        .cloned()
        .collect();
    let expected: Rules = [
        rule(repos, "", "get list watch patch"),
        rule("namespaces", "", "get"),
        rule(&format!("{repos}/status"), "", "get patch"),
        rule("secrets", "", "get list watch"),
        rule("events.events.k8s.io", "", "create patch"),
        rule("leases.coordination.k8s.io", "", "create"),
        rule("leases.coordination.k8s.io", &lease, "get update"),
    ]
    .into();
    assert_eq!(granted, expected);
}

#[tokio::test]
async fn namespaced_rbac_reaches_only_the_watched_namespace_and_the_default_secret() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    crate::support::scene::install_crd(&kube).await;
    let namespace = test_namespace(&kube, "chart-nsrbac").await;
    let watched = test_namespace(&kube, "chart-watched").await;
    let release = release("fbnsrbac");
    let rendered = render_watching(
        &version,
        &release,
        &namespace,
        &watched,
        "flashback-default",
        &[],
    );
    rendered.apply();
    let account = format!("{release}-flashback-operator");
    let config = service_account_kubeconfig(&namespace, &account);
    let repos = "flashbackrepositories.flashback.tech";
    let w = watched.as_str();
    let r = namespace.as_str();

    let allowed: &[&[&str]] = &[
        &["list", repos, "-n", w],
        &["watch", repos, "-n", w],
        &["get", repos, "-n", w],
        &["patch", repos, "-n", w],
        &["patch", repos, "--subresource=status", "-n", w],
        &["list", "secrets", "-n", w],
        &["watch", "secrets", "-n", w],
        &["get", "secrets", "-n", w],
        &["create", "events.events.k8s.io", "-n", w],
        &["patch", "events.events.k8s.io", "-n", w],
        &["get", "secrets/flashback-default", "-n", r],
        &["list", "secrets/flashback-default", "-n", r],
        &["watch", "secrets/flashback-default", "-n", r],
    ];
    assert_allowed(&config, allowed);
    let denied: &[&[&str]] = &[
        &["list", repos, "--all-namespaces"],
        &["list", repos, "-n", r],
        &["get", repos, "-n", "team-elsewhere"],
        &["list", "secrets", "--all-namespaces"],
        &["get", "secrets", "-n", "team-elsewhere"],
        &["list", "secrets", "-n", r],
        &["get", "secrets/another-secret", "-n", r],
        &["delete", "secrets", "-n", w],
        &["create", "secrets", "-n", w],
        &["delete", repos, "-n", w],
        &["update", repos, "-n", w],
        &["create", "events.events.k8s.io", "-n", r],
        // Leader election is off: no Lease at all.
        &["create", "leases.coordination.k8s.io", "-n", r],
        &["get", "leases.coordination.k8s.io", "-n", r],
    ];
    assert_denied(&config, denied);
}

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
    let env: Vec<(String, String)> = rendered
        .env()
        .into_iter()
        .map(|(name, value)| {
            let value = match value.as_str() {
                "<metadata.name>" => pod_name.clone(),
                "<metadata.namespace>" => namespace.clone(),
                _ => value,
            };
            (name, value)
        })
        .collect();
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
    let by_default: flashback_operator::crd::FlashbackRepository = serde_yaml::from_str(&format!(
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

//! The Helm chart `charts/flashback-operator/`, checked with the real `helm` and the real API
//! server: it lints, renders objects the API server accepts, refuses bad values with a message
//! naming them, ships the CRD of `crds/`, and grants the operator exactly the permissions it
//! uses — enough for the real operator, running as the chart's ServiceAccount, to make a
//! repository Ready.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::support::cluster::{DEADLINE, kube_client, kubeconfig_path, test_namespace};
use crate::support::operator::Operator;
use crate::support::scene::{Scene, WORKSPACE};

const CHART: &str = "charts/flashback-operator";
/// Where the chart keeps its copy of `crds/`, which templates/crds.yaml renders.
const CHART_CRDS: &str = "files/crds";
const CRD_NAME: &str = "flashbackrepositories.flashback.tech";

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

    /// The operator container's environment as the kubelet gives it to a pod `pod_name` in
    /// `namespace` (the downward API filled in).
    fn pod_env(&self, pod_name: &str, namespace: &str) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(name, value)| {
                let value = match value.as_str() {
                    "<metadata.name>" => pod_name.to_owned(),
                    "<metadata.namespace>" => namespace.to_owned(),
                    _ => value,
                };
                (name, value)
            })
            .collect()
    }

    /// Creates every rendered object but the CRD on the API server (server-side apply, as
    /// the admin). The CRD is one for the whole server, which every test uses: only
    /// `crd_upgrade_path_works_as_documented` changes it, through Helm as users do.
    fn apply(&self) {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": self
                .objects
                .iter()
                .filter(|o| o["kind"] != "CustomResourceDefinition")
                .collect::<Vec<_>>(),
        });
        run_ok(
            &tool("kubectl"),
            &[
                "apply",
                "--server-side",
                "--field-manager=chart-test",
                "-f",
                "-",
            ],
            Some(&list.to_string()),
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
    let objects = serde_saphyr::from_multiple::<serde_json::Value>(&yaml)
        .expect("rendered YAML parses")
        .into_iter()
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

/// Every value this chart adds for production, set at once: what the lint and the API-server
/// tests below render.
const PRODUCTION_VALUES: &[&str] = &[
    "replicaCount=2",
    "commonLabels.team=storage",
    "commonAnnotations.owner=storage-team",
    "image.repository=registry.example.com/flashback-operator",
    "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "podDisruptionBudget.enabled=true",
    "networkPolicy.enabled=true",
    "networkPolicy.apiServer.cidrs[0]=10.0.0.1/32",
    "networkPolicy.metrics.from[0].namespaceSelector.matchLabels.name=monitoring",
    "topologySpreadConstraints[0].maxSkew=1",
    "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
    "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    "extraVolumes[0].name=private-ca",
    "extraVolumes[0].configMap.name=flashback-ca",
    "extraVolumeMounts[0].name=private-ca",
    "extraVolumeMounts[0].mountPath=/etc/flashback/ca",
    "extraVolumeMounts[0].readOnly=true",
    "extraEnv[0].name=SSL_CERT_FILE",
    "extraEnv[0].value=/etc/flashback/ca/ca.crt",
    "leaderElection.leaseDuration=30s",
    "revisionHistoryLimit=3",
];

#[test]
fn chart_lints_strictly_without_a_single_message() {
    let namespaced = [
        "watchNamespace=team-a",
        "leaderElection.enabled=false",
        "defaultCredentialsSecret.name=flashback-token",
    ];
    let without_crds_and_tenant_roles = ["crds.enabled=false", "rbac.aggregateClusterRoles=false"];
    for sets in [
        &[][..],
        &namespaced[..],
        PRODUCTION_VALUES,
        &without_crds_and_tenant_roles[..],
        MONITORING_VALUES,
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        for set in sets {
            args.extend(["--set", set]);
        }
        let output = helm(&args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "helm lint --strict {sets:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // No [INFO], [WARNING] or [ERROR] line: the whole output is the header and the tally.
        assert_eq!(
            stdout,
            format!(
                "==> Linting {}\n\n1 chart(s) linted, 0 chart(s) failed\n",
                root().join(CHART).display()
            ),
            "helm lint --strict {sets:?}"
        );
    }
}

/// Every JSON value of `expected` is in `actual` (objects may hold more keys: what the API
/// server defaults); `path` names where a difference is.
fn assert_contains(actual: &serde_json::Value, expected: &serde_json::Value, path: &str) {
    match (actual, expected) {
        (serde_json::Value::Object(actual), serde_json::Value::Object(expected)) => {
            for (key, value) in expected {
                let at = format!("{path}.{key}");
                let inner = actual.get(key).unwrap_or_else(|| panic!("{at} is missing"));
                assert_contains(inner, value, &at);
            }
        }
        (serde_json::Value::Array(actual), serde_json::Value::Array(expected)) => {
            assert_eq!(actual.len(), expected.len(), "{path} has another length");
            for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
                assert_contains(a, e, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

/// The documents of a multi-document YAML text.
fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .expect("the YAML parses")
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The files of a directory: name -> bytes.
fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().into_string().unwrap(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// CRDs by name.
fn by_name<'a>(
    crds: impl IntoIterator<Item = &'a serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    crds.into_iter()
        .map(|crd| {
            (
                crd["metadata"]["name"].as_str().unwrap().to_owned(),
                crd.clone(),
            )
        })
        .collect()
}

/// The CRDs of the repository's crds/, by name.
fn crds_dir() -> BTreeMap<String, serde_json::Value> {
    let docs: Vec<serde_json::Value> = files_in(&root().join("crds"))
        .values()
        .flat_map(|bytes| yaml_documents(std::str::from_utf8(bytes).unwrap()))
        .collect();
    by_name(&docs)
}

/// A top-level field of the chart's Chart.yaml, e.g. `version` or `appVersion`.
fn chart_field(name: &str) -> String {
    let manifest: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join(CHART).join("Chart.yaml")).unwrap(),
    )
    .unwrap();
    manifest[name].as_str().unwrap().to_owned()
}

/// The labels every object of a release `release` of this chart carries.
fn standard_labels(release: &str) -> serde_json::Value {
    serde_json::json!({
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/name": "flashback-operator",
        "app.kubernetes.io/part-of": "flashback",
        "app.kubernetes.io/version": chart_field("appVersion"),
        "helm.sh/chart": format!("flashback-operator-{}", chart_field("version")),
    })
}

#[tokio::test]
async fn chart_crd_is_the_one_in_crds_and_the_one_the_binary_prints() {
    let source = files_in(&root().join("crds"));
    let chart_copy = files_in(&root().join(CHART).join(CHART_CRDS));
    assert!(
        chart_copy == source,
        "{CHART}/{CHART_CRDS}/ differs from crds/ (files {:?} and {:?}); copy it: \
         cp crds/*.yaml {CHART}/{CHART_CRDS}/",
        chart_copy.keys(),
        source.keys()
    );
    let printed = Command::new(env!("CARGO_BIN_EXE_flashback-operator"))
        .arg("crds")
        .output()
        .expect("flashback-operator crds runs");
    let printed = by_name(&yaml_documents(
        std::str::from_utf8(&printed.stdout).unwrap(),
    ));
    let files = crds_dir();
    assert!(
        printed == files,
        "crds/ differs from `flashback-operator crds` (CRDs {:?} and {:?}); run make crds",
        files.keys(),
        printed.keys()
    );
    // A crds/ directory would be installed by Helm before the templates, which then could not
    // take the CRD over: the chart's CRDs live in templates only.
    assert!(
        !root().join(CHART).join("crds").exists(),
        "{CHART}/crds/ exists; the chart's CRDs belong in {CHART}/{CHART_CRDS}/"
    );

    // What the chart renders is those CRDs, plus the release's labels and the keep policy.
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    let rendered = render(&version, "fb", "ops", &[]);
    let crds = by_name(rendered.all("CustomResourceDefinition"));
    assert_eq!(
        crds.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>()
    );
    for (name, crd) in &crds {
        let file = &files[name];
        assert_eq!(crd["spec"], file["spec"], "{name}");
        assert_eq!(
            (&crd["apiVersion"], &crd["kind"]),
            (&file["apiVersion"], &file["kind"])
        );
        assert_eq!(crd["metadata"]["labels"], standard_labels("fb"));
        assert_eq!(
            crd["metadata"]["annotations"],
            serde_json::json!({"helm.sh/resource-policy": "keep"})
        );
        assert_eq!(
            crd["metadata"].as_object().unwrap().len(),
            3,
            "name, labels and annotations only: {}",
            crd["metadata"]
        );
    }

    // crds.keep=false: no keep policy (uninstall deletes it); crds.enabled=false: no CRD.
    let unkept = render(&version, "fb", "ops", &["crds.keep=false"]);
    assert!(
        unkept
            .all("CustomResourceDefinition")
            .iter()
            .all(|crd| crd["metadata"].get("annotations").is_none())
    );
    let without = render(&version, "fb", "ops", &["crds.enabled=false"]);
    assert!(
        without.all("CustomResourceDefinition").is_empty(),
        "{:?}",
        without.kinds()
    );
    assert!(!without.yaml.contains("CustomResourceDefinition"));

    // commonLabels and commonAnnotations reach the CRD too, and never replace the keep policy.
    let common = render(
        &version,
        "fb",
        "ops",
        &[
            "commonLabels.team=storage",
            "commonAnnotations.helm\\.sh/resource-policy=delete",
        ],
    );
    for crd in common.all("CustomResourceDefinition") {
        assert_eq!(crd["metadata"]["labels"]["team"], "storage");
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
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

    // The values this chart added for production, each refused with its name.
    for (sets, named) in [
        (
            &["crds.enable=false"][..],
            "additional properties 'enable' not allowed",
        ),
        (&["crds.keep=yes"], "/crds/keep"),
        (&["image.digest=0123abcd"], "/image/digest"),
        (
            &["leaderElection.leaseDuration=0s"],
            "/leaderElection/leaseDuration",
        ),
        (&["revisionHistoryLimit=-1"], "/revisionHistoryLimit"),
        (&["commonLabels.team=1"], "/commonLabels/team"),
        (
            &["podDisruptionBudget.maxUnavailable=half"],
            "/podDisruptionBudget/maxUnavailable",
        ),
        (
            &["podDisruptionBudget.minAvailable=-1"],
            "/podDisruptionBudget/minAvailable",
        ),
        (
            &["networkPolicy.apiServer.cidrs[0]=10.0.0.1"],
            "/networkPolicy/apiServer/cidrs/0",
        ),
        (
            &["networkPolicy.flashbackApi.ports[0]=0"],
            "/networkPolicy/flashbackApi/ports/0",
        ),
        (
            &["rbac.aggregateClusterRole=false"],
            "additional properties 'aggregateClusterRole' not allowed",
        ),
        (&["extraVolumeMounts[0].name=ca"], "/extraVolumeMounts/0"),
        (
            &[
                "topologySpreadConstraints[0].maxSkew=1",
                "topologySpreadConstraints[0].topologyKey=zone",
            ],
            "/topologySpreadConstraints/0",
        ),
    ] {
        let error = refused(&version, sets);
        assert!(error.contains(named), "{sets:?}: {error}");
    }
    let host_network = refused(
        &version,
        &["networkPolicy.enabled=true", "hostNetwork=true"],
    );
    assert!(
        host_network.contains("networkPolicy.enabled has no effect with hostNetwork"),
        "{host_network}"
    );

    // Two replicas are fine with leader election, and durations may be compound.
    let two = render(
        &version,
        "two",
        "ops",
        &[
            "replicaCount=2",
            "resyncInterval=1h30m",
            "terminationGracePeriodSeconds=2",
        ],
    );
    assert_eq!(two.one("Deployment")["spec"]["replicas"], 2);
    assert_eq!(two.env()["FLASHBACK_RESYNC_INTERVAL"], "1h30m");
    assert_eq!(
        two.env()["FLASHBACK_SHUTDOWN_GRACE"],
        "1s",
        "a third of the grace period, at least a second"
    );
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
        "CustomResourceDefinition",
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
        ("FLASHBACK_LEADER_ELECTION_LEASE_DURATION", "15s"),
        // A third of terminationGracePeriodSeconds (30).
        ("FLASHBACK_SHUTDOWN_GRACE", "10s"),
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
        let at = format!("{} labels", object["kind"]);
        assert_contains(
            &object["metadata"]["labels"],
            &standard_labels(&release),
            &at,
        );
    }
    // The defaults add none of the opt-in objects, and no annotation but the CRD's keep.
    assert!(
        rendered
            .objects
            .iter()
            .filter(|o| o["kind"] != "CustomResourceDefinition")
            .all(|o| o["metadata"].get("annotations").is_none())
    );

    rendered.apply();

    // What the API server now holds (after its defaulting) is what the chart meant.
    let fullname = format!("{release}-flashback-operator");
    let deployment = Api::<Deployment>::namespaced(kube.clone(), &namespace)
        .get(&fullname)
        .await
        .expect("the Deployment was created");
    let deployment_spec = deployment.spec.unwrap();
    assert_eq!(deployment_spec.revision_history_limit, Some(10));
    let pod = deployment_spec.template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some(format!("localhost/flashback-operator:{}", chart_field("appVersion")).as_str())
    );
    assert_eq!(pod.topology_spread_constraints, None);
    assert_eq!(pod.volumes, None);
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
    // Nothing cluster-wide is granted to the operator: the only ClusterRoles are the tenants'
    // (aggregated into view, edit and admin), and nothing binds them.
    assert!(rendered.all("ClusterRoleBinding").is_empty());
    let cluster_roles: BTreeSet<&str> = rendered
        .all("ClusterRole")
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cluster_roles,
        [
            format!("{release}-flashback-operator-edit").as_str(),
            format!("{release}-flashback-operator-view").as_str(),
        ]
        .into()
    );
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

    // The CRD is the server's, and crd_upgrade_path_works_as_documented hands it to a release
    // of its own: this release leaves it alone, as a second release in a cluster must.
    let install = helm(&[
        "install",
        rel,
        CHART,
        "--namespace",
        ns,
        "--set",
        "crds.enabled=false",
        // Watching every namespace, its finalizer policy would reach the objects other tests
        // make side by side; chart::finalizer_policy_* tests the policy in a namespace of its own.
        "--set",
        "finalizerPolicy.enabled=false",
    ]);
    let notes = String::from_utf8_lossy(&install.stdout);
    assert!(
        install.status.success(),
        "helm install failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(
        notes.contains("crds.enabled is false, so this release never installs or upgrades the CRD"),
        "{notes}"
    );

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
    let admin: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig_path()).unwrap()).unwrap();
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
    std::fs::write(&path, serde_saphyr::to_string(&kubeconfig).unwrap()).unwrap();
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
    let keys = "flashbackaccesskeys.flashback.tech";
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
        // FlashbackAccessKeys write the Secrets they own.
        with(&["create", "secrets"], &elsewhere),
        with(&["update", "secrets"], &elsewhere),
        with(&["delete", "secrets"], &elsewhere),
        with(&["create", "events.events.k8s.io"], &elsewhere),
        with(&["patch", "events.events.k8s.io"], &elsewhere),
        with(&["create", "leases.coordination.k8s.io"], &ns),
        with(&["get", &lease_ref], &ns),
        with(&["update", &lease_ref], &ns),
    ];
    let denied: Vec<Vec<String>> = vec![
        with(&["*", "*"], &all),
        with(&["patch", "secrets"], &elsewhere),
        with(&["deletecollection", "secrets"], &elsewhere),
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
        rule(keys, "", "get list watch patch"),
        rule(
            "flashbackbuckets.flashback.tech",
            "",
            "get list watch patch",
        ),
        rule("namespaces", "", "get"),
        rule(&format!("{repos}/status"), "", "get patch"),
        rule(&format!("{keys}/status"), "", "get patch"),
        rule("flashbackbuckets.flashback.tech/status", "", "get patch"),
        // get, list and watch for credentials; create, update and delete for the Secrets
        // of FlashbackAccessKeys (`kubectl auth can-i --list` merges them).
        rule("secrets", "", "create delete get list update watch"),
        rule("events.events.k8s.io", "", "create patch"),
        rule("leases.coordination.k8s.io", "", "create"),
        rule("leases.coordination.k8s.io", &lease, "get update"),
    ]
    .into();
    assert_eq!(granted, expected);
}

#[tokio::test]
async fn access_keys_off_removes_the_secret_writes_and_tells_the_operator() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    crate::support::scene::install_crd(&kube).await;
    let namespace = test_namespace(&kube, "chart-nokeys").await;
    let release = release("fbnokeys");
    let rendered = render(
        &version,
        &release,
        &namespace,
        &["accessKeys.enabled=false"],
    );
    rendered.apply();
    let account = format!("{release}-flashback-operator");
    let config = service_account_kubeconfig(&namespace, &account);
    let elsewhere = ["--namespace", "team-elsewhere"];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(&elsewhere)
            .map(|s| (*s).to_owned())
            .collect()
    };
    assert_allowed(&config, &[with(&["get", "secrets"])]);
    assert_denied(
        &config,
        &[
            with(&["create", "secrets"]),
            with(&["update", "secrets"]),
            with(&["delete", "secrets"]),
        ],
    );
    let baseline = baseline_rules(&namespace);
    let secret_rules: Rules = rules(&config, &namespace)
        .difference(&baseline)
        .filter(|(resource, _, _)| resource == "secrets")
        .cloned()
        .collect();
    assert_eq!(secret_rules, [rule("secrets", "", "get list watch")].into());
    assert_eq!(
        rendered
            .env()
            .get("FLASHBACK_ACCESS_KEYS")
            .map(String::as_str),
        Some("false")
    );
    let on = render(&version, &release, &namespace, &[]);
    assert_eq!(
        on.env().get("FLASHBACK_ACCESS_KEYS").map(String::as_str),
        Some("true")
    );
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
        // The Secrets of FlashbackAccessKeys, in the watched namespace only.
        &["create", "secrets", "-n", w],
        &["update", "secrets", "-n", w],
        &["delete", "secrets", "-n", w],
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
        &["patch", "secrets", "-n", w],
        &["create", "secrets", "-n", r],
        &["delete", "secrets", "-n", r],
        &["create", "secrets", "-n", "team-elsewhere"],
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

/// A setting of tests/control-plane/versions.env, which build.sh builds the tools from.
fn built_version(name: &str) -> String {
    let versions =
        std::fs::read_to_string(root().join("tests/control-plane/versions.env")).unwrap();
    versions
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("versions.env sets no {name}"))
        .to_owned()
}

/// The helm build.sh builds knows the Kubernetes version of the kube-apiserver built beside
/// it, as the official helm knows the one it was released for, so that `helm template`
/// without --kube-version (CI, GitOps previews) renders a chart that requires Kubernetes 1.33.
#[tokio::test]
async fn helm_reports_the_kubernetes_version_it_was_built_for() {
    let helm_version = helm(&["version", "--template", "{{.Version}}"]);
    assert_eq!(
        String::from_utf8_lossy(&helm_version.stdout),
        format!("v{}", built_version("HELM_VERSION"))
    );

    // A chart that prints what helm assumes of the cluster when it is not told.
    let chart = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chart-capabilities");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: capabilities\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/capabilities.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: capabilities\ndata:\n  \
         version: {{ .Capabilities.KubeVersion.Version | quote }}\n  \
         major: {{ .Capabilities.KubeVersion.Major | quote }}\n  \
         minor: {{ .Capabilities.KubeVersion.Minor | quote }}\n",
    )
    .unwrap();
    let printed = run_ok(
        &tool("helm"),
        &["template", "capabilities", chart.to_str().unwrap()],
        None,
    );
    let config_map: serde_json::Value = serde_saphyr::from_str(&printed).unwrap();
    let kubernetes = built_version("KUBERNETES_VERSION");
    let (major, rest) = kubernetes.split_once('.').unwrap();
    let minor = rest.split('.').next().unwrap();
    assert_eq!(
        config_map["data"],
        serde_json::json!({
            "version": format!("v{major}.{minor}.0"),
            "major": major,
            "minor": minor,
        })
    );
    // The same minor version as the API server the tests run against.
    let server = kube_client()
        .await
        .apiserver_version()
        .await
        .expect("the API server reports its version");
    assert_eq!(
        (server.major.as_str(), server.minor.as_str()),
        (major, minor)
    );

    // And so the chart renders without --kube-version.
    let output = helm(&["template", "fb", CHART, "--namespace", "ops"]);
    assert!(
        output.status.success(),
        "helm template without --kube-version: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("kind: Deployment"));
}

/// The one-time step of the chart's README, for a release `release` in `namespace`: each
/// of the chart's CRDs that exists already (installed by an earlier chart's crds/ or by
/// kubectl) is handed to the release; one that does not is created by the release.
fn documented_crd_adoption(release: &str, namespace: &str) -> String {
    let names: Vec<String> = crds_dir().into_keys().collect();
    format!(
        "for crd in {names}; do\n  \
         kubectl get crd \"$crd\" >/dev/null 2>&1 || continue\n  \
         kubectl label crd \"$crd\" app.kubernetes.io/managed-by=Helm --overwrite\n  \
         kubectl annotate crd \"$crd\" meta.helm.sh/release-name={release} \
         meta.helm.sh/release-namespace={namespace} --overwrite\n\
         done\n",
        names = names.join(" ")
    )
}

/// The upgrade of the chart's README, which upgrades the CRDs too.
fn documented_upgrade(release: &str, namespace: &str, chart: &str) -> String {
    format!("helm upgrade {release} {chart} -n {namespace} --reset-then-reuse-values\n")
}

/// Runs a documented shell snippet with bash, the tools build.sh built first in PATH.
fn run_documented(script: &str) -> Output {
    let bin = root().join("target/control-plane/bin");
    let path = std::env::var("PATH").unwrap_or_default();
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .env("PATH", format!("{}:{path}", bin.display()))
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "{script}failed: {}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// This chart as an earlier version 0.0.1 whose CRD had another description.
fn earlier_chart(name: &str) -> PathBuf {
    let chart = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("chart-earlier")
        .join(name)
        .join("flashback-operator");
    let _ = std::fs::remove_dir_all(&chart);
    copy_dir(&root().join(CHART), &chart);
    let manifest = chart.join("Chart.yaml");
    let current = format!("\nversion: {}\n", chart_field("version"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        text.contains(&current),
        "Chart.yaml has no line {current:?}"
    );
    std::fs::write(&manifest, text.replace(&current, "\nversion: 0.0.1\n")).unwrap();
    let mut changed = false;
    for name in files_in(&chart.join(CHART_CRDS)).keys() {
        let path = chart.join(CHART_CRDS).join(name);
        let mut docs = yaml_documents(&std::fs::read_to_string(&path).unwrap());
        for crd in docs
            .iter_mut()
            .filter(|d| d["metadata"]["name"] == CRD_NAME)
        {
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] =
                "A FlashbackRepository, as chart 0.0.1 described it".into();
            changed = true;
        }
        let text: String = docs
            .iter()
            .map(|doc| format!("---\n{}", serde_saphyr::to_string(doc).unwrap()))
            .collect();
        std::fs::write(&path, text).unwrap();
    }
    assert!(changed, "the chart has no {CRD_NAME}");
    chart
}

/// The chart's CRDs as the API server holds them, by name.
fn server_crds() -> BTreeMap<String, serde_json::Value> {
    crds_dir()
        .into_keys()
        .map(|name| {
            let crd = serde_json::from_str(&run_ok(
                &tool("kubectl"),
                &["get", "crd", &name, "--output", "json"],
                None,
            ))
            .unwrap();
            (name, crd)
        })
        .collect()
}

/// Helm upgrades the CRDs with the release and `helm uninstall` keeps them, following the
/// chart's README word for word, from CRDs installed outside any release (as an earlier
/// chart's crds/ or kubectl left them, and as every other test here finds them).
#[tokio::test]
async fn crd_upgrade_path_works_as_documented() {
    let readme = std::fs::read_to_string(root().join(CHART).join("README.md")).unwrap();
    for documented in [
        documented_crd_adoption("flashback-operator", "flashback-system"),
        documented_upgrade(
            "flashback-operator",
            "flashback-system",
            "charts/flashback-operator",
        ),
    ] {
        assert!(
            readme.contains(&format!("```sh\n{documented}```\n")),
            "the chart's README lacks the block\n{documented}"
        );
    }

    let kube = kube_client().await;
    crate::support::scene::install_crd(&kube).await;
    let namespace = test_namespace(&kube, "chart-crd").await;
    let release = release("fbcrd");
    let (rel, ns) = (release.as_str(), namespace.as_str());
    let earlier = earlier_chart(rel);
    let earlier = earlier.to_str().unwrap();

    // Helm refuses to take over a CRD it did not create: hence the documented first step.
    let refused = helm(&["install", rel, earlier, "--namespace", ns]);
    assert!(!refused.status.success(), "helm install took over the CRD");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("CustomResourceDefinition \"")
            && stderr.contains("invalid ownership metadata"),
        "{stderr}"
    );

    run_documented(&documented_crd_adoption(rel, ns));
    run_ok(
        &tool("helm"),
        &[
            "install",
            rel,
            earlier,
            "--namespace",
            ns,
            "--set",
            "logFormat=text",
            // As in helm_install_and_upgrade_work_against_the_api_server (kept by the upgrade).
            "--set",
            "finalizerPolicy.enabled=false",
        ],
        None,
    );
    let installed = server_crds();
    for crd in installed.values() {
        assert_eq!(
            crd["metadata"]["labels"]["helm.sh/chart"],
            "flashback-operator-0.0.1"
        );
    }

    // The upgrade users run: the CRDs come with it, the values they set stay.
    let chart = root().join(CHART);
    run_documented(&documented_upgrade(rel, ns, chart.to_str().unwrap()));
    let files = crds_dir();
    for (name, crd) in server_crds() {
        assert_eq!(crd["metadata"]["labels"], standard_labels(rel), "{name}");
        assert_eq!(
            crd["metadata"]["annotations"],
            serde_json::json!({
                "helm.sh/resource-policy": "keep",
                "meta.helm.sh/release-name": rel,
                "meta.helm.sh/release-namespace": ns,
            }),
            "{name}"
        );
        // (Other tests apply the same spec, so this alone would not prove Helm wrote it; the
        // chart label above does.)
        assert_contains(&crd["spec"], &files[&name]["spec"], &format!("{name} spec"));
    }
    let deployment = Api::<Deployment>::namespaced(kube.clone(), ns)
        .get(&format!("{rel}-flashback-operator"))
        .await
        .expect("the Deployment was upgraded");
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "FLASHBACK_LOG_FORMAT" && e.value.as_deref() == Some("text")),
        "--reset-then-reuse-values kept logFormat: {env:?}"
    );

    // Uninstalling leaves the CRDs, the very objects, and with them every object of theirs.
    let uninstall = run_ok(&tool("helm"), &["uninstall", rel, "--namespace", ns], None);
    assert!(
        uninstall.contains("kept due to the resource policy"),
        "{uninstall}"
    );
    for (name, kept) in server_crds() {
        assert_eq!(
            kept["metadata"]["uid"], installed[&name]["metadata"]["uid"],
            "{name} was deleted"
        );
        assert!(kept["metadata"].get("deletionTimestamp").is_none());
    }
}

/// Kubernetes' ClusterRole aggregation controller (part of kube-controller-manager, which
/// the plain control plane does not run) against the control plane for one test.
struct Aggregator(Child);

impl Aggregator {
    fn start() -> Self {
        let binary = root().join("target/control-plane/bin/kube-controller-manager");
        assert!(
            binary.exists(),
            "{} is missing; run tests/control-plane/build.sh node (make test does)",
            binary.display()
        );
        let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("aggregator-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log =
            std::fs::File::create(logs.join(format!("{}.log", uuid::Uuid::new_v4().simple())))
                .unwrap();
        let child = Command::new(binary)
            .arg(format!("--kubeconfig={}", kubeconfig_path().display()))
            .args([
                "--controllers=clusterrole-aggregation-controller",
                "--leader-elect=false",
                "--secure-port=0",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kube-controller-manager starts");
        Self(child)
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kubectl auth can-i --list` rows of the flashback.tech API group: resource -> verbs.
fn flashback_verbs(kubeconfig: &Path, namespace: &str) -> BTreeMap<String, String> {
    let mut verbs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (resource, _, row_verbs) in rules(kubeconfig, namespace) {
        if resource.contains(".flashback.tech") {
            verbs
                .entry(resource)
                .or_default()
                .extend(row_verbs.split(' ').map(String::from));
        }
    }
    verbs
        .into_iter()
        .map(|(resource, verbs)| (resource, verbs.into_iter().collect::<Vec<_>>().join(" ")))
        .collect()
}

/// Tenants: whoever is a namespace's viewer, editor or admin through Kubernetes' built-in
/// roles gets exactly these verbs on FlashbackRepositories there, and never writes status.
#[tokio::test]
async fn namespace_viewers_editors_and_admins_get_exactly_their_verbs_on_the_operators_kinds() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    crate::support::scene::install_crd(&kube).await;
    let namespace = test_namespace(&kube, "chart-tenant-ops").await;
    let tenant = test_namespace(&kube, "chart-tenant").await;
    let release = release("fbtenant");

    let rendered = render(&version, &release, &namespace, &[]);
    let aggregated: BTreeMap<String, serde_json::Value> =
        rendered
            .all("ClusterRole")
            .into_iter()
            .filter(|role| role["metadata"]["name"] != format!("{release}-flashback-operator"))
            .map(|role| {
                let labels = role["metadata"]["labels"].as_object().unwrap();
                let aggregates: Vec<&str> = labels
                    .keys()
                    .filter_map(|k| k.strip_prefix("rbac.authorization.k8s.io/aggregate-to-"))
                    .collect();
                assert!(aggregates.iter().all(|a| labels
                    [&format!("rbac.authorization.k8s.io/aggregate-to-{a}")]
                    == "true"));
                (
                    aggregates.join(","),
                    serde_json::json!({"name": role["metadata"]["name"], "rules": role["rules"]}),
                )
            })
            .collect();
    let kinds = serde_json::json!([
        "flashbackrepositories",
        "flashbackaccesskeys",
        "flashbackbuckets"
    ]);
    assert_eq!(
        aggregated,
        BTreeMap::from([
            (
                "admin,edit".to_owned(),
                serde_json::json!({
                    "name": format!("{release}-flashback-operator-edit"),
                    "rules": [{"apiGroups": ["flashback.tech"], "resources": kinds,
                        "verbs": ["create", "update", "patch", "delete", "deletecollection"]}],
                })
            ),
            (
                "admin,edit,view".to_owned(),
                serde_json::json!({
                    "name": format!("{release}-flashback-operator-view"),
                    "rules": [{"apiGroups": ["flashback.tech"],
                        "resources": [
                            "flashbackrepositories",
                            "flashbackaccesskeys",
                            "flashbackbuckets",
                            "flashbackrepositories/status",
                            "flashbackaccesskeys/status",
                            "flashbackbuckets/status",
                        ],
                        "verbs": ["get", "list", "watch"]}],
                })
            ),
        ])
    );
    rendered.apply();

    // One ServiceAccount per built-in role, bound to it in the tenant's namespace only.
    let mut configs = BTreeMap::new();
    for role in ["view", "edit", "admin"] {
        let account = format!("tenant-{role}");
        run_ok(
            &tool("kubectl"),
            &["create", "serviceaccount", &account, "--namespace", &tenant],
            None,
        );
        run_ok(
            &tool("kubectl"),
            &[
                "create",
                "rolebinding",
                &account,
                &format!("--clusterrole={role}"),
                &format!("--serviceaccount={tenant}:{account}"),
                "--namespace",
                &tenant,
            ],
            None,
        );
        configs.insert(role, service_account_kubeconfig(&tenant, &account));
    }

    let _aggregator = Aggregator::start();
    let repos = "flashbackrepositories.flashback.tech";
    let deadline = tokio::time::Instant::now() + DEADLINE;
    for config in configs.values() {
        while !can_i(config, &["list", repos, "--namespace", &tenant]) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the built-in roles never gained the chart's rules"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let keys = "flashbackaccesskeys.flashback.tech";
    let buckets = "flashbackbuckets.flashback.tech";
    let (repos_status, keys_status, buckets_status) = (
        format!("{repos}/status"),
        format!("{keys}/status"),
        format!("{buckets}/status"),
    );
    let (repos_status, keys_status, buckets_status) = (
        repos_status.as_str(),
        keys_status.as_str(),
        buckets_status.as_str(),
    );
    let read = "get list watch";
    let write = "create delete deletecollection get list patch update watch";
    let of = |verbs: &'static str| {
        [
            (repos, verbs),
            (keys, verbs),
            (buckets, verbs),
            (repos_status, read),
            (keys_status, read),
            (buckets_status, read),
        ]
    };
    for (role, expected) in [
        ("view", of(read)),
        ("edit", of(write)),
        ("admin", of(write)),
    ] {
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(resource, verbs)| ((*resource).to_owned(), (*verbs).to_owned()))
            .collect();
        assert_eq!(
            flashback_verbs(&configs[role], &tenant),
            expected,
            "a namespace's {role}"
        );
        // Status is the operator's, and the roles reach the tenant's namespace only.
        let denied = [
            vec![
                "update",
                repos,
                "--subresource=status",
                "--namespace",
                &tenant,
            ],
            vec![
                "patch",
                repos,
                "--subresource=status",
                "--namespace",
                &tenant,
            ],
            vec!["get", repos, "--namespace", &namespace],
        ];
        assert_denied(&configs[role], &denied);
    }

    // The opt-out, and nothing without rbac.create.
    for sets in [["rbac.aggregateClusterRoles=false"], ["rbac.create=false"]] {
        let names: Vec<String> = render(&version, &release, &namespace, &sets)
            .all("ClusterRole")
            .iter()
            .map(|r| r["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.ends_with("-view") && !n.ends_with("-edit")),
            "{sets:?}: {names:?}"
        );
    }
}

/// Every production value, rendered to exactly the fields it names, and the objects accepted
/// (and kept, after defaulting) by the API server.
#[tokio::test]
async fn production_values_render_exactly_and_the_api_server_accepts_them() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    let namespace = test_namespace(&kube, "chart-prod").await;
    let release = release("fbprod");
    let fullname = format!("{release}-flashback-operator");
    let rendered = render(&version, &release, &namespace, PRODUCTION_VALUES);
    let selector = serde_json::json!({
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/name": "flashback-operator",
    });

    // commonLabels and commonAnnotations reach every object, the CRD and the pods included.
    let expected_kinds: BTreeSet<String> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    .map(String::from)
    .into();
    assert_eq!(rendered.kinds(), expected_kinds);
    let deployment = rendered.one("Deployment");
    let pod_template = &deployment["spec"]["template"];
    for (what, metadata) in rendered
        .objects
        .iter()
        .map(|o| (o["kind"].as_str().unwrap(), &o["metadata"]))
        .chain([("pod template", &pod_template["metadata"])])
    {
        assert_eq!(metadata["labels"]["team"], "storage", "{what}");
        assert_eq!(metadata["annotations"]["owner"], "storage-team", "{what}");
    }
    assert_eq!(
        pod_template["metadata"]["annotations"],
        serde_json::json!({"owner": "storage-team"})
    );

    let pod = &pod_template["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/flashback-operator@sha256:\
         0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(deployment["spec"]["revisionHistoryLimit"], 3);
    assert_eq!(
        pod["volumes"],
        serde_json::json!([{"name": "private-ca", "configMap": {"name": "flashback-ca"}}])
    );
    assert_eq!(
        container["volumeMounts"],
        serde_json::json!([{"name": "private-ca", "mountPath": "/etc/flashback/ca", "readOnly": true}])
    );
    assert_eq!(
        pod["topologySpreadConstraints"],
        serde_json::json!([{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }])
    );
    let env = rendered.env();
    assert_eq!(env["FLASHBACK_LEADER_ELECTION_LEASE_DURATION"], "30s");
    assert_eq!(env["SSL_CERT_FILE"], "/etc/flashback/ca/ca.crt");

    assert_eq!(
        rendered.one("PodDisruptionBudget")["spec"],
        serde_json::json!({
            "selector": {"matchLabels": selector},
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        })
    );
    let tcp = |port: u16| serde_json::json!({"port": port, "protocol": "TCP"});
    assert_eq!(
        rendered.one("NetworkPolicy")["spec"],
        serde_json::json!({
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "ports": [tcp(8080)],
                "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            }],
            "egress": [
                {
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                    "to": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }],
                },
                {"ports": [tcp(443), tcp(6443)], "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
                {"ports": [tcp(443)]},
            ],
        })
    );

    rendered.apply();
    let held = Api::<Deployment>::namespaced(kube.clone(), &namespace)
        .get(&fullname)
        .await
        .expect("the Deployment was created")
        .spec
        .unwrap();
    assert_eq!(held.revision_history_limit, Some(3));
    let held_pod = held.template.spec.unwrap();
    assert_eq!(
        held_pod.containers[0].image.as_deref(),
        container["image"].as_str()
    );
    assert_eq!(held_pod.topology_spread_constraints.unwrap().len(), 1);
    assert_eq!(
        held_pod.volumes.unwrap()[0]
            .config_map
            .as_ref()
            .unwrap()
            .name,
        "flashback-ca"
    );
    let budget = Api::<PodDisruptionBudget>::namespaced(kube.clone(), &namespace)
        .get(&fullname)
        .await
        .expect("the PodDisruptionBudget was created")
        .spec
        .unwrap();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        budget.unhealthy_pod_eviction_policy.as_deref(),
        Some("AlwaysAllow")
    );
    let policy = Api::<NetworkPolicy>::namespaced(kube.clone(), &namespace)
        .get(&fullname)
        .await
        .expect("the NetworkPolicy was created")
        .spec
        .unwrap();
    assert_eq!(policy.egress.unwrap().len(), 3);
    assert_eq!(
        policy.ingress.unwrap()[0].ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(8080))
    );
    let service = Api::<Service>::namespaced(kube.clone(), &namespace)
        .get(&format!("{fullname}-metrics"))
        .await
        .unwrap();
    assert_eq!(
        service.metadata.annotations.unwrap()["owner"],
        "storage-team"
    );
    let view = Api::<ClusterRole>::all(kube.clone())
        .get(&format!("{fullname}-view"))
        .await
        .expect("the tenants' view ClusterRole was created");
    assert_eq!(view.metadata.labels.unwrap()["team"], "storage");

    // minAvailable replaces maxUnavailable, a percentage too; the server takes the change.
    let min = render(
        &version,
        &release,
        &namespace,
        &[PRODUCTION_VALUES, &["podDisruptionBudget.minAvailable=50%"]].concat(),
    );
    assert_eq!(
        min.one("PodDisruptionBudget")["spec"],
        serde_json::json!({
            "selector": {"matchLabels": selector},
            "minAvailable": "50%",
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        })
    );
    min.apply();
    let budget = Api::<PodDisruptionBudget>::namespaced(kube.clone(), &namespace)
        .get(&fullname)
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        (budget.min_available, budget.max_unavailable),
        (Some(IntOrString::String("50%".into())), None)
    );

    // The Flashback API's port follows apiUrl unless given; its addresses may be narrowed; a
    // spread constraint with its own selector keeps it.
    let flashback_rule = |sets: &[&str]| {
        render(
            &version,
            &release,
            &namespace,
            &[&["networkPolicy.enabled=true"], sets].concat(),
        )
        .one("NetworkPolicy")["spec"]["egress"][2]
            .clone()
    };
    assert_eq!(
        flashback_rule(&["apiUrl=http://flashback.internal:8081"]),
        serde_json::json!({"ports": [tcp(8081)]})
    );
    assert_eq!(
        flashback_rule(&["apiUrl=http://flashback.internal"]),
        serde_json::json!({"ports": [tcp(80)]})
    );
    assert_eq!(
        flashback_rule(&[
            "networkPolicy.flashbackApi.ports={443,8443}",
            "networkPolicy.flashbackApi.cidrs[0]=203.0.113.0/24",
        ]),
        serde_json::json!({
            "ports": [tcp(443), tcp(8443)],
            "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
        })
    );
    let own_selector = render(
        &version,
        &release,
        &namespace,
        &[
            "topologySpreadConstraints[0].maxSkew=2",
            "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
            "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
            "topologySpreadConstraints[0].labelSelector.matchLabels.app=other",
        ],
    );
    assert_eq!(
        own_selector.one("Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
            ["labelSelector"],
        serde_json::json!({"matchLabels": {"app": "other"}})
    );
}

/// leaderElection.leaseDuration reaches the operator: the real binary, with the Deployment's
/// environment and the chart's ServiceAccount, holds the Lease for that long and reconciles.
#[tokio::test]
async fn the_lease_duration_of_the_values_is_the_one_the_operator_holds() {
    let mut scene = Scene::new("chart-lease").await;
    let kube = scene.kube.clone();
    let version = kube_version(&kube).await;
    let namespace = test_namespace(&kube, "chart-lease-ops").await;
    let release = release("fblease");
    let fullname = format!("{release}-flashback-operator");
    let watch = format!("watchNamespace={}", scene.namespace);
    let rendered = render(
        &version,
        &release,
        &namespace,
        &[&watch, "leaderElection.leaseDuration=9s"],
    );
    rendered.apply();
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

// Monitoring: the PrometheusRule of files/prometheus-rules.yaml and the Grafana dashboard of
// files/grafana-dashboard.json, both opt-in.

const DASHBOARD_FILE: &str = "files/grafana-dashboard.json";
/// Both monitoring objects on, with the values a Prometheus Operator and a Grafana sidecar
/// setup typically need.
const MONITORING_VALUES: &[&str] = &[
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.prometheusRule.labels.release=kube-prometheus-stack",
    "metrics.grafanaDashboard.enabled=true",
    "metrics.grafanaDashboard.annotations.grafana_folder=Flashback",
];

/// `helm template` with the Kubernetes version helm was built for (the control plane's), for
/// checks that need no API server.
fn render_offline(release: &str, namespace: &str, sets: &[&str]) -> Rendered {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
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
    let objects = yaml_documents(&yaml);
    Rendered { yaml, objects }
}

/// The alerts of a rendered PrometheusRule, by name.
fn alerts(rule: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    rule["spec"]["groups"]
        .as_array()
        .expect("spec.groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").iter())
        .map(|rule| (rule["alert"].as_str().unwrap().to_owned(), rule.clone()))
        .collect()
}

/// The per-alert values of values.yaml (metrics.prometheusRule.alerts), by alert name.
fn alert_values() -> BTreeMap<String, serde_json::Value> {
    let values: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join(CHART).join("values.yaml")).unwrap(),
    )
    .unwrap();
    serde_json::from_value(values["metrics"]["prometheusRule"]["alerts"].clone()).unwrap()
}

/// `promtool check rules` (with its linter, warnings fatal) on a PrometheusRule's groups
/// written as the plain rule file Prometheus would load; returns promtool's report.
fn promtool_check_rules(rule: &serde_json::Value) -> String {
    let file = tempfile::Builder::new()
        .suffix(".rules.yaml")
        .tempfile()
        .unwrap();
    let groups = serde_json::json!({ "groups": rule["spec"]["groups"] });
    std::fs::write(file.path(), serde_saphyr::to_string(&groups).unwrap()).unwrap();
    let path = file.path().to_str().unwrap();
    let promtool = root().join("target/control-plane/bin/promtool");
    assert!(
        promtool.exists(),
        "{} is missing; run tests/control-plane/build.sh promtool (make control-plane does)",
        promtool.display()
    );
    run_ok(
        &promtool,
        &["check", "rules", "--lint=all", "--lint-fatal", path],
        None,
    )
}

/// The alert rules, as rendered with the defaults and with every knob turned, are rules
/// Prometheus loads, and carry what the values say.
#[test]
fn rendered_alert_rules_pass_promtool_and_follow_their_values() {
    let defaults = render_offline(
        "fb",
        "flashback-system",
        &["metrics.prometheusRule.enabled=true"],
    );
    let rule = defaults.one("PrometheusRule");
    let rendered = alerts(rule);
    let values = alert_values();
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        values.keys().collect::<Vec<_>>(),
        "each alert of files/prometheus-rules.yaml has its values, and no value names another"
    );
    let report = promtool_check_rules(rule);
    assert!(
        report.contains(&format!("SUCCESS: {} rules found", values.len())),
        "{report}"
    );
    for (name, alert) in &rendered {
        assert_eq!(alert["for"], values[name]["for"], "{name}");
        assert_eq!(
            alert["labels"],
            serde_json::json!({"severity": values[name]["severity"]}),
            "{name}"
        );
        for annotation in ["summary", "description"] {
            let text = alert["annotations"][annotation]
                .as_str()
                .unwrap_or_default();
            assert!(!text.is_empty(), "{name} has no {annotation}");
        }
        // Scoped to this release's series, as the chart's ServiceMonitor labels them.
        assert!(
            alert["expr"]
                .as_str()
                .unwrap()
                .contains(r#"namespace="flashback-system",job="fb-flashback-operator-metrics""#),
            "{name}: {}",
            alert["expr"]
        );
        // What to do: a command to run.
        let description = alert["annotations"]["description"].as_str().unwrap();
        assert!(
            description.contains("`kubectl ") || description.contains("`helm upgrade "),
            "{name} gives no command: {description}"
        );
    }

    let tuned = render_offline(
        "fb",
        "flashback-system",
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.selector=job=\"flashback\"",
            "metrics.prometheusRule.alertLabels.team=storage",
            "metrics.prometheusRule.alerts.FlashbackApiRateLimited.enabled=false",
            "metrics.prometheusRule.alerts.FlashbackOperatorNoLeader.for=2m30s",
            "metrics.prometheusRule.alerts.FlashbackOperatorNoLeader.severity=page",
        ],
    );
    let rule = tuned.one("PrometheusRule");
    let report = promtool_check_rules(rule);
    assert!(
        report.contains(&format!("SUCCESS: {} rules found", values.len() - 1)),
        "{report}"
    );
    let tuned = alerts(rule);
    assert!(!tuned.contains_key("FlashbackApiRateLimited"));
    let no_leader = &tuned["FlashbackOperatorNoLeader"];
    assert_eq!(no_leader["for"], "2m30s");
    assert_eq!(
        no_leader["labels"],
        serde_json::json!({"severity": "page", "team": "storage"})
    );
    assert_eq!(
        tuned["FlashbackOperatorAbsent"]["expr"],
        r#"absent(flashback_operator_build_info{job="flashback"})"#
    );
    for (name, alert) in &tuned {
        assert_eq!(alert["labels"]["team"], "storage", "{name}");
        assert!(
            !alert["expr"].as_str().unwrap().contains("namespace="),
            "{name}: the selector replaces the default one"
        );
    }
}

/// A metric name, and the names of the labels its selector matches on (`name{a="x",b!~"y"}`).
#[derive(Debug)]
struct Selector {
    name: String,
    labels: BTreeSet<String>,
}

/// The selectors of the operator's series (names starting `flashback_operator_` or
/// `process_`) in a PromQL expression. A small scanner rather than a PromQL parser: it skips
/// string literals, and reads identifiers and the label matchers after a series name.
fn operator_selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_string = |i: usize| -> usize {
        let quote = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    let skip_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut selectors = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if is_start(c) && (i == 0 || !(is_part(chars[i - 1]) || chars[i - 1] == '$')) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if !(name.starts_with("flashback_operator_") || name.starts_with("process_")) {
                continue;
            }
            let mut labels = BTreeSet::new();
            let mut j = skip_space(i);
            if j < chars.len() && chars[j] == '{' {
                j += 1;
                loop {
                    j = skip_space(j);
                    assert!(j < chars.len(), "unclosed selector in {expr}");
                    if chars[j] == '}' {
                        break;
                    }
                    if chars[j] == ',' {
                        j += 1;
                        continue;
                    }
                    let label_start = j;
                    while j < chars.len() && is_part(chars[j]) {
                        j += 1;
                    }
                    assert!(j > label_start, "no label name at {j} in {expr}");
                    labels.insert(chars[label_start..j].iter().collect());
                    j = skip_space(j);
                    while j < chars.len() && "=!~".contains(chars[j]) {
                        j += 1;
                    }
                    j = skip_string(skip_space(j));
                }
                i = j + 1;
            }
            selectors.push(Selector { name, labels });
        } else {
            i += 1;
        }
    }
    selectors
}

/// What a scrape of `/metrics` shows: every series name Prometheus would store (the samples'
/// names, and those each `# TYPE` family stands for even before it has a sample: `_total`
/// of a counter, `_bucket`, `_sum` and `_count` of a histogram), and the label names seen on
/// each.
fn exported_series(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let mut words = family.split_whitespace();
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            let names: Vec<String> = match kind {
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|suffix| format!("{name}{suffix}"))
                    .collect(),
                "info" => vec![format!("{name}_info")],
                _ => vec![name.to_owned()],
            };
            for name in names {
                series.entry(name).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            // A sample reads like a selector with equality matchers.
            let selector = operator_selectors(line.rsplit_once(' ').unwrap().0)
                .into_iter()
                .next();
            let name = line.split(['{', ' ']).next().unwrap().to_owned();
            let labels = selector.map(|s| s.labels).unwrap_or_default();
            series.entry(name).or_default().extend(labels);
        }
    }
    series
}

/// Every PromQL query of the dashboard (panels, rows' panels and variables), with where it is.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let mut panels: Vec<&serde_json::Value> =
        dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner);
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                format!("panel {:?}", panel["title"].as_str().unwrap()),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            queries.push((
                format!("variable {}", variable["name"]),
                variable["query"]["query"].as_str().unwrap().to_owned(),
            ));
        }
    }
    queries
}

/// The alerts and the dashboard ask only for series the operator exports: names and label
/// names checked against a real operator's `/metrics`, not against a list kept by hand.
#[tokio::test]
async fn every_series_the_alerts_and_the_dashboard_query_is_exported() {
    let rendered = render_offline("fb", "flashback-system", MONITORING_VALUES);
    let mut queries: Vec<(String, String)> = alerts(rendered.one("PrometheusRule"))
        .into_iter()
        .map(|(name, alert)| {
            (
                format!("alert {name}"),
                alert["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        rendered.one("ConfigMap")["data"]["flashback-operator.json"]
            .as_str()
            .unwrap(),
    )
    .expect("the dashboard is JSON");
    let panel_queries = dashboard_queries(&dashboard);
    assert!(panel_queries.len() >= 10, "{panel_queries:?}");
    queries.extend(panel_queries);

    // An operator whose creates first fail (500s until the object is RemoteUnavailable),
    // then succeed, with a resync short enough for a housekeeping pass: every family then
    // has samples (a family appears in /metrics with its first sample).
    let mut scene = Scene::new("monitoring").await;
    let faults: flashback_emulator::Faults = serde_json::from_value(serde_json::json!({
        "failNext": {"count": 50, "status": 500, "route": {"method": "POST", "route": "/repo"}}
    }))
    .unwrap();
    scene.control.set_faults(&faults).await.unwrap();
    scene.start_operator(&["--resync-interval", "2s"]);
    scene.create(&scene.mirror("watched")).await;
    scene
        .wait_for("watched", "retrying", |r| {
            crate::support::scene::condition(r, "Ready")
                .is_some_and(|c| c.reason == "RemoteUnavailable")
        })
        .await;
    scene.control.clear_faults().await.unwrap();
    scene.wait_ready("watched").await;
    let url = scene.operator().endpoints_url().await;
    let http = reqwest::Client::new();
    // The Ready status is written before its reconcile and API calls are counted.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let text = loop {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let waiting: Vec<&str> = [
            r#"flashback_operator_reconciles_total{result="ok"}"#,
            r#"flashback_operator_reconcile_failures_total{reason="transient"}"#,
            r#"flashback_operator_flashback_api_calls_total{endpoint="create_repo",status="500"}"#,
            r#"flashback_operator_repositories{condition="Ready",status="True"}"#,
            "flashback_operator_tracked_entries{",
        ]
        .into_iter()
        .filter(|series| !text.contains(series))
        .collect();
        if waiting.is_empty() {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {waiting:?} in time:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let exported = exported_series(&text);

    let mut used = BTreeSet::new();
    for (place, query) in &queries {
        let selectors = operator_selectors(query);
        assert!(
            !selectors.is_empty(),
            "{place} names no series of the operator: {query}"
        );
        for selector in selectors {
            let labels = exported.get(&selector.name).unwrap_or_else(|| {
                panic!(
                    "{place} asks for {}, which the operator does not export:\n{text}",
                    selector.name
                )
            });
            // namespace and job are the scrape's labels; the rest are the series' own, and a
            // misspelt one would match nothing.
            for label in &selector.labels {
                assert!(
                    ["namespace", "job"].contains(&label.as_str()) || labels.contains(label),
                    "{place} matches {} on {label}, a label it does not have ({labels:?})",
                    selector.name
                );
            }
            used.insert(selector.name);
        }
    }
    // The scan found what a reader sees in the files.
    for name in [
        "flashback_operator_repositories",
        "flashback_operator_reconcile_failures_total",
        "flashback_operator_reconciles_total",
        "flashback_operator_flashback_api_calls_total",
        "flashback_operator_leader",
        "flashback_operator_build_info",
        "flashback_operator_reconcile_duration_seconds_bucket",
        "flashback_operator_flashback_api_call_duration_seconds_bucket",
        "flashback_operator_rate_limit_wait_seconds_total",
        "flashback_operator_tracked_entries",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(used.contains(name), "{name} is not in any query: {used:?}");
    }
}

/// prometheus-operator's PrometheusRule CRD (monitoring.coreos.com/v1), its schema cut to the
/// fields and checks of the rule groups, descriptions left out: the test API server has no
/// Prometheus Operator. kubectl's server-side apply validates strictly, so a field the real
/// CRD does not have, or a malformed duration, is refused.
const PROMETHEUS_RULE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              properties:
                groups:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [name]
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string, minLength: 1}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      query_offset: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      limit: {type: integer}
                      labels: {type: object, additionalProperties: {type: string}}
                      partial_response_strategy: {type: string, pattern: '^(?i)(abort|warn)?$'}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {anyOf: [{type: integer}, {type: string}], x-kubernetes-int-or-string: true}
                            for: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                            keep_firing_for: {type: string, minLength: 1, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
"#;

/// Installs the PrometheusRule CRD (idempotent; every test that needs it may call this) and
/// waits until it is served.
fn install_prometheus_rule_crd() {
    run_ok(
        &tool("kubectl"),
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=chart-test",
            "-f",
            "-",
        ],
        Some(PROMETHEUS_RULE_CRD),
    );
    run_ok(
        &tool("kubectl"),
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
        None,
    );
}

/// Neither monitoring object by default; with them on, the PrometheusRule and the dashboard's
/// ConfigMap land where the values say, with exactly their labels, and the API server keeps
/// them as rendered.
#[tokio::test]
async fn monitoring_objects_are_opt_in_and_the_api_server_accepts_them() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    let namespace = test_namespace(&kube, "chart-mon").await;
    let rules_namespace = test_namespace(&kube, "chart-mon-rules").await;
    let grafana_namespace = test_namespace(&kube, "chart-mon-grafana").await;
    let release = release("fbmon");
    let fullname = format!("{release}-flashback-operator");

    let defaults = render(&version, &release, &namespace, &[]);
    assert!(defaults.all("PrometheusRule").is_empty());
    assert!(defaults.all("ConfigMap").is_empty());

    let rules_ns = format!("metrics.prometheusRule.namespace={rules_namespace}");
    let grafana_ns = format!("metrics.grafanaDashboard.namespace={grafana_namespace}");
    let mut sets = MONITORING_VALUES.to_vec();
    sets.extend([
        rules_ns.as_str(),
        grafana_ns.as_str(),
        "metrics.prometheusRule.annotations.owner=storage-team",
        "metrics.grafanaDashboard.labels.team=storage",
        "commonLabels.tier=platform",
    ]);
    let rendered = render(&version, &release, &namespace, &sets);
    let mut standard = standard_labels(&release);
    standard["tier"] = "platform".into();

    let rule = rendered.one("PrometheusRule");
    let mut rule_labels = standard.clone();
    rule_labels["release"] = "kube-prometheus-stack".into();
    let dashboard = rendered.one("ConfigMap");
    let mut dashboard_labels = standard.clone();
    dashboard_labels["grafana_dashboard"] = "1".into();
    dashboard_labels["team"] = "storage".into();

    install_prometheus_rule_crd();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [rule, dashboard]});
    run_ok(
        &tool("kubectl"),
        &[
            "apply",
            "--server-side",
            "--field-manager=chart-test",
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    );

    let stored = |kind: &str, namespace: &str, name: &str| -> serde_json::Value {
        serde_json::from_str(&run_ok(
            &tool("kubectl"),
            &[
                "get",
                kind,
                name,
                "--namespace",
                namespace,
                "--output",
                "json",
            ],
            None,
        ))
        .unwrap()
    };
    let rule_name = fullname.clone();
    let stored_rule = stored(
        "prometheusrules.monitoring.coreos.com",
        &rules_namespace,
        &rule_name,
    );
    assert_eq!(stored_rule["metadata"]["labels"], rule_labels);
    assert_eq!(
        stored_rule["metadata"]["annotations"],
        serde_json::json!({"owner": "storage-team"})
    );
    assert_eq!(stored_rule["spec"], rule["spec"]);
    assert_eq!(alerts(&stored_rule).len(), alert_values().len());

    let dashboard_name = format!("{fullname}-dashboard");
    let stored_dashboard = stored("configmap", &grafana_namespace, &dashboard_name);
    assert_eq!(stored_dashboard["metadata"]["labels"], dashboard_labels);
    assert_eq!(
        stored_dashboard["metadata"]["annotations"],
        serde_json::json!({"grafana_folder": "Flashback"})
    );
    let shipped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join(CHART).join(DASHBOARD_FILE)).unwrap())
            .unwrap();
    let served: serde_json::Value = serde_json::from_str(
        stored_dashboard["data"]["flashback-operator.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(served, shipped);
    assert_eq!(served["uid"], "flashback-operator");

    // The sidecar's label can be dropped, and a malformed `for` is refused by the schema.
    let unlabelled = render(
        &version,
        &release,
        &namespace,
        &[
            "metrics.grafanaDashboard.enabled=true",
            "metrics.grafanaDashboard.labels.grafana_dashboard=null",
        ],
    );
    assert_eq!(
        unlabelled.one("ConfigMap")["metadata"]["labels"],
        standard_labels(&release)
    );
    let refusal = refused(
        &version,
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.alerts.FlashbackOperatorNoLeader.for=5 minutes",
        ],
    );
    assert!(
        refusal.contains("FlashbackOperatorNoLeader") && refusal.contains("for"),
        "{refusal}"
    );
    let refusal = refused(
        &version,
        &["metrics.prometheusRule.alerts.FlashbackOperatorNoLeadr.for=5m"],
    );
    assert!(refusal.contains("FlashbackOperatorNoLeadr"), "{refusal}");
}

/// The dashboard is the shipped JSON, each panel has a unique id, and every query parses as
/// PromQL: promtool checks them as recording rules, Grafana's variables replaced by values.
#[test]
fn dashboard_queries_parse_as_promql() {
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join(CHART).join(DASHBOARD_FILE)).unwrap())
            .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    let mut ids = BTreeSet::new();
    let mut panels: Vec<&serde_json::Value> =
        dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "two panels {}",
            panel["id"]
        );
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    let rules: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .filter(|(_, (place, _))| place.starts_with("panel"))
        .map(|(i, (_, query))| {
            serde_json::json!({
                "record": format!("dashboard:query_{i}"),
                "expr": query
                    .replace("$__rate_interval", "5m")
                    .replace("$namespace", ".*")
                    .replace("$job", ".*"),
            })
        })
        .collect();
    let count = rules.len();
    let file = serde_json::json!({"spec": {"groups": [{"name": "dashboard", "rules": rules}]}});
    let report = promtool_check_rules(&file);
    assert!(
        report.contains(&format!("SUCCESS: {count} rules found")),
        "{report}"
    );
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

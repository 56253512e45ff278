//! The Helm chart `charts/flashback-operator/`, checked with the real `helm` and the real API
//! server: it lints, renders objects the API server accepts, refuses bad values with a message
//! naming them, ships the CRD of `crds/`, and grants the operator exactly the permissions it
//! uses — enough for the real operator, running as the chart's ServiceAccount, to make a
//! repository Ready.
//!
//! The tests are in one module per topic; here are the tools (`helm`, `kubectl`), the renders
//! and the checks more than one topic uses.

mod install;
mod monitoring;
mod operator;
mod rbac;
mod render;
mod shards;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kube::Client;

use crate::support::cluster::kubeconfig_path;

const CHART: &str = "charts/flashback-operator";

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

/// `helm template` with the Kubernetes version helm was built for (the control plane's), for
/// checks that need no API server.
fn render_offline(release: &str, namespace: &str, sets: &[&str]) -> Rendered {
    template(release, namespace, &[], sets)
}

/// `helm template` of the chart with `extra` arguments and `--set` for each of `sets`.
fn template(release: &str, namespace: &str, extra: &[&str], sets: &[&str]) -> Rendered {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    args.extend(extra);
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
        env_of(self.one("Deployment"))
    }

    /// The operator container's environment as the kubelet gives it to a pod `pod_name` in
    /// `namespace` (the downward API filled in).
    fn pod_env(&self, pod_name: &str, namespace: &str) -> Vec<(String, String)> {
        pod_env_of(self.one("Deployment"), pod_name, namespace)
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

/// The operator container's environment of a rendered Deployment, `valueFrom` entries as
/// "<fieldPath>".
fn env_of(deployment: &serde_json::Value) -> BTreeMap<String, String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
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

/// The environment of a rendered Deployment as the kubelet gives it to a pod `pod_name` in
/// `namespace` (the downward API filled in).
fn pod_env_of(
    deployment: &serde_json::Value,
    pod_name: &str,
    namespace: &str,
) -> Vec<(String, String)> {
    env_of(deployment)
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

/// `helm template` as the API server of `kube_version` would be served it.
fn render(kube_version: &str, release: &str, namespace: &str, sets: &[&str]) -> Rendered {
    template(release, namespace, &["--kube-version", kube_version], sets)
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

/// A release `<prefix>-<random>` rendered with `sets` into a namespace of its own, watching
/// the scene's namespace, and applied: that namespace, the release's full name and the render.
async fn applied_release(
    scene: &crate::support::scene::Scene,
    prefix: &str,
    sets: &[&str],
) -> (String, String, Rendered) {
    let version = kube_version(&scene.kube).await;
    let namespace =
        crate::support::cluster::test_namespace(&scene.kube, &format!("{prefix}-ops")).await;
    let release = release(prefix);
    let watch = format!("watchNamespace={}", scene.namespace);
    let mut all = vec![watch.as_str()];
    all.extend(sets);
    let rendered = render(&version, &release, &namespace, &all);
    rendered.apply();
    (namespace, format!("{release}-flashback-operator"), rendered)
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

/// Both monitoring objects on, with the values a Prometheus Operator and a Grafana sidecar
/// setup typically need.
const MONITORING_VALUES: &[&str] = &[
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.prometheusRule.labels.release=kube-prometheus-stack",
    "metrics.grafanaDashboard.enabled=true",
    "metrics.grafanaDashboard.annotations.grafana_folder=Flashback",
];

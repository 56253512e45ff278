//! Installing and upgrading the chart with the real `helm`: the CRDs it ships are those of
//! `crds/` and of `flashback-operator crds`, install and upgrade work against the API server, helm
//! knows the Kubernetes version it was built for, and the CRD upgrade path works as the chart's
//! README writes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

use super::{
    CHART, assert_contains, chart_field, helm, kube_version, release, render, root, run_ok,
    standard_labels, tool, yaml_documents,
};
use crate::support::cluster::{kube_client, kubeconfig_path, test_namespace};

/// Where the chart keeps its copy of `crds/`, which templates/crds.yaml renders.
const CHART_CRDS: &str = "files/crds";

const CRD_NAME: &str = "flashbackrepositories.flashback.tech";

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
        // make side by side; chart::operator::finalizer_policy_* tests the policy in a
        // namespace of its own.
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

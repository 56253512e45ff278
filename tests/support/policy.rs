//! The chart's finalizer policy (a MutatingAdmissionPolicy and its binding), rendered by helm
//! as `helm install` renders it on an API server that serves the kind, for a release watching
//! one namespace, and applied to the local control plane.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use flashback_operator::crd::{FINALIZER, FlashbackRepository};
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::cluster::{DEADLINE, kubeconfig_path};
use super::node::{root, run_ok, tool};

const CHART: &str = "charts/flashback-operator";

/// The policy and binding of release `release` watching `watched`, with `sets` (helm
/// `--set`s) on top, as YAML documents: empty when the chart renders none.
pub fn render(release: &str, watched: &str, sets: &[&str]) -> String {
    let mut command = Command::new(tool("helm"));
    command
        .args(["template", release])
        .arg(root().join(CHART))
        .args([
            "--api-versions",
            "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
            "--set",
        ])
        .arg(format!("watchNamespace={watched}"));
    for set in sets {
        command.args(["--set", set]);
    }
    let yaml = run_ok(&mut command, Duration::from_secs(60));
    serde_saphyr::from_multiple::<serde_json::Value>(&yaml)
        .expect("rendered YAML parses")
        .into_iter()
        .filter(|doc| {
            doc["kind"]
                .as_str()
                .is_some_and(|kind| kind.starts_with("MutatingAdmissionPolicy"))
        })
        .map(|doc| format!("---\n{}", serde_saphyr::to_string(&doc).expect("YAML")))
        .collect()
}

/// The policy of a release watching `watched`, applied until dropped.
pub struct Applied {
    file: PathBuf,
}

impl Applied {
    /// Applies it and waits (bounded) until the API server applies it to a dry-run create of
    /// `probe` through `api` (a new policy takes a moment to be taken up).
    pub async fn new(
        release: &str,
        watched: &str,
        api: &Api<FlashbackRepository>,
        probe: &FlashbackRepository,
    ) -> Self {
        let file =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{release}-policy.yaml"));
        std::fs::write(&file, render(release, watched, &[])).expect("policy file");
        kubectl(&["apply", "-f"], &file);
        let applied = Self { file };
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let made = api.create(&dry_run, probe).await.expect("a dry-run create");
            if made.finalizers().iter().any(|f| f == FINALIZER) {
                return applied;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the policy never applied"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        kubectl(&["delete", "--ignore-not-found", "-f"], &self.file);
    }
}

fn kubectl(args: &[&str], file: &PathBuf) {
    run_ok(
        Command::new(tool("kubectl"))
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args(args)
            .arg(file),
        Duration::from_secs(60),
    );
}

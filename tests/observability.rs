//! What the operator tells: statistics in the status, `/metrics`, `/healthz` and `/readyz`.
//!
//! End to end: the real `flashback-operator` binary, the real kube-apiserver of
//! `tests/control-plane/`, and the Flashback emulator over HTTP. Each test has its own
//! namespace, emulator and operator, so they run side by side.

use std::time::Duration;

use crate::support::cluster::DEADLINE;
use crate::support::scene::{Scene, condition};
use flashback_emulator::control::StatsPatch;
use flashback_operator::crd::RepositoryMode;

#[tokio::test]
async fn statistics_reach_the_status_and_unchanged_figures_are_not_rewritten() {
    let mut scene = Scene::new("stats").await;
    scene.start_operator(&["--stats-interval", "1s"]);
    scene.create(&scene.mirror("busy")).await;
    let mut quiet = scene.mirror("quiet");
    quiet.spec.mode = RepositoryMode::Backup;
    quiet.spec.buckets.remove(0);
    scene.create(&quiet).await;
    let busy_id = scene
        .wait_ready("busy")
        .await
        .status
        .unwrap()
        .repo_id
        .unwrap();
    scene.wait_ready("quiet").await;

    scene
        .control
        .set_repo_stats(&busy_id, &StatsPatch::repo(1_048_576, 2048, -512))
        .await
        .unwrap();
    let figures = |repo: &flashback_operator::crd::FlashbackRepository| {
        repo.status
            .as_ref()
            .and_then(|s| s.stats.as_ref())
            .map(|s| {
                (
                    s.total_upload_bytes,
                    s.total_download_bytes,
                    s.total_size_change,
                )
            })
    };
    let busy = scene
        .wait_for("busy", "carrying its statistics", |r| {
            figures(r) == Some((1_048_576, 2048, -512))
        })
        .await;
    scene
        .wait_for("quiet", "carrying zero statistics", |r| {
            figures(r) == Some((0, 0, 0))
        })
        .await;
    assert_eq!(
        condition(&busy, "Ready").unwrap().status,
        "True",
        "stats leave conditions alone"
    );

    // Two more passes over unchanged figures write nothing.
    let passes = scene.calls("GET", "/repo/stats").await;
    tokio::time::timeout(DEADLINE, async {
        while scene.calls("GET", "/repo/stats").await < passes + 2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the stats task keeps its interval");
    let again = scene.repos.get("busy").await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        busy.metadata.resource_version
    );
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let mut scene = Scene::with_operator("metrics").await;
    scene.create(&scene.mirror("media")).await;
    scene.wait_ready("media").await;
    let url = scene.operator().endpoints_url().await;
    let http = reqwest::Client::new();
    let healthz = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200, "/healthz");
    // Ready once every watch cache has listed: the repositories' has (an object is Ready), the
    // access keys' may list a moment later on a loaded machine.
    tokio::time::timeout(DEADLINE, async {
        while http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            != 200
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("/readyz answers 200 once the caches are filled");
    let answer = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(
        answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "the body is OpenMetrics and is labelled so"
    );
    // The Ready status is written before the reconcile that wrote it is counted: look until
    // the counters catch up.
    // Whole series, up to the value: a name inside a longer one does not count.
    let expected = [
        r#"flashback_operator_flashback_api_calls_total{endpoint="create_repo",status="200"} 1"#,
        r#"flashback_operator_repositories{condition="Ready",status="True"} 1"#,
        "flashback_operator_reconcile_duration_seconds_count ",
        r#"flashback_operator_reconciles_total{result="ok"} "#,
        r#"flashback_operator_flashback_api_call_duration_seconds_count{endpoint="create_repo"} 1"#,
        r#"flashback_operator_flashback_api_call_duration_seconds_count{endpoint="list_repos"} "#,
        concat!(
            r#"flashback_operator_build_info{version=""#,
            env!("CARGO_PKG_VERSION"),
            r#""} 1"#
        ),
        r#"flashback_operator_leader{lease="flashback-operator"} 1"#,
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| {
                !text
                    .lines()
                    .any(|l| l == **e || l.starts_with(**e) && e.ends_with(' '))
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

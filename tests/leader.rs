//! Leader election: only the lease holder reconciles, a standby takes over, and a leader that
//! loses its lease stops.
//!
//! End to end: the real `flashback-operator` binary, the real kube-apiserver of
//! `tests/control-plane/`, and the Flashback emulator over HTTP. Each test has its own
//! namespace, emulator and operator, so they run side by side.

use std::time::Duration;

use crate::support::cluster::DEADLINE;
use crate::support::operator::Operator;
use crate::support::scene::Scene;
use flashback_operator::crd::RepositoryMode;

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let scene = Scene::new("leader").await;
    let flags = [
        "--leader-election",
        "--leader-election-namespace",
        scene.namespace.as_str(),
        "--leader-election-lease-duration",
        "6s",
    ];
    let start = || Operator::start(&scene.namespace, scene.emulator.base_url(), &flags);
    let mut first = start();
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(scene.kube.clone(), &scene.namespace);
    let holder = || async {
        leases
            .get_opt("flashback-operator")
            .await
            .unwrap()
            .and_then(|l| l.spec?.holder_identity)
    };
    tokio::time::timeout(DEADLINE, async {
        while holder().await.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the first operator takes the Lease");
    let first_holder = holder().await.unwrap();
    let mut second = start();

    scene.create(&scene.mirror("before")).await;
    scene.wait_ready("before").await;
    tokio::time::timeout(DEADLINE, async {
        while !second.output().contains("waiting to lead") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the second operator stands by");
    assert!(
        second.output().contains("waiting to lead"),
        "{}",
        second.output()
    );
    assert!(
        !second.output().contains("Flashback call"),
        "the standby made no API call"
    );
    let leader_series = |text: String| {
        text.lines()
            .find(|l| l.starts_with("flashback_operator_leader{"))
            .map(str::to_string)
    };
    assert_eq!(
        leader_series(first.metrics().await).as_deref(),
        Some(r#"flashback_operator_leader{lease="flashback-operator"} 1"#)
    );
    assert_eq!(
        leader_series(second.metrics().await).as_deref(),
        Some(r#"flashback_operator_leader{lease="flashback-operator"} 0"#),
        "a standby says it does not lead"
    );

    // The leader crashes: the standby takes over once the Lease expires.
    first.kill_hard();
    let mut replica = scene.mirror("after");
    replica.spec.mode = RepositoryMode::Backup;
    replica.spec.buckets.remove(0);
    scene.create(&replica).await;
    scene.wait_ready("after").await;
    let second_holder = holder().await.unwrap();
    assert_ne!(second_holder, first_holder);
    assert!(second.output().contains("became the leader"));

    // A graceful stop releases the Lease at once.
    assert!(second.terminate(), "the leader exits 0 on SIGTERM");
    assert_eq!(holder().await, None, "the Lease is released on shutdown");
}

#[tokio::test]
async fn a_leader_that_loses_its_lease_stops() {
    let scene = Scene::new("lost").await;
    let flags = [
        "--leader-election",
        "--leader-election-namespace",
        scene.namespace.as_str(),
        "--leader-election-lease-duration",
        "3s",
    ];
    let mut leader = Operator::start(&scene.namespace, scene.emulator.base_url(), &flags);
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(scene.kube.clone(), &scene.namespace);
    let lease = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(lease) = leases.get_opt("flashback-operator").await.unwrap() {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the operator takes the Lease");

    // Someone else takes the Lease (as another replica would after a partition). The leader
    // renews it every second, so retry when a renewal slips in between.
    drop(lease);
    tokio::time::timeout(DEADLINE, async {
        loop {
            let mut taken = leases.get("flashback-operator").await.unwrap();
            let spec = taken.spec.as_mut().unwrap();
            spec.holder_identity = Some("intruder".into());
            spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now(),
            ));
            match leases
                .replace("flashback-operator", &Default::default(), &taken)
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(status)) if status.is_conflict() => continue,
                Err(error) => panic!("cannot take the Lease: {error}"),
            }
        }
    })
    .await
    .expect("the Lease is taken over");
    let status = leader
        .wait_exit(DEADLINE)
        .expect("the operator stops without the Lease");
    assert!(
        !status.success(),
        "it exits non-zero, to be restarted as a standby"
    );
    assert!(
        leader
            .output()
            .contains("another replica holds the Lease now")
    );
}

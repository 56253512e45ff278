//! What the chart renders from its values: it lints without a single message, its schema
//! refuses bad values naming them, and the default, namespaced and production renders hold
//! exactly the fields their values name and are accepted (and kept) by the API server.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;

use super::{
    CHART, MONITORING_VALUES, assert_contains, chart_field, helm, kube_version, refused, release,
    render, render_watching, root, standard_labels,
};
use crate::support::cluster::{kube_client, test_namespace};

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
    // The Lease's name still labels flashback_operator_leader; nothing else of the election.
    assert_eq!(
        env["FLASHBACK_LEADER_ELECTION_LEASE"],
        format!("{release}-flashback-operator")
    );
    assert!(!env.contains_key("FLASHBACK_LEADER_ELECTION_NAMESPACE"));
    assert!(!env.contains_key("FLASHBACK_LEADER_ELECTION_LEASE_DURATION"));
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

/// sharding.shards makes one Deployment per shard beside the default one: each with its own
/// name, Lease, pod labels and FLASHBACK_SELECTOR over sharding.key, the default one serving
/// every object whose label names no listed shard; the Lease Role covers every Lease, the
/// finalizer policy stays (every object has a shard), and bad shard names are refused.
#[tokio::test]
async fn shards_render_one_deployment_lease_and_selector_each() {
    let version = kube_version(&kube_client().await).await;
    let rendered = render(
        &version,
        "fbshard",
        "flashback-system",
        &["sharding.shards={blue,green}", "sharding.handoverGrace=20s"],
    );
    let deployments: Vec<(String, String, String, String, String)> = rendered
        .all("Deployment")
        .into_iter()
        .map(|d| {
            let pod = &d["spec"]["template"]["spec"]["containers"][0];
            let env = |name: &str| {
                pod["env"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == name)
                    .map(|e| e["value"].as_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            let shard = |labels: &serde_json::Value| {
                labels["flashback.tech/operator-shard"]
                    .as_str()
                    .unwrap_or("-")
                    .to_owned()
            };
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                env("FLASHBACK_SELECTOR"),
                env("FLASHBACK_LEADER_ELECTION_LEASE"),
                shard(&d["spec"]["template"]["metadata"]["labels"]),
                shard(&d["spec"]["selector"]["matchLabels"])
                    + " "
                    + &env("FLASHBACK_HANDOVER_GRACE"),
            )
        })
        .collect();
    let row = |name: &str, selector: &str, shard: &str, selected: &str| {
        (
            name.to_owned(),
            selector.to_owned(),
            name.to_owned(),
            shard.to_owned(),
            format!("{selected} 20s"),
        )
    };
    assert_eq!(
        deployments,
        [
            row(
                "fbshard-flashback-operator",
                "flashback.tech/shard notin (blue,green)",
                "default",
                // The release's Deployment keeps its selector: it cannot change in an upgrade.
                "-"
            ),
            row(
                "fbshard-flashback-operator-blue",
                "flashback.tech/shard in (blue)",
                "blue",
                "blue"
            ),
            row(
                "fbshard-flashback-operator-green",
                "flashback.tech/shard in (green)",
                "green",
                "green"
            ),
        ]
    );
    let lease_role = rendered
        .all("Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "fbshard-flashback-operator-leader-election")
        .expect("the leader-election Role");
    assert_eq!(
        lease_role["rules"][1]["resourceNames"],
        serde_json::json!([
            "fbshard-flashback-operator",
            "fbshard-flashback-operator-blue",
            "fbshard-flashback-operator-green"
        ])
    );
    assert!(
        !crate::support::policy::render("fbshard", "team-a", &["sharding.shards={blue}"])
            .is_empty(),
        "the finalizer policy stays with chart-managed shards"
    );
    // Without shards nothing of it is rendered.
    let plain = render(&version, "fbshard", "flashback-system", &[]);
    assert!(!plain.yaml.contains("FLASHBACK_SELECTOR"));
    assert!(!plain.yaml.contains("operator-shard"));

    for (sets, says) in [
        (vec!["sharding.shards={blue,blue}"], "sharding/shards"),
        (vec!["sharding.shards={Blue}"], "does not match pattern"),
        (vec!["sharding.shards={default}"], "sharding/shards/0"),
        (vec!["sharding.key=bad key"], "sharding/key"),
        (
            vec![
                "sharding.shards={blue}",
                "extraEnv[0].name=FLASHBACK_SELECTOR",
                "extraEnv[0].value=x",
            ],
            "remove it from extraEnv",
        ),
    ] {
        let error = refused(&version, &sets);
        assert!(error.contains(says), "{sets:?}: {error}");
    }
}

/// Names cut to fit would make two shards one: a long release name gives every shard the
/// default Deployment's name and Lease, and a long leaderElection.leaseName one Lease for all
/// (one shard would lead, the others' objects served by nobody). The chart refuses both, and
/// a Lease name is not cut at 63 characters (Kubernetes allows 253).
#[tokio::test]
async fn shard_names_cut_to_fit_never_make_two_shards_one() {
    let version = kube_version(&kube_client().await).await;
    let long_release = helm(&[
        "template",
        "a-release-name-of-forty-four-characters-x-yz",
        CHART,
        "--kube-version",
        &version,
        "--set",
        "sharding.shards={shard-0001,shard-0002}",
    ]);
    let error = String::from_utf8_lossy(&long_release.stderr);
    assert!(
        !long_release.status.success() && error.contains("sharding.shards"),
        "rendered {} with one name for three Deployments: {error}",
        String::from_utf8_lossy(&long_release.stdout).len()
    );

    let lease = "l".repeat(62);
    let lease_set = format!("leaderElection.leaseName={lease}");
    let rendered = render(
        &version,
        "fbshard",
        "flashback-system",
        &["sharding.shards={blue,green}", &lease_set],
    );
    let leases: Vec<String> = rendered
        .all("Deployment")
        .iter()
        .map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "FLASHBACK_LEADER_ELECTION_LEASE")
                .map(|e| e["value"].as_str().unwrap().to_owned())
                .unwrap()
        })
        .collect();
    assert_eq!(
        leases,
        [
            lease.clone(),
            format!("{lease}-blue"),
            format!("{lease}-green")
        ]
    );
}

//! The chart's RBAC, asked of the API server as each identity: the operator's ServiceAccount
//! may do what the operator does and nothing more, cluster-wide or in the watched namespace, and
//! without Secret writes when access keys are off; the aggregated roles give a namespace's
//! viewers, editors and admins exactly their verbs on the operator's kinds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{
    kube_version, release, render, render_watching, root, run, run_ok, service_account_kubeconfig,
    tool,
};
use crate::support::cluster::{DEADLINE, kube_client, kubeconfig_path, test_namespace};

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
        // Sessions and FlashbackAccessKeys write the Secrets they own.
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
        // get, list and watch for credentials; create and update for sessions and keys;
        // delete for the Secrets of FlashbackAccessKeys (`kubectl auth can-i --list` merges
        // them).
        rule("secrets", "", "create delete get list update watch"),
        rule("events.events.k8s.io", "", "create patch"),
        rule("leases.coordination.k8s.io", "", "create"),
        rule("leases.coordination.k8s.io", &lease, "get update"),
    ]
    .into();
    assert_eq!(granted, expected);
}

/// What the account of `config` may do to Secrets beyond what any account may.
fn secret_rules(config: &Path, namespace: &str) -> Rules {
    rules(config, namespace)
        .difference(&baseline_rules(namespace))
        .filter(|(resource, _, _)| resource == "secrets")
        .cloned()
        .collect()
}

#[tokio::test]
async fn access_keys_off_removes_the_secret_delete_and_tells_the_operator() {
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
    // Sessions still create and update their Secrets; only the keys' delete goes.
    assert_allowed(
        &config,
        &[
            with(&["get", "secrets"]),
            with(&["create", "secrets"]),
            with(&["update", "secrets"]),
        ],
    );
    assert_denied(&config, &[with(&["delete", "secrets"])]);
    assert_eq!(
        secret_rules(&config, &namespace),
        [rule("secrets", "", "create get list update watch")].into()
    );
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
    assert_eq!(
        on.env().get("FLASHBACK_SESSIONS").map(String::as_str),
        Some("true")
    );
}

#[tokio::test]
async fn sessions_and_access_keys_off_leave_secrets_read_only() {
    let kube = kube_client().await;
    let version = kube_version(&kube).await;
    crate::support::scene::install_crd(&kube).await;
    let namespace = test_namespace(&kube, "chart-readonly").await;
    let release = release("fbreadonly");
    let rendered = render(
        &version,
        &release,
        &namespace,
        &["accessKeys.enabled=false", "sessions.enabled=false"],
    );
    rendered.apply();
    let account = format!("{release}-flashback-operator");
    let config = service_account_kubeconfig(&namespace, &account);
    assert_eq!(
        secret_rules(&config, &namespace),
        [rule("secrets", "", "get list watch")].into()
    );
    assert_eq!(
        rendered.env().get("FLASHBACK_SESSIONS").map(String::as_str),
        Some("false")
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
        // Its session Secret beside it.
        &["get", "secrets/flashback-default-session", "-n", r],
        &["update", "secrets/flashback-default-session", "-n", r],
        &["create", "secrets", "-n", r],
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
        &["update", "secrets/another-secret", "-n", r],
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

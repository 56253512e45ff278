//! Monitoring, opt-in: the PrometheusRule of files/prometheus-rules.yaml and the Grafana
//! dashboard of files/grafana-dashboard.json. The rules pass promtool and follow their values,
//! every series the alerts and the dashboard query is one the operator exports, the dashboard's
//! queries parse as PromQL, and the API server accepts both objects.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{
    CHART, MONITORING_VALUES, kube_version, refused, release, render, render_offline, root, run_ok,
    standard_labels, tool,
};
use crate::support::cluster::{DEADLINE, kube_client, test_namespace};
use crate::support::scene::Scene;

const DASHBOARD_FILE: &str = "files/grafana-dashboard.json";

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
        r#"absent(flashback_operator_leader{job="flashback",lease="fb-flashback-operator"})"#
    );
    for (name, alert) in &tuned {
        assert_eq!(alert["labels"]["team"], "storage", "{name}");
        assert!(
            !alert["expr"].as_str().unwrap().contains("namespace="),
            "{name}: the selector replaces the default one"
        );
    }
}

/// With shards, the leader alerts speak of each shard's Lease: `promtool test rules` on the
/// rendered rules (their annotations aside), over series where the default shard leads, every
/// replica of `blue` stands by, and `green` is not scraped at all.
#[test]
fn a_shard_without_a_leader_or_not_scraped_alerts_by_its_lease() {
    let rendered = render_offline(
        "fb",
        "flashback-system",
        &[
            "metrics.prometheusRule.enabled=true",
            "sharding.shards={blue,green}",
        ],
    );
    let mut groups = rendered.one("PrometheusRule")["spec"]["groups"].clone();
    for group in groups.as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            rule.as_object_mut().unwrap().remove("annotations");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        serde_saphyr::to_string(&serde_json::json!({ "groups": groups })).unwrap(),
    )
    .unwrap();
    let scope = r#"namespace="flashback-system",job="fb-flashback-operator-metrics""#;
    let leader = |lease: &str, pod: &str| {
        format!(
            r#"flashback_operator_leader{{{scope},lease="fb-flashback-operator{lease}",pod="{pod}"}}"#
        )
    };
    let alert = |lease: &str| {
        serde_json::json!({
            "severity": "critical",
            "namespace": "flashback-system",
            "job": "fb-flashback-operator-metrics",
            "lease": format!("fb-flashback-operator{lease}"),
        })
    };
    let test = serde_json::json!({
        "rule_files": [rules.to_str().unwrap()],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": leader("", "a"), "values": "1x20"},
                {"series": leader("", "b"), "values": "0x20"},
                {"series": leader("-blue", "c"), "values": "0x20"},
                {"series": leader("-blue", "d"), "values": "0x20"},
                {"series": r#"flashback_operator_build_info{namespace="flashback-system",job="fb-flashback-operator-metrics",version="0.1.0"}"#, "values": "1x20"},
            ],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "FlashbackOperatorNoLeader",
                 "exp_alerts": [{"exp_labels": alert("-blue")}]},
                {"eval_time": "15m", "alertname": "FlashbackOperatorAbsent",
                 "exp_alerts": [{"exp_labels": alert("-green")}]},
                // Neither fires before its `for`.
                {"eval_time": "4m", "alertname": "FlashbackOperatorNoLeader", "exp_alerts": []},
                {"eval_time": "9m", "alertname": "FlashbackOperatorAbsent", "exp_alerts": []},
            ],
        }],
    });
    let file = dir.path().join("test.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&test).unwrap()).unwrap();
    let promtool = root().join("target/control-plane/bin/promtool");
    let report = run_ok(&promtool, &["test", "rules", file.to_str().unwrap()], None);
    assert!(report.contains("SUCCESS"), "{report}");
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

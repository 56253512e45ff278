//! `metrics.md`: every series of `/metrics`, from the operator's registry as it renders.

use std::collections::BTreeSet;
use std::time::Duration;

use flashback_client::CallRecord;
use kube::runtime::reflector;

use crate::crd::FlashbackRepository;
use crate::metrics::Metrics;

/// One metric family as the text format describes it.
struct Family {
    name: String,
    kind: String,
    help: String,
    labels: BTreeSet<String>,
}

pub fn page() -> String {
    let (store, _writer) = reflector::store::<FlashbackRepository>();
    let metrics = Metrics::new(store, "flashback-operator");
    // One sample of each labelled family, so that its label names show in the text.
    metrics.reconciled(Some("transient"), Duration::ZERO);
    metrics.api_call(&CallRecord {
        endpoint: "list_repos",
        status: Some(200),
        duration: Duration::ZERO,
        rate_limit_wait: Duration::ZERO,
    });
    metrics.tracked("listings", 0);
    let families = families(&metrics.render());

    let mut out = super::header("Metrics", "the metrics registry of `src/metrics.rs`");
    out.push_str(
        "What `/metrics` serves (`--metrics-address`, default `0.0.0.0:8080`, beside `/healthz` \
         and `/readyz`), in the Prometheus text format. Counters carry the `_total` suffix; a \
         histogram is the `_bucket`, `_sum` and `_count` series of its name.\n\n",
    );
    let rows: Vec<Vec<String>> = families
        .iter()
        .map(|family| {
            let name = if family.kind == "counter" {
                format!("{}_total", family.name)
            } else {
                family.name.clone()
            };
            let labels: Vec<String> = family.labels.iter().map(|l| super::code(l)).collect();
            vec![
                super::code(&name),
                family.kind.clone(),
                labels.join(", "),
                super::cell(&family.help),
            ]
        })
        .collect();
    out.push_str(&super::table(
        &["metric", "type", "labels", "meaning"],
        &rows,
    ));
    out
}

/// The families of a rendered registry, in its order, with the label names their samples
/// carry (a histogram's `le` left out).
fn families(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.push(Family {
                name: name.to_string(),
                kind: String::new(),
                help: help.replace("\\n", " ").replace("\\\\", "\\"),
                labels: BTreeSet::new(),
            });
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let (Some(family), Some((_, kind))) = (families.last_mut(), rest.split_once(' ')) {
                family.kind = kind.to_string();
            }
        } else if !line.starts_with('#')
            && let (Some(family), Some((_, labels))) = (families.last_mut(), line.split_once('{'))
        {
            let labels = labels.split('}').next().unwrap_or_default();
            for pair in labels.split(',') {
                if let Some((label, _)) = pair.split_once('=')
                    && label != "le"
                {
                    family.labels.insert(label.to_string());
                }
            }
        }
    }
    families
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_carry_their_type_help_and_label_names() {
        let text = "# HELP a_calls Calls.\n# TYPE a_calls counter\n\
                    a_calls_total{endpoint=\"x\",status=\"200\"} 1\n\
                    # HELP a_seconds Time.\n# TYPE a_seconds histogram\n\
                    a_seconds_bucket{le=\"0.1\",endpoint=\"x\"} 1\n# EOF\n";
        let families = families(text);
        assert_eq!(families.len(), 2);
        assert_eq!(
            (families[0].kind.as_str(), families[0].help.as_str()),
            ("counter", "Calls.")
        );
        assert_eq!(
            families[0].labels.iter().collect::<Vec<_>>(),
            ["endpoint", "status"]
        );
        assert_eq!(families[1].labels.iter().collect::<Vec<_>>(), ["endpoint"]);
    }
}

//! Sharding by label: which objects this operator serves (`--selector`), read as the API server
//! reads a label selector, so that the operator can tell, before it acts, that an object it
//! holds is still its own; and the hand-over rule for an object that came from another shard
//! while that shard may still be acting on it. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(key, value) => labels.get(key) == Some(value),
            // As the API server reads them: a missing label is not equal to any value, and is
            // in no set.
            Requirement::NotEquals(key, value) => labels.get(key) != Some(value),
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// A label selector in the syntax of `kubectl get -l` (`a=b`, `a==b`, `a!=b`, `a in (x,y)`,
/// `a notin (x)`, `a`, `!a`, joined by commas): every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let requirements = split_top_level(text)
            .into_iter()
            .map(|part| requirement(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if requirements.is_empty() {
            return Err("an empty selector".into());
        }
        Ok(Self { requirements })
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// The requirements of a selector: split at commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

fn requirement(part: &str) -> Result<Requirement, String> {
    let bad = || format!("cannot read the selector requirement {part:?}");
    let key = |k: &str| {
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            Err(bad())
        } else {
            Ok(k.to_string())
        }
    };
    if let Some(rest) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key(rest)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, v.trim().to_string()));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key(k)?, v.trim().to_string()));
    }
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(bad)?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    let mut words = part.splitn(2, char::is_whitespace);
    let (k, rest) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let rest = rest.trim_start();
    if let Some(values) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(key(k)?, set(values)?));
    }
    if let Some(values) = rest.strip_prefix("in") {
        return Ok(Requirement::In(key(k)?, set(values)?));
    }
    if rest.is_empty() {
        return Ok(Requirement::Exists(key(k)?));
    }
    Err(bad())
}

/// How long an object that arrives from another shard in the middle of an act waits before
/// this shard acts on it: `None` to go on now, else how much longer. `arrived_in_flight`: its
/// status said Reconciling when this shard first saw it; `in_flight`: it still does; `seen_for`:
/// how long this shard has known it. The shard it came from stops acting the moment it sees the
/// new label, but a call it sent just before may still be on its way; `grace` outlasts one such
/// call. An object that arrived settled is this shard's from then on: a Reconciling it says
/// later is this shard's own act (a retry, a wait for a bucket), which never waits.
pub fn handover_wait(
    arrived_in_flight: bool,
    in_flight: bool,
    seen_for: Duration,
    grace: Duration,
) -> Option<Duration> {
    (arrived_in_flight && in_flight && seen_for < grace).then(|| grace - seen_for)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_default_shard_serves_objects_without_the_key_and_with_a_value_no_shard_has() {
        let default = Selector::parse("flashback.tech/shard notin (blue,green)").unwrap();
        assert!(default.matches(&labels(&[])));
        assert!(default.matches(&labels(&[("flashback.tech/shard", "typo")])));
        assert!(!default.matches(&labels(&[("flashback.tech/shard", "blue")])));
        let blue = Selector::parse("flashback.tech/shard in (blue)").unwrap();
        assert!(blue.matches(&labels(&[("flashback.tech/shard", "blue")])));
        assert!(!blue.matches(&labels(&[])));
        assert!(!blue.matches(&labels(&[("flashback.tech/shard", "green")])));
    }

    #[test]
    fn every_form_of_kubectl_selectors_reads_as_the_api_server_reads_it() {
        let object = labels(&[("tier", "gold"), ("team", "a")]);
        for (selector, selected) in [
            ("tier=gold", true),
            ("tier==gold", true),
            ("tier!=gold", false),
            ("absent!=x", true),
            ("tier", true),
            ("!tier", false),
            ("!absent", true),
            ("tier in (silver, gold)", true),
            ("tier notin (gold)", false),
            ("tier=gold,team=b", false),
            ("tier=gold, team in (a,b)", true),
        ] {
            assert_eq!(
                Selector::parse(selector).unwrap().matches(&object),
                selected,
                "{selector}"
            );
        }
        for broken in ["", "tier in gold", "a b c", "in (x)", "!"] {
            assert!(Selector::parse(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn an_object_handed_over_mid_act_waits_out_the_grace_once() {
        let grace = Duration::from_secs(45);
        assert_eq!(
            handover_wait(true, true, Duration::from_secs(5), grace),
            Some(Duration::from_secs(40))
        );
        assert_eq!(
            handover_wait(true, true, grace, grace),
            None,
            "waited long enough"
        );
        assert_eq!(
            handover_wait(false, false, Duration::ZERO, grace),
            None,
            "nothing was in flight"
        );
        assert_eq!(
            handover_wait(true, false, Duration::from_secs(5), grace),
            None,
            "the act it arrived in ended"
        );
    }

    #[test]
    fn an_act_this_shard_began_itself_never_waits() {
        let grace = Duration::from_secs(45);
        // Arrived settled (or new), then this shard's create failed and is retried a second
        // later: the Reconciling it says is this shard's own.
        assert_eq!(
            handover_wait(false, true, Duration::from_secs(1), grace),
            None
        );
    }
}

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
        let requirements = split_top_level(text)?
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

/// The requirements of a selector: split at commas outside parentheses. An empty one (a comma
/// too many) is refused, as the API server refuses it.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
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
    if parts.iter().all(|p| p.trim().is_empty()) {
        return Ok(Vec::new());
    }
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("an empty requirement in the selector {text:?}"));
    }
    Ok(parts)
}

/// A label name (`name`, or `prefix/name` with a DNS subdomain prefix), as the API server
/// accepts it in a selector.
fn valid_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let dns_label = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(dns_label));
    prefix_ok && !name.is_empty() && valid_value(name)
}

/// A label value: empty, or at most 63 letters, digits, `-`, `_` and `.`, beginning and ending
/// with a letter or a digit.
fn valid_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge(value.chars().next())
        && edge(value.chars().last())
}

fn requirement(part: &str) -> Result<Requirement, String> {
    let bad = || format!("cannot read the selector requirement {part:?}");
    let key = |k: &str| {
        let k = k.trim();
        if valid_key(k) {
            Ok(k.to_string())
        } else {
            Err(bad())
        }
    };
    let value = |v: &str| {
        let v = v.trim();
        if valid_value(v) {
            Ok(v.to_string())
        } else {
            Err(bad())
        }
    };
    if let Some(rest) = part.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key(rest)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(key(k)?, value(v)?));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(key(k)?, value(v)?));
    }
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(bad)?;
        // `in ()` selects nothing and `notin ()` everything: the API server refuses both.
        if inner.trim().is_empty() {
            return Err(bad());
        }
        inner.split(',').map(value).collect()
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
    fn a_selector_the_api_server_refuses_is_refused_not_read_as_another() {
        // `!tier=gold` is no selector; read as "no label named `tier=gold`" it would select
        // every object, and this shard would act on the objects of every other one.
        for broken in [
            "!tier=gold",
            "!flashback.tech/shard=blue",
            "tier in ()",
            "tier notin ()",
            "tier in (gold silver)",
            "tier in (gold))",
            "tier=gold,",
            ",tier=gold",
            "tier=gold=silver",
            "tier=-gold",
            "tier>1",
            "-tier",
            "Flashback.Tech/shard in (blue)",
            &format!("tier={}", "g".repeat(64)),
        ] {
            assert!(Selector::parse(broken).is_err(), "{broken:?}");
        }
        for fine in [
            "! tier",
            "tier = gold",
            "tier=",
            "flashback.tech/shard notin(blue,green)",
            "example.com/Tier_1.x in (A-1, b.2)",
        ] {
            assert!(Selector::parse(fine).is_ok(), "{fine:?}");
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

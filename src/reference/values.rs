//! `values.md`: the chart's values, from the `# --` comments of its `values.yaml` (helm-docs'
//! convention: a comment starting `# --` above a key describes it, its following `#` lines
//! continue it, and the key's value in the file is its default).

use anyhow::{Context, bail};
use serde_json::Value;

const VALUES: &str = include_str!("../../charts/flashback-operator/values.yaml");

/// One documented value.
#[derive(Debug, PartialEq)]
struct Documented {
    path: Vec<String>,
    description: String,
}

pub fn page() -> anyhow::Result<String> {
    let values: Value = serde_saphyr::from_str(VALUES).context("values.yaml does not parse")?;
    let documented = documented(VALUES);
    let missing = undocumented(&values, &documented);
    if !missing.is_empty() {
        bail!(
            "values.yaml: no `# --` comment on {} (nor on a key above it)",
            missing.join(", ")
        );
    }
    let mut out = super::header(
        "Chart values",
        "the `# --` comments of `charts/flashback-operator/values.yaml`",
    );
    out.push_str(
        "Every value of the Helm chart `charts/flashback-operator`, with its default; \
         `values.schema.json` refuses a misspelt key or a value of the wrong shape. What the \
         chart installs, and why, is in [The Helm chart](../chart.md).\n\n",
    );
    let mut rows = Vec::new();
    for value in &documented {
        let default = value
            .path
            .iter()
            .try_fold(&values, |node, key| node.get(key))
            .with_context(|| format!("values.yaml: {} has no value", value.path.join(".")))?;
        rows.push(vec![
            super::code(&value.path.join(".")),
            type_of(default).to_string(),
            super::cell(&super::code(&default.to_string())),
            super::cell(&value.description),
        ]);
    }
    out.push_str(&super::table(
        &["value", "type", "default", "meaning"],
        &rows,
    ));
    Ok(out)
}

/// helm-docs' names of the YAML types.
fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// The keys that carry a `# --` comment, in file order, with their full paths.
fn documented(yaml: &str) -> Vec<Documented> {
    let mut found = Vec::new();
    // The keys above the current line: (indentation, key).
    let mut parents: Vec<(usize, String)> = Vec::new();
    let mut comment: Option<String> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if trimmed.is_empty() {
            comment = None;
        } else if let Some(text) = trimmed.strip_prefix("# --") {
            comment = Some(text.trim().to_string());
        } else if let Some(text) = trimmed.strip_prefix('#') {
            if let Some(comment) = comment.as_mut() {
                comment.push(' ');
                comment.push_str(text.trim());
            }
        } else if let Some(key) = key_of(trimmed) {
            while parents.last().is_some_and(|(depth, _)| *depth >= indent) {
                parents.pop();
            }
            parents.push((indent, key.to_string()));
            if let Some(description) = comment.take() {
                found.push(Documented {
                    path: parents.iter().map(|(_, key)| key.clone()).collect(),
                    description,
                });
            }
        } else {
            comment = None;
        }
    }
    found
}

/// The key of a `key: value` or `key:` line (not of a list item).
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(':')?;
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    plain.then_some(key)
}

/// Paths of leaf values that neither carry a `# --` comment nor sit below a key that does.
fn undocumented(values: &Value, documented: &[Documented]) -> Vec<String> {
    fn walk(
        value: &Value,
        path: &mut Vec<String>,
        documented: &[Documented],
        out: &mut Vec<String>,
    ) {
        if documented.iter().any(|d| path.starts_with(&d.path)) {
            return;
        }
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(child, path, documented, out);
                    path.pop();
                }
            }
            _ => out.push(path.join(".")),
        }
    }
    let mut out = Vec::new();
    walk(values, &mut Vec::new(), documented, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dash_comment_documents_the_key_below_it_with_its_full_path() {
        let yaml = "# A heading, not a description.\n\
                    image:\n  # -- The repository,\n  # on two lines.\n  repository: x\n  tag: \"\"\n\
                    # -- Resources.\nresources:\n  limits:\n    memory: 1Mi\n\
                    # -- A list.\nextra:\n  - name: a\n";
        let found = documented(yaml);
        let paths: Vec<String> = found.iter().map(|d| d.path.join(".")).collect();
        assert_eq!(paths, ["image.repository", "resources", "extra"]);
        assert_eq!(found[0].description, "The repository, on two lines.");
        let values: Value = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(undocumented(&values, &found), ["image.tag"]);
    }

    #[test]
    fn every_value_of_the_chart_is_documented() {
        page().unwrap();
    }
}

//! `crds.md`: every field of every kind, from the CRDs' OpenAPI schemas (which come from the
//! Rust types of `src/crd/`, as `crds/` does).

use serde_json::Value;

pub fn page() -> anyhow::Result<String> {
    let crds = crate::crd::crds();
    let mut out = super::header(
        "Resource reference",
        "the CRDs' schemas (the Rust types of `src/crd/`, as in `crds/`)",
    );
    out.push_str(
        "Every field of the operator's kinds, as `kubectl explain` shows it, with what the API \
         server checks at `kubectl apply`: defaults, allowed values, sizes and CEL rules. How \
         the operator acts on them is in [Using the resources](../resources.md).\n\n",
    );
    for (_, crd) in &crds {
        let kind = &crd.spec.names.kind;
        out.push_str(&format!("- [{kind}](#{})\n", kind.to_lowercase()));
    }
    for (file, crd) in &crds {
        let names = &crd.spec.names;
        for version in &crd.spec.versions {
            out.push_str(&format!("\n## {}\n\n", names.kind));
            let short = names
                .short_names
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|name| super::code(name))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "`apiVersion: {}/{}`, {} (`crds/{file}`); plural {}, short names {short}.\n\n",
                crd.spec.group,
                version.name,
                crd.spec.scope.to_lowercase(),
                super::code(&names.plural),
            ));
            let schema = version
                .schema
                .as_ref()
                .and_then(|schema| schema.open_api_v3_schema.as_ref())
                .ok_or_else(|| anyhow::anyhow!("{file}: no schema"))?;
            let schema = serde_json::to_value(schema)?;
            if let Some(description) = schema.get("description").and_then(Value::as_str) {
                out.push_str(&format!("{}.\n\n", description.trim_end_matches('.')));
            }
            for part in ["spec", "status"] {
                if let Some(part_schema) = schema.pointer(&format!("/properties/{part}")) {
                    let mut rows = Vec::new();
                    walk(part_schema, part, false, &mut rows);
                    out.push_str(&super::table(&["field", "type", "description"], &rows));
                    out.push('\n');
                }
            }
        }
    }
    Ok(out.trim_end().to_string() + "\n")
}

/// One row for `schema` at `path`, then one for each field below it.
fn walk(schema: &Value, path: &str, required: bool, rows: &mut Vec<Vec<String>>) {
    let mut description = text(schema, "description");
    let mut notes = constraints(schema);
    let mut fields = schema;
    if let Some(items) = schema.get("items") {
        // A list's row says what each item is; the items' fields follow as `path[].field`.
        let item = text(items, "description");
        if !item.is_empty() {
            description.push_str(&format!("\n\nEach item: {item}"));
        }
        notes.extend(constraints(items));
        fields = items;
    }
    if !notes.is_empty() {
        description.push_str("\n\n");
        description.push_str(&notes.join(" "));
    }
    let mut kind = type_of(schema);
    if required {
        kind.push_str(", required");
    }
    rows.push(vec![super::code(path), kind, super::cell(&description)]);
    let path = if schema.get("items").is_some() {
        format!("{path}[]")
    } else {
        path.to_string()
    };
    let needed: Vec<&str> = fields
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = fields.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            walk(
                child,
                &format!("{path}.{name}"),
                needed.contains(&name.as_str()),
                rows,
            );
        }
    }
}

fn text(schema: &Value, key: &str) -> String {
    schema
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `string`, `integer (int64)`, `[]object`, `map[string]string`.
fn type_of(schema: &Value) -> String {
    let base = match schema.get("type").and_then(Value::as_str) {
        Some("array") => format!("[]{}", schema.get("items").map(type_of).unwrap_or_default()),
        Some("object") => match schema.get("additionalProperties") {
            Some(values) if values.is_object() => format!("map[string]{}", type_of(values)),
            _ => "object".to_string(),
        },
        Some(other) => other.to_string(),
        None if schema.get("x-kubernetes-int-or-string").is_some() => "int or string".into(),
        None => "any".to_string(),
    };
    match schema.get("format").and_then(Value::as_str) {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

/// What the API server checks or fills in, in words.
fn constraints(schema: &Value) -> Vec<String> {
    let mut notes = Vec::new();
    let number = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(default) = schema.get("default") {
        notes.push(format!("Default: {}.", super::code(&default.to_string())));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|value| super::code(value.as_str().unwrap_or(&value.to_string())))
            .collect();
        notes.push(format!("One of {}.", values.join(", ")));
    }
    for (min, max, unit) in [
        ("minLength", "maxLength", "characters"),
        ("minItems", "maxItems", "items"),
        ("minimum", "maximum", ""),
    ] {
        let bound = match (number(min), number(max)) {
            (Some(min), Some(max)) => format!("{min} to {max}"),
            (Some(min), None) => format!("at least {min}"),
            (None, Some(max)) => format!("at most {max}"),
            (None, None) => continue,
        };
        let bound = format!("{bound} {unit}");
        let mut bound = bound.trim_end().to_string();
        bound[..1].make_ascii_uppercase();
        notes.push(format!("{bound}."));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        notes.push(format!("Pattern {}.", super::code(pattern)));
    }
    if let Some(list) = schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        let keys: Vec<String> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(super::code)
                    .collect()
            })
            .unwrap_or_default();
        if keys.is_empty() {
            notes.push(format!("List type {}.", super::code(list)));
        } else {
            notes.push(format!(
                "List type {}, keyed by {}.",
                super::code(list),
                keys.join(", ")
            ));
        }
    }
    for rule in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let message = text(rule, "message");
        notes.push(format!(
            "Rule {}{}.",
            super::code(&text(rule, "rule")),
            if message.is_empty() {
                String::new()
            } else {
                format!(": {}", message.trim_end_matches('.'))
            }
        ));
    }
    notes
}

//! The custom resources this operator serves, one module per kind, and what they share: the
//! API group, the finalizer, the annotations, the Secret reference. These types are the one
//! source of the CRDs that `flashback-operator crds` prints and `crds/` commits.

pub mod access_key;
pub mod bucket;
pub mod repository;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

pub use access_key::*;
pub use bucket::*;
pub use repository::*;

/// The API group of every resource this operator serves.
pub const GROUP: &str = "flashback.tech";

/// The finalizer that keeps an object until what it owns in Flashback is deleted or released.
pub const FINALIZER: &str = "flashback.tech/finalizer";

/// Annotations a person (or a GitOps tool) sets to steer the operator.
pub mod annotations {
    /// Adopt this existing remote repository instead of creating one.
    pub const REPO_ID: &str = "flashback.tech/repo-id";
    /// Adopt this existing bucket instead of registering one.
    pub const BUCKET_ID: &str = "flashback.tech/bucket-id";
    /// `"true"` stops every remote write; deletion of the object is never blocked.
    pub const PAUSED: &str = "flashback.tech/paused";
    /// Any new value forces a reconcile now.
    pub const RECONCILE_REQUESTED_AT: &str = "flashback.tech/reconcile-requested-at";
    /// Any new value makes a FlashbackAccessKey rotate its key now.
    pub const ROTATE_REQUESTED_AT: &str = "flashback.tech/rotate-requested-at";
}

/// A CEL rule for names and ids: no leading or trailing whitespace (so a blank value is
/// refused too), and no control characters. The API trims what it stores, so a padded value
/// would differ from the remote forever.
const PLAIN_TEXT: &str = r"!self.matches(r'^\s|\s$|[[:cntrl:]]')";

/// A reference to a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to a FlashbackRepository in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RepositoryReference {
    /// Name of the FlashbackRepository.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where an object's recorded remote id was confirmed: on which API, with which credentials,
/// and when. The id is acted on only with the same API and credentials; and of two objects
/// recording one id on one API, the one that recorded it first holds it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecordedWith {
    /// The SHA-256 of the API URL a listing confirmed the id on (not the URL).
    pub api: String,
    /// The SHA-256 of the credentials Secret's namespace and name (not its data).
    pub credentials: String,
    /// When this object confirmed the id.
    pub at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// The value of an annotation of `meta`, if any.
fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The CRD files of `crds/`, by file name, in the order `flashback-operator crds` prints them.
pub fn crds() -> Vec<(String, CustomResourceDefinition)> {
    [
        FlashbackRepository::crd(),
        FlashbackAccessKey::crd(),
        FlashbackBucket::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
        (name, with_status_default(unwrapped(crd)))
    })
    .collect()
}

/// The CRD with every description as `kubectl explain` should show it: doc comments are
/// wrapped at 100 columns in the source, and a line break inside a sentence would show as one.
/// Paragraphs (blank lines) are kept.
fn unwrapped(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        serde_json::Value::String(text) if key == "description" => {
                            *text = unwrap_text(text);
                        }
                        _ => walk(child),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD serializes");
    walk(&mut value);
    serde_json::from_value(value).expect("the same CRD, reworded")
}

/// The CRD with a status the API server fills in at create: `{observedGeneration: 0}`. kstatus
/// (and so Flux's `wait`) calls an object without status Current; with this, a new object is
/// InProgress ("generation is 1, but latest observed generation is 0") until the operator
/// writes its first status.
fn with_status_default(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|schema| schema.open_api_v3_schema.as_mut())
            .and_then(|schema| schema.properties.as_mut())
            .and_then(|properties| properties.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                    serde_json::json!({}),
                ),
            );
            if let Some(observed) = status
                .properties
                .as_mut()
                .and_then(|properties| properties.get_mut("observedGeneration"))
            {
                observed.default = Some(
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                        serde_json::json!(0),
                    ),
                );
            }
        }
    }
    crd
}

/// Joins the lines of each paragraph with spaces.
fn unwrap_text(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One CRD as its file in `crds/` holds it. Long descriptions stay on one line each (no folded
/// `>-` blocks), so the files read and grep as the doc comments do.
fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    Ok(format!(
        "---\n{}",
        serde_saphyr::to_string_with_options(crd, options)?
    ))
}

/// Every CRD this operator serves, as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut yaml = String::new();
    for (_, crd) in crds() {
        yaml.push_str(&crd_yaml(&crd)?);
    }
    Ok(yaml)
}

/// Writes each CRD into `dir`, one file each, as `crds/` holds them.
pub fn write_crds(dir: &std::path::Path) -> anyhow::Result<()> {
    for (file, crd) in crds() {
        std::fs::write(dir.join(&file), crd_yaml(&crd)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_read_as_sentences_not_wrapped_lines() {
        assert_eq!(
            unwrap_text("one two\nthree\n\nnext\n paragraph"),
            "one two three\n\nnext paragraph"
        );
        for (file, crd) in crds() {
            let yaml = serde_json::to_string(&crd).unwrap();
            let value: serde_json::Value = serde_json::from_str(&yaml).unwrap();
            let mut descriptions = Vec::new();
            collect_descriptions(&value, &mut descriptions);
            assert!(descriptions.len() > 10, "{file}: descriptions were read");
            for description in descriptions {
                let single_breaks = description.replace("\n\n", "");
                assert!(!single_breaks.contains('\n'), "{file}: {description:?}");
            }
        }
    }

    fn collect_descriptions(value: &serde_json::Value, into: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    match child {
                        serde_json::Value::String(text) if key == "description" => {
                            into.push(text.clone())
                        }
                        _ => collect_descriptions(child, into),
                    }
                }
            }
            serde_json::Value::Array(items) => items
                .iter()
                .for_each(|item| collect_descriptions(item, into)),
            _ => {}
        }
    }

    #[test]
    fn printer_columns_say_why_an_object_is_not_ready() {
        for (file, crd) in crds() {
            let columns = crd.spec.versions[0]
                .additional_printer_columns
                .clone()
                .unwrap();
            let reason = columns.iter().find(|c| c.name == "Reason").unwrap();
            assert_eq!(
                (reason.json_path.as_str(), reason.priority),
                (".status.conditions[?(@.type==\"Ready\")].reason", None),
                "{file}"
            );
            let message = columns.iter().find(|c| c.name == "Message").unwrap();
            assert_eq!(
                (message.json_path.as_str(), message.priority),
                (".status.conditions[?(@.type==\"Ready\")].message", Some(1)),
                "{file}: the message only at -o wide"
            );
        }
    }

    #[test]
    fn committed_crds_match_the_rust_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        for (file, crd) in crds() {
            let committed = std::fs::read_to_string(dir.join(&file))
                .unwrap_or_else(|_| panic!("crds/{file} is missing: run `make crds`"));
            let generated = crd_yaml(&crd).unwrap();
            assert!(
                generated == committed,
                "crds/{file} is stale: regenerate it with `make crds`"
            );
        }
    }
}

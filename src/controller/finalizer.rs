//! The operator's finalizer, shared by every kind: it keeps an object until what the object
//! owns in Flashback is deleted or released. Added and removed with a write conditional on the
//! resourceVersion read, so a decision taken on a stale object is refused, not written.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::controller::error::Error;
use crate::crd::FINALIZER;

/// Whether the object carries the operator's finalizer.
pub fn has<K: Resource>(object: &K) -> bool {
    object.finalizers().iter().any(|f| f == FINALIZER)
}

/// The object with the operator's finalizer `present` or not; unchanged (no write) when it
/// already is. The operator's own finalizer is left out of the watch predicates, so this
/// triggers no second reconcile.
pub async fn set<K>(api: &Api<K>, object: K, present: bool) -> Result<K, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    if has(&object) == present {
        return Ok(object);
    }
    let mut finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    let patch = json!({
        "metadata": {
            "resourceVersion": object.resource_version(),
            "finalizers": finalizers,
        }
    });
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map_err(Error::from_write)
}

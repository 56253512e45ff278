//! Bounded waits on any kind of object, failing with what the object is when they run out.

use std::fmt::Debug;
use std::time::Duration;

use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::cluster::DEADLINE;

/// Waits until `check` holds for the object `name`, or fails saying what it is instead.
pub async fn until<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&K) -> bool) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    until_within(DEADLINE, api, name, what, check).await
}

/// [`until`] with its own deadline.
pub async fn until_within<K>(
    deadline: Duration,
    api: &Api<K>,
    name: &str,
    what: &str,
    check: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let waited = tokio::time::timeout(
        deadline,
        await_condition(api.clone(), name, |object: Option<&K>| {
            object.is_some_and(&check)
        }),
    )
    .await;
    match waited {
        Ok(Ok(Some(object))) => object,
        other => panic!(
            "{name} did not become {what} ({other:?}); it is {:#?}",
            api.get_opt(name).await.ok().flatten()
        ),
    }
}

/// Waits until `object` is gone (released by its finalizer and deleted).
pub async fn deleted<K>(api: &Api<K>, object: &K)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let released = tokio::time::timeout(
        DEADLINE,
        await_condition(
            api.clone(),
            &object.name_any(),
            conditions::is_deleted(&object.uid().unwrap()),
        ),
    )
    .await;
    assert!(
        matches!(released, Ok(Ok(_))),
        "{} was not released",
        object.name_any()
    );
}

//! Writing an object's status, the same for every kind: through the status subresource as a
//! merge patch, only when it changed, never with the usage figures (they are the stats task's:
//! a status computed from a cached object must not write older ones back), conditional on the
//! resourceVersion when the caller decided on that version, and with an Event when the object
//! enters a stall (or, where asked, leaves one). The caller puts the finalizer on first and
//! computes the next status; the rules of the patch and of the Event are pure functions here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::controller::conditions::{self, State};
use crate::controller::error::Error;
use crate::controller::events::{self, EventType, Publisher};
use crate::controller::reason::Reason;

/// The fields a status with a create record clears of `current`: the record, once the
/// create's outcome is known (this status has none and `current` had one).
pub fn cleared_create_attempt(
    next: Option<&crate::crd::CreateAttempt>,
    current: Option<&crate::crd::CreateAttempt>,
) -> Vec<&'static str> {
    if next.is_none() && current.is_some() {
        vec!["createAttempt"]
    } else {
        Vec::new()
    }
}

/// What the shared write needs to know of a kind's status.
pub trait KindStatus: Serialize + PartialEq {
    /// Its conditions, to tell a new stall from one already announced.
    fn conditions(&self) -> &[Condition];

    /// The fields this status (the next one) clears of `current`, by their name in the API: a
    /// merge patch keeps what it does not name, so they are written as `null`.
    fn cleared(&self, current: Option<&Self>) -> Vec<&'static str>;
}

/// Whether a write carries the resourceVersion the caller decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Refused when the object changed since: a status decided on a cache that missed a
    /// change is not written.
    Conditional,
    /// Only for facts that no change to the object can make stale (a remote object created),
    /// or for a kind that reads its object afresh before deciding.
    Unconditional,
}

/// Which changes of the Stalled condition an Event announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce {
    /// A stall, when its reason is new.
    NewStalls,
    /// A stall, when its reason is new, and the end of a stall.
    StallsAndResolutions,
}

/// Writes `next` as the status of `object` (the object as the caller last saw it) when it
/// differs from the status `object` has. Returns the object as the API server now holds it, or
/// `None` when nothing was written.
///
/// The Event is published once the write is in: a write refused because the object changed
/// (the decision was made on a stale cache) must not announce what it decided. A write refused
/// for good (a quota, an admission policy) still announces it: the Event may then be the only
/// place a person learns the state at all.
pub async fn write<K>(
    api: &Api<K>,
    events: &Publisher,
    object: &K,
    next: &K::Status,
    state: &State,
    write: Write,
    announce: Announce,
) -> Result<Option<K>, Error>
where
    K: Resource<DynamicType = ()> + HasStatus + Clone + DeserializeOwned + std::fmt::Debug,
    K::Status: KindStatus,
{
    let current = object.status();
    if current == Some(next) {
        return Ok(None);
    }
    let was_stalled = current.and_then(|status| conditions::stalled_reason(status.conditions()));
    let event = announcement(was_stalled, state, announce);
    let resource_version = match write {
        Write::Conditional => object.resource_version(),
        Write::Unconditional => None,
    };
    let body = patch(next, current, resource_version.as_deref());
    let written = api
        .patch_status(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(body),
        )
        .await
        .map_err(Error::from_write);
    let refused_for_good = written.as_ref().is_err_and(|error| !error.is_stale());
    if let Some((type_, reason, note)) = event.filter(|_| written.is_ok() || refused_for_good) {
        events::publish(events, &object.object_ref(&()), type_, reason, note).await;
    }
    written.map(Some)
}

/// The Event a status write announces, if any: entering a stall, or a stall under a new
/// reason, as a Warning; with [`Announce::StallsAndResolutions`], leaving a stall as well.
/// `was_stalled` is the reason of the stall the status written over records.
pub fn announcement(
    was_stalled: Option<&str>,
    state: &State,
    announce: Announce,
) -> Option<(EventType, Reason, String)> {
    match state {
        State::Stalled { reason, message } if was_stalled != Some(reason.as_str()) => {
            Some((EventType::Warning, *reason, message.clone()))
        }
        State::Stalled { .. } => None,
        _ if announce == Announce::NewStalls => None,
        _ => was_stalled.map(|was| {
            let note = format!("no longer stalled ({was}): {}", state.message());
            (EventType::Normal, Reason::StallResolved, note)
        }),
    }
}

/// The merge patch that writes `next` over `current`: without `stats`, with what `next` clears
/// as `null`, and with the resourceVersion that makes it conditional, when given.
pub fn patch<S: KindStatus>(
    next: &S,
    current: Option<&S>,
    resource_version: Option<&str>,
) -> Value {
    let mut body = json!({ "status": next });
    if let Some(status) = body["status"].as_object_mut() {
        status.remove("stats");
    }
    for field in next.cleared(current) {
        body["status"][field] = Value::Null;
    }
    if let Some(version) = resource_version {
        body["metadata"] = json!({ "resourceVersion": version });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{FlashbackBucketStatus, FlashbackRepositoryStatus, RepositoryStats};
    use crate::fixtures;

    fn stalled(reason: Reason) -> State {
        State::Stalled {
            reason,
            message: "fix it".into(),
        }
    }

    #[test]
    fn a_stall_is_announced_when_its_reason_is_new() {
        let unauthorized = stalled(Reason::Unauthorized);
        assert_eq!(
            announcement(None, &unauthorized, Announce::NewStalls),
            Some((EventType::Warning, Reason::Unauthorized, "fix it".into()))
        );
        assert_eq!(
            announcement(Some("Forbidden"), &unauthorized, Announce::NewStalls),
            Some((EventType::Warning, Reason::Unauthorized, "fix it".into()))
        );
        assert_eq!(
            announcement(Some("Unauthorized"), &unauthorized, Announce::NewStalls),
            None,
            "already announced"
        );
    }

    #[test]
    fn the_end_of_a_stall_is_announced_only_where_asked() {
        let synced = State::Ready {
            reason: Reason::Synced,
            message: "in step".into(),
        };
        assert_eq!(
            announcement(Some("Unauthorized"), &synced, Announce::NewStalls),
            None
        );
        assert_eq!(
            announcement(
                Some("Unauthorized"),
                &synced,
                Announce::StallsAndResolutions
            ),
            Some((
                EventType::Normal,
                Reason::StallResolved,
                "no longer stalled (Unauthorized): in step".into()
            ))
        );
        assert_eq!(
            announcement(None, &synced, Announce::StallsAndResolutions),
            None,
            "was not stalled"
        );
    }

    #[test]
    fn a_patch_leaves_the_figures_out_and_names_what_it_clears() {
        let mut current = fixtures::ready_status("r1", 1);
        current.create_attempt = Some(crate::controller::create_attempt::CreateAttempt::begin(
            None,
            "media",
            &[],
            "2026-11-26T19:00:00Z".parse().unwrap(),
        ));
        let next = FlashbackRepositoryStatus {
            stats: Some(RepositoryStats {
                total_upload_bytes: 1,
                total_download_bytes: 2,
                total_size_change: 3,
                observed_at: fixtures::time("2026-11-26T19:00:00Z"),
            }),
            create_attempt: None,
            ..current.clone()
        };
        let body = patch(&next, Some(&current), Some("42"));
        assert_eq!(body["status"].get("stats"), None, "the stats task's");
        assert_eq!(body["status"].get("createAttempt"), Some(&Value::Null));
        assert_eq!(body["status"]["repoId"], "r1");
        assert_eq!(body["metadata"]["resourceVersion"], "42");

        let unconditional = patch(&next, None, None);
        assert_eq!(unconditional.get("metadata"), None);
        assert_eq!(
            unconditional["status"].get("createAttempt"),
            None,
            "nothing to clear"
        );
        let bucket = FlashbackBucketStatus::default();
        assert_eq!(patch(&bucket, Some(&bucket), None)["status"], json!({}));
    }
}

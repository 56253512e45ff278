//! Kubernetes Events, shared by every kind: a [`Reason`] from the one vocabulary and a note for
//! a person. Publishing is best effort: a failed Event is logged, never a failed reconcile.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

use crate::controller::reason::Reason;

/// Records an Event about `object`.
pub async fn publish(
    recorder: &Recorder,
    object: &ObjectReference,
    type_: EventType,
    reason: Reason,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.as_str().to_string(),
        note: Some(note),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, object).await {
        warn!(error = %error, reason = reason.as_str(), "could not publish an Event");
    }
}

//! Kubernetes Events, shared by every kind: a [`Reason`] from the one vocabulary and a note for
//! a person. Publishing is best effort: a failed Event is logged, never a failed reconcile.
//!
//! An Event that repeats within six minutes (a stall looked at again at each resync) counts
//! into the first one's `series`, as client-go and kube-runtime do. Unlike kube-runtime's
//! `Recorder`, which kept every Event it published for those six minutes and scanned that
//! cache on every publish (after a burst of 10,000 creates: 2.4 KB of memory per object and a
//! scan of 10,000 entries per Event), the publisher keeps only a hash of each recent Event with
//! its name and count, and forgets old ones at housekeeping.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::warn;

use crate::controller::reason::Reason;

/// How long a repeat counts into an earlier Event's series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// Normal, or Warning: something a person should look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

/// Creates the operator's Events.
pub struct Publisher {
    kube: kube::Client,
    /// `reportingController`.
    controller: String,
    /// `reportingInstance`: the Pod, or the controller's name outside one.
    instance: String,
    /// Events published in the last [`SERIES_WINDOW`], by a hash of what they say about which
    /// object.
    recent: Mutex<HashMap<u64, Recent>>,
}

/// An Event published lately: its name, how often it was seen, and when last.
struct Recent {
    name: String,
    count: i32,
    last: Instant,
}

impl Publisher {
    pub fn new(kube: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            kube,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            recent: Mutex::default(),
        }
    }

    /// Forgets Events too old to count repeats into; returns how many are remembered.
    pub fn forget_old(&self) -> usize {
        let mut recent = self.lock();
        recent.retain(|_, r| r.last.elapsed() < SERIES_WINDOW);
        recent.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Recent>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Event about `object`, as it is created (pure).
    pub fn event(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: Reason,
        note: String,
        now: k8s_openapi::jiff::Timestamp,
    ) -> Event {
        Event {
            metadata: ObjectMeta {
                namespace: object.namespace.clone(),
                // Unique per object and instant, as kubectl and client-go name theirs.
                name: Some(format!(
                    "{}.{:x}",
                    name_part(object.name.as_deref().unwrap_or(&self.controller)),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some("Reconcile".to_string()),
            reason: Some(reason.as_str().to_string()),
            note: Some(within_note_limit(note)),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            regarding: Some(object.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

/// An object's name as the start of an Event's name: short enough that the name with its
/// suffix (a dot and up to 16 hex digits) stays within the 253 characters of a DNS subdomain,
/// and ending in a letter or digit, as each of its labels must.
fn name_part(name: &str) -> &str {
    let end = name
        .char_indices()
        .map(|(at, c)| at + c.len_utf8())
        .take_while(|end| *end <= 253 - 17)
        .last()
        .unwrap_or(0);
    name[..end].trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
}

/// The most bytes the API server takes in an Event's note (events.k8s.io/v1).
const NOTE_LIMIT: usize = 1024;

/// A note cut to what the API server takes, on a character boundary, marked as cut: an Event
/// refused for its length would tell nobody anything.
fn within_note_limit(mut note: String) -> String {
    const CUT: &str = " [...]";
    if note.len() <= NOTE_LIMIT {
        return note;
    }
    let mut end = NOTE_LIMIT - CUT.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(CUT);
    note
}

/// What makes two Events the same one seen again: the object, the type, the reason and the note.
fn series_key(object: &ObjectReference, type_: EventType, reason: Reason, note: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    (&object.namespace, &object.name, &object.uid).hash(&mut hasher);
    (type_, reason.as_str(), note).hash(&mut hasher);
    hasher.finish()
}

/// Records an Event about `object`: a new one, or one more of a recent identical one.
pub async fn publish(
    publisher: &Publisher,
    object: &ObjectReference,
    type_: EventType,
    reason: Reason,
    note: String,
) {
    let key = series_key(object, type_, reason, &note);
    let namespace = object.namespace.as_deref().unwrap_or("default");
    let events: Api<Event> = Api::namespaced(publisher.kube.clone(), namespace);
    let now = k8s_openapi::jiff::Timestamp::now();
    let repeat = publisher
        .lock()
        .get(&key)
        .filter(|r| r.last.elapsed() < SERIES_WINDOW)
        .map(|r| (r.name.clone(), r.count + 1));
    if let Some((name, count)) = repeat {
        let series = json!({ "series": { "count": count, "lastObservedTime": MicroTime(now) } });
        // An Event the API server expired meanwhile is created afresh below.
        if events
            .patch(&name, &PatchParams::default(), &Patch::Merge(series))
            .await
            .is_ok()
        {
            publisher.lock().insert(
                key,
                Recent {
                    name,
                    count,
                    last: Instant::now(),
                },
            );
            return;
        }
    }
    let event = publisher.event(object, type_, reason, note, now);
    match events.create(&PostParams::default(), &event).await {
        Ok(created) => {
            publisher.lock().insert(
                key,
                Recent {
                    name: created.metadata.name.unwrap_or_default(),
                    count: 1,
                    last: Instant::now(),
                },
            );
        }
        Err(error) => {
            warn!(error = %error, reason = reason.as_str(), "could not publish an Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_event_names_its_object_and_reporter_and_keeps_nothing_else() {
        // A client is needed to build a Publisher; nothing is sent here.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let publisher = Publisher::new(
            kube::Client::try_from(config).unwrap(),
            "flashback-operator",
            None,
        );
        let object = ObjectReference {
            api_version: Some("flashback.tech/v1alpha1".into()),
            kind: Some("FlashbackRepository".into()),
            name: Some("media".into()),
            namespace: Some("team-a".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        let now: k8s_openapi::jiff::Timestamp = "2026-11-28T15:00:00Z".parse().unwrap();
        let event = publisher.event(
            &object,
            EventType::Warning,
            Reason::Created,
            "created remote repository r1".into(),
            now,
        );
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {
                    "name": format!("media.{:x}", now.as_nanosecond()),
                    "namespace": "team-a",
                },
                "eventTime": "2026-11-28T15:00:00.000000Z",
                "action": "Reconcile",
                "reason": "Created",
                "note": "created remote repository r1",
                "type": "Warning",
                "regarding": {
                    "apiVersion": "flashback.tech/v1alpha1",
                    "kind": "FlashbackRepository",
                    "name": "media",
                    "namespace": "team-a",
                    "uid": "u1",
                },
                "reportingController": "flashback-operator",
                "reportingInstance": "flashback-operator",
            })
        );
    }

    #[test]
    fn a_note_longer_than_the_api_takes_is_cut_on_a_character_boundary() {
        assert_eq!(within_note_limit("short".into()), "short");
        let long = "é".repeat(1000);
        let cut = within_note_limit(long);
        assert!(cut.len() <= NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with("é [...]"), "{cut}");
    }

    #[test]
    fn a_repeat_is_the_same_object_type_reason_and_note() {
        let object = |uid: &str| ObjectReference {
            name: Some("media".into()),
            namespace: Some("team-a".into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        };
        let key =
            |uid: &str, type_, reason, note: &str| series_key(&object(uid), type_, reason, note);
        let stall = key("u1", EventType::Warning, Reason::NameAlreadyUsed, "taken");
        assert_eq!(
            stall,
            key("u1", EventType::Warning, Reason::NameAlreadyUsed, "taken")
        );
        for other in [
            key("u2", EventType::Warning, Reason::NameAlreadyUsed, "taken"),
            key("u1", EventType::Normal, Reason::NameAlreadyUsed, "taken"),
            key("u1", EventType::Warning, Reason::Unauthorized, "taken"),
            key(
                "u1",
                EventType::Warning,
                Reason::NameAlreadyUsed,
                "taken elsewhere",
            ),
        ] {
            assert_ne!(stall, other);
        }
    }

    #[test]
    fn an_event_name_fits_whatever_the_objects_name() {
        let long = format!("{}-{}", "a".repeat(235), "b".repeat(17));
        assert_eq!(name_part(&long), "a".repeat(235));
        assert_eq!(name_part("media"), "media");
        let at_the_limit = "c".repeat(236);
        assert_eq!(name_part(&at_the_limit), at_the_limit);
    }
}

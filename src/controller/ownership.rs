//! Which object holds a remote id, the same for every kind. Pure.
//!
//! A server's answer is not proof: a tenant may point its credentials at a server of its own
//! that answers a create with another tenant's id. So an id counts only where it was
//! confirmed: a status records, beside the id, the API and the credentials of the listing that
//! showed it ([`RecordedWith`]). An object acts on its id only with those same ones; after its
//! credentials or API change, only once a listing with the new ones shows the id under the
//! object's own name. And of two objects recording one id on one API, the one that recorded it
//! first holds it: never the older object by age alone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::controller::credentials::SecretName;
use crate::controller::digest::digest;
pub use crate::crd::{CreateAttempt, RecordedWith};
use flashback_client::Url;

/// The API and credentials an object acts with now, as digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    api: String,
    credentials: String,
}

impl Identity {
    pub fn new(api_url: &Url, secret: &SecretName) -> Self {
        Self {
            api: digest([("api", api_url.as_str().as_bytes())]),
            credentials: digest([
                ("namespace", secret.namespace.as_bytes()),
                ("name", secret.name.as_bytes()),
            ]),
        }
    }

    /// Whether an id recorded `with` may be acted on now: it was confirmed with the current
    /// API and credentials. A record from before the operator kept them (`None`) counts as made
    /// with them (an object that recorded an id then and has not changed since must go on, its
    /// drift corrected); it is recorded anew, dated from the object's creation, at its next
    /// reconcile, and two such records of one id hold against each other (see [`holds`]).
    pub fn confirmed(&self, with: Option<&RecordedWith>) -> bool {
        with.is_none_or(|with| with.api == self.api && with.credentials == self.credentials)
    }

    /// `attempt`, marked as sent with this API and these credentials.
    pub fn stamp(&self, attempt: CreateAttempt) -> CreateAttempt {
        CreateAttempt {
            api: Some(self.api.clone()),
            credentials: Some(self.credentials.clone()),
            ..attempt
        }
    }

    /// Whether `attempt` was sent with this API and these credentials: only then can a
    /// listing with them show what it made. (One from before they were kept counts.) An
    /// attempt sent to a tenant's own server never claims anything listed elsewhere.
    pub fn sent(&self, attempt: &CreateAttempt) -> bool {
        attempt.api.as_ref().is_none_or(|api| *api == self.api)
            && attempt
                .credentials
                .as_ref()
                .is_none_or(|credentials| *credentials == self.credentials)
    }

    /// The record to write with `id`: the current one while it already records that id with
    /// these credentials, else a new one confirmed `now`, or, for the same id recorded before
    /// the operator kept records, confirmed when the object was `created` (it keeps its place).
    pub fn record(
        &self,
        current_id: Option<&str>,
        current: Option<&RecordedWith>,
        id: &str,
        now: &Time,
        created: Option<&Time>,
    ) -> RecordedWith {
        let same_id = current_id == Some(id);
        let at = match (current, created) {
            (Some(with), _) if same_id && self.confirmed(Some(with)) => return with.clone(),
            (None, Some(created)) if same_id => created.clone(),
            _ => now.clone(),
        };
        RecordedWith {
            api: self.api.clone(),
            credentials: self.credentials.clone(),
            at,
        }
    }
}

/// One object's record of a remote id, as the rules read it.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    pub uid: Option<&'a str>,
    pub id: Option<&'a str>,
    pub with: Option<&'a RecordedWith>,
    /// When the object was created: the time of a record from before the operator kept one.
    pub created: Option<Timestamp>,
}

impl Claim<'_> {
    /// Whether this records `id` on the API of `identity`, with whatever credentials.
    fn records_on_api(&self, id: &str, identity: &Identity) -> bool {
        self.id == Some(id) && self.with.is_none_or(|with| with.api == identity.api)
    }

    /// Since when it records its id, ties broken by uid.
    fn since(&self) -> (Option<Timestamp>, Option<&str>) {
        (self.with.map(|with| with.at.0).or(self.created), self.uid)
    }
}

/// Whether `other` holds `id` rather than `me`, who acts with `identity`: `other` records it on
/// the same API, and `me` does not record it, confirmed with `identity` (or from before records
/// were kept), since earlier. Two records from before records were kept hold against each
/// other: neither object acts until a person decides. Asking for an id (the adoption
/// annotation) holds nothing; an object never holds against itself.
pub fn holds(other: &Claim<'_>, me: &Claim<'_>, id: &str, identity: &Identity) -> bool {
    let me_records = me.id == Some(id) && identity.confirmed(me.with);
    let both_from_before = me.with.is_none() && other.with.is_none();
    let me_first = me_records && !both_from_before && me.since() < other.since();
    other.uid != me.uid && other.records_on_api(id, identity) && !me_first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(api: &str, secret: &str) -> Identity {
        Identity::new(
            &api.parse().unwrap(),
            &SecretName {
                namespace: "team-a".into(),
                name: secret.into(),
            },
        )
    }

    fn at(text: &str) -> Time {
        Time(text.parse().unwrap())
    }

    fn claim<'a>(uid: &'a str, id: &'a str, with: Option<&'a RecordedWith>) -> Claim<'a> {
        Claim {
            uid: Some(uid),
            id: Some(id),
            with,
            created: Some("2026-12-01T00:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn an_id_is_acted_on_only_with_the_api_and_credentials_that_confirmed_it() {
        let here = identity("https://api.example/", "token");
        let with = here.record(None, None, "r1", &at("2026-12-07T10:00:00Z"), None);
        assert!(here.confirmed(Some(&with)));
        assert!(
            here.confirmed(None),
            "a record from before counts as made here"
        );
        assert!(!identity("https://own.example/", "token").confirmed(Some(&with)));
        assert!(!identity("https://api.example/", "other").confirmed(Some(&with)));
        assert!(!format!("{with:?}").contains("api.example"), "digests only");
    }

    #[test]
    fn an_attempt_claims_only_what_a_listing_of_where_it_was_sent_shows() {
        let here = identity("https://api.example/", "token");
        let attempt = CreateAttempt {
            started_at: at("2026-12-07T10:00:00Z"),
            nonce: "n".into(),
            name: "media".into(),
            sent: "f".into(),
            api: None,
            credentials: None,
        };
        assert!(here.sent(&attempt), "a record from before counts");
        let stamped = identity("https://own.example/", "mine").stamp(attempt.clone());
        assert!(!here.sent(&stamped), "sent to a tenant's own server");
        assert!(here.sent(&here.stamp(attempt)));
    }

    #[test]
    fn a_record_is_kept_while_it_records_the_same_id_with_the_same_credentials() {
        let here = identity("https://api.example/", "token");
        let first = here.record(None, None, "r1", &at("2026-12-07T10:00:00Z"), None);
        let later = at("2026-12-07T11:00:00Z");
        let created = at("2026-11-01T00:00:00Z");
        let record = |who: &Identity, with: Option<&RecordedWith>, id: &str| {
            who.record(Some("r1"), with, id, &later, Some(&created))
        };
        assert_eq!(record(&here, Some(&first), "r1"), first);
        assert_eq!(
            record(&here, Some(&first), "r2").at,
            later,
            "another id is confirmed anew"
        );
        let moved = identity("https://api.example/", "other");
        assert_eq!(record(&moved, Some(&first), "r1").at, later);
        assert_eq!(
            record(&here, None, "r1").at,
            created,
            "a record from before keeps its place"
        );
    }

    #[test]
    fn the_first_to_record_an_id_on_an_api_holds_it_whatever_the_objects_ages() {
        let here = identity("https://api.example/", "shared");
        let victim = here.record(None, None, "r1", &at("2026-12-07T10:00:00Z"), None);
        let attacker = here.record(None, None, "r1", &at("2026-12-07T10:05:00Z"), None);
        let mut old = claim("uid-old", "r1", Some(&attacker));
        old.created = Some("2020-01-01T00:00:00Z".parse().unwrap());
        let young = claim("uid-young", "r1", Some(&victim));
        assert!(holds(&young, &old, "r1", &here), "recorded first");
        assert!(!holds(&old, &young, "r1", &here));
        assert!(!holds(&young, &young, "r1", &here), "never against itself");
        assert!(!holds(&young, &old, "r2", &here));
    }

    #[test]
    fn a_record_on_another_api_holds_nothing_here_and_a_moved_record_wins_nothing() {
        let shared = identity("https://api.example/", "shared");
        let own = identity("https://own.example/", "mine");
        let on_own_api = own.record(None, None, "r1", &at("2026-12-07T09:00:00Z"), None);
        let victim = shared.record(None, None, "r1", &at("2026-12-07T10:00:00Z"), None);
        let attacker = claim("uid-attacker", "r1", Some(&on_own_api));
        let honest = claim("uid-honest", "r1", Some(&victim));
        assert!(
            !holds(&attacker, &honest, "r1", &shared),
            "what another server answered blocks nobody here"
        );
        assert!(
            holds(&honest, &attacker, "r1", &shared),
            "an id recorded elsewhere, earlier, is not taken here"
        );
        // A request by annotation records nothing.
        let asking = Claim {
            id: None,
            ..claim("uid-asking", "r1", None)
        };
        assert!(!holds(&asking, &honest, "r1", &shared));
    }

    #[test]
    fn records_from_before_count_from_the_objects_creation() {
        let here = identity("https://api.example/", "shared");
        let mut legacy = claim("uid-legacy", "r1", None);
        legacy.created = Some("2026-11-01T00:00:00Z".parse().unwrap());
        let new = here.record(None, None, "r1", &at("2026-12-07T10:00:00Z"), None);
        let newer = claim("uid-new", "r1", Some(&new));
        assert!(holds(&legacy, &newer, "r1", &here));
        assert!(!holds(&newer, &legacy, "r1", &here));
        // Two of them: each holds against the other, whatever their ages.
        let mut other_legacy = claim("uid-other", "r1", None);
        other_legacy.created = Some("2020-01-01T00:00:00Z".parse().unwrap());
        assert!(holds(&legacy, &other_legacy, "r1", &here));
        assert!(holds(&other_legacy, &legacy, "r1", &here));
    }
}

//! The create record every kind shares: what one attempt to create a remote object sent,
//! recorded in the status (`status.createAttempt`) before the create, in a write conditional
//! on the resourceVersion, so that after an unknown outcome (a crash, a timeout, a 500) the
//! object that attempt made can be told apart from anyone else's. Each kind says which fields
//! describe its body; the record keeps the first attempt's time, the name, and a fingerprint of
//! those fields (never a secret). Pure: making and matching, no I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub use crate::crd::CreateAttempt;

/// How far the Flashback server's clock may be behind the operator's.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

impl CreateAttempt {
    /// The next attempt to create an object named `name` whose body is described by `fields`
    /// (in a fixed order): the first attempt's time is kept when `previous` is given, and
    /// everything else is this attempt's.
    pub fn begin(
        previous: Option<&CreateAttempt>,
        name: &str,
        fields: &[&[u8]],
        now: Timestamp,
    ) -> Self {
        Self {
            started_at: previous.map_or(Time(now), |p| p.started_at.clone()),
            nonce: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            name: name.to_string(),
            sent: fingerprint(fields),
            api: None,
            credentials: None,
        }
    }

    /// Whether a listed object named `name`, described by `fields`, created at `created_at`,
    /// can be what this attempt made: the same name and the same body as sent, and created no
    /// earlier than the first attempt (allowing for clocks that differ). An unknown creation
    /// time does not rule it out; a different body does.
    pub fn made_as(&self, name: &str, fields: &[&[u8]], created_at: Option<&str>) -> bool {
        let created = created_at.and_then(|t| t.parse::<Timestamp>().ok());
        name == self.name
            && fingerprint(fields) == self.sent
            && created.is_none_or(|created| created >= self.started_at.0 - CLOCK_SKEW)
    }
}

/// FNV-1a (64 bit) of the fields, each length-prefixed: stable across Rust versions and
/// builds, unlike `DefaultHasher`, since it is stored in objects.
fn fingerprint(fields: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for byte in (field.len() as u64).to_le_bytes().iter().chain(*field) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_later_attempt_keeps_the_first_time_and_records_its_own_body() {
        let first = CreateAttempt::begin(None, "media", &[b"s3"], at("2026-11-26T19:00:00Z"));
        let second = CreateAttempt::begin(
            Some(&first),
            "renamed",
            &[b"gcs"],
            at("2026-11-26T19:05:00Z"),
        );
        assert_eq!(second.started_at, first.started_at);
        assert_eq!(second.name, "renamed");
        assert_ne!(second.nonce, first.nonce);
        assert_ne!(second.sent, first.sent);
    }

    #[test]
    fn only_the_same_name_and_fields_created_since_the_first_attempt_are_its_result() {
        let fields: &[&[u8]] = &[b"media", b"s3"];
        let attempt = CreateAttempt::begin(None, "media", fields, at("2026-11-26T19:00:00Z"));
        assert!(attempt.made_as("media", fields, Some("2026-11-26T19:00:02Z")));
        assert!(attempt.made_as("media", fields, None), "a time unknown");
        assert!(
            attempt.made_as("media", fields, Some("2026-11-26T18:58:00Z")),
            "a server clock a little behind ours"
        );
        assert!(!attempt.made_as("media", fields, Some("2026-11-25T10:00:00Z")));
        assert!(!attempt.made_as("other", fields, None));
        assert!(!attempt.made_as("media", &[b"media", b"gcs"], None));
        // Fields are length-prefixed: moving a byte from one to the next is another body.
        assert!(!attempt.made_as("media", &[b"medias", b"3"], None));
    }

    #[test]
    fn a_recorded_fingerprint_never_changes() {
        // Objects keep it across upgrades: another value would not recognise their creates.
        assert_eq!(fingerprint(&[b"media", b"s3"]), "2754924079e7dbb4");
    }
}

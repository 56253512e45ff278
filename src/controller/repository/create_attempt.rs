//! The create marker: what one attempt to create a remote repository sent, recorded in the
//! status (`status.createAttempt`) before the `POST` with a write conditional on the
//! resourceVersion, so that after an unknown outcome (a crash, a timeout, a 500) the
//! repository that attempt made can be told apart from anyone else's. Pure: making and
//! matching, no I/O.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;

pub use crate::crd::CreateAttempt;
use crate::crd::FlashbackRepository;
use flashback_client::{Repo, RepoWrite};

/// How far the Flashback server's clock may be behind the operator's.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_mins(5);

impl CreateAttempt {
    /// The next attempt to create `body`: the first attempt's time is kept when `previous`
    /// is given, and everything else is this attempt's.
    pub fn next(previous: Option<&CreateAttempt>, body: &RepoWrite, now: Timestamp) -> Self {
        Self {
            started_at: previous.map_or(Time(now), |p| p.started_at.clone()),
            nonce: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            name: body.name.clone(),
            sent: fingerprint(&Shape::of_write(body)),
        }
    }

    /// The attempt recorded on an object, if any.
    pub fn read(repo: &FlashbackRepository) -> Option<Self> {
        repo.status.as_ref()?.create_attempt.clone()
    }

    /// Whether `remote` can be what this attempt made: the same name and the same body as
    /// sent, and created no earlier than the first attempt (allowing for clocks that
    /// differ). An unknown creation time does not rule it out; a different body does.
    pub fn made(&self, remote: &Repo) -> bool {
        let created = remote
            .created_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok());
        remote.name == self.name
            && fingerprint(&Shape::of_listed(remote)) == self.sent
            && created.is_none_or(|created| created >= self.started_at.0 - CLOCK_SKEW)
    }
}

impl CreateAttempt {
    /// The next attempt to create an object named `name` whose sent body is described by
    /// `fields` (in a fixed order; never a secret): as [`CreateAttempt::next`], for any kind.
    pub fn begin(
        previous: Option<&CreateAttempt>,
        name: &str,
        fields: &[&str],
        now: Timestamp,
    ) -> Self {
        Self {
            started_at: previous.map_or(Time(now), |p| p.started_at.clone()),
            nonce: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            name: name.to_string(),
            sent: fingerprint_fields(fields),
        }
    }

    /// Whether a listed object named `name`, described by `fields`, created at `created_at`,
    /// can be what this attempt made (see [`CreateAttempt::made`]).
    pub fn made_as(&self, name: &str, fields: &[&str], created_at: Option<&str>) -> bool {
        let created = created_at.and_then(|t| t.parse::<Timestamp>().ok());
        name == self.name
            && fingerprint_fields(fields) == self.sent
            && created.is_none_or(|created| created >= self.started_at.0 - CLOCK_SKEW)
    }
}

/// FNV-1a (64 bit) of length-prefixed fields, as [`fingerprint`].
fn fingerprint_fields(fields: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for byte in (field.len() as u64)
            .to_le_bytes()
            .iter()
            .chain(field.as_bytes())
        {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// What a repository is, in a canonical form: bucket order does not count and an unset folder
/// is an empty one, as in [`super::plan::matches`].
struct Shape {
    name: String,
    storage_type: String,
    mode: String,
    buckets: Vec<(String, String, bool)>,
}

impl Shape {
    fn of_write(body: &RepoWrite) -> Self {
        Self::new(
            &body.name,
            wire(&body.storage_type),
            wire(&body.mode),
            body.repo_buckets
                .iter()
                .map(|b| (b.bucket_id.as_str(), b.folder.as_deref(), b.master)),
        )
    }

    fn of_listed(repo: &Repo) -> Self {
        Self::new(
            &repo.name,
            wire(&repo.storage_type),
            wire(&repo.mode),
            repo.buckets
                .iter()
                .map(|b| (b.bucket_id.as_str(), b.folder.as_deref(), b.master)),
        )
    }

    fn new<'a>(
        name: &str,
        storage_type: String,
        mode: String,
        buckets: impl Iterator<Item = (&'a str, Option<&'a str>, bool)>,
    ) -> Self {
        let mut buckets: Vec<_> = buckets
            .map(|(id, folder, master)| (id.to_string(), folder.unwrap_or("").to_string(), master))
            .collect();
        buckets.sort_unstable();
        Self {
            name: name.to_string(),
            storage_type,
            mode,
            buckets,
        }
    }
}

/// An enum as the API spells it.
fn wire(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// FNV-1a (64 bit) of the shape's fields, each length-prefixed: stable across Rust versions
/// and builds, unlike `DefaultHasher`, since it is stored in objects.
fn fingerprint(shape: &Shape) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for byte in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(shape.name.as_bytes());
    feed(shape.storage_type.as_bytes());
    feed(shape.mode.as_bytes());
    for (id, folder, master) in &shape.buckets {
        feed(id.as_bytes());
        feed(folder.as_bytes());
        feed(&[u8::from(*master)]);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::repository::plan;
    use crate::fixtures;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn a_later_attempt_keeps_the_first_time_and_records_its_own_body() {
        let repo = fixtures::repo("team-a", "media");
        let first = CreateAttempt::next(None, &plan::desired(&repo), at("2026-11-26T19:00:00Z"));
        let mut renamed = repo.clone();
        renamed.spec.name = Some("renamed".into());
        let second = CreateAttempt::next(
            Some(&first),
            &plan::desired(&renamed),
            at("2026-11-26T19:05:00Z"),
        );
        assert_eq!(second.started_at, first.started_at);
        assert_eq!(second.name, "renamed");
        assert_ne!(second.nonce, first.nonce);
        assert_ne!(second.sent, first.sent);
    }

    #[test]
    fn only_the_body_that_was_sent_created_since_the_first_attempt_is_its_result() {
        let repo = fixtures::repo("team-a", "media");
        let body = plan::desired(&repo);
        let attempt = CreateAttempt::next(None, &body, at("2026-11-26T19:00:00Z"));
        let mut remote = fixtures::remote_repo("r1", &body);

        remote.created_at = Some("2026-11-26T19:00:02Z".into());
        assert!(attempt.made(&remote));
        // Bucket order is not significant.
        remote.buckets.reverse();
        assert!(attempt.made(&remote));
        // A server clock a little behind ours still counts.
        remote.created_at = Some("2026-11-26T18:58:00Z".into());
        assert!(attempt.made(&remote));
        // Made long before this object tried: someone else's.
        remote.created_at = Some("2026-11-25T10:00:00Z".into());
        assert!(!attempt.made(&remote));

        // The same name with other buckets, made at the same time: someone else's.
        let mut other = fixtures::remote_repo("r2", &body);
        other.created_at = Some("2026-11-26T19:00:02Z".into());
        other.buckets[0].bucket_id = "someone-elses-bucket".into();
        assert!(!attempt.made(&other));
        let mut renamed = fixtures::remote_repo("r3", &body);
        renamed.name = "other".into();
        assert!(!attempt.made(&renamed));
    }
}

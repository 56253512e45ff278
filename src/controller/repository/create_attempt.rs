//! The repository's create record: which fields of a repository body the shared
//! [`CreateAttempt`] fingerprints, in a canonical form (bucket order does not count and an
//! unset folder is an empty one, as in [`plan::matches`](super::plan::matches)), so that the
//! repository an attempt made is recognised in a listing. Pure.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::controller::create_attempt::CreateAttempt;
use crate::crd::FlashbackRepository;
use flashback_client::{Repo, RepoWrite};

/// The next attempt to create `body` (see [`CreateAttempt::begin`]).
pub fn next(previous: Option<&CreateAttempt>, body: &RepoWrite, now: Timestamp) -> CreateAttempt {
    let shape = Shape::of_write(body);
    CreateAttempt::begin(previous, &body.name, &shape.fields(), now)
}

/// The attempt recorded on an object, if any.
pub fn read(repo: &FlashbackRepository) -> Option<CreateAttempt> {
    repo.status.as_ref()?.create_attempt.clone()
}

/// Whether `remote` can be what `attempt` made (see [`CreateAttempt::made_as`]).
pub fn made(attempt: &CreateAttempt, remote: &Repo) -> bool {
    let shape = Shape::of_listed(remote);
    attempt.made_as(&remote.name, &shape.fields(), remote.created_at.as_deref())
}

/// What a repository is, in a canonical form.
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

    /// The fields in the order they are fingerprinted: name, storage type, mode, then each
    /// bucket's id, folder and master flag (one byte).
    fn fields(&self) -> Vec<&[u8]> {
        let mut fields = vec![
            self.name.as_bytes(),
            self.storage_type.as_bytes(),
            self.mode.as_bytes(),
        ];
        for (id, folder, master) in &self.buckets {
            let master: &[u8] = if *master { &[1] } else { &[0] };
            fields.extend([id.as_bytes(), folder.as_bytes(), master]);
        }
        fields
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
        let first = next(None, &plan::desired(&repo), at("2026-11-26T19:00:00Z"));
        let mut renamed = repo.clone();
        renamed.spec.name = Some("renamed".into());
        let second = next(
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
        let attempt = next(None, &body, at("2026-11-26T19:00:00Z"));
        let mut remote = fixtures::remote_repo("r1", &body);

        remote.created_at = Some("2026-11-26T19:00:02Z".into());
        assert!(made(&attempt, &remote));
        // Bucket order is not significant.
        remote.buckets.reverse();
        assert!(made(&attempt, &remote));
        // A server clock a little behind ours still counts.
        remote.created_at = Some("2026-11-26T18:58:00Z".into());
        assert!(made(&attempt, &remote));
        // Made long before this object tried: someone else's.
        remote.created_at = Some("2026-11-25T10:00:00Z".into());
        assert!(!made(&attempt, &remote));

        // The same name with other buckets, made at the same time: someone else's.
        let mut other = fixtures::remote_repo("r2", &body);
        other.created_at = Some("2026-11-26T19:00:02Z".into());
        other.buckets[0].bucket_id = "someone-elses-bucket".into();
        assert!(!made(&attempt, &other));
        let mut renamed = fixtures::remote_repo("r3", &body);
        renamed.name = "other".into();
        assert!(!made(&attempt, &renamed));
    }

    #[test]
    fn the_fingerprint_a_repository_records_never_changes() {
        // Objects keep it across upgrades: another value would not recognise their creates.
        let body = plan::desired(&fixtures::repo("team-a", "media"));
        let attempt = next(None, &body, at("2026-11-26T19:00:00Z"));
        assert_eq!(attempt.sent, "0e953574d5391cfe");
    }
}

//! The status a repository reconcile writes, computed as a pure function of what it found;
//! the conditions themselves are the shared [`conditions`], and the write is the shared
//! [`status_write`](crate::controller::status_write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::controller::conditions::{self, State};
use crate::controller::ownership::Identity;
use crate::controller::status_write::{self, KindStatus};
use crate::crd::{FlashbackRepository, FlashbackRepositoryStatus};

/// The status to write: the current one with the id, name and conditions replaced. An id
/// given is recorded as confirmed with `identity` (the API and credentials of the listing that
/// showed it). Statistics belong to the stats task and are kept as they are.
pub fn next(
    repo: &FlashbackRepository,
    repo_id: Option<String>,
    identity: Option<&Identity>,
    state: &State,
    now: &Time,
) -> FlashbackRepositoryStatus {
    let current = repo.status.clone().unwrap_or_default();
    let recorded_with = match (&repo_id, identity) {
        (Some(id), Some(identity)) => Some(identity.record(
            current.repo_id.as_deref(),
            current.recorded_with.as_ref(),
            id,
            now,
            repo.metadata.creation_timestamp.as_ref(),
        )),
        _ => current.recorded_with.clone(),
    };
    let generation = repo.metadata.generation;
    let conditions = conditions::next(&current.conditions, state, generation, now);
    FlashbackRepositoryStatus {
        repo_id: repo_id.or(current.repo_id.clone()),
        recorded_with,
        remote_name: Some(repo.remote_name().to_string()),
        observed_generation: generation,
        conditions,
        stats: current.stats,
        last_handled_reconcile_at: repo
            .reconcile_requested_at()
            .map(str::to_string)
            .or(current.last_handled_reconcile_at),
        create_attempt: current.create_attempt,
    }
}

impl KindStatus for FlashbackRepositoryStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    fn cleared(&self, current: Option<&Self>) -> Vec<&'static str> {
        let current = current.and_then(|current| current.create_attempt.as_ref());
        status_write::cleared_create_attempt(self.create_attempt.as_ref(), current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::conditions::{READY, RECONCILING, STALLED};
    use crate::controller::reason::Reason;
    use crate::fixtures;

    fn condition<'a>(status: &'a FlashbackRepositoryStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn ready_sets_all_three_conditions_for_the_generation() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.metadata.generation = Some(3);
        let now = fixtures::time("2026-11-26T20:00:00Z");
        let state = State::Ready {
            reason: Reason::Synced,
            message: "in step".into(),
        };
        let status = next(&repo, Some("r1".into()), None, &state, &now);
        assert_eq!(status.repo_id.as_deref(), Some("r1"));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.remote_name.as_deref(), Some("media"));
        let ready = condition(&status, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Synced")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(condition(&status, RECONCILING).status, "False");
        assert_eq!(condition(&status, STALLED).status, "False");
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut repo = fixtures::repo("team-a", "media");
        repo.status = Some(fixtures::ready_status("r1", 1));
        let before = fixtures::time("2026-11-26T19:00:00Z");
        let now = fixtures::time("2026-11-26T20:00:00Z");

        let same = next(
            &repo,
            None,
            None,
            &State::Ready {
                reason: Reason::Synced,
                message: "new words".into(),
            },
            &now,
        );
        assert_eq!(condition(&same, READY).last_transition_time, before);
        assert_eq!(same.repo_id.as_deref(), Some("r1"), "a known id is kept");

        let stalled = next(
            &repo,
            None,
            None,
            &State::Stalled {
                reason: Reason::Unauthorized,
                message: "token rejected".into(),
            },
            &now,
        );
        assert_eq!(condition(&stalled, READY).last_transition_time, now);
        assert_eq!(condition(&stalled, READY).reason, "Unauthorized");
        assert_eq!(condition(&stalled, STALLED).status, "True");
        assert_eq!(
            conditions::stalled_reason(&stalled.conditions),
            Some("Unauthorized")
        );
    }

    #[test]
    fn an_unchanged_outcome_gives_an_equal_status() {
        let mut repo = fixtures::repo("team-a", "media");
        let identity = fixtures::identity();
        let state = State::Ready {
            reason: Reason::Synced,
            message: "in step".into(),
        };
        let first = next(
            &repo,
            Some("r1".into()),
            Some(&identity),
            &state,
            &fixtures::time("2026-11-26T20:00:00Z"),
        );
        repo.status = Some(first.clone());
        let again = next(
            &repo,
            Some("r1".into()),
            Some(&identity),
            &state,
            &fixtures::time("2026-11-26T21:00:00Z"),
        );
        assert_eq!(first, again, "so the operator writes nothing");
        assert_eq!(
            first.recorded_with.map(|with| with.at),
            Some(fixtures::time("2026-11-26T20:00:00Z")),
            "the id is recorded as confirmed when first written"
        );
    }
}

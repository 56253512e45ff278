//! What `managementPolicy`, `deletionPolicy` and the paused annotation let a reconcile do with
//! the remote object it looked for, shared by the kinds that write one (repositories and
//! buckets): the next step, ObserveOnly's states and stall, and whether a delete keeps the
//! remote. Each kind finds its remote object its own way; what it may do then is decided here.
//! Pure.

use crate::controller::conditions::State;
use crate::controller::reason::Reason;
use crate::controller::stall::Stall;
use crate::crd::{DeletionPolicy, ManagementPolicy};

/// What a reconcile does next with the remote object, known by its `Id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<Id> {
    /// None was found: make one.
    Create,
    /// Found, and it differs from the spec: write it.
    Update(Id),
    /// Found, and it matches the spec.
    InSync(Id),
    /// ObserveOnly and found: report it, never write.
    Observe { id: Id, in_sync: bool },
    /// Paused by annotation: report, never write. No id when none was found.
    Paused { id: Option<Id>, in_sync: bool },
    /// ObserveOnly and none was found (see [`not_found`]).
    NotFound,
}

/// The step for an object under `policy`, paused or not, given the remote object it found, if
/// any, and whether that matches the spec. ObserveOnly wins over the paused annotation: neither
/// writes, and ObserveOnly says more (it never creates either).
pub fn step<Id>(policy: ManagementPolicy, paused: bool, found: Option<(Id, bool)>) -> Step<Id> {
    match (policy, found) {
        (ManagementPolicy::ObserveOnly, Some((id, in_sync))) => Step::Observe { id, in_sync },
        (ManagementPolicy::ObserveOnly, None) => Step::NotFound,
        (ManagementPolicy::Full, found) if paused => {
            let in_sync = found.as_ref().is_some_and(|(_, in_sync)| *in_sync);
            Step::Paused {
                id: found.map(|(id, _)| id),
                in_sync,
            }
        }
        (ManagementPolicy::Full, Some((id, true))) => Step::InSync(id),
        (ManagementPolicy::Full, Some((id, false))) => Step::Update(id),
        (ManagementPolicy::Full, None) => Step::Create,
    }
}

/// ObserveOnly: what the object says after looking at `what` ("the remote repository").
pub fn observed(what: &str, in_sync: bool) -> State {
    if in_sync {
        State::Ready {
            reason: Reason::Observed,
            message: format!("observed {what}; it matches the spec"),
        }
    } else {
        State::Waiting {
            reason: Reason::OutOfSync,
            message: format!(
                "observed {what}; it differs from the spec, and managementPolicy ObserveOnly \
                 never writes"
            ),
        }
    }
}

/// ObserveOnly and nothing to observe: no `kind` ("repository") of that name in the workspace.
pub fn not_found(kind: &str, name: &str, workspace: &str) -> Stall {
    Stall {
        reason: Reason::RemoteNotFound,
        message: format!(
            "managementPolicy is ObserveOnly and no {kind} named {name:?} exists in workspace \
             {workspace}"
        ),
    }
}

/// Why deleting an object leaves its remote object in Flashback, if it does.
pub fn kept_on_delete(
    management: ManagementPolicy,
    deletion: DeletionPolicy,
    paused: bool,
) -> Option<&'static str> {
    if management == ManagementPolicy::ObserveOnly {
        Some("managementPolicy is ObserveOnly")
    } else if deletion == DeletionPolicy::Orphan {
        Some("deletionPolicy is Orphan")
    } else if paused {
        Some("remote writes are paused")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ManagementPolicy::{Full, ObserveOnly};

    #[test]
    fn observe_only_never_writes_whatever_it_finds_and_paused_writes_nothing_either() {
        for paused in [false, true] {
            assert_eq!(
                step(ObserveOnly, paused, Some(("r1", false))),
                Step::Observe {
                    id: "r1",
                    in_sync: false
                }
            );
            assert_eq!(
                step(ObserveOnly, paused, Some(("r1", true))),
                Step::Observe {
                    id: "r1",
                    in_sync: true
                }
            );
            assert_eq!(step::<&str>(ObserveOnly, paused, None), Step::NotFound);
        }
        assert_eq!(
            step::<&str>(Full, true, None),
            Step::Paused {
                id: None,
                in_sync: false
            }
        );
        assert_eq!(
            step(Full, true, Some(("r1", true))),
            Step::Paused {
                id: Some("r1"),
                in_sync: true
            }
        );
    }

    #[test]
    fn full_creates_what_is_missing_and_updates_what_differs() {
        assert_eq!(step::<&str>(Full, false, None), Step::Create);
        assert_eq!(step(Full, false, Some(("r1", false))), Step::Update("r1"));
        assert_eq!(step(Full, false, Some(("r1", true))), Step::InSync("r1"));
    }

    #[test]
    fn observe_only_says_what_it_saw_and_keeps_the_remote_on_delete() {
        let seen = observed("the registered bucket", false);
        assert_eq!(seen.reason(), Reason::OutOfSync);
        assert_eq!(
            seen.message(),
            "observed the registered bucket; it differs from the spec, and managementPolicy \
             ObserveOnly never writes"
        );
        assert_eq!(
            observed("the registered bucket", true).reason(),
            Reason::Observed
        );
        assert_eq!(
            not_found("bucket", "photos", "ws-1").message,
            "managementPolicy is ObserveOnly and no bucket named \"photos\" exists in workspace \
             ws-1"
        );
        let kept = |m, d, p| kept_on_delete(m, d, p);
        assert_eq!(
            kept(ObserveOnly, DeletionPolicy::Delete, false),
            Some("managementPolicy is ObserveOnly")
        );
        assert_eq!(
            kept(Full, DeletionPolicy::Orphan, true),
            Some("deletionPolicy is Orphan")
        );
        assert_eq!(
            kept(Full, DeletionPolicy::Delete, true),
            Some("remote writes are paused")
        );
        assert_eq!(kept(Full, DeletionPolicy::Delete, false), None);
    }
}

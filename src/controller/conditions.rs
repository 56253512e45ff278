//! Status conditions, shared by every kind, following kstatus: `Ready`, `Reconciling` and
//! `Stalled`, each with the generation it describes, a CamelCase [`Reason`] and a message for
//! a person. `lastTransitionTime` moves only when a condition's status changes. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::controller::reason::Reason;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Where an object stands after a reconcile step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The remote object is what the object asks for (or, ObserveOnly, was observed).
    Ready { reason: Reason, message: String },
    /// The operator is working on it: a create, update or delete in flight, or a retry.
    Progressing { reason: Reason, message: String },
    /// Nothing to do until a person lifts a hold (paused by annotation, ObserveOnly).
    Waiting { reason: Reason, message: String },
    /// Only a person can fix this.
    Stalled { reason: Reason, message: String },
}

impl State {
    pub fn reason(&self) -> Reason {
        match self {
            State::Ready { reason, .. }
            | State::Progressing { reason, .. }
            | State::Waiting { reason, .. }
            | State::Stalled { reason, .. } => *reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            State::Ready { message, .. }
            | State::Progressing { message, .. }
            | State::Waiting { message, .. }
            | State::Stalled { message, .. } => message,
        }
    }

    /// (Ready, Reconciling, Stalled) as condition statuses.
    fn statuses(&self) -> [(&'static str, bool); 3] {
        let (ready, reconciling, stalled) = match self {
            State::Ready { .. } => (true, false, false),
            State::Progressing { .. } => (false, true, false),
            State::Waiting { .. } => (false, false, false),
            State::Stalled { .. } => (false, false, true),
        };
        [
            (READY, ready),
            (RECONCILING, reconciling),
            (STALLED, stalled),
        ]
    }
}

/// The three conditions for `state` at `generation`, given the `current` ones.
pub fn next(
    current: &[Condition],
    state: &State,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    state
        .statuses()
        .into_iter()
        .map(|(type_, is_true)| {
            let status = if is_true { "True" } else { "False" };
            // Each condition speaks for itself: the state's reason where it is the one that
            // holds (and always on Ready, which users read first), `Not<Type>` otherwise.
            let (reason, message) = if is_true || type_ == READY {
                (state.reason(), state.message().to_string())
            } else if type_ == RECONCILING {
                (Reason::NotReconciling, String::new())
            } else {
                (Reason::NotStalled, String::new())
            };
            let previous = current.iter().find(|c| c.type_ == type_);
            let last_transition_time = match previous {
                Some(previous) if previous.status == status => {
                    previous.last_transition_time.clone()
                }
                _ => now.clone(),
            };
            Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.as_str().to_string(),
                message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The Stalled condition's reason when it is True.
pub fn stalled_reason(conditions: &[Condition]) -> Option<&str> {
    conditions
        .iter()
        .find(|c| c.type_ == STALLED && c.status == "True")
        .map(|c| c.reason.as_str())
}

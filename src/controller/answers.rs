//! What the operator accepts of a Flashback server's answers before it writes them anywhere (a
//! status, an annotation, a Secret, an Event): a tenant may point the operator at a server that
//! answers anything.

use crate::controller::reason::Reason;
use crate::controller::stall::Stall;

/// An id or access key id the operator will write into a status, an annotation or a Secret:
/// short, and plain ASCII, as every id the API makes is.
pub fn plausible_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The stall of an answer with an id the operator will not write anywhere.
pub fn implausible_answer(what: &str) -> Stall {
    Stall {
        reason: Reason::UnexpectedAnswer,
        message: format!(
            "the Flashback API answered a {what} that is not a plain id of at most 128 \
             characters; the operator writes no such value into a Secret or status"
        ),
    }
}

//! `reasons.md`: every reason a condition or an Event carries, from the `Reason` enum.

use crate::controller::reason::Reason;

pub fn page() -> String {
    let mut out = super::header("Reasons", "the `Reason` enum of `src/controller/reason.rs`");
    out.push_str(
        "Every reason the operator writes into a condition or an Event, in the order of its \
         declaration. Which condition says what is in \
         [Using the resources](../resources.md#status).\n\n",
    );
    let rows: Vec<Vec<String>> = Reason::ALL
        .iter()
        .map(|reason| {
            vec![
                super::code(reason.as_str()),
                super::cell(reason.description()),
            ]
        })
        .collect();
    out.push_str(&super::table(&["reason", "meaning"], &rows));
    out
}

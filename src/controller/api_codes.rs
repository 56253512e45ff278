//! What a person should do about each error code the Flashback API publishes for a refused
//! repository: the service's own message may be terse or absent, so a stall adds a line
//! that says what to change. The codes' exact triggers are not published; the advice follows
//! their names (as the emulator's reading of them does, see `docs/emulator.md`).

/// The advice for `code`, or `None` for a code without one.
pub fn advice(code: &str) -> Option<&'static str> {
    Some(match code {
        "NORMAL_UNIT_CANNOT_EDIT_FOLDER" => {
            "a NORMAL repository keeps the folder each of its buckets was given: set the \
             folder back in spec.buckets, or create another repository for the new folder"
        }
        "NORMAL_UNIT_FOLDER_CANNOT_DELETE" => {
            "a bucket (and its folder) cannot be removed from a NORMAL repository: put it back \
             in spec.buckets, or create another repository without it"
        }
        "NORMAL_UNIT_FOLDER_ALREADY_USED" => {
            "another repository already uses this bucket with this folder: choose another \
             folder in spec.buckets"
        }
        "MIRROR_MASTER_UNIT_MISSING" => {
            "a MIRROR repository needs one bucket with master: true in spec.buckets"
        }
        "MIRROR_MASTER_UNIT_COUNT_INVALID" => {
            "a MIRROR repository needs exactly one bucket with master: true in spec.buckets"
        }
        "MIRROR_UNIT_ALREADY_IN_OTHER_REPO" => {
            "a bucket serves at most one MIRROR repository: choose another bucket, or remove \
             it from the other repository"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_shaped_code_says_what_to_change_in_the_spec() {
        for code in [
            "NORMAL_UNIT_CANNOT_EDIT_FOLDER",
            "NORMAL_UNIT_FOLDER_CANNOT_DELETE",
            "NORMAL_UNIT_FOLDER_ALREADY_USED",
            "MIRROR_MASTER_UNIT_MISSING",
            "MIRROR_MASTER_UNIT_COUNT_INVALID",
            "MIRROR_UNIT_ALREADY_IN_OTHER_REPO",
        ] {
            let advice = advice(code).unwrap_or_else(|| panic!("no advice for {code}"));
            assert!(
                advice.contains("spec.buckets") || advice.contains("bucket"),
                "{code}"
            );
        }
        assert_eq!(advice("SOMETHING_NEW"), None);
    }
}

//! Kubernetes names for remote objects: made of their remote names, valid DNS labels, unique
//! within a kind, and a function of the organisation alone, so that a second export of the same
//! organisation names everything the same way. Pure.

use std::collections::{BTreeMap, BTreeSet};

/// The longest name given: a DNS label, which every kind and tool takes (a label value too).
pub const MAX_LEN: usize = 63;

/// Hex digits of the id's digest that tell apart names that would otherwise collide.
const SUFFIX_DIGITS: usize = 6;

/// Names for remote objects of one kind, by id: `items` are (id, remote name). A remote name
/// that is already a valid name, and no other object's, stays as it is. Any other is
/// lower-cased, its letters with accents written without them, every other run of characters
/// turned into one `-`, cut to [`MAX_LEN`], and given a suffix made of the remote id (names
/// with nothing left become `fallback` first). The id never changes, so the names depend
/// neither on the order of a listing nor on objects made later.
pub fn assign<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a str)>,
    fallback: &str,
) -> BTreeMap<String, String> {
    // (base, whether the base must carry a suffix, remote name, id), sorted for a fixed order.
    let mut candidates: Vec<(String, bool, &str, &str)> = items
        .into_iter()
        .map(|(id, remote)| {
            let base = sanitise(remote);
            if base.is_empty() {
                (fallback.to_owned(), true, remote, id)
            } else {
                (base, false, remote, id)
            }
        })
        .collect();
    candidates.sort_unstable_by(|a, b| (&a.0, a.3).cmp(&(&b.0, b.3)));
    let mut per_base: BTreeMap<&str, usize> = BTreeMap::new();
    for (base, ..) in &candidates {
        *per_base.entry(base.as_str()).or_default() += 1;
    }
    // Plain names first, so that a suffixed name never takes a name some object has as is.
    let mut plain = Vec::new();
    let mut suffixed = Vec::new();
    for (base, forced, remote, id) in &candidates {
        let exact = *remote == base && !forced;
        let exact_unique = exact
            && candidates
                .iter()
                .filter(|(b, _, r, _)| b == base && r == remote)
                .count()
                == 1;
        // Only a remote name that is a valid name as it is keeps it: a sanitised one always
        // takes its id's suffix, so that a remote object made later under the sanitised form
        // never takes the name (and the file, and the adoption) of this one.
        if !forced && exact_unique {
            plain.push((base.clone(), *id));
        } else {
            suffixed.push((base.clone(), *id));
        }
    }
    let mut taken: BTreeSet<String> = plain.iter().map(|(name, _)| name.clone()).collect();
    let mut names: BTreeMap<String, String> = plain
        .into_iter()
        .map(|(name, id)| (id.to_owned(), name))
        .collect();
    for (base, id) in suffixed {
        let digest = hex_digest(id);
        let name = (SUFFIX_DIGITS..=digest.len())
            .step_by(2)
            .map(|digits| with_suffix(&base, &digest[..digits]))
            .find(|name| !taken.contains(name))
            .expect("a full digest of a distinct id is a distinct name");
        taken.insert(name.clone());
        names.insert(id.to_owned(), name);
    }
    names
}

/// `base-suffix`, the base cut so that the whole fits [`MAX_LEN`].
fn with_suffix(base: &str, suffix: &str) -> String {
    let room = MAX_LEN - suffix.len() - 1;
    let base = base[..base.len().min(room)].trim_end_matches('-');
    format!("{base}-{suffix}")
}

/// The name a remote name would have if it collided with none: ASCII lower-case letters and
/// digits, accents dropped, any other run of characters one `-`, no `-` at either end, at most
/// [`MAX_LEN`] characters. Empty when nothing of the remote name is left.
pub fn sanitise(remote: &str) -> String {
    let mut name = String::with_capacity(remote.len());
    for c in remote.chars() {
        let plain = match c {
            'a'..='z' | '0'..='9' => Some(c.to_string()),
            'A'..='Z' => Some(c.to_ascii_lowercase().to_string()),
            _ => without_accent(c).map(str::to_owned),
        };
        match plain {
            Some(text) => name.push_str(&text),
            None if !name.is_empty() && !name.ends_with('-') => name.push('-'),
            None => {}
        }
    }
    name.truncate(MAX_LEN);
    name.trim_end_matches('-').to_owned()
}

/// Whether `name` is a valid name as [`sanitise`] makes them (a DNS label).
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A Latin letter with an accent (or a ligature) as plain lower-case ASCII, `None` for any
/// other character: enough for names to read as their remote names do; the remote name itself
/// is kept in `spec.name` whenever the object's name differs.
fn without_accent(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å'
        | 'Ā' | 'Ă' | 'Ą' => "a",
        'æ' | 'Æ' => "ae",
        'ç' | 'ć' | 'č' | 'Ç' | 'Ć' | 'Č' => "c",
        'ď' | 'đ' | 'ð' | 'Ď' | 'Đ' | 'Ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' | 'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ė' | 'Ę'
        | 'Ě' => "e",
        'ğ' | 'Ğ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' | 'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' | 'Į' | 'İ' => {
            "i"
        }
        'ł' | 'ľ' | 'ĺ' | 'Ł' | 'Ľ' | 'Ĺ' => "l",
        'ñ' | 'ń' | 'ň' | 'Ñ' | 'Ń' | 'Ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō'
        | 'Ő' => "o",
        'œ' | 'Œ' => "oe",
        'ŕ' | 'ř' | 'Ŕ' | 'Ř' => "r",
        'ś' | 'š' | 'ş' | 'ș' | 'Ś' | 'Š' | 'Ş' | 'Ș' => "s",
        'ß' => "ss",
        'ť' | 'ţ' | 'ț' | 'Ť' | 'Ţ' | 'Ț' => "t",
        'þ' | 'Þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' | 'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű'
        | 'Ų' => "u",
        'ý' | 'ÿ' | 'Ý' | 'Ÿ' => "y",
        'ź' | 'ż' | 'ž' | 'Ź' | 'Ż' | 'Ž' => "z",
        _ => return None,
    })
}

/// The SHA-256 of a remote id, in hex: what tells apart names that collide.
fn hex_digest(id: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[(&str, &str)]) -> Vec<String> {
        let assigned = assign(items.iter().copied(), "repository");
        items.iter().map(|(id, _)| assigned[*id].clone()).collect()
    }

    /// `base-` and the first digits of the digest of `id`.
    fn suffixed(base: &str, id: &str) -> String {
        format!("{base}-{}", &hex_digest(id)[..SUFFIX_DIGITS])
    }

    #[test]
    fn a_valid_remote_name_is_kept_and_others_are_made_valid_and_suffixed() {
        assert_eq!(
            names(&[
                ("r1", "media-mirror"),
                ("r2", "Team A / Photos (2024)"),
                ("r3", "backups.eu_west"),
                ("r4", "--odd--"),
            ]),
            [
                "media-mirror".to_owned(),
                suffixed("team-a-photos-2024", "r2"),
                suffixed("backups-eu-west", "r3"),
                suffixed("odd", "r4"),
            ]
        );
    }

    #[test]
    fn a_name_made_valid_never_moves_to_an_object_made_later() {
        let before = names(&[("old", "Photos")]);
        let after = names(&[("old", "Photos"), ("new", "photos")]);
        assert_eq!(before[0], after[0], "the first export's name stays its own");
        assert_eq!(after[1], "photos");
    }

    #[test]
    fn accents_are_dropped_and_other_scripts_fall_back_to_a_suffixed_name() {
        assert_eq!(sanitise("Café Ünïcode Straße"), "cafe-unicode-strasse");
        assert_eq!(sanitise("Æsir Øresund"), "aesir-oresund");
        assert_eq!(sanitise("照片"), "");
        let assigned = names(&[("r1", "照片"), ("r2", "Фото"), ("r3", "photos 照片")]);
        assert_eq!(assigned[2], suffixed("photos", "r3"));
        for name in &assigned[..2] {
            assert!(name.starts_with("repository-"), "{name}");
            assert_eq!(name.len(), "repository-".len() + SUFFIX_DIGITS);
        }
        assert_ne!(assigned[0], assigned[1]);
    }

    #[test]
    fn names_that_collide_after_sanitising_are_told_apart_by_their_ids() {
        let assigned = names(&[("r1", "Media"), ("r2", "media"), ("r3", "MEDIA!")]);
        assert_eq!(
            assigned[1], "media",
            "the remote name that is a valid name keeps it"
        );
        assert!(assigned[0].starts_with("media-") && assigned[2].starts_with("media-"));
        assert_ne!(assigned[0], assigned[2]);
        // Without an exact one, every colliding name is suffixed.
        let assigned = names(&[("r1", "Media"), ("r3", "MEDIA!")]);
        assert!(
            assigned.iter().all(|n| n.starts_with("media-")),
            "{assigned:?}"
        );
    }

    #[test]
    fn a_suffixed_name_never_takes_a_name_another_object_has_as_is() {
        let digest = hex_digest("r1");
        let squatter = format!("media-{}", &digest[..SUFFIX_DIGITS]);
        let assigned = names(&[("r1", "Media"), ("r2", "MEDIA"), ("r3", &squatter)]);
        assert_eq!(assigned[2], squatter);
        assert_eq!(
            assigned[0],
            format!("media-{}", &digest[..SUFFIX_DIGITS + 2])
        );
        let unique: BTreeSet<&String> = assigned.iter().collect();
        assert_eq!(unique.len(), 3);
    }

    #[test]
    fn long_names_are_cut_to_a_dns_label_suffix_included() {
        let long = "a".repeat(300);
        let other = format!("{}b", "a".repeat(299));
        let assigned = names(&[("r1", &long), ("r2", &other)]);
        for name in &assigned {
            assert!(is_valid(name), "{name}");
            assert_eq!(name.len(), MAX_LEN);
        }
        assert_ne!(assigned[0], assigned[1]);
        assert_eq!(
            names(&[("r1", &long)]),
            [suffixed(&"a".repeat(MAX_LEN - SUFFIX_DIGITS - 1), "r1")]
        );
        // A cut at a separator leaves none at the end.
        let dashed = format!("{}-b", "a".repeat(MAX_LEN - 1));
        assert_eq!(sanitise(&dashed), "a".repeat(MAX_LEN - 1));
    }

    #[test]
    fn names_do_not_depend_on_the_order_of_the_listing() {
        let items = [
            ("r1", "Media"),
            ("r2", "media"),
            ("r3", "MEDIA!"),
            ("r4", "照片"),
            ("r5", "Фото"),
            ("r6", "backups"),
        ];
        let forward = assign(items.iter().copied(), "repository");
        let backward = assign(items.iter().rev().copied(), "repository");
        assert_eq!(forward, backward);
        assert_eq!(forward, assign(items.iter().copied(), "repository"));
        assert!(forward.values().all(|name| is_valid(name)));
        let unique: BTreeSet<&String> = forward.values().collect();
        assert_eq!(unique.len(), items.len());
    }

    #[test]
    fn only_dns_labels_are_valid() {
        for valid in ["a", "media-1", &"a".repeat(MAX_LEN)] {
            assert!(is_valid(valid), "{valid}");
        }
        for invalid in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(MAX_LEN + 1)] {
            assert!(!is_valid(invalid), "{invalid}");
        }
    }
}

//! Digests of secret data: what a status records to tell that data changed, never the data.
//! A SHA-256 of random secrets gives nothing away.

/// The SHA-256 (hex) of a Secret's data, keys and values length-prefixed in key order: what
/// the status records of the data the operator wrote, to tell an edit of the data from a
/// change of labels or annotations. A digest of random secrets gives nothing away.
pub fn digest<'a>(data: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    use sha2::Digest as _;
    let mut entries: Vec<(&str, &[u8])> = data.into_iter().collect();
    entries.sort_unstable();
    let mut hasher = sha2::Sha256::new();
    for (key, value) in entries {
        for part in [key.as_bytes(), value] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

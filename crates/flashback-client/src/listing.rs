//! A listing answer read as it arrives. `GET /repo?workspaceId=` answers every repository of a
//! workspace in one body (`{"success": true, "repos": [...]}`; the API has no pages), and at
//! 100,000 repositories that body is tens of megabytes. Held whole, then decoded, it would cost
//! its text and its entries at once, and a bound on its bytes would stop a workspace at a size
//! real ones reach. So each entry of the listed array is decoded as soon as its last byte is
//! in, and only the entries are kept, with the rest of the body (its envelope, with the array
//! left empty) for judging and decoding as any other answer.
//!
//! Bounded, so that no server can make the client hold more than a listing of the size allowed:
//! the bytes of the whole answer (read, never held), of one entry and of the envelope (each
//! held while read), the number of entries, and what the decoded entries hold in memory, which
//! can be many times their text (`"aiLlms":["a","a",...]` costs tens of bytes per four of
//! text). Whitespace is read but not held: a run of it is kept as one space, so that what
//! serde is given means what the server sent. Pure: no I/O.

use serde::de::DeserializeOwned;

/// What one listing may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListingLimits {
    /// Bytes of the whole answer, read as they stream and never held.
    pub bytes: usize,
    /// Entries kept.
    pub entries: usize,
    /// Bytes of one entry, and of everything outside the entries: each is held while read.
    pub entry_bytes: usize,
    /// Bytes the decoded entries hold ([`Held`]), together.
    pub held: usize,
}

/// What a decoded entry holds in memory, about: its own size and what it owns on the heap.
pub(crate) trait Held {
    fn held_bytes(&self) -> usize;
}

/// Why a listing was not read to its end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Past one of the [`ListingLimits`]: `what` names it, as the error message says it.
    TooLarge { limit: usize, what: &'static str },
    /// Not JSON of the expected shape; `detail` says where, never what.
    Malformed { detail: String },
}

/// Where the scanner is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In the envelope: everything but the listed array's entries.
    Envelope,
    /// Right after the listed field's `:`; an array there is the listing.
    AfterField,
    /// Inside the listed array.
    Listing,
}

/// Reads one answer, chunk by chunk, keeping the envelope and the decoded entries of the array
/// under the top-level member `field`.
#[derive(Clone)]
pub(crate) struct ListingReader<T> {
    field: &'static [u8],
    limits: ListingLimits,
    read: usize,
    /// What the entries decoded so far hold.
    held: usize,
    /// Nesting of objects and arrays: 1 inside the top-level object, 2 inside the listing.
    depth: usize,
    in_string: bool,
    escaped: bool,
    place: Place,
    /// At depth 1, whether the next string is a member's name.
    expect_name: bool,
    /// The name being read at depth 1, while it can still be `field`.
    name: Option<Vec<u8>>,
    /// Whether the last name read at depth 1 was `field`.
    named_field: bool,
    envelope: Vec<u8>,
    /// The text of the entry being read.
    entry: Vec<u8>,
    /// Whether a `,` was read since the last entry ended (so another must follow).
    after_comma: bool,
    entries: Vec<T>,
}

impl<T: DeserializeOwned + Held> ListingReader<T> {
    pub(crate) fn new(field: &'static str, limits: ListingLimits) -> Self {
        Self {
            field: field.as_bytes(),
            limits,
            read: 0,
            held: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            place: Place::Envelope,
            expect_name: false,
            name: None,
            named_field: false,
            envelope: Vec::new(),
            entry: Vec::new(),
            after_comma: false,
            entries: Vec::new(),
        }
    }

    /// The most bytes of the answer it reads.
    pub(crate) fn byte_limit(&self) -> usize {
        self.limits.bytes
    }

    /// Takes the next bytes of the answer.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        self.read += chunk.len();
        if self.read > self.limits.bytes {
            return Err(too_large(self.limits.bytes, "bytes"));
        }
        for &byte in chunk {
            self.step(byte)?;
        }
        Ok(())
    }

    /// The answer complete: its envelope (the listed array left empty) and the entries read.
    pub(crate) fn finish(self) -> Result<(Vec<u8>, Vec<T>), Refusal> {
        if self.in_string || self.depth != 0 || self.place != Place::Envelope {
            return Err(malformed("the answer ended inside a value".into()));
        }
        Ok((self.envelope, self.entries))
    }

    fn step(&mut self, byte: u8) -> Result<(), Refusal> {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
            }
            return self.keep_in_string(byte);
        }
        if is_json_whitespace(byte) {
            return self.keep_whitespace();
        }
        if self.place == Place::AfterField {
            if byte == b'[' {
                self.place = Place::Listing;
                self.depth += 1;
                self.after_comma = false;
                return self.push_envelope(b'[');
            }
            self.place = Place::Envelope;
        }
        match self.place {
            Place::Listing => self.step_in_listing(byte),
            _ => self.step_in_envelope(byte),
        }
    }

    fn step_in_envelope(&mut self, byte: u8) -> Result<(), Refusal> {
        match byte {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.expect_name {
                    self.name = Some(Vec::new());
                }
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.expect_name = self.depth == 1 && byte == b'{';
            }
            b'}' | b']' => {
                self.depth = self
                    .depth
                    .checked_sub(1)
                    .ok_or_else(|| malformed("a bracket closes nothing".into()))?;
            }
            b',' if self.depth == 1 => self.expect_name = true,
            b':' if self.depth == 1 && self.named_field => {
                self.named_field = false;
                self.place = Place::AfterField;
            }
            _ => {}
        }
        self.push_envelope(byte)
    }

    fn step_in_listing(&mut self, byte: u8) -> Result<(), Refusal> {
        if self.depth == 2 {
            match byte {
                b',' => {
                    self.end_entry()?;
                    self.after_comma = true;
                    return Ok(());
                }
                b']' => {
                    if !self.entry.is_empty() || self.after_comma {
                        self.end_entry()?;
                    }
                    self.depth -= 1;
                    self.place = Place::Envelope;
                    return self.push_envelope(b']');
                }
                b'}' => return Err(malformed("a bracket closes nothing".into())),
                _ => {}
            }
        }
        match byte {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => self.depth -= 1,
            _ => {}
        }
        self.push_entry(byte)
    }

    /// A byte inside a string: part of the entry, or of the envelope (and perhaps a name).
    fn keep_in_string(&mut self, byte: u8) -> Result<(), Refusal> {
        if self.place == Place::Listing {
            return self.push_entry(byte);
        }
        if let Some(name) = &mut self.name {
            if self.in_string {
                // Longer than `field` is not `field`: no need to keep it.
                if name.len() < self.field.len() {
                    name.push(byte);
                } else {
                    self.name = None;
                }
            } else {
                self.named_field = name.as_slice() == self.field;
                self.name = None;
                self.expect_name = false;
            }
        } else if !self.in_string && self.depth == 1 {
            // A name too long to be `field`, or a string value.
            self.named_field = false;
            self.expect_name = false;
        }
        self.push_envelope(byte)
    }

    /// Whitespace outside strings: one space for a run of it, where it could separate two
    /// tokens (so `tr ue` stays two tokens, and serde refuses it); none at the start of an
    /// entry or of the envelope.
    fn keep_whitespace(&mut self) -> Result<(), Refusal> {
        let (buffer, envelope) = match self.place {
            Place::Listing if self.depth > 2 || !self.entry.is_empty() => (&self.entry, false),
            Place::Listing => return Ok(()),
            _ => (&self.envelope, true),
        };
        match buffer.last() {
            None | Some(b' ') => Ok(()),
            Some(_) if envelope => self.push_envelope(b' '),
            Some(_) => self.push_entry(b' '),
        }
    }

    fn push_envelope(&mut self, byte: u8) -> Result<(), Refusal> {
        if self.envelope.len() >= self.limits.entry_bytes {
            return Err(too_large(
                self.limits.entry_bytes,
                "bytes outside its entries",
            ));
        }
        self.envelope.push(byte);
        Ok(())
    }

    fn push_entry(&mut self, byte: u8) -> Result<(), Refusal> {
        if self.entry.len() >= self.limits.entry_bytes {
            return Err(too_large(self.limits.entry_bytes, "bytes in one entry"));
        }
        self.entry.push(byte);
        Ok(())
    }

    /// Decodes the entry just read; an empty one (`[,` or `,]`) is not JSON.
    fn end_entry(&mut self) -> Result<(), Refusal> {
        let position = self.entries.len() + 1;
        if self.entry.is_empty() {
            return Err(malformed(format!(
                "entry {position} of the listing is empty"
            )));
        }
        if self.entries.len() == self.limits.entries {
            return Err(too_large(self.limits.entries, "entries"));
        }
        // serde's messages quote the values they choke on: say where, never what.
        let entry: T = serde_json::from_slice(&self.entry).map_err(|source| {
            malformed(format!(
                "entry {position} of the listing is not the JSON this call answers (column {})",
                source.column()
            ))
        })?;
        self.held += entry.held_bytes();
        if self.held > self.limits.held {
            return Err(too_large(self.limits.held, "bytes once decoded"));
        }
        self.entries.push(entry);
        self.entry.clear();
        self.after_comma = false;
        Ok(())
    }
}

/// JSON's own whitespace: space, tab, line feed, carriage return (not form feed or others).
fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn too_large(limit: usize, what: &'static str) -> Refusal {
    Refusal::TooLarge { limit, what }
}

fn malformed(detail: String) -> Refusal {
    Refusal::Malformed { detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Entry {
        id: String,
    }

    impl Held for Entry {
        fn held_bytes(&self) -> usize {
            std::mem::size_of::<Self>() + self.id.capacity()
        }
    }

    const LIMITS: ListingLimits = ListingLimits {
        bytes: 1 << 20,
        entries: 100,
        entry_bytes: 256,
        held: 1 << 20,
    };

    /// Feeds `body` in chunks of `size` bytes.
    fn read_in(
        body: &str,
        size: usize,
        limits: ListingLimits,
    ) -> Result<(String, Vec<String>), Refusal> {
        let mut reader = ListingReader::<Entry>::new("repos", limits);
        for chunk in body.as_bytes().chunks(size) {
            reader.feed(chunk)?;
        }
        let (envelope, entries) = reader.finish()?;
        Ok((
            String::from_utf8(envelope).unwrap(),
            entries.into_iter().map(|e| e.id).collect(),
        ))
    }

    fn read(body: &str) -> Result<(String, Vec<String>), Refusal> {
        read_in(body, 7, LIMITS)
    }

    #[test]
    fn entries_are_decoded_and_the_envelope_keeps_an_empty_array() {
        let body = r#"  { "success" : true, "repos" : [ {"id": "r1", "n": [1, {"x": "]},"}]},
            {"id":"r\"2"} ], "after": {"repos": [1]} }  "#;
        for size in [1, 2, 3, 7, 64, body.len()] {
            assert_eq!(
                read_in(body, size, LIMITS),
                Ok((
                    r#"{ "success" : true, "repos" : [], "after": {"repos": [1]} } "#.to_string(),
                    vec!["r1".to_string(), "r\"2".to_string()]
                )),
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn only_the_top_level_member_named_exactly_so_is_streamed() {
        // A string value "repos", a longer name, a nested member: all stay in the envelope.
        let body =
            r#"{"name":"repos","reposx":[{"id":"a"}],"w":{"repos":[{"id":"b"}]},"repos":[]}"#;
        assert_eq!(read(body), Ok((body.to_string(), vec![])));
        let body = r#"{"repos":null}"#;
        assert_eq!(read(body), Ok((body.to_string(), vec![])));
        let body = r#"{"success":false,"message":"no \"repos\": [here]"}"#;
        assert_eq!(read(body), Ok((body.to_string(), vec![])));
    }

    #[test]
    fn an_entry_that_does_not_decode_is_refused_by_position_without_its_text() {
        let refusal = read(r#"{"repos":[{"id":"a"},{"id":42, "secret":"s3cr3t"}]}"#).unwrap_err();
        let Refusal::Malformed { detail } = refusal else {
            panic!("{refusal:?}")
        };
        assert!(
            detail.starts_with("entry 2 of the listing is not the JSON"),
            "{detail}"
        );
        assert!(
            !detail.contains("s3cr3t") && !detail.contains("42"),
            "{detail}"
        );
    }

    #[test]
    fn broken_shapes_are_refused() {
        for body in [
            r#"{"repos":[{"id":"a"},]}"#,
            r#"{"repos":[,{"id":"a"}]}"#,
            r#"{"repos":[{"id":"a"}}"#,
            r#"{"repos":[{"id":"a"}"#,
            r#"{"repos":[{"id":"a"} {"id":"b"}]}"#,
            r#"{"repos":"#,
            r#"{"x":"open"#,
            r#"]"#,
        ] {
            assert!(
                matches!(read(body), Err(Refusal::Malformed { .. })),
                "{body}: {:?}",
                read(body)
            );
        }
    }

    #[test]
    fn whitespace_never_joins_two_tokens_and_only_jsons_counts() {
        // `tr ue` is two tokens, as serde reads it: refused, not read as `true`.
        let split = r#"{"repos":[{"id":"a","n":tr ue}]}"#;
        assert!(
            matches!(read(split), Err(Refusal::Malformed { .. })),
            "{:?}",
            read(split)
        );
        // A form feed is not JSON whitespace: it reaches serde, which refuses it.
        let form_feed = "{\"repos\":[{\"id\":\"a\"}\u{c}]}";
        assert!(
            matches!(read(form_feed), Err(Refusal::Malformed { .. })),
            "{:?}",
            read(form_feed)
        );
        // Runs of whitespace are read, not held: one space at most is kept of each.
        let body = format!(
            r#"{}{{ "repos":[{}{{"id" :{}"a"}}]}}{}"#,
            " ".repeat(5000),
            "\n".repeat(5000),
            "\t".repeat(5000),
            " ".repeat(5000)
        );
        let limits = ListingLimits {
            entry_bytes: 16,
            ..LIMITS
        };
        assert_eq!(
            read_in(&body, 100, limits),
            Ok((r#"{ "repos":[]} "#.to_string(), vec!["a".to_string()]))
        );
    }

    #[test]
    fn each_limit_is_refused_past_its_bound_and_met_at_it() {
        // Entries longer than the envelope (`{"repos":[]}`), so each bound is the one met.
        let entry = |i: usize| format!(r#"{{"id":"{i:020}"}}"#);
        let body = format!(r#"{{"repos":[{},{},{}]}}"#, entry(0), entry(1), entry(2));
        let at = |limits| read_in(&body, 5, limits).map(|(_, ids)| ids.len());
        let one_held = std::mem::size_of::<Entry>() + 20;
        let exact = ListingLimits {
            bytes: body.len(),
            entries: 3,
            entry_bytes: entry(0).len(),
            held: 3 * one_held,
        };
        assert_eq!(at(exact), Ok(3));
        let past = |limit: usize, what| Err(Refusal::TooLarge { limit, what });
        let mut limits = exact;
        limits.bytes -= 1;
        assert_eq!(at(limits), past(limits.bytes, "bytes"));
        let mut limits = exact;
        limits.entries = 2;
        assert_eq!(at(limits), past(2, "entries"));
        let mut limits = exact;
        limits.held -= 1;
        assert_eq!(at(limits), past(limits.held, "bytes once decoded"));
        let mut limits = exact;
        limits.entry_bytes -= 1;
        assert_eq!(at(limits), past(limits.entry_bytes, "bytes in one entry"));
        let padded = format!(r#"{{"repos":[],"pad":"{}"}}"#, "0".repeat(entry(0).len()));
        assert_eq!(
            read_in(&padded, 5, exact).map(|(_, ids)| ids.len()),
            past(exact.entry_bytes, "bytes outside its entries")
        );
    }
}

//! How the body of a successful answer becomes a value: read whole and decoded (every call
//! but one), or, for the listing of a workspace's repositories, decoded entry by entry as it
//! streams ([`crate::listing`]). Either way the body is judged first (a 2xx may still say
//! `"success": false`), and the limits refuse it as soon as they are passed.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use super::error::{ApiError, MAX_JSON_OBJECTS};
use super::listing::{ListingLimits, ListingReader, Refusal};
use super::types::{Repo, ReposBody};

/// Reads the body of a 2xx answer chunk by chunk, then decodes it.
pub(crate) trait Decoder: Clone + Send {
    type Output;
    /// The most bytes it reads (a longer `Content-Length` is refused before reading).
    fn byte_limit(&self) -> usize;
    fn feed(&mut self, chunk: &[u8]) -> Result<(), Refusal>;
    /// The body complete: `judge` is given the text that says whether it is a success (the
    /// whole body, or a listing's envelope), and the answer is decoded only when it is.
    fn finish(
        self,
        endpoint: &'static str,
        judge: impl FnOnce(&[u8]) -> Option<ApiError>,
    ) -> Result<Self::Output, ApiError>;
}

/// What a refusal of the body means for the caller.
pub(crate) fn refused(endpoint: &'static str, refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::TooLarge { limit, what } => ApiError::ResponseTooLarge {
            endpoint,
            limit,
            what,
        },
        Refusal::Malformed { detail } => ApiError::decode(endpoint, detail),
    }
}

/// The body held whole, at most `limit` bytes, then decoded as `T`.
pub(crate) struct Whole<T> {
    limit: usize,
    bytes: Vec<u8>,
    decoded: PhantomData<fn() -> T>,
}

impl<T> Whole<T> {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            bytes: Vec::new(),
            decoded: PhantomData,
        }
    }

    /// The bytes read, undecoded (an error's body, for judging).
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl<T> Clone for Whole<T> {
    fn clone(&self) -> Self {
        Self {
            limit: self.limit,
            bytes: self.bytes.clone(),
            decoded: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Decoder for Whole<T> {
    type Output = T;

    fn byte_limit(&self) -> usize {
        self.limit
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        if self.bytes.len() + chunk.len() > self.limit {
            return Err(Refusal::TooLarge {
                limit: self.limit,
                what: "bytes",
            });
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(
        self,
        endpoint: &'static str,
        judge: impl FnOnce(&[u8]) -> Option<ApiError>,
    ) -> Result<T, ApiError> {
        if let Some(error) = judge(&self.bytes) {
            return Err(error);
        }
        decode_whole(endpoint, &self.bytes)
    }
}

/// Decodes a whole body as `T`, refusing more JSON objects than [`MAX_JSON_OBJECTS`].
pub(crate) fn decode_whole<T: DeserializeOwned>(
    endpoint: &'static str,
    bytes: &[u8],
) -> Result<T, ApiError> {
    if bytes.iter().filter(|b| **b == b'{').count() > MAX_JSON_OBJECTS {
        return Err(ApiError::ResponseTooLarge {
            endpoint,
            limit: MAX_JSON_OBJECTS,
            what: "JSON objects",
        });
    }
    // Some servers answer a DELETE with an empty 2xx body: read it as `{}`.
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    // serde's messages quote the values they choke on: say where, never what.
    serde_json::from_slice(bytes).map_err(|source| {
        let detail = format!(
            "the body is not the JSON this call answers (line {}, column {})",
            source.line(),
            source.column()
        );
        ApiError::decode(endpoint, detail)
    })
}

/// `GET /repo`'s `repos`, decoded as they stream.
#[derive(Clone)]
pub(crate) struct RepoListing {
    reader: ListingReader<Repo>,
}

impl RepoListing {
    pub(crate) fn new(limits: ListingLimits) -> Self {
        Self {
            reader: ListingReader::new("repos", limits),
        }
    }
}

impl Decoder for RepoListing {
    type Output = Vec<Repo>;

    fn byte_limit(&self) -> usize {
        self.reader.byte_limit()
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), Refusal> {
        self.reader.feed(chunk)
    }

    fn finish(
        self,
        endpoint: &'static str,
        judge: impl FnOnce(&[u8]) -> Option<ApiError>,
    ) -> Result<Vec<Repo>, ApiError> {
        let (envelope, entries) = self
            .reader
            .finish()
            .map_err(|refusal| refused(endpoint, refusal))?;
        if let Some(error) = judge(&envelope) {
            return Err(error);
        }
        // The envelope carries the rest: `repos` must be there (an empty array where the
        // entries were, or `null`), and a listing the reader did not recognise (a name
        // written with escapes) is decoded here, within the envelope's bound.
        let body: ReposBody = decode_whole(endpoint, &envelope)?;
        if body.repos.is_empty() {
            return Ok(entries);
        }
        let mut repos = body.repos;
        repos.extend(entries);
        Ok(repos)
    }
}

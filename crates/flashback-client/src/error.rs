//! What can go wrong talking to the Flashback API, and how each failure is judged.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// One failed API call.
///
/// Each variant knows whether waiting and calling again can help ([`ApiError::is_transient`])
/// and which label it carries in metrics ([`ApiError::metric_label`]). No variant ever holds the
/// token: the messages come from the server's body, the HTTP status or the transport error,
/// none of which carries the `Authorization` header.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401, or `error_code: NO_AUTH_USER`: the token is missing, unknown or revoked.
    #[error("the Flashback API rejected the token (NO_AUTH_USER)")]
    Unauthorized,

    /// The API refused the session's refresh token (revoked, expired or already spent), or
    /// refused it before: only a new refresh token (a new login) renews the session.
    #[error("the Flashback API refused the refresh token: {message}")]
    SessionRefused { message: String },

    /// The session's store could not be read or written.
    #[error("the session's tokens could not be kept: {message}")]
    SessionStore { message: String, permanent: bool },

    /// 403: the token is valid but may not do this.
    #[error("the Flashback API refused the call (403): {message}")]
    Forbidden { message: String },

    /// `NOT_FOUND`, or a 404: the repo, or a bucket the request names, does not exist.
    #[error("not found: {message}")]
    NotFound { message: String },

    /// `NAME_ALREADY_USED`: another repo of the organisation has this name.
    #[error("name already used: {message}")]
    NameAlreadyUsed { message: String },

    /// Any other `error_code`: the request is one the API refuses (a person must change it).
    #[error("the Flashback API refused the request ({code}): {message}")]
    InvalidSpec { code: String, message: String },

    /// A client error without an `error_code` the client knows (e.g. a bare 400 or 405).
    #[error("the Flashback API refused the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },

    /// 429 without a quota code: too many calls.
    #[error("rate limited by the Flashback API{}", after(*retry_after))]
    RateLimited { retry_after: Option<Duration> },

    /// `QUOTA_EXCEEDED`: a quota is used up for now; waiting helps.
    #[error("quota exceeded{}: {message}", after(*retry_after))]
    QuotaExceeded {
        message: String,
        retry_after: Option<Duration>,
    },

    /// A 5xx, a connection failure or a timeout.
    #[error("transient failure{}: {reason}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transient {
        status: Option<u16>,
        reason: String,
        retry_after: Option<Duration>,
        #[source]
        source: Option<reqwest::Error>,
    },

    /// The server answered success with a body this client cannot read.
    #[error("could not decode the answer of {endpoint}: {detail}")]
    Decode {
        endpoint: &'static str,
        detail: String,
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },

    /// The retry budget ran out; `last` is the final failure.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        attempts: u32,
        #[source]
        last: Box<ApiError>,
    },

    /// The answer was longer than the client reads (`ClientConfig::max_response_bytes`), or
    /// held more JSON objects than it parses ([`MAX_JSON_OBJECTS`]).
    #[error("the answer of {endpoint} held more than {limit} {what}, the most the client reads")]
    ResponseTooLarge {
        endpoint: &'static str,
        limit: usize,
        what: &'static str,
    },

    /// The client could not be built (bad base URL, TLS setup).
    #[error("invalid Flashback client configuration: {reason}")]
    Config {
        reason: String,
        #[source]
        source: Option<reqwest::Error>,
    },
}

/// The most JSON objects one answer may hold. Parsed, an object costs several times its
/// text, so this bounds what an answer can cost in memory beyond its bytes. A listing of
/// 20,000 repositories, two buckets each, holds about 100,000.
pub const MAX_JSON_OBJECTS: usize = 100_000;

/// The longest `Retry-After` the client honours; a server asking for more gets this much.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

fn after(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) if wait >= MAX_RETRY_AFTER => format!(
            " (retry after {}, the longest wait the client honours)",
            humantime::format_duration(wait)
        ),
        Some(wait) => format!(" (retry after {})", humantime::format_duration(wait)),
        None => String::new(),
    }
}

impl ApiError {
    /// True when calling again later can succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::QuotaExceeded { .. } | Self::Transient { .. } => true,
            Self::RetriesExhausted { last, .. } => last.is_transient(),
            Self::SessionStore { permanent, .. } => !permanent,
            Self::Unauthorized
            | Self::SessionRefused { .. }
            | Self::Forbidden { .. }
            | Self::NotFound { .. }
            | Self::NameAlreadyUsed { .. }
            | Self::InvalidSpec { .. }
            | Self::Rejected { .. }
            | Self::Decode { .. }
            | Self::ResponseTooLarge { .. }
            | Self::Config { .. } => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after }
            | Self::QuotaExceeded { retry_after, .. }
            | Self::Transient { retry_after, .. } => *retry_after,
            Self::RetriesExhausted { last, .. } => last.retry_after(),
            _ => None,
        }
    }

    /// A short, stable label for metrics (`failures{reason=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::SessionRefused { .. } => "session_refused",
            Self::SessionStore { .. } => "session_store",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::NameAlreadyUsed { .. } => "name_already_used",
            Self::InvalidSpec { .. } => "invalid_spec",
            Self::Rejected { .. } => "rejected",
            Self::RateLimited { .. } => "rate_limited",
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::Transient { .. } => "transient",
            Self::Decode { .. } => "decode",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::RetriesExhausted { last, .. } => last.metric_label(),
            Self::Config { .. } => "config",
        }
    }

    /// The API's `error_code` this failure stands for, if any.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            Self::Unauthorized => Some("NO_AUTH_USER"),
            Self::NotFound { .. } => Some("NOT_FOUND"),
            Self::NameAlreadyUsed { .. } => Some("NAME_ALREADY_USED"),
            Self::InvalidSpec { code, .. } => Some(code),
            Self::QuotaExceeded { .. } => Some("QUOTA_EXCEEDED"),
            Self::RetriesExhausted { last, .. } => last.error_code(),
            _ => None,
        }
    }

    /// True when no answer came in time.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Transient {
                source: Some(source),
                ..
            } => source.is_timeout(),
            Self::RetriesExhausted { last, .. } => last.is_timeout(),
            _ => false,
        }
    }

    /// True when the server certainly did not act on the request: the connection never opened,
    /// or the server answered 429/503. Only such failures make a non-idempotent call safe to
    /// send again.
    pub fn request_not_processed(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::QuotaExceeded { .. } => true,
            Self::Transient {
                status: Some(503), ..
            } => true,
            Self::Transient {
                status: None,
                source: Some(source),
                ..
            } => source.is_connect(),
            _ => false,
        }
    }

    pub(crate) fn decode(endpoint: &'static str, detail: impl Into<String>) -> Self {
        Self::Decode {
            endpoint,
            detail: detail.into(),
            source: None,
        }
    }

    pub(crate) fn decode_with(
        endpoint: &'static str,
        detail: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::Decode {
            endpoint,
            detail: detail.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A transport failure (no HTTP answer).
    pub(crate) fn from_transport(source: reqwest::Error) -> Self {
        let reason = if source.is_timeout() {
            "the request timed out"
        } else if source.is_connect() {
            "could not connect to the Flashback API"
        } else {
            "the request failed"
        };
        Self::Transient {
            status: None,
            reason: reason.to_owned(),
            retry_after: None,
            source: Some(source),
        }
    }
}

/// The failure fields every Flashback body may carry.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub success: Option<bool>,
    #[serde(default, alias = "errorCode")]
    pub error_code: Option<String>,
    #[serde(default, alias = "errorMessage")]
    pub error_message: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Envelope {
    pub(crate) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// Judges an HTTP answer: `None` when it is a success, else the failure it stands for.
///
/// A 2xx whose body says `"success": false` is a failure too (the API answers some refused
/// writes that way). Server errors and throttling are judged by status first, because their
/// bodies come from whatever proxy answered; everything else by `error_code`, then by status.
pub(crate) fn judge_response(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Option<ApiError> {
    let envelope = Envelope::parse(body);
    let success_status = (200..300).contains(&status);
    if success_status && envelope.success != Some(false) {
        return None;
    }
    // Only the API's own code and message fields are ever quoted, and only so much of them:
    // the server may be anyone's, and what it says ends up in statuses and Events.
    let code = envelope
        .error_code
        .as_deref()
        .map(quotable)
        .filter(|c| !c.is_empty());
    let message = envelope
        .error_message
        .as_deref()
        .or(envelope.message.as_deref())
        .map(quotable)
        .or_else(|| code.clone())
        .unwrap_or_else(|| format!("HTTP {status}"));

    if status == 401 || code.as_deref() == Some("NO_AUTH_USER") {
        return Some(ApiError::Unauthorized);
    }
    if code.as_deref() == Some("QUOTA_EXCEEDED") {
        return Some(ApiError::QuotaExceeded {
            message,
            retry_after,
        });
    }
    if status == 429 {
        return Some(ApiError::RateLimited { retry_after });
    }
    if status >= 500 {
        return Some(ApiError::Transient {
            status: Some(status),
            reason: message,
            retry_after,
            source: None,
        });
    }
    Some(match code {
        Some(code) => match code.as_str() {
            "NOT_FOUND" => ApiError::NotFound { message },
            "NAME_ALREADY_USED" => ApiError::NameAlreadyUsed { message },
            _ => ApiError::InvalidSpec {
                message: if message == code {
                    message
                } else {
                    format!("{code}: {message}")
                },
                code,
            },
        },
        None => match status {
            403 => ApiError::Forbidden { message },
            404 => ApiError::NotFound { message },
            _ => ApiError::Rejected { status, message },
        },
    })
}

/// How many characters of a server's error code or message are quoted.
const QUOTED_CHARS: usize = 200;

/// A server's text made fit to quote: at most [`QUOTED_CHARS`] characters, control
/// characters (line breaks included) as spaces.
fn quotable(text: &str) -> String {
    let text = text.trim();
    let mut quoted: String = text
        .chars()
        .take(QUOTED_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(QUOTED_CHARS).is_some() {
        quoted.push('…');
    }
    quoted
}

/// Reads `Retry-After`: delay-seconds or an HTTP-date (relative to `now`), capped at
/// [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        // Any run of digits is a number of seconds, however large.
        value
            .parse::<u64>()
            .map_or(MAX_RETRY_AFTER, Duration::from_secs)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(status: u16, body: &str) -> Option<ApiError> {
        judge_response(status, None, body.as_bytes())
    }

    #[test]
    fn success_bodies_are_not_errors() {
        assert!(judge(200, r#"{"success":true,"repos":[]}"#).is_none());
        assert!(judge(201, r#"{"repoId":"x"}"#).is_none());
    }

    #[test]
    fn success_false_under_200_is_mapped_by_error_code() {
        let err = judge(200, r#"{"success":false,"error_code":"NAME_ALREADY_USED"}"#).unwrap();
        assert!(matches!(err, ApiError::NameAlreadyUsed { .. }), "{err:?}");
        assert!(!err.is_transient());
        let err = judge(
            200,
            r#"{"success":false,"error_code":"MIRROR_MASTER_UNIT_MISSING","error_message":"no master"}"#,
        )
        .unwrap();
        assert_eq!(err.error_code(), Some("MIRROR_MASTER_UNIT_MISSING"));
        assert_eq!(err.metric_label(), "invalid_spec");
        assert!(
            err.to_string()
                .contains("MIRROR_MASTER_UNIT_MISSING: no master"),
            "{err}"
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        let cases: &[(u16, &str, &str, bool)] = &[
            (
                401,
                r#"{"success":false,"error_code":"NO_AUTH_USER"}"#,
                "unauthorized",
                false,
            ),
            (401, "", "unauthorized", false),
            (403, r#"{"success":false}"#, "forbidden", false),
            (
                404,
                r#"{"success":false,"message":"gone"}"#,
                "not_found",
                false,
            ),
            (
                400,
                r#"{"success":false,"error_code":"NOT_FOUND"}"#,
                "not_found",
                false,
            ),
            (
                409,
                r#"{"success":false,"error_code":"NAME_ALREADY_USED"}"#,
                "name_already_used",
                false,
            ),
            (
                400,
                r#"{"success":false,"error_code":"MIRROR_UNIT_ALREADY_IN_OTHER_REPO"}"#,
                "invalid_spec",
                false,
            ),
            (400, "not json", "rejected", false),
            (429, r#"{"success":false}"#, "rate_limited", true),
            (
                429,
                r#"{"success":false,"error_code":"QUOTA_EXCEEDED"}"#,
                "quota_exceeded",
                true,
            ),
            (500, "<html>oops</html>", "transient", true),
            (
                503,
                r#"{"success":false,"error_code":"NOT_FOUND"}"#,
                "transient",
                true,
            ),
        ];
        for (status, body, label, transient) in cases {
            let err = judge(*status, body).unwrap();
            assert_eq!(err.metric_label(), *label, "{status} {body}");
            assert_eq!(err.is_transient(), *transient, "{status} {body}");
        }
    }

    #[test]
    fn retries_exhausted_reads_clearly_and_delegates() {
        let last = judge_response(503, Some(Duration::from_secs(2)), b"{}").unwrap();
        let err = ApiError::RetriesExhausted {
            attempts: 4,
            last: Box::new(last),
        };
        assert!(
            err.to_string()
                .starts_with("gave up after 4 attempts: transient failure (HTTP 503)")
        );
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(err.metric_label(), "transient");
        assert!(err.source().is_some());
    }

    #[test]
    fn only_unprocessed_failures_allow_resending_a_create() {
        assert!(judge(429, "").unwrap().request_not_processed());
        assert!(judge(503, "").unwrap().request_not_processed());
        assert!(!judge(500, "").unwrap().request_not_processed());
        assert!(!judge(502, "").unwrap().request_not_processed());
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_retry_after_beyond_the_cap_is_capped_and_says_so() {
        let now = SystemTime::now();
        for asked in ["18446744073709551615", "99999999999999999999999", "301"] {
            assert_eq!(
                parse_retry_after(asked, now),
                Some(MAX_RETRY_AFTER),
                "{asked}"
            );
        }
        let err =
            judge_response(429, parse_retry_after("18446744073709551615", now), b"{}").unwrap();
        assert_eq!(
            err.to_string(),
            "rate limited by the Flashback API (retry after 5m, the longest wait the client honours)"
        );
        let err = judge_response(429, parse_retry_after("2", now), b"{}").unwrap();
        assert_eq!(
            err.to_string(),
            "rate limited by the Flashback API (retry after 2s)"
        );
    }

    #[test]
    fn only_so_much_of_a_servers_message_is_quoted_and_on_one_line() {
        let long = "x".repeat(5000);
        let body = format!(
            r#"{{"success":false,"error_code":"WEIRD","error_message":"line\nbreak {long}"}}"#
        );
        let err = judge(400, &body).unwrap();
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.chars().count() < 300, "{} chars", text.chars().count());
        assert!(
            text.starts_with(
                "the Flashback API refused the request (WEIRD): WEIRD: line break xxx"
            ),
            "{text}"
        );
        assert!(text.ends_with('…'), "{text}");
    }
}

//! Sessions as the service issues them (`flashback-api.md`, "Sessions"): a login answers an
//! access token that expires and a refresh token; `POST /user/refresh` spends the refresh
//! token for a new pair. A refresh token is good once: sending a spent one again is counted
//! as a reuse and ends its whole session (what token-rotation services do against a stolen
//! token; the reference does not say what Flashback does, so this is the strict reading).
//! Access tokens stay good until they expire, even once their session ended, as a signed
//! token would. Sessions live in memory only.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// How long an access token lives unless told otherwise.
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a refresh token lives unless told otherwise.
pub const DEFAULT_REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The figures `GET /_emulator/sessions` answers, and what `PUT` may set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionFigures {
    /// How long an access token lives, in seconds (fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_lifetime_seconds: Option<f64>,
    /// How long a refresh token lives, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_lifetime_seconds: Option<f64>,
    /// Logins answered with a session.
    #[serde(default)]
    pub logins: u64,
    /// Refreshes answered with new tokens.
    #[serde(default)]
    pub refreshes: u64,
    /// Refreshes refused: unknown, expired or revoked refresh tokens, and reuses.
    #[serde(default)]
    pub refused: u64,
    /// Refreshes that sent a refresh token already spent (each also ends its session).
    #[serde(default)]
    pub reused: u64,
}

/// A new session's tokens, as a login, a refresh and `POST /_emulator/sessions` answer them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedSession {
    pub access_token: String,
    pub refresh_token: String,
    /// Milliseconds since the epoch, as JavaScript's `Date.now()` counts (the client types
    /// it as a number; which unit the service uses is not published).
    pub expires_at: u64,
    /// The session's id (`tokenId` in a login's answer): what
    /// `POST /_emulator/sessions/revoke` takes.
    pub token_id: String,
}

/// Why a refresh was refused: the code is a guess (the reference publishes none for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    Unknown,
    Expired,
    Revoked,
    Reused,
}

impl RefreshRefusal {
    pub fn code(self) -> &'static str {
        match self {
            RefreshRefusal::Unknown => "INVALID_REFRESH_TOKEN",
            RefreshRefusal::Expired => "REFRESH_TOKEN_EXPIRED",
            RefreshRefusal::Revoked => "REFRESH_TOKEN_REVOKED",
            RefreshRefusal::Reused => "REFRESH_TOKEN_REUSED",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            RefreshRefusal::Unknown => "unknown refresh token",
            RefreshRefusal::Expired => "the refresh token has expired",
            RefreshRefusal::Revoked => "the session was ended",
            RefreshRefusal::Reused => "the refresh token was already used; the session is ended",
        }
    }
}

struct Family {
    org: String,
    revoked: bool,
}

struct RefreshRecord {
    family: String,
    expires: Instant,
    spent: bool,
}

struct AccessRecord {
    org: String,
    expires: Instant,
}

/// Every session the emulator issued.
pub(crate) struct Sessions {
    access_lifetime: Duration,
    refresh_lifetime: Duration,
    /// email → (password, organisation)
    users: HashMap<String, (String, String)>,
    families: HashMap<String, Family>,
    refresh: HashMap<String, RefreshRecord>,
    access: HashMap<String, AccessRecord>,
    figures: SessionFigures,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(DEFAULT_ACCESS_TOKEN_LIFETIME)
    }
}

impl Sessions {
    pub(crate) fn new(access_lifetime: Duration) -> Self {
        Self {
            access_lifetime,
            refresh_lifetime: DEFAULT_REFRESH_TOKEN_LIFETIME,
            users: HashMap::new(),
            families: HashMap::new(),
            refresh: HashMap::new(),
            access: HashMap::new(),
            figures: SessionFigures::default(),
        }
    }

    /// A person who can log in to `org`.
    pub(crate) fn add_user(&mut self, email: &str, password: &str, org: &str) {
        self.users
            .insert(email.to_owned(), (password.to_owned(), org.to_owned()));
    }

    /// The organisation of a live access token.
    pub(crate) fn org_of(&self, access_token: &str) -> Option<&str> {
        let record = self.access.get(access_token)?;
        (Instant::now() < record.expires).then_some(record.org.as_str())
    }

    /// A login: a new session for a known email and password.
    pub(crate) fn login(&mut self, email: &str, password: &str) -> Option<IssuedSession> {
        let (expected, org) = self.users.get(email)?;
        if expected != password {
            return None;
        }
        let org = org.clone();
        self.figures.logins += 1;
        Some(self.open(&org))
    }

    /// A new session of `org`, as a login would make it.
    pub(crate) fn open(&mut self, org: &str) -> IssuedSession {
        let family = format!("session-{}", uuid::Uuid::new_v4());
        self.families.insert(
            family.clone(),
            Family {
                org: org.to_owned(),
                revoked: false,
            },
        );
        self.issue(&family, org)
    }

    fn issue(&mut self, family: &str, org: &str) -> IssuedSession {
        self.forget_expired();
        let now = Instant::now();
        let access_token = format!("fbat-{}", uuid::Uuid::new_v4().simple());
        let refresh_token = format!("fbrt-{}", uuid::Uuid::new_v4().simple());
        self.access.insert(
            access_token.clone(),
            AccessRecord {
                org: org.to_owned(),
                expires: now + self.access_lifetime,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            RefreshRecord {
                family: family.to_owned(),
                expires: now + self.refresh_lifetime,
                spent: false,
            },
        );
        let expires_at = SystemTime::now() + self.access_lifetime;
        IssuedSession {
            access_token,
            refresh_token,
            expires_at: expires_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|since| since.as_millis() as u64)
                .unwrap_or_default(),
            token_id: family.to_owned(),
        }
    }

    /// `POST /user/refresh`: spends `token` for a new pair.
    pub(crate) fn refresh(&mut self, token: &str) -> Result<IssuedSession, RefreshRefusal> {
        let refusal = match self.refresh.get_mut(token) {
            None => Some(RefreshRefusal::Unknown),
            Some(record) if record.spent => {
                let family = record.family.clone();
                if let Some(family) = self.families.get_mut(&family) {
                    family.revoked = true;
                }
                self.figures.reused += 1;
                Some(RefreshRefusal::Reused)
            }
            Some(record) if Instant::now() >= record.expires => Some(RefreshRefusal::Expired),
            Some(record) => {
                let family = record.family.clone();
                match self.families.get(&family) {
                    Some(found) if !found.revoked => {
                        record.spent = true;
                        let org = found.org.clone();
                        self.figures.refreshes += 1;
                        return Ok(self.issue(&family, &org));
                    }
                    _ => Some(RefreshRefusal::Revoked),
                }
            }
        };
        self.figures.refused += 1;
        Err(refusal.unwrap_or(RefreshRefusal::Unknown))
    }

    /// `POST /user/logout`: ends the session of `token`. Whether the token was good is not
    /// told.
    pub(crate) fn logout(&mut self, token: &str) {
        if let Some(family) = self
            .refresh
            .get(token)
            .and_then(|record| self.families.get_mut(&record.family))
        {
            family.revoked = true;
        }
    }

    /// Ends the session `id`; false when there is none.
    pub(crate) fn revoke(&mut self, id: &str) -> bool {
        match self.families.get_mut(id) {
            Some(family) => {
                family.revoked = true;
                true
            }
            None => false,
        }
    }

    pub(crate) fn figures(&self) -> SessionFigures {
        SessionFigures {
            access_token_lifetime_seconds: Some(self.access_lifetime.as_secs_f64()),
            refresh_token_lifetime_seconds: Some(self.refresh_lifetime.as_secs_f64()),
            ..self.figures.clone()
        }
    }

    /// Sets the lifetimes given; the counters are not settable.
    pub(crate) fn set(&mut self, figures: &SessionFigures) -> Result<(), String> {
        let lifetime = |seconds: Option<f64>, what: &str| -> Result<Option<Duration>, String> {
            seconds
                .map(|seconds| {
                    Duration::try_from_secs_f64(seconds)
                        .ok()
                        .filter(|lifetime| !lifetime.is_zero())
                        .ok_or_else(|| format!("{what} must be a positive number of seconds"))
                })
                .transpose()
        };
        let access = lifetime(
            figures.access_token_lifetime_seconds,
            "accessTokenLifetimeSeconds",
        )?;
        let refresh = lifetime(
            figures.refresh_token_lifetime_seconds,
            "refreshTokenLifetimeSeconds",
        )?;
        self.access_lifetime = access.unwrap_or(self.access_lifetime);
        self.refresh_lifetime = refresh.unwrap_or(self.refresh_lifetime);
        Ok(())
    }

    /// Drops tokens long expired, so that a long run does not pile them up. Spent refresh
    /// tokens are kept until they expire: a reuse must still be told from an unknown token.
    fn forget_expired(&mut self) {
        let now = Instant::now();
        self.access.retain(|_, record| record.expires > now);
        self.refresh.retain(|_, record| record.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_rotates_and_a_spent_token_ends_the_session() {
        let mut sessions = Sessions::new(Duration::from_secs(60));
        let first = sessions.open("org-a");
        assert_eq!(sessions.org_of(&first.access_token), Some("org-a"));
        let second = sessions.refresh(&first.refresh_token).unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        assert_eq!(second.token_id, first.token_id);
        // The spent one again: a reuse, and the whole session ends.
        assert_eq!(
            sessions.refresh(&first.refresh_token),
            Err(RefreshRefusal::Reused)
        );
        assert_eq!(
            sessions.refresh(&second.refresh_token),
            Err(RefreshRefusal::Revoked)
        );
        let figures = sessions.figures();
        assert_eq!(
            (figures.refreshes, figures.refused, figures.reused),
            (1, 2, 1)
        );
        // Access tokens live on until they expire.
        assert_eq!(sessions.org_of(&second.access_token), Some("org-a"));
    }

    #[test]
    fn an_access_token_stops_working_when_it_expires() {
        let mut sessions = Sessions::new(Duration::from_millis(20));
        let issued = sessions.open("org-a");
        assert!(sessions.org_of(&issued.access_token).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(sessions.org_of(&issued.access_token), None);
    }

    #[test]
    fn a_login_needs_the_right_password_and_a_revoked_session_refreshes_no_more() {
        let mut sessions = Sessions::default();
        sessions.add_user("ops@example.com", "hunter2", "org-a");
        assert!(sessions.login("ops@example.com", "wrong").is_none());
        assert!(sessions.login("nobody@example.com", "hunter2").is_none());
        let issued = sessions.login("ops@example.com", "hunter2").unwrap();
        assert!(sessions.revoke(&issued.token_id));
        assert_eq!(
            sessions.refresh(&issued.refresh_token),
            Err(RefreshRefusal::Revoked)
        );
        assert_eq!(sessions.refresh("made-up"), Err(RefreshRefusal::Unknown));
        assert_eq!(sessions.figures().logins, 1);
    }

    #[test]
    fn lifetimes_must_be_positive() {
        let mut sessions = Sessions::default();
        let zero = SessionFigures {
            access_token_lifetime_seconds: Some(0.0),
            ..SessionFigures::default()
        };
        assert!(sessions.set(&zero).is_err());
        let three = SessionFigures {
            access_token_lifetime_seconds: Some(3.0),
            ..SessionFigures::default()
        };
        sessions.set(&three).unwrap();
        assert_eq!(sessions.figures().access_token_lifetime_seconds, Some(3.0));
    }
}

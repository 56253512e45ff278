//! Where a credential's session is kept: a Secret the operator owns beside the credentials
//! Secret, named `<name>-session`, of type `flashback.tech/session`.
//!
//! Not the user's Secret: that one is often applied from Git (sealed, SOPS, an external
//! secret store), and a GitOps tool would put the spent refresh token back over the new one.
//! The session Secret records which refresh token of the user's Secret its chain began with
//! (`origin`, a digest): when a person puts a new one there, the kept chain is dropped.
//!
//! Spending a refresh token is claimed first with an optimistic-concurrency write (`state:
//! refreshing` at the version read), so that two processes (two replicas around a leader
//! hand-over, say) never both spend one: the loser waits and takes the winner's tokens. The
//! new tokens are written the moment the refresh answers: that write is the one window in
//! which a kill loses the session (the service has spent the old token, and only this process
//! knew the new one); the next process then sends the old one once, is refused, and records
//! the refusal, so that nothing is sent again until the user's Secret changes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use flashback_client::{
    Claim, SessionStore, SessionTokens, StoreError, StoreFuture, Stored, Token,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::controller::credentials::SecretName;
use crate::controller::failpoint::{self, Failpoint};

/// The type of a session Secret: the marker that it is the operator's to write.
pub const SESSION_SECRET_TYPE: &str = "flashback.tech/session";

/// How long a claim by another process is waited on before it counts as abandoned: a
/// refresh call times out after 10 s (the client's read timeout), with room for the write.
const CLAIM_LIFETIME: Duration = Duration::from_secs(15);
/// How often a claim by another process is looked at again.
const CLAIM_POLL: Duration = Duration::from_millis(250);

const REFRESH_TOKEN: &str = "refreshToken";
const ACCESS_TOKEN: &str = "accessToken";
const EXPIRES_AT: &str = "expiresAt";
const ORIGIN: &str = "origin";
const STATE: &str = "state";
const HOLDER: &str = "holder";
const SINCE: &str = "since";

/// The name of the session Secret kept for the credentials Secret `name`.
pub fn session_secret_name(name: &str) -> String {
    const SUFFIX: &str = "-session";
    if name.len() + SUFFIX.len() <= 253 {
        return format!("{name}{SUFFIX}");
    }
    // Too long for a name: a prefix and a digest of the whole keep it unique.
    let digest = digest_of(name);
    format!("{}-{}{SUFFIX}", &name[..200], &digest[..16])
}

/// A SHA-256 of a text, as the session Secret records the refresh token it began with.
fn digest_of(text: &str) -> String {
    crate::controller::digest::digest([("", text.as_bytes())])
}

/// What the session Secret says, read into plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub origin: String,
    pub state: KeptState,
    pub tokens: Option<SessionTokens>,
    pub holder: String,
    pub since: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptState {
    Ready,
    Refreshing,
    Refused,
}

impl KeptState {
    fn as_str(self) -> &'static str {
        match self {
            KeptState::Ready => "ready",
            KeptState::Refreshing => "refreshing",
            KeptState::Refused => "refused",
        }
    }
}

/// What to do before spending `spending`, given what the session Secret holds. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Claim it (the Secret holds it, or holds nothing of this chain).
    Claim,
    /// Another process renewed the session: take its tokens.
    Take(SessionTokens),
    /// Another process is spending right now: look again shortly.
    Wait,
    /// Refused before: send nothing.
    Refused,
}

/// The decision of [`SecretSessionStore::claim`], given the Secret's content (`None`: no
/// Secret, or one of another chain), who we are, and for how long this process has seen the
/// Secret as it is (a claim's age is judged by our own clock, never by the writer's).
pub fn next_step(kept: Option<&Kept>, spending: &Token, holder: &str, seen_for: Duration) -> Step {
    let Some(kept) = kept else {
        return Step::Claim;
    };
    let claimed_by_another =
        kept.state == KeptState::Refreshing && kept.holder != holder && seen_for < CLAIM_LIFETIME;
    if claimed_by_another {
        return Step::Wait;
    }
    if kept.state == KeptState::Refused {
        return Step::Refused;
    }
    match &kept.tokens {
        // Renewed by another process, or a claim it abandoned (a kill) of a newer token than
        // ours: what the Secret holds is the newest, ours is spent.
        Some(tokens) if &tokens.refresh != spending => Step::Take(tokens.clone()),
        // Ours, or our own claim abandoned mid-refresh: spend it. If a kill came after the
        // service spent it, the service refuses it, once.
        _ => Step::Claim,
    }
}

/// Reads a session Secret; `None` when it is not one (another Secret of that name).
pub fn read_kept(secret: &Secret) -> Option<Kept> {
    if secret.type_.as_deref() != Some(SESSION_SECRET_TYPE) {
        return None;
    }
    let text = |key: &str| -> Option<String> {
        let bytes = secret.data.as_ref()?.get(key)?;
        let text = std::str::from_utf8(&bytes.0).ok()?.trim();
        (!text.is_empty()).then(|| text.to_owned())
    };
    let millis = |key: &str| -> Option<SystemTime> {
        let ms = text(key)?.parse::<u64>().ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms))
    };
    let state = match text(STATE).as_deref() {
        Some("refreshing") => KeptState::Refreshing,
        Some("refused") => KeptState::Refused,
        _ => KeptState::Ready,
    };
    Some(Kept {
        origin: text(ORIGIN).unwrap_or_default(),
        state,
        tokens: text(REFRESH_TOKEN).map(|refresh| SessionTokens {
            access: text(ACCESS_TOKEN).map(Token::new),
            expires_at: millis(EXPIRES_AT),
            refresh: Token::new(refresh),
        }),
        holder: text(HOLDER).unwrap_or_default(),
        since: millis(SINCE),
    })
}

fn to_millis(at: SystemTime) -> String {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or_default()
        .to_string()
}

/// The data of a session Secret.
fn data_of(kept: &Kept) -> BTreeMap<String, ByteString> {
    let mut data = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        data.insert(key.to_owned(), ByteString(value.into_bytes()));
    };
    put(ORIGIN, kept.origin.clone());
    put(STATE, kept.state.as_str().to_owned());
    put(HOLDER, kept.holder.clone());
    if let Some(since) = kept.since {
        put(SINCE, to_millis(since));
    }
    if let Some(tokens) = &kept.tokens {
        put(REFRESH_TOKEN, tokens.refresh.expose().to_owned());
        if let Some(access) = &tokens.access {
            put(ACCESS_TOKEN, access.expose().to_owned());
        }
        if let Some(expires_at) = tokens.expires_at {
            put(EXPIRES_AT, to_millis(expires_at));
        }
    }
    data
}

/// The session of one credentials Secret, kept in the Secret beside it.
pub struct SecretSessionStore {
    kube: kube::Client,
    /// The credentials Secret.
    of: SecretName,
    /// A digest of the refresh token the credentials Secret holds.
    origin: String,
    /// Who claims: this process.
    holder: String,
}

impl SecretSessionStore {
    pub fn new(kube: kube::Client, of: SecretName, refresh: &Token, holder: String) -> Self {
        Self {
            kube,
            origin: digest_of(refresh.expose()),
            of,
            holder,
        }
    }

    fn api(&self) -> Api<Secret> {
        Api::namespaced(self.kube.clone(), &self.of.namespace)
    }

    fn name(&self) -> String {
        session_secret_name(&self.of.name)
    }

    fn transient(&self, what: &str, error: kube::Error) -> StoreError {
        StoreError {
            message: format!(
                "could not {what} the session Secret {}/{}: {error}",
                self.of.namespace,
                self.name()
            ),
            permanent: false,
        }
    }

    fn taken(&self) -> StoreError {
        StoreError {
            message: format!(
                "the Secret {}/{} exists and is not a session Secret of the operator (type {}); \
                 rename it: the operator keeps the session of {} there",
                self.of.namespace,
                self.name(),
                SESSION_SECRET_TYPE,
                self.of
            ),
            permanent: true,
        }
    }

    /// The session Secret and what it says of this chain (`None`: absent, or another chain's
    /// that a newer refresh token in the credentials Secret replaced). A record of another
    /// chain while this chain is not the current one is an error: this session was replaced,
    /// and writes nothing more, lest it undo the new one.
    async fn read(&self) -> Result<(Option<Secret>, Option<Kept>), StoreError> {
        let secret = self
            .api()
            .get_opt(&self.name())
            .await
            .map_err(|error| self.transient("read", error))?;
        let Some(secret) = secret else {
            return Ok((None, None));
        };
        let kept = read_kept(&secret).ok_or_else(|| self.taken())?;
        if kept.origin == self.origin {
            return Ok((Some(secret), Some(kept)));
        }
        if self.current().await? {
            Ok((Some(secret), None))
        } else {
            Err(StoreError {
                message: format!(
                    "the credentials Secret {} holds another refresh token now; this session \
                     ends",
                    self.of
                ),
                permanent: false,
            })
        }
    }

    /// Whether the credentials Secret still holds the refresh token this chain began with.
    async fn current(&self) -> Result<bool, StoreError> {
        let secret = self
            .api()
            .get_opt(&self.of.name)
            .await
            .map_err(|error| self.transient("read", error))?;
        let refresh = secret
            .as_ref()
            .and_then(|s| {
                s.data
                    .as_ref()?
                    .get(crate::controller::credentials::REFRESH_TOKEN_KEY)
            })
            .and_then(|bytes| std::str::from_utf8(&bytes.0).ok())
            .map(str::trim);
        Ok(refresh.is_some_and(|refresh| digest_of(refresh) == self.origin))
    }

    /// Writes `kept`: over `current` at the version it was read at, or as a new Secret.
    /// `Ok(false)`: someone else wrote first.
    async fn write(&self, current: Option<Secret>, kept: &Kept) -> Result<bool, StoreError> {
        let result = match current {
            Some(mut secret) => {
                secret.data = Some(data_of(kept));
                secret.string_data = None;
                self.api()
                    .replace(&self.name(), &PostParams::default(), &secret)
                    .await
            }
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.name()),
                        namespace: Some(self.of.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "flashback-operator".to_owned(),
                        )])),
                        annotations: Some(BTreeMap::from([(
                            "flashback.tech/session-of".to_owned(),
                            self.of.name.clone(),
                        )])),
                        // No owner: a credentials Secret deleted and made again (a GitOps
                        // tool replacing it) comes back with its first refresh token, long
                        // spent, and only this record says where the session went since.
                        ..ObjectMeta::default()
                    },
                    type_: Some(SESSION_SECRET_TYPE.to_owned()),
                    data: Some(data_of(kept)),
                    ..Secret::default()
                };
                self.api().create(&PostParams::default(), &secret).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(self.transient("write", error)),
        }
    }

    fn kept(&self, state: KeptState, tokens: Option<SessionTokens>) -> Kept {
        Kept {
            origin: self.origin.clone(),
            state,
            tokens,
            holder: self.holder.clone(),
            since: Some(SystemTime::now()),
        }
    }

    async fn claim_now(&self, spending: &Token) -> Result<Claim, StoreError> {
        // Which version of the Secret this process has been seeing, and since when.
        let mut seen: Option<(Option<String>, std::time::Instant)> = None;
        for _ in 0..(2 * CLAIM_LIFETIME.as_millis() / CLAIM_POLL.as_millis()) {
            let (secret, kept) = self.read().await?;
            let version = secret
                .as_ref()
                .and_then(|s| s.metadata.resource_version.clone());
            let since = match &seen {
                Some((seen_version, since)) if *seen_version == version => *since,
                _ => {
                    let now = std::time::Instant::now();
                    seen = Some((version, now));
                    now
                }
            };
            match next_step(kept.as_ref(), spending, &self.holder, since.elapsed()) {
                Step::Take(tokens) => return Ok(Claim::Newer(tokens)),
                Step::Refused => return Ok(Claim::Refused),
                Step::Wait => tokio::time::sleep(CLAIM_POLL).await,
                Step::Claim => {
                    let tokens = SessionTokens {
                        access: None,
                        expires_at: None,
                        refresh: spending.clone(),
                    };
                    let claim = self.kept(KeptState::Refreshing, Some(tokens));
                    if self.write(secret, &claim).await? {
                        return Ok(Claim::Spend);
                    }
                    // Someone wrote between: read again.
                }
            }
        }
        Err(StoreError {
            message: "the session Secret kept changing while this process waited to renew".into(),
            permanent: false,
        })
    }

    async fn keep_now(&self, tokens: &SessionTokens) -> Result<(), StoreError> {
        failpoint::pause_at(Failpoint::PauseBeforeSessionKept).await;
        let kept = self.kept(KeptState::Ready, Some(tokens.clone()));
        // Ours are the only tokens of this chain that work now: written over whatever this
        // chain's record holds (never over a newer chain's: `read` refuses that).
        for _ in 0..5 {
            let (current, _) = self.read().await?;
            if self.write(current, &kept).await? {
                failpoint::pause_at(Failpoint::PauseAfterSessionKept).await;
                return Ok(());
            }
        }
        Err(StoreError {
            message: "the session Secret kept changing while the renewed session was written"
                .into(),
            permanent: false,
        })
    }

    async fn refused_now(&self, refresh: &Token) -> Result<(), StoreError> {
        for _ in 0..5 {
            let (secret, kept) = self.read().await?;
            let spent_here = kept
                .as_ref()
                .and_then(|kept| kept.tokens.as_ref())
                .is_none_or(|tokens| &tokens.refresh == refresh);
            if !spent_here {
                // The Secret moved on to a newer token meanwhile: not ours to mark.
                return Ok(());
            }
            let tokens = SessionTokens {
                access: None,
                expires_at: None,
                refresh: refresh.clone(),
            };
            if self
                .write(secret, &self.kept(KeptState::Refused, Some(tokens)))
                .await?
            {
                return Ok(());
            }
        }
        Err(StoreError {
            message: "the session Secret kept changing while the refusal was recorded".into(),
            permanent: false,
        })
    }
}

impl SessionStore for SecretSessionStore {
    fn load(&self) -> StoreFuture<'_, Option<Stored>> {
        Box::pin(async move {
            let (_, kept) = self.read().await?;
            Ok(kept.and_then(|kept| match (kept.state, kept.tokens) {
                (KeptState::Refused, _) => Some(Stored::Refused),
                (_, Some(tokens)) => Some(Stored::Tokens(tokens)),
                (_, None) => None,
            }))
        })
    }

    fn claim<'a>(&'a self, refresh: &'a Token) -> StoreFuture<'a, Claim> {
        Box::pin(self.claim_now(refresh))
    }

    fn keep<'a>(&'a self, tokens: &'a SessionTokens) -> StoreFuture<'a, ()> {
        Box::pin(self.keep_now(tokens))
    }

    fn refused<'a>(&'a self, refresh: &'a Token) -> StoreFuture<'a, ()> {
        Box::pin(self.refused_now(refresh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    fn tokens(refresh: &str) -> SessionTokens {
        SessionTokens {
            access: Some(Token::new(format!("access-of-{refresh}"))),
            expires_at: Some(at(600)),
            refresh: Token::new(refresh),
        }
    }

    fn kept(state: KeptState, refresh: &str, holder: &str, since: u64) -> Kept {
        Kept {
            origin: "o".into(),
            state,
            tokens: Some(tokens(refresh)),
            holder: holder.into(),
            since: Some(at(since)),
        }
    }

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn nothing_kept_or_our_own_token_kept_is_claimed() {
        let r1 = Token::new("r1");
        assert_eq!(next_step(None, &r1, "me", secs(0)), Step::Claim);
        let ready = kept(KeptState::Ready, "r1", "other", 0);
        assert_eq!(next_step(Some(&ready), &r1, "me", secs(1)), Step::Claim);
    }

    #[test]
    fn a_newer_token_kept_by_another_process_is_taken_not_spent() {
        let ready = kept(KeptState::Ready, "r2", "other", 0);
        assert_eq!(
            next_step(Some(&ready), &Token::new("r1"), "me", secs(1)),
            Step::Take(tokens("r2"))
        );
    }

    #[test]
    fn a_claim_of_another_process_is_waited_on_until_this_process_saw_it_for_fifteen_seconds() {
        // Written "in the future" by a clock far ahead: the age is ours to judge.
        let claimed = kept(KeptState::Refreshing, "r1", "other", 3600);
        let r1 = Token::new("r1");
        assert_eq!(next_step(Some(&claimed), &r1, "me", secs(5)), Step::Wait);
        assert_eq!(next_step(Some(&claimed), &r1, "me", secs(15)), Step::Claim);
        // Our own claim (a refresh that failed) is not waited on.
        assert_eq!(
            next_step(Some(&claimed), &r1, "other", secs(5)),
            Step::Claim
        );
    }

    #[test]
    fn a_refused_session_sends_nothing() {
        let refused = kept(KeptState::Refused, "r1", "other", 0);
        assert_eq!(
            next_step(Some(&refused), &Token::new("r1"), "me", secs(600)),
            Step::Refused
        );
    }

    #[test]
    fn a_session_secret_reads_back_what_was_written_and_another_type_is_not_one() {
        let written = kept(KeptState::Ready, "r9", "pod-a/1", 3);
        let secret = Secret {
            type_: Some(SESSION_SECRET_TYPE.into()),
            data: Some(data_of(&written)),
            ..Secret::default()
        };
        assert_eq!(read_kept(&secret), Some(written));
        let opaque = Secret {
            type_: Some("Opaque".into()),
            ..secret
        };
        assert_eq!(read_kept(&opaque), None);
    }

    #[test]
    fn the_session_secret_is_named_after_the_credentials_secret_within_253_characters() {
        assert_eq!(session_secret_name("flashback"), "flashback-session");
        let long = "a".repeat(253);
        let name = session_secret_name(&long);
        assert!(name.len() <= 253, "{}", name.len());
        assert_ne!(name, session_secret_name(&"a".repeat(252)));
    }
}

//! A session: an access token that expires, renewed with a refresh token that is spent by
//! each use (`POST /user/refresh` answers a new one). One [`Session`] serves every call of a
//! client, so however many calls wait on an expired token, one refresh renews it.
//!
//! Where the refresh token lives between processes is the caller's business, through a
//! [`SessionStore`]: it is told before a refresh token is spent (so that two processes never
//! spend the same one) and is given the new one as soon as the answer arrives.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;

use super::error::ApiError;
use super::secret::Token;

/// What a session holds: the access token to send, when it expires (when known), and the
/// refresh token that renews it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionTokens {
    pub access: Option<Token>,
    pub expires_at: Option<SystemTime>,
    pub refresh: Token,
}

impl fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTokens")
            .field("access", &self.access)
            .field("expires_at", &self.expires_at)
            .field("refresh", &self.refresh)
            .finish()
    }
}

/// What a store holds of a session when the client first needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Tokens kept by an earlier refresh (perhaps by another process): newer than the ones
    /// the client was built with.
    Tokens(SessionTokens),
    /// The refresh token was refused: nothing is to be sent until someone logs in again.
    Refused,
}

/// The store's answer before a refresh token is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody else spends it: go ahead.
    Spend,
    /// Someone else already renewed the session: use these instead.
    Newer(SessionTokens),
    /// It was refused before: do not send it.
    Refused,
}

/// Why a store could not do what it was asked. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    /// True when only a person can fix it (the store's place is taken, say); false when
    /// asking again later can succeed.
    pub permanent: bool,
}

/// A boxed future, so that a store can be a trait object.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where a session's tokens are kept between refreshes and processes.
pub trait SessionStore: Send + Sync {
    /// What the store holds of this session, if anything.
    fn load(&self) -> StoreFuture<'_, Option<Stored>>;
    /// Called right before `refresh` is spent.
    fn claim<'a>(&'a self, refresh: &'a Token) -> StoreFuture<'a, Claim>;
    /// Called as soon as a refresh answered: `tokens` hold the new refresh token, the only
    /// one that works from now on.
    fn keep<'a>(&'a self, tokens: &'a SessionTokens) -> StoreFuture<'a, ()>;
    /// Called when the API refused `refresh`.
    fn refused<'a>(&'a self, refresh: &'a Token) -> StoreFuture<'a, ()>;
}

/// How a client authenticates.
#[derive(Clone)]
pub enum Auth {
    /// One bearer token, sent as it is until it stops working.
    Token(Token),
    /// A session renewed with a refresh token, shared by the clients given it.
    Session(Arc<Session>),
    /// No token (a client that only logs in).
    Anonymous,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(token) => f.debug_tuple("Token").field(token).finish(),
            Auth::Session(_) => f.write_str("Session(***)"),
            Auth::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// The access token a call was sent with, and which renewal of the session it came from.
/// `Debug` shows `Sensitive`, never the token (the header is marked sensitive).
#[derive(Clone, Debug)]
pub(crate) struct Bearer {
    pub header: HeaderValue,
    pub generation: u64,
}

/// How long before its expiry an access token is renewed: a tenth of its lifetime, at most
/// a minute, so that a call is not sent with a token about to lapse on the way.
pub(crate) fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(60))
}

/// Reads an `expiresAt` as the API sends it, a number: seconds since the epoch, or
/// milliseconds when it is too large to be seconds (the reference does not say which).
pub(crate) fn expiry_from_number(value: f64) -> Option<SystemTime> {
    if !value.is_finite() || value <= 0.0 {
        return None;
    }
    // Seconds since the epoch pass 1e11 only in the year 5138.
    let seconds = if value > 1e11 { value / 1000.0 } else { value };
    SystemTime::UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(seconds).ok()?)
}

/// A token refused again this soon after its renewal is not renewed again: the API refuses
/// the account, not the token, and renewing once per call would spend a refresh per call.
const MIN_RENEWAL_AFTER_REFUSAL: Duration = Duration::from_secs(5);

/// What the session knows now.
struct Now {
    /// Whether the store was asked what it holds (once, before the first renewal).
    loaded: bool,
    access: Option<Bearer>,
    obtained_at: SystemTime,
    expires_at: Option<SystemTime>,
    /// `None` once refused: nothing is sent until a new session is made.
    refresh: Option<Token>,
    /// Tokens a refresh answered that the store could not keep yet: kept before anything
    /// else is spent, so that a store's hiccup never makes the session send a spent token.
    unkept: Option<SessionTokens>,
    generation: u64,
    /// The generation this session's own refresh installed last (not one loaded from the
    /// store or taken from another process, which may be stale when it arrives).
    refreshed: Option<u64>,
}

impl Now {
    /// The access token, unless it expires within its renewal margin.
    fn fresh(&self, now: SystemTime) -> Option<Bearer> {
        let access = self.access.as_ref()?;
        match self.expires_at {
            None => Some(access.clone()),
            Some(expires_at) => {
                let lifetime = expires_at
                    .duration_since(self.obtained_at)
                    .unwrap_or_default();
                let renew_at = expires_at
                    .checked_sub(renewal_margin(lifetime))
                    .unwrap_or(expires_at);
                (now < renew_at).then(|| access.clone())
            }
        }
    }

    fn install(&mut self, tokens: &SessionTokens) -> Result<(), ApiError> {
        self.generation += 1;
        self.access = match &tokens.access {
            Some(token) => Some(Bearer {
                header: header_of(token)?,
                generation: self.generation,
            }),
            None => None,
        };
        let now = SystemTime::now();
        self.obtained_at = now;
        // An expiry already past (a clock ahead of the server's, or a lifetime sent where a
        // time was expected) is no expiry at all: the token is used until it is refused,
        // rather than renewed before every call.
        self.expires_at = tokens.expires_at.filter(|at| *at > now);
        self.refresh = Some(tokens.refresh.clone());
        Ok(())
    }
}

/// `Bearer <token>` as a header value marked sensitive, so reqwest's own `Debug` hides it.
pub(crate) fn header_of(token: &Token) -> Result<HeaderValue, ApiError> {
    let mut header =
        HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
            ApiError::Config {
                reason: "the token holds characters an HTTP header cannot carry".to_owned(),
                source: None,
            }
        })?;
    header.set_sensitive(true);
    Ok(header)
}

/// The refresh call, as the session needs it from the client.
pub(crate) trait Refresher: Clone + Send + Sync + 'static {
    fn refresh<'a>(
        &'a self,
        refresh: &'a Token,
    ) -> Pin<Box<dyn Future<Output = Result<SessionTokens, ApiError>> + Send + 'a>>;
}

/// A credential's session, shared by every call of every client given it (clone the `Arc`):
/// however many wait on an expired token, one renewal renews it.
pub struct Session {
    store: Arc<dyn SessionStore>,
    /// Held by the one renewal in flight: the others wait for it, then use what it got.
    turn: tokio::sync::Mutex<()>,
    now: std::sync::Mutex<Now>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// A session renewed with `refresh`; `access`, when given, is used until it is refused or
    /// the store holds newer tokens.
    pub fn new(
        access: Option<&Token>,
        refresh: Token,
        store: Arc<dyn SessionStore>,
    ) -> Result<Arc<Self>, ApiError> {
        let access = access
            .map(|token| {
                Ok::<_, ApiError>(Bearer {
                    header: header_of(token)?,
                    generation: 0,
                })
            })
            .transpose()?;
        Ok(Arc::new(Self {
            store,
            turn: tokio::sync::Mutex::new(()),
            now: std::sync::Mutex::new(Now {
                loaded: false,
                access,
                obtained_at: SystemTime::now(),
                expires_at: None,
                refresh: Some(refresh),
                unkept: None,
                generation: 0,
                refreshed: None,
            }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Now> {
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The access token to send now, renewed first when it is about to expire.
    pub(crate) async fn bearer(self: &Arc<Self>, api: &impl Refresher) -> Result<Bearer, ApiError> {
        {
            let now = self.lock();
            if now.loaded
                && now.unkept.is_none()
                && let Some(bearer) = now.fresh(SystemTime::now())
            {
                return Ok(bearer);
            }
        }
        self.renew_apart(api, None).await
    }

    /// The token of `refused` (a renewal's generation) got a 401: a token to replay with,
    /// renewed unless another call renewed it meanwhile.
    pub(crate) async fn after_refusal(
        self: &Arc<Self>,
        api: &impl Refresher,
        refused: u64,
    ) -> Result<Bearer, ApiError> {
        {
            let now = self.lock();
            let just_renewed = now.generation == refused
                && now.refreshed == Some(refused)
                && now.obtained_at.elapsed().unwrap_or_default() < MIN_RENEWAL_AFTER_REFUSAL;
            if just_renewed {
                return Err(ApiError::Unauthorized);
            }
        }
        self.renew_apart(api, Some(refused)).await
    }

    /// Renews in a task of its own: a caller that goes away (a reconcile cancelled at
    /// shutdown, say) does not take the refresh with it between its answer and its keeping.
    async fn renew_apart(
        self: &Arc<Self>,
        api: &impl Refresher,
        refused: Option<u64>,
    ) -> Result<Bearer, ApiError> {
        let session = self.clone();
        let api = api.clone();
        let renewal = tokio::spawn(async move {
            let _turn = session.turn.lock().await;
            session.renew(&api, refused).await
        });
        renewal.await.unwrap_or_else(|_| {
            Err(ApiError::SessionStore {
                message: "the renewal of the session stopped".into(),
                permanent: false,
            })
        })
    }

    /// With the turn held: loads what the store keeps (the first time), keeps what it could
    /// not keep before, then renews unless the token is fresh and is not the one refused.
    async fn renew(&self, api: &impl Refresher, refused: Option<u64>) -> Result<Bearer, ApiError> {
        if !self.lock().loaded {
            let stored = self.store.load().await.map_err(store_error)?;
            let mut now = self.lock();
            match stored {
                Some(Stored::Tokens(tokens)) => now.install(&tokens)?,
                Some(Stored::Refused) => now.refresh = None,
                None => {}
            }
            now.loaded = true;
        }
        let unkept = self.lock().unkept.clone();
        if let Some(tokens) = unkept {
            self.store.keep(&tokens).await.map_err(store_error)?;
            self.lock().unkept = None;
        }
        // A store answering newer tokens may answer ones that expired since: renew those too,
        // a few times at most.
        for _ in 0..3 {
            let spending = {
                let now = self.lock();
                let Some(refresh) = now.refresh.clone() else {
                    return Err(refused_before());
                };
                // A renewal installs a new generation: only the refused token is renewed.
                if let Some(bearer) = now.fresh(SystemTime::now())
                    && refused != Some(bearer.generation)
                {
                    return Ok(bearer);
                }
                refresh
            };
            match self.store.claim(&spending).await.map_err(store_error)? {
                Claim::Newer(tokens) => {
                    self.lock().install(&tokens)?;
                    continue;
                }
                Claim::Refused => {
                    self.lock().refresh = None;
                    return Err(refused_before());
                }
                Claim::Spend => {}
            }
            return match api.refresh(&spending).await {
                Ok(tokens) => {
                    // The new refresh token is the only one that works from now on: kept
                    // before anything else happens. One the store cannot keep now is kept
                    // before the next renewal spends anything.
                    let kept = self.store.keep(&tokens).await;
                    let mut now = self.lock();
                    now.install(&tokens)?;
                    now.refreshed = Some(now.generation);
                    if let Err(error) = kept {
                        tracing::error!(error = %error, "could not keep the renewed session yet; trying again before the next renewal");
                        now.unkept = Some(tokens);
                    }
                    now.access.clone().ok_or_else(|| {
                        ApiError::decode("refresh_session", "the answer holds no access token")
                    })
                }
                Err(error @ ApiError::SessionRefused { .. }) => {
                    self.lock().refresh = None;
                    if let Err(store) = self.store.refused(&spending).await {
                        tracing::warn!(error = %store, "could not record the refused session");
                    }
                    Err(error)
                }
                Err(error) => Err(error),
            };
        }
        Err(ApiError::SessionStore {
            message: "the session store kept answering tokens that had expired".into(),
            permanent: false,
        })
    }
}

fn refused_before() -> ApiError {
    ApiError::SessionRefused {
        message: "refused before; waiting for a new refresh token".into(),
    }
}

fn store_error(error: StoreError) -> ApiError {
    ApiError::SessionStore {
        message: error.message,
        permanent: error.permanent,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A store in memory, counting what it was asked.
    #[derive(Default)]
    struct Memory {
        stored: Mutex<Option<Stored>>,
        claims: AtomicUsize,
        kept: Mutex<Vec<SessionTokens>>,
        refused: AtomicUsize,
    }

    impl SessionStore for Memory {
        fn load(&self) -> StoreFuture<'_, Option<Stored>> {
            Box::pin(async move { Ok(self.stored.lock().unwrap().clone()) })
        }
        fn claim<'a>(&'a self, _refresh: &'a Token) -> StoreFuture<'a, Claim> {
            Box::pin(async move {
                self.claims.fetch_add(1, Ordering::SeqCst);
                Ok(Claim::Spend)
            })
        }
        fn keep<'a>(&'a self, tokens: &'a SessionTokens) -> StoreFuture<'a, ()> {
            Box::pin(async move {
                self.kept.lock().unwrap().push(tokens.clone());
                Ok(())
            })
        }
        fn refused<'a>(&'a self, _refresh: &'a Token) -> StoreFuture<'a, ()> {
            Box::pin(async move {
                self.refused.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
    }

    /// A refresh call that answers `access-N`/`refresh-N` living `lifetime`, slowly, or
    /// refuses.
    #[derive(Clone)]
    struct Api {
        calls: Arc<AtomicUsize>,
        lifetime: Duration,
        refuse: bool,
    }

    impl Refresher for Api {
        fn refresh<'a>(
            &'a self,
            _refresh: &'a Token,
        ) -> Pin<Box<dyn Future<Output = Result<SessionTokens, ApiError>> + Send + 'a>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if self.refuse {
                    return Err(ApiError::SessionRefused {
                        message: "revoked".into(),
                    });
                }
                Ok(SessionTokens {
                    access: Some(Token::new(format!("access-{n}"))),
                    expires_at: Some(SystemTime::now() + self.lifetime),
                    refresh: Token::new(format!("refresh-{n}")),
                })
            })
        }
    }

    fn api(lifetime: Duration, refuse: bool) -> Api {
        Api {
            calls: Arc::new(AtomicUsize::new(0)),
            lifetime,
            refuse,
        }
    }

    fn shown(bearer: &Bearer) -> &str {
        bearer.header.to_str().unwrap()
    }

    #[tokio::test]
    async fn many_callers_waiting_on_a_session_share_one_refresh() {
        let store = Arc::new(Memory::default());
        let session = Session::new(None, Token::new("refresh-0"), store.clone()).unwrap();
        let api = api(Duration::from_secs(3600), false);
        let bearers = futures::future::join_all((0..50).map(|_| session.bearer(&api))).await;
        assert!(
            bearers
                .iter()
                .all(|b| shown(b.as_ref().unwrap()) == "Bearer access-1")
        );
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
        assert_eq!(store.claims.load(Ordering::SeqCst), 1);
        let kept = store.kept.lock().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].refresh, Token::new("refresh-1"));
    }

    #[tokio::test]
    async fn a_given_access_token_is_used_until_it_is_refused_then_renewed_once() {
        let store = Arc::new(Memory::default());
        let session = Session::new(
            Some(&Token::new("pasted")),
            Token::new("refresh-0"),
            store.clone(),
        )
        .unwrap();
        let api = api(Duration::from_secs(3600), false);
        let first = session.bearer(&api).await.unwrap();
        assert_eq!(shown(&first), "Bearer pasted");
        assert_eq!(api.calls.load(Ordering::SeqCst), 0);
        // Two calls refused with the same token: one renewal.
        let (a, b) = tokio::join!(
            session.after_refusal(&api, first.generation),
            session.after_refusal(&api, first.generation)
        );
        assert_eq!(shown(&a.unwrap()), "Bearer access-1");
        assert_eq!(shown(&b.unwrap()), "Bearer access-1");
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_about_to_expire_is_renewed_before_it_is_sent() {
        let store = Arc::new(Memory::default());
        let session = Session::new(None, Token::new("refresh-0"), store).unwrap();
        // Living 50 ms: its renewal margin (5 ms) is passed 45 ms after it came.
        let api = api(Duration::from_millis(50), false);
        assert_eq!(
            shown(&session.bearer(&api).await.unwrap()),
            "Bearer access-1"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            shown(&session.bearer(&api).await.unwrap()),
            "Bearer access-2"
        );
        assert_eq!(api.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_refresh_is_recorded_once_and_never_sent_again() {
        let store = Arc::new(Memory::default());
        let session = Session::new(None, Token::new("refresh-0"), store.clone()).unwrap();
        let api = api(Duration::from_secs(3600), true);
        for _ in 0..5 {
            let error = session.bearer(&api).await.unwrap_err();
            assert!(matches!(error, ApiError::SessionRefused { .. }), "{error}");
        }
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
        assert_eq!(store.refused.load(Ordering::SeqCst), 1);
    }

    /// A store whose keeping fails until told otherwise.
    #[derive(Default)]
    struct Flaky {
        inner: Memory,
        failing: std::sync::atomic::AtomicBool,
        claims: Mutex<Vec<Token>>,
    }

    impl SessionStore for Flaky {
        fn load(&self) -> StoreFuture<'_, Option<Stored>> {
            self.inner.load()
        }
        fn claim<'a>(&'a self, refresh: &'a Token) -> StoreFuture<'a, Claim> {
            self.claims.lock().unwrap().push(refresh.clone());
            self.inner.claim(refresh)
        }
        fn keep<'a>(&'a self, tokens: &'a SessionTokens) -> StoreFuture<'a, ()> {
            if self.failing.load(Ordering::SeqCst) {
                return Box::pin(async {
                    Err(StoreError {
                        message: "the API server is away".into(),
                        permanent: false,
                    })
                });
            }
            self.inner.keep(tokens)
        }
        fn refused<'a>(&'a self, refresh: &'a Token) -> StoreFuture<'a, ()> {
            self.inner.refused(refresh)
        }
    }

    #[tokio::test]
    async fn tokens_the_store_could_not_keep_are_kept_before_anything_else_is_spent() {
        let store = Arc::new(Flaky::default());
        store.failing.store(true, Ordering::SeqCst);
        let session = Session::new(None, Token::new("refresh-0"), store.clone()).unwrap();
        let api = api(Duration::from_millis(50), false);
        // Renewed, but not kept: the session goes on with it.
        assert_eq!(
            shown(&session.bearer(&api).await.unwrap()),
            "Bearer access-1"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Still failing: nothing is spent, the keeping is what fails.
        let error = session.bearer(&api).await.unwrap_err();
        assert!(matches!(error, ApiError::SessionStore { .. }), "{error}");
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(
            shown(&session.bearer(&api).await.unwrap()),
            "Bearer access-2"
        );
        let kept: Vec<Token> = store
            .inner
            .kept
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.refresh.clone())
            .collect();
        assert_eq!(kept, [Token::new("refresh-1"), Token::new("refresh-2")]);
        // Only the newest token was ever spent: refresh-0, then refresh-1.
        assert_eq!(
            *store.claims.lock().unwrap(),
            [Token::new("refresh-0"), Token::new("refresh-1")]
        );
    }

    #[tokio::test]
    async fn an_expiry_already_past_is_no_expiry_and_costs_no_refresh_per_call() {
        let store = Arc::new(Memory::default());
        let session = Session::new(None, Token::new("refresh-0"), store).unwrap();
        // Answers whose expiry is long past (a lifetime read as a time, say).
        let api = api(Duration::ZERO, false);
        for _ in 0..10 {
            session.bearer(&api).await.unwrap();
        }
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_kept_token_refused_right_after_it_was_loaded_is_renewed() {
        let store = Arc::new(Memory::default());
        *store.stored.lock().unwrap() = Some(Stored::Tokens(SessionTokens {
            access: Some(Token::new("kept-but-revoked")),
            expires_at: None,
            refresh: Token::new("kept-refresh"),
        }));
        let session = Session::new(None, Token::new("refresh-0"), store).unwrap();
        let api = api(Duration::from_secs(3600), false);
        let loaded = session.bearer(&api).await.unwrap();
        assert_eq!(shown(&loaded), "Bearer kept-but-revoked");
        let renewed = session
            .after_refusal(&api, loaded.generation)
            .await
            .unwrap();
        assert_eq!(shown(&renewed), "Bearer access-1");
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_refused_right_after_its_renewal_is_not_renewed_again() {
        let store = Arc::new(Memory::default());
        let session = Session::new(None, Token::new("refresh-0"), store).unwrap();
        let api = api(Duration::from_secs(3600), false);
        let renewed = session.bearer(&api).await.unwrap();
        let error = session
            .after_refusal(&api, renewed.generation)
            .await
            .unwrap_err();
        assert!(matches!(error, ApiError::Unauthorized), "{error}");
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn what_the_store_holds_is_used_before_anything_is_spent() {
        let store = Arc::new(Memory::default());
        *store.stored.lock().unwrap() = Some(Stored::Tokens(SessionTokens {
            access: Some(Token::new("kept-access")),
            expires_at: Some(SystemTime::now() + Duration::from_secs(600)),
            refresh: Token::new("kept-refresh"),
        }));
        let session = Session::new(
            Some(&Token::new("pasted")),
            Token::new("refresh-0"),
            store.clone(),
        )
        .unwrap();
        let api = api(Duration::from_secs(3600), false);
        assert_eq!(
            shown(&session.bearer(&api).await.unwrap()),
            "Bearer kept-access"
        );
        assert_eq!(api.calls.load(Ordering::SeqCst), 0);

        let refused = Arc::new(Memory::default());
        *refused.stored.lock().unwrap() = Some(Stored::Refused);
        let session = Session::new(None, Token::new("refresh-0"), refused).unwrap();
        assert!(matches!(
            session.bearer(&api).await,
            Err(ApiError::SessionRefused { .. })
        ));
        assert_eq!(api.calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_expiry_reads_as_seconds_or_milliseconds() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(expiry_from_number(1_800_000_000.0), Some(at(1_800_000_000)));
        assert_eq!(
            expiry_from_number(1_800_000_000_000.0),
            Some(at(1_800_000_000))
        );
        assert_eq!(expiry_from_number(-1.0), None);
        assert_eq!(expiry_from_number(f64::NAN), None);
    }

    #[test]
    fn the_renewal_margin_is_a_tenth_of_the_lifetime_up_to_a_minute() {
        assert_eq!(
            renewal_margin(Duration::from_secs(3)),
            Duration::from_millis(300)
        );
        assert_eq!(
            renewal_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }
}

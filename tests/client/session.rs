//! A client on a session: logs in, renews its access token as it expires (once for all its
//! calls), replays a call refused with 401 once, and stops at a refused refresh token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashback_client::{
    ApiError, Auth, Claim, ClientConfig, FlashbackClient, RepoFilter, Session, SessionStore,
    SessionTokens, StoreFuture, Stored, Token, Url,
};

use crate::support::emulator;

/// A store in memory that records every refresh token it was given.
#[derive(Default)]
struct Kept(Mutex<Vec<SessionTokens>>);

impl SessionStore for Kept {
    fn load(&self) -> StoreFuture<'_, Option<Stored>> {
        Box::pin(async { Ok(None) })
    }
    fn claim<'a>(&'a self, _refresh: &'a Token) -> StoreFuture<'a, Claim> {
        Box::pin(async { Ok(Claim::Spend) })
    }
    fn keep<'a>(&'a self, tokens: &'a SessionTokens) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.0.lock().unwrap().push(tokens.clone());
            Ok(())
        })
    }
    fn refused<'a>(&'a self, _refresh: &'a Token) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

fn session_client(
    base: &str,
    access: Option<&str>,
    refresh: &str,
    store: Arc<Kept>,
) -> FlashbackClient {
    let session =
        Session::new(access.map(Token::new).as_ref(), Token::new(refresh), store).unwrap();
    let auth = Auth::Session(session);
    let mut config = ClientConfig::with_auth(Url::parse(base).unwrap(), auth);
    config.rate_limit = flashback_client::RateLimit::unlimited();
    FlashbackClient::new(config).unwrap()
}

#[tokio::test]
async fn a_login_answers_a_session_whose_access_token_the_api_takes() {
    let emulator = emulator(&["org-a"]).await;
    let control = emulator.control();
    control
        .add_user("ops@example.com", "correct horse", "org-a")
        .await
        .unwrap();
    let anonymous = FlashbackClient::new(ClientConfig::with_auth(
        Url::parse(emulator.base_url()).unwrap(),
        Auth::Anonymous,
    ))
    .unwrap();
    let refused = anonymous
        .login("ops@example.com", "wrong")
        .await
        .unwrap_err();
    assert!(matches!(refused, ApiError::Unauthorized), "{refused:?}");
    let login = anonymous
        .login("ops@example.com", "correct horse")
        .await
        .unwrap();
    assert_eq!(login.user.email.as_deref(), Some("ops@example.com"));
    let access = login.tokens.access.expect("an access token");
    let client = crate::support::client(emulator.base_url(), access.expose());
    client.list_repos(&RepoFilter::default()).await.unwrap();
    assert_eq!(control.sessions().await.unwrap().logins, 1);
}

#[tokio::test]
async fn calls_on_an_expiring_session_renew_it_once_per_lifetime_whatever_their_number() {
    let emulator = emulator(&["org-a"]).await;
    let control = emulator.control();
    control
        .set_access_token_lifetime(Duration::from_millis(500))
        .await
        .unwrap();
    let session = control.open_session("org-a").await.unwrap();
    let store = Arc::new(Kept::default());
    let client = session_client(
        emulator.base_url(),
        None,
        &session.refresh_token,
        store.clone(),
    );
    let started = std::time::Instant::now();
    let all = RepoFilter::default();
    while started.elapsed() < Duration::from_secs(3) {
        let calls = (0..20).map(|_| client.list_repos(&all));
        for answer in futures::future::join_all(calls).await {
            answer.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let figures = control.sessions().await.unwrap();
    // Three seconds of 500 ms tokens renewed a tenth early: at most eight renewals (seven
    // lifetimes of 450 ms, and the first), never one per call; at least two, however slow a
    // loaded machine makes the rounds.
    assert!(
        (2..=8).contains(&figures.refreshes),
        "{} refreshes",
        figures.refreshes
    );
    assert_eq!((figures.refused, figures.reused), (0, 0));
    let kept = store.0.lock().unwrap();
    assert_eq!(
        kept.len() as u64,
        figures.refreshes,
        "every new refresh token was kept"
    );
}

#[tokio::test]
async fn a_refused_access_token_is_renewed_and_the_call_replayed_once() {
    let emulator = emulator(&["org-a"]).await;
    let control = emulator.control();
    let session = control.open_session("org-a").await.unwrap();
    let store = Arc::new(Kept::default());
    // An access token the API does not know: refused, renewed, replayed.
    let client = session_client(
        emulator.base_url(),
        Some("fbat-made-up"),
        &session.refresh_token,
        store.clone(),
    );
    client.list_repos(&RepoFilter::default()).await.unwrap();
    let calls = control.calls().await.unwrap();
    assert_eq!(
        calls.count("GET", "/repo"),
        2,
        "refused once, replayed once"
    );
    assert_eq!(calls.count("POST", "/user/refresh"), 1);

    // A revoked session: the refresh is refused, and never sent again.
    control.revoke_session(&session.token_id).await.unwrap();
    let revoked = session_client(
        emulator.base_url(),
        Some("fbat-made-up"),
        store.0.lock().unwrap()[0].refresh.expose(),
        store.clone(),
    );
    for _ in 0..3 {
        let error = revoked
            .list_repos(&RepoFilter::default())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ApiError::SessionRefused { .. }),
            "{error:?}"
        );
        assert!(
            !error.to_string().contains("fbrt-"),
            "no token in the error: {error}"
        );
    }
    let calls = control.calls().await.unwrap();
    assert_eq!(calls.count("POST", "/user/refresh"), 2);
}

#[tokio::test]
async fn a_refresh_is_sent_once_and_a_proxys_refusal_spends_nothing() {
    let emulator = emulator(&["org-a"]).await;
    let control = emulator.control();
    let session = control.open_session("org-a").await.unwrap();
    let fail = |status: u16| -> flashback_emulator::Faults {
        serde_json::from_value(serde_json::json!({"failNext": {
            "count": 1, "status": status,
            "route": {"method": "POST", "route": "/user/refresh"}
        }}))
        .unwrap()
    };
    let store = Arc::new(Kept::default());
    let client = session_client(
        emulator.base_url(),
        None,
        &session.refresh_token,
        store.clone(),
    );
    // A 503 (which a retry policy would send again for a create): sent once, handed back.
    control.set_faults(&fail(503)).await.unwrap();
    let error = client.list_repos(&RepoFilter::default()).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(
        control
            .calls()
            .await
            .unwrap()
            .count("POST", "/user/refresh"),
        1
    );
    // A proxy's 403 is not the API refusing the token: nothing recorded as refused.
    control.set_faults(&fail(403)).await.unwrap();
    let error = client.list_repos(&RepoFilter::default()).await.unwrap_err();
    assert!(
        !matches!(error, ApiError::SessionRefused { .. }),
        "{error:?}"
    );
    // The token was never spent: the next call renews with it.
    client.list_repos(&RepoFilter::default()).await.unwrap();
    let calls = control.calls().await.unwrap();
    assert_eq!(calls.count("POST", "/user/refresh"), 3);
    let figures = control.sessions().await.unwrap();
    assert_eq!(
        (figures.refreshes, figures.refused, figures.reused),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn a_token_is_taken_after_the_rate_limiter_and_a_refresh_takes_no_turn_of_it() {
    let emulator = emulator(&["org-a"]).await;
    let control = emulator.control();
    control
        .set_access_token_lifetime(Duration::from_millis(300))
        .await
        .unwrap();
    let session = control.open_session("org-a").await.unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(Kept::default());
    let session = Session::new(None, Token::new(&session.refresh_token), store).unwrap();
    let mut config = ClientConfig::with_auth(
        Url::parse(emulator.base_url()).unwrap(),
        Auth::Session(session),
    );
    // One call at once, then one every two seconds: longer than a token lives.
    config.rate_limit = flashback_client::RateLimit {
        per_second: 0.5,
        burst: 1,
    };
    let client = FlashbackClient::new(config).unwrap();
    client.list_repos(&RepoFilter::default()).await.unwrap();
    let started = std::time::Instant::now();
    client.list_repos(&RepoFilter::default()).await.unwrap();
    let took = started.elapsed();
    let calls = control.calls().await.unwrap();
    // The second call waited its turn (2 s), and only then took a token: renewed, not one
    // that expired while it waited.
    assert_eq!(calls.count("GET", "/repo"), 2, "{calls:?}");
    assert_eq!(
        calls.total, 4,
        "two listings and two refreshes, no 401: {calls:?}"
    );
    assert_eq!(calls.count("POST", "/user/refresh"), 2);
    // Had the refresh taken a turn too, the call would have waited two of them (4 s).
    assert!(took < Duration::from_millis(3500), "{took:?}");
}

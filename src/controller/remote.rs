//! The operator's view of Flashback: one API client per credential (so one rate limiter per
//! credential) and a short-lived listing of each workspace's repositories, so that one
//! `GET /repo?workspaceId=` serves every object of that workspace and credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller::answers;
use crate::controller::credentials::{Credentials, SessionOrigin};
use crate::controller::workspace::Workspace;
use flashback_client::{
    ApiError, Auth, CallObserver, ClientConfig, FlashbackClient, RateLimit, Repo, RepoFilter,
    RepoStats, RepoWrite, Session, SessionStore, Token, Url,
};

/// One session per credentials Secret, refresh token and API: every client of them shares it,
/// so two clients (the same Secret before and after an edit of its `token`, say) never both
/// spend one refresh token.
type SessionKey = (crate::controller::credentials::SecretName, Token, Url);

/// Makes the store a session of a Secret is kept in.
pub type SessionStores = Arc<dyn Fn(&SessionOrigin) -> Arc<dyn SessionStore> + Send + Sync>;

/// How API clients are built for each credential.
#[derive(Clone)]
pub struct RemoteSettings {
    /// Calls per second allowed for one credential.
    pub rate: f64,
    /// Burst allowed for one credential.
    pub burst: u32,
    /// How long one listing of a workspace serves reconciles before it is fetched again.
    pub listing_max_age: Duration,
    /// Repository ids per `GET /repo/stats` call.
    pub stats_batch_size: usize,
    /// Told about every API exchange (for metrics).
    pub observer: Option<CallObserver>,
    /// Where sessions are kept; without it, credentials with a refresh token cannot be used.
    pub sessions: Option<SessionStores>,
}

type ListingKey = (Credentials, String);

struct Listing {
    /// When the call was sent: the listing shows no change made before this instant.
    started_at: Instant,
    /// How long the fetch took, answer decoded and indexed (rate-limit wait included).
    took: Duration,
    repos: Workspace,
}

/// A listing serves at least this many times as long as it took to fetch, so that a large
/// workspace (100,000 repositories take seconds to list) spends at most a twentieth of the
/// time listing, however often its objects are reconciled...
const SERVES_PER_FETCH_TIME: u32 = 20;
/// ...but never longer than this, however slow the fetch (a server that answers slowly, or a
/// credential waiting for its rate limiter), so drift is still seen within a minute.
const SERVES_AT_MOST: Duration = Duration::from_secs(60);

impl Listing {
    /// Whether it may still serve reconciles that accept a listing `max_age` old.
    fn serves(&self, max_age: Duration) -> bool {
        let stretched = (self.took * SERVES_PER_FETCH_TIME).min(SERVES_AT_MOST);
        self.started_at.elapsed() < max_age.max(stretched)
    }
}

/// Shared by every reconcile.
pub struct Remote {
    settings: RemoteSettings,
    /// Each client with when it was last used, so that one no object uses any more goes.
    clients: Mutex<HashMap<Credentials, (FlashbackClient, Instant)>>,
    /// The live sessions: held by the clients, forgotten with the last of them.
    sessions: Mutex<HashMap<SessionKey, std::sync::Weak<Session>>>,
    // One async lock per workspace: concurrent reconciles of the same workspace wait for the
    // one listing in flight instead of sending their own.
    listings: Mutex<HashMap<ListingKey, Arc<tokio::sync::Mutex<Option<Listing>>>>>,
}

impl Remote {
    pub fn new(settings: RemoteSettings) -> Self {
        Self {
            settings,
            clients: Mutex::default(),
            sessions: Mutex::default(),
            listings: Mutex::default(),
        }
    }

    /// The client of `credentials`, for calls the remote view does not cache (keys).
    pub fn client_for(&self, credentials: &Credentials) -> Result<FlashbackClient, ApiError> {
        self.client(credentials)
    }

    fn client(&self, credentials: &Credentials) -> Result<FlashbackClient, ApiError> {
        let mut clients = self.clients.lock().expect("client map lock");
        if let Some((client, used)) = clients.get_mut(credentials) {
            *used = Instant::now();
            return Ok(client.clone());
        }
        let auth = match (&credentials.session, &credentials.token) {
            // Sessions are off: an access token beside the refresh token is used as it is.
            (Some(_), Some(token)) if self.settings.sessions.is_none() => {
                Auth::Token(token.clone())
            }
            (Some(origin), access) => {
                let stores = self
                    .settings
                    .sessions
                    .as_ref()
                    .ok_or_else(|| ApiError::Config {
                        reason: "the Secret holds only a refreshToken, and this operator keeps \
                                 no sessions (--sessions=false): put an access token in \
                                 `token`, or install the operator with sessions.enabled"
                            .into(),
                        source: None,
                    })?;
                let key = (
                    origin.secret.clone(),
                    origin.refresh_token.clone(),
                    credentials.api_url.clone(),
                );
                let mut sessions = self.sessions.lock().expect("session map lock");
                sessions.retain(|_, session| session.strong_count() > 0);
                let session = match sessions.get(&key).and_then(std::sync::Weak::upgrade) {
                    Some(session) => session,
                    None => {
                        let session = Session::new(
                            access.as_ref(),
                            origin.refresh_token.clone(),
                            stores(origin),
                        )?;
                        sessions.insert(key, std::sync::Arc::downgrade(&session));
                        session
                    }
                };
                Auth::Session(session)
            }
            (None, Some(token)) => Auth::Token(token.clone()),
            (None, None) => {
                return Err(ApiError::Config {
                    reason: "the credentials hold no token".into(),
                    source: None,
                });
            }
        };
        let mut config = ClientConfig::with_auth(credentials.api_url.clone(), auth);
        config.rate_limit = RateLimit {
            per_second: self.settings.rate,
            burst: self.settings.burst,
        };
        config.stats_batch_size = self.settings.stats_batch_size.max(1);
        config.observer = self.settings.observer.clone();
        let client = FlashbackClient::new(config)?;
        clients.insert(credentials.clone(), (client.clone(), Instant::now()));
        Ok(client)
    }

    /// Forgets what no reconcile needs any more: clients unused for `idle`, and listings too
    /// old to serve anyone. Returns how many (clients, listings) are left.
    pub fn forget_unused(&self, idle: Duration) -> (usize, usize) {
        let clients = {
            let mut clients = self.clients.lock().expect("client map lock");
            clients.retain(|_, (_, used)| used.elapsed() < idle);
            clients.len()
        };
        (clients, self.forget_stale_listings())
    }

    /// Drops the listings too old to serve anyone; returns how many are left. Called after
    /// every fetch too, so that listings of many workspaces never pile up between passes.
    fn forget_stale_listings(&self) -> usize {
        let mut listings = self.listings.lock().expect("listing map lock");
        listings.retain(|_, slot| match slot.try_lock() {
            Ok(listing) => listing
                .as_ref()
                .is_some_and(|l| l.serves(self.settings.listing_max_age)),
            // In use right now.
            Err(_) => true,
        });
        listings.len()
    }

    fn listing_slot(&self, key: &ListingKey) -> Arc<tokio::sync::Mutex<Option<Listing>>> {
        self.listings
            .lock()
            .expect("listing map lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Every repository of a workspace, from a listing at most `listing_max_age` old (or
    /// twenty times as long as it took to fetch, when that is longer, up to a minute), or,
    /// when `fetched_after` is given (a person asked for a fresh look), from one started after it.
    pub async fn repos(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        fetched_after: Option<Instant>,
    ) -> Result<Workspace, ApiError> {
        let slot = self.listing_slot(&(credentials.clone(), workspace_id.to_string()));
        let mut listing = slot.lock().await;
        let usable = |l: &&Listing| match fetched_after {
            Some(after) => l.started_at >= after,
            None => l.serves(self.settings.listing_max_age),
        };
        if let Some(fresh) = listing.as_ref().filter(usable) {
            return Ok(fresh.repos.clone());
        }
        let started_at = Instant::now();
        let filter = RepoFilter {
            workspace_id: Some(workspace_id.to_string()),
            repo_id: None,
        };
        let mut listed = self.client(credentials)?.list_repos(&filter).await?;
        // An id the operator would not write anywhere is nobody's to match.
        listed.retain(|repo| answers::plausible_id(&repo.id));
        let repos = Workspace::listed(listed);
        *listing = Some(Listing {
            started_at,
            took: started_at.elapsed(),
            repos: repos.clone(),
        });
        drop(listing);
        self.forget_stale_listings();
        Ok(repos)
    }

    /// Brings the cached listing of a workspace in line with a write: a success is applied
    /// to it, so the next reconciles see it without listing again (a create burst shares one
    /// listing too); a failure drops it, since the outcome is unknown.
    async fn settle<T>(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        result: Result<T, ApiError>,
        change: impl FnOnce(&T, &mut Workspace),
    ) -> Result<T, ApiError> {
        let key = (credentials.clone(), workspace_id.to_string());
        match &result {
            Ok(value) => {
                let slot = self.listing_slot(&key);
                let mut listing = slot.lock().await;
                if let Some(listing) = listing.as_mut() {
                    change(value, &mut listing.repos);
                }
            }
            Err(_) => {
                self.listings.lock().expect("listing map lock").remove(&key);
            }
        }
        result
    }

    /// Creates a repository and returns the id the API answered. The id is not taken into
    /// the cached listing: only [`Remote::confirm`] puts it there.
    pub async fn create(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        repo: &RepoWrite,
    ) -> Result<String, ApiError> {
        let result = self.client(credentials)?.create_repo(repo).await;
        self.settle(credentials, workspace_id, result, |_, _| {})
            .await
    }

    /// The repository `repo_id` as a listing of the workspace with `credentials` shows it, if
    /// it does: what confirms a create's answer (one small call, `GET /repo?repoId=`). Found,
    /// it joins the cached listing, so the next reconciles see it without listing again.
    pub async fn confirm(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        repo_id: &str,
    ) -> Result<Option<Repo>, ApiError> {
        let filter = RepoFilter {
            workspace_id: Some(workspace_id.to_string()),
            repo_id: Some(repo_id.to_string()),
        };
        let result = self
            .client(credentials)?
            .list_repos(&filter)
            .await
            .map(|listed| {
                listed.into_iter().find(|repo| {
                    repo.id == repo_id
                        && answers::plausible_id(&repo.id)
                        && repo
                            .workspace_id
                            .as_deref()
                            .is_none_or(|listed_in| listed_in == workspace_id)
                })
            });
        self.settle(credentials, workspace_id, result, |found, repos| {
            if let Some(repo) = found {
                repos.record(&repo.id, Some(repo.clone()));
            }
        })
        .await
    }

    pub async fn update(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        repo_id: &str,
        repo: &RepoWrite,
    ) -> Result<(), ApiError> {
        let result = self.client(credentials)?.update_repo(repo_id, repo).await;
        self.settle(credentials, workspace_id, result, |(), repos| {
            repos.record(repo_id, Some(repo.as_listed(repo_id)));
        })
        .await
    }

    /// Deletes a remote repository; one that is already gone counts as deleted.
    pub async fn delete(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        repo_id: &str,
    ) -> Result<(), ApiError> {
        let result = match self.client(credentials)?.delete_repo(repo_id).await {
            Err(ApiError::NotFound { .. }) => Ok(()),
            other => other,
        };
        self.settle(credentials, workspace_id, result, |(), repos| {
            repos.record(repo_id, None)
        })
        .await
    }

    /// Usage figures of the given repositories, in batched calls.
    pub async fn stats(
        &self,
        credentials: &Credentials,
        repo_ids: &[String],
    ) -> Result<Vec<RepoStats>, ApiError> {
        self.client(credentials)?.repo_stats(repo_ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flashback_client::{BucketWrite, RepoBucketWrite, RepoMode, StorageType, Token};
    use flashback_emulator::{EmulatorConfig, RunningEmulator};

    const TOKEN: &str = "remote-test-token";

    async fn setup() -> (RunningEmulator, Remote, Credentials, String) {
        let emulator = RunningEmulator::start(EmulatorConfig {
            tokens: vec![TOKEN.into()],
            state_file: None,
            ..Default::default()
        })
        .await
        .unwrap();
        let credentials = Credentials {
            api_url: emulator.base_url().parse().unwrap(),
            token: Some(Token::new(TOKEN)),
            session: None,
        };
        let remote = Remote::new(RemoteSettings {
            rate: 1000.0,
            burst: 1000,
            listing_max_age: Duration::from_secs(60),
            stats_batch_size: 50,
            observer: None,
            sessions: None,
        });
        let bucket = remote
            .client(&credentials)
            .unwrap()
            .create_bucket(&BucketWrite {
                name: "b".into(),
                bucket: "b".into(),
                storage_type: StorageType::S3,
                key: "k".into(),
                secret: "s".into(),
                region: None,
                endpoint: None,
                workspace_id: "ws".into(),
            })
            .await
            .unwrap();
        (emulator, remote, credentials, bucket)
    }

    fn body(name: &str, bucket: &str) -> RepoWrite {
        RepoWrite {
            name: name.into(),
            storage_type: StorageType::S3,
            mode: RepoMode::Backup,
            workspace_id: Some("ws".into()),
            repo_buckets: vec![RepoBucketWrite {
                bucket_id: bucket.into(),
                folder: Some("f".into()),
                master: false,
            }],
            repo_ai_llms: Vec::new(),
        }
    }

    #[tokio::test]
    async fn one_listing_serves_a_workspace_and_sees_the_operators_own_writes() {
        let (emulator, remote, credentials, bucket) = setup().await;
        assert!(
            remote
                .repos(&credentials, "ws", None)
                .await
                .unwrap()
                .is_empty()
        );
        let first = remote
            .create(&credentials, "ws", &body("one", &bucket))
            .await
            .unwrap();
        let second = remote
            .create(&credentials, "ws", &body("two", &bucket))
            .await
            .unwrap();
        assert_eq!(
            remote.repos(&credentials, "ws", None).await.unwrap().len(),
            0,
            "an answered id is not taken before a listing confirms it"
        );
        for id in [&first, &second] {
            let confirmed = remote.confirm(&credentials, "ws", id).await.unwrap();
            assert_eq!(confirmed.map(|r| r.id).as_ref(), Some(id));
        }
        assert_eq!(
            remote
                .confirm(&credentials, "other-ws", &first)
                .await
                .unwrap(),
            None,
            "not in another workspace"
        );
        let mut changed = body("one", &bucket);
        changed.mode = RepoMode::Normal;
        remote
            .update(&credentials, "ws", &first, &changed)
            .await
            .unwrap();

        let seen = remote.repos(&credentials, "ws", None).await.unwrap();
        let mut names: Vec<_> = seen
            .iter()
            .map(|r| (r.name.as_str(), r.mode.clone()))
            .collect();
        names.sort_by_key(|(name, _)| *name);
        assert_eq!(
            names,
            [("one", RepoMode::Normal), ("two", RepoMode::Backup)]
        );
        remote.delete(&credentials, "ws", &first).await.unwrap();
        assert_eq!(
            remote.repos(&credentials, "ws", None).await.unwrap().len(),
            1
        );

        let calls = emulator.control().calls().await.unwrap();
        assert_eq!(
            calls.count("GET", "/repo"),
            4,
            "one listing served every look, besides one small confirming call per create and \
             the look in another workspace: {calls:?}"
        );
        // What the cache says is what the API says.
        let listed = remote
            .client(&credentials)
            .unwrap()
            .list_repos(&RepoFilter::workspace("ws"))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "two");
    }

    #[tokio::test]
    async fn a_reconcile_request_is_served_by_a_listing_from_after_it() {
        let (emulator, remote, credentials, _) = setup().await;
        remote.repos(&credentials, "ws", None).await.unwrap();
        remote.repos(&credentials, "ws", None).await.unwrap();
        remote
            .repos(&credentials, "ws", Some(Instant::now()))
            .await
            .unwrap();
        let calls = emulator.control().calls().await.unwrap();
        assert_eq!(calls.count("GET", "/repo"), 2);
    }

    #[tokio::test]
    async fn clients_and_listings_nobody_uses_are_forgotten() {
        let (_emulator, remote, credentials, _) = setup().await;
        remote.repos(&credentials, "ws", None).await.unwrap();
        assert_eq!(remote.forget_unused(Duration::from_secs(60)), (1, 1));
        // The listing is fresh for a minute in this setup; forgetting with no idle time
        // drops the client but keeps a listing that can still serve.
        assert_eq!(remote.forget_unused(Duration::ZERO), (0, 1));
        let short = Remote::new(RemoteSettings {
            listing_max_age: Duration::ZERO,
            ..remote.settings.clone()
        });
        short.repos(&credentials, "ws", None).await.unwrap();
        // It still serves for twenty times the few milliseconds it took, then goes.
        let started = Instant::now();
        while short.forget_unused(Duration::ZERO) != (0, 0) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never forgotten"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn a_listing_that_took_long_serves_twenty_times_as_long() {
        let listed = |ago: u64, took_ms: u64| Listing {
            started_at: Instant::now() - Duration::from_secs(ago),
            took: Duration::from_millis(took_ms),
            repos: Workspace::default(),
        };
        let max_age = Duration::from_secs(5);
        assert!(listed(4, 10).serves(max_age));
        assert!(!listed(6, 10).serves(max_age));
        // 1.5 s to fetch: serves 30 s.
        assert!(listed(29, 1500).serves(max_age));
        assert!(!listed(31, 1500).serves(max_age));
        // 10 s to fetch: a minute, not 200 s.
        assert!(listed(59, 10_000).serves(max_age));
        assert!(!listed(61, 10_000).serves(max_age));
    }

    #[tokio::test]
    async fn a_failed_write_drops_the_listing() {
        let (emulator, remote, credentials, _) = setup().await;
        remote.repos(&credentials, "ws", None).await.unwrap();
        let refused = remote
            .create(&credentials, "ws", &body("bad", "no-such-bucket"))
            .await;
        assert!(
            matches!(refused, Err(ApiError::NotFound { .. })),
            "{refused:?}"
        );
        remote.repos(&credentials, "ws", None).await.unwrap();
        let calls = emulator.control().calls().await.unwrap();
        assert_eq!(
            calls.count("GET", "/repo"),
            2,
            "the outcome was unknown, so it listed again"
        );
    }
}

#[cfg(test)]
mod session_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::controller::credentials::SecretName;
    use flashback_client::{Claim, SessionTokens, StoreFuture, Stored};

    /// A store that holds nothing: only how many were made is of interest.
    struct Nothing;

    impl SessionStore for Nothing {
        fn load(&self) -> StoreFuture<'_, Option<Stored>> {
            Box::pin(async { Ok(None) })
        }
        fn claim<'a>(&'a self, _: &'a Token) -> StoreFuture<'a, Claim> {
            Box::pin(async { Ok(Claim::Spend) })
        }
        fn keep<'a>(&'a self, _: &'a SessionTokens) -> StoreFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
        fn refused<'a>(&'a self, _: &'a Token) -> StoreFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
    }

    fn session_of(secret: &str, refresh: &str, token: Option<&str>) -> Credentials {
        Credentials {
            api_url: Url::parse("http://127.0.0.1:9/").unwrap(),
            token: token.map(Token::new),
            session: Some(SessionOrigin {
                secret: secret.parse::<SecretName>().unwrap(),
                refresh_token: Token::new(refresh),
            }),
        }
    }

    #[test]
    fn every_client_of_one_secrets_refresh_token_shares_one_session() {
        let made = Arc::new(AtomicUsize::new(0));
        let counted = made.clone();
        let remote = Remote::new(RemoteSettings {
            rate: 10.0,
            burst: 10,
            listing_max_age: Duration::from_secs(5),
            stats_batch_size: 100,
            observer: None,
            sessions: Some(Arc::new(move |_: &SessionOrigin| {
                counted.fetch_add(1, Ordering::SeqCst);
                Arc::new(Nothing) as Arc<dyn SessionStore>
            })),
        });
        // The Secret before and after an edit of its `token`: two clients, one session.
        let before = remote
            .client(&session_of("team-a/creds", "r0", None))
            .unwrap();
        let after = remote
            .client(&session_of("team-a/creds", "r0", Some("pasted")))
            .unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 1);
        // Another refresh token, or another Secret: a session of its own.
        let replaced = remote
            .client(&session_of("team-a/creds", "r1", None))
            .unwrap();
        let other = remote
            .client(&session_of("team-b/creds", "r0", None))
            .unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 3);
        // Forgotten with the last client holding it.
        drop((before, after, replaced, other));
        remote.forget_unused(Duration::ZERO);
        remote
            .client(&session_of("team-a/creds", "r0", None))
            .unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 4);
    }
}

//! The HTTP client: one method per API call, with auth, rate limit and retries around each.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::decode::{Decoder, RepoListing, Whole, refused};
use super::error::{ApiError, judge_response, parse_retry_after};
use super::listing::{ListingLimits, Refusal};
use super::rate_limit::{RateLimit, RateLimiter};
use super::retry::{Decision, RetryPolicy};
use super::secret::Token;
use super::session::{
    Auth, Bearer, Refresher, Session, SessionTokens, expiry_from_number, header_of,
};
use super::types::{
    Bucket, BucketIdBody, BucketStats, BucketWrite, BucketsBody, CreatedRepoKey, Ignored,
    LoginRequest, LoginUser, RefreshRequest, Repo, RepoFilter, RepoIdBody, RepoKey, RepoKeyCreate,
    RepoKeyWrite, RepoKeysBody, RepoStats, RepoWrite, SessionBody, StatsBody,
};
use super::workspace::{Workspace, WorkspacesBody};

/// The most bytes of one listed repository, and of a listing's envelope (all but its
/// entries), each held while it is read: a repository of the API is a few hundred bytes, one
/// with dozens of buckets a few kilobytes.
const MAX_LISTED_ENTRY_BYTES: usize = 64 << 10;

/// The base URL of the reference's samples.
pub const DEFAULT_BASE_URL: &str = "https://backend.flashback.tech";

/// One HTTP exchange, reported to [`ClientConfig::observer`] (for metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The client method, e.g. `"list_repos"`.
    pub endpoint: &'static str,
    /// `None` when no HTTP answer came back (connection failure, timeout).
    pub status: Option<u16>,
    /// Time on the wire, rate-limit wait excluded.
    pub duration: Duration,
    /// Time spent waiting for the rate limiter before sending.
    pub rate_limit_wait: Duration,
}

/// Called once per HTTP exchange, retries included.
pub type CallObserver = Arc<dyn Fn(&CallRecord) + Send + Sync>;

/// How to reach and treat the API.
#[derive(Clone)]
pub struct ClientConfig {
    pub base_url: Url,
    pub auth: Auth,
    /// Whole-request timeout of one attempt that writes (POST, PUT, DELETE).
    pub timeout: Duration,
    /// Whole-request timeout of one attempt that reads (GET): shorter, since a read is
    /// cheap to try again and a server that never answers should not hold its caller long.
    pub read_timeout: Duration,
    /// The most bytes of one answer the client reads; a longer one is
    /// [`ApiError::ResponseTooLarge`]. Listings of repositories are read as they stream and
    /// bounded by [`ClientConfig::max_listing_bytes`] and [`ClientConfig::max_listed`] instead.
    pub max_response_bytes: usize,
    /// The most bytes of one listing of repositories (`GET /repo`) the client reads. Its
    /// entries are decoded as they arrive, so these bytes are never held.
    pub max_listing_bytes: usize,
    /// The most repositories one listing may hold.
    pub max_listed: usize,
    /// The most bytes one listing's repositories may hold once decoded (about: each one's
    /// size and what it owns). A repository of the API takes a few hundred.
    pub max_listing_held: usize,
    pub retry: RetryPolicy,
    pub rate_limit: RateLimit,
    /// Repo or bucket ids per `GET .../stats` call.
    pub stats_batch_size: usize,
    pub observer: Option<CallObserver>,
}

impl ClientConfig {
    /// Defaults: 30 s timeout for writes and 10 s for reads, answers of at most 16 MiB
    /// (listings of repositories: 128 MiB read, 150,000 repositories holding at most 64 MiB
    /// decoded, 64 KiB for one), 4 attempts with 200 ms→10 s backoff, 10 calls/s with bursts
    /// of 20, stats in batches of 100.
    pub fn new(base_url: Url, token: Token) -> Self {
        Self::with_auth(base_url, Auth::Token(token))
    }

    /// The same defaults, authenticating with `auth` (a session, say).
    pub fn with_auth(base_url: Url, auth: Auth) -> Self {
        Self {
            base_url,
            auth,
            timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            max_response_bytes: 16 << 20,
            max_listing_bytes: 128 << 20,
            max_listed: 150_000,
            max_listing_held: 64 << 20,
            retry: RetryPolicy::default(),
            rate_limit: RateLimit::default(),
            stats_batch_size: 100,
            observer: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_listing_bytes", &self.max_listing_bytes)
            .field("max_listed", &self.max_listed)
            .field("max_listing_held", &self.max_listing_held)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .field("stats_batch_size", &self.stats_batch_size)
            .field("observer", &self.observer.as_ref().map(|_| "set"))
            .finish()
    }
}

/// A Flashback API client for one credential. Clones share the connection pool and the rate
/// limiter.
#[derive(Clone)]
pub struct FlashbackClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    auth: Authorization,
    retry: RetryPolicy,
    limiter: RateLimiter,
    read_timeout: Duration,
    max_response_bytes: usize,
    listing_limits: ListingLimits,
    stats_batch_size: usize,
    observer: Option<CallObserver>,
}

/// What a client sends as `Authorization`.
enum Authorization {
    /// `Bearer <token>`, marked sensitive so reqwest's own `Debug` hides it.
    Static(HeaderValue),
    /// A session's current access token, renewed as it expires.
    Session(std::sync::Arc<Session>),
    /// Nothing (a client that only logs in).
    Anonymous,
}

/// Whether a call sends the client's token: the session calls themselves do not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Authorize {
    Yes,
    No,
}

impl fmt::Debug for FlashbackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlashbackClient")
            .field("base_url", &self.inner.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl FlashbackClient {
    pub fn new(config: ClientConfig) -> Result<Self, ApiError> {
        let config_error = |reason: &str| ApiError::Config {
            reason: reason.to_owned(),
            source: None,
        };
        if !matches!(config.base_url.scheme(), "http" | "https")
            || config.base_url.cannot_be_a_base()
        {
            return Err(config_error("the base URL must be an http(s) URL"));
        }
        // The token is the only credential sent: a user name or password in the URL would
        // add a second Authorization header, and the server would blame the token.
        if !config.base_url.username().is_empty() || config.base_url.password().is_some() {
            return Err(config_error(
                "the base URL must not carry a user name or password",
            ));
        }
        let auth = match config.auth {
            Auth::Token(token) => Authorization::Static(header_of(&token)?),
            Auth::Session(session) => Authorization::Session(session),
            Auth::Anonymous => Authorization::Anonymous,
        };
        // Redirects are never followed: a server could send the token, and writes, to an
        // address the operator was never allowed to call. A 3xx is an error like any other.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("flashback-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ApiError::Config {
                reason: "could not build the HTTP client".to_owned(),
                source: Some(source),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url: config.base_url,
                auth,
                retry: config.retry,
                limiter: RateLimiter::new(config.rate_limit),
                read_timeout: config.read_timeout.min(config.timeout),
                max_response_bytes: config.max_response_bytes,
                listing_limits: ListingLimits {
                    bytes: config.max_listing_bytes,
                    entries: config.max_listed,
                    entry_bytes: MAX_LISTED_ENTRY_BYTES.min(config.max_response_bytes),
                    held: config.max_listing_held,
                },
                stats_batch_size: config.stats_batch_size.max(1),
                observer: config.observer,
            }),
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// `GET /repo`, optionally filtered by workspace and/or repo id. The answer is decoded as
    /// it streams (see [`ClientConfig::max_listed`]).
    pub async fn list_repos(&self, filter: &RepoFilter) -> Result<Vec<Repo>, ApiError> {
        let mut query = Vec::new();
        if let Some(workspace_id) = &filter.workspace_id {
            query.push(("workspaceId", encode(workspace_id)));
        }
        if let Some(repo_id) = &filter.repo_id {
            query.push(("repoId", encode(repo_id)));
        }
        let url = self.url(&["repo"], &query);
        self.exchange(
            "list_repos",
            Method::GET,
            url,
            None::<&()>,
            Authorize::Yes,
            RepoListing::new(self.inner.listing_limits),
        )
        .await
    }

    /// `POST /repo`; returns the new repo's id.
    ///
    /// Not retried after a timeout or a 5xx other than 503 (see [`RetryPolicy`]): look the repo
    /// up by name before calling again.
    pub async fn create_repo(&self, repo: &RepoWrite) -> Result<String, ApiError> {
        let url = self.url(&["repo"], &[]);
        let body: RepoIdBody = self
            .call("create_repo", Method::POST, url, Some(repo))
            .await?;
        Ok(body.repo_id)
    }

    /// `PUT /repo/{id}`: replaces the whole repo.
    pub async fn update_repo(&self, repo_id: &str, repo: &RepoWrite) -> Result<(), ApiError> {
        let url = self.url(&["repo", repo_id], &[]);
        let _: Ignored = self
            .call("update_repo", Method::PUT, url, Some(repo))
            .await?;
        Ok(())
    }

    /// `DELETE /repo/{id}`. A repo that is already gone is [`ApiError::NotFound`]: the caller
    /// decides whether that counts as done.
    pub async fn delete_repo(&self, repo_id: &str) -> Result<(), ApiError> {
        let url = self.url(&["repo", repo_id], &[]);
        let _: Ignored = self
            .call("delete_repo", Method::DELETE, url, None::<&()>)
            .await?;
        Ok(())
    }

    /// `GET /repo/stats?repoId=a,b,...`, in batches of `stats_batch_size`. Ids the server does
    /// not report are simply absent from the result; no ids means no call.
    pub async fn repo_stats(&self, repo_ids: &[String]) -> Result<Vec<RepoStats>, ApiError> {
        const ENDPOINT: &str = "repo_stats";
        let mut all = Vec::with_capacity(repo_ids.len());
        for batch in repo_ids.chunks(self.inner.stats_batch_size) {
            let url = self.url(&["repo", "stats"], &[("repoId", encode_list(batch))]);
            let body: StatsBody = self.call(ENDPOINT, Method::GET, url, None::<&()>).await?;
            // Only what was asked for: a server cannot make the answer grow with its own.
            for entry in body.stats {
                let entry = entry.into_repo_stats(ENDPOINT)?;
                if batch.contains(&entry.repo_id) {
                    all.push(entry);
                }
            }
        }
        Ok(all)
    }

    /// `GET /repo/{repoId}/apikey`: the repo's access keys, without their secrets.
    pub async fn list_repo_keys(&self, repo_id: &str) -> Result<Vec<RepoKey>, ApiError> {
        let url = self.url(&["repo", repo_id, "apikey"], &[]);
        let body: RepoKeysBody = self
            .call("list_repo_keys", Method::GET, url, None::<&()>)
            .await?;
        Ok(body.keys)
    }

    /// `POST /repo/{repoId}/apikey`: a new access key, with its plain secret (the only answer
    /// that carries it).
    ///
    /// Retried like [`Self::create_repo`], only when the server certainly did not act. After a
    /// timeout or a 5xx the key may exist with a secret nobody will ever see again: look it up
    /// by name with [`Self::list_repo_keys`] and delete it before creating another.
    pub async fn create_repo_key(
        &self,
        repo_id: &str,
        key: &RepoKeyWrite,
    ) -> Result<CreatedRepoKey, ApiError> {
        let url = self.url(&["repo", repo_id, "apikey"], &[]);
        let body = RepoKeyCreate { repo_id, key };
        self.call("create_repo_key", Method::POST, url, Some(&body))
            .await
    }

    /// `PUT /repo/{repoId}/apikey/{keyId}`: renames the key and sets what it may do. The
    /// access key id and the secret stay.
    pub async fn update_repo_key(
        &self,
        repo_id: &str,
        key_id: &str,
        key: &RepoKeyWrite,
    ) -> Result<(), ApiError> {
        let url = self.url(&["repo", repo_id, "apikey", key_id], &[]);
        let _: Ignored = self
            .call("update_repo_key", Method::PUT, url, Some(key))
            .await?;
        Ok(())
    }

    /// `DELETE /repo/{repoId}/apikey/{keyId}`. A key (or repo) that is already gone is
    /// [`ApiError::NotFound`], as with [`Self::delete_repo`].
    pub async fn delete_repo_key(&self, repo_id: &str, key_id: &str) -> Result<(), ApiError> {
        let url = self.url(&["repo", repo_id, "apikey", key_id], &[]);
        let _: Ignored = self
            .call("delete_repo_key", Method::DELETE, url, None::<&()>)
            .await?;
        Ok(())
    }

    /// `GET /bucket`, optionally filtered by workspace.
    pub async fn list_buckets(&self, workspace_id: Option<&str>) -> Result<Vec<Bucket>, ApiError> {
        let query: Vec<_> = workspace_id
            .map(|id| ("workspaceId", encode(id)))
            .into_iter()
            .collect();
        let url = self.url(&["bucket"], &query);
        let body: BucketsBody = self
            .call("list_buckets", Method::GET, url, None::<&()>)
            .await?;
        Ok(body.buckets)
    }

    /// `POST /bucket`; returns the new bucket's id. Retried like [`Self::create_repo`].
    ///
    /// A 429 without `Retry-After` comes back at once as [`ApiError::RateLimited`] with no
    /// wait: the API refuses a register over the bucket quota so, and retrying does not help.
    pub async fn create_bucket(&self, bucket: &BucketWrite) -> Result<String, ApiError> {
        let url = self.url(&["bucket"], &[]);
        let body: BucketIdBody = self
            .call("create_bucket", Method::POST, url, Some(bucket))
            .await?;
        Ok(body.bucket_id)
    }

    /// `PUT /bucket/{id}`: replaces the bucket with `bucket`, cloud credentials included (the
    /// API checks them again).
    pub async fn update_bucket(
        &self,
        bucket_id: &str,
        bucket: &BucketWrite,
    ) -> Result<(), ApiError> {
        let url = self.url(&["bucket", bucket_id], &[]);
        let _: Ignored = self
            .call("update_bucket", Method::PUT, url, Some(bucket))
            .await?;
        Ok(())
    }

    /// `DELETE /bucket/{id}`.
    pub async fn delete_bucket(&self, bucket_id: &str) -> Result<(), ApiError> {
        let url = self.url(&["bucket", bucket_id], &[]);
        let _: Ignored = self
            .call("delete_bucket", Method::DELETE, url, None::<&()>)
            .await?;
        Ok(())
    }

    /// `GET /bucket/stats?bucketId=a,b,...`, in batches of `stats_batch_size`.
    pub async fn bucket_stats(&self, bucket_ids: &[String]) -> Result<Vec<BucketStats>, ApiError> {
        const ENDPOINT: &str = "bucket_stats";
        let mut all = Vec::with_capacity(bucket_ids.len());
        for batch in bucket_ids.chunks(self.inner.stats_batch_size) {
            let url = self.url(&["bucket", "stats"], &[("bucketId", encode_list(batch))]);
            let body: StatsBody = self.call(ENDPOINT, Method::GET, url, None::<&()>).await?;
            for entry in body.stats {
                let entry = entry.into_bucket_stats(ENDPOINT)?;
                if batch.contains(&entry.bucket_id) {
                    all.push(entry);
                }
            }
        }
        Ok(all)
    }

    /// `GET /workspace`: the workspaces of the token's organisation.
    pub async fn list_workspaces(&self) -> Result<Vec<Workspace>, ApiError> {
        let url = self.url(&["workspace"], &[]);
        let body: WorkspacesBody = self
            .call("list_workspaces", Method::GET, url, None::<&()>)
            .await?;
        Ok(body.workspaces)
    }

    /// The base URL with `segments` appended (each percent-encoded as a path segment) and the
    /// already-encoded `query`.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.inner.base_url.clone();
        url.path_segments_mut()
            .expect("checked in FlashbackClient::new: the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            url.set_query(Some(&query.join("&")));
        }
        url
    }

    /// `POST /user/login`: a new session for a person's email and password. Sends no token.
    /// An account that needs a second factor is refused with the API's error code.
    pub async fn login(&self, email: &str, password: &str) -> Result<Login, ApiError> {
        let url = self.url(&["user", "login"], &[]);
        let request = LoginRequest { email, password };
        let body: SessionBody = self
            .exchange(
                "login",
                Method::POST,
                url,
                Some(&request),
                Authorize::No,
                self.whole(),
            )
            .await?;
        let user = body.user.clone().unwrap_or_default();
        Ok(Login {
            tokens: session_tokens("login", body)?,
            user,
        })
    }

    /// `POST /user/refresh`: spends `refresh` for a new access token and a new refresh token.
    /// Sent once, never retried (a second send of a token the server spent is a reuse), and
    /// without waiting for the rate limiter (a claim on the token is held meanwhile). A
    /// refusal (the token revoked, expired or spent) is [`ApiError::SessionRefused`]; any
    /// other failure is returned as it is.
    pub async fn refresh_session(&self, refresh: &Token) -> Result<SessionTokens, ApiError> {
        let url = self.url(&["user", "refresh"], &[]);
        let request = RefreshRequest {
            refresh_token: refresh.expose(),
        };
        let answer: Result<SessionBody, ApiError> = self
            .exchange(
                "refresh_session",
                Method::POST,
                url,
                Some(&request),
                Authorize::No,
                self.whole(),
            )
            .await;
        match answer {
            Ok(body) => session_tokens("refresh_session", body),
            Err(error) => Err(refresh_refusal(error, refresh)),
        }
    }

    /// The token to send now, or none.
    async fn bearer(&self) -> Result<Option<Bearer>, ApiError> {
        match &self.inner.auth {
            Authorization::Static(header) => Ok(Some(Bearer {
                header: header.clone(),
                generation: 0,
            })),
            Authorization::Session(session) => session.bearer(self).await.map(Some),
            Authorization::Anonymous => Ok(None),
        }
    }

    /// Sends one call with the client's token, retrying as the policy allows.
    async fn call<T, B>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, ApiError>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        self.exchange(endpoint, method, url, body, Authorize::Yes, self.whole())
            .await
    }

    /// Sends one call, retrying as the policy allows. A session's token refused with 401 is
    /// renewed (once for every call that saw it refused) and the call replayed once.
    async fn exchange<D, B>(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Url,
        body: Option<&B>,
        authorize: Authorize,
        decoder: D,
    ) -> Result<D::Output, ApiError>
    where
        D: Decoder,
        B: Serialize + ?Sized,
    {
        let body = body.map(serde_json::to_vec).transpose().map_err(|source| {
            ApiError::decode_with(endpoint, "could not encode the request", source)
        })?;
        let idempotent = method != Method::POST;
        let mut attempt = 0;
        let mut replayed = false;
        loop {
            attempt += 1;
            // A session call is as cheap as a read, and a claim on the refresh token it
            // spends is held as long as it takes: it gets the read timeout, no wait for the
            // rate limiter, and no retry.
            let session_call = authorize == Authorize::No;
            // The rate limiter first, the token after: a token taken before a long wait could
            // expire in it, and be refused when the call finally goes.
            let waited = if session_call {
                Ok(Duration::ZERO)
            } else {
                self.inner
                    .limiter
                    .acquire(self.inner.retry.max_delay)
                    .await
                    // Waiting out a long pause would hold the caller idle: it gets the pause
                    // back as an error instead, and comes back when it is over.
                    .map_err(|remaining| ApiError::RateLimited {
                        retry_after: Some(remaining),
                    })
            };
            let (bearer, answer) = match waited {
                Err(error) => (None, Err(error)),
                Ok(rate_limit_wait) => {
                    let bearer = match authorize {
                        Authorize::Yes => self.bearer().await?,
                        Authorize::No => None,
                    };
                    let how = How {
                        header: bearer.as_ref().map(|bearer| &bearer.header),
                        quick: method == Method::GET || session_call,
                        rate_limit_wait,
                    };
                    let answer = self
                        .attempt(
                            endpoint,
                            &method,
                            &url,
                            body.as_deref(),
                            attempt,
                            how,
                            decoder.clone(),
                        )
                        .await;
                    (bearer, answer)
                }
            };
            let error = match answer {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            if session_call {
                return Err(error);
            }
            // A 401 comes before the server acts, so even a create is safe to send again.
            if let (ApiError::Unauthorized, Authorization::Session(session), Some(bearer)) =
                (&error, &self.inner.auth, &bearer)
                && !replayed
            {
                replayed = true;
                attempt -= 1;
                session.after_refusal(self, bearer.generation).await?;
                continue;
            }
            if let Some(wait) = error.retry_after() {
                // The server asked this credential for quiet: hold back every clone, not only
                // this call, for as long as asked (the parser caps what a server may ask).
                self.inner.limiter.pause_for(wait);
            }
            match self
                .inner
                .retry
                .decide(attempt, &error, idempotent, rand::random::<f64>())
            {
                Decision::Retry(wait) => {
                    tracing::info!(
                        endpoint,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        reason = error.metric_label(),
                        error = %error,
                        "Flashback call failed, retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                Decision::Fail => return Err(error),
                Decision::Exhausted => {
                    return Err(ApiError::RetriesExhausted {
                        attempts: attempt,
                        last: Box::new(error),
                    });
                }
            }
        }
    }

    /// The decoder of an answer held whole, as every call but the listing's is.
    fn whole<T: DeserializeOwned>(&self) -> Whole<T> {
        Whole::new(self.inner.max_response_bytes)
    }

    /// One HTTP exchange, its turn at the rate limiter already taken: send, judge the answer.
    #[allow(clippy::too_many_arguments)]
    async fn attempt<D: Decoder>(
        &self,
        endpoint: &'static str,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        attempt: u32,
        how: How<'_>,
        decoder: D,
    ) -> Result<D::Output, ApiError> {
        let rate_limit_wait = how.rate_limit_wait;
        let started = Instant::now();
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, "application/json");
        if let Some(authorization) = how.header {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if how.quick {
            request = request.timeout(self.inner.read_timeout);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| parse_retry_after(value, SystemTime::now()));
                // A success is read by its decoder (a listing as it streams); anything else
                // is an error body, read whole within the usual bound and judged.
                let read = if (200..300).contains(&status) {
                    read_into(response, decoder).await.map(Body::Success)
                } else {
                    read_into(response, Whole::<()>::new(self.inner.max_response_bytes))
                        .await
                        .map(|whole| Body::Failure(whole.into_bytes()))
                };
                read.map(|body| (status, retry_after, body))
                    .map_err(|error| (Some(status), error))
            }
            Err(error) => Err((None, Read::Failed(error))),
        };
        let status = match &answer {
            Ok((status, ..)) => Some(*status),
            Err((status, _)) => *status,
        };
        let duration = started.elapsed();
        tracing::debug!(
            endpoint,
            method = %method,
            status,
            attempt,
            duration_ms = duration.as_millis() as u64,
            rate_limit_wait_ms = rate_limit_wait.as_millis() as u64,
            "Flashback call"
        );
        if let Some(observer) = &self.inner.observer {
            observer(&CallRecord {
                endpoint,
                status,
                duration,
                rate_limit_wait,
            });
        }
        let (status, retry_after, body) = answer.map_err(|(_, error)| match error {
            Read::Refused(refusal) => refused(endpoint, refusal),
            Read::Failed(error) => ApiError::from_transport(error),
        })?;
        let judge = |text: &[u8]| judge_response(status, retry_after, text);
        match body {
            Body::Success(decoder) => decoder.finish(endpoint, judge),
            Body::Failure(bytes) => Err(judge(&bytes).unwrap_or_else(|| ApiError::Rejected {
                status,
                message: format!("HTTP {status}"),
            })),
        }
    }
}

/// An answer's body as read: a success's decoder, fed to the end, or an error's text.
enum Body<D> {
    Success(D),
    Failure(Vec<u8>),
}

/// How one attempt is sent: with which `Authorization`, whether with the read timeout, and
/// how long it waited for the rate limiter (for the call's record).
struct How<'a> {
    header: Option<&'a HeaderValue>,
    quick: bool,
    rate_limit_wait: Duration,
}

/// What a failed refresh means. Only the API's own refusal spends nothing more and needs a new
/// login: a 401, a 400, or a body with an error code. A proxy's 403 or 404, an answer too large
/// or unreadable, is not the API judging the token, and is returned as it is. The refusal
/// quotes the API's code (or the status), never its message, and never the token.
fn refresh_refusal(error: ApiError, refresh: &Token) -> ApiError {
    let last = match &error {
        ApiError::RetriesExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    let said = match last {
        ApiError::Unauthorized => Some("HTTP 401".to_owned()),
        ApiError::Rejected { status: 400, .. } => Some("HTTP 400".to_owned()),
        ApiError::InvalidSpec { code, .. } => Some(code.clone()),
        ApiError::NotFound { .. } if last.error_code().is_some() => Some("NOT_FOUND".to_owned()),
        _ => None,
    };
    match said {
        Some(said) => ApiError::SessionRefused {
            message: said.replace(refresh.expose(), "***"),
        },
        None => error,
    }
}

/// What a login answers.
pub struct Login {
    pub tokens: SessionTokens,
    pub user: LoginUser,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("tokens", &self.tokens)
            .field("user", &self.user)
            .finish()
    }
}

impl Refresher for FlashbackClient {
    fn refresh<'a>(
        &'a self,
        refresh: &'a Token,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<SessionTokens, ApiError>> + Send + 'a>,
    > {
        Box::pin(self.refresh_session(refresh))
    }
}

/// The tokens of a login's or a refresh's answer. A refresh token is required: without it the
/// session could not be renewed again.
fn session_tokens(endpoint: &'static str, body: SessionBody) -> Result<SessionTokens, ApiError> {
    let refresh = body
        .refresh_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ApiError::decode(endpoint, "the answer holds no refreshToken"))?;
    let expires_at = match body.expires_at {
        Some(serde_json::Value::Number(number)) => number.as_f64().and_then(expiry_from_number),
        Some(serde_json::Value::String(text)) => text
            .parse::<f64>()
            .ok()
            .and_then(expiry_from_number)
            .or_else(|| humantime::parse_rfc3339_weak(&text).ok()),
        _ => None,
    };
    Ok(SessionTokens {
        access: body
            .access_token
            .filter(|token| !token.is_empty())
            .map(Token::new),
        expires_at,
        refresh: Token::new(refresh),
    })
}

/// Why an answer's body could not be read.
enum Read {
    Refused(Refusal),
    Failed(reqwest::Error),
}

/// Feeds a body to `decoder` chunk by chunk, giving up as soon as it refuses one, so a server
/// cannot make the client read past its limits (a longer `Content-Length` is not read at all).
async fn read_into<D: Decoder>(mut response: reqwest::Response, mut decoder: D) -> Result<D, Read> {
    let limit = decoder.byte_limit();
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(Read::Refused(Refusal::TooLarge {
            limit,
            what: "bytes",
        }));
    }
    while let Some(chunk) = response.chunk().await.map_err(Read::Failed)? {
        decoder.feed(&chunk).map_err(Read::Refused)?;
    }
    Ok(decoder)
}

/// Percent-encodes a query value, keeping only RFC 3986 unreserved characters.
fn encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `a,b,c` with each id encoded and the commas left literal, as the reference writes it.
fn encode_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| encode(id))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> FlashbackClient {
        FlashbackClient::new(ClientConfig::new(
            Url::parse(base).unwrap(),
            Token::new("t"),
        ))
        .unwrap()
    }

    #[test]
    fn urls_keep_a_base_path_and_encode_ids() {
        let c = client("http://127.0.0.1:9/api/");
        assert_eq!(
            c.url(&["repo", "a/b c"], &[]).as_str(),
            "http://127.0.0.1:9/api/repo/a%2Fb%20c"
        );
        let c = client("http://127.0.0.1:9");
        let ids = ["r1".to_owned(), "r,2".to_owned()];
        assert_eq!(
            c.url(&["repo", "stats"], &[("repoId", encode_list(&ids))])
                .as_str(),
            "http://127.0.0.1:9/repo/stats?repoId=r1,r%2C2"
        );
    }

    #[test]
    fn a_base_url_with_a_user_name_or_password_is_refused() {
        for base in [
            "http://user@127.0.0.1:9",
            "http://user:s3cr3t@127.0.0.1:9",
            "ftp://x",
        ] {
            let config = ClientConfig::new(Url::parse(base).unwrap(), Token::new("t"));
            let err = FlashbackClient::new(config).unwrap_err();
            assert_eq!(err.metric_label(), "config", "{base}");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn config_and_client_debug_hide_the_token() {
        let config = ClientConfig::new(Url::parse("http://x").unwrap(), Token::new("s3cr3t"));
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let client = FlashbackClient::new(config).unwrap();
        assert!(!format!("{client:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_a_config_error_without_the_token() {
        let config = ClientConfig::new(Url::parse("http://x").unwrap(), Token::new("bad\nsecret"));
        let err = FlashbackClient::new(config).unwrap_err();
        assert_eq!(err.metric_label(), "config");
        assert!(!format!("{err} {err:?}").contains("secret"));
    }
}

//! The operator's view of Flashback: one API client per credential (so one rate limiter per
//! credential) and a short-lived listing of each workspace's repositories, so that one
//! `GET /repo?workspaceId=` serves every object of that workspace and credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller::credentials::Credentials;
use crate::flashback::{
    ApiError, CallObserver, ClientConfig, FlashbackClient, RateLimit, Repo, RepoFilter, RepoStats,
    RepoWrite,
};

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
}

type ListingKey = (Credentials, String);

struct Listing {
    /// When the call was sent: the listing shows no change made before this instant.
    started_at: Instant,
    repos: Arc<Vec<Repo>>,
}

/// Shared by every reconcile.
pub struct Remote {
    settings: RemoteSettings,
    clients: Mutex<HashMap<Credentials, FlashbackClient>>,
    // One async lock per workspace: concurrent reconciles of the same workspace wait for the
    // one listing in flight instead of sending their own.
    listings: Mutex<HashMap<ListingKey, Arc<tokio::sync::Mutex<Option<Listing>>>>>,
}

impl Remote {
    pub fn new(settings: RemoteSettings) -> Self {
        Self {
            settings,
            clients: Mutex::default(),
            listings: Mutex::default(),
        }
    }

    fn client(&self, credentials: &Credentials) -> Result<FlashbackClient, ApiError> {
        let mut clients = self.clients.lock().expect("client map lock");
        if let Some(client) = clients.get(credentials) {
            return Ok(client.clone());
        }
        let mut config = ClientConfig::new(credentials.api_url.clone(), credentials.token.clone());
        config.rate_limit = RateLimit {
            per_second: self.settings.rate,
            burst: self.settings.burst,
        };
        config.stats_batch_size = self.settings.stats_batch_size.max(1);
        config.observer = self.settings.observer.clone();
        let client = FlashbackClient::new(config)?;
        clients.insert(credentials.clone(), client.clone());
        Ok(client)
    }

    fn listing_slot(&self, key: &ListingKey) -> Arc<tokio::sync::Mutex<Option<Listing>>> {
        self.listings
            .lock()
            .expect("listing map lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Every repository of a workspace, from a listing at most `listing_max_age` old, or,
    /// when `fetched_after` is given (a person asked for a fresh look), from one started after it.
    pub async fn repos(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        fetched_after: Option<Instant>,
    ) -> Result<Arc<Vec<Repo>>, ApiError> {
        let slot = self.listing_slot(&(credentials.clone(), workspace_id.to_string()));
        let mut listing = slot.lock().await;
        let usable = |l: &&Listing| match fetched_after {
            Some(after) => l.started_at >= after,
            None => l.started_at.elapsed() < self.settings.listing_max_age,
        };
        if let Some(fresh) = listing.as_ref().filter(usable) {
            return Ok(fresh.repos.clone());
        }
        let started_at = Instant::now();
        let filter = RepoFilter {
            workspace_id: Some(workspace_id.to_string()),
            repo_id: None,
        };
        let repos = Arc::new(self.client(credentials)?.list_repos(&filter).await?);
        *listing = Some(Listing {
            started_at,
            repos: repos.clone(),
        });
        Ok(repos)
    }

    /// Drops the listing of a workspace after a write, so the next reconcile sees the write.
    fn forget(&self, credentials: &Credentials, workspace_id: &str) {
        self.listings
            .lock()
            .expect("listing map lock")
            .remove(&(credentials.clone(), workspace_id.to_string()));
    }

    pub async fn create(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        repo: &RepoWrite,
    ) -> Result<String, ApiError> {
        let result = self.client(credentials)?.create_repo(repo).await;
        self.forget(credentials, workspace_id);
        result
    }

    pub async fn update(
        &self,
        credentials: &Credentials,
        workspace_id: &str,
        repo_id: &str,
        repo: &RepoWrite,
    ) -> Result<(), ApiError> {
        let result = self.client(credentials)?.update_repo(repo_id, repo).await;
        self.forget(credentials, workspace_id);
        result
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
        self.forget(credentials, workspace_id);
        result
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

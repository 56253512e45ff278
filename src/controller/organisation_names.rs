//! The names every repository or bucket of an organisation has, asked when a create is refused
//! with `NAME_ALREADY_USED` and the object's own workspace shows no such name: another
//! workspace has it, or a deleted one still holds it. One listing per credential and kind
//! serves every such refusal for `max_age`, so a tenant whose thousand objects all name taken
//! names costs one listing of the organisation, not a thousand.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller::credentials::Credentials;
use crate::controller::remote::Remote;
use flashback_client::{ApiError, RepoFilter};

/// What is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Repositories,
    Buckets,
}

/// One listing: when it was fetched, and the names in it.
type Listing = Option<(Instant, Arc<HashSet<String>>)>;
type Slot = Arc<tokio::sync::Mutex<Listing>>;

pub struct OrganisationNames {
    max_age: Duration,
    // One async lock per (credential, kind): concurrent refusals wait for the one listing.
    slots: Mutex<HashMap<(Credentials, Kind), Slot>>,
}

impl OrganisationNames {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            slots: Mutex::default(),
        }
    }

    /// Whether some listed repository or bucket of the organisation has `name`. A failure
    /// worth a retry is handed back, not kept.
    pub async fn listed(
        &self,
        remote: &Remote,
        credentials: &Credentials,
        kind: Kind,
        name: &str,
    ) -> Result<bool, ApiError> {
        let slot = {
            let mut slots = self.slots.lock().expect("organisation names lock");
            slots.retain(|_, slot| {
                slot.try_lock().map_or(true, |listing| {
                    listing
                        .as_ref()
                        .is_some_and(|(at, _)| at.elapsed() < self.max_age)
                })
            });
            slots
                .entry((credentials.clone(), kind))
                .or_default()
                .clone()
        };
        let mut listing = slot.lock().await;
        if let Some((at, names)) = listing.as_ref()
            && at.elapsed() < self.max_age
        {
            return Ok(names.contains(name));
        }
        let fetched_at = Instant::now();
        let client = remote.client_for(credentials)?;
        let names: HashSet<String> = match kind {
            Kind::Repositories => client
                .list_repos(&RepoFilter::default())
                .await?
                .into_iter()
                .map(|repo| repo.name)
                .collect(),
            Kind::Buckets => client
                .list_buckets(None)
                .await?
                .into_iter()
                .map(|bucket| bucket.name)
                .collect(),
        };
        let listed = names.contains(name);
        *listing = Some((fetched_at, Arc::new(names)));
        Ok(listed)
    }
}

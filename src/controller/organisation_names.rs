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

/// One listing: when it was fetched, and a hash of each name in it. Hashes, not names: an
/// organisation's listing may be megabytes (and a tenant's own server may answer with one for
/// each of its Secrets), while eight bytes a name serve as well. A collision only makes a name
/// read as used elsewhere rather than held by a deleted one.
type Listing = Option<(Instant, Arc<HashSet<u64>>)>;
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
            return Ok(names.contains(&hash_of(name)));
        }
        let fetched_at = Instant::now();
        let client = remote.client_for(credentials)?;
        let names: HashSet<u64> = match kind {
            Kind::Repositories => client
                .list_repos(&RepoFilter::default())
                .await?
                .iter()
                .map(|repo| hash_of(&repo.name))
                .collect(),
            Kind::Buckets => client
                .list_buckets(None)
                .await?
                .iter()
                .map(|bucket| hash_of(&bucket.name))
                .collect(),
        };
        let listed = names.contains(&hash_of(name));
        *listing = Some((fetched_at, Arc::new(names)));
        Ok(listed)
    }
}

/// A name's hash, the same for the life of the process.
fn hash_of(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    hasher.finish()
}

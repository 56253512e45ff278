//! Which workspaces each credential's organisation has (`GET /workspace`), asked before a
//! repository or bucket is created so that a `workspaceId` with a typo stalls with a reason
//! that says so, instead of a refusal whose code the service does not publish.
//!
//! One listing per credential serves every create for `max_age` (the resync interval), so
//! however many objects wait on a missing workspace, they cost at most one call per
//! credential per resync, and a workspace made in Flashback is seen within two resyncs. The check is an aid, not a gate: only an answer that
//! lists the organisation's workspaces without this one stalls; an API without the call, or
//! one whose answer cannot be read, is not held against the object (its create then speaks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller::credentials::Credentials;
use crate::controller::reason::Reason;
use crate::controller::remote::Remote;
use crate::controller::stall::Stall;
use flashback_client::ApiError;

/// What one `GET /workspace` told, kept for `max_age`.
struct Listing {
    fetched_at: Instant,
    /// The workspace ids, or `None` when the API gave no readable listing.
    ids: Option<Arc<Vec<String>>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Listing>>>;

/// The workspaces of each credential, shared by every reconcile.
pub struct KnownWorkspaces {
    max_age: Duration,
    // One async lock per credential: concurrent creates wait for the one call in flight.
    listings: Mutex<HashMap<Credentials, Slot>>,
}

impl KnownWorkspaces {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            listings: Mutex::default(),
        }
    }

    /// The stall of a create in `workspace_id` that the organisation does not have, or
    /// `None`. `kind` names what would be created ("repository", "bucket"). A failure worth a
    /// retry is handed back; any other failure of the listing is no verdict (`None`).
    pub async fn missing(
        &self,
        remote: &Remote,
        credentials: &Credentials,
        workspace_id: &str,
        kind: &str,
    ) -> Result<Option<Stall>, ApiError> {
        let slot = {
            let mut listings = self.listings.lock().expect("workspace listings lock");
            listings.retain(|_, slot| {
                slot.try_lock().map_or(true, |listing| {
                    listing
                        .as_ref()
                        .is_some_and(|l| l.fetched_at.elapsed() < self.max_age)
                })
            });
            listings.entry(credentials.clone()).or_default().clone()
        };
        let mut listing = slot.lock().await;
        let fresh = listing
            .as_ref()
            .filter(|l| l.fetched_at.elapsed() < self.max_age);
        let ids = match fresh {
            Some(fresh) => fresh.ids.clone(),
            None => {
                let fetched_at = Instant::now();
                let ids = match remote.client_for(credentials)?.list_workspaces().await {
                    Ok(listed) => Some(Arc::new(listed.into_iter().map(|w| w.id).collect())),
                    Err(error) if error.is_transient() => return Err(error),
                    Err(error) => {
                        tracing::debug!(%error, "no workspace listing; creates go unchecked");
                        None
                    }
                };
                *listing = Some(Listing {
                    fetched_at,
                    ids: ids.clone(),
                });
                ids
            }
        };
        Ok(ids.and_then(|ids| not_listed(kind, workspace_id, &ids)))
    }
}

/// The most workspace ids a message names.
const NAMED: usize = 10;

/// The stall of a `workspace_id` the organisation's listing `listed` lacks, or `None`.
pub fn not_listed(kind: &str, workspace_id: &str, listed: &[String]) -> Option<Stall> {
    if listed.iter().any(|id| id == workspace_id) {
        return None;
    }
    let has = match listed.len() {
        0 => "none".to_string(),
        n if n <= NAMED => listed.join(", "),
        n => format!("{} and {} more", listed[..NAMED].join(", "), n - NAMED),
    };
    Some(Stall {
        reason: Reason::WorkspaceNotFound,
        message: format!(
            "the organisation of these credentials has no workspace {workspace_id} (it has: \
             {has}); no {kind} was created: correct spec.workspaceId, or create the workspace \
             in Flashback (looked at again every resync)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_listed_workspace_passes_and_another_stalls_naming_those_there_are() {
        assert_eq!(
            not_listed("repository", "ws-1", &ids(&["ws-0", "ws-1"])),
            None
        );
        let stall = not_listed("bucket", "ws-typo", &ids(&["ws-a", "ws-b"])).unwrap();
        assert_eq!(stall.reason, Reason::WorkspaceNotFound);
        assert_eq!(
            stall.message,
            "the organisation of these credentials has no workspace ws-typo (it has: ws-a, \
             ws-b); no bucket was created: correct spec.workspaceId, or create the workspace \
             in Flashback (looked at again every resync)"
        );
        let none = not_listed("repository", "ws-1", &[]).unwrap();
        assert!(none.message.contains("(it has: none)"), "{}", none.message);
    }

    #[test]
    fn a_long_listing_is_named_in_part() {
        let many: Vec<String> = (0..25).map(|n| format!("ws-{n:02}")).collect();
        let stall = not_listed("repository", "ws-x", &many).unwrap();
        assert!(
            stall.message.contains(
                "ws-00, ws-01, ws-02, ws-03, ws-04, ws-05, ws-06, ws-07, ws-08, ws-09 and 15 more"
            ),
            "{}",
            stall.message
        );
    }
}

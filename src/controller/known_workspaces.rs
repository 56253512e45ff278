//! Which workspaces each credential's organisation has (`GET /workspace`), asked before a
//! repository or bucket is created so that a `workspaceId` with a typo stalls with a reason
//! that says so, instead of a refusal whose code the service does not publish.
//!
//! One listing per credential serves every create for `max_age` (the resync interval, at most
//! a minute), so however many objects wait on a missing workspace, they cost at most one call
//! per credential in that time, and a workspace made in Flashback is seen within that and a
//! resync. The check is an aid, never a gate: only an answer that lists some of the
//! organisation's workspaces, not this one, stalls. No answer, an empty one, one the client
//! cannot read, a failure (remembered for ten seconds, so waiting creates do not queue behind
//! retries), or more workspaces than the operator keeps, is no verdict, and the create goes
//! ahead (its refusal then speaks). Only ids that look like ids are kept (a server is anyone's,
//! and what it says ends up in a status), a thousand at most per credential.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::controller::answers;
use crate::controller::credentials::Credentials;
use crate::controller::reason::Reason;
use crate::controller::remote::Remote;
use crate::controller::stall::Stall;

/// The most workspace ids kept for one credential; a longer listing is no verdict.
const KEPT: usize = 1000;
/// How long a failed listing is remembered as no verdict.
const FAILED_FOR: Duration = Duration::from_secs(10);
/// The longest a listing serves.
const MAX_AGE: Duration = Duration::from_secs(60);

/// What one `GET /workspace` told.
struct Listing {
    fetched_at: Instant,
    serves_for: Duration,
    /// The workspace ids, or `None` for no verdict.
    ids: Option<Arc<BTreeSet<String>>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Listing>>>;

/// The workspaces of each credential, shared by every reconcile.
pub struct KnownWorkspaces {
    max_age: Duration,
    // One async lock per credential: concurrent creates wait for the one call in flight.
    listings: Mutex<HashMap<Credentials, Slot>>,
}

/// What a create asks of the check.
pub struct Create<'a> {
    pub workspace_id: &'a str,
    /// What would be created ("repository", "bucket").
    pub kind: &'a str,
    /// Whether the credentials are the object's own namespace's: only then does the message
    /// name the workspaces there are (the operator's default credentials serve every tenant,
    /// who must not learn each other's workspaces from it).
    pub own_credentials: bool,
}

impl KnownWorkspaces {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age: max_age.min(MAX_AGE),
            listings: Mutex::default(),
        }
    }

    /// The stall of a create in a workspace the organisation does not have, or `None` (no
    /// verdict included).
    pub async fn missing(
        &self,
        remote: &Remote,
        credentials: &Credentials,
        create: Create<'_>,
    ) -> Option<Stall> {
        let slot = {
            let mut listings = self.listings.lock().expect("workspace listings lock");
            listings.retain(|_, slot| {
                slot.try_lock().map_or(true, |listing| {
                    listing
                        .as_ref()
                        .is_some_and(|l| l.fetched_at.elapsed() < l.serves_for)
                })
            });
            listings.entry(credentials.clone()).or_default().clone()
        };
        let mut listing = slot.lock().await;
        let fresh = listing
            .as_ref()
            .filter(|l| l.fetched_at.elapsed() < l.serves_for);
        let ids = match fresh {
            Some(fresh) => fresh.ids.clone(),
            None => {
                let fetched_at = Instant::now();
                let listed = match remote.client_for(credentials) {
                    Ok(client) => client.list_workspaces().await,
                    Err(error) => Err(error),
                };
                let (ids, serves_for) = match listed {
                    Ok(listed) => (kept(listed.into_iter().map(|w| w.id)), self.max_age),
                    Err(error) => {
                        tracing::debug!(%error, "no workspace listing; creates go unchecked");
                        let serves_for = if error.is_transient() {
                            FAILED_FOR
                        } else {
                            self.max_age
                        };
                        (None, serves_for)
                    }
                };
                *listing = Some(Listing {
                    fetched_at,
                    serves_for,
                    ids: ids.clone(),
                });
                ids
            }
        };
        ids.and_then(|ids| not_listed(&create, &ids))
    }
}

/// The ids of a listing worth a verdict: those that look like ids, if any, and not too many.
fn kept(listed: impl Iterator<Item = String>) -> Option<Arc<BTreeSet<String>>> {
    let mut ids = BTreeSet::new();
    for id in listed {
        if answers::plausible_id(&id) {
            ids.insert(id);
            if ids.len() > KEPT {
                return None;
            }
        }
    }
    (!ids.is_empty()).then(|| Arc::new(ids))
}

/// The most workspace ids a message names, and the most characters they take.
const NAMED: usize = 10;
const NAMED_CHARS: usize = 300;

/// The stall of a create whose workspace the organisation's listing `listed` lacks, or `None`.
fn not_listed(create: &Create<'_>, listed: &BTreeSet<String>) -> Option<Stall> {
    if listed.contains(create.workspace_id) {
        return None;
    }
    let n = listed.len();
    let has = if !create.own_credentials {
        format!("{n} workspace(s), not named: these are the operator's shared credentials")
    } else {
        let mut named = Vec::new();
        let mut chars = 0;
        for id in listed.iter().take(NAMED) {
            chars += id.len() + 2;
            if chars > NAMED_CHARS && !named.is_empty() {
                break;
            }
            named.push(id.as_str());
        }
        match n - named.len() {
            0 => named.join(", "),
            more => format!("{} and {more} more", named.join(", ")),
        }
    };
    Some(Stall {
        reason: Reason::WorkspaceNotFound,
        message: format!(
            "the organisation of these credentials lists no workspace {} (it has: {has}); no {} \
             was created: correct spec.workspaceId, or create the workspace in Flashback \
             (looked at again every resync)",
            create.workspace_id, create.kind
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn create<'a>(workspace_id: &'a str, kind: &'a str) -> Create<'a> {
        Create {
            workspace_id,
            kind,
            own_credentials: true,
        }
    }

    #[test]
    fn a_listed_workspace_passes_and_another_stalls_naming_those_there_are() {
        assert_eq!(
            not_listed(&create("ws-1", "repository"), &ids(&["ws-0", "ws-1"])),
            None
        );
        let stall = not_listed(&create("ws-typo", "bucket"), &ids(&["ws-a", "ws-b"])).unwrap();
        assert_eq!(stall.reason, Reason::WorkspaceNotFound);
        assert_eq!(
            stall.message,
            "the organisation of these credentials lists no workspace ws-typo (it has: ws-a, \
             ws-b); no bucket was created: correct spec.workspaceId, or create the workspace \
             in Flashback (looked at again every resync)"
        );
    }

    #[test]
    fn the_shared_credentials_name_no_workspace_of_other_tenants() {
        let shared = Create {
            own_credentials: false,
            ..create("ws-x", "repository")
        };
        let stall = not_listed(&shared, &ids(&["ws-of-team-b", "ws-of-team-c"])).unwrap();
        assert!(!stall.message.contains("ws-of-team"), "{}", stall.message);
        assert!(
            stall.message.contains("2 workspace(s), not named"),
            "{}",
            stall.message
        );
    }

    #[test]
    fn a_long_listing_is_named_in_part() {
        let many: BTreeSet<String> = (0..25).map(|n| format!("ws-{n:02}")).collect();
        let stall = not_listed(&create("ws-x", "repository"), &many).unwrap();
        assert!(
            stall.message.contains(
                "ws-00, ws-01, ws-02, ws-03, ws-04, ws-05, ws-06, ws-07, ws-08, ws-09 and 15 more"
            ),
            "{}",
            stall.message
        );
    }

    #[test]
    fn an_empty_huge_or_implausible_listing_is_no_verdict() {
        assert_eq!(kept(std::iter::empty()), None);
        assert_eq!(kept((0..=KEPT).map(|n| format!("ws-{n}"))), None);
        let odd = kept(
            [
                "ws-1".to_owned(),
                "x".repeat(10_000),
                "two\nlines".to_owned(),
            ]
            .into_iter(),
        );
        assert_eq!(odd.as_deref(), Some(&ids(&["ws-1"])));
    }
}

//! The resync sweep. Every resync interval, one fresh listing per (credential, workspace) is
//! compared with every object of that workspace, and only the objects that it shows out of
//! step (drift, a repository gone, a status that no longer tells the truth) are reconciled.
//! A workspace of ten thousand objects in step costs one `GET /repo` and no reconcile. Each
//! workspace is swept on its own, so one tenant's slow API holds back only its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::controller::context::Context;
use crate::controller::credentials;
use crate::controller::credentials::SecretName;
use crate::controller::fairness::Requeue;
use crate::controller::periodic::{self, First, Passes};
use crate::controller::repository::plan;
use crate::crd::FlashbackRepository;

/// What one listing serves: the Secret of the credentials and the workspace.
type Group = (SecretName, String);

/// How many workspaces of one credential are swept at once. A tenant with thousands of
/// workspaces on the shared credentials then queues its own sweeps here, instead of putting
/// thousands of calls ahead of everyone's at that credential's rate limiter.
const SWEEPS_PER_CREDENTIAL: usize = 4;

/// One lane per credential: the sweeps of its workspaces take turns in it.
#[derive(Default)]
struct Lanes(std::sync::Mutex<HashMap<SecretName, Arc<tokio::sync::Semaphore>>>);

impl Lanes {
    fn of(&self, secret: &SecretName) -> Arc<tokio::sync::Semaphore> {
        let mut lanes = self.0.lock().expect("lanes lock");
        lanes
            .entry(secret.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(SWEEPS_PER_CREDENTIAL)))
            .clone()
    }

    /// Forgets the lanes no sweep holds or waits in.
    fn tidy(&self) {
        self.0
            .lock()
            .expect("lanes lock")
            .retain(|_, lane| Arc::strong_count(lane) > 1);
    }
}

/// Sweeps every `interval` until `stop` resolves, sending the objects to reconcile. Each
/// (credential, workspace) is swept as its own task: a workspace whose listing waits behind
/// a tenant's hanging API delays neither another workspace's sweep nor the next tick, and
/// is skipped by the ticks that come while it waits. Stopping cancels the sweeps in flight.
pub async fn run(
    store: Store<FlashbackRepository>,
    ctx: Arc<Context>,
    interval: Duration,
    due: mpsc::Sender<ObjectRef<FlashbackRepository>>,
    stop: impl std::future::Future<Output = ()>,
) {
    let passes = Passes::default();
    let lanes = Lanes::default();
    periodic::every(&store, interval, First::AfterInterval, stop, || async {
        lanes.tidy();
        let (started, skipped) = sweep(&store, &ctx, &due, &passes, &lanes);
        debug!(started, skipped, "resync sweep");
    })
    .await;
}

/// One tick: starts the sweep of every group whose previous sweep is done, and returns at
/// once how many (started, skipped because still in flight).
fn sweep(
    store: &Store<FlashbackRepository>,
    ctx: &Arc<Context>,
    due: &mpsc::Sender<ObjectRef<FlashbackRepository>>,
    passes: &Passes<Group>,
    lanes: &Lanes,
) -> (usize, usize) {
    let objects = store.state();
    // Who holds an id is a question about every object, this shard's or not.
    let recorders = Arc::new(by_recorded_id(&ctx.everyone.repositories.state()));
    let groups = by_workspace(&objects, ctx.settings.default_credentials_secret.as_ref());
    let (mut started, mut skipped) = (0, 0);
    for ((secret, workspace), repos) in groups {
        let pass = sweep_and_send(
            lanes.of(&secret),
            ctx.clone(),
            recorders.clone(),
            secret.clone(),
            workspace.clone(),
            repos,
            due.clone(),
        );
        if passes.start((secret.clone(), workspace.clone()), pass) {
            started += 1;
        } else {
            skipped += 1;
            debug!(secret = %secret, workspace, "the previous resync of this workspace is still in flight");
        }
    }
    (started, skipped)
}

/// The sweep of one group: sends its objects that need a reconcile.
async fn sweep_and_send(
    lane: Arc<tokio::sync::Semaphore>,
    ctx: Arc<Context>,
    recorders: Arc<Recorders>,
    secret: SecretName,
    workspace: String,
    repos: Vec<Arc<FlashbackRepository>>,
    due: mpsc::Sender<ObjectRef<FlashbackRepository>>,
) {
    // Never closed: the lane lives as long as a sweep holds it.
    let Ok(_turn) = lane.acquire_owned().await else {
        return;
    };
    let started = Instant::now();
    let due_here = sweep_workspace(&ctx, &recorders, &secret, &workspace, repos).await;
    let reconciles = due_here.len();
    for repo in due_here {
        // The controller is gone only when the operator stops.
        let _ = due.send(repo).await;
    }
    debug!(secret = %secret, workspace, reconciles, took = ?started.elapsed(), "resync of a workspace");
}

/// The objects of one workspace that need a reconcile. Objects whose credentials cannot be
/// had, or whose workspace cannot be listed, are all due: their reconcile says why.
async fn sweep_workspace(
    ctx: &Context,
    recorders: &Recorders,
    secret: &SecretName,
    workspace: &str,
    repos: Vec<Arc<FlashbackRepository>>,
) -> Vec<ObjectRef<FlashbackRepository>> {
    let all = |repos: &[Arc<FlashbackRepository>]| {
        repos.iter().map(|r| ObjectRef::from(r.as_ref())).collect()
    };
    let credentials = match ctx.credentials_of(&repos[0]).await {
        Ok(Ok(credentials)) => credentials,
        Ok(Err(_)) | Err(_) => return all(&repos),
    };
    let identity = crate::controller::ownership::Identity::new(&credentials.api_url, secret);
    let listing = match ctx
        .remote
        .repos(&credentials, workspace, Some(Instant::now()))
        .await
    {
        Ok(listing) => listing,
        Err(error) => {
            warn!(secret = %secret, workspace, error = %error, "resync cannot list the workspace");
            return all(&repos);
        }
    };
    repos
        .iter()
        .filter(|repo| {
            // Parked, a reconcile of it is to come (a burst of creates parks thousands):
            // naming it again would only run it once more.
            let namespace = repo.namespace().unwrap_or_default();
            if ctx
                .fairness
                .is_parked(&namespace, &Requeue::key(repo.as_ref()))
            {
                return false;
            }
            // Buckets named by bucketRef, as the watch cache has them: one that is not Ready
            // is for the object's reconcile to say (woken by the bucket's change).
            let resolved = plan::resolve_buckets(repo, |name| {
                let key = ObjectRef::new(name).within(&repo.namespace().unwrap_or_default());
                plan::NamedBucket::of(ctx.everyone.buckets.get(&key).as_deref())
            });
            let Ok(resolved) = resolved else {
                return false;
            };
            let repo = &resolved;
            // Only objects whose status records an id can hold it (plan::holds).
            let decision = plan::decide(repo, &listing, &identity, |id| {
                recorders.get(id).is_some_and(|others| {
                    others.iter().any(|o| plan::holds(o, repo, id, &identity))
                })
            });
            plan::needs_reconcile(repo, &decision)
        })
        .map(|repo| ObjectRef::from(repo.as_ref()))
        .collect()
}

/// The objects whose status records each repository id.
type Recorders = HashMap<String, Vec<Arc<FlashbackRepository>>>;

/// Who may hold each repository id, found once per tick (and shared by its sweeps) rather
/// than by scanning every object for every object.
fn by_recorded_id(repos: &[Arc<FlashbackRepository>]) -> Recorders {
    let mut recorders: Recorders = HashMap::new();
    for repo in repos {
        if let Some(id) = repo.status.as_ref().and_then(|s| s.repo_id.as_deref()) {
            recorders
                .entry(id.to_string())
                .or_default()
                .push(repo.clone());
        }
    }
    recorders
}

/// Live objects grouped by the Secret of their credentials and their workspace: the objects
/// one listing serves. Objects being deleted are the finalizer's business.
fn by_workspace(
    repos: &[Arc<FlashbackRepository>],
    default: Option<&SecretName>,
) -> BTreeMap<(SecretName, String), Vec<Arc<FlashbackRepository>>> {
    let mut groups: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for repo in repos {
        if repo.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Ok(secret) = credentials::secret_for(repo, default) {
            groups
                .entry((secret, repo.spec.workspace_id.clone()))
                .or_default()
                .push(repo.clone());
        } else {
            debug!(name = repo.name_any(), "no credentials to resync with");
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[tokio::test]
    async fn the_workspaces_of_one_credential_take_turns_four_at_a_time() {
        let lanes = Lanes::default();
        let secret = |name: &str| SecretName {
            namespace: "team-a".into(),
            name: name.into(),
        };
        let shared = lanes.of(&secret("shared"));
        let turns: Vec<_> = (0..SWEEPS_PER_CREDENTIAL)
            .map(|_| shared.clone().try_acquire_owned().expect("a turn"))
            .collect();
        assert!(
            lanes.of(&secret("shared")).try_acquire_owned().is_err(),
            "a fifth sweep of the credential waits"
        );
        assert!(
            lanes.of(&secret("own")).try_acquire_owned().is_ok(),
            "another credential's sweeps do not"
        );
        drop(turns);
        assert!(shared.clone().try_acquire_owned().is_ok());
        drop(shared);
        lanes.tidy();
        assert!(
            lanes.0.lock().unwrap().is_empty(),
            "idle lanes are forgotten"
        );
    }

    #[test]
    fn one_group_per_secret_and_workspace_and_deleted_objects_left_out() {
        let a = fixtures::repo("team-a", "a");
        let b = fixtures::repo("team-a", "b");
        let mut other_workspace = fixtures::repo("team-a", "c");
        other_workspace.spec.workspace_id = "ws-2".into();
        let mut going = fixtures::repo("team-a", "d");
        going.metadata.deletion_timestamp = Some(fixtures::time("2026-11-26T19:00:00Z"));
        let elsewhere = fixtures::repo("team-b", "e");
        let groups = by_workspace(
            &[a, b, other_workspace, going, elsewhere]
                .into_iter()
                .map(Arc::new)
                .collect::<Vec<_>>(),
            None,
        );
        let sizes: Vec<(String, String, usize)> = groups
            .iter()
            .map(|((secret, ws), repos)| (secret.to_string(), ws.clone(), repos.len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("team-a/flashback-token".to_string(), "ws-1".to_string(), 2),
                ("team-a/flashback-token".to_string(), "ws-2".to_string(), 1),
                ("team-b/flashback-token".to_string(), "ws-1".to_string(), 1),
            ]
        );
    }
}

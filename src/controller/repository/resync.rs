//! The resync sweep. Every resync interval, one fresh listing per (credential, workspace) is
//! compared with every object of that workspace, and only the objects that it shows out of
//! step (drift, a repository gone, a status that no longer tells the truth) are reconciled.
//! A workspace of ten thousand objects in step costs one `GET /repo` and no reconcile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::controller::context::Context;
use crate::controller::credentials;
use crate::controller::credentials::SecretName;
use crate::controller::fairness::Requeue;
use crate::controller::periodic::{self, First};
use crate::controller::repository::plan;
use crate::crd::FlashbackRepository;

/// How many workspaces are listed at once: one credential's slow API delays only its own.
const WORKSPACES_AT_ONCE: usize = 8;

/// Sweeps every `interval` until `stop` resolves, sending the objects to reconcile.
pub async fn run(
    store: Store<FlashbackRepository>,
    ctx: Arc<Context>,
    interval: Duration,
    due: mpsc::Sender<ObjectRef<FlashbackRepository>>,
    stop: impl std::future::Future<Output = ()>,
) {
    periodic::every(&store, interval, First::AfterInterval, stop, || async {
        let started = Instant::now();
        let sent = sweep(&store, &ctx, &due).await;
        debug!(reconciles = sent, took = ?started.elapsed(), "resync sweep");
    })
    .await;
}

/// One pass; returns how many objects were sent to be reconciled.
async fn sweep(
    store: &Store<FlashbackRepository>,
    ctx: &Context,
    due: &mpsc::Sender<ObjectRef<FlashbackRepository>>,
) -> usize {
    let objects = store.state();
    let recorders = by_recorded_id(&objects);
    let groups = by_workspace(&objects, ctx.settings.default_credentials_secret.as_ref());
    let sent = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(groups)
        .for_each_concurrent(WORKSPACES_AT_ONCE, |((secret, workspace), repos)| {
            let (sent, recorders) = (&sent, &recorders);
            async move {
                let due_here = sweep_workspace(ctx, recorders, &secret, &workspace, repos).await;
                for repo in due_here {
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    // The controller is gone only when the operator stops.
                    let _ = due.send(repo).await;
                }
            }
        })
        .await;
    sent.into_inner()
}

/// The objects of one workspace that need a reconcile. Objects whose credentials cannot be
/// had, or whose workspace cannot be listed, are all due: their reconcile says why.
async fn sweep_workspace(
    ctx: &Context,
    recorders: &HashMap<&str, Vec<&FlashbackRepository>>,
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
                plan::NamedBucket::of(ctx.buckets.get(&key).as_deref())
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

/// The objects whose status records each repository id: who may hold it, found once per
/// sweep rather than by scanning every object for every object.
fn by_recorded_id(repos: &[Arc<FlashbackRepository>]) -> HashMap<&str, Vec<&FlashbackRepository>> {
    let mut recorders: HashMap<&str, Vec<&FlashbackRepository>> = HashMap::new();
    for repo in repos {
        if let Some(id) = repo.status.as_ref().and_then(|s| s.repo_id.as_deref()) {
            recorders.entry(id).or_default().push(repo);
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

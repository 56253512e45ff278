//! The `FlashbackRepository` kind: its controller (the watch, what wakes a reconcile, the
//! resync sweep and the statistics task), and its reconcile in steps.
//!
//! - [`plan`]: pure decisions (what to do with the remote, which errors stall and why).
//! - [`reconcile`]: one reconcile as observe → decide → act → report; the only I/O.
//! - [`status`]: the status a reconcile writes, pure.
//! - [`create_attempt`]: which fields of a repository the shared create record fingerprints.
//! - [`resync`]: the periodic sweep that finds objects out of step with their remote.

pub mod create_attempt;
pub mod plan;
pub mod reconcile;
pub mod resync;
pub mod status;

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::debug;

use crate::controller::context::Context;
use crate::controller::credentials::{self, SecretName};
use crate::controller::error::Error;
use crate::controller::{runner, watches};
use crate::crd::FlashbackRepository;

/// Runs the repository controller until `stopped` resolves: the watch (filling the stores of
/// `feed`, which the context reads), the resync sweep, the statistics task, and the
/// reconciles they and Secret changes call for.
pub async fn run<Stop, StopFuture>(
    api: Api<FlashbackRepository>,
    feed: watches::Feed<FlashbackRepository>,
    parked: UnboundedReceiver<ObjectRef<FlashbackRepository>>,
    ctx: Arc<Context>,
    stopped: &Stop,
) where
    Stop: Fn() -> StopFuture,
    StopFuture: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let settings = ctx.settings.clone();
    let store = ctx.repositories.clone();
    let leaving = ctx.clone();
    let left = move |object: &FlashbackRepository| leaving.left_shard(object);
    let objects = watches::objects(api, ctx.shard.clone(), feed, left);
    let secret_changes =
        watches::secret_changes(&ctx.kube, &settings, ctx.credentials.clone(), |_| false);
    let users = store.clone();
    let naming = store.clone();
    let bucket_api: Api<kube::core::PartialObjectMeta<crate::crd::FlashbackBucket>> =
        watches::namespaced_or_all(&ctx.kube, settings.namespace.as_deref());
    let bucket_changes = watcher(bucket_api, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let default_secret = settings.default_credentials_secret.clone();

    // The resync sweep names the objects it finds out of step; the controller reconciles them.
    let (due_tx, due_rx) = tokio::sync::mpsc::channel(1024);
    let resync = resync::run(
        store.clone(),
        ctx.clone(),
        settings.resync_interval,
        due_tx,
        stopped(),
    );
    let statistics = crate::controller::stats::run(
        store.clone(),
        ctx.clone(),
        settings.stats_interval,
        stopped(),
    );
    let controller = Controller::for_stream(objects, store)
        .watches_stream(secret_changes, move |secret| {
            let name = SecretName {
                namespace: secret.namespace().unwrap_or_default(),
                name: secret.name_any(),
            };
            // The watch forgot it already: the reconciles it starts read the Secret afresh.
            let users = users_of_secret(&users, &name, default_secret.as_ref());
            debug!(secret = %name, objects = users.len(), "a credentials Secret changed");
            users
        })
        // A FlashbackBucket that changes (becomes Ready, gets another id) wakes the
        // repositories that name it by bucketRef.
        .watches_stream(bucket_changes, move |bucket| {
            let namespace = bucket.namespace();
            let name = bucket.name_any();
            naming
                .state()
                .into_iter()
                .filter(|repo| {
                    repo.namespace() == namespace
                        && repo
                            .spec
                            .buckets
                            .iter()
                            .any(|b| b.bucket_ref.as_ref().is_some_and(|r| r.name == name))
                })
                .map(|repo| ObjectRef::from(repo.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_on(watches::stream_of(due_rx));
    let controller = runner::run(controller, parked, ctx, stopped, reconcile, error_policy);
    tokio::join!(controller, statistics, resync);
}

/// The entry point kube-runtime calls for every object that needs a look.
pub async fn reconcile(repo: Arc<FlashbackRepository>, ctx: Arc<Context>) -> Result<Action, Error> {
    let step = || async {
        let namespace = repo.namespace().unwrap_or_default();
        let api: Api<FlashbackRepository> = Api::namespaced(ctx.kube.clone(), &namespace);
        let step = reconcile::Reconcile::new(&api, &ctx, &repo);
        if repo.metadata.deletion_timestamp.is_some() {
            step.delete().await
        } else {
            step.apply().await
        }
    };
    ctx.reconcile_in_turn(repo.as_ref(), &ctx.requeue.repositories, step)
        .await
}

/// Called by kube-runtime when `reconcile` failed: back off per object.
pub fn error_policy(repo: Arc<FlashbackRepository>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.after_failure(repo.as_ref(), error)
}

/// Whether an object of `store` other than `repo` manages the remote repository `repo_id`
/// (see [`plan::holds`]).
pub(crate) fn held_by_another(
    store: &Store<FlashbackRepository>,
    repo: &FlashbackRepository,
    repo_id: &str,
    identity: &crate::controller::ownership::Identity,
) -> bool {
    store
        .find(|other| plan::holds(other, repo, repo_id, identity))
        .is_some()
}

/// Objects whose credentials come from `secret`: those naming it, and, for the operator's
/// default Secret, those naming none.
fn users_of_secret(
    store: &Store<FlashbackRepository>,
    secret: &SecretName,
    default: Option<&SecretName>,
) -> Vec<ObjectRef<FlashbackRepository>> {
    store
        .state()
        .iter()
        .filter(|repo| credentials::secret_for(*repo, default).as_ref() == Ok(secret))
        .map(|repo| ObjectRef::from(repo.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::watches::worth_a_reconcile;
    use crate::crd::annotations;
    use crate::fixtures;
    use kube::runtime::reflector;

    #[test]
    fn status_writes_do_not_call_for_a_reconcile_but_spec_and_annotations_do() {
        let repo = fixtures::repo("team-a", "media");
        let before = worth_a_reconcile(&repo);

        let mut status_only = repo.clone();
        status_only.status = Some(fixtures::ready_status("r1", 1));
        status_only.metadata.resource_version = Some("42".into());
        assert_eq!(worth_a_reconcile(&status_only), before);

        let mut new_generation = repo.clone();
        new_generation.metadata.generation = Some(2);
        assert_ne!(worth_a_reconcile(&new_generation), before);

        let mut requested = repo.clone();
        fixtures::annotate(&mut requested, annotations::RECONCILE_REQUESTED_AT, "now");
        assert_ne!(worth_a_reconcile(&requested), before);

        let mut finalized = repo.clone();
        finalized.metadata.finalizers = Some(vec![crate::crd::FINALIZER.into()]);
        assert_eq!(
            worth_a_reconcile(&finalized),
            before,
            "the operator's own finalizer is bookkeeping"
        );
        finalized
            .metadata
            .finalizers
            .as_mut()
            .unwrap()
            .push("example.com/other".into());
        assert_ne!(worth_a_reconcile(&finalized), before);

        let mut deleted = repo.clone();
        deleted.metadata.deletion_timestamp = Some(fixtures::time("2026-11-26T19:00:00Z"));
        assert_ne!(worth_a_reconcile(&deleted), before);
    }

    #[test]
    fn secret_changes_reach_the_objects_that_use_the_secret() {
        let (store, mut writer) = reflector::store::<FlashbackRepository>();
        let with_ref = fixtures::repo("team-a", "with-ref");
        let mut without_ref = fixtures::repo("team-a", "without-ref");
        without_ref.spec.credentials_secret_ref = None;
        let other_namespace = fixtures::repo("team-b", "elsewhere");
        for repo in [&with_ref, &without_ref, &other_namespace] {
            writer.apply_watcher_event(&watcher::Event::Apply(repo.clone()));
        }
        let default: SecretName = "flashback-system/default".parse().unwrap();
        let names = |secret: &str| {
            let mut names: Vec<String> =
                users_of_secret(&store, &secret.parse().unwrap(), Some(&default))
                    .into_iter()
                    .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                    .collect();
            names.sort();
            names
        };
        assert_eq!(names("team-a/flashback-token"), ["team-a/with-ref"]);
        assert_eq!(names("team-b/flashback-token"), ["team-b/elsewhere"]);
        assert_eq!(names("flashback-system/default"), ["team-a/without-ref"]);
        assert!(names("team-a/unrelated").is_empty());
    }
}

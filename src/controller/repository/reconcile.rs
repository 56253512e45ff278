//! One reconcile of one `FlashbackRepository`, spelled out as steps: credentials → observe
//! the remote → decide (pure, `plan`) → act → write status (pure, `status`) → events.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::controller::context::{Context, Failpoint};
use crate::controller::create_marker::CreateAttempt;
use crate::controller::credentials::{self, Credentials, CredentialsError};
use crate::controller::error::Error;
use crate::controller::plan::{self, Decision, Stall};
use crate::controller::status::{self, State};
use crate::crd::{
    DeletionPolicy, FINALIZER, FlashbackRepository, FlashbackRepositoryStatus, ManagementPolicy,
    annotations,
};
use flashback_client::ApiError;

/// The entry point kube-runtime calls for every object that needs a look.
pub async fn reconcile(repo: Arc<FlashbackRepository>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = repo.namespace().unwrap_or_default();
    let api: Api<FlashbackRepository> = Api::namespaced(ctx.kube.clone(), &namespace);
    let key = object_key(&repo);
    // Waiting for a turn is not reconcile time.
    let _turn = ctx.fairness.turn(&namespace).await;
    let started = Instant::now();
    let step = Reconcile::new(&api, &ctx, &repo);
    let result = if repo.metadata.deletion_timestamp.is_some() {
        step.delete().await
    } else {
        step.apply().await
    };
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    ctx.metrics
        .reconciled(result.as_ref().err().map(Error::label), started.elapsed());
    result
}

/// Called by kube-runtime when `reconcile` failed: back off per object.
pub fn error_policy(repo: Arc<FlashbackRepository>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next(&object_key(&repo), error.retry_after());
    if error.is_stale() {
        // Not a failure: the watch brings the new version. Backing off still bounds a cache
        // that stays behind.
        debug!(name = repo.name_any(), retry_in = ?delay, "the object changed while it was reconciled; looking again");
    } else {
        warn!(
            namespace = repo.namespace().unwrap_or_default(),
            name = repo.name_any(),
            error = %error,
            reason = error.label(),
            retry_in = ?delay,
            "reconcile failed"
        );
    }
    Action::requeue(delay)
}

/// Whether an object of `store` other than `repo` manages the remote repository `repo_id`
/// (see [`plan::holds`]).
pub(crate) fn held_by_another(
    store: &Store<FlashbackRepository>,
    repo: &FlashbackRepository,
    repo_id: &str,
) -> bool {
    store
        .find(|other| plan::holds(other, repo, repo_id))
        .is_some()
}

/// The key of an object's backoff: its uid.
pub(crate) fn object_key(repo: &FlashbackRepository) -> String {
    repo.uid().unwrap_or_else(|| {
        format!(
            "{}/{}",
            repo.namespace().unwrap_or_default(),
            repo.name_any()
        )
    })
}

/// One reconcile of one object. It keeps the object as its own writes left it (status and
/// resourceVersion), so a later step compares with what the API server holds, and its
/// conditional writes still notice a change made by anyone else.
struct Reconcile<'a> {
    api: &'a Api<FlashbackRepository>,
    ctx: &'a Context,
    repo: FlashbackRepository,
}

impl<'a> Reconcile<'a> {
    fn new(
        api: &'a Api<FlashbackRepository>,
        ctx: &'a Context,
        repo: &FlashbackRepository,
    ) -> Self {
        Self {
            api,
            ctx,
            repo: repo.clone(),
        }
    }

    async fn apply(mut self) -> Result<Action, Error> {
        let credentials = match self.credentials().await? {
            Ok(credentials) => credentials,
            Err(problem) => return self.stall(None, credentials_stall(&problem)).await,
        };
        let workspace = self.repo.spec.workspace_id.clone();
        // A person asked for a look now, or an earlier create's outcome is unknown: no
        // listing from before this reconcile will do.
        let fetched_after = (self.repo.pending_reconcile_request().is_some()
            || self.repo.create_started())
        .then(Instant::now);
        let listing = match self
            .ctx
            .remote
            .repos(&credentials, &workspace, fetched_after)
            .await
        {
            Ok(listing) => listing,
            Err(error) => return self.remote_failed(None, "list repositories", error).await,
        };

        let desired = plan::desired(&self.repo);
        match plan::decide(&self.repo, &listing, |id| self.held_by_another(id)) {
            Decision::Create => {
                // Before the create: the finalizer (first time only), then, conditional on the
                // resourceVersion read, the status says Creating and records what this attempt
                // sends. That write succeeding proves the decision was made on the latest
                // version of the object, not on a cache that missed an earlier create's
                // result; the record lets a later look tell this attempt's repository from
                // anyone else's if the answer is lost.
                let attempt = CreateAttempt::next(
                    CreateAttempt::read(&self.repo).as_ref(),
                    &desired,
                    k8s_openapi::jiff::Timestamp::now(),
                );
                let creating = State::Progressing {
                    reason: "Creating",
                    message: "creating the remote repository".into(),
                };
                self.write(None, &creating, Attempt::Begin(attempt), Write::Conditional)
                    .await?;
                let repo_id = match self
                    .ctx
                    .remote
                    .create(&credentials, &workspace, &desired)
                    .await
                {
                    Ok(id) => id,
                    Err(error @ ApiError::NameAlreadyUsed { .. }) => {
                        return self.name_taken(&credentials, &desired.name, error).await;
                    }
                    Err(error) => {
                        // The listing this create was decided on was fresh whenever an earlier
                        // attempt's outcome was unknown: a refusal now proves nothing of this
                        // object's exists, and the record must not make a later repository of
                        // this name look like ours.
                        if let Some(problem) = api_stall(&error, &self.repo) {
                            return self.stall_resolved(problem).await;
                        }
                        return self
                            .remote_failed(None, "create the repository", error)
                            .await;
                    }
                };
                if self.ctx.failpoint == Some(Failpoint::PauseAfterRemoteCreate) {
                    info!(repo_id, "failpoint pause-after-remote-create reached");
                    std::future::pending::<()>().await;
                }
                // The new id is a fact, whatever happened to the object meanwhile: one write
                // records it, says Ready and drops the attempt, unconditionally. (A spec
                // changed meanwhile has a new generation, which this status does not claim.)
                let synced = State::Ready {
                    reason: "Synced",
                    message: "the remote repository matches the spec".into(),
                };
                self.write(
                    Some(repo_id.clone()),
                    &synced,
                    Attempt::Resolved,
                    Write::Unconditional,
                )
                .await?;
                self.publish(
                    EventType::Normal,
                    "Created",
                    format!("created remote repository {repo_id}"),
                )
                .await;
                Ok(Action::await_change())
            }
            Decision::Update { repo_id } => {
                self.announce_adoption(&repo_id).await;
                let drift = plan::is_drift(&self.repo);
                self.progress(Some(&repo_id), "Updating", "updating the remote repository")
                    .await?;
                if let Err(error) = self
                    .ctx
                    .remote
                    .update(&credentials, &workspace, &repo_id, &desired)
                    .await
                {
                    return self
                        .remote_failed(Some(repo_id), "update the repository", error)
                        .await;
                }
                let (reason, note) = if drift {
                    (
                        "DriftCorrected",
                        format!(
                            "remote repository {repo_id} had changed outside the operator and was set back to the spec"
                        ),
                    )
                } else {
                    (
                        "Updated",
                        format!(
                            "updated remote repository {repo_id} to generation {}",
                            self.repo.metadata.generation.unwrap_or_default()
                        ),
                    )
                };
                self.publish(EventType::Normal, reason, note).await;
                self.synced(repo_id).await
            }
            Decision::InSync { repo_id } => {
                self.announce_adoption(&repo_id).await;
                self.synced(repo_id).await
            }
            Decision::Observe { repo_id, in_sync } => {
                if in_sync {
                    return self
                        .ready(
                            repo_id,
                            "Observed",
                            "observed the remote repository; it matches the spec",
                        )
                        .await;
                }
                let state = State::Waiting {
                    reason: "OutOfSync",
                    message: "observed the remote repository; it differs from the spec, and \
                              managementPolicy ObserveOnly never writes"
                        .into(),
                };
                self.write_status(Some(repo_id), &state).await?;
                Ok(Action::await_change())
            }
            Decision::Paused { repo_id, in_sync } => {
                let state = if in_sync {
                    State::Ready {
                        reason: "Synced",
                        message: "the remote repository matches the spec; remote writes are paused"
                            .into(),
                    }
                } else {
                    State::Waiting {
                        reason: "Paused",
                        message: format!(
                            "remote writes are paused by the annotation {}: \"true\"; the remote repository {}",
                            annotations::PAUSED,
                            if repo_id.is_some() {
                                "differs from the spec"
                            } else {
                                "has not been created"
                            }
                        ),
                    }
                };
                self.write_status(repo_id, &state).await?;
                Ok(Action::await_change())
            }
            Decision::Stall(problem) => self.stall(None, problem).await,
        }
    }

    /// The object is being deleted: clean up what it owns in Flashback, then release it.
    async fn delete(mut self) -> Result<Action, Error> {
        if !self.has_finalizer() {
            return Ok(Action::await_change());
        }
        let action = self.cleanup().await?;
        self.remove_finalizer().await?;
        Ok(action)
    }

    async fn cleanup(&mut self) -> Result<Action, Error> {
        let keep = if self.repo.spec.management_policy == ManagementPolicy::ObserveOnly {
            Some("managementPolicy is ObserveOnly")
        } else if self.repo.spec.deletion_policy == DeletionPolicy::Orphan {
            Some("deletionPolicy is Orphan")
        } else if self.repo.is_paused() {
            Some("remote writes are paused")
        } else {
            None
        };
        if let Some(why) = keep {
            self.publish(
                EventType::Normal,
                "Orphaned",
                format!("left the remote repository in Flashback: {why}"),
            )
            .await;
            return Ok(Action::await_change());
        }

        // Only an id this object verified in its workspace and recorded in its status is
        // ever deleted; the adoption annotation alone names nothing to delete.
        let known = self.repo.status.as_ref().and_then(|s| s.repo_id.clone());
        let attempt = CreateAttempt::read(&self.repo);
        // Nothing was ever created for this object: release it, credentials or not.
        if known.is_none() && !self.repo.create_started() {
            return Ok(Action::await_change());
        }
        let credentials = match self.credentials().await? {
            Ok(credentials) => credentials,
            Err(problem) => return self.cleanup_without_credentials(&problem, known).await,
        };
        let workspace = self.repo.spec.workspace_id.clone();
        // A create whose outcome was never recorded (a crash, a status write that failed) may
        // have made a repository: look with a listing from after it, so nothing leaks.
        let fetched_after = attempt.is_some().then(Instant::now);
        let listing = match self
            .ctx
            .remote
            .repos(&credentials, &workspace, fetched_after)
            .await
        {
            Ok(listing) => listing,
            Err(error) => return Err(self.deletion_failed(error).await),
        };
        let mut doomed: Vec<String> = Vec::new();
        for remote in listing.iter() {
            let recorded = known.as_deref() == Some(remote.id.as_str());
            let made = attempt.as_ref().is_some_and(|a| a.made(remote));
            if !(recorded || made) {
                continue;
            }
            if self.held_by_another(&remote.id) {
                self.publish(
                    EventType::Warning,
                    "LeftInPlace",
                    format!(
                        "left remote repository {} in Flashback: another FlashbackRepository \
                         manages it",
                        remote.id
                    ),
                )
                .await;
                continue;
            }
            doomed.push(remote.id.clone());
        }
        // Not listed in the object's workspace: already gone, or never this object's to delete.
        for repo_id in doomed {
            if let Err(error) = self
                .ctx
                .remote
                .delete(&credentials, &workspace, &repo_id)
                .await
            {
                return Err(self.deletion_failed(error).await);
            }
            self.publish(
                EventType::Normal,
                "Deleted",
                format!("deleted remote repository {repo_id}"),
            )
            .await;
        }
        Ok(Action::await_change())
    }

    /// A delete whose credentials are missing or broken. It waits for a person, unless the
    /// whole namespace is going and its Secret went first (the order a namespace deletion
    /// often takes): then nobody can fix it, and waiting would hang the namespace's deletion
    /// forever, so the object is released and the operator's log names what was left in
    /// Flashback. (An Event cannot say it: a terminating namespace takes no new objects.)
    async fn cleanup_without_credentials(
        &mut self,
        problem: &CredentialsError,
        known: Option<String>,
    ) -> Result<Action, Error> {
        if matches!(problem, CredentialsError::SecretNotFound(_))
            && self.namespace_terminating().await
        {
            let left = known.as_deref().map_or_else(
                || "any repository it may have created".to_string(),
                |id| format!("remote repository {id}"),
            );
            warn!(
                namespace = self.repo.namespace().unwrap_or_default(),
                name = self.repo.name_any(),
                remote_name = self.repo.remote_name(),
                workspace = self.repo.spec.workspace_id,
                repo_id = known.as_deref().unwrap_or(""),
                "the namespace is being deleted and {problem}: released without deleting; \
                 {left} is left in Flashback"
            );
            return Ok(Action::await_change());
        }
        let mut problem = credentials_stall(problem);
        problem.message.push_str(
            "; the remote repository is kept until then (set deletionPolicy: Orphan \
             to release the object without deleting it)",
        );
        self.stall(None, problem.clone()).await?;
        Err(Error::CleanupBlocked(problem.message))
    }

    /// Whether the object's namespace is being deleted. Not knowing (the operator may not
    /// read namespaces) counts as no.
    async fn namespace_terminating(&self) -> bool {
        let namespaces: Api<Namespace> = Api::all(self.ctx.kube.clone());
        let namespace = self.repo.namespace().unwrap_or_default();
        match namespaces.get_opt(&namespace).await {
            Ok(found) => found.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
            Err(error) => {
                debug!(error = %error, "cannot tell whether the namespace is being deleted");
                false
            }
        }
    }

    /// Whether another object manages the remote repository `repo_id`.
    fn held_by_another(&self, repo_id: &str) -> bool {
        held_by_another(&self.ctx.store, &self.repo, repo_id)
    }

    /// `POST /repo` answered that the name is taken. A listing from after the answer tells
    /// whether it is this object's own earlier attempt (the next reconcile then claims it);
    /// if the workspace shows no repository of that name at all, another workspace of the
    /// organisation uses it, and only a person can fix that.
    async fn name_taken(
        &mut self,
        credentials: &Credentials,
        name: &str,
        refusal: ApiError,
    ) -> Result<Action, Error> {
        let workspace = self.repo.spec.workspace_id.clone();
        let listing = match self
            .ctx
            .remote
            .repos(credentials, &workspace, Some(Instant::now()))
            .await
        {
            Ok(listing) => listing,
            Err(error) => return self.remote_failed(None, "list repositories", error).await,
        };
        if listing.iter().any(|r| r.name == name) {
            // The next look, after this object's backoff (a server that answers otherwise
            // each time gets no faster loop), decides on this listing.
            debug!("the name is taken in the workspace; deciding again on a fresh listing");
            return Err(Error::Remote {
                operation: "create the repository",
                source: refusal,
            });
        }
        // Nothing of this name in the workspace: no earlier attempt of ours made it.
        self.stall_resolved(plan::Stall {
            reason: "NameAlreadyUsed",
            message: format!(
                "the Flashback API refused the name {name:?}: another repository of the \
                 organisation uses it, outside workspace {workspace}; choose another spec.name"
            ),
        })
        .await
    }

    /// An Event when the adoption annotation makes this object take over `repo_id`, naming the
    /// repository it managed before, if any, which is left in Flashback as it is.
    async fn announce_adoption(&self, repo_id: &str) {
        let known = self.repo.status.as_ref().and_then(|s| s.repo_id.as_deref());
        if known == Some(repo_id) || self.repo.adopted_repo_id() != Some(repo_id) {
            return;
        }
        let note = match known {
            Some(previous) => format!(
                "adopted remote repository {repo_id}; the repository it managed before, \
                 {previous}, is left in Flashback as it is"
            ),
            None => format!("adopted remote repository {repo_id}"),
        };
        self.publish(EventType::Normal, "Adopted", note).await;
    }

    async fn credentials(&self) -> Result<Result<Credentials, CredentialsError>, Error> {
        Ok(self.ctx.credentials_of(&self.repo).await?)
    }

    /// Reports a failed remote delete on the object; the finalizer stays.
    async fn deletion_failed(&mut self, error: ApiError) -> Error {
        let message = format!("cannot delete the remote repository: {error}");
        self.publish(EventType::Warning, "DeleteFailed", message.clone())
            .await;
        let state = match api_stall(&error, &self.repo) {
            Some(problem) => State::Stalled {
                reason: problem.reason,
                message: problem.message,
            },
            None => State::Progressing {
                reason: "DeleteFailed",
                message,
            },
        };
        if let Err(status_error) = self.write_status(None, &state).await {
            return status_error;
        }
        if error.is_transient() {
            Error::Remote {
                operation: "delete the repository",
                source: error,
            }
        } else {
            Error::CleanupBlocked(state.message().to_string())
        }
    }

    /// Handles a failed remote call during apply: a stall for a person, or a retry.
    async fn remote_failed(
        &mut self,
        repo_id: Option<String>,
        operation: &'static str,
        error: ApiError,
    ) -> Result<Action, Error> {
        if let Some(problem) = api_stall(&error, &self.repo) {
            return self.stall(repo_id, problem).await;
        }
        let state = State::Progressing {
            reason: "RemoteUnavailable",
            message: format!("could not {operation}, will retry: {error}"),
        };
        self.write_status(repo_id, &state).await?;
        Err(Error::Remote {
            operation,
            source: error,
        })
    }

    async fn stall(&mut self, repo_id: Option<String>, problem: Stall) -> Result<Action, Error> {
        let state = State::Stalled {
            reason: problem.reason,
            message: problem.message,
        };
        self.write_status(repo_id, &state).await?;
        // A person has to act: look again on a change, or when a resync sees the remote move.
        Ok(Action::await_change())
    }

    /// Stalled by a refused create, which proves no attempt of this object made anything: the
    /// attempt's record goes in the same write.
    async fn stall_resolved(&mut self, problem: Stall) -> Result<Action, Error> {
        let state = State::Stalled {
            reason: problem.reason,
            message: problem.message,
        };
        self.write(None, &state, Attempt::Resolved, Write::Conditional)
            .await?;
        Ok(Action::await_change())
    }

    async fn progress(
        &mut self,
        repo_id: Option<&str>,
        reason: &'static str,
        message: &str,
    ) -> Result<(), Error> {
        let state = State::Progressing {
            reason,
            message: message.to_string(),
        };
        self.write_status(repo_id.map(str::to_string), &state).await
    }

    async fn ready(
        &mut self,
        repo_id: String,
        reason: &'static str,
        message: &str,
    ) -> Result<Action, Error> {
        let state = State::Ready {
            reason,
            message: message.to_string(),
        };
        self.write_status(Some(repo_id), &state).await?;
        Ok(Action::await_change())
    }

    /// Ready: the remote repository matches the spec.
    async fn synced(&mut self, repo_id: String) -> Result<Action, Error> {
        self.ready(repo_id, "Synced", "the remote repository matches the spec")
            .await
    }

    /// Writes the status, conditional on the resourceVersion read. A status that records a
    /// repository id resolves any create attempt: its outcome is known.
    async fn write_status(&mut self, repo_id: Option<String>, state: &State) -> Result<(), Error> {
        let attempt = if repo_id.is_some() {
            Attempt::Resolved
        } else {
            Attempt::Keep
        };
        self.write(repo_id, state, attempt, Write::Conditional)
            .await
    }

    /// Writes the status through the status subresource, only when it changed, and publishes
    /// an Event for every Stalled transition: a new stall reason, or the stall resolved.
    /// Before the first write that records a repository, or begins a create, the finalizer
    /// goes on, so nothing the object owns in Flashback can outlive it.
    async fn write(
        &mut self,
        repo_id: Option<String>,
        state: &State,
        attempt: Attempt,
        write: Write,
    ) -> Result<(), Error> {
        if repo_id.is_some() || matches!(attempt, Attempt::Begin(_)) {
            self.ensure_finalizer().await?;
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut next = status::next(&self.repo, repo_id, state, &now);
        match attempt {
            Attempt::Keep => {}
            Attempt::Begin(attempt) => next.create_attempt = Some(attempt),
            Attempt::Resolved => next.create_attempt = None,
        }
        if self.repo.status.as_ref() == Some(&next) {
            return Ok(());
        }
        let was_stalled = status::stalled_reason(self.repo.status.as_ref()).map(str::to_string);
        match state {
            State::Stalled { reason, message } if was_stalled.as_deref() != Some(reason) => {
                self.publish(EventType::Warning, reason, message.clone())
                    .await;
            }
            State::Stalled { .. } => {}
            _ => {
                if let Some(was) = was_stalled {
                    let note = format!("no longer stalled ({was}): {}", state.message());
                    self.publish(EventType::Normal, "StallResolved", note).await;
                }
            }
        }
        // The statistics belong to the stats task: leave them out so a status computed from a
        // cached object never writes older figures back. The resourceVersion makes the write
        // conditional: a status decided on a cache that missed a change is refused, not written.
        let mut body = json!({
            "status": FlashbackRepositoryStatus {
                stats: None,
                ..next.clone()
            },
        });
        if next.create_attempt.is_none() && self.repo.create_started() {
            // A merge patch leaves out what it does not name: the record goes by name.
            body["status"]["createAttempt"] = serde_json::Value::Null;
        }
        if write == Write::Conditional {
            body["metadata"] = json!({ "resourceVersion": self.repo.resource_version() });
        }
        let fresh = self
            .api
            .patch_status(
                &self.repo.name_any(),
                &PatchParams::default(),
                &Patch::Merge(body),
            )
            .await
            .map_err(Error::from_write)?;
        match write {
            Write::Conditional => self.repo = fresh,
            Write::Unconditional => {
                self.repo.status = Some(next);
                self.after_unconditional_write(fresh);
            }
        }
        Ok(())
    }

    fn has_finalizer(&self) -> bool {
        self.repo.finalizers().iter().any(|f| f == FINALIZER)
    }

    /// Adds the finalizer, conditional on the resourceVersion read. The operator's own
    /// finalizer is left out of the watch predicate, so this triggers no second reconcile.
    async fn ensure_finalizer(&mut self) -> Result<(), Error> {
        if self.has_finalizer() {
            return Ok(());
        }
        let mut finalizers = self.repo.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        self.set_finalizers(finalizers).await
    }

    /// Releases the object, conditional on the resourceVersion read.
    async fn remove_finalizer(&mut self) -> Result<(), Error> {
        let finalizers = self
            .repo
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        self.set_finalizers(finalizers).await
    }

    async fn set_finalizers(&mut self, finalizers: Vec<String>) -> Result<(), Error> {
        let patch = json!({
            "metadata": {
                "resourceVersion": self.repo.resource_version(),
                "finalizers": finalizers,
            }
        });
        self.repo = self
            .api
            .patch(
                &self.repo.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(Error::from_write)?;
        Ok(())
    }

    /// After a write that was not conditional, the object this reconcile decided on stays its
    /// view. It takes the new resourceVersion only when nothing a decision depends on changed
    /// meanwhile, so that a later conditional write still notices such a change.
    fn after_unconditional_write(&mut self, fresh: FlashbackRepository) {
        if super::worth_a_reconcile(&fresh) == super::worth_a_reconcile(&self.repo) {
            self.repo.metadata.resource_version = fresh.metadata.resource_version;
        }
    }

    async fn publish(&self, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(error) = self
            .ctx
            .recorder
            .publish(&event, &self.repo.object_ref(&()))
            .await
        {
            warn!(error = %error, reason, "could not publish an Event");
        }
    }
}

/// What a status write does to the record of a create attempt.
enum Attempt {
    Keep,
    Begin(CreateAttempt),
    /// The outcome is known (recorded, or refused).
    Resolved,
}

/// Whether a status write carries the resourceVersion it was decided on.
#[derive(PartialEq, Eq)]
enum Write {
    Conditional,
    /// Only for facts that no change to the object can make stale (a repository created).
    Unconditional,
}

fn credentials_stall(problem: &CredentialsError) -> Stall {
    Stall {
        reason: match problem {
            CredentialsError::SecretNotFound(_) => "SecretNotFound",
            CredentialsError::TokenMissing(_) => "TokenMissing",
            CredentialsError::TokenNotText(_) => "TokenNotText",
            CredentialsError::InvalidApiUrl(..) => "InvalidApiUrl",
            CredentialsError::ApiUrlNotAllowed(..) => "ApiUrlNotAllowed",
            CredentialsError::SecretForbidden(_) => "SecretForbidden",
            CredentialsError::NoDefault => "NoCredentials",
        },
        message: problem.to_string(),
    }
}

/// The stall an API error means, or `None` when it is worth a retry.
fn api_stall(error: &ApiError, repo: &FlashbackRepository) -> Option<Stall> {
    let error = match error {
        ApiError::RetriesExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    // An answer the client cannot read (a proxy's error page, say) is worth another try.
    if error.is_transient() || matches!(error, ApiError::Decode { .. }) {
        return None;
    }
    let secret = credentials::secret_for(repo, None)
        .map(|name| format!("the Secret {name}"))
        .unwrap_or_else(|_| "the operator's default credentials".into());
    Some(match error {
        ApiError::Unauthorized => Stall {
            reason: "Unauthorized",
            message: format!("the Flashback API rejected the token from {secret}"),
        },
        ApiError::Forbidden { message } => Stall {
            reason: "Forbidden",
            message: format!(
                "the Flashback API does not let the token from {secret} do this: {message}"
            ),
        },
        ApiError::ResponseTooLarge { .. } => Stall {
            reason: "ResponseTooLarge",
            message: format!("the Flashback API named by {secret} cannot be used: {error}"),
        },
        ApiError::Config { reason, .. } => Stall {
            reason: "InvalidCredentials",
            message: format!("the credentials from {secret} cannot be used: {reason}"),
        },
        ApiError::NameAlreadyUsed { .. } => Stall {
            reason: "NameAlreadyUsed",
            message: format!(
                "the Flashback API refused the name {:?}: another repository of the organisation uses it",
                repo.remote_name()
            ),
        },
        ApiError::InvalidSpec { code, message } => Stall {
            reason: "SpecRejected",
            message: format!("the Flashback API refused the repository with {code}: {message}"),
        },
        ApiError::NotFound { message } => Stall {
            reason: "SpecRejected",
            message: format!("the Flashback API refused the repository with NOT_FOUND: {message}"),
        },
        other => Stall {
            reason: "SpecRejected",
            message: format!("the Flashback API refused the repository: {other}"),
        },
    })
}

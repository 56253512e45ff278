//! One reconcile of one `FlashbackRepository`, as named steps: **observe** (credentials, then
//! the workspace listing), **decide** (pure: [`plan::decide`]), **act** (one method per
//! decision: create, update, report), **report** (the status, pure: [`status::next`], and
//! Events). Every rule is in [`plan`]; this file only carries out what it says.

use std::time::Instant;

use crate::controller::events::EventType;
use crate::controller::known_workspaces::Create;
use crate::controller::organisation_names::Kind;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, warn};

use crate::controller::answers;
use crate::controller::conditions::State;
use crate::controller::context::Context;
use crate::controller::create_attempt::CreateAttempt;
use crate::controller::credentials::{Credentials, CredentialsError};
use crate::controller::error::Error;
use crate::controller::events;
use crate::controller::failpoint::{self, Failpoint};
use crate::controller::finalizer;
use crate::controller::ownership::Identity;
use crate::controller::reason::Reason;
use crate::controller::repository::create_attempt;
use crate::controller::repository::plan::{self, Decision};
use crate::controller::repository::{held_by_another, status};
use crate::controller::stall::{self, Stall, credentials_stall};
use crate::controller::status_write::{self, Announce, Write};
use crate::controller::watches;
use crate::controller::workspace::Workspace;
use crate::crd::FlashbackRepository;
use flashback_client::{ApiError, Repo, RepoWrite};

/// One reconcile of one object. It keeps the object as its own writes left it (status and
/// resourceVersion), so a later step compares with what the API server holds, and its
/// conditional writes still notice a change made by anyone else.
pub struct Reconcile<'a> {
    api: &'a Api<FlashbackRepository>,
    ctx: &'a Context,
    repo: FlashbackRepository,
    /// The API and credentials this reconcile acts with, once observed: an id it records is
    /// recorded as confirmed with them.
    identity: Option<Identity>,
}

/// What the observe step found: the credentials to act with and the workspace's listing.
struct Observed {
    credentials: Credentials,
    identity: Identity,
    listing: Workspace,
}

impl<'a> Reconcile<'a> {
    pub fn new(
        api: &'a Api<FlashbackRepository>,
        ctx: &'a Context,
        repo: &FlashbackRepository,
    ) -> Self {
        Self {
            api,
            ctx,
            repo: repo.clone(),
            identity: None,
        }
    }

    /// The object exists: observe → decide → act → report.
    pub async fn apply(mut self) -> Result<Action, Error> {
        if let Some(problem) = plan::foreign_bucket(&self.repo, &self.ctx.everyone.buckets.state())
        {
            return self.report(None, problem.state()).await;
        }
        if plan::names_buckets(&self.repo) {
            match self.resolve_buckets().await? {
                Ok(buckets) => self.repo.spec.buckets = buckets,
                Err(waiting) => return self.report(None, waiting).await,
            }
            if let Some(problem) =
                plan::foreign_bucket(&self.repo, &self.ctx.everyone.buckets.state())
            {
                return self.report(None, problem.state()).await;
            }
        }
        let observed = match self.observe().await? {
            Ok(observed) => observed,
            Err(outcome) => return outcome,
        };
        let identity = observed.identity;
        let decision = plan::decide(&self.repo, &observed.listing, &identity, |id| {
            self.held_by_another(id, &identity)
        });
        let credentials = &observed.credentials;
        match decision {
            Decision::Create => self.create(credentials).await,
            Decision::Update { repo_id } => {
                let listed = observed.listing.by_id(&repo_id).cloned();
                self.update(credentials, repo_id, listed.as_ref()).await
            }
            Decision::InSync { repo_id } => {
                self.announce_adoption(&repo_id).await;
                self.report(Some(repo_id), plan::synced()).await
            }
            Decision::Observe { repo_id, in_sync } => {
                self.report(Some(repo_id), plan::observed(in_sync)).await
            }
            Decision::Paused { repo_id, in_sync } => {
                let state = plan::paused(repo_id.is_some(), in_sync);
                self.report(repo_id, state).await
            }
            Decision::Stall(problem) => self.report(None, problem.state()).await,
        }
    }

    /// Observe: the object's credentials, then its workspace's listing. A problem with either
    /// is reported on the object, and ends the reconcile with that outcome.
    async fn observe(&mut self) -> Result<Result<Observed, Result<Action, Error>>, Error> {
        let credentials = match self.credentials().await? {
            Ok(credentials) => credentials,
            Err(problem) => {
                let stall = credentials_stall(&problem);
                return Ok(Err(self.report(None, stall.state()).await));
            }
        };
        let identity = self.ctx.identity_of(&self.repo, &credentials);
        self.identity = Some(identity.clone());
        // A person asked for a look now, or an earlier create's outcome is unknown: no
        // listing from before this reconcile will do.
        let fetched_after = (self.repo.pending_reconcile_request().is_some()
            || self.repo.create_started())
        .then(Instant::now);
        match self.list(&credentials, fetched_after).await {
            Ok(listing) => Ok(Ok(Observed {
                credentials,
                identity,
                listing,
            })),
            Err(error) => Ok(Err(self
                .remote_failed(None, "list repositories", error)
                .await)),
        }
    }

    /// Observe the FlashbackBuckets the spec names by `bucketRef`, read fresh (a bucket's
    /// change is what woke this reconcile): the spec's buckets with their ids, or the state it
    /// waits in.
    async fn resolve_buckets(
        &self,
    ) -> Result<Result<Vec<crate::crd::RepositoryBucket>, State>, Error> {
        let namespace = self.repo.namespace().unwrap_or_default();
        let buckets: Api<crate::crd::FlashbackBucket> =
            Api::namespaced(self.ctx.kube.clone(), &namespace);
        let mut found = std::collections::HashMap::new();
        for reference in self
            .repo
            .spec
            .buckets
            .iter()
            .filter_map(|b| b.bucket_ref.as_ref())
        {
            let bucket = buckets.get_opt(&reference.name).await?;
            found.insert(
                reference.name.clone(),
                plan::NamedBucket::of(bucket.as_ref()),
            );
        }
        Ok(plan::resolve_buckets(&self.repo, |name| {
            found
                .get(name)
                .cloned()
                .unwrap_or(plan::NamedBucket::Missing)
        })
        .map(|resolved| resolved.spec.buckets))
    }

    /// Act: create the remote repository.
    ///
    /// Before the create: the finalizer (first time only), then, conditional on the
    /// resourceVersion read, the status says Creating and records what this attempt sends.
    /// That write succeeding proves the decision was made on the latest version of the object,
    /// not on a cache that missed an earlier create's result; the record lets a later look tell
    /// this attempt's repository from anyone else's if the answer is lost.
    async fn create(&mut self, credentials: &Credentials) -> Result<Action, Error> {
        // A workspace the organisation does not have: nothing to send (one listing per
        // credential serves every create for a while).
        let workspace = &self.repo.spec.workspace_id;
        let ctx = self.ctx;
        let check = Create {
            workspace_id: workspace,
            kind: "repository",
            own_credentials: self.repo.spec.credentials_secret_ref.is_some(),
        };
        if let Some(stall) = ctx
            .workspaces
            .missing(&ctx.remote, credentials, check)
            .await
        {
            return self.report(None, stall.state()).await;
        }
        let desired = plan::desired(&self.repo);
        let attempt = create_attempt::next(
            create_attempt::read(&self.repo).as_ref(),
            &desired,
            k8s_openapi::jiff::Timestamp::now(),
        );
        // Observed before any create: the API and credentials this attempt goes to.
        let attempt = match &self.identity {
            Some(identity) => identity.stamp(attempt),
            None => attempt,
        };
        self.write(
            None,
            &plan::creating(),
            Attempt::Begin(attempt.clone()),
            Write::Conditional,
        )
        .await?;
        if !self.serves() {
            return Ok(Action::await_change());
        }
        let workspace = &self.repo.spec.workspace_id;
        let repo_id = match self
            .ctx
            .remote
            .create(credentials, workspace, &desired)
            .await
        {
            Ok(id) => id,
            Err(error @ ApiError::NameAlreadyUsed { .. }) => {
                return self.name_taken(credentials, &desired, error).await;
            }
            Err(error) => {
                // The listing this create was decided on was fresh whenever an earlier
                // attempt's outcome was unknown: a refusal now proves nothing of this object's
                // exists, and the record must not make a later repository of this name look
                // like ours.
                let quota = stall::create_quota_stall(&error, "repository", &desired.name);
                if let Some(problem) = quota.or_else(|| plan::api_stall(&error, &self.repo)) {
                    return self.stall_resolved(problem).await;
                }
                return self
                    .remote_failed(None, "create the repository", error)
                    .await;
            }
        };
        if !answers::plausible_id(&repo_id) {
            let stall = answers::implausible_answer("new repository id");
            return self.report(None, stall.state()).await;
        }
        failpoint::pause_at(Failpoint::PauseAfterRemoteCreate).await;
        // Relabelled to another shard while the create was on its way: that shard claims what
        // this attempt made (the record is on the object), and this one writes nothing more.
        if !self.serves() {
            return Ok(Action::await_change());
        }
        // An answer is not proof (a tenant may point its credentials at a server that answers
        // another tenant's id): the id counts once a listing with the same credentials shows
        // it as what this attempt sent. Until then the attempt stays recorded, and the next
        // look, on a fresh listing, claims what the attempt made, if anything.
        match self
            .ctx
            .remote
            .confirm(credentials, workspace, &repo_id)
            .await
        {
            Ok(Some(remote)) if create_attempt::made(&attempt, &remote) => {}
            Ok(_) => {
                return Err(Error::NotYet(
                    "the repository id the API answered is not listed as the repository this \
                     create sent; looking again"
                        .into(),
                ));
            }
            Err(error) => {
                return self
                    .remote_failed(None, "confirm the created repository", error)
                    .await;
            }
        }
        if !self.serves() {
            return Ok(Action::await_change());
        }
        // The new id is a fact, whatever happened to the object meanwhile: one write records
        // it, says Ready and drops the attempt, unconditionally. (A spec changed meanwhile has
        // a new generation, which this status does not claim.)
        self.write(
            Some(repo_id.clone()),
            &plan::synced(),
            Attempt::Resolved,
            Write::Unconditional,
        )
        .await?;
        let note = format!("created remote repository {repo_id}");
        self.publish(EventType::Normal, Reason::Created, note).await;
        Ok(Action::await_change())
    }

    /// Act: send the whole spec to a repository that differs from it, keeping what the spec
    /// has no say in as `listed` shows it.
    async fn update(
        &mut self,
        credentials: &Credentials,
        repo_id: String,
        listed: Option<&Repo>,
    ) -> Result<Action, Error> {
        self.announce_adoption(&repo_id).await;
        let drift = plan::is_drift(&self.repo);
        let desired = plan::desired_over(&self.repo, listed);
        self.write_status(Some(repo_id.clone()), &plan::updating())
            .await?;
        if !self.serves() {
            return Ok(Action::await_change());
        }
        let workspace = &self.repo.spec.workspace_id;
        if let Err(error) = self
            .ctx
            .remote
            .update(credentials, workspace, &repo_id, &desired)
            .await
        {
            return self
                .remote_failed(Some(repo_id), "update the repository", error)
                .await;
        }
        let (reason, note) = plan::updated(&self.repo, drift, &repo_id);
        self.publish(EventType::Normal, reason, note).await;
        self.report(Some(repo_id), plan::synced()).await
    }

    /// Report: write the state (and the id, when known); wait for the next change.
    async fn report(&mut self, repo_id: Option<String>, state: State) -> Result<Action, Error> {
        self.write_status(repo_id, &state).await?;
        // Nothing left to do: look again on a change, or when a resync sees the remote move.
        Ok(Action::await_change())
    }

    /// The object is being deleted: clean up what it owns in Flashback, then release it.
    pub async fn delete(mut self) -> Result<Action, Error> {
        if !self.has_finalizer() {
            return Ok(Action::await_change());
        }
        // The keys of its FlashbackAccessKeys are revoked first (they see this deletion and
        // revoke them while these credentials still exist): a repository left in Flashback
        // must not keep live keys that nobody manages. A paused one writes nothing, keys
        // included, and waits for nothing.
        // Not in a namespace being deleted: its Secrets may be gone, and nothing could revoke.
        // Not when paused: its keys are left with it, as everything else in Flashback.
        let holding = plan::keys_holding(&self.repo, &self.ctx.everyone.access_keys.state());
        if !holding.is_empty() && !self.repo.is_paused() && !self.namespace_terminating().await {
            let state = plan::waiting_for_keys(&holding);
            self.write_status(None, &state).await?;
            return Ok(Action::requeue(std::time::Duration::from_secs(2)));
        }
        let action = self.cleanup().await?;
        if !self.serves() {
            return Err(Error::LeftShard);
        }
        self.remove_finalizer().await?;
        Ok(action)
    }

    async fn cleanup(&mut self) -> Result<Action, Error> {
        if let Some(why) = plan::kept_on_delete(&self.repo) {
            let note = format!("left the remote repository in Flashback: {why}");
            self.publish(EventType::Normal, Reason::Orphaned, note)
                .await;
            return Ok(Action::await_change());
        }
        // Only an id this object verified in its workspace and recorded in its status is
        // ever deleted; the adoption annotation alone names nothing to delete.
        let known = self.repo.status.as_ref().and_then(|s| s.repo_id.clone());
        let attempt = create_attempt::read(&self.repo);
        // Nothing was ever created for this object: release it, credentials or not.
        if known.is_none() && !self.repo.create_started() {
            return Ok(Action::await_change());
        }
        let credentials = match self.credentials().await? {
            Ok(credentials) => credentials,
            Err(problem) => return self.cleanup_without_credentials(&problem, known).await,
        };
        // A create whose outcome was never recorded (a crash, a status write that failed) may
        // have made a repository: look with a listing from after it, so nothing leaks.
        // Only an attempt sent with these credentials can have made something they list.
        let identity = self.ctx.identity_of(&self.repo, &credentials);
        let attempt = attempt.filter(|a| identity.sent(a));
        let fetched_after = attempt.is_some().then(Instant::now);
        let listing = match self.list(&credentials, fetched_after).await {
            Ok(listing) => listing,
            Err(error) => return Err(self.deletion_failed(error).await),
        };
        let recorded_here = identity.confirmed(
            self.repo
                .status
                .as_ref()
                .and_then(|s| s.recorded_with.as_ref()),
        );
        let mut doomed: Vec<String> = Vec::new();
        for remote in listing.iter() {
            // An id recorded with other credentials or another API is this object's here only
            // when these list it under the object's name.
            let recorded = known.as_deref() == Some(remote.id.as_str())
                && (recorded_here || remote.name == self.repo.remote_name());
            let made = attempt
                .as_ref()
                .is_some_and(|a| create_attempt::made(a, remote));
            if !(recorded || made) {
                continue;
            }
            if self.held_by_another(&remote.id, &identity) {
                let note = format!(
                    "left remote repository {} in Flashback: another FlashbackRepository \
                     manages it",
                    remote.id
                );
                self.publish(EventType::Warning, Reason::LeftInPlace, note)
                    .await;
                continue;
            }
            doomed.push(remote.id.clone());
        }
        // Not listed in the object's workspace: already gone, or never this object's to delete.
        let workspace = self.repo.spec.workspace_id.clone();
        if !doomed.is_empty() && !self.serves() {
            return Err(Error::LeftShard);
        }
        for repo_id in doomed {
            if let Err(error) = self
                .ctx
                .remote
                .delete(&credentials, &workspace, &repo_id)
                .await
            {
                return Err(self.deletion_failed(error).await);
            }
            let note = format!("deleted remote repository {repo_id}");
            self.publish(EventType::Normal, Reason::Deleted, note).await;
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
        let stall = plan::delete_without_credentials(problem);
        let message = stall.message.clone();
        self.report(None, stall.state()).await?;
        Err(Error::CleanupBlocked(message))
    }

    /// Whether the object's namespace is being deleted. Not knowing (the operator may not
    /// read namespaces) counts as no.
    async fn namespace_terminating(&self) -> bool {
        let namespace = self.repo.namespace().unwrap_or_default();
        self.ctx.namespace_terminating(&namespace).await
    }

    /// Whether this shard still serves the object (see [`Context::serves`]); checked before
    /// every remote write.
    fn serves(&self) -> bool {
        self.ctx.serves(&self.ctx.repositories, &self.repo)
    }

    /// Whether another object manages the remote repository `repo_id` on the API this
    /// object acts with.
    fn held_by_another(&self, repo_id: &str, identity: &Identity) -> bool {
        held_by_another(
            &self.ctx.everyone.repositories,
            &self.repo,
            repo_id,
            identity,
        )
    }

    /// The listing of the object's workspace, fetched after `fetched_after` when given.
    async fn list(
        &self,
        credentials: &Credentials,
        fetched_after: Option<Instant>,
    ) -> Result<Workspace, ApiError> {
        self.ctx
            .remote
            .repos(credentials, &self.repo.spec.workspace_id, fetched_after)
            .await
    }

    /// `POST /repo` answered that the name is taken. A listing from after the answer tells
    /// whether it is this object's own earlier attempt (the next reconcile then claims it);
    /// if the workspace shows no repository of that name at all, another workspace of the
    /// organisation uses it, and only a person can fix that.
    async fn name_taken(
        &mut self,
        credentials: &Credentials,
        desired: &RepoWrite,
        refusal: ApiError,
    ) -> Result<Action, Error> {
        let listing = match self.list(credentials, Some(Instant::now())).await {
            Ok(listing) => listing,
            Err(error) => return self.remote_failed(None, "list repositories", error).await,
        };
        if listing.named(&desired.name).next().is_some() {
            // The next look, after this object's backoff (a server that answers otherwise
            // each time gets no faster loop), decides on this listing.
            debug!("the name is taken in the workspace; deciding again on a fresh listing");
            return Err(Error::Remote {
                operation: "create the repository",
                source: refusal,
            });
        }
        // Nothing of this name in the workspace: no earlier attempt of ours made it. Another
        // workspace has it, or a deleted repository still holds it (the service's deletes are
        // soft): one listing of the whole organisation tells which.
        let everywhere = self
            .ctx
            .organisation_names
            .listed(
                &self.ctx.remote,
                credentials,
                Kind::Repositories,
                &desired.name,
            )
            .await;
        let stall = match everywhere {
            Ok(false) => stall::name_held_by_deleted("repository", "repositories", &desired.name),
            Err(error) if error.is_transient() => {
                return self.remote_failed(None, "list repositories", error).await;
            }
            _ => plan::name_used_elsewhere(&desired.name, &self.repo.spec.workspace_id),
        };
        self.stall_resolved(stall).await
    }

    /// An Event when the adoption annotation makes this object take over `repo_id`.
    async fn announce_adoption(&self, repo_id: &str) {
        if let Some(note) = plan::adoption_note(&self.repo, repo_id) {
            self.publish(EventType::Normal, Reason::Adopted, note).await;
        }
    }

    async fn credentials(&self) -> Result<Result<Credentials, CredentialsError>, Error> {
        Ok(self.ctx.credentials_of(&self.repo).await?)
    }

    /// Reports a failed remote delete on the object; the finalizer stays.
    async fn deletion_failed(&mut self, error: ApiError) -> Error {
        let message = format!("cannot delete the remote repository: {error}");
        self.publish(EventType::Warning, Reason::DeleteFailed, message.clone())
            .await;
        let state = match plan::api_stall(&error, &self.repo) {
            Some(problem) => problem.state(),
            None => State::Progressing {
                reason: Reason::DeleteFailed,
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

    /// Handles a failed remote call: a stall for a person, or a retry.
    async fn remote_failed(
        &mut self,
        repo_id: Option<String>,
        operation: &'static str,
        error: ApiError,
    ) -> Result<Action, Error> {
        if let Some(problem) = plan::api_stall(&error, &self.repo) {
            return self.report(repo_id, problem.state()).await;
        }
        self.write_status(repo_id, &plan::retrying(operation, &error))
            .await?;
        Err(Error::Remote {
            operation,
            source: error,
        })
    }

    /// Stalled by a refused create, which proves no attempt of this object made anything: the
    /// attempt's record goes in the same write.
    async fn stall_resolved(&mut self, problem: Stall) -> Result<Action, Error> {
        self.write(
            None,
            &problem.state(),
            Attempt::Resolved,
            Write::Conditional,
        )
        .await?;
        Ok(Action::await_change())
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

    /// Writes the status (see [`status_write::write`]), announcing every Stalled transition:
    /// a new stall reason, or the stall resolved. Before the first write that records a
    /// repository, or begins a create, the finalizer goes on, so nothing the object owns in
    /// Flashback can outlive it.
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
        let mut next = status::next(&self.repo, repo_id, self.identity.as_ref(), state, &now);
        match attempt {
            Attempt::Keep => {}
            Attempt::Begin(attempt) => next.create_attempt = Some(attempt),
            Attempt::Resolved => next.create_attempt = None,
        }
        let announce = Announce::StallsAndResolutions;
        let events = &self.ctx.events;
        let written =
            status_write::write(self.api, events, &self.repo, &next, state, write, announce);
        match (written.await?, write) {
            (None, _) => {}
            (Some(fresh), Write::Conditional) => self.take_written(fresh),
            (Some(fresh), Write::Unconditional) => {
                self.repo.status = Some(next);
                self.after_unconditional_write(fresh);
            }
        }
        Ok(())
    }

    fn has_finalizer(&self) -> bool {
        finalizer::has(&self.repo)
    }

    /// Adds the finalizer, conditional on the resourceVersion read.
    async fn ensure_finalizer(&mut self) -> Result<(), Error> {
        let fresh = finalizer::set(self.api, self.repo.clone(), true).await?;
        self.take_written(fresh);
        Ok(())
    }

    /// Releases the object, conditional on the resourceVersion read.
    async fn remove_finalizer(&mut self) -> Result<(), Error> {
        let fresh = finalizer::set(self.api, self.repo.clone(), false).await?;
        self.take_written(fresh);
        Ok(())
    }

    /// The object as a conditional write left it. The write succeeding proves the spec is the
    /// one read, so the buckets this reconcile resolved (`bucketRef` to ids) stay as resolved:
    /// the API server's copy names them by reference only, and a request built from it would
    /// send no bucket ids.
    fn take_written(&mut self, fresh: FlashbackRepository) {
        let resolved = std::mem::take(&mut self.repo.spec.buckets);
        self.repo = fresh;
        self.repo.spec.buckets = resolved;
    }

    /// After a write that was not conditional, the object this reconcile decided on stays its
    /// view. It takes the new resourceVersion only when nothing a decision depends on changed
    /// meanwhile, so that a later conditional write still notices such a change.
    fn after_unconditional_write(&mut self, fresh: FlashbackRepository) {
        if watches::worth_a_reconcile(&fresh) == watches::worth_a_reconcile(&self.repo) {
            self.repo.metadata.resource_version = fresh.metadata.resource_version;
        }
    }

    async fn publish(&self, type_: EventType, reason: Reason, note: String) {
        events::publish(
            &self.ctx.events,
            &self.repo.object_ref(&()),
            type_,
            reason,
            note,
        )
        .await;
    }
}

/// What a status write does to the record of a create attempt.
enum Attempt {
    Keep,
    Begin(CreateAttempt),
    /// The outcome is known (recorded, or refused).
    Resolved,
}

//! One reconcile of one `FlashbackBucket`, as named steps: **observe** (the Flashback token,
//! the cloud credentials Secret, the workspace's buckets), **decide** ([`plan::decide`]),
//! **act** (register, update, or nothing), **report** (status and Events). The cloud
//! credentials go from their Secret into the API call and nowhere else.

use crate::controller::events::EventType;
use crate::controller::known_workspaces::Create;
use crate::controller::organisation_names::Kind;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::controller::answers;
use crate::controller::bucket::plan::{self, CloudCredentials, Decision};
use crate::controller::conditions::{self, State};
use crate::controller::context::Context;
use crate::controller::create_attempt::CreateAttempt;
use crate::controller::credentials::Credentials;
use crate::controller::error::Error;
use crate::controller::events;
use crate::controller::failpoint::{self, Failpoint};
use crate::controller::finalizer;
use crate::controller::ownership::Identity;
use crate::controller::reason::Reason;
use crate::controller::stall::{
    Stall, api_stall_for, create_quota_stall, credentials_stall, name_held_by_deleted,
};
use crate::controller::status_write::{self, Announce, KindStatus, Write};
use crate::crd::{FlashbackBucket, FlashbackBucketStatus, ManagementPolicy};
use flashback_client::{ApiError, FlashbackClient};

/// One reconcile of one bucket object.
pub struct Reconcile<'a> {
    api: Api<FlashbackBucket>,
    ctx: &'a Context,
    bucket: FlashbackBucket,
    /// The API and credentials this reconcile acts with, once observed: an id it records is
    /// recorded as confirmed with them.
    identity: Option<Identity>,
}

/// What the observe step found: a client, the identity it acts with, the Flashback
/// credentials and, unless ObserveOnly, the cloud credentials.
type Observed = (
    FlashbackClient,
    Identity,
    Credentials,
    Option<CloudCredentials>,
);

/// What a status write records besides the conditions.
#[derive(Default)]
struct Record {
    bucket_id: Option<String>,
    remote_status: Option<String>,
    credentials_digest: Option<String>,
    attempt: Attempt,
}

#[derive(Default, PartialEq)]
enum Attempt {
    #[default]
    Keep,
    Begin(CreateAttempt),
    Resolved,
}

impl<'a> Reconcile<'a> {
    pub fn new(ctx: &'a Context, bucket: &FlashbackBucket) -> Self {
        let namespace = bucket.namespace().unwrap_or_default();
        Self {
            api: Api::namespaced(ctx.kube.clone(), &namespace),
            ctx,
            bucket: bucket.clone(),
            identity: None,
        }
    }

    /// The object exists: observe → decide → act → report.
    pub async fn apply(mut self) -> Result<Action, Error> {
        let (client, identity, credentials, cloud) = match self.observe().await? {
            Ok(observed) => observed,
            Err(stall) => return self.stall(stall).await,
        };
        let workspace = self.bucket.spec.workspace_id.clone();
        let listing = match client.list_buckets(Some(&workspace)).await {
            Ok(listing) => listing,
            Err(error) => return self.remote_failed("list buckets", error).await,
        };
        let digest = cloud.as_ref().map(CloudCredentials::digest);
        let decision = plan::decide(
            &self.bucket,
            &listing,
            &identity,
            |id| self.held_by_another(id, &identity),
            digest.as_deref(),
        );
        tracing::debug!(name = self.bucket.name_any(), ?decision, "bucket decision");
        match decision {
            Decision::Stall(stall) => self.stall(stall).await,
            Decision::Paused { bucket_id, in_sync } => {
                let state = plan::paused(bucket_id.is_some(), in_sync);
                let record = Record {
                    bucket_id,
                    ..Record::default()
                };
                self.write(&state, record, Write::Conditional).await?;
                Ok(Action::await_change())
            }
            Decision::InSync { bucket_id } => {
                let remote_status = plan::reported_status(&listing, &bucket_id);
                let record = Record {
                    bucket_id: Some(bucket_id.clone()),
                    remote_status,
                    credentials_digest: digest,
                    attempt: Attempt::Resolved,
                };
                self.announce_adoption(&bucket_id).await;
                self.write(&plan::synced(), record, Write::Conditional)
                    .await?;
                Ok(Action::await_change())
            }
            Decision::Observe { bucket_id, in_sync } => {
                let record = Record {
                    bucket_id: Some(bucket_id.clone()),
                    remote_status: plan::reported_status(&listing, &bucket_id),
                    ..Record::default()
                };
                self.write(&plan::observed(in_sync), record, Write::Conditional)
                    .await?;
                Ok(Action::await_change())
            }
            Decision::Update { bucket_id } => {
                let Some(cloud) = &cloud else {
                    unreachable!(
                        "plan::decide writes only under Full, which reads the cloud credentials"
                    );
                };
                self.announce_adoption(&bucket_id).await;
                let body = match listing.iter().find(|listed| listed.id == bucket_id) {
                    Some(listed) => plan::desired_over(&self.bucket, cloud, listed),
                    None => plan::desired(&self.bucket, cloud),
                };
                if !self.serves() {
                    return Ok(Action::await_change());
                }
                if let Err(error) = client.update_bucket(&bucket_id, &body).await {
                    if let Some(stall) = plan::cloud_credentials_refused(&self.bucket, &error) {
                        return self.stall(stall).await;
                    }
                    return self.remote_failed("update the bucket", error).await;
                }
                let record = Record {
                    bucket_id: Some(bucket_id.clone()),
                    remote_status: plan::reported_status(&listing, &bucket_id),
                    credentials_digest: digest,
                    attempt: Attempt::Resolved,
                };
                self.write(&plan::synced(), record, Write::Conditional)
                    .await?;
                let note = format!("updated bucket {bucket_id}");
                self.publish(EventType::Normal, Reason::Updated, note).await;
                Ok(Action::await_change())
            }
            Decision::Create => match (&cloud, digest) {
                (Some(cloud), Some(digest)) => {
                    self.create(&client, &credentials, cloud, digest).await
                }
                _ => unreachable!(
                    "plan::decide writes only under Full, which reads the cloud credentials"
                ),
            },
        }
    }

    /// Act: register the bucket. The attempt is recorded first, with the finalizer, in a write
    /// conditional on the version read, so that a lost answer cannot make a second bucket.
    async fn create(
        &mut self,
        client: &FlashbackClient,
        credentials: &Credentials,
        cloud: &CloudCredentials,
        digest: String,
    ) -> Result<Action, Error> {
        // A workspace the organisation does not have: nothing to register (one listing per
        // credential serves every create for a while).
        let workspace = self.bucket.spec.workspace_id.clone();
        let ctx = self.ctx;
        let check = Create {
            workspace_id: &workspace,
            kind: "bucket",
            own_credentials: self.bucket.spec.credentials_secret_ref.is_some(),
        };
        if let Some(stall) = ctx
            .workspaces
            .missing(&ctx.remote, credentials, check)
            .await
        {
            return self.stall(stall).await;
        }
        let attempt = plan::next_attempt(&self.bucket, k8s_openapi::jiff::Timestamp::now());
        // Observed before any register: the API and credentials this attempt goes to.
        let attempt = match &self.identity {
            Some(identity) => identity.stamp(attempt),
            None => attempt,
        };
        let creating = State::Progressing {
            reason: Reason::Creating,
            message: "registering the bucket".into(),
        };
        let record = Record {
            attempt: Attempt::Begin(attempt.clone()),
            ..Record::default()
        };
        self.write(&creating, record, Write::Conditional).await?;
        let body = plan::desired(&self.bucket, cloud);
        if !self.serves() {
            return Ok(Action::await_change());
        }
        let bucket_id = match client.create_bucket(&body).await {
            Ok(id) => id,
            Err(error @ ApiError::NameAlreadyUsed { .. }) => {
                return self.name_refused(client, credentials, error).await;
            }
            Err(error) => {
                // The listing this create was decided on was fresh: a refusal proves that no
                // attempt of this object made anything, and the record must not make a later
                // bucket of this name and shape (someone else's) look like this object's. Over
                // the bucket quota, no retry helps: a stall, looked at again every resync.
                let quota = create_quota_stall(&error, "bucket", self.bucket.remote_name());
                let refused = || plan::cloud_credentials_refused(&self.bucket, &error);
                if let Some(stall) = quota.or_else(refused).or_else(|| self.api_stall(&error)) {
                    let record = Record {
                        attempt: Attempt::Resolved,
                        ..Record::default()
                    };
                    self.write(&stall.state(), record, Write::Conditional)
                        .await?;
                    return Ok(Action::requeue(self.ctx.settings.resync_interval));
                }
                return self.remote_failed("register the bucket", error).await;
            }
        };
        if !answers::plausible_id(&bucket_id) {
            return self
                .stall(answers::implausible_answer("new bucket id"))
                .await;
        }
        failpoint::pause_at(Failpoint::PauseAfterBucketCreate).await;
        // Relabelled to another shard meanwhile: that shard claims what this attempt made.
        if !self.serves() {
            return Ok(Action::await_change());
        }
        // An answer is not proof (a tenant may point its credentials at a server that answers
        // another tenant's id): the id counts once a listing with the same credentials shows
        // it as what this attempt sent. Until then the attempt stays recorded, and the next
        // look claims what the attempt made, if anything.
        let workspace = self.bucket.spec.workspace_id.clone();
        match client.list_buckets(Some(&workspace)).await {
            Ok(listing)
                if listing
                    .iter()
                    .any(|b| b.id == bucket_id && plan::made_by(&attempt, b)) => {}
            Ok(_) => {
                return Err(Error::NotYet(
                    "the bucket id the API answered is not listed as the bucket this register \
                     sent; looking again"
                        .into(),
                ));
            }
            Err(error) => return self.remote_failed("confirm the new bucket", error).await,
        }
        let record = Record {
            bucket_id: Some(bucket_id.clone()),
            remote_status: None,
            credentials_digest: Some(digest),
            attempt: Attempt::Resolved,
        };
        if !self.serves() {
            return Ok(Action::await_change());
        }
        self.write(&plan::synced(), record, Write::Unconditional)
            .await?;
        let note = format!("registered bucket {bucket_id}");
        self.publish(EventType::Normal, Reason::Created, note).await;
        Ok(Action::await_change())
    }

    /// The API refused the register's name. Names are unique in the organisation: a fresh
    /// listing of the workspace tells whether the name is taken here (the next look decides,
    /// after this object's backoff, and may find its own attempt's bucket) or elsewhere (a
    /// stall, and the attempt resolved: nothing was made).
    async fn name_refused(
        &mut self,
        client: &FlashbackClient,
        credentials: &Credentials,
        refusal: ApiError,
    ) -> Result<Action, Error> {
        let workspace = self.bucket.spec.workspace_id.clone();
        let listing = match client.list_buckets(Some(&workspace)).await {
            Ok(listing) => listing,
            Err(error) => return self.remote_failed("list buckets", error).await,
        };
        let name = self.bucket.remote_name().to_string();
        if listing.iter().any(|b| b.name == name) {
            return Err(Error::Remote {
                operation: "register the bucket",
                source: refusal,
            });
        }
        // Another workspace has it, or a deleted bucket still holds it (the service's deletes
        // are soft): one listing of the whole organisation tells which.
        let everywhere = self
            .ctx
            .organisation_names
            .listed(&self.ctx.remote, credentials, Kind::Buckets, &name)
            .await;
        let stall = match everywhere {
            Ok(false) => name_held_by_deleted("bucket", "buckets", &name),
            Err(error) if error.is_transient() => {
                return self.remote_failed("list buckets", error).await;
            }
            _ => plan::name_used_elsewhere(&name, &workspace),
        };
        let record = Record {
            attempt: Attempt::Resolved,
            ..Record::default()
        };
        self.write(&stall.state(), record, Write::Conditional)
            .await?;
        Ok(Action::requeue(self.ctx.settings.resync_interval))
    }

    /// Observe: a client with the Flashback token, and the cloud credentials, which only a
    /// bucket the operator may write needs (ObserveOnly never reads them).
    async fn observe(&mut self) -> Result<Result<Observed, Stall>, Error> {
        let (client, identity, credentials) = match self.client().await? {
            Ok(found) => found,
            Err(stall) => return Ok(Err(stall)),
        };
        if self.bucket.spec.management_policy == ManagementPolicy::ObserveOnly {
            return Ok(Ok((client, identity, credentials, None)));
        }
        Ok(self
            .cloud_credentials()
            .await?
            .map(|cloud| (client, identity, credentials, Some(cloud))))
    }

    /// A client with the Flashback token (all a deregistration needs); the identity it acts
    /// with is kept for the status.
    async fn client(
        &mut self,
    ) -> Result<Result<(FlashbackClient, Identity, Credentials), Stall>, Error> {
        let credentials = match self.ctx.credentials_of(&self.bucket).await? {
            Ok(credentials) => credentials,
            Err(problem) => return Ok(Err(credentials_stall(&problem))),
        };
        let identity = self.ctx.identity_of(&self.bucket, &credentials);
        self.identity = Some(identity.clone());
        Ok(self
            .ctx
            .remote
            .client_for(&credentials)
            .map(|client| (client, identity, credentials))
            .map_err(|error| Stall {
                reason: Reason::InvalidCredentials,
                message: format!("the Flashback credentials cannot be used: {error}"),
            }))
    }

    /// The cloud credentials of the bucket's Secret (all a register or an update needs).
    async fn cloud_credentials(&self) -> Result<Result<CloudCredentials, Stall>, Error> {
        let secrets: Api<Secret> = Api::namespaced(
            self.ctx.kube.clone(),
            &self.bucket.namespace().unwrap_or_default(),
        );
        let name = &self.bucket.spec.cloud_credentials_secret_ref.name;
        let data = match secrets.get_opt(name).await {
            Ok(secret) => secret.map(|s| s.data.unwrap_or_default()),
            Err(kube::Error::Api(status)) if status.is_forbidden() => {
                return Ok(Err(Stall {
                    reason: Reason::SecretForbidden,
                    message: format!(
                        "the operator may not read the cloud credentials Secret {name}"
                    ),
                }));
            }
            Err(error) => return Err(error.into()),
        };
        Ok(plan::cloud_credentials(&self.bucket, data.as_ref()))
    }

    /// The object is being deleted: the bucket is deregistered (once no repository uses it),
    /// or left, then the object is released.
    pub async fn delete(mut self) -> Result<Action, Error> {
        if !finalizer::has(&self.bucket) {
            return Ok(Action::await_change());
        }
        if let Some(why) = plan::kept_on_delete(&self.bucket) {
            let note = format!("left the bucket registered in Flashback: {why}");
            self.publish(EventType::Normal, Reason::Orphaned, note)
                .await;
            return self.release().await;
        }
        let status = self.bucket.status.clone().unwrap_or_default();
        if status.bucket_id.is_none() && status.create_attempt.is_none() {
            return self.release().await;
        }
        // A repository of the operator's still names it: wait for it, from the watch cache,
        // at no cost to the API (its credential's budget is other objects' too).
        if let Some(bucket_id) = &status.bucket_id
            && plan::used_by_a_repository(
                &self.bucket,
                bucket_id,
                &self.ctx.everyone.repositories.state(),
            )
        {
            self.write(
                &plan::in_use(bucket_id),
                Record::default(),
                Write::Conditional,
            )
            .await?;
            return Ok(Action::requeue(plan::IN_USE_LOOK_AGAIN));
        }
        // The cloud credentials may be gone already (a directory deleted with kubectl delete
        // -f): deregistering needs only the Flashback token.
        let (client, identity, credentials) = match self.client().await? {
            Ok(found) => found,
            Err(stall) => {
                let namespace = self.bucket.namespace().unwrap_or_default();
                if self.ctx.namespace_terminating(&namespace).await {
                    // Nobody can fix the credentials of a namespace being deleted, and waiting
                    // would hold its deletion forever.
                    tracing::warn!(
                        namespace,
                        name = self.bucket.name_any(),
                        bucket_id = status.bucket_id.as_deref().unwrap_or(""),
                        "the namespace is being deleted and the Flashback credentials are \
                         unusable: released without deregistering the bucket"
                    );
                    return self.release().await;
                }
                let message = stall.message.clone();
                self.stall(stall).await?;
                return Err(Error::CleanupBlocked(message));
            }
        };
        let doomed: Vec<String> = match plan::recorded_here(&self.bucket, &identity) {
            // Confirmed with these credentials and no create unfinished: one DELETE says it
            // all (a bucket already gone answers 404).
            Some(bucket_id) if !self.held_by_another(bucket_id, &identity) => {
                vec![bucket_id.to_string()]
            }
            _ => {
                let workspace = self.bucket.spec.workspace_id.clone();
                let listing = match client.list_buckets(Some(&workspace)).await {
                    Ok(listing) => listing,
                    Err(error) => return self.remote_failed("list buckets", error).await,
                };
                let (doomed, held) = plan::doomed(&self.bucket, &listing, &identity, |id| {
                    self.held_by_another(id, &identity)
                });
                for remote in held {
                    let note = format!(
                        "left bucket {} registered: another FlashbackBucket manages it",
                        remote.id
                    );
                    self.publish(EventType::Warning, Reason::LeftInPlace, note)
                        .await;
                }
                doomed.into_iter().map(|b| b.id.clone()).collect()
            }
        };
        if doomed.is_empty() {
            return self.release().await;
        }
        // A repository the operator does not manage may group it: the API would refuse the
        // delete (403), so the workspace's listing (shared with the repositories' reconciles)
        // is asked first, and the delete waits, looked at again once per resync.
        let workspace = self.bucket.spec.workspace_id.clone();
        let repos = match self.ctx.remote.repos(&credentials, &workspace, None).await {
            Ok(repos) => repos,
            Err(error) => return self.remote_failed("list repositories", error).await,
        };
        if let Some(bucket_id) = doomed
            .iter()
            .find(|id| plan::listed_as_used(id, repos.iter()).is_some())
        {
            let state = plan::in_use(bucket_id);
            self.write(&state, Record::default(), Write::Conditional)
                .await?;
            return Ok(Action::requeue(self.ctx.settings.resync_interval));
        }
        if !self.serves() {
            return Err(Error::LeftShard);
        }
        for bucket_id in doomed {
            match client.delete_bucket(&bucket_id).await {
                Ok(()) | Err(ApiError::NotFound { .. }) => {
                    let note = format!("deregistered bucket {bucket_id}");
                    self.publish(EventType::Normal, Reason::Deleted, note).await;
                }
                Err(ApiError::Forbidden { message }) => {
                    // The API's answer to a bucket in use is the one to a token that may not
                    // delete it: either way a person or another repository must act, so it is
                    // asked again once per resync, not in a loop on the credential's budget.
                    let state = plan::delete_refused(&bucket_id, &message);
                    self.write(&state, Record::default(), Write::Conditional)
                        .await?;
                    return Ok(Action::requeue(self.ctx.settings.resync_interval));
                }
                Err(error) => return self.remote_failed("deregister the bucket", error).await,
            }
        }
        self.release().await
    }

    /// Whether another object manages the bucket `bucket_id` on the API this object acts with.
    fn held_by_another(&self, bucket_id: &str, identity: &Identity) -> bool {
        self.ctx
            .everyone
            .buckets
            .find(|other| plan::holds(other, &self.bucket, bucket_id, identity))
            .is_some()
    }

    /// Whether this shard still serves the object; checked before every remote write.
    fn serves(&self) -> bool {
        self.ctx.serves(&self.ctx.buckets, &self.bucket)
    }

    async fn release(&mut self) -> Result<Action, Error> {
        if !self.serves() {
            return Err(Error::LeftShard);
        }
        self.bucket = finalizer::set(&self.api, self.bucket.clone(), false).await?;
        Ok(Action::await_change())
    }

    /// An Event when the adoption annotation makes this object take over `bucket_id`.
    async fn announce_adoption(&self, bucket_id: &str) {
        let known = self
            .bucket
            .status
            .as_ref()
            .and_then(|s| s.bucket_id.as_deref());
        if known != Some(bucket_id) && self.bucket.adopted_bucket_id() == Some(bucket_id) {
            let note = format!("adopted bucket {bucket_id}");
            self.publish(EventType::Normal, Reason::Adopted, note).await;
        }
    }

    async fn stall(&mut self, stall: Stall) -> Result<Action, Error> {
        self.write(&stall.state(), Record::default(), Write::Conditional)
            .await?;
        // Looked at again at the resync pace too: a fix may not touch this object.
        Ok(Action::requeue(self.ctx.settings.resync_interval))
    }

    /// The stall of a refusal only a person can fix, if it is one.
    fn api_stall(&self, error: &ApiError) -> Option<Stall> {
        api_stall_for(error, &self.bucket, "bucket", self.bucket.remote_name())
    }

    /// A failed API call: a stall for a person, or a retry with backoff.
    async fn remote_failed(
        &mut self,
        operation: &'static str,
        error: ApiError,
    ) -> Result<Action, Error> {
        if let Some(stall) = self.api_stall(&error) {
            return self.stall(stall).await;
        }
        let state = State::Progressing {
            reason: Reason::RemoteUnavailable,
            message: format!("could not {operation}, will retry: {error}"),
        };
        self.write(&state, Record::default(), Write::Conditional)
            .await?;
        Err(Error::Remote {
            operation,
            source: error,
        })
    }

    /// Report: the status (see [`status_write::write`]), with an Event for a new stall. The
    /// finalizer goes on first.
    async fn write(&mut self, state: &State, record: Record, write: Write) -> Result<(), Error> {
        self.bucket = finalizer::set(&self.api, self.bucket.clone(), true).await?;
        let next = self.next_status(state, record);
        let events = &self.ctx.events;
        let written = status_write::write(
            &self.api,
            events,
            &self.bucket,
            &next,
            state,
            write,
            Announce::NewStalls,
        );
        if let Some(fresh) = written.await? {
            self.bucket = fresh;
        }
        Ok(())
    }

    /// The status to write: the current one with the conditions for `state` and what `record`
    /// records. An id recorded is recorded as confirmed with this reconcile's identity.
    fn next_status(&self, state: &State, record: Record) -> FlashbackBucketStatus {
        let current = self.bucket.status.clone().unwrap_or_default();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let generation = self.bucket.metadata.generation;
        let mut next = FlashbackBucketStatus {
            conditions: conditions::next(&current.conditions, state, generation, &now),
            observed_generation: generation,
            ..current.clone()
        };
        if let Some(id) = record.bucket_id {
            if let Some(identity) = &self.identity {
                next.recorded_with = Some(identity.record(
                    current.bucket_id.as_deref(),
                    current.recorded_with.as_ref(),
                    &id,
                    &now,
                    self.bucket.metadata.creation_timestamp.as_ref(),
                ));
            }
            // The credentials last sent were sent to the bucket recorded then: another id
            // has been sent none of them yet.
            if current.bucket_id.as_deref() != Some(id.as_str()) {
                next.cloud_credentials_digest = None;
            }
            next.bucket_id = Some(id);
        }
        if let Some(remote_status) = record.remote_status {
            next.status = Some(remote_status);
        }
        if let Some(digest) = record.credentials_digest {
            next.cloud_credentials_digest = Some(digest);
        }
        match record.attempt {
            Attempt::Keep => {}
            Attempt::Begin(attempt) => next.create_attempt = Some(attempt),
            Attempt::Resolved => next.create_attempt = None,
        }
        next
    }

    async fn publish(&self, type_: EventType, reason: Reason, note: String) {
        events::publish(
            &self.ctx.events,
            &self.bucket.object_ref(&()),
            type_,
            reason,
            note,
        )
        .await;
    }
}

impl KindStatus for FlashbackBucketStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    fn cleared(&self, current: Option<&Self>) -> Vec<&'static str> {
        let current = current.and_then(|current| current.create_attempt.as_ref());
        status_write::cleared_create_attempt(self.create_attempt.as_ref(), current)
    }
}

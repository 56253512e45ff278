//! One reconcile of one `FlashbackAccessKey`, as named steps: **observe** (the key object and
//! its repository, read fresh from the API server; the Secret; the repository's keys),
//! **decide** ([`plan::decide`]), **act** (delete unheld keys, issue a key, update its access
//! type), **report** (status and Events). The plain secret goes from the create answer into the
//! Secret and nowhere else: not in a log, an Event, the status or an error.

use std::collections::BTreeMap;

use crate::controller::events::EventType;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use tracing::warn;

use crate::controller::access_key::plan::{self, Decision, Issue, Repository, SecretState};
use crate::controller::conditions::{self, State};
use crate::controller::context::Context;
use crate::controller::credentials::Credentials;
use crate::controller::error::Error;
use crate::controller::events;
use crate::controller::failpoint::{self, Failpoint};
use crate::controller::finalizer;
use crate::controller::reason::Reason;
use crate::controller::stall::{Stall, api_stall_for, credentials_stall};
use crate::controller::status_write::{self, Announce, KindStatus, Write};
use crate::controller::{answers, digest};
use crate::crd::{
    ACCESS_KEY_LABEL, FlashbackAccessKey, FlashbackAccessKeyStatus, FlashbackRepository,
    secret_keys,
};
use flashback_client::{ApiError, CreatedRepoKey, FlashbackClient, RepoKeyWrite};

/// One reconcile of one key object, on the version just read from the API server.
pub struct Reconcile<'a> {
    ctx: &'a Context,
    keys: Api<FlashbackAccessKey>,
    secrets: Api<Secret>,
    repos: Api<FlashbackRepository>,
    key: FlashbackAccessKey,
    /// The referenced repository as last read: its credentials and its API's rules apply.
    repository: Option<FlashbackRepository>,
    /// The uid of the owned Secret as last read, so that its delete cannot hit another.
    owned_secret_uid: Option<String>,
}

impl<'a> Reconcile<'a> {
    /// Reads the key object afresh: its status says which Secret version the operator wrote,
    /// and a cache a moment behind would mistake the operator's own write for an edit.
    pub async fn new(ctx: &'a Context, key: &FlashbackAccessKey) -> Result<Option<Self>, Error> {
        let namespace = key.namespace().unwrap_or_default();
        let keys: Api<FlashbackAccessKey> = Api::namespaced(ctx.kube.clone(), &namespace);
        let Some(key) = keys.get_opt(&key.name_any()).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            ctx,
            secrets: Api::namespaced(ctx.kube.clone(), &namespace),
            repos: Api::namespaced(ctx.kube.clone(), &namespace),
            keys,
            key,
            repository: None,
            owned_secret_uid: None,
        }))
    }

    /// The object exists: observe → decide → act → report.
    pub async fn apply(mut self) -> Result<Action, Error> {
        let repo = self.repository().await?;
        let repository = Repository::of(repo.as_ref());
        if repo.as_ref().is_some_and(FlashbackRepository::is_paused) {
            // The repository's remote writes are paused, and its keys are part of it: nothing
            // is issued, rotated or revoked, even while it is deleted. A key in step stays
            // Ready, as a paused repository in step does.
            let secret = self.secret().await?;
            let state = if plan::settled(&self.key, &secret) {
                plan::ready(&self.key)
            } else {
                plan::repository_paused(&self.key)
            };
            return self.report(&state, None).await;
        }
        if repository == Repository::Deleting {
            return self.revoke().await;
        }
        if let Some(waiting) = plan::waiting(&self.key, &repository) {
            return self.report(&waiting, None).await;
        }
        let (Repository::Ready { repo_id }, Some(repo)) = (repository, repo) else {
            unreachable!("plan::waiting lets only a Ready repository through");
        };
        // Before anything is made in Flashback: nothing this object makes may outlive it.
        self.set_finalizers(true).await?;
        let secret = self.secret().await?;
        if plan::settled(&self.key, &secret) {
            return self.report(&plan::ready(&self.key), None).await;
        }
        let client = match self.client(&repo).await? {
            Ok((client, true)) => client,
            Ok((_, false)) => return self.report(&plan::id_unconfirmed(&self.key), None).await,
            Err(state) => return self.report(&state, None).await,
        };
        let listed = match client.list_repo_keys(&repo_id).await {
            Ok(listed) => listed,
            Err(error) => {
                return self
                    .remote_failed("list the repository's keys", error)
                    .await;
            }
        };
        if plan::own_keys(&self.key, &listed)
            .into_iter()
            .any(|k| !answers::plausible_id(&k.id) || !answers::plausible_id(&k.key))
        {
            let stall = answers::implausible_answer("key id in the repository's key list");
            return self.report(&stall.state(), None).await;
        }
        // Keys of this object that the Secret does not hold are of no use to anyone: gone
        // before a new one is made, so there is never more than one live key for long.
        let unheld = plan::unheld(&self.key, &listed, &secret);
        if let Some(unfinished) = self
            .delete_keys(
                &client,
                &repo_id,
                &unheld,
                "unused keys (the Secret does not hold them)",
            )
            .await
        {
            return unfinished;
        }
        match plan::decide(&self.key, &secret, &listed) {
            Decision::Stall(stall) => self.report(&stall.state(), None).await,
            Decision::NotListed { key_id } => {
                let message = format!(
                    "the key {key_id} the Secret holds is not in the repository's key list; \
                     looking again (set the annotation flashback.tech/rotate-requested-at to \
                     replace it)"
                );
                let state = State::Progressing {
                    reason: Reason::KeyNotListed,
                    message: message.clone(),
                };
                self.report(&state, None).await?;
                Err(Error::NotYet(message))
            }
            Decision::Issue { why, retire } => {
                self.issue(&client, &repo_id, &secret, why, retire).await
            }
            Decision::InSync { key, update_access } => {
                if update_access {
                    let body = RepoKeyWrite {
                        name: key.name.clone(),
                        access_type: plan::access_type(self.key.spec.access_type),
                    };
                    if !self.serves() {
                        return Ok(Action::await_change());
                    }
                    if let Err(error) = client.update_repo_key(&repo_id, &key.id, &body).await {
                        return self.remote_failed("update the key", error).await;
                    }
                    let note = format!("key {} may now {:?}", key.id, self.key.spec.access_type);
                    self.publish(EventType::Normal, Reason::Updated, note).await;
                }
                let SecretState::Owned { digest, .. } = &secret else {
                    unreachable!("plan::decide is InSync only for an owned Secret");
                };
                let recorded = Recorded::key(key.id, key.key, digest.clone());
                self.report(&plan::ready(&self.key), Some(recorded)).await
            }
        }
    }

    /// Act: a new key, into the Secret, then the key the Secret held before retires.
    async fn issue(
        &mut self,
        client: &FlashbackClient,
        repo_id: &str,
        secret: &SecretState,
        why: Issue,
        retire: Option<String>,
    ) -> Result<Action, Error> {
        let nonce = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let body = RepoKeyWrite {
            name: plan::new_key_name(&self.key, &nonce),
            access_type: plan::access_type(self.key.spec.access_type),
        };
        if !self.serves() {
            return Ok(Action::await_change());
        }
        let created = match client.create_repo_key(repo_id, &body).await {
            Ok(created) => created,
            Err(error) => return self.remote_failed("create a key", error).await,
        };
        if !answers::plausible_id(&created.id) || !answers::plausible_id(&created.key) {
            // Nobody can hold it: it is deleted at once, if the server lets it.
            let _ = client.delete_repo_key(repo_id, &created.id).await;
            let stall = answers::implausible_answer("new key id");
            return self.report(&stall.state(), None).await;
        }
        failpoint::pause_at(Failpoint::PauseAfterKeyCreate).await;
        // Relabelled to another shard meanwhile: no Secret holds the new key, so that shard
        // deletes it as unheld.
        if !self.serves() {
            return Ok(Action::await_change());
        }
        let (digest, _) = match self.write_secret(secret, &created).await {
            Ok(written) => written,
            Err(error) => {
                // Nobody holds the new key: delete it now rather than on the next look.
                let _ = client.delete_repo_key(repo_id, &created.id).await;
                return match error {
                    Error::Kube(kube::Error::Api(status))
                        if status.is_invalid() || status.is_forbidden() =>
                    {
                        let stall = Stall {
                            reason: Reason::SecretRejected,
                            message: format!(
                                "the Kubernetes API refused the Secret {}: {}",
                                self.key.secret_name(),
                                status.message
                            ),
                        };
                        self.report(&stall.state(), None).await
                    }
                    other => Err(other),
                };
            }
        };
        let recorded = Recorded::key(created.id.clone(), created.key.clone(), digest);
        let note = format!(
            "wrote key {} into the Secret {} ({})",
            created.id,
            self.key.secret_name(),
            why.describe()
        );
        self.report(&plan::ready(&self.key), Some(recorded)).await?;
        self.publish(EventType::Normal, why.reason(), note).await;
        if let Some(old) = retire {
            if let Err(error) = self.delete_key(client, repo_id, &old).await {
                // The next reconcile deletes it: the Secret no longer holds it.
                return Err(Error::Remote {
                    operation: "delete the replaced key",
                    source: error,
                });
            }
            let note = format!("deleted key {old} of this object");
            self.publish(EventType::Normal, Reason::Deleted, note).await;
        }
        Ok(Action::await_change())
    }

    /// The repository is being deleted: this object's keys are revoked while the repository
    /// and its credentials are still there, whatever its deletion policy (a kept remote
    /// repository must not keep live keys nobody manages). The repository waits for it.
    async fn revoke(&mut self) -> Result<Action, Error> {
        let waiting = plan::waiting(&self.key, &Repository::Deleting).expect("a wait");
        let repo = self.repository.clone();
        if let (Some(repo), Some(repo_id)) = (&repo, Repository::remote_id(repo.as_ref())) {
            let has_key = self.key.status.as_ref().is_some_and(|s| s.key_id.is_some());
            if has_key {
                let client = match self.client(repo).await? {
                    Ok(client) => client,
                    Err(state) => return self.report(&state, None).await,
                };
                // An id its credentials did not confirm is no repository of theirs to touch.
                if let (client, true) = client
                    && let Some(unfinished) = self.delete_own_keys(&client, &repo_id).await
                {
                    return unfinished;
                }
            }
        }
        self.report(&waiting, Some(Recorded::revoked())).await
    }

    /// The object is being deleted: its remote keys go, then its Secret, then the object.
    pub async fn delete(mut self) -> Result<Action, Error> {
        if !finalizer::has(&self.key) {
            return Ok(Action::await_change());
        }
        let repo = self.repository().await?;
        let paused = repo.as_ref().is_some_and(FlashbackRepository::is_paused);
        if paused && let Some(key_id) = self.key.status.as_ref().and_then(|s| s.key_id.clone()) {
            let note = format!(
                "left key {key_id} in Flashback: the repository's remote writes are paused"
            );
            self.publish(EventType::Normal, Reason::Orphaned, note)
                .await;
        }
        if let (Some(repo), Some(repo_id), false) =
            (&repo, Repository::remote_id(repo.as_ref()), paused)
        {
            let client = match self.client(repo).await? {
                Ok((client, true)) => Some(client),
                Ok((_, false)) => None,
                Err(state) => {
                    let namespace = self.key.namespace().unwrap_or_default();
                    if self.ctx.namespace_terminating(&namespace).await {
                        // Nobody can fix the credentials of a namespace being deleted, and
                        // waiting would hold its deletion forever.
                        warn!(
                            namespace,
                            name = self.key.name_any(),
                            repo_id,
                            "the namespace is being deleted and the repository's credentials \
                             are unusable: released without revoking this object's keys"
                        );
                        self.set_finalizers(false).await?;
                        return Ok(Action::await_change());
                    }
                    let message = state.message().to_string();
                    self.report(&state, None).await?;
                    return Err(Error::CleanupBlocked(message));
                }
            };
            match client {
                Some(client) => {
                    if let Some(unfinished) = self.delete_own_keys(&client, &repo_id).await {
                        return unfinished;
                    }
                }
                None => {
                    let note = format!(
                        "left the keys of this object in Flashback: the repository's id {repo_id} \
                         was not confirmed with its current credentials"
                    );
                    self.publish(EventType::Warning, Reason::LeftInPlace, note)
                        .await;
                }
            }
        }
        // Garbage collection would take it too; deleting it here does not depend on a
        // controller-manager, and never touches a Secret this object does not own.
        if let SecretState::Owned { .. } = self.secret().await? {
            let preconditions = kube::api::Preconditions {
                uid: self.owned_secret_uid.clone(),
                resource_version: None,
            };
            let params = DeleteParams {
                preconditions: Some(preconditions),
                ..DeleteParams::default()
            };
            match self.secrets.delete(self.key.secret_name(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.set_finalizers(false).await?;
        Ok(Action::await_change())
    }

    /// Deletes every remote key of this object (a few per reconcile). `None` once none is
    /// left; otherwise how this reconcile ends (a failure, or the rest in the next turn).
    async fn delete_own_keys(
        &mut self,
        client: &FlashbackClient,
        repo_id: &str,
    ) -> Option<Result<Action, Error>> {
        let listed = match client.list_repo_keys(repo_id).await {
            Ok(listed) => listed,
            Err(ApiError::NotFound { .. }) => Vec::new(),
            Err(error) => {
                return Some(
                    self.remote_failed("list the repository's keys", error)
                        .await,
                );
            }
        };
        let own: Vec<String> = plan::own_keys(&self.key, &listed)
            .into_iter()
            .map(|k| k.id.clone())
            .collect();
        self.delete_keys(client, repo_id, &own, "keys").await
    }

    /// Deletes a few of `key_ids` (at most [`plan::DELETES_PER_RECONCILE`]) with one Event for
    /// them all. `None` once none is left; otherwise how this reconcile ends: a failure, or, with
    /// more left, a retry after the object's backoff, which grows while a server keeps listing
    /// more (a tenant's server can list new keys on every call; nothing it answers may make the
    /// operator loop), and repeated Events count into one series.
    async fn delete_keys(
        &mut self,
        client: &FlashbackClient,
        repo_id: &str,
        key_ids: &[String],
        what: &str,
    ) -> Option<Result<Action, Error>> {
        if !key_ids.is_empty() && !self.serves() {
            return Some(Err(Error::LeftShard));
        }
        let batch = &key_ids[..key_ids.len().min(plan::DELETES_PER_RECONCILE)];
        let mut deleted = 0;
        let mut failure = None;
        for key_id in batch {
            match self.delete_key(client, repo_id, key_id).await {
                Ok(()) => deleted += 1,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if deleted > 0 {
            let note = if deleted == 1 {
                format!("deleted key {} of this object", batch[0])
            } else {
                format!("deleted {deleted} {what} of this object")
            };
            self.publish(EventType::Normal, Reason::Deleted, note).await;
        }
        if let Some(error) = failure {
            return Some(self.remote_failed("delete a key", error).await);
        }
        let left = key_ids.len() - batch.len();
        (left > 0).then(|| {
            Err(Error::NotYet(format!(
                "{left} more {what} of this object listed; deleting them after a backoff"
            )))
        })
    }

    /// The referenced repository, read fresh (its change is what woke this reconcile).
    async fn repository(&mut self) -> Result<Option<FlashbackRepository>, Error> {
        self.repository = self
            .repos
            .get_opt(&self.key.spec.repository_ref.name)
            .await?;
        Ok(self.repository.clone())
    }

    /// A client with the repository's credentials, and whether the repository's id was
    /// confirmed with those very credentials (its status records which): an id another server
    /// answered, kept while the repository moved to shared credentials, must never be given
    /// keys with them. Or the stall that says why there is no client.
    async fn client(
        &self,
        repo: &FlashbackRepository,
    ) -> Result<Result<(FlashbackClient, bool), State>, Error> {
        let credentials: Credentials = match self.ctx.credentials_of(repo).await? {
            Ok(credentials) => credentials,
            Err(problem) => return Ok(Err(credentials_stall(&problem).state())),
        };
        let recorded_with = repo.status.as_ref().and_then(|s| s.recorded_with.as_ref());
        let confirmed = self
            .ctx
            .identity_of(repo, &credentials)
            .confirmed(recorded_with);
        Ok(match self.ctx.remote.client_for(&credentials) {
            Ok(client) => Ok((client, confirmed)),
            Err(error) => Err(self.stall_or_retry(&error)),
        })
    }

    /// The key's Secret, as far as the operator may touch it.
    async fn secret(&mut self) -> Result<SecretState, Error> {
        let Some(secret) = self.secrets.get_opt(self.key.secret_name()).await? else {
            return Ok(SecretState::Absent);
        };
        if !self.owns(&secret) {
            return Ok(SecretState::NotOwned);
        }
        self.owned_secret_uid = secret.uid();
        let data = secret.data.clone().unwrap_or_default();
        let access_key_id = data
            .get(secret_keys::ACCESS_KEY_ID)
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok());
        Ok(SecretState::Owned {
            access_key_id,
            digest: digest::digest(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice()))),
            resource_version: secret.resource_version().unwrap_or_default(),
        })
    }

    /// Whether the Secret names this very object as its controller.
    fn owns(&self, secret: &Secret) -> bool {
        let uid = self.key.uid();
        secret.owner_references().iter().any(|owner| {
            Some(&owner.uid) == uid.as_ref()
                && owner.kind == "FlashbackAccessKey"
                && owner.api_version.starts_with("flashback.tech/")
                && owner.controller == Some(true)
        })
    }

    /// Writes the new key into the Secret (created, or replaced if this object owns it,
    /// conditional on the version read) and returns the digest of the data written and the
    /// Secret's new resourceVersion.
    async fn write_secret(
        &self,
        secret: &SecretState,
        created: &CreatedRepoKey,
    ) -> Result<(String, String), Error> {
        let mut data = BTreeMap::from([
            (
                secret_keys::ACCESS_KEY_ID.to_string(),
                ByteString(created.key.clone().into_bytes()),
            ),
            (
                secret_keys::SECRET_ACCESS_KEY.to_string(),
                ByteString(created.secret.expose().as_bytes().to_vec()),
            ),
        ]);
        if let Some(endpoint) = &self.key.spec.endpoint {
            data.insert(
                secret_keys::ENDPOINT_URL.to_string(),
                ByteString(endpoint.clone().into_bytes()),
            );
        }
        let digest = digest::digest(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())));
        let owner = OwnerReference {
            api_version: "flashback.tech/v1alpha1".into(),
            kind: "FlashbackAccessKey".into(),
            name: self.key.name_any(),
            uid: self.key.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        };
        let mut object = Secret {
            metadata: ObjectMeta {
                name: Some(self.key.secret_name().to_string()),
                namespace: self.key.namespace(),
                labels: Some(BTreeMap::from([(
                    ACCESS_KEY_LABEL.to_string(),
                    self.key.uid().unwrap_or_default(),
                )])),
                annotations: Some(BTreeMap::from([
                    ("flashback.tech/key-id".to_string(), created.id.clone()),
                    (
                        "flashback.tech/repository".to_string(),
                        self.key.spec.repository_ref.name.clone(),
                    ),
                ])),
                owner_references: Some(vec![owner]),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Secret::default()
        };
        let written = match secret {
            SecretState::Owned {
                resource_version, ..
            } => {
                object.metadata.resource_version = Some(resource_version.clone());
                self.secrets
                    .replace(self.key.secret_name(), &PostParams::default(), &object)
                    .await
            }
            _ => self.secrets.create(&PostParams::default(), &object).await,
        }
        .map_err(Error::from_write)?;
        Ok((digest, written.resource_version().unwrap_or_default()))
    }

    async fn delete_key(
        &self,
        client: &FlashbackClient,
        repo_id: &str,
        key_id: &str,
    ) -> Result<(), ApiError> {
        match client.delete_repo_key(repo_id, key_id).await {
            Ok(()) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// What an API error means for the key: the repository's rules (the same token, the same
    /// API), or a retry.
    fn stall_or_retry(&self, error: &ApiError) -> State {
        let stall = self
            .repository
            .as_ref()
            .and_then(|repo| api_stall_for(error, repo, "repository", repo.remote_name()));
        match stall {
            Some(stall) => stall.state(),
            None => State::Progressing {
                reason: Reason::RemoteUnavailable,
                message: format!("the Flashback API failed, will retry: {error}"),
            },
        }
    }

    /// A failed API call: a stall for a person, or a retry with backoff.
    async fn remote_failed(
        &mut self,
        operation: &'static str,
        error: ApiError,
    ) -> Result<Action, Error> {
        let state = self.stall_or_retry(&error);
        let stalled = matches!(state, State::Stalled { .. });
        self.report(&state, None).await?;
        if stalled {
            return Ok(Action::await_change());
        }
        Err(Error::Remote {
            operation,
            source: error,
        })
    }

    /// Report: the status (see [`status_write::write`]), with the key the Secret now holds when
    /// `recorded` says so; an Event for a new stall. The finalizer goes on first.
    async fn report(&mut self, state: &State, recorded: Option<Recorded>) -> Result<Action, Error> {
        self.set_finalizers(true).await?;
        let current = self.key.status.clone().unwrap_or_default();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let generation = self.key.metadata.generation;
        let mut next = FlashbackAccessKeyStatus {
            conditions: conditions::next(&current.conditions, state, generation, &now),
            observed_generation: generation,
            secret_name: Some(self.key.secret_name().to_string()),
            ..current.clone()
        };
        if let Some(recorded) = recorded {
            next.key_id = recorded.key_id;
            next.access_key_id = recorded.access_key_id;
            next.secret_digest = recorded.secret_digest;
            next.access_type = next.key_id.as_ref().map(|_| self.key.spec.access_type);
            next.last_handled_rotate_at = self.key.rotate_requested_at().map(str::to_string);
        }
        // A stall is looked at again at the resync pace: what fixes it (a token, a permission,
        // an API) may change without touching this object.
        let after = if matches!(state, State::Stalled { .. }) {
            Action::requeue(self.ctx.settings.resync_interval)
        } else {
            Action::await_change()
        };
        // Read afresh before deciding, and written over whatever changed since.
        let written = status_write::write(
            &self.keys,
            &self.ctx.events,
            &self.key,
            &next,
            state,
            Write::Unconditional,
            Announce::NewStalls,
        );
        if let Some(fresh) = written.await? {
            self.key = fresh;
        }
        Ok(after)
    }

    /// Whether this shard still serves the key object; checked before every remote write.
    fn serves(&self) -> bool {
        self.ctx.serves(&self.ctx.access_keys, &self.key)
    }

    async fn set_finalizers(&mut self, present: bool) -> Result<(), Error> {
        if !self.serves() {
            return Err(Error::LeftShard);
        }
        self.key = finalizer::set(&self.keys, self.key.clone(), present).await?;
        Ok(())
    }

    async fn publish(&self, type_: EventType, reason: Reason, note: String) {
        events::publish(
            &self.ctx.events,
            &self.key.object_ref(&()),
            type_,
            reason,
            note,
        )
        .await;
    }
}

/// The key the Secret holds, as the status records it; all `None` once revoked.
struct Recorded {
    key_id: Option<String>,
    access_key_id: Option<String>,
    secret_digest: Option<String>,
}

impl Recorded {
    fn key(key_id: String, access_key_id: String, secret_digest: String) -> Self {
        Self {
            key_id: Some(key_id),
            access_key_id: Some(access_key_id),
            secret_digest: Some(secret_digest),
        }
    }

    fn revoked() -> Self {
        Self {
            key_id: None,
            access_key_id: None,
            secret_digest: None,
        }
    }
}

impl KindStatus for FlashbackAccessKeyStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The key's fields, whenever unset: a revoked key leaves none behind.
    fn cleared(&self, _current: Option<&Self>) -> Vec<&'static str> {
        [
            ("keyId", self.key_id.is_none()),
            ("accessKeyId", self.access_key_id.is_none()),
            ("secretDigest", self.secret_digest.is_none()),
            ("accessType", self.access_type.is_none()),
        ]
        .into_iter()
        .filter_map(|(field, cleared)| cleared.then_some(field))
        .collect()
    }
}

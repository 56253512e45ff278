//! One reconcile of one `FlashbackRepository`, spelled out as steps: credentials → observe
//! the remote → decide (pure, `plan`) → act → write status (pure, `status`) → events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::controller::context::{Context, Failpoint};
use crate::controller::credentials::{self, Credentials, CredentialsError};
use crate::controller::error::Error;
use crate::controller::plan::{self, Decision, Stall};
use crate::controller::status::{self, State};
use crate::crd::{
    DeletionPolicy, FINALIZER, FlashbackRepository, FlashbackRepositoryStatus, ManagementPolicy,
    annotations,
};
use crate::flashback::ApiError;

/// The entry point kube-runtime calls for every object that needs a look.
pub async fn reconcile(repo: Arc<FlashbackRepository>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = repo.namespace().unwrap_or_default();
    let api: Api<FlashbackRepository> = Api::namespaced(ctx.kube.clone(), &namespace);
    let key = object_key(&repo);
    let result = finalizer(&api, FINALIZER, repo, |event| async {
        match event {
            finalizer::Event::Apply(repo) => apply(&api, &repo, &ctx).await,
            finalizer::Event::Cleanup(repo) => cleanup(&api, &repo, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

/// Called by kube-runtime when `reconcile` failed: back off per object.
pub fn error_policy(repo: Arc<FlashbackRepository>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next(&object_key(&repo), error.retry_after());
    warn!(
        namespace = repo.namespace().unwrap_or_default(),
        name = repo.name_any(),
        error = %error,
        reason = error.label(),
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

fn object_key(repo: &FlashbackRepository) -> String {
    repo.uid().unwrap_or_else(|| {
        format!(
            "{}/{}",
            repo.namespace().unwrap_or_default(),
            repo.name_any()
        )
    })
}

async fn apply(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
) -> Result<Action, Error> {
    let credentials = match credentials_of(repo, ctx).await? {
        Ok(credentials) => credentials,
        Err(problem) => return stall(api, repo, ctx, None, credentials_stall(&problem)).await,
    };
    let workspace = &repo.spec.workspace_id;
    // A person asked for a look now: no listing from before the request will do.
    let fetched_after = repo.pending_reconcile_request().map(|_| Instant::now());
    let listing = match ctx
        .remote
        .repos(&credentials, workspace, fetched_after)
        .await
    {
        Ok(listing) => listing,
        Err(error) => return remote_failed(api, repo, ctx, None, "list repositories", error).await,
    };

    let desired = plan::desired(repo);
    match plan::decide(repo, &listing) {
        Decision::Create => {
            if !mark_create_started(api, repo).await? {
                debug!("the object changed since it was read; deciding again on the new version");
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            progress(
                api,
                repo,
                ctx,
                None,
                "Creating",
                "creating the remote repository",
            )
            .await?;
            let repo_id = match ctx.remote.create(&credentials, workspace, &desired).await {
                Ok(id) => id,
                Err(error) => {
                    return remote_failed(api, repo, ctx, None, "create the repository", error)
                        .await;
                }
            };
            if ctx.failpoint == Some(Failpoint::PauseAfterRemoteCreate) {
                info!(repo_id, "failpoint pause-after-remote-create reached");
                std::future::pending::<()>().await;
            }
            publish(
                ctx,
                repo,
                EventType::Normal,
                "Created",
                format!("created remote repository {repo_id}"),
            )
            .await;
            synced(api, repo, ctx, repo_id).await
        }
        Decision::Update { repo_id } => {
            let drift = plan::is_drift(repo);
            progress(
                api,
                repo,
                ctx,
                Some(&repo_id),
                "Updating",
                "updating the remote repository",
            )
            .await?;
            if let Err(error) = ctx
                .remote
                .update(&credentials, workspace, &repo_id, &desired)
                .await
            {
                return remote_failed(
                    api,
                    repo,
                    ctx,
                    Some(repo_id),
                    "update the repository",
                    error,
                )
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
                        repo.metadata.generation.unwrap_or_default()
                    ),
                )
            };
            publish(ctx, repo, EventType::Normal, reason, note).await;
            synced(api, repo, ctx, repo_id).await
        }
        Decision::InSync { repo_id } => {
            if repo.status.as_ref().and_then(|s| s.repo_id.as_deref()) != Some(repo_id.as_str())
                && repo.adopted_repo_id() == Some(repo_id.as_str())
            {
                publish(
                    ctx,
                    repo,
                    EventType::Normal,
                    "Adopted",
                    format!("adopted remote repository {repo_id}"),
                )
                .await;
            }
            synced(api, repo, ctx, repo_id).await
        }
        Decision::Observe { repo_id, in_sync } => {
            let message = if in_sync {
                "observed the remote repository; it matches the spec"
            } else {
                "observed the remote repository; it differs from the spec, and ObserveOnly never writes"
            };
            ready(api, repo, ctx, repo_id, "Observed", message).await
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
            write_status(api, repo, ctx, repo_id, &state).await?;
            Ok(Action::requeue(ctx.resync_interval))
        }
        Decision::Stall(problem) => stall(api, repo, ctx, None, problem).await,
    }
}

async fn cleanup(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
) -> Result<Action, Error> {
    let keep = if repo.spec.management_policy == ManagementPolicy::ObserveOnly {
        Some("managementPolicy is ObserveOnly")
    } else if repo.spec.deletion_policy == DeletionPolicy::Orphan {
        Some("deletionPolicy is Orphan")
    } else if repo.is_paused() {
        Some("remote writes are paused")
    } else {
        None
    };
    if let Some(why) = keep {
        publish(
            ctx,
            repo,
            EventType::Normal,
            "Orphaned",
            format!("left the remote repository in Flashback: {why}"),
        )
        .await;
        return Ok(Action::await_change());
    }

    let credentials = match credentials_of(repo, ctx).await? {
        Ok(credentials) => credentials,
        Err(problem) => {
            let problem = credentials_stall(&problem);
            stall(api, repo, ctx, None, problem.clone()).await?;
            return Err(Error::CleanupBlocked(problem.message));
        }
    };
    let workspace = &repo.spec.workspace_id;
    let known = repo
        .adopted_repo_id()
        .or(repo.status.as_ref().and_then(|s| s.repo_id.as_deref()))
        .map(str::to_string);
    let repo_id = match known {
        Some(id) => Some(id),
        // A crash between the create and the status write leaves only the marker: find the
        // repository by name so it does not leak.
        None if repo.create_started() => {
            match ctx.remote.repos(&credentials, workspace, None).await {
                Ok(listing) => listing
                    .iter()
                    .find(|r| r.name == repo.remote_name())
                    .map(|r| r.id.clone()),
                Err(error) => return Err(deletion_failed(api, repo, ctx, error).await),
            }
        }
        None => None,
    };
    if let Some(repo_id) = repo_id {
        if let Err(error) = ctx.remote.delete(&credentials, workspace, &repo_id).await {
            return Err(deletion_failed(api, repo, ctx, error).await);
        }
        publish(
            ctx,
            repo,
            EventType::Normal,
            "Deleted",
            format!("deleted remote repository {repo_id}"),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Reports a failed remote delete on the object and keeps the finalizer.
async fn deletion_failed(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
    error: ApiError,
) -> Error {
    let message = format!("cannot delete the remote repository: {error}");
    publish(
        ctx,
        repo,
        EventType::Warning,
        "DeleteFailed",
        message.clone(),
    )
    .await;
    let state = match api_stall(&error, repo) {
        Some(problem) => State::Stalled {
            reason: problem.reason,
            message: problem.message,
        },
        None => State::Progressing {
            reason: "DeleteFailed",
            message,
        },
    };
    if let Err(status_error) = write_status(api, repo, ctx, None, &state).await {
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

async fn credentials_of(
    repo: &FlashbackRepository,
    ctx: &Context,
) -> Result<Result<Credentials, CredentialsError>, Error> {
    Ok(credentials::resolve(
        &ctx.kube,
        repo,
        ctx.default_credentials.as_ref(),
        &ctx.api_url,
    )
    .await?)
}

fn credentials_stall(problem: &CredentialsError) -> Stall {
    Stall {
        reason: match problem {
            CredentialsError::SecretNotFound(_) => "SecretNotFound",
            CredentialsError::TokenMissing(_) => "TokenMissing",
            CredentialsError::InvalidApiUrl(_) => "InvalidApiUrl",
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
    if error.is_transient() {
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

/// Handles a failed remote call during apply: a stall for a person, or a retry.
async fn remote_failed(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
    repo_id: Option<String>,
    operation: &'static str,
    error: ApiError,
) -> Result<Action, Error> {
    if let Some(problem) = api_stall(&error, repo) {
        return stall(api, repo, ctx, repo_id, problem).await;
    }
    let state = State::Progressing {
        reason: "RemoteUnavailable",
        message: format!("could not {operation}, will retry: {error}"),
    };
    write_status(api, repo, ctx, repo_id, &state).await?;
    Err(Error::Remote {
        operation,
        source: error,
    })
}

async fn stall(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
    repo_id: Option<String>,
    problem: Stall,
) -> Result<Action, Error> {
    let state = State::Stalled {
        reason: problem.reason,
        message: problem.message.clone(),
    };
    write_status(api, repo, ctx, repo_id, &state).await?;
    // A person has to act; look again only at the slow resync pace (or on a change).
    Ok(Action::requeue(ctx.resync_interval))
}

async fn progress(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
    repo_id: Option<&str>,
    reason: &'static str,
    message: &str,
) -> Result<(), Error> {
    let state = State::Progressing {
        reason,
        message: message.to_string(),
    };
    write_status(api, repo, ctx, repo_id.map(str::to_string), &state).await
}

async fn ready(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
    repo_id: String,
    reason: &'static str,
    message: &str,
) -> Result<Action, Error> {
    let state = State::Ready {
        reason,
        message: message.to_string(),
    };
    write_status(api, repo, ctx, Some(repo_id), &state).await?;
    Ok(Action::requeue(ctx.resync_interval))
}

/// Ready: the remote repository matches the spec.
async fn synced(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
    repo_id: String,
) -> Result<Action, Error> {
    ready(
        api,
        repo,
        ctx,
        repo_id,
        "Synced",
        "the remote repository matches the spec",
    )
    .await
}

/// Writes the status through the status subresource, only when it changed, and publishes an
/// Event when the object becomes Stalled or stalls for another reason.
async fn write_status(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
    ctx: &Context,
    repo_id: Option<String>,
    state: &State,
) -> Result<(), Error> {
    let now = Time(jiff_now());
    let next = status::next(repo, repo_id, state, &now);
    if repo.status.as_ref() == Some(&next) {
        return Ok(());
    }
    if let State::Stalled { reason, message } = state
        && status::stalled_reason(repo.status.as_ref()) != Some(reason)
    {
        publish(ctx, repo, EventType::Warning, reason, message.clone()).await;
    }
    // The statistics belong to the stats task: leave them out so a status computed from a
    // cached object never writes older figures back.
    let patch = FlashbackRepositoryStatus {
        stats: None,
        ..next
    };
    api.patch_status(
        &repo.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": patch })),
    )
    .await?;
    Ok(())
}

/// Writes the create marker before every create, with an optimistic-concurrency patch (it
/// carries the resourceVersion that was read). Its success proves the decision to create was
/// made on the latest version of the object, not on a cache that has not yet seen the status
/// write of an earlier create; `false` means the object changed and must be decided again.
async fn mark_create_started(
    api: &Api<FlashbackRepository>,
    repo: &FlashbackRepository,
) -> Result<bool, Error> {
    let patch = json!({
        "metadata": {
            "resourceVersion": repo.resource_version(),
            "annotations": { annotations::CREATE_STARTED_AT: Time(jiff_now()) },
        }
    });
    match api
        .patch(
            &repo.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
        Err(error) => Err(error.into()),
    }
}

async fn publish(
    ctx: &Context,
    repo: &FlashbackRepository,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &repo.object_ref(&())).await {
        warn!(error = %error, reason, "could not publish an Event");
    }
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

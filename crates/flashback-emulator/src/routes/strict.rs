//! The handlers and write steps of [`crate::rules`]: what the service refuses that a lenient
//! server would take, the calls of the official client the operator had no use for before
//! (`GET /health`, `GET /workspace`), and the control routes that set the rules.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Caller, control_body, control_error, new_id, now, ok, read_org};
use crate::AppState;
use crate::rules::{self, Kind, RuleState, Rules};
use crate::state::{BucketWriteBody, Failure, Org, RepoWriteBody};

/// `GET /health`: the service is up. The shape is a guess (the official client types no
/// answer); the emulator asks for a token here as everywhere.
pub(super) async fn health() -> Response {
    ok(json!({"success": true, "status": "ok"}))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkspaceView<'a> {
    id: &'a str,
    name: &'a str,
    org_id: &'a str,
    users: [(); 0],
}

/// `GET /workspace`: the organisation's workspaces, in the shape of the official client's
/// `GetWorkspacesResponse`: `{success, workspaces: [{id, name, orgId, users}]}`. The emulator
/// has no workspace names or users: the name is the id, and `users` is empty.
pub(super) async fn list_workspaces(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let rules = state.rules().rules.clone();
    let ids = read_org(&state, &caller, |org| rules::workspaces_of(org, &rules));
    let org_id = org_id(&caller.0);
    let workspaces: Vec<WorkspaceView> = ids
        .iter()
        .map(|id| WorkspaceView {
            id,
            name: id,
            org_id: &org_id,
            users: [],
        })
        .collect();
    ok(json!({"success": true, "workspaces": workspaces}))
}

/// A stable organisation id that does not show the token it stands for.
fn org_id(token: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("org-{hex}")
}

/// Open (no workspaces in the rules), every workspace a call names exists from then on:
/// remembered so `GET /workspace` lists it. The write lock is taken only for a new one.
pub(super) fn note_workspace(state: &AppState, caller: &Caller, workspace: Option<&str>) {
    let Some(workspace) = workspace else {
        return;
    };
    if read_org(state, caller, |org| org.workspaces.contains(workspace)) {
        return;
    }
    {
        let mut store = state.store.write().unwrap_or_else(|e| e.into_inner());
        if let Some(org) = store.org_mut(&caller.0) {
            org.workspaces.insert(workspace.to_owned());
        }
    }
    state.changed();
}

fn note_written_workspace(org: &mut Org, workspace: Option<&str>) {
    if let Some(workspace) = rules::workspace_filter(workspace) {
        org.workspaces.insert(workspace.to_owned());
    }
}

/// `POST /repo` under the rules: the workspace exists, no deleted repository holds the name.
pub(super) fn create_repo(
    org: &mut Org,
    rules: &Rules,
    body: RepoWriteBody,
) -> Result<String, Failure> {
    rules::workspace_exists(rules, body.workspace_id.as_deref())?;
    rules::name_not_held(org, rules, Kind::Repository, body.name.as_deref(), None)?;
    let workspace = body.workspace_id.clone();
    let id = org.create_repo(body, new_id(), now())?;
    let name = org.repos[&id].name.clone();
    rules::name_reused(org, Kind::Repository, &name);
    note_written_workspace(org, workspace.as_deref());
    Ok(id)
}

/// `PUT /repo/{id}` under the rules (the folder rules of NORMAL repositories are checked with
/// the others, in [`Org::update_repo`]).
pub(super) fn update_repo(
    org: &mut Org,
    rules: &Rules,
    id: &str,
    body: RepoWriteBody,
) -> Result<(), Failure> {
    if org.repos.contains_key(id) {
        rules::workspace_exists(rules, body.workspace_id.as_deref())?;
        let current = org.repos.get(id).map(|repo| repo.name.clone());
        rules::name_not_held(
            org,
            rules,
            Kind::Repository,
            body.name.as_deref(),
            current.as_deref(),
        )?;
    }
    let workspace = body.workspace_id.clone();
    org.update_repo(id, body)?;
    let name = org.repos[id].name.clone();
    rules::name_reused(org, Kind::Repository, &name);
    note_written_workspace(org, workspace.as_deref());
    Ok(())
}

/// `DELETE /repo/{id}`: the name goes to the deleted ones (a soft delete).
pub(super) fn delete_repo(org: &mut Org, id: &str) -> Result<(), Failure> {
    let name = org.repos.get(id).map(|repo| repo.name.clone());
    org.delete_repo(id)?;
    if let Some(name) = name {
        rules::name_deleted(org, Kind::Repository, name);
    }
    Ok(())
}

/// `POST /bucket` under the rules. The cloud credentials are checked last, before the bucket
/// is kept (the reference: "checked before the bucket is created"): a register they fail
/// leaves nothing behind.
pub(super) fn create_bucket(
    org: &mut Org,
    rules: &RuleState,
    body: BucketWriteBody,
    quota: Option<usize>,
) -> Result<String, Failure> {
    rules::workspace_exists(&rules.rules, body.workspace_id.as_deref())?;
    rules::name_not_held(org, &rules.rules, Kind::Bucket, body.name.as_deref(), None)?;
    let key = body.key.clone();
    let workspace = body.workspace_id.clone();
    let id = org.create_bucket_within(body, new_id(), now(), quota)?;
    if !rules::credentials_pass(rules, None, true, key.as_deref()) {
        org.buckets.remove(&id);
        return Err(rules::credentials_refused());
    }
    let name = org.buckets[&id].name.clone();
    rules::name_reused(org, Kind::Bucket, &name);
    note_written_workspace(org, workspace.as_deref());
    Ok(id)
}

/// `PUT /bucket/{id}` under the rules: the credentials it brings, or else those it keeps, are
/// checked again, and a failing check leaves the bucket as it was. Answers the bucket's status
/// and whether the write brought credentials that passed.
pub(super) fn update_bucket(
    org: &mut Org,
    rules: &RuleState,
    id: &str,
    body: BucketWriteBody,
) -> Result<(String, bool), Failure> {
    let before = org.buckets.get(id).cloned();
    if let Some(before) = &before {
        rules::workspace_exists(&rules.rules, body.workspace_id.as_deref())?;
        rules::name_not_held(
            org,
            &rules.rules,
            Kind::Bucket,
            body.name.as_deref(),
            Some(&before.name),
        )?;
    }
    let given = [&body.key, &body.secret]
        .iter()
        .any(|value| value.as_deref().is_some_and(|v| !v.trim().is_empty()));
    let workspace = body.workspace_id.clone();
    let updated = org.update_bucket(id, body)?;
    let (status, key) = (updated.status.clone(), updated.key.clone());
    if !rules::credentials_pass(rules, Some(id), given, key.as_deref()) {
        if let Some(before) = before {
            org.buckets.insert(id.to_owned(), before);
        }
        return Err(rules::credentials_refused());
    }
    let name = org.buckets[id].name.clone();
    rules::name_reused(org, Kind::Bucket, &name);
    note_written_workspace(org, workspace.as_deref());
    Ok((status, given))
}

/// `DELETE /bucket/{id}`: the name goes to the deleted ones (a soft delete).
pub(super) fn delete_bucket(org: &mut Org, id: &str) -> Result<(), Failure> {
    let name = org.buckets.get(id).map(|bucket| bucket.name.clone());
    org.delete_bucket(id)?;
    if let Some(name) = name {
        rules::name_deleted(org, Kind::Bucket, name);
    }
    Ok(())
}

// ---- control routes ----

pub(super) async fn get_rules(State(state): State<Arc<AppState>>) -> Response {
    ok(state.rules().rules.clone())
}

/// `PUT /_emulator/rules`: replaces every rule (what a rule leaves out is its default).
pub(super) async fn set_rules(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match control_body::<Rules>(&body) {
        Ok(rules) => {
            state.rules().rules = rules;
            ok(json!({"success": true}))
        }
        Err(refusal) => refusal,
    }
}

/// Body of `PUT /_emulator/buckets/{id}/credentials`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CredentialsMark {
    valid: bool,
}

/// `PUT /_emulator/buckets/{id}/credentials {"valid": false}`: the storage provider now
/// refuses the credentials the bucket holds (revoked, expired); `true` takes that back. A
/// write that brings other credentials which pass clears it too.
pub(super) async fn set_bucket_credentials(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let mark: CredentialsMark = match control_body(&body) {
        Ok(mark) => mark,
        Err(refusal) => return refusal,
    };
    let known = {
        let mut store = state.store.write().unwrap_or_else(|e| e.into_inner());
        store.bucket_anywhere(&id).is_some()
    };
    if !known {
        return control_error(StatusCode::NOT_FOUND, format!("bucket {id} not found"));
    }
    let mut rules = state.rules();
    if mark.valid {
        rules.failing_buckets.remove(&id);
    } else {
        rules.failing_buckets.insert(id);
    }
    ok(json!({"success": true}))
}

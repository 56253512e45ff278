//! The HTTP face of the emulator: the public API of `flashback-api.md` and the `/_emulator/`
//! control API. Handlers translate between the wire and [`super::state`]; they hold the store's
//! lock only for the in-memory work, never across an await.
//!
//! Every call outside `/_emulator/` passes the [`gate`] (counters, faults, auth), a wrong path
//! or method included: those answer JSON like every refusal, so a client under test that calls
//! a route the API does not have shows up in `/_emulator/calls` (see [`super::calls`]).
//! An optional field the emulator has no value for is left out of an answer, never `null`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Extension, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

mod strict;

use super::AppState;
use super::control::{Limits, RepoPatch, StatsPatch};
use super::faults::{FaultState, Faults, Injected};
use super::rules;
use super::sessions::{IssuedSession, SessionFigures};
use super::state::{
    BucketRecord, Failure, Figures, KeyRecord, Org, RepoRecord, RepoWriteBody, SealedSecret, Unit,
};

/// The organisation of the caller, set by [`gate`] once the token is known good.
#[derive(Clone)]
struct Caller(Arc<str>);

pub(crate) fn router(state: Arc<AppState>) -> Router {
    // The fallbacks come before the gate so that it wraps them too.
    let api = Router::new()
        .route("/user/login", post(login))
        .route("/user/refresh", post(refresh_session))
        .route("/user/logout", post(logout))
        .route("/repo", get(list_repos).post(create_repo))
        .route("/repo/stats", get(repo_stats))
        .route("/repo/validate", post(validate_repo))
        .route("/repo/{id}", put(update_repo).delete(delete_repo))
        .route("/repo/{id}/validate", post(validate_repo_update))
        .route(
            "/repo/{id}/apikey",
            get(list_repo_keys).post(create_repo_key),
        )
        .route(
            "/repo/{id}/apikey/{keyId}",
            put(update_repo_key).delete(delete_repo_key),
        )
        .route("/bucket", get(list_buckets).post(create_bucket))
        .route("/bucket/stats", get(bucket_stats))
        .route("/bucket/available", get(available_buckets))
        .route("/bucket/{id}", put(update_bucket).delete(delete_bucket))
        .route("/bucket/{id}/status", get(bucket_status))
        .route("/bucket/{id}/validate", post(validate_bucket))
        .route("/health", get(strict::health))
        .route("/workspace", get(strict::list_workspaces))
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), gate));
    let control = Router::new()
        .route("/_emulator/health", get(health))
        .route("/_emulator/calls", get(get_calls).delete(reset_calls))
        .route(
            "/_emulator/faults",
            get(get_faults).put(set_faults).delete(clear_faults),
        )
        .route("/_emulator/limits", get(get_limits).put(set_limits))
        .route(
            "/_emulator/sessions",
            get(get_sessions).put(set_sessions).post(open_session),
        )
        .route("/_emulator/sessions/revoke", post(revoke_session))
        .route("/_emulator/users", post(add_user))
        .route("/_emulator/repos/{id}", axum::routing::patch(patch_repo))
        .route("/_emulator/repos/{id}/stats", put(set_repo_stats))
        .route("/_emulator/repos/{id}/keys", get(control_repo_keys))
        .route("/_emulator/repos/{id}/keys/verify", get(verify_repo_key))
        .route("/_emulator/buckets/{id}/stats", put(set_bucket_stats))
        .route(
            "/_emulator/rules",
            get(strict::get_rules).put(strict::set_rules),
        )
        .route(
            "/_emulator/buckets/{id}/credentials",
            put(strict::set_bucket_credentials),
        )
        // A typo in a control path is the test's own bug, not a call of the client under test:
        // answered, but neither gated nor counted.
        .route("/_emulator/{*rest}", any(unknown_control_route))
        .method_not_allowed_fallback(wrong_control_method);
    control.merge(api).with_state(state)
}

// ---- the gate: counters, faults, auth ----

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Wraps every public route: notes the call, applies faults, then checks the token.
async fn gate(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let method = request.method().as_str().to_owned();
    // A path no route matches is labelled with itself (no query): see `calls`.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let token = bearer(request.headers()).map(str::to_owned);
    state.calls().arrived(token.as_deref(), arrived);

    let verdict = state.faults().judge(&method, &route);
    if !verdict.delay.is_zero() {
        tokio::time::sleep(verdict.delay).await;
    }
    // A static token is its organisation; a session's access token belongs to one.
    let org = token.as_deref().and_then(|token| {
        if state.tokens.contains(token) {
            Some(Arc::<str>::from(token))
        } else {
            state.sessions().org_of(token).map(Arc::from)
        }
    });
    let response = match (verdict.injected, org) {
        (Some(injected), _) => injected_response(&injected),
        // The session routes are how a caller gets a token: they need none.
        (None, _) if route.starts_with("/user/") && route != "/user/" => next.run(request).await,
        (None, Some(org)) => {
            request.extensions_mut().insert(Caller(org));
            next.run(request).await
        }
        (None, _) => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"success": false, "error_code": "NO_AUTH_USER"})),
        )
            .into_response(),
    };

    let quiet_until = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        // However long a fault asks for, an instant far enough away will do.
        .map(|seconds| {
            let now = Instant::now();
            now.checked_add(Duration::from_secs(seconds))
                .unwrap_or(now + Duration::from_secs(10 * 365 * 24 * 3600))
        });
    let status = response.status().as_u16();
    state
        .calls()
        .answered(&method, &route, status, token.as_deref(), quiet_until);
    tracing::debug!(method, route, status, "answered");
    response
}

fn injected_response(injected: &Injected) -> Response {
    let status = StatusCode::from_u16(injected.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = json!({
        "success": false,
        "message": format!("injected fault (HTTP {})", injected.status),
    });
    if let Some(code) = &injected.error_code {
        body["error_code"] = json!(code);
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(seconds) = injected.retry_after_seconds {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

// ---- answers ----

fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        bytes,
    )
        .into_response()
}

fn ok(body: impl Serialize) -> Response {
    json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&body).expect("answers are plain data"),
    )
}

/// The body of a refusal: `{"success": false, "message"}`, with `error_code` and
/// `error_message` when the API has a code for it.
fn failure_body(failure: &Failure) -> Value {
    let mut body = json!({"success": false, "message": failure.message});
    if let Some(code) = failure.code {
        body["error_code"] = json!(code);
        body["error_message"] = json!(failure.message);
    }
    body
}

/// A refusal, as the API words it; validation refusals become HTTP 200 with
/// `"success": false` while the `successFalseUnder200` fault is on.
fn refuse(state: &AppState, failure: Failure) -> Response {
    let body = failure_body(&failure);
    let status = if failure.is_validation() && state.faults().faults().success_false_under_200 {
        StatusCode::OK
    } else {
        StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST)
    };
    (status, axum::Json(body)).into_response()
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(body)
        .map_err(|error| Failure::invalid_request(format!("the body is not valid JSON: {error}")))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `repoId=a,b` (or `repoIds=`): `None` when absent, meaning every one.
fn id_list(query: &HashMap<String, String>, names: &[&str]) -> Option<Vec<String>> {
    let raw = names.iter().find_map(|name| query.get(*name))?;
    Some(
        raw.split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// Runs `f` on the caller's organisation, under the read lock.
fn read_org<R>(state: &AppState, caller: &Caller, f: impl FnOnce(&Org) -> R) -> R {
    let store = state.store.read().unwrap_or_else(|e| e.into_inner());
    let org = store
        .org(&caller.0)
        .expect("every accepted token has an organisation");
    f(org)
}

/// Runs `f` on the caller's organisation, under the write lock, and schedules a state write
/// when it succeeded.
fn write_org<R>(
    state: &AppState,
    caller: &Caller,
    f: impl FnOnce(&mut Org) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let result = {
        let mut store = state.store.write().unwrap_or_else(|e| e.into_inner());
        let org = store
            .org_mut(&caller.0)
            .expect("every accepted token has an organisation");
        f(org)
    };
    if result.is_ok() {
        state.changed();
    }
    result
}

// ---- wire views ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RepoView<'a> {
    id: &'a str,
    name: &'a str,
    storage_type: &'a str,
    mode: &'a str,
    workspace_id: &'a str,
    created_at: &'a str,
    disabled: bool,
    buckets: Vec<UnitView<'a>>,
    ai_llms: &'a [Value],
    api_keys: Vec<KeyView<'a>>,
    ai_api_keys: [(); 0],
    // No `walletAddress`: that is for Web3 users, and the emulator has none.
}

/// A repository access key as the API lists it: the secret only sealed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyView<'a> {
    id: &'a str,
    name: &'a str,
    access_type: &'a str,
    key: &'a str,
    secret: &'a SealedSecret,
    created_at: &'a str,
}

impl<'a> From<&'a KeyRecord> for KeyView<'a> {
    fn from(key: &'a KeyRecord) -> Self {
        Self {
            id: &key.id,
            name: &key.name,
            access_type: &key.access_type,
            key: &key.key,
            secret: &key.secret,
            created_at: &key.created_at,
        }
    }
}

#[derive(Serialize)]
struct Keys<'a> {
    keys: Vec<KeyView<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UnitView<'a> {
    bucket_id: &'a str,
    /// Always present: a bucket without one is listed with "" (see `docs/emulator.md`).
    folder: &'a str,
    master: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<EmbeddedBucketView<'a>>,
}

/// The bucket object embedded in a listed repo: a listed bucket plus, like the real API, the
/// access `key` and the secret as its encrypted object (never the secret itself).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbeddedBucketView<'a> {
    #[serde(flatten)]
    bucket: BucketView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a SealedSecret>,
}

impl<'a> RepoView<'a> {
    fn new(org: &'a Org, repo: &'a RepoRecord) -> Self {
        Self {
            id: &repo.id,
            name: &repo.name,
            storage_type: &repo.storage_type,
            mode: &repo.mode,
            workspace_id: &repo.workspace_id,
            created_at: &repo.created_at,
            disabled: repo.disabled,
            buckets: repo
                .units
                .iter()
                .map(|unit| UnitView::new(org, unit))
                .collect(),
            ai_llms: &repo.ai_llms,
            api_keys: repo.keys.iter().map(KeyView::from).collect(),
            ai_api_keys: [],
        }
    }
}

impl<'a> UnitView<'a> {
    fn new(org: &'a Org, unit: &'a Unit) -> Self {
        Self {
            bucket_id: &unit.bucket_id,
            folder: unit.folder.as_deref().unwrap_or_default(),
            master: unit.master,
            bucket: org
                .buckets
                .get(&unit.bucket_id)
                .map(|bucket| EmbeddedBucketView {
                    bucket: BucketView::from(bucket),
                    // Empty in state files written before keys became optional.
                    key: bucket.key.as_deref().filter(|key| !key.is_empty()),
                    secret: bucket.secret.as_ref(),
                }),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BucketView<'a> {
    id: &'a str,
    name: &'a str,
    bucket: &'a str,
    storage_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<&'a str>,
    status: &'a str,
    workspace_id: &'a str,
    created_at: &'a str,
}

impl<'a> From<&'a BucketRecord> for BucketView<'a> {
    fn from(bucket: &'a BucketRecord) -> Self {
        Self {
            id: &bucket.id,
            name: &bucket.name,
            bucket: &bucket.bucket,
            storage_type: &bucket.storage_type,
            region: bucket.region.as_deref(),
            endpoint: bucket.endpoint.as_deref(),
            status: &bucket.status,
            workspace_id: &bucket.workspace_id,
            created_at: &bucket.created_at,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RepoStatsView<'a> {
    repo_id: &'a str,
    total_upload_bytes: &'a str,
    total_download_bytes: &'a str,
    total_size_change: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BucketStatsView<'a> {
    bucket_id: &'a str,
    total_count: &'a str,
    total_upload_bytes: &'a str,
    total_download_bytes: &'a str,
    total_size_change: &'a str,
}

/// `{"success": true, "<items>": [...]}` without a detour through `serde_json::Value`.
#[derive(Serialize)]
struct Listing<T> {
    success: bool,
    #[serde(flatten)]
    items: T,
}

#[derive(Serialize)]
struct Repos<'a> {
    repos: Vec<RepoView<'a>>,
}

#[derive(Serialize)]
struct Buckets<'a> {
    buckets: Vec<BucketView<'a>>,
}

#[derive(Serialize)]
struct Stats<T> {
    stats: Vec<T>,
}

fn listing<T: Serialize>(items: T) -> Vec<u8> {
    serde_json::to_vec(&Listing {
        success: true,
        items,
    })
    .expect("answers are plain data")
}

// ---- repo handlers ----

async fn list_repos(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let workspace = rules::workspace_filter(query.get("workspaceId").map(String::as_str));
    strict::note_workspace(&state, &caller, workspace);
    // Serialized under the read lock: borrowing beats cloning every repo of a big list.
    let bytes = read_org(&state, &caller, |org| {
        let repos: Vec<RepoView> = org
            .list_repos(workspace, query.get("repoId").map(String::as_str))
            .map(|repo| RepoView::new(org, repo))
            .collect();
        listing(Repos { repos })
    });
    json_bytes(StatusCode::OK, bytes)
}

async fn create_repo(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let rules = state.rules().rules.clone();
    let result = parse_body(&body).and_then(|body| {
        write_org(&state, &caller, |org| {
            strict::create_repo(org, &rules, body)
        })
    });
    match result {
        Ok(repo_id) => ok(json!({"success": true, "repoId": repo_id})),
        Err(failure) => refuse(&state, failure),
    }
}

async fn update_repo(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let rules = state.rules().rules.clone();
    let result = parse_body(&body).and_then(|body| {
        write_org(&state, &caller, |org| {
            strict::update_repo(org, &rules, &id, body)
        })
    });
    match result {
        Ok(()) => ok(json!({"success": true, "repoId": id})),
        Err(failure) => refuse(&state, failure),
    }
}

async fn delete_repo(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match write_org(&state, &caller, |org| strict::delete_repo(org, &id)) {
        Ok(()) => ok(json!({"success": true})),
        Err(failure) => refuse(&state, failure),
    }
}

/// The answer of a dry run: 200 either way, the verdict in the body.
fn verdict(result: Result<(), Failure>) -> Response {
    match result {
        Ok(()) => ok(json!({"success": true})),
        // `{success, error_code?, error_message?}`, as the contract words a verdict.
        Err(failure) => {
            let mut body = json!({"success": false, "error_message": failure.message});
            if let Some(code) = failure.code {
                body["error_code"] = json!(code);
            }
            ok(body)
        }
    }
}

/// `POST /repo/validate`: would this new repo (or, with `repoId`, this replacement) pass?
async fn validate_repo(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let result = parse_body::<RepoWriteBody>(&body).and_then(|mut body| {
        let exclude = body.repo_id.take();
        read_org(&state, &caller, |org| {
            org.validate_units_only(body, exclude.as_deref())
        })
    });
    verdict(result)
}

/// `POST /repo/{id}/validate`: would this replacement of repo `id` pass? The path names the
/// repo; a `repoId` in the body is ignored, as the path is what a real server routes on.
async fn validate_repo_update(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // A repo that does not exist is a missing resource (404), not a verdict on the buckets.
    if let Err(failure) = read_org(&state, &caller, |org| org.repo_exists(&id)) {
        return refuse(&state, failure);
    }
    let result = parse_body::<RepoWriteBody>(&body).and_then(|body| {
        read_org(&state, &caller, |org| {
            org.validate_units_only(body, Some(&id))
        })
    });
    verdict(result)
}

async fn repo_stats(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let ids = id_list(&query, &["repoId", "repoIds"]);
    let bytes = read_org(&state, &caller, |org| {
        let stats: Vec<RepoStatsView> = org
            .repo_stats(ids.as_deref())
            .into_iter()
            .map(|repo| RepoStatsView {
                repo_id: &repo.id,
                total_upload_bytes: &repo.stats.total_upload_bytes,
                total_download_bytes: &repo.stats.total_download_bytes,
                total_size_change: &repo.stats.total_size_change,
            })
            .collect();
        listing(Stats { stats })
    });
    json_bytes(StatusCode::OK, bytes)
}

// ---- repository access key handlers ----

async fn list_repo_keys(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let result = read_org(&state, &caller, |org| {
        org.repo_keys(&id).map(|keys| {
            listing(Keys {
                keys: keys.iter().map(KeyView::from).collect(),
            })
        })
    });
    match result {
        Ok(bytes) => json_bytes(StatusCode::OK, bytes),
        Err(failure) => refuse(&state, failure),
    }
}

/// `POST /repo/{id}/apikey`: the one answer that carries the plain secret.
async fn create_repo_key(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = parse_body(&body).and_then(|body| {
        write_org(&state, &caller, |org| {
            org.create_key(&id, body, new_id(), now())
        })
    });
    match result {
        Ok(created) => ok(json!({
            "success": true,
            "id": created.id,
            "key": created.key,
            "secret": created.secret,
        })),
        Err(failure) => refuse(&state, failure),
    }
}

async fn update_repo_key(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, key_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let result = parse_body(&body)
        .and_then(|body| write_org(&state, &caller, |org| org.update_key(&id, &key_id, body)));
    match result {
        Ok(()) => ok(json!({"success": true})),
        Err(failure) => refuse(&state, failure),
    }
}

async fn delete_repo_key(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path((id, key_id)): Path<(String, String)>,
) -> Response {
    match write_org(&state, &caller, |org| org.delete_key(&id, &key_id)) {
        Ok(()) => ok(json!({"success": true})),
        Err(failure) => refuse(&state, failure),
    }
}

// ---- bucket handlers ----

async fn list_buckets(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let workspace = rules::workspace_filter(query.get("workspaceId").map(String::as_str));
    strict::note_workspace(&state, &caller, workspace);
    let bytes = read_org(&state, &caller, |org| {
        let buckets: Vec<BucketView> = org.list_buckets(workspace).map(BucketView::from).collect();
        listing(Buckets { buckets })
    });
    json_bytes(StatusCode::OK, bytes)
}

async fn create_bucket(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let quota = state.limits().buckets_per_organisation;
    let rules = state.rules().clone();
    let result = parse_body(&body).and_then(|body| {
        write_org(&state, &caller, |org| {
            strict::create_bucket(org, &rules, body, quota)
        })
    });
    match result {
        Ok(bucket_id) => ok(json!({"success": true, "bucketId": bucket_id})),
        Err(failure) => refuse(&state, failure),
    }
}

/// `PUT /bucket/{id}`: `{"success": true, "bucketId", "status"}`. The real API re-validates
/// the cloud credentials here and reports `latency_ms`; the emulator measures nothing, so it
/// leaves `latency_ms` out.
async fn update_bucket(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let rules = state.rules().clone();
    let result = parse_body(&body).and_then(|body| {
        write_org(&state, &caller, |org| {
            strict::update_bucket(org, &rules, &id, body)
        })
    });
    match result {
        Ok((status, new_key)) => {
            if new_key {
                // Credentials that passed their check replace those marked failing.
                state.rules().failing_buckets.remove(&id);
            }
            ok(json!({"success": true, "bucketId": id, "status": status}))
        }
        Err(failure) => refuse(&state, failure),
    }
}

/// `POST /bucket/{id}/validate`: the real API tries the credentials against the cloud; the
/// emulator has no cloud to try, so a known bucket and a well-formed body pass, with the
/// bucket's status, unless the credentials are ones the rules refuse or the bucket's were
/// marked failing: then the reference's 400 `{success: false, message}`.
async fn validate_bucket(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let rules = state.rules().clone();
    let result = parse_body::<Value>(&body).and_then(|body| {
        let (status, stored_key) = read_org(&state, &caller, |org| {
            org.bucket(&id).map(|b| (b.status.clone(), b.key.clone()))
        })?;
        match body.get("bucket").and_then(Value::as_str) {
            Some(name) if !name.trim().is_empty() => {}
            _ => return Err(Failure::invalid_request("bucket is required")),
        }
        let given = ["key", "secret"].iter().any(|field| {
            body.get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        });
        let key = body.get("key").and_then(Value::as_str).filter(|_| given);
        let key = key.or(stored_key.as_deref());
        if !rules::credentials_pass(&rules, Some(&id), given, key) {
            return Err(rules::credentials_refused());
        }
        Ok(status)
    });
    match result {
        Ok(status) => ok(json!({"success": true, "status": status})),
        Err(failure) => refuse(&state, failure),
    }
}

/// `GET /bucket/{id}/status`: the nodes serving the bucket. The emulator is the only one.
async fn bucket_status(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match read_org(&state, &caller, |org| org.bucket(&id).map(|_| ())) {
        // `success` too: the contract's transport rule puts it in every body.
        Ok(()) => ok(json!({
            "success": true,
            "bucketId": id,
            "nodeStatus": [{
                "ip": "127.0.0.1",
                "region": EMULATOR_REGION,
                "version": env!("CARGO_PKG_VERSION"),
                "status": "ONLINE",
                "lastUpdated": now(),
            }],
        })),
        Err(failure) => refuse(&state, failure),
    }
}

/// The region the emulator's one node reports in `GET /bucket/{id}/status`.
const EMULATOR_REGION: &str = "local";

/// `GET /bucket/available`: a bare array (no `success`, as the contract says) of the buckets
/// that no repo uses.
async fn available_buckets(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let workspace = rules::workspace_filter(query.get("workspaceId").map(String::as_str));
    let bytes = read_org(&state, &caller, |org| {
        let buckets: Vec<BucketView> = org
            .available_buckets(workspace)
            .map(BucketView::from)
            .collect();
        serde_json::to_vec(&buckets).expect("answers are plain data")
    });
    json_bytes(StatusCode::OK, bytes)
}

async fn delete_bucket(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match write_org(&state, &caller, |org| strict::delete_bucket(org, &id)) {
        Ok(()) => ok(json!({"success": true})),
        Err(failure) => refuse(&state, failure),
    }
}

async fn bucket_stats(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let ids = id_list(&query, &["bucketId", "bucketIds"]);
    let bytes = read_org(&state, &caller, |org| {
        let stats: Vec<BucketStatsView> = org
            .bucket_stats(ids.as_deref())
            .into_iter()
            .map(|bucket| BucketStatsView {
                bucket_id: &bucket.id,
                total_count: &bucket.stats.total_count,
                total_upload_bytes: &bucket.stats.total_upload_bytes,
                total_download_bytes: &bucket.stats.total_download_bytes,
                total_size_change: &bucket.stats.total_size_change,
            })
            .collect();
        listing(Stats { stats })
    });
    json_bytes(StatusCode::OK, bytes)
}

/// A path the API does not have: 404 in the shape of the API's other 404s, no `error_code`
/// so that it cannot pass for a missing repo or bucket.
async fn unknown_route(method: Method, uri: Uri) -> Response {
    control_error(
        StatusCode::NOT_FOUND,
        format!("no route {method} {}", uri.path()),
    )
}

/// A path the API has, with a method it does not take.
async fn wrong_method(method: Method, uri: Uri) -> Response {
    control_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("no route {method} {}", uri.path()),
    )
}

// ---- control API (no auth, no faults) ----

fn control_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "message": message.into()})),
    )
        .into_response()
}

async fn unknown_control_route(method: Method, uri: Uri) -> Response {
    control_error(
        StatusCode::NOT_FOUND,
        format!("no control route {method} {}", uri.path()),
    )
}

async fn wrong_control_method(method: Method, uri: Uri) -> Response {
    control_error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("no control route {method} {}", uri.path()),
    )
}

async fn health() -> Response {
    ok(json!({"success": true}))
}

async fn get_calls(State(state): State<Arc<AppState>>) -> Response {
    ok(state.calls().snapshot())
}

async fn reset_calls(State(state): State<Arc<AppState>>) -> Response {
    state.calls().reset();
    ok(json!({"success": true}))
}

async fn get_faults(State(state): State<Arc<AppState>>) -> Response {
    ok(state.faults().faults().clone())
}

/// Reads the JSON body of a control call, or the 400 answer that says why it cannot.
// The refusal is a whole Response on a cold path: boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn control_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|error| control_error(StatusCode::BAD_REQUEST, error.to_string()))
}

async fn set_faults(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let faults: Faults = match control_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refusal,
    };
    if let Err(message) = faults.check() {
        return control_error(StatusCode::BAD_REQUEST, message);
    }
    *state.faults() = FaultState::new(faults);
    ok(json!({"success": true}))
}

async fn get_limits(State(state): State<Arc<AppState>>) -> Response {
    ok(state.limits().clone())
}

async fn set_limits(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match control_body::<Limits>(&body) {
        Ok(limits) => {
            *state.limits() = limits;
            ok(json!({"success": true}))
        }
        Err(refusal) => refusal,
    }
}

async fn clear_faults(State(state): State<Arc<AppState>>) -> Response {
    *state.faults() = FaultState::default();
    ok(json!({"success": true}))
}

fn apply_figures(figures: &mut Figures, patch: StatsPatch) {
    let StatsPatch {
        total_count,
        total_upload_bytes,
        total_download_bytes,
        total_size_change,
    } = patch;
    let set = |slot: &mut String, value: Option<String>| {
        if let Some(value) = value {
            *slot = value;
        }
    };
    set(&mut figures.total_count, total_count);
    set(&mut figures.total_upload_bytes, total_upload_bytes);
    set(&mut figures.total_download_bytes, total_download_bytes);
    set(&mut figures.total_size_change, total_size_change);
}

/// Applies `f` to the store; 404 when it finds nothing to change.
fn control_write(
    state: &AppState,
    what: &str,
    f: impl FnOnce(&mut super::state::Store) -> bool,
) -> Response {
    let found = {
        let mut store = state.store.write().unwrap_or_else(|e| e.into_inner());
        f(&mut store)
    };
    if found {
        state.changed();
        ok(json!({"success": true}))
    } else {
        control_error(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
}

async fn set_repo_stats(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let patch: StatsPatch = match control_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refusal,
    };
    control_write(&state, &format!("repo {id}"), |store| {
        store
            .repo_anywhere(&id)
            .map(|repo| apply_figures(&mut repo.stats, patch))
            .is_some()
    })
}

async fn set_bucket_stats(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let patch: StatsPatch = match control_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refusal,
    };
    control_write(&state, &format!("bucket {id}"), |store| {
        store
            .bucket_anywhere(&id)
            .map(|bucket| apply_figures(&mut bucket.stats, patch))
            .is_some()
    })
}

/// `GET /_emulator/repos/{id}/keys`: a repo's keys as the API lists them, whoever owns it.
async fn control_repo_keys(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let store = state.store.read().unwrap_or_else(|e| e.into_inner());
    match store.repo_keys_anywhere(&id) {
        Some(keys) => ok(Keys {
            keys: keys.iter().map(KeyView::from).collect(),
        }),
        None => control_error(StatusCode::NOT_FOUND, format!("repo {id} not found")),
    }
}

/// `GET /_emulator/repos/{id}/keys/verify?key=&secret=`: `{"live": true}` when the repo has a
/// key with that access key id and that secret. An unknown repo is simply not live: a test
/// asks this after deleting things too.
async fn verify_repo_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (Some(key), Some(secret)) = (query.get("key"), query.get("secret")) else {
        return control_error(
            StatusCode::BAD_REQUEST,
            "both query parameters key and secret are required",
        );
    };
    let live = state
        .store
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .key_is_live(&id, key, secret);
    ok(json!({"live": live}))
}

/// Changes a repo behind the API's back (no validation): out-of-band drift, a value the API
/// does not document, a disabled repo.
async fn patch_repo(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let patch: RepoPatch = match control_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refusal,
    };
    control_write(&state, &format!("repo {id}"), |store| {
        if let Some(name) = patch.name
            && !store.rename_anywhere(&id, name)
        {
            return false;
        }
        let Some(repo) = store.repo_anywhere(&id) else {
            return false;
        };
        if let Some(storage_type) = patch.storage_type {
            repo.storage_type = storage_type;
        }
        if let Some(mode) = patch.mode {
            repo.mode = mode;
        }
        if let Some(disabled) = patch.disabled {
            repo.disabled = disabled;
        }
        if let Some(ai_llms) = patch.ai_llms {
            repo.ai_llms = ai_llms;
        }
        true
    })
}

// ---- sessions: /user/login, /user/refresh, /user/logout and their control routes ----

#[derive(serde::Deserialize)]
struct LoginBody {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(serde::Deserialize)]
struct RefreshBody {
    #[serde(default)]
    refresh_token: String,
}

/// A session as a login or a refresh answers it.
fn session_answer(issued: &IssuedSession, user: Option<Value>) -> Response {
    let mut body = json!({
        "success": true,
        "accessToken": issued.access_token,
        "refreshToken": issued.refresh_token,
        "expiresAt": issued.expires_at,
    });
    if let Some(user) = user {
        body["tokenId"] = json!(issued.token_id);
        body["user"] = user;
    }
    ok(body)
}

/// `POST /user/login`: `{email, password}` of a person the emulator knows (`--user`). A wrong
/// one is a 401 (its code is a guess).
async fn login(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<LoginBody>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"success": false, "message": "email and password are required"})),
        )
            .into_response();
    };
    match state.sessions().login(&body.email, &body.password) {
        Some(issued) => {
            let user = json!({"id": format!("user-{}", body.email), "email": body.email, "name": body.email});
            session_answer(&issued, Some(user))
        }
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "success": false,
                "error_code": "INVALID_CREDENTIALS",
                "message": "wrong email or password",
            })),
        )
            .into_response(),
    }
}

/// `POST /user/refresh`: `{refresh_token}` spent for a new pair, or a 401.
async fn refresh_session(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let token = serde_json::from_slice::<RefreshBody>(&body)
        .map(|body| body.refresh_token)
        .unwrap_or_default();
    let answer = state.sessions().refresh(&token);
    match answer {
        Ok(issued) => session_answer(&issued, None),
        Err(refusal) => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "success": false,
                "error_code": refusal.code(),
                "message": refusal.message(),
            })),
        )
            .into_response(),
    }
}

/// `POST /user/logout`: ends the session of `{refresh_token}`.
async fn logout(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    if let Ok(body) = serde_json::from_slice::<RefreshBody>(&body) {
        state.sessions().logout(&body.refresh_token);
    }
    ok(json!({"success": true}))
}

async fn get_sessions(State(state): State<Arc<AppState>>) -> Response {
    ok(state.sessions().figures())
}

/// `PUT /_emulator/sessions`: the lifetimes of the tokens issued from now on.
async fn set_sessions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let figures: SessionFigures = match control_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refusal,
    };
    match state.sessions().set(&figures) {
        Ok(()) => ok(json!({"success": true})),
        Err(message) => control_error(StatusCode::BAD_REQUEST, message),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgBody {
    /// The organisation, named by its static token.
    org: String,
}

/// `POST /_emulator/sessions` `{org}`: a new session of that organisation, as a login makes.
async fn open_session(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: OrgBody = match control_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refusal,
    };
    if !state.tokens.contains(&body.org) {
        return control_error(StatusCode::NOT_FOUND, "no organisation has that token");
    }
    let issued = state.sessions().open(&body.org);
    ok(issued)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokeBody {
    token_id: String,
}

/// `POST /_emulator/sessions/revoke` `{tokenId}`: ends a session, as signing out everywhere
/// would.
async fn revoke_session(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: RevokeBody = match control_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refusal,
    };
    if state.sessions().revoke(&body.token_id) {
        ok(json!({"success": true}))
    } else {
        control_error(StatusCode::NOT_FOUND, "no such session")
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    email: String,
    password: String,
    org: String,
}

/// `POST /_emulator/users` `{email, password, org}`: a person who can log in to `org`.
async fn add_user(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: UserBody = match control_body(&body) {
        Ok(value) => value,
        Err(refusal) => return refusal,
    };
    if !state.tokens.contains(&body.org) {
        return control_error(StatusCode::NOT_FOUND, "no organisation has that token");
    }
    state
        .sessions()
        .add_user(&body.email, &body.password, &body.org);
    ok(json!({"success": true}))
}

//! The emulator over real HTTP: the routes the official client calls, wrong paths, the shape
//! of every answer, and faults and counters on each of them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flashback_emulator::{
    CallCount, EmulatorConfig, FailNext, Faults, Latency, Limits, RandomRateLimit, RouteFilter,
    RunningEmulator,
};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

const WS: &str = "ws-1";

struct Emulator {
    running: RunningEmulator,
    http: reqwest::Client,
}

impl Emulator {
    async fn start(state_file: Option<PathBuf>) -> Self {
        let running = RunningEmulator::start(EmulatorConfig {
            tokens: vec!["t1".to_owned(), "t2".to_owned()],
            state_file,
            ..Default::default()
        })
        .await
        .unwrap();
        Self {
            running,
            http: reqwest::Client::new(),
        }
    }

    /// One call as `token` (none: no `Authorization`); every answer must be JSON.
    async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.running.base_url());
        let mut request = self.http.request(method.clone(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            panic!(
                "{method} {path} answered {status} with no JSON ({error}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {path}"
        );
        (status, body)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(Some("t1"), method, path, body).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// Registers a bucket of `workspace` with the fields of `extra` added; returns its id.
    async fn bucket(&self, name: &str, workspace: &str, extra: Value) -> String {
        let mut body = json!({"name": name, "bucket": name, "storageType": "S3",
                              "workspaceId": workspace});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = self.post("/bucket", body).await;
        assert_eq!(status, 200, "{answer}");
        answer["bucketId"].as_str().unwrap().to_owned()
    }

    async fn repo(&self, name: &str, mode: &str, units: Value) -> String {
        let (status, answer) = self
            .post(
                "/repo",
                json!({"name": name, "storageType": "S3", "mode": mode, "workspaceId": WS,
                       "repoBuckets": units}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["repoId"].as_str().unwrap().to_owned()
    }

    /// The `aiLlms` of a repo, as `GET /repo` lists them.
    async fn ai_llms(&self, repo: &str) -> Value {
        let (_, listing) = self.get(&format!("/repo?repoId={repo}")).await;
        listing["repos"][0]["aiLlms"].clone()
    }

    async fn listed_bucket(&self, id: &str) -> Value {
        let (_, listing) = self.get("/bucket").await;
        listing["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|bucket| bucket["id"] == json!(id))
            .cloned()
            .unwrap_or_else(|| panic!("bucket {id} is not listed: {listing}"))
    }
}

fn not_found(message: &str) -> Value {
    json!({"success": false, "message": message, "error_code": "NOT_FOUND",
           "error_message": message})
}

fn on(method: &str, route: &str) -> Option<RouteFilter> {
    Some(RouteFilter {
        method: Some(method.to_owned()),
        route: route.to_owned(),
    })
}

fn count(method: &str, route: &str, status: u16, count: u64) -> CallCount {
    CallCount {
        method: method.to_owned(),
        route: route.to_owned(),
        status,
        count,
    }
}

#[tokio::test]
async fn validating_an_update_does_not_clash_with_the_repo_itself() {
    let emu = Emulator::start(None).await;
    let b1 = emu.bucket("b1", WS, json!({})).await;
    let b2 = emu.bucket("b2", WS, json!({})).await;
    let repo = emu
        .repo(
            "mirror",
            "MIRROR",
            json!([{"bucketId": b1, "master": true}]),
        )
        .await;
    let same_buckets = json!({"mode": "MIRROR", "repoBuckets": [{"bucketId": b1, "master": true}]});

    // As a new repo, the bucket clashes with the existing one; as its update, it does not.
    assert_eq!(
        emu.post("/repo/validate", same_buckets.clone()).await,
        (
            200,
            json!({"success": false, "error_code": "MIRROR_UNIT_ALREADY_IN_OTHER_REPO",
                   "error_message": format!("bucket {b1} already serves the MIRROR repository {repo}")})
        )
    );
    assert_eq!(
        emu.post(&format!("/repo/{repo}/validate"), same_buckets.clone())
            .await,
        (200, json!({"success": true}))
    );
    assert_eq!(
        emu.post(
            &format!("/repo/{repo}/validate"),
            json!({"repoId": repo, "mode": "MIRROR", "repoBuckets": [{"bucketId": b2}]}),
        )
        .await,
        (
            200,
            json!({"success": false, "error_code": "MIRROR_MASTER_UNIT_MISSING",
                   "error_message": "a MIRROR repository needs one master bucket"})
        )
    );
    assert_eq!(
        emu.post("/repo/nope/validate", same_buckets).await,
        (404, not_found("repo nope not found"))
    );

    // A dry run: the repo still has its one bucket.
    let (_, listed) = emu.get(&format!("/repo?repoId={repo}")).await;
    assert_eq!(listed["repos"][0]["buckets"].as_array().unwrap().len(), 1);
    let calls = emu.running.control().calls().await.unwrap();
    assert_eq!(calls.count_status("POST", "/repo/{id}/validate", 200), 2);
    assert_eq!(calls.count_status("POST", "/repo/{id}/validate", 404), 1);
    assert_eq!(calls.count_status("POST", "/repo/validate", 200), 1);
}

#[tokio::test]
async fn ai_models_are_written_listed_replaced_by_a_put_and_set_behind_the_apis_back() {
    let emu = Emulator::start(None).await;
    let b1 = emu.bucket("b1", WS, json!({})).await;
    let write = |ai_llms: Value| {
        json!({"name": "media", "storageType": "S3", "mode": "NORMAL", "workspaceId": WS,
               "repoBuckets": [{"bucketId": b1, "folder": "media"}], "repoAiLlms": ai_llms})
    };
    let (status, answer) = emu
        .post("/repo", write(json!([{"aiLlmId": "llm-1"}])))
        .await;
    assert_eq!(status, 200, "{answer}");
    let repo = answer["repoId"].as_str().unwrap().to_owned();
    assert_eq!(emu.ai_llms(&repo).await, json!([{"aiLlmId": "llm-1"}]));

    // Attached in the web console: the API's own writes are not involved.
    let attached = json!([{"aiLlmId": "llm-1"}, {"aiLlmId": "llm-2"}]);
    emu.running
        .control()
        .patch_repo(
            &repo,
            &flashback_emulator::RepoPatch {
                ai_llms: Some(attached.as_array().unwrap().clone()),
                ..flashback_emulator::RepoPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(emu.ai_llms(&repo).await, attached);

    // A PUT is a full replacement: what it carries stays, and one without them drops them.
    let (status, answer) = emu
        .put(&format!("/repo/{repo}"), write(attached.clone()))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(emu.ai_llms(&repo).await, attached);
    let mut without = write(json!(null));
    without.as_object_mut().unwrap().remove("repoAiLlms");
    let (status, answer) = emu.put(&format!("/repo/{repo}"), without).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(emu.ai_llms(&repo).await, json!([]));

    // The control route refuses a repo that does not exist.
    let control = emu.running.control();
    assert!(
        control
            .patch_repo("nope", &flashback_emulator::RepoPatch::default())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_bucket_update_replaces_it_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let emu = Emulator::start(Some(state_file.clone())).await;
    let id = emu
        .bucket(
            "old",
            WS,
            json!({"key": "AKIAOLD", "secret": "s", "region": "us-east-1",
                   "endpoint": "https://s3.example"}),
        )
        .await;
    let created_at = emu.listed_bucket(&id).await["createdAt"].clone();

    assert_eq!(
        emu.put(
            &format!("/bucket/{id}"),
            json!({"name": "renamed", "bucket": "cloud-2", "storageType": "GCS",
                   "region": "eu-west-1"}),
        )
        .await,
        (
            200,
            json!({"success": true, "bucketId": id, "status": "ACTIVE"})
        )
    );
    // A full replacement: the endpoint it left out is gone; the workspace it left out stays.
    let replaced = json!({"id": id, "name": "renamed", "bucket": "cloud-2", "storageType": "GCS",
                          "region": "eu-west-1", "status": "ACTIVE", "workspaceId": WS,
                          "createdAt": created_at});
    assert_eq!(emu.listed_bucket(&id).await, replaced);

    assert_eq!(
        emu.put(
            "/bucket/nope",
            json!({"name": "n", "bucket": "b", "storageType": "S3"})
        )
        .await,
        (404, not_found("bucket nope not found"))
    );
    assert_eq!(
        emu.put(
            &format!("/bucket/{id}"),
            json!({"bucket": "b", "storageType": "S3"})
        )
        .await,
        (
            400,
            json!({"success": false, "message": "name is required",
                   "error_code": "INVALID_REQUEST", "error_message": "name is required"})
        )
    );
    assert_eq!(
        emu.put(
            &format!("/bucket/{id}"),
            json!({"name": "n", "bucket": "b", "storageType": "FTP"})
        )
        .await
        .1["error_code"],
        json!("INVALID_STORAGE_TYPE")
    );
    let calls = emu.running.control().calls().await.unwrap();
    assert_eq!(
        (
            calls.count_status("PUT", "/bucket/{id}", 200),
            calls.count_status("PUT", "/bucket/{id}", 404),
            calls.count_status("PUT", "/bucket/{id}", 400),
        ),
        (1, 1, 2)
    );

    emu.running.shutdown().await.unwrap();
    let again = Emulator::start(Some(state_file)).await;
    assert_eq!(again.listed_bucket(&id).await, replaced);
}

#[tokio::test]
async fn a_bucket_status_names_the_emulator_as_its_one_node() {
    let emu = Emulator::start(None).await;
    let id = emu.bucket("b1", WS, json!({"region": "us-east-1"})).await;

    let (status, mut body) = emu.get(&format!("/bucket/{id}/status")).await;
    assert_eq!(status, 200, "{body}");
    let last_updated = body["nodeStatus"][0]
        .as_object_mut()
        .unwrap()
        .remove("lastUpdated")
        .unwrap();
    humantime::parse_rfc3339(last_updated.as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"success": true, "bucketId": id, "nodeStatus": [{
            "ip": "127.0.0.1", "region": "local", "version": env!("CARGO_PKG_VERSION"),
            "status": "ONLINE"}]})
    );

    assert_eq!(
        emu.get("/bucket/nope/status").await,
        (404, not_found("bucket nope not found"))
    );
    // Another organisation does not see the bucket.
    assert_eq!(
        emu.call_as(
            Some("t2"),
            Method::GET,
            &format!("/bucket/{id}/status"),
            None
        )
        .await,
        (404, not_found(&format!("bucket {id} not found")))
    );
}

#[tokio::test]
async fn validating_a_bucket_checks_the_request_and_reaches_no_cloud() {
    let emu = Emulator::start(None).await;
    let id = emu.bucket("b1", WS, json!({})).await;
    let path = format!("/bucket/{id}/validate");
    assert_eq!(
        emu.post(&path, json!({"bucket": "b1", "key": "AKIA", "secret": "s"}))
            .await,
        (200, json!({"success": true, "status": "ACTIVE"}))
    );
    assert_eq!(
        emu.post(&path, json!({"key": "AKIA"})).await,
        (
            400,
            json!({"success": false, "message": "bucket is required",
                   "error_code": "INVALID_REQUEST", "error_message": "bucket is required"})
        )
    );
    assert_eq!(
        emu.post("/bucket/nope/validate", json!({"bucket": "b1"}))
            .await,
        (404, not_found("bucket nope not found"))
    );
    let calls = emu.running.control().calls().await.unwrap();
    assert_eq!(calls.count("POST", "/bucket/{id}/validate"), 3);
}

#[tokio::test]
async fn available_buckets_are_a_bare_array_of_those_in_no_repo() {
    let emu = Emulator::start(None).await;
    let used = emu.bucket("used", WS, json!({})).await;
    let free = emu
        .bucket("free", WS, json!({"key": "AKIAFREE", "secret": "s"}))
        .await;
    let elsewhere = emu.bucket("elsewhere", "ws-2", json!({})).await;
    let repo = emu.repo("r", "NORMAL", json!([{"bucketId": used}])).await;
    let ids = |body: &Value| {
        let mut ids: Vec<String> = body
            .as_array()
            .unwrap_or_else(|| panic!("not a bare array: {body}"))
            .iter()
            .map(|bucket| bucket["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };

    let (status, all) = emu.get("/bucket/available").await;
    assert_eq!(status, 200);
    let mut expected = vec![free.clone(), elsewhere.clone()];
    expected.sort();
    assert_eq!(ids(&all), expected);

    // Listed as `GET /bucket` lists it: no credentials.
    let (_, mine) = emu
        .get(&format!("/bucket/available?workspaceId={WS}"))
        .await;
    assert_eq!(mine, json!([emu.listed_bucket(&free).await]));
    assert_eq!(mine[0].get("key"), None);

    let (status, _) = emu
        .call(Method::DELETE, &format!("/repo/{repo}"), None)
        .await;
    assert_eq!(status, 200);
    let (_, mine) = emu
        .get(&format!("/bucket/available?workspaceId={WS}"))
        .await;
    let mut expected = vec![used, free];
    expected.sort();
    assert_eq!(ids(&mine), expected);
    assert_eq!(
        emu.call_as(Some("t2"), Method::GET, "/bucket/available", None)
            .await,
        (200, json!([]))
    );
}

#[tokio::test]
async fn deleting_a_bucket_a_repository_uses_is_a_bare_403_as_the_service_answers() {
    let emu = Emulator::start(None).await;
    let used = emu.bucket("used", WS, json!({})).await;
    let repo = emu.repo("r", "NORMAL", json!([{"bucketId": used}])).await;
    let path = format!("/bucket/{used}");

    // The reference's answer: 403, its message, no error code (nothing to tell it apart
    // from a token that may not delete the bucket).
    let refused = emu.call(Method::DELETE, &path, None).await;
    assert_eq!(
        refused,
        (
            403,
            json!({"success": false, "message": "Insufficient permissions or bucket in use"})
        )
    );
    emu.listed_bucket(&used).await;

    let (status, _) = emu
        .call(Method::DELETE, &format!("/repo/{repo}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        emu.call(Method::DELETE, &path, None).await,
        (200, json!({"success": true}))
    );
    assert_eq!(emu.call(Method::DELETE, &path, None).await.0, 404);
}

#[tokio::test]
async fn over_the_bucket_quota_a_register_is_a_bare_429_without_retry_after() {
    let emu = Emulator::start(None).await;
    let control = emu.running.control();
    control
        .set_limits(&Limits {
            buckets_per_organisation: Some(2),
        })
        .await
        .unwrap();
    let (status, limits) = emu
        .call_as(None, Method::GET, "/_emulator/limits", None)
        .await;
    assert_eq!(
        (status, limits),
        (200, json!({"bucketsPerOrganisation": 2}))
    );
    let first = emu.bucket("a", WS, json!({})).await;
    // The quota counts the organisation's buckets, every workspace together.
    emu.bucket("b", "ws-2", json!({})).await;

    let url = format!("{}/bucket", emu.running.base_url());
    let over = emu
        .http
        .post(&url)
        .bearer_auth("t1")
        .json(&json!({"name": "c", "bucket": "c", "storageType": "S3", "workspaceId": WS}))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status().as_u16(), 429);
    assert_eq!(over.headers().get(RETRY_AFTER), None, "not a throttle");
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["success"], json!(false));
    assert!(body["message"].as_str().is_some(), "{body}");
    assert_eq!(body.get("error_code"), None, "{body}");
    let (_, listing) = emu.get("/bucket").await;
    assert_eq!(listing["buckets"].as_array().unwrap().len(), 2);

    // Each organisation has its own; and one bucket gone makes room for one.
    let (status, _) = emu
        .call_as(
            Some("t2"),
            Method::POST,
            "/bucket",
            Some(json!({"name": "c", "bucket": "c", "storageType": "S3", "workspaceId": WS})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = emu
        .call(Method::DELETE, &format!("/bucket/{first}"), None)
        .await;
    assert_eq!(status, 200);
    emu.bucket("c", WS, json!({})).await;
    control.set_limits(&Limits::default()).await.unwrap();
    emu.bucket("d", WS, json!({})).await;
}

#[tokio::test]
async fn a_bucket_name_is_unique_in_the_organisation_whatever_the_workspace() {
    let emu = Emulator::start(None).await;
    let first = emu.bucket("photos", WS, json!({})).await;
    let again = json!({"name": "photos", "bucket": "other", "storageType": "S3",
                       "workspaceId": "ws-2"});
    let (status, refused) = emu.post("/bucket", again.clone()).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(
        refused["error_code"],
        json!("NAME_ALREADY_USED"),
        "{refused}"
    );
    // Another organisation has names of its own.
    let (status, _) = emu
        .call_as(Some("t2"), Method::POST, "/bucket", Some(again.clone()))
        .await;
    assert_eq!(status, 200);
    // A rename onto a taken name is refused too; the name is free once its bucket goes.
    let second = emu.bucket("videos", "ws-2", json!({})).await;
    let (status, refused) = emu
        .put(
            &format!("/bucket/{second}"),
            json!({"name": "photos", "bucket": "videos", "storageType": "S3"}),
        )
        .await;
    assert_eq!(
        (status, &refused["error_code"]),
        (409, &json!("NAME_ALREADY_USED"))
    );
    let (status, _) = emu
        .call(Method::DELETE, &format!("/bucket/{first}"), None)
        .await;
    assert_eq!(status, 200);
    let (status, answer) = emu.post("/bucket", again).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn a_path_the_api_lacks_is_json_404_counted_under_the_path() {
    let emu = Emulator::start(None).await;
    let control = emu.running.control();

    assert_eq!(
        emu.get("/repos?workspaceId=ws-1").await,
        (
            404,
            json!({"success": false, "message": "no route GET /repos"})
        )
    );
    assert_eq!(
        emu.call(Method::DELETE, "/bucket/b1/extra", None).await,
        (
            404,
            json!({"success": false, "message": "no route DELETE /bucket/b1/extra"})
        )
    );
    assert_eq!(
        emu.call(Method::PATCH, "/repo/r1", Some(json!({}))).await,
        (
            405,
            json!({"success": false, "message": "no route PATCH /repo/r1"})
        )
    );
    // Checked like any call: no token, no answer.
    assert_eq!(
        emu.call_as(None, Method::GET, "/repos", None).await,
        (401, json!({"success": false, "error_code": "NO_AUTH_USER"}))
    );
    // A wrong control path answers, but is not a call of the API.
    assert_eq!(
        emu.call_as(None, Method::GET, "/_emulator/nope", None)
            .await,
        (
            404,
            json!({"success": false, "message": "no control route GET /_emulator/nope"})
        )
    );

    let calls = control.calls().await.unwrap();
    assert_eq!(calls.total, 4);
    assert_eq!(
        calls.calls,
        vec![
            count("DELETE", "/bucket/b1/extra", 404, 1),
            count("GET", "/repos", 401, 1),
            count("GET", "/repos", 404, 1),
            count("PATCH", "/repo/{id}", 405, 1),
        ]
    );

    // Faults reach wrong paths too, narrowed by the same label.
    control
        .set_faults(&FailNext::new(1, 503).on("GET", "/repos").into())
        .await
        .unwrap();
    assert_eq!(emu.get("/repos").await.0, 503);
    assert_eq!(emu.get("/repos").await.0, 404);
}

/// Every route added for the official client, with a call that succeeds.
async fn new_routes(emu: &Emulator) -> Vec<(Method, &'static str, String, Option<Value>)> {
    let bucket = emu.bucket("b", WS, json!({})).await;
    let repo = emu.repo("r", "NORMAL", json!([])).await;
    let (_, created) = emu
        .post(
            &format!("/repo/{repo}/apikey"),
            json!({"name": "k", "accessType": "READ"}),
        )
        .await;
    let key = created["id"].as_str().unwrap().to_owned();
    vec![
        (
            Method::POST,
            "/repo/{id}/validate",
            format!("/repo/{repo}/validate"),
            Some(json!({"mode": "NORMAL", "repoBuckets": []})),
        ),
        (
            Method::PUT,
            "/bucket/{id}",
            format!("/bucket/{bucket}"),
            Some(json!({"name": "b", "bucket": "b", "storageType": "S3"})),
        ),
        (
            Method::GET,
            "/bucket/{id}/status",
            format!("/bucket/{bucket}/status"),
            None,
        ),
        (
            Method::GET,
            "/bucket/available",
            "/bucket/available".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/bucket/{id}/validate",
            format!("/bucket/{bucket}/validate"),
            Some(json!({"bucket": "b"})),
        ),
        (
            Method::GET,
            "/repo/{id}/apikey",
            format!("/repo/{repo}/apikey"),
            None,
        ),
        (Method::GET, "/health", "/health".to_owned(), None),
        (Method::GET, "/workspace", "/workspace".to_owned(), None),
        (
            Method::POST,
            "/repo/{id}/apikey",
            format!("/repo/{repo}/apikey"),
            Some(json!({"repoId": repo, "name": "k2", "accessType": "WRITE"})),
        ),
        (
            Method::PUT,
            "/repo/{id}/apikey/{keyId}",
            format!("/repo/{repo}/apikey/{key}"),
            Some(json!({"name": "k", "accessType": "ADMIN"})),
        ),
        // Last: the key is gone after its one successful call.
        (
            Method::DELETE,
            "/repo/{id}/apikey/{keyId}",
            format!("/repo/{repo}/apikey/{key}"),
            None,
        ),
    ]
}

#[tokio::test]
async fn the_new_routes_are_counted_checked_and_faulted_like_the_others() {
    let emu = Emulator::start(None).await;
    let control = emu.running.control();
    let routes = new_routes(&emu).await;
    control.reset_calls().await.unwrap();

    for (method, template, path, body) in &routes {
        let faults = Faults::from(FailNext {
            error_code: Some("QUOTA_EXCEEDED".to_owned()),
            ..FailNext::new(1, 503).on(method.as_str(), template)
        });
        control.set_faults(&faults).await.unwrap();
        assert_eq!(
            emu.call(method.clone(), path, body.clone()).await,
            (
                503,
                json!({"success": false, "message": "injected fault (HTTP 503)",
                       "error_code": "QUOTA_EXCEEDED"})
            ),
            "{method} {path}"
        );
        assert_eq!(
            emu.call(method.clone(), path, body.clone()).await.0,
            200,
            "{method} {path}"
        );
        assert_eq!(
            emu.call_as(Some("wrong"), method.clone(), path, body.clone())
                .await,
            (401, json!({"success": false, "error_code": "NO_AUTH_USER"})),
            "{method} {path}"
        );
    }
    let calls = control.calls().await.unwrap();
    for (method, template, ..) in &routes {
        let method = method.as_str();
        assert_eq!(
            [503, 200, 401].map(|status| calls.count_status(method, template, status)),
            [1, 1, 1],
            "{method} {template}: {calls:?}"
        );
    }
    assert_eq!(calls.total, 3 * routes.len() as u64);
    assert_eq!(routes.len(), 11);

    // Latency and random rate limits, each narrowed to one of the new routes.
    let (method, template, path, body) = &routes[3];
    control
        .set_faults(&Faults {
            latency: Some(Latency {
                ms: 300,
                route: on(method.as_str(), template),
            }),
            ..Faults::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(emu.call(method.clone(), path, body.clone()).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (method, template, path, _) = &routes[2];
    control
        .set_faults(&Faults {
            rate_limit: Some(RandomRateLimit {
                share: 1.0,
                retry_after_seconds: 7,
                error_code: None,
                route: on(method.as_str(), template),
            }),
            ..Faults::default()
        })
        .await
        .unwrap();
    let response = emu
        .http
        .get(format!("{}{path}", emu.running.base_url()))
        .bearer_auth("t2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()[RETRY_AFTER], "7");
}

/// The JSON pointers of every `null` in `value`.
fn nulls(value: &Value, at: String, found: &mut Vec<String>) {
    match value {
        Value::Null => found.push(at),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                nulls(item, format!("{at}/{i}"), found);
            }
        }
        Value::Object(fields) => {
            for (name, field) in fields {
                nulls(field, format!("{at}/{name}"), found);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn no_answer_carries_a_null() {
    let emu = Emulator::start(None).await;
    let bare = emu.bucket("bare", WS, json!({})).await;
    let full = emu
        .bucket(
            "full",
            WS,
            json!({"key": "AKIAFULL", "secret": "s", "region": "r", "endpoint": "https://e"}),
        )
        .await;
    let repo = emu
        .repo(
            "r",
            "NORMAL",
            json!([{"bucketId": bare}, {"bucketId": full, "folder": "f"}]),
        )
        .await;
    let (_, listed) = emu.get(&format!("/repo?repoId={repo}")).await;
    let units = &listed["repos"][0]["buckets"];
    let unit_bare = units
        .as_array()
        .unwrap()
        .iter()
        .find(|unit| unit["bucketId"] == json!(bare))
        .unwrap();
    // Absent optional fields are left out, not `null`.
    let keys = |value: &Value| {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(unit_bare), ["bucket", "bucketId", "folder", "master"]);
    // A repository bucket always carries its folder, as the official client reads it.
    assert_eq!(unit_bare["folder"], json!(""));
    assert_eq!(
        keys(&unit_bare["bucket"]),
        [
            "bucket",
            "createdAt",
            "id",
            "name",
            "status",
            "storageType",
            "workspaceId"
        ]
    );
    assert_eq!(listed["repos"][0].get("walletAddress"), None);

    let control = emu.running.control();
    let mut answers = vec![("GET /repo".to_owned(), listed.clone())];
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            format!("/repo/{repo}/apikey"),
            Some(json!({"name": "k", "accessType": "READ"})),
        ),
        (Method::GET, format!("/repo/{repo}/apikey"), None),
        (Method::GET, "/repo".into(), None),
        (Method::GET, "/repo/stats".into(), None),
        (Method::GET, "/bucket".into(), None),
        (Method::GET, "/bucket/stats".into(), None),
        (Method::GET, "/bucket/available".into(), None),
        (Method::GET, format!("/bucket/{bare}/status"), None),
        (
            Method::POST,
            format!("/bucket/{bare}/validate"),
            Some(json!({"bucket": "bare"})),
        ),
        (
            Method::PUT,
            format!("/bucket/{bare}"),
            Some(json!({"name": "bare", "bucket": "bare", "storageType": "S3"})),
        ),
        (
            Method::POST,
            "/repo/validate".into(),
            Some(json!({"mode": "MIRROR", "repoBuckets": []})),
        ),
        (
            Method::POST,
            format!("/repo/{repo}/validate"),
            Some(json!({"mode": "LOOSE"})),
        ),
        (
            Method::PUT,
            format!("/repo/{repo}"),
            Some(json!({"name": "r", "storageType": "S3", "mode": "NORMAL"})),
        ),
        (Method::DELETE, "/repo/nope".into(), None),
        (Method::DELETE, format!("/repo/{repo}/apikey/nope"), None),
        (Method::DELETE, format!("/bucket/{full}"), None),
        (Method::GET, "/no/such/route".into(), None),
        (Method::PATCH, "/bucket".into(), Some(json!({}))),
        (Method::POST, "/repo".into(), Some(json!("not an object"))),
    ];
    for (method, path, body) in calls {
        let (_, answer) = emu.call(method.clone(), &path, body).await;
        answers.push((format!("{method} {path}"), answer));
    }
    control
        .set_faults(&FailNext::new(1, 500).into())
        .await
        .unwrap();
    answers.push(("fault".into(), emu.get("/repo").await.1));
    answers.push((
        "no token".into(),
        emu.call_as(None, Method::GET, "/repo", None).await.1,
    ));
    for path in [
        "/_emulator/calls".to_owned(),
        "/_emulator/faults".to_owned(),
        "/_emulator/health".to_owned(),
        format!("/_emulator/repos/{repo}/keys"),
    ] {
        let answer = emu.call_as(None, Method::GET, &path, None).await.1;
        answers.push((path, answer));
    }

    for (call, answer) in &answers {
        let mut found = Vec::new();
        nulls(answer, String::new(), &mut found);
        assert!(
            found.is_empty(),
            "{call} answered null at {found:?}: {answer}"
        );
    }
}

#[tokio::test]
async fn embedded_buckets_carry_their_workspace_creation_time_and_sealed_secret() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let emu = Emulator::start(Some(state_file.clone())).await;
    let id = emu
        .bucket(
            "b1",
            WS,
            json!({"key": "AKIAEMBEDDED", "secret": "plain-secret-value", "region": "us-east-1",
                   "endpoint": "https://s3.example"}),
        )
        .await;
    let repo = emu
        .repo("r", "NORMAL", json!([{"bucketId": id, "folder": "f"}]))
        .await;
    let embedded = || async {
        let (status, listed) = emu.get(&format!("/repo?repoId={repo}")).await;
        assert_eq!(status, 200);
        assert!(!listed.to_string().contains("plain-secret-value"));
        listed["repos"][0]["buckets"][0]["bucket"].clone()
    };

    let mut first = embedded().await;
    let secret = first.as_object_mut().unwrap().remove("secret").unwrap();
    // The listed bucket, its key, and the secret as the client's `EncryptedKey`.
    let mut expected = emu.listed_bucket(&id).await;
    expected["key"] = json!("AKIAEMBEDDED");
    assert_eq!(first, expected);
    assert_eq!(
        (&first["workspaceId"], first["createdAt"].is_string()),
        (&json!(WS), true)
    );
    let sizes: Vec<(String, usize)> = secret
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| {
            let hex = value.as_str().unwrap();
            assert!(
                hex.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            (name.clone(), hex.len())
        })
        .collect();
    assert_eq!(
        sizes,
        [
            ("authTag".into(), 32),
            ("iv".into(), 24),
            ("key".into(), 64),
            ("message".into(), 64)
        ]
    );
    assert_eq!(embedded().await["secret"], secret, "stable across reads");

    // An update that leaves the credentials out keeps them; a new secret is sealed anew.
    let update = json!({"name": "b1", "bucket": "b1", "storageType": "S3"});
    assert_eq!(
        emu.put(&format!("/bucket/{id}"), update.clone()).await.0,
        200
    );
    let kept = embedded().await;
    assert_eq!(
        (&kept["key"], &kept["secret"]),
        (&json!("AKIAEMBEDDED"), &secret)
    );
    let mut rotated = update;
    rotated["secret"] = json!("another-secret");
    assert_eq!(emu.put(&format!("/bucket/{id}"), rotated).await.0, 200);
    let resealed = embedded().await["secret"].clone();
    assert_ne!(resealed["iv"], secret["iv"]);
    assert_ne!(resealed["message"], secret["message"]);

    emu.running.shutdown().await.unwrap();
    let saved = std::fs::read_to_string(&state_file).unwrap();
    assert!(!saved.contains("plain-secret-value") && !saved.contains("another-secret"));
    let again = Emulator::start(Some(state_file)).await;
    let (_, listed) = again.get(&format!("/repo?repoId={repo}")).await;
    assert_eq!(
        listed["repos"][0]["buckets"][0]["bucket"]["secret"],
        resealed
    );
}

fn refusal(status_code: &str, message: &str) -> Value {
    json!({"success": false, "message": message, "error_code": status_code,
           "error_message": message})
}

#[tokio::test]
async fn repository_keys_answer_the_secret_once_and_list_it_only_sealed() {
    let emu = Emulator::start(None).await;
    let control = emu.running.control();
    let repo = emu.repo("r", "NORMAL", json!([])).await;
    let keys_path = format!("/repo/{repo}/apikey");

    let (status, created) = emu
        .post(
            &keys_path,
            json!({"repoId": repo, "name": "app", "accessType": "WRITE"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let mut fields: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["id", "key", "secret", "success"]);
    assert_eq!(created["success"], json!(true));
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "ids like the others: {id}"
    );
    assert_eq!(key.len(), 20);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );
    assert_eq!(secret.len(), 40);

    // Listed: every field but the secret, which is sealed.
    let (status, listed) = emu.get(&keys_path).await;
    assert_eq!(status, 200);
    assert!(!listed.to_string().contains(&secret), "{listed}");
    let mut entry = listed["keys"][0].clone();
    let sealed = entry.as_object_mut().unwrap().remove("secret").unwrap();
    let created_at = entry["createdAt"].clone();
    humantime::parse_rfc3339(created_at.as_str().unwrap()).expect("createdAt is RFC 3339");
    assert_eq!(
        listed["keys"].as_array().unwrap().len(),
        1,
        "one key: {listed}"
    );
    assert_eq!(
        entry,
        json!({"id": id, "name": "app", "accessType": "WRITE", "key": key,
               "createdAt": created_at})
    );
    let mut sealed_fields: Vec<(String, usize)> = sealed
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap().len()))
        .collect();
    sealed_fields.sort();
    assert_eq!(
        sealed_fields,
        [
            ("authTag".into(), 32),
            ("iv".into(), 24),
            ("key".into(), 64),
            ("message".into(), 64)
        ]
    );
    // The listed repo carries the same keys, in the same shape.
    let (_, repos) = emu.get(&format!("/repo?repoId={repo}")).await;
    assert_eq!(repos["repos"][0]["apiKeys"], listed["keys"]);
    assert!(!repos.to_string().contains(&secret));
    assert!(control.verify_repo_key(&repo, &key, &secret).await.unwrap());
    assert!(
        !control
            .verify_repo_key(&repo, &key, &secret.to_lowercase())
            .await
            .unwrap()
    );

    // An update changes the name and the access type, never the key or the secret.
    let key_path = format!("{keys_path}/{id}");
    assert_eq!(
        emu.put(&key_path, json!({"name": "app-2", "accessType": "ADMIN"}))
            .await,
        (200, json!({"success": true}))
    );
    let (_, listed) = emu.get(&keys_path).await;
    assert_eq!(
        (
            &listed["keys"][0]["name"],
            &listed["keys"][0]["accessType"],
            &listed["keys"][0]["key"],
            &listed["keys"][0]["secret"]
        ),
        (&json!("app-2"), &json!("ADMIN"), &json!(key), &sealed)
    );
    assert!(control.verify_repo_key(&repo, &key, &secret).await.unwrap());

    // Refusals, in the emulator's usual shape.
    assert_eq!(
        emu.post(&keys_path, json!({"name": "x", "accessType": "OWNER"}))
            .await,
        (
            400,
            refusal(
                "INVALID_REQUEST",
                r#"accessType "OWNER" is not one of READ, WRITE, ADMIN"#
            )
        )
    );
    assert_eq!(
        emu.put(&key_path, json!({"accessType": "READ"})).await,
        (400, refusal("INVALID_REQUEST", "name is required"))
    );
    assert_eq!(
        emu.post(
            "/repo/nope/apikey",
            json!({"name": "x", "accessType": "READ"})
        )
        .await,
        (404, not_found("repo nope not found"))
    );
    assert_eq!(
        emu.get("/repo/nope/apikey").await,
        (404, not_found("repo nope not found"))
    );
    assert_eq!(
        emu.put(
            &format!("{keys_path}/nope"),
            json!({"name": "x", "accessType": "READ"})
        )
        .await,
        (404, not_found("key nope not found"))
    );
    // Another organisation's repo is unknown to the caller.
    let (status, answer) = emu.call_as(Some("t2"), Method::GET, &keys_path, None).await;
    assert_eq!(
        (status, answer),
        (404, not_found(&format!("repo {repo} not found")))
    );
    let (status, _) = emu
        .call_as(Some("t2"), Method::DELETE, &key_path, None)
        .await;
    assert_eq!(status, 404);
    assert!(control.verify_repo_key(&repo, &key, &secret).await.unwrap());

    // Delete: gone from the list, no longer usable, and a second delete is 404.
    assert_eq!(
        emu.call(Method::DELETE, &key_path, None).await,
        (200, json!({"success": true}))
    );
    assert_eq!(
        emu.get(&keys_path).await,
        (200, json!({"success": true, "keys": []}))
    );
    assert!(!control.verify_repo_key(&repo, &key, &secret).await.unwrap());
    assert_eq!(
        emu.call(Method::DELETE, &key_path, None).await,
        (404, not_found(&format!("key {id} not found")))
    );

    let calls = control.calls().await.unwrap();
    let by_route =
        |method, route| [200, 400, 404].map(|status| calls.count_status(method, route, status));
    assert_eq!(by_route("POST", "/repo/{id}/apikey"), [1, 1, 1]);
    assert_eq!(by_route("GET", "/repo/{id}/apikey"), [3, 0, 2]);
    assert_eq!(by_route("PUT", "/repo/{id}/apikey/{keyId}"), [1, 1, 1]);
    assert_eq!(by_route("DELETE", "/repo/{id}/apikey/{keyId}"), [1, 0, 2]);
}

#[tokio::test]
async fn keys_persist_without_their_secret_and_go_with_their_repo() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let emu = Emulator::start(Some(state_file.clone())).await;
    let repo = emu.repo("r", "NORMAL", json!([])).await;
    let keys_path = format!("/repo/{repo}/apikey");
    let mut secrets = Vec::new();
    for (name, access) in [("reader", "READ"), ("writer", "WRITE")] {
        let (status, created) = emu
            .post(&keys_path, json!({"name": name, "accessType": access}))
            .await;
        assert_eq!(status, 200, "{created}");
        secrets.push((
            created["key"].as_str().unwrap().to_owned(),
            created["secret"].as_str().unwrap().to_owned(),
        ));
    }
    let (_, before) = emu.get(&keys_path).await;
    emu.running.shutdown().await.unwrap();

    let saved = std::fs::read_to_string(&state_file).unwrap();
    for (key, secret) in &secrets {
        assert!(saved.contains(key.as_str()), "the access key id is kept");
        assert!(
            !saved.contains(secret.as_str()),
            "a plain secret in {saved}"
        );
    }

    let again = Emulator::start(Some(state_file.clone())).await;
    let control = again.running.control();
    assert_eq!(again.get(&keys_path).await, (200, before.clone()));
    let listed = control.repo_keys(&repo).await.unwrap();
    let names: Vec<(&str, &str, &str)> = listed
        .iter()
        .map(|k| (k.name.as_str(), k.access_type.as_str(), k.key.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("reader", "READ", secrets[0].0.as_str()),
            ("writer", "WRITE", secrets[1].0.as_str())
        ]
    );
    for (key, secret) in &secrets {
        assert!(control.verify_repo_key(&repo, key, secret).await.unwrap());
    }
    // The control routes are neither gated nor counted.
    assert_eq!(control.calls().await.unwrap().total, 1);

    assert_eq!(
        again
            .call(Method::DELETE, &format!("/repo/{repo}"), None)
            .await,
        (200, json!({"success": true}))
    );
    for (key, secret) in &secrets {
        assert!(!control.verify_repo_key(&repo, key, secret).await.unwrap());
    }
    let err = control.repo_keys(&repo).await.unwrap_err();
    assert!(err.to_string().contains("404"), "{err:#}");
    assert_eq!(
        again.get(&keys_path).await,
        (404, not_found(&format!("repo {repo} not found")))
    );
    again.running.shutdown().await.unwrap();
    let saved = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        !saved.contains(&secrets[0].0),
        "the keys went with the repo"
    );
}

#[tokio::test]
async fn the_verify_route_needs_both_a_key_and_a_secret() {
    let emu = Emulator::start(None).await;
    let repo = emu.repo("r", "NORMAL", json!([])).await;
    for query in ["", "?key=AKIA", "?secret=s"] {
        let (status, answer) = emu
            .call_as(
                None,
                Method::GET,
                &format!("/_emulator/repos/{repo}/keys/verify{query}"),
                None,
            )
            .await;
        assert_eq!(
            (status, answer),
            (
                400,
                json!({"success": false,
                       "message": "both query parameters key and secret are required"})
            ),
            "{query}"
        );
    }
    assert_eq!(
        emu.call_as(
            None,
            Method::GET,
            "/_emulator/repos/nope/keys/verify?key=A&secret=s",
            None
        )
        .await,
        (200, json!({"live": false}))
    );
}

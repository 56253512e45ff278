//! The Flashback client against the emulator, over real HTTP on loopback.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{WORKSPACE, bucket, client, config, emulator, emulator_bin, repo};
use flashback_client::{
    AccessType, ApiError, CallRecord, FlashbackClient, RateLimit, RepoFilter, RepoKey,
    RepoKeyWrite, RepoMode, RetryPolicy, StorageType,
};
use flashback_emulator::{
    EmulatorProcess, FailNext, Faults, IN_FLIGHT_GRACE, Latency, RandomErrors, RandomRateLimit,
    RepoPatch, RouteFilter, StatsPatch,
};
use serde_json::{Value, json};

fn route(method: &str, route: &str) -> Option<RouteFilter> {
    Some(RouteFilter {
        method: Some(method.to_owned()),
        route: route.to_owned(),
    })
}

async fn only_repo(client: &FlashbackClient, id: &str) -> Option<flashback_client::Repo> {
    let mut repos = client.list_repos(&RepoFilter::repo(id)).await.unwrap();
    assert!(repos.len() <= 1);
    repos.pop()
}

#[tokio::test]
async fn every_endpoint_round_trips() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");

    let b1 = bucket(&api, "b1").await;
    let b2 = bucket(&api, "b2").await;
    let buckets = api.list_buckets(Some(WORKSPACE)).await.unwrap();
    assert_eq!(buckets.len(), 2);
    assert!(api.list_buckets(Some("other-ws")).await.unwrap().is_empty());
    let listed = buckets.iter().find(|b| b.id == b1).unwrap();
    assert_eq!(
        (listed.name.as_str(), listed.bucket.as_deref()),
        ("b1", Some("b1-cloud"))
    );
    assert_eq!(listed.storage_type, StorageType::S3);
    assert_eq!(listed.status.as_deref(), Some("ACTIVE"));

    let id = api
        .create_repo(&repo(
            "media",
            RepoMode::Mirror,
            &[(&b1, true), (&b2, false)],
        ))
        .await
        .unwrap();
    let repos = api
        .list_repos(&RepoFilter::workspace(WORKSPACE))
        .await
        .unwrap();
    assert_eq!(repos.len(), 1);
    let listed = &repos[0];
    assert_eq!(
        (listed.id.as_str(), listed.name.as_str()),
        (id.as_str(), "media")
    );
    assert_eq!(
        (&listed.storage_type, &listed.mode),
        (&StorageType::S3, &RepoMode::Mirror)
    );
    assert_eq!(listed.workspace_id.as_deref(), Some(WORKSPACE));
    assert_eq!(listed.disabled, Some(false));
    humantime::parse_rfc3339(listed.created_at.as_deref().unwrap()).expect("createdAt is RFC 3339");
    let units: Vec<(&str, Option<&str>, bool)> = listed
        .buckets
        .iter()
        .map(|b| (b.bucket_id.as_str(), b.folder.as_deref(), b.master))
        .collect();
    assert_eq!(
        units,
        [
            (b1.as_str(), Some("media-folder"), true),
            (b2.as_str(), Some("media-folder"), false)
        ]
    );
    assert!(
        api.list_repos(&RepoFilter::workspace("other-ws"))
            .await
            .unwrap()
            .is_empty()
    );

    // PUT replaces the whole repo: one bucket left, renamed, another mode.
    let mut replacement = repo("media-2", RepoMode::Backup, &[(&b2, false)]);
    replacement.workspace_id = None;
    api.update_repo(&id, &replacement).await.unwrap();
    let updated = only_repo(&api, &id).await.unwrap();
    assert_eq!(
        (updated.name.as_str(), &updated.mode),
        ("media-2", &RepoMode::Backup)
    );
    assert_eq!(updated.buckets.len(), 1);
    assert_eq!(
        updated.workspace_id.as_deref(),
        Some(WORKSPACE),
        "an absent workspaceId keeps it"
    );
    assert_eq!(updated.created_at, listed.created_at);

    let stats = api.repo_stats(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (
            stats[0].total_upload_bytes,
            stats[0].total_download_bytes,
            stats[0].total_size_change
        ),
        (0, 0, 0)
    );
    let bucket_stats = api.bucket_stats(&[b1.clone(), b2.clone()]).await.unwrap();
    assert_eq!(bucket_stats.len(), 2);
    emu.control()
        .set_bucket_stats(
            &b1,
            &StatsPatch {
                total_count: Some("3".into()),
                ..StatsPatch::repo(10, 20, -5)
            },
        )
        .await
        .unwrap();
    let bucket_stats = api.bucket_stats(std::slice::from_ref(&b1)).await.unwrap();
    assert_eq!(
        (
            bucket_stats[0].total_count,
            bucket_stats[0].total_size_change
        ),
        (3, -5)
    );

    api.delete_repo(&id).await.unwrap();
    assert!(only_repo(&api, &id).await.is_none());
    let again = api.delete_repo(&id).await.unwrap_err();
    assert!(matches!(again, ApiError::NotFound { .. }), "{again:?}");
    api.delete_bucket(&b1).await.unwrap();
    assert_eq!(api.list_buckets(None).await.unwrap().len(), 1);
    let again = api.delete_bucket(&b1).await.unwrap_err();
    assert_eq!(again.metric_label(), "not_found");
}

#[tokio::test]
async fn every_refusal_maps_to_its_error_and_is_not_retried() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    let control = emu.control();
    let b1 = bucket(&api, "b1").await;
    let b2 = bucket(&api, "b2").await;
    let b3 = bucket(&api, "b3").await;
    let first = api
        .create_repo(&repo("taken", RepoMode::Mirror, &[(&b1, true)]))
        .await
        .unwrap();
    control.reset_calls().await.unwrap();

    let cases: Vec<(_, &str)> = vec![
        (repo("taken", RepoMode::Normal, &[]), "NAME_ALREADY_USED"),
        (
            repo("none", RepoMode::Mirror, &[(&b2, false)]),
            "MIRROR_MASTER_UNIT_MISSING",
        ),
        (
            repo("two", RepoMode::Mirror, &[(&b2, true), (&b3, true)]),
            "MIRROR_MASTER_UNIT_COUNT_INVALID",
        ),
        (
            repo("shared", RepoMode::Mirror, &[(&b2, true), (&b1, false)]),
            "MIRROR_UNIT_ALREADY_IN_OTHER_REPO",
        ),
        (
            repo("ghost", RepoMode::Normal, &[("no-such-bucket", false)]),
            "NOT_FOUND",
        ),
    ];
    for (write, code) in &cases {
        let err = api.create_repo(write).await.unwrap_err();
        assert_eq!(err.error_code(), Some(*code), "{err}");
        assert!(!err.is_transient(), "{code} must be permanent");
    }
    let name_clash = api.create_repo(&cases[0].0).await.unwrap_err();
    assert!(matches!(name_clash, ApiError::NameAlreadyUsed { .. }));
    assert_eq!(name_clash.metric_label(), "name_already_used");
    let mirror = api.create_repo(&cases[1].0).await.unwrap_err();
    assert!(
        matches!(&mirror, ApiError::InvalidSpec { code, .. } if code == "MIRROR_MASTER_UNIT_MISSING")
    );

    // Permanent refusals go out once each: no retry.
    let calls = control.calls().await.unwrap();
    assert_eq!(calls.count("POST", "/repo"), cases.len() as u64 + 2);
    assert_eq!(calls.count_status("POST", "/repo", 409), 3); // 2 name clashes + mirror unit taken
    assert_eq!(calls.count_status("POST", "/repo", 404), 1);

    // PUT: same rules, itself excluded; an unknown id is NotFound.
    api.update_repo(
        &first,
        &repo("taken", RepoMode::Mirror, &[(&b1, true), (&b2, false)]),
    )
    .await
    .expect("a repo does not clash with itself");
    let err = api
        .update_repo("no-such-repo", &repo("x", RepoMode::Normal, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    let second = api
        .create_repo(&repo("second", RepoMode::Normal, &[]))
        .await
        .unwrap();
    let err = api
        .update_repo(&second, &repo("taken", RepoMode::Normal, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NameAlreadyUsed { .. }), "{err:?}");

    // Values outside the contract are refused with their own code.
    let mut odd = repo("odd", RepoMode::Other("ARCHIVE".into()), &[]);
    let err = api.create_repo(&odd).await.unwrap_err();
    assert_eq!(err.error_code(), Some("INVALID_MODE"));
    odd.mode = RepoMode::Normal;
    odd.workspace_id = None;
    let err = api.create_repo(&odd).await.unwrap_err();
    assert_eq!(
        err.error_code(),
        Some("INVALID_REQUEST"),
        "workspaceId is required on POST"
    );
}

#[tokio::test]
async fn a_rejected_token_is_unauthorized_and_never_printed() {
    const SECRET: &str = "sk-live-SUPERSECRET-4242";
    let emu = emulator(&["good-token"]).await;
    let api = client(emu.base_url(), SECRET);
    let err = api.list_repos(&RepoFilter::default()).await.unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized), "{err:?}");
    assert_eq!(
        (err.error_code(), err.is_transient()),
        (Some("NO_AUTH_USER"), false)
    );
    assert_eq!(
        emu.control()
            .calls()
            .await
            .unwrap()
            .count_status("GET", "/repo", 401),
        1,
        "not retried"
    );

    // The answer body itself is the contract's.
    let raw = reqwest::Client::new()
        .get(format!("{}/repo", emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    assert_eq!(
        raw.json::<Value>().await.unwrap(),
        json!({"success": false, "error_code": "NO_AUTH_USER"})
    );

    // Other failures carry no token either: a timeout (returned at once, not retried: the
    // budget allowed two attempts), and a refused connection.
    emu.control()
        .set_faults(&Faults {
            latency: Some(Latency {
                ms: 400,
                route: None,
            }),
            ..Faults::default()
        })
        .await
        .unwrap();
    let mut slow = config(emu.base_url(), SECRET);
    slow.timeout = Duration::from_millis(100);
    slow.retry.max_attempts = 2;
    let timeout = FlashbackClient::new(slow)
        .unwrap()
        .list_repos(&RepoFilter::default())
        .await
        .unwrap_err();
    // A timeout goes back to the caller at once rather than holding it for every attempt.
    assert!(
        matches!(timeout, ApiError::Transient { status: None, .. }),
        "{timeout:?}"
    );
    assert!(timeout.is_timeout());
    assert!(timeout.to_string().contains("timed out"), "{timeout}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = client(&closed_url, SECRET)
        .delete_repo("r")
        .await
        .unwrap_err();
    assert!(unreachable.is_transient(), "{unreachable:?}");

    for err in [&err, &timeout, &unreachable] {
        let printed = format!("{err} | {err:?} | {:?}", std::error::Error::source(err));
        assert!(
            !printed.contains(SECRET) && !printed.contains("SUPERSECRET"),
            "{printed}"
        );
    }
    assert!(!format!("{api:?}").contains(SECRET));
}

#[tokio::test]
async fn a_refusal_under_http_200_is_still_an_error() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    api.create_repo(&repo("a", RepoMode::Normal, &[]))
        .await
        .unwrap();
    emu.control()
        .set_faults(&Faults {
            success_false_under_200: true,
            ..Faults::default()
        })
        .await
        .unwrap();

    let err = api
        .create_repo(&repo("a", RepoMode::Normal, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NameAlreadyUsed { .. }), "{err:?}");
    let err = api
        .create_repo(&repo("b", RepoMode::Mirror, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("MIRROR_MASTER_UNIT_MISSING"));
    let calls = emu.control().calls().await.unwrap();
    assert_eq!(calls.count_status("POST", "/repo", 200), 3, "{calls:?}");
    assert_eq!(
        api.list_repos(&RepoFilter::default()).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn organisations_never_see_each_other() {
    let emu = emulator(&["alice", "bob"]).await;
    let alice = client(emu.base_url(), "alice");
    let bob = client(emu.base_url(), "bob");
    let b1 = bucket(&alice, "b1").await;
    let id = alice
        .create_repo(&repo("shared-name", RepoMode::Mirror, &[(&b1, true)]))
        .await
        .unwrap();

    assert!(
        bob.list_repos(&RepoFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        bob.list_repos(&RepoFilter::repo(&id))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(bob.list_buckets(None).await.unwrap().is_empty());
    assert!(
        bob.repo_stats(std::slice::from_ref(&id))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        bob.bucket_stats(std::slice::from_ref(&b1))
            .await
            .unwrap()
            .is_empty()
    );
    let err = bob.delete_repo(&id).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    let err = bob
        .update_repo(&id, &repo("x", RepoMode::Normal, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    let err = bob
        .create_repo(&repo("y", RepoMode::Normal, &[(&b1, false)]))
        .await
        .unwrap_err();
    assert_eq!(
        err.error_code(),
        Some("NOT_FOUND"),
        "alice's bucket is unknown to bob"
    );
    let err = bob.delete_bucket(&b1).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    // Names are unique per organisation only.
    bob.create_repo(&repo("shared-name", RepoMode::Normal, &[]))
        .await
        .unwrap();
    assert_eq!(
        alice
            .list_repos(&RepoFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(only_repo(&alice, &id).await.is_some());
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    let control = emu.control();
    control
        .set_faults(&Faults::from(FailNext::new(3, 502).on("GET", "/repo")))
        .await
        .unwrap();
    api.list_repos(&RepoFilter::default())
        .await
        .expect("the fourth attempt succeeds");
    let calls = control.calls().await.unwrap();
    assert_eq!(
        (
            calls.count_status("GET", "/repo", 502),
            calls.count_status("GET", "/repo", 200)
        ),
        (3, 1)
    );

    // A seeded share of 5xx on every route: every call still succeeds within its budget.
    control
        .set_faults(&Faults {
            seed: Some(11),
            errors: Some(RandomErrors {
                share: 0.3,
                status: 503,
                error_code: None,
                retry_after_seconds: None,
                route: None,
            }),
            ..Faults::default()
        })
        .await
        .unwrap();
    control.reset_calls().await.unwrap();
    let mut patient = config(emu.base_url(), "t1");
    patient.retry.max_attempts = 8;
    let patient = FlashbackClient::new(patient).unwrap();
    let b = bucket(&patient, "b").await;
    for n in 0..20 {
        patient
            .create_repo(&repo(&format!("r{n}"), RepoMode::Normal, &[(&b, false)]))
            .await
            .unwrap();
    }
    assert_eq!(
        patient
            .list_repos(&RepoFilter::default())
            .await
            .unwrap()
            .len(),
        20,
        "no duplicate creates"
    );
    let calls = control.calls().await.unwrap();
    assert!(
        calls.count_status("POST", "/repo", 503) > 0,
        "the fault was active: {calls:?}"
    );
}

#[tokio::test]
async fn a_create_is_resent_only_when_the_server_certainly_did_not_act() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    let control = emu.control();
    let fail_once = |status| Faults::from(FailNext::new(1, status).on("POST", "/repo"));

    control.set_faults(&fail_once(500)).await.unwrap();
    let err = api
        .create_repo(&repo("a", RepoMode::Normal, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Transient {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        control.calls().await.unwrap().count("POST", "/repo"),
        1,
        "a 500 on POST is not resent"
    );

    control.set_faults(&fail_once(503)).await.unwrap();
    api.create_repo(&repo("a", RepoMode::Normal, &[]))
        .await
        .expect("a 503 on POST is resent");
    assert_eq!(control.calls().await.unwrap().count("POST", "/repo"), 3);
    assert_eq!(
        api.list_repos(&RepoFilter::default()).await.unwrap().len(),
        1
    );

    // PUT is idempotent: a 500 is retried.
    let id = only_repo_by_name(&api, "a").await;
    control
        .set_faults(&Faults::from(FailNext::new(1, 500).on("PUT", "/repo/{id}")))
        .await
        .unwrap();
    api.update_repo(&id, &repo("a2", RepoMode::Normal, &[]))
        .await
        .unwrap();
    assert_eq!(control.calls().await.unwrap().count("PUT", "/repo/{id}"), 2);
}

async fn only_repo_by_name(api: &FlashbackClient, name: &str) -> String {
    let repos = api.list_repos(&RepoFilter::default()).await.unwrap();
    repos
        .into_iter()
        .find(|r| r.name == name)
        .expect("the repo exists")
        .id
}

#[tokio::test]
async fn retry_after_is_obeyed() {
    let emu = emulator(&["t1"]).await;
    let control = emu.control();
    let api = client(emu.base_url(), "t1");
    let b = bucket(&api, "b").await;
    let ids: Vec<String> = vec![
        api.create_repo(&repo("r", RepoMode::Normal, &[(&b, false)]))
            .await
            .unwrap(),
    ];
    control
        .set_faults(&Faults {
            seed: Some(5),
            rate_limit: Some(RandomRateLimit {
                share: 0.5,
                retry_after_seconds: 1,
                error_code: None,
                route: route("GET", "/repo/stats"),
            }),
            ..Faults::default()
        })
        .await
        .unwrap();
    control.reset_calls().await.unwrap();

    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(api.repo_stats(&ids).await.unwrap().len(), 1);
    }
    let calls = control.calls().await.unwrap();
    let throttled = calls.count_status("GET", "/repo/stats", 429);
    assert!(
        throttled > 0,
        "the seed should throttle some calls: {calls:?}"
    );
    assert_eq!(calls.retry_after_violations, 0, "{calls:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(throttled),
        "each 429 cost its Retry-After"
    );

    // The counter does see a client that ignores Retry-After.
    control
        .set_faults(&Faults::from(FailNext {
            retry_after_seconds: Some(30),
            ..FailNext::new(1, 429)
        }))
        .await
        .unwrap();
    let raw = reqwest::Client::new();
    for _ in 0..2 {
        raw.get(format!("{}/repo", emu.base_url()))
            .bearer_auth("t1")
            .send()
            .await
            .unwrap();
        // Past the grace for calls that were already in flight when the 429 was answered.
        tokio::time::sleep(IN_FLIGHT_GRACE * 2).await;
    }
    assert_eq!(control.calls().await.unwrap().retry_after_violations, 1);
}

#[tokio::test]
async fn quota_exceeded_is_transient_and_waits() {
    let emu = emulator(&["t1"]).await;
    let control = emu.control();
    let quota = Faults::from(FailNext {
        error_code: Some("QUOTA_EXCEEDED".into()),
        retry_after_seconds: Some(1),
        ..FailNext::new(1, 429)
    });
    control.set_faults(&quota).await.unwrap();
    let mut once = config(emu.base_url(), "t1");
    once.retry = RetryPolicy::never();
    let err = FlashbackClient::new(once)
        .unwrap()
        .list_repos(&RepoFilter::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(
        (err.is_transient(), err.retry_after()),
        (true, Some(Duration::from_secs(1)))
    );
    assert_eq!(err.error_code(), Some("QUOTA_EXCEEDED"));

    // That client gave up at once, ignoring the Retry-After: start counting afresh.
    control.reset_calls().await.unwrap();
    control.set_faults(&quota).await.unwrap();
    let started = Instant::now();
    client(emu.base_url(), "t1")
        .list_repos(&RepoFilter::default())
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(control.calls().await.unwrap().retry_after_violations, 0);
}

#[tokio::test]
async fn a_spent_retry_budget_says_so() {
    let emu = emulator(&["t1"]).await;
    let control = emu.control();
    control
        .set_faults(&Faults {
            errors: Some(RandomErrors {
                share: 1.0,
                status: 502,
                error_code: None,
                retry_after_seconds: None,
                route: None,
            }),
            ..Faults::default()
        })
        .await
        .unwrap();
    let mut three = config(emu.base_url(), "t1");
    three.retry.max_attempts = 3;
    let err = FlashbackClient::new(three)
        .unwrap()
        .list_buckets(None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("gave up after 3 attempts: transient failure (HTTP 502)"),
        "{err}"
    );
    assert!(matches!(
        err,
        ApiError::RetriesExhausted { attempts: 3, .. }
    ));
    assert_eq!(
        (err.is_transient(), err.metric_label()),
        (true, "transient")
    );
    // Faults never touch the control API, so this still answers.
    let calls = control.calls().await.unwrap();
    assert_eq!(calls.count_status("GET", "/bucket", 502), 3);
}

#[tokio::test]
async fn stats_come_in_batches_and_are_checked() {
    let emu = emulator(&["t1"]).await;
    let control = emu.control();
    let mut batched = config(emu.base_url(), "t1");
    batched.stats_batch_size = 3;
    let api = FlashbackClient::new(batched).unwrap();
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(
            api.create_repo(&repo(&format!("r{n}"), RepoMode::Backup, &[]))
                .await
                .unwrap(),
        );
    }
    control
        .set_repo_stats(
            &ids[0],
            &StatsPatch::repo("123456789012345678901234567890", 42, -4096),
        )
        .await
        .unwrap();
    control.reset_calls().await.unwrap();

    let stats = api.repo_stats(&ids).await.unwrap();
    assert_eq!(stats.len(), 7);
    assert_eq!(
        control.calls().await.unwrap().count("GET", "/repo/stats"),
        3,
        "7 ids in batches of 3"
    );
    let first = stats.iter().find(|s| s.repo_id == ids[0]).unwrap();
    assert_eq!(
        first.total_upload_bytes,
        123_456_789_012_345_678_901_234_567_890
    );
    assert_eq!(
        (first.total_download_bytes, first.total_size_change),
        (42, -4096)
    );
    assert!(api.repo_stats(&[]).await.unwrap().is_empty());

    // The seed's `repoIds` spelling and "omit for all" work too.
    let raw = reqwest::Client::new();
    let body: Value = raw
        .get(format!(
            "{}/repo/stats?repoIds={},{}",
            emu.base_url(),
            ids[0],
            ids[1]
        ))
        .bearer_auth("t1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["stats"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["stats"][0]["totalSizeChange"],
        json!("-4096"),
        "figures are decimal strings"
    );
    let body: Value = raw
        .get(format!("{}/repo/stats", emu.base_url()))
        .bearer_auth("t1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["stats"].as_array().unwrap().len(), 7);

    // Garbage from the server is a decode error naming the field, not a wrong number.
    control
        .set_repo_stats(
            &ids[2],
            &StatsPatch {
                total_download_bytes: Some("12 bytes".into()),
                ..StatsPatch::default()
            },
        )
        .await
        .unwrap();
    let err = api.repo_stats(&ids).await.unwrap_err();
    assert_eq!(err.metric_label(), "decode");
    assert!(err.to_string().contains("totalDownloadBytes"), "{err}");
    control
        .set_repo_stats(&ids[2], &StatsPatch::repo("-1", 0, 0))
        .await
        .unwrap();
    let err = api.repo_stats(&ids).await.unwrap_err();
    assert!(
        err.to_string().contains("totalUploadBytes"),
        "a negative upload total is refused: {err}"
    );
}

#[tokio::test]
async fn unknown_enum_values_are_kept() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    let id = api
        .create_repo(&repo("r", RepoMode::Normal, &[]))
        .await
        .unwrap();
    emu.control()
        .patch_repo(
            &id,
            &RepoPatch {
                storage_type: Some("WASABI".into()),
                mode: Some("ARCHIVE".into()),
                disabled: Some(true),
                ..RepoPatch::default()
            },
        )
        .await
        .unwrap();
    let listed = only_repo(&api, &id).await.unwrap();
    assert_eq!(listed.storage_type, StorageType::Other("WASABI".into()));
    assert_eq!(listed.mode, RepoMode::Other("ARCHIVE".into()));
    assert_eq!(listed.disabled, Some(true));
    assert_eq!(listed.mode.to_string(), "ARCHIVE");
}

#[tokio::test]
async fn reference_shaped_bodies_are_accepted_as_is() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    let b1 = bucket(&api, "b1").await;
    let raw = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        raw.post(format!("{}{path}", emu.base_url()))
            .bearer_auth("t1")
            .json(&body)
            .send()
    };

    let answer: Value = post("/repo", json!({
        "name": "from-the-reference", "storageType": "AZURE", "mode": "MIRROR", "workspaceId": WORKSPACE,
        "repoBuckets": [{"bucket": {"id": b1, "name": "b1"}, "folder": "f", "master": true}],
        "repoAiLlms": [{"aiLlmId": "llm-1"}]
    })).await.unwrap().json().await.unwrap();
    assert_eq!(answer["success"], json!(true), "{answer}");
    let id = answer["repoId"].as_str().unwrap().to_owned();

    let listed: Value = raw
        .get(format!("{}/repo?repoId={id}", emu.base_url()))
        .bearer_auth("t1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let unit = &listed["repos"][0]["buckets"][0];
    assert_eq!(
        (&unit["bucketId"], &unit["master"]),
        (&json!(b1), &json!(true))
    );
    assert!(
        unit["bucket"]["secret"] != json!("bucket-secret-value"),
        "the secret itself is never sent"
    );
    assert!(
        listed["repos"][0].get("repoBuckets").is_none(),
        "buckets on read, repoBuckets on write"
    );
    let buckets: Value = raw
        .get(format!("{}/bucket", emu.base_url()))
        .bearer_auth("t1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        buckets["buckets"][0].get("key").is_none() && buckets["buckets"][0].get("secret").is_none()
    );
    // The client reads the same answer without keeping the embedded credentials.
    let read = only_repo(&api, &id).await.unwrap();
    assert_eq!(read.storage_type, StorageType::Azure);
    assert!(!format!("{read:?}").contains("AKIAEXAMPLEKEY0001"));

    let verdict: Value = post(
        "/repo/validate",
        json!({"mode": "MIRROR", "repoBuckets": [{"bucketId": b1, "master": true}]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        verdict["error_code"],
        json!("MIRROR_UNIT_ALREADY_IN_OTHER_REPO"),
        "{verdict}"
    );
    let verdict: Value = post(
        "/repo/validate",
        json!({"repoId": id, "mode": "MIRROR", "repoBuckets": [{"bucketId": b1, "master": true}]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(verdict, json!({"success": true}));
    assert_eq!(
        api.list_repos(&RepoFilter::default()).await.unwrap().len(),
        1,
        "validate changes nothing"
    );
}

#[tokio::test]
async fn the_observer_sees_every_exchange_and_clones_share_the_rate_limit() {
    let emu = emulator(&["t1"]).await;
    let records: Arc<Mutex<Vec<CallRecord>>> = Arc::default();
    let sink = records.clone();
    let mut observed = config(emu.base_url(), "t1");
    observed.observer = Some(Arc::new(move |record: &CallRecord| {
        sink.lock().unwrap().push(record.clone())
    }));
    observed.rate_limit = RateLimit {
        per_second: 20.0,
        burst: 2,
    };
    let api = FlashbackClient::new(observed).unwrap();
    emu.control()
        .set_faults(&Faults::from(FailNext::new(1, 500).on("GET", "/repo")))
        .await
        .unwrap();

    let started = Instant::now();
    let clone = api.clone();
    let everything = RepoFilter::default();
    let (listed, ()) = tokio::join!(api.list_repos(&everything), async {
        for _ in 0..4 {
            clone.list_buckets(None).await.unwrap();
        }
    });
    listed.unwrap();
    // 6 exchanges at 20/s with a burst of 2: at least 4 × 50 ms of waiting, shared by the clones.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let records = records.lock().unwrap();
    assert_eq!(records.len(), 6);
    let statuses: Vec<_> = records
        .iter()
        .filter(|r| r.endpoint == "list_repos")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [Some(500), Some(200)]);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.endpoint == "list_buckets")
            .count(),
        4
    );
    let waited: Duration = records.iter().map(|r| r.rate_limit_wait).sum();
    assert!(
        waited >= Duration::from_millis(100),
        "rate-limit waits are reported: {waited:?}"
    );
}

#[tokio::test]
async fn the_binary_prints_its_address_first_and_keeps_state_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let first = EmulatorProcess::spawn(emulator_bin(), &["t1", "t2"], Some(&state_file))
        .await
        .unwrap();
    let port: u16 = first
        .base_url()
        .strip_prefix("http://127.0.0.1:")
        .expect("listening on http://127.0.0.1:PORT")
        .parse()
        .unwrap();
    assert_ne!(port, 0, "the real port, not 0");

    let api = client(first.base_url(), "t1");
    let b = bucket(&api, "b").await;
    let id = api
        .create_repo(&repo("kept", RepoMode::Mirror, &[(&b, true)]))
        .await
        .unwrap();
    first
        .control()
        .set_repo_stats(&id, &StatsPatch::repo(10, 20, -30))
        .await
        .unwrap();
    let before = only_repo(&api, &id).await.unwrap();
    let status = first.terminate().await.unwrap();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");

    let second = EmulatorProcess::spawn(emulator_bin(), &["t1", "t2"], Some(&state_file))
        .await
        .unwrap();
    let api = client(second.base_url(), "t1");
    assert_eq!(only_repo(&api, &id).await.unwrap(), before);
    let stats = api.repo_stats(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(
        (stats[0].total_upload_bytes, stats[0].total_size_change),
        (10, -30)
    );
    let err = api
        .create_repo(&repo("kept", RepoMode::Normal, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::NameAlreadyUsed { .. }),
        "rules hold on reloaded state"
    );
    assert!(
        client(second.base_url(), "t2")
            .list_repos(&RepoFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    second.terminate().await.unwrap();
}

#[tokio::test]
async fn the_state_file_is_written_soon_after_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let first = EmulatorProcess::spawn(emulator_bin(), &["t1"], Some(&state_file))
        .await
        .unwrap();
    let api = client(first.base_url(), "t1");
    let id = api
        .create_repo(&repo("quick", RepoMode::Normal, &[]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&state_file)
        .unwrap_or_default()
        .contains(&id)
    {
        assert!(
            Instant::now() < deadline,
            "the state file never got the new repo"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await.unwrap(); // no goodbye write

    let second = EmulatorProcess::spawn(emulator_bin(), &["t1"], Some(&state_file))
        .await
        .unwrap();
    assert!(
        only_repo(&client(second.base_url(), "t1"), &id)
            .await
            .is_some()
    );
}

fn key_write(name: &str, access_type: AccessType) -> RepoKeyWrite {
    RepoKeyWrite {
        name: name.to_owned(),
        access_type,
    }
}

#[tokio::test]
async fn a_repo_key_round_trips_and_only_its_create_shows_the_secret() {
    let emu = emulator(&["t1", "t2"]).await;
    let control = emu.control();
    let records: Arc<Mutex<Vec<CallRecord>>> = Arc::default();
    let sink = records.clone();
    let mut observed = config(emu.base_url(), "t1");
    observed.observer = Some(Arc::new(move |record: &CallRecord| {
        sink.lock().unwrap().push(record.clone())
    }));
    let api = FlashbackClient::new(observed).unwrap();
    let repo_id = api
        .create_repo(&repo("keyed", RepoMode::Normal, &[]))
        .await
        .unwrap();
    control.reset_calls().await.unwrap();
    records.lock().unwrap().clear();

    let created = api
        .create_repo_key(&repo_id, &key_write("app", AccessType::Read))
        .await
        .unwrap();
    let secret = created.secret.expose().to_owned();
    assert_eq!(secret.len(), 40);
    assert_eq!(created.key.len(), 20);
    let printed = format!("{created:?}");
    assert!(!printed.contains(&secret), "{printed}");
    assert_eq!(
        printed,
        format!(
            "CreatedRepoKey {{ id: {:?}, key: {:?}, secret: *** }}",
            created.id, created.key
        )
    );
    assert!(
        control
            .verify_repo_key(&repo_id, &created.key, &secret)
            .await
            .unwrap(),
        "the answered secret is the key's"
    );

    let listed = api.list_repo_keys(&repo_id).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let created_at = listed[0].created_at.clone();
    humantime::parse_rfc3339(created_at.as_deref().unwrap()).expect("createdAt is RFC 3339");
    assert_eq!(
        listed,
        [RepoKey {
            id: created.id.clone(),
            name: "app".to_owned(),
            access_type: AccessType::Read,
            key: created.key.clone(),
            created_at: created_at.clone(),
        }]
    );
    assert!(!format!("{listed:?}").contains(&secret));

    api.update_repo_key(
        &repo_id,
        &created.id,
        &key_write("app-admin", AccessType::Admin),
    )
    .await
    .unwrap();
    assert_eq!(
        api.list_repo_keys(&repo_id).await.unwrap(),
        [RepoKey {
            id: created.id.clone(),
            name: "app-admin".to_owned(),
            access_type: AccessType::Admin,
            key: created.key.clone(),
            created_at,
        }]
    );
    assert!(
        control
            .verify_repo_key(&repo_id, &created.key, &secret)
            .await
            .unwrap(),
        "an update keeps the secret"
    );

    // Another organisation does not see the repo, so neither its keys.
    let other = client(emu.base_url(), "t2");
    let err = other.list_repo_keys(&repo_id).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    let err = other
        .delete_repo_key(&repo_id, &created.id)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");

    api.delete_repo_key(&repo_id, &created.id).await.unwrap();
    assert!(api.list_repo_keys(&repo_id).await.unwrap().is_empty());
    assert!(
        !control
            .verify_repo_key(&repo_id, &created.key, &secret)
            .await
            .unwrap(),
        "a deleted key is dead"
    );
    let err = api
        .delete_repo_key(&repo_id, &created.id)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    let err = api
        .update_repo_key(&repo_id, &created.id, &key_write("x", AccessType::Read))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    let err = api
        .create_repo_key("no-such-repo", &key_write("x", AccessType::Write))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
    let err = api
        .create_repo_key(&repo_id, &key_write("x", AccessType::Other("OWNER".into())))
        .await
        .unwrap_err();
    assert_eq!(
        (err.error_code(), err.metric_label(), err.is_transient()),
        (Some("INVALID_REQUEST"), "invalid_spec", false)
    );
    assert!(api.list_repo_keys(&repo_id).await.unwrap().is_empty());

    // Each call went out once, under its route; the observer named each endpoint.
    let calls = control.calls().await.unwrap();
    let count = |method, route, status| calls.count_status(method, route, status);
    assert_eq!(
        [
            count("POST", "/repo/{id}/apikey", 200),
            count("POST", "/repo/{id}/apikey", 404),
            count("POST", "/repo/{id}/apikey", 400),
            count("GET", "/repo/{id}/apikey", 200),
            count("GET", "/repo/{id}/apikey", 404),
            count("PUT", "/repo/{id}/apikey/{keyId}", 200),
            count("PUT", "/repo/{id}/apikey/{keyId}", 404),
            count("DELETE", "/repo/{id}/apikey/{keyId}", 200),
            count("DELETE", "/repo/{id}/apikey/{keyId}", 404),
        ],
        [1, 1, 1, 4, 1, 1, 1, 1, 2]
    );
    assert_eq!(calls.total, 13, "{calls:?}");
    let endpoints: Vec<(&str, Option<u16>)> = records
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.endpoint, r.status))
        .collect();
    assert_eq!(
        endpoints,
        [
            ("create_repo_key", Some(200)),
            ("list_repo_keys", Some(200)),
            ("update_repo_key", Some(200)),
            ("list_repo_keys", Some(200)),
            ("delete_repo_key", Some(200)),
            ("list_repo_keys", Some(200)),
            ("delete_repo_key", Some(404)),
            ("update_repo_key", Some(404)),
            ("create_repo_key", Some(404)),
            ("create_repo_key", Some(400)),
            ("list_repo_keys", Some(200)),
        ]
    );
}

#[tokio::test]
async fn a_key_create_is_resent_only_when_the_server_certainly_did_not_act() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    let control = emu.control();
    let repo_id = api
        .create_repo(&repo("keyed", RepoMode::Normal, &[]))
        .await
        .unwrap();
    let fail_once = |method: &str, route: &str, status| {
        Faults::from(FailNext::new(1, status).on(method, route))
    };

    control
        .set_faults(&fail_once("POST", "/repo/{id}/apikey", 500))
        .await
        .unwrap();
    let err = api
        .create_repo_key(&repo_id, &key_write("app", AccessType::Write))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Transient {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        control
            .calls()
            .await
            .unwrap()
            .count("POST", "/repo/{id}/apikey"),
        1,
        "a 500 on a key create is not resent"
    );

    control
        .set_faults(&fail_once("POST", "/repo/{id}/apikey", 503))
        .await
        .unwrap();
    let created = api
        .create_repo_key(&repo_id, &key_write("app", AccessType::Write))
        .await
        .expect("a 503 on a key create is resent");
    let calls = control.calls().await.unwrap();
    assert_eq!(
        (
            calls.count_status("POST", "/repo/{id}/apikey", 503),
            calls.count_status("POST", "/repo/{id}/apikey", 200)
        ),
        (1, 1)
    );
    let listed = api.list_repo_keys(&repo_id).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        [created.id.as_str()],
        "no duplicate key"
    );

    // Update and delete are idempotent: a 500 is retried.
    control
        .set_faults(&fail_once("PUT", "/repo/{id}/apikey/{keyId}", 500))
        .await
        .unwrap();
    api.update_repo_key(&repo_id, &created.id, &key_write("app", AccessType::Read))
        .await
        .unwrap();
    control
        .set_faults(&fail_once("DELETE", "/repo/{id}/apikey/{keyId}", 500))
        .await
        .unwrap();
    api.delete_repo_key(&repo_id, &created.id).await.unwrap();
    let calls = control.calls().await.unwrap();
    assert_eq!(
        (
            calls.count_status("PUT", "/repo/{id}/apikey/{keyId}", 500),
            calls.count_status("PUT", "/repo/{id}/apikey/{keyId}", 200),
            calls.count_status("DELETE", "/repo/{id}/apikey/{keyId}", 500),
            calls.count_status("DELETE", "/repo/{id}/apikey/{keyId}", 200),
        ),
        (1, 1, 1, 1)
    );
    assert!(api.list_repo_keys(&repo_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_deleted_repo_takes_its_keys_along() {
    let emu = emulator(&["t1"]).await;
    let api = client(emu.base_url(), "t1");
    let control = emu.control();
    let repo_id = api
        .create_repo(&repo("keyed", RepoMode::Normal, &[]))
        .await
        .unwrap();
    let created = api
        .create_repo_key(&repo_id, &key_write("app", AccessType::Read))
        .await
        .unwrap();
    assert_eq!(control.repo_keys(&repo_id).await.unwrap().len(), 1);

    api.delete_repo(&repo_id).await.unwrap();
    assert!(
        !control
            .verify_repo_key(&repo_id, &created.key, created.secret.expose())
            .await
            .unwrap()
    );
    let err = api.list_repo_keys(&repo_id).await.unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
}

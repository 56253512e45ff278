//! Retries and pacing: server errors are retried until success, a create is resent only when
//! the server certainly did not act (and not over the bucket quota), Retry-After is obeyed, a quota refusal is transient and
//! waits, a spent retry budget says so, and the observer sees every exchange while clones share
//! one rate limit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashback_client::{
    ApiError, CallRecord, FlashbackClient, RateLimit, RepoFilter, RepoMode, RetryPolicy,
};
use flashback_emulator::{
    FailNext, Faults, IN_FLIGHT_GRACE, Limits, RandomErrors, RandomRateLimit, RouteFilter,
};

use crate::support::{bucket, bucket_write, client, config, emulator, repo};

fn route(method: &str, route: &str) -> Option<RouteFilter> {
    Some(RouteFilter {
        method: Some(method.to_owned()),
        route: route.to_owned(),
    })
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
async fn a_bucket_register_answered_429_without_retry_after_is_not_resent() {
    let emu = emulator(&["t1"]).await;
    let control = emu.control();
    let api = client(emu.base_url(), "t1");
    control
        .set_limits(&Limits {
            buckets_per_organisation: Some(0),
        })
        .await
        .unwrap();
    let err = api
        .create_bucket(&bucket_write("over", "ws-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::RateLimited { retry_after: None }),
        "{err:?}"
    );
    assert_eq!(
        control.calls().await.unwrap().count("POST", "/bucket"),
        1,
        "the bucket quota: no retry lifts it"
    );

    // A 429 with Retry-After is a throttle: waited out and sent again.
    control.set_limits(&Limits::default()).await.unwrap();
    control
        .set_faults(&Faults::from(FailNext {
            retry_after_seconds: Some(1),
            ..FailNext::new(1, 429).on("POST", "/bucket")
        }))
        .await
        .unwrap();
    control.reset_calls().await.unwrap();
    api.create_bucket(&bucket_write("throttled", "ws-1"))
        .await
        .expect("sent again after the Retry-After");
    let calls = control.calls().await.unwrap();
    assert_eq!(
        (
            calls.count_status("POST", "/bucket", 429),
            calls.count_status("POST", "/bucket", 200)
        ),
        (1, 1)
    );
}

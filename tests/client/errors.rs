//! How the client names a refusal: every refused call maps to its error and is not retried, a
//! rejected token is Unauthorized and never printed, and a refusal under HTTP 200 is still an
//! error.

use std::time::Duration;

use flashback_client::{ApiError, FlashbackClient, RepoFilter, RepoMode};
use flashback_emulator::{Faults, Latency};
use serde_json::{Value, json};

use crate::support::{bucket, client, config, emulator, repo};

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

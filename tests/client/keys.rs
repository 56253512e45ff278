//! Repository keys: a key round-trips and only its create shows the secret, a key create is
//! resent only when the server certainly did not act, and a deleted repository takes its keys
//! along.

use std::sync::{Arc, Mutex};

use flashback_client::{
    AccessType, ApiError, CallRecord, FlashbackClient, RepoKey, RepoKeyWrite, RepoMode,
};
use flashback_emulator::{FailNext, Faults};

use crate::support::{client, config, emulator, repo};

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

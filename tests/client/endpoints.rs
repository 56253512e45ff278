//! Every endpoint of the client against the emulator: requests round-trip, organisations never
//! see each other's objects, statistics come in checked batches, and bodies shaped as the
//! reference API sends them, unknown enum values included, are taken as they are.

use flashback_client::{ApiError, FlashbackClient, RepoFilter, RepoMode, StorageType};
use flashback_emulator::{RepoPatch, StatsPatch};
use serde_json::{Value, json};

use super::only_repo;
use crate::support::{WORKSPACE, bucket, client, config, emulator, repo};

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

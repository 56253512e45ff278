//! The emulator as the process the other tests run: the binary prints its address first, keeps
//! its state across a restart, and writes its state file soon after each change.

use std::time::{Duration, Instant};

use flashback_client::{ApiError, RepoFilter, RepoMode};
use flashback_emulator::{EmulatorProcess, StatsPatch};

use super::only_repo;
use crate::support::{bucket, client, emulator_bin, repo};

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

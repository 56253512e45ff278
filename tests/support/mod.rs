//! Shared by the integration tests; each test crate uses its own subset.
//! Here: an in-process emulator and clients tuned for quick tests. In the modules: the local
//! control plane (`cluster`), the operator process (`operator`), end-to-end scenes (`scene`).
#![allow(dead_code)]

pub mod cluster;
pub mod hostile;
pub mod node;
pub mod operator;
pub mod scene;

use std::time::Duration;

use flashback_operator::emulator::{EmulatorConfig, RunningEmulator};
use flashback_operator::flashback::{
    BucketWrite, ClientConfig, FlashbackClient, RateLimit, RepoBucketWrite, RepoMode, RepoWrite,
    RetryPolicy, StorageType, Token,
};
use reqwest::Url;

pub const WORKSPACE: &str = "ws-test";

pub async fn emulator(tokens: &[&str]) -> RunningEmulator {
    RunningEmulator::start(EmulatorConfig {
        tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
        state_file: None,
    })
    .await
    .expect("the emulator starts")
}

/// Quick retries, no rate limit: tests wait for nothing they do not test.
pub fn config(base_url: &str, token: &str) -> ClientConfig {
    let mut config = ClientConfig::new(Url::parse(base_url).unwrap(), Token::new(token));
    config.timeout = Duration::from_secs(5);
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
    };
    config.rate_limit = RateLimit::unlimited();
    config
}

pub fn client(base_url: &str, token: &str) -> FlashbackClient {
    FlashbackClient::new(config(base_url, token)).unwrap()
}

/// A bucket registration, with made-up cloud credentials.
pub fn bucket_write(name: &str, workspace: &str) -> BucketWrite {
    BucketWrite {
        name: name.to_owned(),
        bucket: format!("{name}-cloud"),
        storage_type: StorageType::S3,
        key: "AKIAEXAMPLEKEY0001".to_owned(),
        secret: "bucket-secret-value".to_owned(),
        region: Some("eu-west-1".to_owned()),
        endpoint: None,
        workspace_id: workspace.to_owned(),
    }
}

pub async fn bucket(client: &FlashbackClient, name: &str) -> String {
    client
        .create_bucket(&bucket_write(name, WORKSPACE))
        .await
        .unwrap()
}

/// A repo write; `units` are `(bucket id, master)`.
pub fn repo(name: &str, mode: RepoMode, units: &[(&str, bool)]) -> RepoWrite {
    RepoWrite {
        name: name.to_owned(),
        storage_type: StorageType::S3,
        mode,
        workspace_id: Some(WORKSPACE.to_owned()),
        repo_buckets: units
            .iter()
            .map(|(bucket_id, master)| RepoBucketWrite {
                bucket_id: (*bucket_id).to_owned(),
                folder: Some(format!("{name}-folder")),
                master: *master,
            })
            .collect(),
        repo_ai_llms: vec![],
    }
}

//! Shared by the integration tests (`tests/main.rs`) and the benchmarks.
//! Here: an in-process emulator and clients tuned for quick tests. In the modules: the local
//! control plane (`cluster`), the operator process (`operator`), end-to-end scenes (`scene`).
#![allow(dead_code)]

pub mod argocd;
pub mod cluster;
pub mod flux;
pub mod git;
pub mod hostile;
pub mod node;
pub mod operator;
pub mod policy;
pub mod scene;
pub mod wait;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use flashback_client::{
    BucketWrite, ClientConfig, FlashbackClient, RateLimit, RepoBucketWrite, RepoMode, RepoWrite,
    RetryPolicy, StorageType, Token,
};
use flashback_emulator::{EmulatorConfig, RunningEmulator};
use reqwest::Url;

/// Prints the last lines of a process's log to the test's output (for a process a failing
/// test stops): what it did last, under `--- WHAT log PATH (last lines) ---`.
pub fn print_log_tail(what: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(60).collect();
    eprintln!("--- {what} log {} (last lines) ---", log.display());
    for line in tail.into_iter().rev() {
        eprintln!("{line}");
    }
}

pub const WORKSPACE: &str = "ws-test";

/// The `flashback-emulator` binary of this workspace, built with the profile of the running
/// test. Cargo only hands a test the binaries of its own package, and the emulator is another
/// crate, so this asks cargo itself: `cargo build` is a no-op when the binary is fresh, and its
/// JSON output names the file, so no path is guessed.
pub fn emulator_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command.args([
            "build",
            "--locked",
            "--quiet",
            "--package",
            "flashback-emulator",
            "--bin",
            "flashback-emulator",
            "--message-format=json",
        ]);
        if !cfg!(debug_assertions) {
            command.arg("--release");
        }
        let output = command.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "building flashback-emulator failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|message| {
                let named = message["target"]["name"] == "flashback-emulator";
                let path = message["executable"].as_str()?;
                named.then(|| PathBuf::from(path))
            })
            .expect("cargo names the flashback-emulator executable")
    })
}

pub async fn emulator(tokens: &[&str]) -> RunningEmulator {
    RunningEmulator::start(EmulatorConfig {
        tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
        state_file: None,
        ..Default::default()
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

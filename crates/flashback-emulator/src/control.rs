//! A typed client for the emulator's `/_emulator/` control API, and a handle on an emulator
//! binary running as a child process. Used by tests and benchmarks.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::calls::CallStats;
use super::faults::Faults;

/// Body of `PUT /_emulator/repos/{id}/stats` and `PUT /_emulator/buckets/{id}/stats`. Each
/// figure is optional (absent = unchanged) and taken as text, unchecked, so a test can make the
/// API send garbage. JSON numbers are accepted too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatsPatch {
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_count: Option<String>,
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_upload_bytes: Option<String>,
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_download_bytes: Option<String>,
    #[serde(
        default,
        deserialize_with = "text",
        skip_serializing_if = "Option::is_none"
    )]
    pub total_size_change: Option<String>,
}

impl StatsPatch {
    /// The three figures of a repo.
    pub fn repo(
        upload: impl ToString,
        download: impl ToString,
        size_change: impl ToString,
    ) -> Self {
        Self {
            total_count: None,
            total_upload_bytes: Some(upload.to_string()),
            total_download_bytes: Some(download.to_string()),
            total_size_change: Some(size_change.to_string()),
        }
    }
}

fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(text),
            Some(other) => Some(other.to_string()),
        },
    )
}

/// Body of `PUT /_emulator/limits` and answer of `GET`: the quotas every organisation (token)
/// is held to. Absent: no limit. Kept in memory only, like the faults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// The most buckets one organisation holds, all its workspaces together: over it,
    /// `POST /bucket` answers the service's bucket quota refusal (429, no `error_code`, no
    /// `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets_per_organisation: Option<usize>,
}

/// Body of `PATCH /_emulator/repos/{id}`: raw changes, not validated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepoPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// The AI models attached to the repo, as `GET /repo` will list them (`aiLlms`): what a
    /// person attaches in the web console, which no write of the operator's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_llms: Option<Vec<serde_json::Value>>,
}

/// A repository access key as `GET /_emulator/repos/{id}/keys` lists it; the sealed secret the
/// listing carries too is left unread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedKey {
    pub id: String,
    pub name: String,
    pub access_type: String,
    /// The access key id.
    pub key: String,
    pub created_at: String,
}

#[derive(Deserialize)]
struct ListedKeys {
    keys: Vec<ListedKey>,
}

#[derive(Deserialize)]
struct Liveness {
    live: bool,
}

/// Talks to the `/_emulator/` routes of one emulator.
#[derive(Clone, Debug)]
pub struct EmulatorControl {
    http: reqwest::Client,
    base_url: Url,
}

impl EmulatorControl {
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let base_url = Url::parse(base_url).with_context(|| format!("bad URL {base_url:?}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, base_url })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base_url.clone();
        url.set_path(path);
        url
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request.send().await.context("calling the emulator")?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            bail!(
                "the emulator answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).context("reading the emulator's answer")
    }

    async fn send_ok(&self, request: reqwest::RequestBuilder) -> anyhow::Result<()> {
        self.send::<serde_json::Value>(request).await.map(|_| ())
    }

    /// `GET /_emulator/sessions`: the lifetimes and the session counters.
    pub async fn sessions(&self) -> anyhow::Result<crate::SessionFigures> {
        self.send(self.http.get(self.url("/_emulator/sessions")))
            .await
    }

    /// `PUT /_emulator/sessions`: access tokens issued from now on live `lifetime`.
    pub async fn set_access_token_lifetime(&self, lifetime: Duration) -> anyhow::Result<()> {
        let figures = crate::SessionFigures {
            access_token_lifetime_seconds: Some(lifetime.as_secs_f64()),
            ..Default::default()
        };
        self.send_ok(
            self.http
                .put(self.url("/_emulator/sessions"))
                .json(&figures),
        )
        .await
    }

    /// `POST /_emulator/sessions`: a new session of the organisation of `token`.
    pub async fn open_session(&self, token: &str) -> anyhow::Result<crate::IssuedSession> {
        let body = serde_json::json!({"org": token});
        self.send(self.http.post(self.url("/_emulator/sessions")).json(&body))
            .await
    }

    /// `POST /_emulator/sessions/revoke`: ends the session `token_id`.
    pub async fn revoke_session(&self, token_id: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({"tokenId": token_id});
        self.send_ok(
            self.http
                .post(self.url("/_emulator/sessions/revoke"))
                .json(&body),
        )
        .await
    }

    /// `POST /_emulator/users`: a person who can log in to the organisation of `token`.
    pub async fn add_user(&self, email: &str, password: &str, token: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({"email": email, "password": password, "org": token});
        self.send_ok(self.http.post(self.url("/_emulator/users")).json(&body))
            .await
    }

    /// `GET /_emulator/health`.
    pub async fn health(&self) -> anyhow::Result<()> {
        self.send_ok(self.http.get(self.url("/_emulator/health")))
            .await
    }

    /// `GET /_emulator/calls`.
    pub async fn calls(&self) -> anyhow::Result<CallStats> {
        self.send(self.http.get(self.url("/_emulator/calls"))).await
    }

    /// `DELETE /_emulator/calls`.
    pub async fn reset_calls(&self) -> anyhow::Result<()> {
        self.send_ok(self.http.delete(self.url("/_emulator/calls")))
            .await
    }

    /// `GET /_emulator/faults`: the settings, with `failNext.count` counting down.
    pub async fn faults(&self) -> anyhow::Result<Faults> {
        self.send(self.http.get(self.url("/_emulator/faults")))
            .await
    }

    /// `PUT /_emulator/faults`: replaces every fault setting.
    pub async fn set_faults(&self, faults: &Faults) -> anyhow::Result<()> {
        self.send_ok(self.http.put(self.url("/_emulator/faults")).json(faults))
            .await
    }

    /// `DELETE /_emulator/faults`.
    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.send_ok(self.http.delete(self.url("/_emulator/faults")))
            .await
    }

    /// `PUT /_emulator/limits`: replaces every quota.
    pub async fn set_limits(&self, limits: &Limits) -> anyhow::Result<()> {
        self.send_ok(self.http.put(self.url("/_emulator/limits")).json(limits))
            .await
    }

    /// `GET /_emulator/rules`.
    pub async fn rules(&self) -> anyhow::Result<crate::Rules> {
        self.send(self.http.get(self.url("/_emulator/rules"))).await
    }

    /// `PUT /_emulator/rules`: replaces every rule.
    pub async fn set_rules(&self, rules: &crate::Rules) -> anyhow::Result<()> {
        self.send_ok(self.http.put(self.url("/_emulator/rules")).json(rules))
            .await
    }

    /// `PUT /_emulator/buckets/{id}/credentials`: whether the storage provider takes the
    /// credentials the bucket holds.
    pub async fn set_bucket_credentials(&self, bucket_id: &str, valid: bool) -> anyhow::Result<()> {
        let url = self.url(&format!("/_emulator/buckets/{bucket_id}/credentials"));
        self.send_ok(
            self.http
                .put(url)
                .json(&serde_json::json!({ "valid": valid })),
        )
        .await
    }

    /// `PUT /_emulator/repos/{id}/stats`.
    pub async fn set_repo_stats(&self, repo_id: &str, stats: &StatsPatch) -> anyhow::Result<()> {
        let url = self.url(&format!("/_emulator/repos/{repo_id}/stats"));
        self.send_ok(self.http.put(url).json(stats)).await
    }

    /// `PUT /_emulator/buckets/{id}/stats`.
    pub async fn set_bucket_stats(
        &self,
        bucket_id: &str,
        stats: &StatsPatch,
    ) -> anyhow::Result<()> {
        let url = self.url(&format!("/_emulator/buckets/{bucket_id}/stats"));
        self.send_ok(self.http.put(url).json(stats)).await
    }

    /// `GET /_emulator/repos/{id}/keys`: the repo's access keys, whichever organisation owns
    /// it. An unknown repo is an error.
    pub async fn repo_keys(&self, repo_id: &str) -> anyhow::Result<Vec<ListedKey>> {
        let url = self.url(&format!("/_emulator/repos/{repo_id}/keys"));
        let listed: ListedKeys = self.send(self.http.get(url)).await?;
        Ok(listed.keys)
    }

    /// `GET /_emulator/repos/{id}/keys/verify`: true when the repo has a key with access key
    /// id `key` whose secret is `secret`, i.e. a workload holding them could sign with them.
    /// An unknown repo or key is simply `false`.
    pub async fn verify_repo_key(
        &self,
        repo_id: &str,
        key: &str,
        secret: &str,
    ) -> anyhow::Result<bool> {
        let mut url = self.url(&format!("/_emulator/repos/{repo_id}/keys/verify"));
        url.query_pairs_mut()
            .append_pair("key", key)
            .append_pair("secret", secret);
        let answer: Liveness = self.send(self.http.get(url)).await?;
        Ok(answer.live)
    }

    /// `PATCH /_emulator/repos/{id}`.
    pub async fn patch_repo(&self, repo_id: &str, patch: &RepoPatch) -> anyhow::Result<()> {
        let url = self.url(&format!("/_emulator/repos/{repo_id}"));
        self.send_ok(self.http.patch(url).json(patch)).await
    }
}

/// The `flashback-emulator` binary running as a child process on `127.0.0.1:0`.
///
/// The child is killed when this is dropped; [`EmulatorProcess::terminate`] stops it gracefully
/// (SIGTERM), which also writes the state file one last time.
pub struct EmulatorProcess {
    child: Child,
    base_url: String,
    /// Kept open so the child never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl EmulatorProcess {
    /// Starts `binary` (in tests: `env!("CARGO_BIN_EXE_flashback-emulator")`) with the given
    /// tokens, passed through the environment so they stay off the command line, and waits for
    /// its `listening on` line.
    pub async fn spawn(
        binary: impl AsRef<Path>,
        tokens: &[&str],
        state_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Self::spawn_with_args(binary, tokens, state_file, &[]).await
    }

    /// [`EmulatorProcess::spawn`] with more command-line arguments (e.g. rules' flags).
    pub async fn spawn_with_args(
        binary: impl AsRef<Path>,
        tokens: &[&str],
        state_file: Option<&Path>,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let binary = binary.as_ref();
        let mut command = Command::new(binary);
        command
            .args(["--listen", "127.0.0.1:0"])
            .env("FLASHBACK_EMULATOR_TOKENS", tokens.join(","))
            .env("FLASHBACK_EMULATOR_LOG", "warn")
            .env_remove("FLASHBACK_EMULATOR_STATE_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(path) = state_file {
            command.arg("--state-file").arg(path);
        }
        command.args(args);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?);
        let mut first_line = String::new();
        tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut first_line))
            .await
            .context("the emulator did not say where it listens within 30 s")??;
        let base_url = first_line
            .trim_end()
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line {first_line:?}"))?
            .to_owned();
        Ok(Self {
            child,
            base_url,
            _stdout: stdout,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn control(&self) -> EmulatorControl {
        EmulatorControl::new(&self.base_url).expect("the emulator printed a valid URL")
    }

    /// Sends SIGTERM and waits (10 s at most) for a clean exit.
    pub async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().context("the emulator already exited")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("the emulator did not stop within 10 s of SIGTERM")?
            .context("waiting for the emulator")
    }

    /// Kills the child at once (SIGKILL): no last state write.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("killing the emulator")
    }
}

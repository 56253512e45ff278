//! The real `flashback-operator` binary, started as a process for end-to-end tests.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running operator watching one namespace. Killed when dropped.
pub struct Operator {
    child: Option<Child>,
    log: PathBuf,
}

impl Operator {
    /// Starts the operator against the local control plane and the given API URL, with a
    /// short resync so drift tests finish quickly. `extra` adds or overrides flags.
    pub fn start(namespace: &str, api_url: &str, extra: &[&str]) -> Self {
        Self::start_as(
            &super::cluster::kubeconfig_path(),
            &[],
            namespace,
            api_url,
            extra,
        )
    }

    /// An operator watching every namespace, limited to the objects `extra` selects (pass
    /// `--selector`, so it never touches the objects of tests running beside it).
    pub fn start_cluster_wide(api_url: &str, extra: &[&str]) -> Self {
        Self::launch(
            &super::cluster::kubeconfig_path(),
            &[],
            None,
            api_url,
            extra,
        )
    }

    /// [`Operator::start`] with the identity of another kubeconfig (e.g. a ServiceAccount
    /// token) and extra environment variables, `RUST_LOG` included (flags win over both).
    pub fn start_as(
        kubeconfig: &Path,
        env: &[(String, String)],
        namespace: &str,
        api_url: &str,
        extra: &[&str],
    ) -> Self {
        Self::launch(kubeconfig, env, Some(namespace), api_url, extra)
    }

    fn launch(
        kubeconfig: &Path,
        env: &[(String, String)],
        namespace: Option<&str>,
        api_url: &str,
        extra: &[&str],
    ) -> Self {
        let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("operator-logs");
        std::fs::create_dir_all(&logs).expect("log directory");
        let log = logs.join(format!(
            "{}-{}.log",
            namespace.unwrap_or("all"),
            uuid::Uuid::new_v4().simple()
        ));
        let out = File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_flashback-operator"));
        command.arg("run").args(["--api-url", api_url]);
        if let Some(namespace) = namespace {
            command.args(["--namespace", namespace]);
        }
        if !extra.contains(&"--resync-interval") {
            command.args(["--resync-interval", "3s"]);
        }
        // Tests run side by side: each operator takes a free port for its endpoints.
        if !extra.contains(&"--metrics-address") {
            command.args(["--metrics-address", "127.0.0.1:0"]);
        }
        let child = command
            .args(extra)
            .env("RUST_LOG", "info,flashback_operator=debug")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out)
            .spawn()
            .expect("the operator binary starts");
        Self {
            child: Some(child),
            log,
        }
    }

    /// Everything the operator printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the operator has printed `text`.
    pub async fn wait_for_output(&self, text: &str) {
        let waited = tokio::time::timeout(super::cluster::DEADLINE, async {
            while !self.output().contains(text) {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the operator never printed {text:?}");
    }

    /// The base URL of the operator's /metrics, /healthz and /readyz, once it listens.
    pub async fn endpoints_url(&self) -> String {
        let deadline = tokio::time::Instant::now() + super::cluster::DEADLINE;
        loop {
            let output = self.output();
            let address = output
                .lines()
                .filter(|line| line.contains("serving /metrics"))
                // Text logs say address=..., JSON logs (the chart's default) "address":"...".
                .find_map(|line| {
                    let text = line.split("address=").nth(1);
                    text.or_else(|| line.split("\"address\":\"").nth(1))
                })
                .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next());
            if let Some(address) = address {
                return format!("http://{address}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator never said where it serves /metrics"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The operator's /metrics, as text.
    pub async fn metrics(&self) -> String {
        let url = self.endpoints_url().await;
        reqwest::get(format!("{url}/metrics"))
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("/metrics is text")
    }

    /// The process's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_memory_kib(&self) -> Option<u64> {
        self.memory_kib("VmHWM:")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// A memory figure of the process from /proc (e.g. `VmRSS:`), in KiB.
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Waits (polling, bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, deadline: std::time::Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let until = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < until {
            if let Some(status) = child.try_wait().ok()? {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }

    /// Kills the process with SIGKILL, as a crash or an OOM kill would.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL is delivered");
            child.wait().expect("the killed operator is reaped");
        }
    }

    /// Asks the process to stop with SIGTERM and waits (bounded) for it; returns whether it
    /// exited 0. One that does not stop in time is killed and counts as a failure.
    pub fn terminate(&mut self) -> bool {
        let Some(child) = self.child.as_ref() else {
            return false;
        };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        match self.wait_exit(super::cluster::DEADLINE) {
            Some(status) => status.success(),
            None => {
                self.kill_hard();
                false
            }
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill_hard();
        if std::thread::panicking() {
            eprintln!(
                "--- operator log {} ---\n{}",
                self.log.display(),
                self.output()
            );
        }
    }
}

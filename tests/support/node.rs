//! The local cluster with a real node (`tests/control-plane/up.sh --node`): its own etcd,
//! API server, controller-manager, scheduler, containerd and kubelet, separate from the plain
//! control plane the other tests share. Pods there run from images imported into containerd.
//!
//! The Node has no address (the kubelet refuses a loopback one), so the API server cannot
//! reach the kubelet and `kubectl logs` does not work: container logs are read from the files
//! the kubelet writes, and container processes are found through containerd.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tool(name: &str) -> PathBuf {
    root().join("target/control-plane/bin").join(name)
}

/// Runs a command to its end, killing it after `limit`; returns its output either way (a
/// command that ran out of time has no exit code).
pub fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} starts: {e}"));
    // Drain both pipes on threads so a chatty command never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on the command") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            break child.wait().expect("the killed command is reaped");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// [`run_bounded`] for a command that must succeed; returns its stdout.
pub fn run_ok(command: &mut Command, limit: Duration) -> String {
    let description = format!("{command:?}");
    let output = run_bounded(command, limit);
    assert!(
        output.status.success(),
        "{description} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout),
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The cluster with a node, brought down (every process and container, by pid) when dropped.
pub struct NodeCluster {
    pub kube: Client,
    pub kubeconfig: PathBuf,
    /// What `up.sh --node` wrote to node.env: the API server port for in-cluster config,
    /// containerd's socket, where Pod logs go.
    pub env: BTreeMap<String, String>,
}

impl NodeCluster {
    /// Starts a fresh cluster (a few seconds with the binaries cached). One cluster with a node
    /// runs on a machine at a time: one left running (a `make demo`, or a test run that was
    /// killed) is stopped first.
    pub async fn up() -> Self {
        run_ok(
            Command::new(root().join("tests/control-plane/down.sh")).arg("--node"),
            Duration::from_secs(120),
        );
        let script = root().join("tests/control-plane/up.sh");
        run_ok(
            Command::new(&script).arg("--node"),
            Duration::from_secs(300),
        );
        let base = root().join("target/control-plane/node");
        let env = std::fs::read_to_string(base.join("node.env"))
            .expect("up.sh --node writes node.env")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let kubeconfig = base.join("kubeconfig");
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).expect("node kubeconfig"),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig is valid");
        Self {
            kube: Client::try_from(config).expect("kube client builds"),
            kubeconfig,
            env,
        }
    }

    pub fn api_server_port(&self) -> &str {
        &self.env["KUBERNETES_SERVICE_PORT"]
    }

    fn ctr(&self) -> Command {
        let mut command = Command::new(tool("ctr"));
        command.args(["-a", &self.env["CONTAINERD_ADDRESS"], "-n", "k8s.io"]);
        command
    }

    /// Imports an OCI archive into the node's containerd, as a registry pull would have.
    pub fn import_image(&self, archive: &Path) {
        run_ok(
            self.ctr()
                .args(["images", "import", "--snapshotter", "native"])
                .arg(archive),
            Duration::from_secs(120),
        );
    }

    /// A kubectl (or helm, with the same flag) command against this cluster.
    pub fn command(&self, tool_name: &str) -> Command {
        let mut command = Command::new(tool(tool_name));
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    pub fn helm(&self, args: &[&str]) -> String {
        run_ok(self.command("helm").args(args), Duration::from_secs(120))
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        run_ok(self.command("kubectl").args(args), Duration::from_secs(60))
    }

    /// The host pid of a Pod's first container, found through containerd.
    pub fn container_pid(&self, pod: &Pod) -> u32 {
        let id = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.container_id.as_deref())
            .and_then(|id| id.strip_prefix("containerd://"))
            .expect("the Pod's container has a containerd id")
            .to_owned();
        let tasks = run_ok(self.ctr().args(["tasks", "ls"]), Duration::from_secs(30));
        tasks
            .lines()
            .find_map(|line| {
                let mut fields = line.split_whitespace();
                (fields.next() == Some(id.as_str())).then(|| fields.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no containerd task {id} in:\n{tasks}"))
    }

    /// Everything the kubelet logged for a Pod's containers (all restarts), read from the files
    /// under the node's Pod log directory: `<namespace>_<pod>_<uid>/<container>/<n>.log`.
    pub fn pod_logs(&self, pod: &Pod) -> String {
        let dir = Path::new(&self.env["POD_LOGS"]).join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default(),
        ));
        let mut text = String::new();
        for container in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(container.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                text += &std::fs::read_to_string(file.path()).unwrap_or_default();
            }
        }
        text
    }

    /// The end of every Pod log and of the node's own logs, for a failing test.
    fn print_logs(&self) {
        let pod_logs = PathBuf::from(&self.env["POD_LOGS"]);
        let mut files = vec![];
        for pod in std::fs::read_dir(&pod_logs).into_iter().flatten().flatten() {
            for container in std::fs::read_dir(pod.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                for file in std::fs::read_dir(container.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    files.push(file.path());
                }
            }
        }
        let run = root().join("target/control-plane/node/run");
        for name in ["kubelet.log", "containerd.log", "kube-scheduler.log"] {
            files.push(run.join(name));
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {} (last 40 lines) ---", file.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        let output = run_bounded(
            Command::new(root().join("tests/control-plane/down.sh")).arg("--node"),
            Duration::from_secs(120),
        );
        if !output.status.success() {
            eprintln!(
                "down.sh --node failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// `/proc/<pid>/status` fields of a process, e.g. "Uid", "CapEff", "NoNewPrivs", "Seccomp".
pub fn process_status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the container process is visible from the host")
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// Whether the process's root filesystem is mounted read-only (from /proc/<pid>/mountinfo).
pub fn root_is_read_only(pid: u32) -> bool {
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let roots: Vec<&str> = mountinfo
        .lines()
        .filter(|line| line.split_whitespace().nth(4) == Some("/"))
        .collect();
    !roots.is_empty()
        && roots.iter().all(|line| {
            line.split_whitespace()
                .nth(5)
                .is_some_and(|options| options.split(',').any(|o| o == "ro"))
        })
}

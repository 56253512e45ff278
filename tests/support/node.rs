//! The local cluster with a real node (`tests/control-plane/up.sh --node`): its own etcd,
//! API server, controller-manager, scheduler, containerd, kubelet, pod network, kube-proxy,
//! CoreDNS and OCI registry, inside a network namespace of its own, separate from the plain
//! control plane the other tests share. Pods there pull their images from that registry.
//!
//! Tests reach the API server and the registry through the forwarders `up.sh` starts, and a
//! Service or a server of their own through forwarders they start ([`NodeCluster::forward`],
//! [`NodeCluster::expose`]). One such cluster runs on a machine at a time: [`NodeCluster::up`]
//! waits for the one another test holds.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::io::BufRead as _;
use std::process::Child;

use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::{Mutex, MutexGuard};

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

/// The one cluster with a node of this test process: tests that need it take turns.
static NODE: Mutex<()> = Mutex::const_new(());

/// The cluster with a node, brought down (every process and container, by pid, and its network
/// namespace) when dropped.
pub struct NodeCluster {
    pub kube: Client,
    pub kubeconfig: PathBuf,
    /// What `up.sh --node` wrote to node.env: the network namespace and node IP, the registry,
    /// containerd's socket, where Pod logs go.
    pub env: BTreeMap<String, String>,
    turn: Option<MutexGuard<'static, ()>>,
}

impl NodeCluster {
    /// Starts a fresh cluster (a few seconds with the binaries cached), once no other test of
    /// this process holds one. One cluster with a node runs on a machine at a time: one left
    /// running (a `make demo`, or a test run that was killed) is stopped first.
    pub async fn up() -> Self {
        let turn = NODE.lock().await;
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
            turn: Some(turn),
        }
    }

    /// The registry's host:port, the same inside the node's network and on this machine.
    pub fn registry(&self) -> &str {
        &self.env["REGISTRY"]
    }

    /// The API server's port: on the node IP, and forwarded on this machine's loopback.
    pub fn api_server_port(&self) -> &str {
        &self.env["API_SERVER_PORT"]
    }

    /// The node's address in its network namespace, which Pods reach.
    pub fn node_ip(&self) -> &str {
        &self.env["NODE_IP"]
    }

    /// Pushes the image `make image` built, and the chart, to the node's registry
    /// (`demo/publish.sh`, as `make image` does while the cluster is up).
    pub fn publish(&self) {
        run_ok(
            Command::new(root().join("demo/publish.sh")).env("REGISTRY", self.registry()),
            Duration::from_secs(300),
        );
    }

    /// Pushes another OCI archive to the node's registry as `NAME:TAG`; returns the reference
    /// Pods use.
    pub fn push_archive(&self, archive: &Path, name_and_tag: &str) -> String {
        let reference = format!("{}/{name_and_tag}", self.registry());
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci-archive:{}", archive.display()))
                .arg(format!("docker://{reference}")),
            Duration::from_secs(120),
        );
        reference
    }

    /// A forwarder from a free port on this machine's loopback to `target` (host:port) inside
    /// the node's network: a ClusterIP, a Pod IP, the node IP.
    pub fn forward(&self, target: &str) -> Forward {
        Forward::start(&["forward.py", &self.env["NODE_NETNS"], "127.0.0.1:0", target])
            .with_address(|port| format!("127.0.0.1:{port}"))
    }

    /// A forwarder from a free port on the node IP to `127.0.0.1:local_port` on this machine:
    /// how a Pod reaches a server a test runs (the address is [`Forward::address`]).
    pub fn expose(&self, local_port: u16) -> Forward {
        let listen = format!("{}:0", self.node_ip());
        let target = format!("127.0.0.1:{local_port}");
        let node_ip = self.node_ip().to_owned();
        Forward::start(&[
            "forward.py",
            "--reverse",
            &self.env["NODE_NETNS"],
            &listen,
            &target,
        ])
        .with_address(|port| format!("{node_ip}:{port}"))
    }

    /// A Service's ClusterIP.
    pub fn cluster_ip(&self, namespace: &str, service: &str) -> String {
        self.kubectl(&[
            "-n",
            namespace,
            "get",
            "service",
            service,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
    }

    /// `kubectl exec` of a command in a Pod's first container; its output and whether it
    /// succeeded.
    pub fn exec(&self, namespace: &str, pod: &str, command: &[&str]) -> Output {
        let mut args = vec!["-n", namespace, "exec", pod, "--"];
        args.extend_from_slice(command);
        run_bounded(self.command("kubectl").args(&args), Duration::from_secs(60))
    }

    /// `kubectl logs` of a Pod (through the API server and the kubelet).
    pub fn logs(&self, pod: &Pod) -> String {
        self.kubectl(&[
            "-n",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            "logs",
            pod.metadata.name.as_deref().unwrap_or_default(),
        ])
    }

    fn ctr(&self) -> Command {
        let mut command = Command::new(tool("ctr"));
        command.args(["-a", &self.env["CONTAINERD_ADDRESS"], "-n", "k8s.io"]);
        command
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
        for name in [
            "kubelet.log",
            "containerd.log",
            "kube-scheduler.log",
            "kube-proxy.log",
            "coredns.log",
        ] {
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

impl NodeCluster {
    /// Brings the cluster down now; the returned turn keeps other tests from starting one until
    /// it is dropped.
    pub fn down(mut self) -> MutexGuard<'static, ()> {
        self.stop();
        self.turn.take().expect("the cluster holds its turn")
    }

    fn stop(&mut self) {
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

impl Drop for NodeCluster {
    fn drop(&mut self) {
        // Brought down already by `down`.
        if self.turn.is_none() {
            return;
        }
        if std::thread::panicking() {
            self.print_logs();
        }
        self.stop();
    }
}

/// A forwarder process (tests/control-plane/forward.py), stopped when dropped.
pub struct Forward {
    child: Child,
    address: String,
}

impl Forward {
    pub fn start(args: &[&str]) -> Self {
        let script = root().join("tests/control-plane").join(args[0]);
        let mut child = Command::new("python3")
            .arg(script)
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("forward.py starts");
        // Its first line is the port it listens on, once it does.
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("forward.py prints its port");
        assert!(!line.trim().is_empty(), "forward.py {args:?} did not start");
        Self {
            child,
            address: line.trim().to_owned(),
        }
    }

    fn with_address(mut self, address: impl FnOnce(&str) -> String) -> Self {
        self.address = address(&self.address);
        self
    }

    /// host:port to connect to.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

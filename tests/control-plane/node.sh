# shellcheck shell=bash disable=SC2154  # (variables of up.sh and lib.sh)
# The node of the cluster `up.sh --node` starts (sourced by up.sh and down.sh, after lib.sh):
# kube-controller-manager, kube-scheduler, containerd (with Debian's runc) and a kubelet
# registered as the Node `flashback-node`, all on loopback, all state under $run.
#
# What stands in for pod networking: there is no CNI network and no kube-proxy. Pods run with
# `hostNetwork: true` and reach the API server through the container env
# KUBERNETES_SERVICE_HOST=127.0.0.1 / KUBERNETES_SERVICE_PORT=<port> (container env overrides
# the Service variables the kubelet injects); up.sh writes the port to node.env. The node IP
# is 127.0.0.1, which the kubelet refuses to publish ("nodeIP can't be loopback address"),
# so the Node has no address (and never one of the machine's other interfaces): probes work
# (they reach 127.0.0.1),
# but `kubectl logs/exec/port-forward` (API server -> kubelet) do not; container logs are read
# from the files under $run/pod-logs/ instead.
#
# The components authenticate with static tokens in system:masters: a throwaway test cluster,
# where least-privilege identities for the control plane itself would only add moving parts.

node_name=flashback-node
containerd_dir=$run/containerd
containerd_sock=$containerd_dir/containerd.sock
pause_image=localhost/flashback-pause:latest

node_log() { printf 'control-plane/node: %s\n' "$*" >&2; }

node_is_running() {
  is_running containerd && is_running kubelet && is_running kube-controller-manager &&
    is_running kube-scheduler
}

# Lines for the API server's token file, one identity per component; each token is also
# kept in run/<component>.token for its kubeconfig.
node_tokens() {
  local component token
  for component in kube-controller-manager kube-scheduler kubelet; do
    token=$(openssl rand -hex 24)
    printf '%s' "$token" >"$run/$component.token"
    case $component in
      kubelet) printf '%s,system:node:%s,kubelet,"system:nodes,system:masters"\n' "$token" "$node_name" ;;
      *) printf '%s,system:%s,%s,system:masters\n' "$token" "$component" "$component" ;;
    esac
  done
}

node_kubeconfig() {
  local component=$1
  cat >"$run/$component.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: $server
    certificate-authority: $certs/ca.crt
users:
- name: $component
  user:
    token: $(cat "$run/$component.token")
contexts:
- name: control-plane
  context: {cluster: control-plane, user: $component}
current-context: control-plane
EOF
  chmod 600 "$run/$component.kubeconfig"
}

node_fail() {
  node_log "$1; last lines of the logs follow"
  tail -n 30 "$run"/*.log >&2 || true
  "$here/down.sh" --node >/dev/null
  exit 1
}

# Waits (bounded by $deadline from up.sh) until a command succeeds, failing when the named
# process exits first. (Liveness of its pid, not is_running: just after the start the pid may
# still be the shell that is about to exec the binary.)
node_wait() {
  local what=$1 process=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    kill -0 "$(cat "$run/$process.pid")" 2>/dev/null || node_fail "$process exited"
    [ "$(date +%s)" -lt "$deadline" ] || node_fail "$what did not happen in time"
    sleep 0.2
  done
}

start_containerd() {
  mkdir -p "$containerd_dir"
  cat >"$containerd_dir/config.toml" <<EOF
version = 3
root = "$containerd_dir/root"
state = "$containerd_dir/state"
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "$containerd_sock"

[ttrpc]
  address = "$containerd_sock.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "native"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$pause_image"

[plugins."io.containerd.cri.v1.runtime"]
  # This VM refuses a negative oom_score_adj; without this every sandbox fails to start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.transfer.v1.local"]
  [[plugins."io.containerd.transfer.v1.local".unpack_config]]
    platform = "linux/amd64"
    snapshotter = "native"
EOF
  # containerd finds its shim on PATH.
  PATH="$bin:$PATH" setsid "$bin/containerd" --config "$containerd_dir/config.toml" \
    </dev/null >"$run/containerd.log" 2>&1 &
  echo $! >"$run/containerd.pid"
  node_wait "containerd answering on $containerd_sock" containerd \
    "$bin/ctr" -a "$containerd_sock" version
  "$bin/ctr" -a "$containerd_sock" -n k8s.io images import --snapshotter native \
    "$bin/pause-image.tar" >>"$run/ctr.log" 2>&1 || node_fail "the pause image did not import"
}

start_control_plane_components() {
  local port
  node_kubeconfig kube-controller-manager
  node_kubeconfig kube-scheduler
  port=$(free_port)
  setsid "$bin/kube-controller-manager" \
    --kubeconfig="$run/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$run/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$run/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$port" \
    --cert-dir="$run/kube-controller-manager-certs" \
    --service-account-private-key-file="$certs/service-account.key" \
    --root-ca-file="$certs/ca.crt" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --leader-elect=false \
    --v=0 \
    </dev/null >"$run/kube-controller-manager.log" 2>&1 &
  echo $! >"$run/kube-controller-manager.pid"
  port=$(free_port)
  setsid "$bin/kube-scheduler" \
    --kubeconfig="$run/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$run/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$run/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 \
    --secure-port="$port" \
    --cert-dir="$run/kube-scheduler-certs" \
    --leader-elect=false \
    --v=0 \
    </dev/null >"$run/kube-scheduler.log" 2>&1 &
  echo $! >"$run/kube-scheduler.pid"
}

start_kubelet() {
  local healthz_port
  healthz_port=$(free_port)
  node_kubeconfig kubelet
  mkdir -p "$run/kubelet" "$run/pod-logs"
  cat >"$run/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$containerd_sock
address: 127.0.0.1
port: $(free_port)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
podLogsDir: $run/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
# A test node on a shared disk: never evict for disk use.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
serializeImagePulls: false
EOF
  # One kubelet per machine (kubelets would share the kubepods cgroups): the kubelet holds a
  # machine-wide lock for as long as it runs, and a second one refuses to start.
  setsid bash -c 'exec 9>>"$0" && flock -n 9 ||
    { echo "another cluster with a node runs on this machine (make node-down in its clone)"; exit 75; }
    exec "$@"' /run/flashback-operator-node.lock \
    "$bin/kubelet" \
    --config="$run/kubelet-config.yaml" \
    --kubeconfig="$run/kubelet.kubeconfig" \
    --root-dir="$run/kubelet" \
    --hostname-override="$node_name" \
    --node-ip=127.0.0.1 \
    --v=0 \
    </dev/null >"$run/kubelet.log" 2>&1 &
  echo $! >"$run/kubelet.pid"
  node_wait "the kubelet healthz" kubelet curl -fsS "http://127.0.0.1:$healthz_port/healthz"
}

node_ready() {
  [ "$("$bin/kubectl" --kubeconfig "$kubeconfig" get node "$node_name" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] &&
    [ -z "$("$bin/kubectl" --kubeconfig "$kubeconfig" get node "$node_name" \
      -o jsonpath='{.spec.taints}' 2>/dev/null)" ]
}

start_node() {
  # up.sh wrote the kubeconfig with umask 077; containerd and runc must not inherit it (the
  # mount points runc creates in an image would be 0700, unreadable for a non-root Pod).
  umask 022
  deadline=$(($(date +%s) + ${NODE_START_TIMEOUT:-120}))
  [ -x /usr/sbin/runc ] || node_fail "runc is missing (build.sh containerd installs it)"
  start_containerd
  start_control_plane_components
  start_kubelet
  node_wait "the Node $node_name becoming Ready and untainted" kubelet node_ready
  node_wait "the default ServiceAccount" kube-controller-manager \
    "$bin/kubectl" --kubeconfig "$kubeconfig" -n default get serviceaccount default
  printf 'KUBERNETES_SERVICE_HOST=127.0.0.1\nKUBERNETES_SERVICE_PORT=%s\nCONTAINERD_ADDRESS=%s\nPOD_LOGS=%s\n' \
    "$apiserver_port" "$containerd_sock" "$run/pod-logs" >"$base/node.env"
}

# Kills every Pod container through containerd, then stops the node's processes by pid and
# unmounts what the kubelet and containerd mounted under $run.
stop_node() {
  stop kubelet
  if is_running containerd; then
    local ctr=("$bin/ctr" -a "$containerd_sock" -n k8s.io) task
    # Every Pod's containers (the pause sandboxes too); CRI deletes a task once it exits.
    for task in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
      "${ctr[@]}" tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
      echo "control-plane/down: killed container ${task:0:12}"
    done
    for _ in $(seq 1 50); do
      [ -z "$("${ctr[@]}" tasks ls -q 2>/dev/null)" ] && break
      sleep 0.1
    done
  fi
  stop containerd
  # A shim whose task is gone exits by itself; one left behind is stopped by its pid, found
  # as a containerd-shim-runc-v2 process serving our containerd's socket.
  local proc
  for proc in /proc/[0-9]*; do
    if [ "$(basename "$(readlink "$proc/exe" 2>/dev/null)")" = containerd-shim-runc-v2 ] &&
      tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -qF -- "-address $containerd_sock"; then
      kill -KILL "${proc#/proc/}" 2>/dev/null || true
      echo "control-plane/down: stopped containerd-shim-runc-v2 (pid ${proc#/proc/})"
    fi
  done
  stop kube-scheduler
  stop kube-controller-manager
  local mount
  awk -v run="$run/" 'index($2, run) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  rm -f "$base/node.env"
}

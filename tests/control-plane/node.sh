# shellcheck shell=bash disable=SC2154  # (variables of up.sh and lib.sh)
# The node of the cluster `up.sh --node` starts (sourced by up.sh and down.sh, after lib.sh):
# kube-controller-manager, kube-scheduler, containerd (with Debian's runc), a kubelet
# registered as the Node `flashback-node`, kube-proxy, CoreDNS and a local OCI registry, all
# inside the network namespace $netns (lib.sh), all state under $run.
#
# The network, as on any small cluster:
#   - the namespace's bridge node0 holds the node IP ($node_ip); the API server listens there,
#     the kubelet too (so the API server reaches it: kubectl logs, exec, port-forward);
#   - Pods get addresses in 10.244.0.0/24 on the CNI bridge cni0 (the reference plugins
#     bridge, host-local, loopback, portmap);
#   - Services get ClusterIPs in 10.0.0.0/24, which kube-proxy (nftables mode) translates;
#     `kubernetes` is 10.0.0.1, the cluster DNS `kube-dns` 10.0.0.10;
#   - kube-router's network policy controller enforces NetworkPolicies (iptables, ipsets);
#   - CoreDNS runs as a node process on the node IP, behind the kube-dns Service (an
#     EndpointSlice this script writes), serving cluster.local;
#   - the registry listens on the namespace's own loopback, where containerd pulls from it;
#   - forward.py carries the API server's and the registry's ports to this machine's loopback
#     (the same port numbers), so the kubeconfig and image names work outside the namespace.
# Nothing in the namespace reaches outside it: no image is ever pulled from elsewhere.
#
# The components authenticate with static tokens in system:masters: a throwaway test cluster,
# where least-privilege identities for the control plane itself would only add moving parts.

node_name=flashback-node
containerd_dir=$run/containerd
containerd_sock=$containerd_dir/containerd.sock
pause_image=localhost/flashback-pause:latest
pod_cidr=10.244.0.0/24
dns_ip=10.0.0.10

node_log() { printf 'control-plane/node: %s\n' "$*" >&2; }

node_is_running() {
  is_running containerd && is_running kubelet && is_running kube-controller-manager &&
    is_running kube-scheduler && is_running kube-proxy && is_running coredns &&
    is_running kube-router &&
    is_running registry && is_running api-forward forward.py &&
    is_running registry-forward forward.py
}

# The namespace, the node IP on a bridge, a default route (so that node processes reach
# ClusterIPs, which kube-proxy translates before the packet leaves), forwarding and bridge
# netfilter (Pod to Service to Pod on one bridge).
node_network_up() {
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  ip -n "$netns" link add node0 type bridge
  ip -n "$netns" addr add "$node_ip/24" dev node0
  ip -n "$netns" link set node0 up
  ip -n "$netns" route add default dev node0
  "${in_node[@]}" sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

# Removes the namespace (with every bridge, veth and nftables rule in it).
node_network_down() {
  if ip netns list | grep -qw "^$netns"; then
    ip netns delete "$netns"
    echo "control-plane/down: removed the network namespace $netns"
  fi
}

# Starts forward.py as run/NAME.pid: this machine's 127.0.0.1:PORT to TARGET in the node's
# network namespace.
node_forward() {
  local name=$1 port=$2 target=$3
  setsid python3 "$here/forward.py" "$netns" "127.0.0.1:$port" "$target" \
    </dev/null >"$run/$name.out" 2>"$run/$name.log" &
  echo $! >"$run/$name.pid"
}

node_kubelet_client_cert() {
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$certs/kubelet-client.key" -out "$certs/kubelet-client.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$certs/kubelet-client.ext"
  openssl x509 -req -in "$certs/kubelet-client.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
    -CAcreateserial -days 2 -extfile "$certs/kubelet-client.ext" -out "$certs/kubelet-client.crt" 2>/dev/null
}

# Lines for the API server's token file, one identity per component; each token is also
# kept in run/<component>.token for its kubeconfig.
node_tokens() {
  local component token
  for component in kube-controller-manager kube-scheduler kubelet kube-proxy coredns kube-router; do
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
    server: $internal_server
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
  # Pulls from the local registry over plain HTTP (certs.d/<host>/hosts.toml).
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$containerd_dir/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  # This VM refuses a negative oom_score_adj; without this every sandbox fails to start.
  restrict_oom_score_adj = true
  # Pods' network namespaces are mounted under the state directory, which down.sh unmounts.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$bin/cni"]
    conf_dir = "$run/cni/net.d"
    max_conf_num = 1
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
  mkdir -p "$containerd_dir/certs.d/127.0.0.1:$registry_port"
  cat >"$containerd_dir/certs.d/127.0.0.1:$registry_port/hosts.toml" <<EOF
server = "http://127.0.0.1:$registry_port"

[host."http://127.0.0.1:$registry_port"]
  capabilities = ["pull", "resolve"]
EOF
  # The pods' network: one bridge, addresses from host-local, hairpin for a Pod reaching
  # itself through its Service.
  mkdir -p "$run/cni/net.d"
  cat >"$run/cni/net.d/10-flashback-pods.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "flashback-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$run/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # containerd finds its shim on PATH.
  PATH="$bin:$PATH" setsid "${in_node[@]}" "$bin/containerd" --config "$containerd_dir/config.toml" \
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
  setsid "${in_node[@]}" "$bin/kube-controller-manager" \
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
  setsid "${in_node[@]}" "$bin/kube-scheduler" \
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
# On the node IP, where the API server reaches it with its client certificate.
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
podLogsDir: $run/pod-logs
clusterDNS: [$dns_ip]
clusterDomain: cluster.local
resolvConf: $run/resolv.conf
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $certs/ca.crt}
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
    "${in_node[@]}" "$bin/kubelet" \
    --config="$run/kubelet-config.yaml" \
    --kubeconfig="$run/kubelet.kubeconfig" \
    --root-dir="$run/kubelet" \
    --hostname-override="$node_name" \
    --node-ip="$node_ip" \
    --v=0 \
    </dev/null >"$run/kubelet.log" 2>&1 &
  echo $! >"$run/kubelet.pid"
  node_wait "the kubelet healthz" kubelet "${in_node[@]}" curl -fsS "http://127.0.0.1:$healthz_port/healthz"
}

# The local OCI registry, on the namespace's loopback (where containerd pulls from it) and
# forwarded to this machine's loopback at the same port (where `make image` and helm push).
start_registry() {
  mkdir -p "$run/registry"
  cat >"$run/registry.yaml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $run/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$registry_port
  debug:
    addr: ""
EOF
  OTEL_TRACES_EXPORTER=none setsid "${in_node[@]}" "$bin/registry" serve "$run/registry.yaml" \
    </dev/null >"$run/registry.log" 2>&1 &
  echo $! >"$run/registry.pid"
  node_forward registry-forward "$registry_port" "127.0.0.1:$registry_port"
  node_wait "the registry answering" registry curl -fsS "http://127.0.0.1:$registry_port/v2/"
}

# kube-proxy in nftables mode (this kernel has no IPVS); conntrack sysctls left alone (the
# namespace cannot write nf_conntrack_max).
start_kube_proxy() {
  node_kubeconfig kube-proxy
  cat >"$run/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: $run/kube-proxy.kubeconfig
hostnameOverride: $node_name
clusterCIDR: $pod_cidr
bindAddress: $node_ip
metricsBindAddress: 127.0.0.1:$(free_port)
healthzBindAddress: 127.0.0.1:$(free_port)
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  setsid "${in_node[@]}" "$bin/kube-proxy" --config="$run/kube-proxy.yaml" --v=0 \
    </dev/null >"$run/kube-proxy.log" 2>&1 &
  echo $! >"$run/kube-proxy.pid"
}

# CoreDNS on the node IP, serving cluster.local from the API server; the kube-dns Service at
# $dns_ip (the kubelet's clusterDNS) points at it through an EndpointSlice. Names outside the
# cluster are refused: nothing here reaches another DNS server.
start_coredns() {
  node_kubeconfig coredns
  local health_port ready_port
  health_port=$(free_port)
  ready_port=$(free_port)
  cat >"$run/Corefile" <<EOF
.:53 {
    bind $node_ip
    errors
    health 127.0.0.1:$health_port
    ready 127.0.0.1:$ready_port
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $run/coredns.kubeconfig control-plane
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loadbalance
}
EOF
  printf 'nameserver %s\n' "$dns_ip" >"$run/resolv.conf"
  setsid "${in_node[@]}" "$bin/coredns" -conf "$run/Corefile" \
    </dev/null >"$run/coredns.log" 2>&1 &
  echo $! >"$run/coredns.pid"
  "$bin/kubectl" --kubeconfig "$kubeconfig" apply -f - >/dev/null <<EOF || node_fail "the kube-dns Service was refused"
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $dns_ip
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels:
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: flashback-operator.local-node-sh
addressType: IPv4
endpoints:
- addresses: ["$node_ip"]
  conditions: {ready: true}
  nodeName: $node_name
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF
  node_wait "CoreDNS ready" coredns "${in_node[@]}" curl -fsS "http://127.0.0.1:$ready_port/ready"
}

# NetworkPolicies enforced by kube-router's network policy controller alone (no routing, no
# service proxy: the CNI bridge and kube-proxy do those), with iptables and ipsets in the
# node's namespace; its health and metrics listeners are off.
start_kube_router() {
  node_kubeconfig kube-router
  setsid "${in_node[@]}" "$bin/kube-router" --kubeconfig="$run/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --hostname-override="$node_name" --service-cluster-ip-range=10.0.0.0/24 \
    --health-port=0 --metrics-port=0 --v=0 \
    </dev/null >"$run/kube-router.log" 2>&1 &
  echo $! >"$run/kube-router.pid"
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
  registry_port=$(free_port)
  start_registry
  start_containerd
  start_control_plane_components
  start_kubelet
  start_kube_proxy
  start_kube_router
  start_coredns
  node_wait "the Node $node_name becoming Ready and untainted" kubelet node_ready
  node_wait "the default ServiceAccount" kube-controller-manager \
    "$bin/kubectl" --kubeconfig "$kubeconfig" -n default get serviceaccount default
  cat >"$base/node.env" <<EOF
NODE_NETNS=$netns
NODE_IP=$node_ip
API_SERVER_PORT=$apiserver_port
REGISTRY=127.0.0.1:$registry_port
CONTAINERD_ADDRESS=$containerd_sock
POD_LOGS=$run/pod-logs
EOF
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
  stop kube-proxy
  stop kube-router
  stop coredns
  stop registry
  stop registry-forward forward.py
  stop kube-scheduler
  stop kube-controller-manager
  local mount
  awk -v run="$run/" 'index($2, run) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  rm -f "$base/node.env"
}

# After the API server and etcd (down.sh): the API server's forwarder, then the namespace.
stop_node_network() {
  stop api-forward forward.py
  node_network_down
}

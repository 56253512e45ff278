#!/usr/bin/env bash
# Starts a real etcd and kube-apiserver on free loopback ports, the way envtest does, and
# kube-controller-manager running only the garbage collector (which every cluster has: it
# finishes a foreground deletion, as Argo CD's prune asks for, and deletes what an owner
# reference ties to a deleted owner): state under target/control-plane/run/, an admin
# kubeconfig at target/control-plane/kubeconfig.
# Idempotent: when the control plane is already up it only prints the export line.
#
# `up.sh --node` starts a second, separate cluster under target/control-plane/node/, inside a
# network namespace of its own, that also runs kube-controller-manager, kube-scheduler,
# containerd, a kubelet registered as the Node `flashback-node`, a pod network (CNI bridge),
# kube-proxy, CoreDNS and a local OCI registry (see node.sh), so Deployments run as real Pods
# behind real Services. Its API server and registry are forwarded to this machine's loopback.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

log() { printf 'control-plane/up: %s\n' "$*" >&2; }


# shellcheck source=node.sh
. "$here/node.sh"

if is_running etcd && is_running kube-apiserver && [ -f "$kubeconfig" ] &&
  { [ -n "$node_mode" ] || is_running kube-controller-manager; } &&
  { [ -z "$node_mode" ] || node_is_running; }; then
  echo "export KUBECONFIG=$kubeconfig"
  exit 0
fi

"$here/build.sh" kubernetes
"$here/build.sh" etcd
"$here/build.sh" node
if [ -n "$node_mode" ]; then
  "$here/build.sh" containerd
  "$here/build.sh" pause
  "$here/build.sh" kube_proxy
  "$here/build.sh" cni
  "$here/build.sh" coredns
  "$here/build.sh" registry
  "$here/build.sh" kube_router
  "$here/build.sh" netprobe
  "$here/down.sh" --node >/dev/null
else
  "$here/down.sh" >/dev/null
fi
rm -rf "$run" && mkdir -p "$run/certs"
started=$(date +%s.%N)
[ -z "$node_mode" ] || node_network_up

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# TLS: a throwaway CA and a serving certificate for 127.0.0.1 and localhost, so clients
# verify the server rather than skipping verification.
certs=$run/certs
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=flashback-operator-test-ca" \
  -keyout "$certs/ca.key" -out "$certs/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$certs/serving.key" -out "$certs/serving.csr" 2>/dev/null
sans=IP:127.0.0.1,DNS:localhost
# In the node's network the API server is also the node IP and the `kubernetes` Service.
[ -z "$node_mode" ] ||
  sans+=,IP:$node_ip,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" >"$certs/serving.ext"
openssl x509 -req -in "$certs/serving.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
  -CAcreateserial -days 2 -extfile "$certs/serving.ext" -out "$certs/serving.crt" 2>/dev/null
# The API server's client certificate for the kubelet (kubectl logs, exec, port-forward).
[ -z "$node_mode" ] || node_kubelet_client_cert
openssl genrsa -out "$certs/service-account.key" 2048 2>/dev/null
openssl rsa -in "$certs/service-account.key" -pubout -out "$certs/service-account.pub" 2>/dev/null

token=$(openssl rand -hex 24)
printf '%s,admin,admin,system:masters\n' "$token" >"$run/tokens.csv"
# The node's components get tokens of their own (see node.sh for their identities).
[ -z "$node_mode" ] || node_tokens >>"$run/tokens.csv"
chmod 600 "$run/tokens.csv"

etcd_client_port=$(free_port)
etcd_peer_port=$(free_port)
apiserver_port=$(free_port)

# etcd's space quota is 8 GiB, the largest etcd recommends, as large clusters set it (2 GiB by
# default): `BENCH_OBJECTS=100000 make bench` keeps 200,000 objects and their history.
setsid "${in_node[@]}" "$bin/etcd" \
  --name=control-plane \
  --data-dir="$run/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_client_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_client_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="control-plane=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync \
  --quota-backend-bytes="${ETCD_QUOTA_BACKEND_BYTES:-8589934592}" \
  --log-level=warn \
  </dev/null >"$run/etcd.log" 2>&1 &
echo $! >"$run/etcd.pid"

# Without a controller-manager no ServiceAccount exists to admit Pods with; the cluster with
# a node runs one, and Pods there get their ServiceAccount token mounted as in any cluster.
if [ -n "$node_mode" ]; then admission=(--enable-admission-plugins=ServiceAccount); else admission=(--disable-admission-plugins=ServiceAccount); fi
# In the node's network the API server listens on the node IP, which the `kubernetes` Service
# points at, and reaches the kubelet there.
listen=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1)
[ -z "$node_mode" ] || listen=(--bind-address="$node_ip" --advertise-address="$node_ip"
  --kubelet-client-certificate="$certs/kubelet-client.crt" --kubelet-client-key="$certs/kubelet-client.key"
  --kubelet-preferred-address-types=InternalIP)

setsid "${in_node[@]}" "$bin/kube-apiserver" \
  "${listen[@]}" \
  --secure-port="$apiserver_port" \
  --etcd-servers="http://127.0.0.1:$etcd_client_port" \
  --cert-dir="$certs" \
  --tls-cert-file="$certs/serving.crt" \
  --tls-private-key-file="$certs/serving.key" \
  --client-ca-file="$certs/ca.crt" \
  --authorization-mode=RBAC \
  --token-auth-file="$run/tokens.csv" \
  --service-account-key-file="$certs/service-account.pub" \
  --service-account-signing-key-file="$certs/service-account.key" \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-cluster-ip-range=10.0.0.0/24 \
  "${admission[@]}" \
  --allow-privileged=true \
  --v=0 \
  </dev/null >"$run/kube-apiserver.log" 2>&1 &
echo $! >"$run/kube-apiserver.pid"

server=https://127.0.0.1:$apiserver_port
# The node's components reach the API server inside its network; people and tests outside
# it through a forwarder on this machine's loopback, at the same port.
internal_server=$server
if [ -n "$node_mode" ]; then
  internal_server=https://$node_ip:$apiserver_port
  node_forward api-forward "$apiserver_port" "$node_ip:$apiserver_port"
fi
fail() {
  log "$1; last lines of the logs follow"
  tail -n 20 "$run"/*.log >&2 || true
  "$here/down.sh" ${node_mode:+--node} >/dev/null
  exit 1
}

deadline=$(($(date +%s) + ${CONTROL_PLANE_START_TIMEOUT:-90}))
until curl -fsS --cacert "$certs/ca.crt" -H "Authorization: Bearer $token" "$server/readyz" >/dev/null 2>&1; do
  is_running etcd || fail "etcd exited"
  is_running kube-apiserver || fail "kube-apiserver exited"
  [ -z "$node_mode" ] || kill -0 "$(cat "$run/api-forward.pid")" 2>/dev/null || fail "the API server's forwarder exited"
  [ "$(date +%s)" -lt "$deadline" ] || fail "kube-apiserver not ready at $server/readyz in time"
  sleep 0.2
done

umask 077
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$certs/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: control-plane
  context:
    cluster: control-plane
    user: admin
    namespace: default
current-context: control-plane
EOF

until "$bin/kubectl" --kubeconfig "$kubeconfig" get namespace default >/dev/null 2>&1; do
  [ "$(date +%s)" -lt "$deadline" ] || fail "the default namespace did not appear in time"
  sleep 0.2
done

if [ -n "$node_mode" ]; then
  start_node
else
  # The garbage collector alone: no other controller runs on this control plane.
  setsid "$bin/kube-controller-manager" \
    --kubeconfig="$kubeconfig" \
    --controllers=garbagecollector \
    --secure-port=0 \
    --leader-elect=false \
    --v=0 \
    </dev/null >"$run/kube-controller-manager.log" 2>&1 &
  echo $! >"$run/kube-controller-manager.pid"
  # Ready once it watches every resource (it says so in its log; it serves no health port).
  until grep -q "all resource monitors have synced" "$run/kube-controller-manager.log"; do
    is_running kube-controller-manager || fail "kube-controller-manager exited"
    [ "$(date +%s)" -lt "$deadline" ] || fail "the garbage collector did not sync in time"
    sleep 0.2
  done
fi

log "ready at $server in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
echo "export KUBECONFIG=$kubeconfig"

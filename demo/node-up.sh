#!/usr/bin/env bash
# `make demo`: the operator as users run it. The image (`make image`), the local cluster with a
# real node (tests/control-plane/up.sh --node), the emulator and the operator installed by Helm
# (demo/emulator-chart, a Pod from the same image; charts/flashback-operator), and the example
# repositories, watched until they are Ready. `make demo-down` undoes it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=image.env
. demo/image.env
state=target/demo-node
bin=target/control-plane/bin
node=target/control-plane/node
namespace=flashback-demo
release_namespace=flashback-system
token=demo-token
mkdir -p "$state"

say() { printf '\n==> %s\n' "$*"; }
kubectl() { "$bin/kubectl" --kubeconfig "$node/kubeconfig" "$@"; }
helm() { "$bin/helm" --kubeconfig "$node/kubeconfig" "$@"; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

if [ -z "${DEMO_SKIP_IMAGE:-}" ]; then
  say "Building the image"
  demo/image.sh build
fi
archive=target/image/$IMAGE_ARCHIVE
[ -f "$archive" ] || { echo "$archive is missing: run make image" >&2; exit 1; }

say "Starting the local cluster with a node (etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet)"
tests/control-plane/up.sh --node >/dev/null
# shellcheck disable=SC1091
. "$node/node.env"
say "Importing $IMAGE_NAME:$IMAGE_TAG into the node's containerd"
"$bin/ctr" -a "$CONTAINERD_ADDRESS" -n k8s.io images import --snapshotter native "$archive" >"$state/ctr.log" 2>&1 ||
  { cat "$state/ctr.log" >&2; exit 1; }
kubectl get nodes -o wide

say "Installing the Flashback emulator with Helm (demo/emulator-chart: a Pod from the same image)"
emulator_port=$(helm -n flashback-emulator get values flashback-emulator -o json 2>/dev/null | jq -r '.port // empty' || true)
[ -n "$emulator_port" ] || emulator_port=$(free_port)
helm upgrade --install flashback-emulator demo/emulator-chart --namespace flashback-emulator \
  --create-namespace --set image="$IMAGE_NAME:$IMAGE_TAG" --set port="$emulator_port" \
  --set tokens="$token" --wait --timeout 120s >/dev/null
api_url=http://127.0.0.1:$emulator_port


say "Installing the operator with Helm (charts/flashback-operator)"
metrics_port=$(kubectl -n "$release_namespace" get deployment flashback-operator \
  -o jsonpath='{.spec.template.spec.containers[0].ports[0].containerPort}' 2>/dev/null || true)
[ -n "$metrics_port" ] || metrics_port=$(free_port)
cat >"$state/values.yaml" <<EOT
# The local node has no pod network: the operator uses the node's network, listens on
# loopback, and reaches the API server through in-cluster config pointed at it.
hostNetwork: true
metrics:
  bindAddress: 127.0.0.1
  port: $metrics_port
image:
  pullPolicy: Never
apiUrl: $api_url
resyncInterval: 30s
logFormat: text
extraEnv:
  - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
  - {name: KUBERNETES_SERVICE_PORT, value: "$KUBERNETES_SERVICE_PORT"}
EOT
started=$(date +%s.%N)
helm upgrade --install flashback-operator charts/flashback-operator \
  --namespace "$release_namespace" --create-namespace -f "$state/values.yaml" --wait --timeout 180s
echo "helm install to Ready in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
kubectl -n "$release_namespace" get pods -o wide

say "Applying the token Secret, the example buckets, repositories and access key"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$namespace" create secret generic flashback-token \
  --from-literal=token="$token" --dry-run=client -o yaml | kubectl apply -f -
for example in examples/cloud-credentials.yaml examples/buckets.yaml \
  examples/mirror-repository.yaml examples/backup-repository.yaml examples/access-key.yaml; do
  kubectl -n "$namespace" apply -f "$example"
done

say "Waiting for them to become Ready"
kubectl -n "$namespace" wait --for=condition=Ready fbbucket --all --timeout=120s
kubectl -n "$namespace" wait --for=condition=Ready fbrepo --all --timeout=120s
kubectl -n "$namespace" wait --for=condition=Ready fbkey --all --timeout=120s
kubectl -n "$namespace" get fbbucket,fbrepo,fbkey
pod=$(kubectl -n "$release_namespace" get pods -l app.kubernetes.io/name=flashback-operator \
  -o jsonpath='{.items[0].metadata.name}')

cat <<EOT

The demo is running: the operator is the Pod $release_namespace/$pod on the Node flashback-node.
Try:
  export KUBECONFIG=$root/$node/kubeconfig PATH=$root/$bin:\$PATH
  kubectl -n $namespace get fbrepo
  kubectl -n $namespace describe fbrepo media-mirror
  kubectl -n $namespace get secret media-mirror-writer -o jsonpath='{.data.AWS_ACCESS_KEY_ID}' | base64 -d
  kubectl -n $release_namespace get deploy,pods,lease
  helm list -A
  helm -n $release_namespace get values flashback-operator
  curl -s -H 'Authorization: Bearer $token' '$api_url/repo?workspaceId=ws-demo' | jq
  curl -s http://127.0.0.1:$metrics_port/metrics | grep '^flashback_operator_'
The operator's log (kubectl logs cannot reach this Node, which has no address):
  cat $POD_LOGS/${release_namespace}_${pod}_*/operator/*.log
Stop everything with: make demo-down
EOT

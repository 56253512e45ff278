#!/usr/bin/env bash
# `make demo`: the local control plane, the Flashback emulator with two buckets, the operator,
# and the example repositories, watched until they are Ready. `make demo-down` undoes it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
state=target/demo
bin=target/control-plane/bin
namespace=flashback-demo
token=demo-token
mkdir -p "$state"

say() { printf '\n==> %s\n' "$*"; }
kubectl() { "$bin/kubectl" --kubeconfig target/control-plane/kubeconfig "$@"; }

# `make test` has built both binaries already and says so with DEMO_SKIP_BUILD=1.
if [ -z "${DEMO_SKIP_BUILD:-}" ]; then
  say "Building the operator and the emulator"
  cargo build --locked --workspace --bins
fi
for binary in flashback-operator flashback-emulator; do
  [ -x "target/debug/$binary" ] || { echo "target/debug/$binary is missing: run cargo build --workspace --bins" >&2; exit 1; }
done

say "Starting the local control plane (kube-apiserver + etcd)"
tests/control-plane/up.sh >/dev/null

if ! kill -0 "$(cat "$state/emulator.pid" 2>/dev/null)" 2>/dev/null; then
  say "Starting the Flashback emulator"
  rm -f "$state/emulator.out"
  setsid target/debug/flashback-emulator --listen 127.0.0.1:0 --token "$token" </dev/null >"$state/emulator.out" 2>"$state/emulator.log" &
  echo $! >"$state/emulator.pid"
  for _ in $(seq 1 100); do
    grep -q '^listening on ' "$state/emulator.out" 2>/dev/null && break
    sleep 0.1
  done
fi
api_url=$(sed -n 's/^listening on //p' "$state/emulator.out" | head -n 1)
[ -n "$api_url" ] || { echo "the emulator did not start; see $state/emulator.log" >&2; exit 1; }
echo "emulator at $api_url"


say "Installing the CRDs and the token Secret"
kubectl apply -f crds/
kubectl wait --for=condition=Established crd/flashbackrepositories.flashback.tech crd/flashbackaccesskeys.flashback.tech crd/flashbackbuckets.flashback.tech --timeout=60s
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$namespace" create secret generic flashback-token \
  --from-literal=token="$token" --dry-run=client -o yaml | kubectl apply -f -

if ! kill -0 "$(cat "$state/operator.pid" 2>/dev/null)" 2>/dev/null; then
  say "Starting the operator (log: $state/operator.log)"
  # The emulator is the operator's API URL (a Secret's own apiUrl would need --allowed-api-hosts).
  KUBECONFIG=$root/target/control-plane/kubeconfig setsid target/debug/flashback-operator run \
    --api-url "$api_url" --resync-interval 30s --metrics-address 127.0.0.1:0 \
    </dev/null >"$state/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"
fi

say "Applying the example buckets, repositories and access key"
for example in examples/cloud-credentials.yaml examples/buckets.yaml \
  examples/mirror-repository.yaml examples/backup-repository.yaml examples/access-key.yaml; do
  kubectl -n "$namespace" apply -f "$example"
done

say "Waiting for them to become Ready"
kubectl -n "$namespace" wait --for=condition=Ready fbbucket --all --timeout=60s
kubectl -n "$namespace" wait --for=condition=Ready fbrepo --all --timeout=60s
kubectl -n "$namespace" wait --for=condition=Ready fbkey --all --timeout=60s
kubectl -n "$namespace" get fbbucket,fbrepo,fbkey
metrics=$(sed -n 's/.*serving \/metrics.*address=\([0-9.:]*\).*/\1/p' "$state/operator.log" | tail -n 1)

cat <<EOT

The demo is running. Try:
  export KUBECONFIG=$root/target/control-plane/kubeconfig PATH=$root/$bin:\$PATH
  kubectl -n $namespace get fbrepo
  kubectl -n $namespace describe fbrepo media-mirror
  kubectl -n $namespace get secret media-mirror-writer -o jsonpath='{.data.AWS_ACCESS_KEY_ID}' | base64 -d
  curl -s -H 'Authorization: Bearer $token' '$api_url/repo?workspaceId=ws-demo' | jq
  curl -s http://$metrics/metrics | grep '^flashback_operator_'
Stop everything with: make demo-dev-down
EOT

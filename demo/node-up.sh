#!/usr/bin/env bash
# `make demo`: the operator as users run it. The image (`make image`), the local cluster with a
# real node and a pod network (tests/control-plane/up.sh --node), the image and the chart
# pushed to the cluster's registry, the emulator installed by Helm as a Pod behind a Service
# (demo/emulator-chart, the same image), the operator installed by Helm from
# oci://<registry>/charts, and the example objects, watched until they are Ready. With
# GITOPS=flux, Flux installs the operator and applies the examples from a Git repository
# instead (demo/flux.sh). `make demo-down` undoes it.
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
case ${GITOPS:-} in
  '' | flux) ;;
  *) echo "make demo: GITOPS=$GITOPS is not a mode; the one there is: GITOPS=flux" >&2; exit 2 ;;
esac

say() { printf '\n==> %s\n' "$*"; }
kubectl() { "$bin/kubectl" --kubeconfig "$node/kubeconfig" "$@"; }
helm() { "$bin/helm" --kubeconfig "$node/kubeconfig" "$@"; }

if [ -z "${DEMO_SKIP_IMAGE:-}" ]; then
  say "Building the image"
  demo/image.sh build
fi

say "Starting the local cluster: etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, CNI bridge, kube-proxy, CoreDNS, registry"
tests/control-plane/up.sh --node >/dev/null
# shellcheck disable=SC1091
. "$node/node.env"
kubectl get nodes -o wide

say "Pushing the image and the chart to the cluster's registry ($REGISTRY)"
REGISTRY=$REGISTRY demo/publish.sh >/dev/null
image=$REGISTRY/flashback-operator

say "Installing the Flashback emulator with Helm (demo/emulator-chart: a Pod behind a Service)"
helm upgrade --install flashback-emulator demo/emulator-chart --namespace flashback-emulator \
  --create-namespace --set image="$image:$IMAGE_TAG" --set tokens="$token" \
  --wait --timeout 120s >/dev/null
api_url=http://flashback-emulator.flashback-emulator.svc:8090

say "The demo namespace and its token Secret"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$namespace" create secret generic flashback-token \
  --from-literal=token="$token" --dry-run=client -o yaml | kubectl apply -f -

if [ "${GITOPS:-}" = flux ]; then
  say "Flux delivering the operator and the examples from Git (demo/flux.sh)"
  DEMO_NAMESPACE=$namespace DEMO_API_URL=$api_url demo/flux.sh
else
  say "Installing the operator with Helm from oci://$REGISTRY/charts/flashback-operator"
  cat >"$state/values.yaml" <<EOT
image:
  repository: $image
apiUrl: $api_url
resyncInterval: 30s
logFormat: text
EOT
  started=$(date +%s.%N)
  helm upgrade --install flashback-operator "oci://$REGISTRY/charts/flashback-operator" \
    --version "$IMAGE_TAG" --plain-http \
    --namespace "$release_namespace" --create-namespace -f "$state/values.yaml" --wait --timeout 180s
  echo "helm install to Ready in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
  kubectl -n "$release_namespace" get pods,services -o wide

  say "Applying the example buckets, repositories and access key"
  for example in examples/cloud-credentials.yaml examples/buckets.yaml \
    examples/mirror-repository.yaml examples/backup-repository.yaml examples/access-key.yaml; do
    kubectl -n "$namespace" apply -f "$example"
  done
fi

say "Waiting for them to become Ready"
kubectl -n "$namespace" wait --for=condition=Ready fbbucket --all --timeout=120s
kubectl -n "$namespace" wait --for=condition=Ready fbrepo --all --timeout=120s
kubectl -n "$namespace" wait --for=condition=Ready fbkey --all --timeout=120s
kubectl -n "$namespace" get fbbucket,fbrepo,fbkey

say "The operator's log"
kubectl -n "$release_namespace" logs deployment/flashback-operator --tail=5

cat <<EOT

The demo is running: the operator is the Deployment $release_namespace/flashback-operator on the
Node flashback-node, from the image $image:$IMAGE_TAG in the cluster's registry.
Try:
  export KUBECONFIG=$root/$node/kubeconfig PATH=$root/$bin:\$PATH
  kubectl -n $release_namespace logs deployment/flashback-operator
  kubectl -n $namespace get fbrepo
  kubectl -n flux-system get gitrepositories,kustomizations,helmreleases   # with GITOPS=flux
  kubectl -n $namespace describe fbrepo media-mirror
  kubectl -n $namespace get secret media-mirror-writer -o jsonpath='{.data.AWS_ACCESS_KEY_ID}' | base64 -d
  kubectl -n $release_namespace get deploy,pods,svc,lease -o wide
  helm list -A
  kubectl -n $release_namespace port-forward svc/flashback-operator-metrics 8080 &
  curl -s http://127.0.0.1:8080/metrics | grep '^flashback_operator_'
  kubectl -n flashback-emulator port-forward svc/flashback-emulator 8090 &
  curl -s -H 'Authorization: Bearer $token' 'http://127.0.0.1:8090/repo?workspaceId=ws-demo' | jq
Stop everything with: make demo-down
EOT

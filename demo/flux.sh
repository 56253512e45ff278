#!/usr/bin/env bash
# `make demo GITOPS=flux` (called by node-up.sh once the cluster, the registry and the emulator
# are up): Flux delivers the operator and the examples from Git, as a platform team would.
#   - a Git repository `platform` on loopback (tests/gitops/git-http.py, Git's smart HTTP)
#     holding the operator's crds/ under flashback/crds and the examples under storage/;
#   - Flux's source-controller, kustomize-controller and helm-controller (built by
#     `make flux`), processes beside the cluster, watching the namespace flux-system;
#   - integrations/flux/operator.yaml (the CRDs by a Kustomization, the chart by a HelmRelease
#     from the cluster's registry with crds.enabled=false) and
#     integrations/flux/kustomization.yaml (the examples, waited on until Ready), each adjusted
#     by a kustomize patch in target/demo-node/flux/ for this cluster.
# Their pids are in target/demo-node/flux/; `make demo-down` stops them (demo/flux-down.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
node=target/control-plane/node
bin=target/control-plane/bin
state=target/demo-node/flux
namespace=${DEMO_NAMESPACE:-flashback-demo}
api_url=${DEMO_API_URL:?DEMO_API_URL: the URL of the emulator}
# shellcheck disable=SC1091
. "$node/node.env"
kubectl() { "$bin/kubectl" --kubeconfig "$node/kubeconfig" "$@"; }
git() { command git -c user.name="Platform Team" -c user.email=platform@example.com "$@"; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A second run replaces the first: its controllers and Git server are stopped first.
demo/flux-down.sh
rm -rf "$state" && mkdir -p "$state/repositories" "$state/storage"

echo "A Git repository with the operator's CRDs and the examples"
git init -q --bare --initial-branch main "$state/repositories/platform.git"
git clone -q "$state/repositories/platform.git" "$state/work" 2>/dev/null
mkdir -p "$state/work/flashback" "$state/work/storage"
cp -a crds "$state/work/flashback/crds"
cp examples/cloud-credentials.yaml examples/buckets.yaml examples/mirror-repository.yaml \
  examples/backup-repository.yaml examples/access-key.yaml "$state/work/storage/"
git -C "$state/work" checkout -q -B main
git -C "$state/work" add -A
git -C "$state/work" commit -q -m "the operator's CRDs and the team's storage"
git -C "$state/work" push -q origin main

setsid python3 tests/gitops/git-http.py "$state/repositories" >"$state/git.out" 2>"$state/git.log" </dev/null &
echo $! >"$state/git-http.pid"
for _ in $(seq 1 50); do
  [ -s "$state/git.out" ] && break
  sleep 0.1
done
address=$(sed -n 's/^listening on //p' "$state/git.out")
[ -n "$address" ] || { echo "the Git server did not start: $(cat "$state/git.log")" >&2; exit 1; }
git_url=http://$address/platform.git
echo "  $git_url"

echo "Flux's controllers, watching flux-system"
kubectl create namespace flux-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
storage=127.0.0.1:$(free_port)
for name in source-controller kustomize-controller helm-controller; do
  kubectl apply --server-side -f "$bin/$name-crds/" >/dev/null
  flags=(--watch-all-namespaces=false --metrics-addr=127.0.0.1:0
    --health-addr="127.0.0.1:$(free_port)" --requeue-dependency=5s)
  if [ "$name" = source-controller ]; then
    flags+=(--storage-path="$state/storage" --storage-addr="$storage" --storage-adv-addr="$storage")
  fi
  KUBECONFIG=$node/kubeconfig RUNTIME_NAMESPACE=flux-system setsid "$bin/$name" "${flags[@]}" \
    </dev/null >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
done
kubectl wait --for=condition=Established --timeout=60s \
  crd/gitrepositories.source.toolkit.fluxcd.io crd/kustomizations.kustomize.toolkit.fluxcd.io \
  crd/helmrepositories.source.toolkit.fluxcd.io crd/helmreleases.helm.toolkit.fluxcd.io >/dev/null

echo "The GitRepository, integrations/flux/operator.yaml and integrations/flux/kustomization.yaml"
mkdir -p "$state/apply"
cp integrations/flux/operator.yaml integrations/flux/kustomization.yaml "$state/apply/"
cat >"$state/apply/gitrepository.yaml" <<EOF
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: platform
  namespace: flux-system
spec:
  interval: 1m
  url: $git_url
  ref:
    branch: main
EOF
# What this cluster changes in the shipped files: the registry (plain HTTP here), the API the
# operator calls, the namespace of the examples, and that they wait for the CRDs.
cat >"$state/apply/kustomization.yaml.overlay" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - gitrepository.yaml
  - operator.yaml
  - storage.yaml
patches:
  - target: {kind: HelmRepository, name: flashback}
    patch: |
      - {op: replace, path: /spec/url, value: "oci://$REGISTRY/charts"}
      - {op: add, path: /spec/insecure, value: true}
  - target: {kind: HelmRelease, name: flashback-operator}
    patch: |
      - {op: replace, path: /spec/values/image/repository, value: "$REGISTRY/flashback-operator"}
      - {op: add, path: /spec/values/apiUrl, value: "$api_url"}
      - {op: add, path: /spec/values/logFormat, value: text}
  - target: {kind: Kustomization, name: flashback-storage}
    patch: |
      - {op: replace, path: /spec/targetNamespace, value: "$namespace"}
      - {op: add, path: /spec/dependsOn, value: [{name: flashback-crds}]}
EOF
mv "$state/apply/kustomization.yaml" "$state/apply/storage.yaml"
mv "$state/apply/kustomization.yaml.overlay" "$state/apply/kustomization.yaml"
kubectl apply -k "$state/apply"

echo "Waiting for Flux: the CRDs applied, the chart installed from oci://$REGISTRY/charts, the examples Ready"
started=$(date +%s.%N)
kubectl -n flux-system wait --for=condition=Ready --timeout=300s \
  gitrepository/platform kustomization/flashback-crds helmrelease/flashback-operator \
  kustomization/flashback-storage
echo "Flux to Ready in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
kubectl -n flux-system get gitrepositories,helmrepositories,kustomizations,helmreleases

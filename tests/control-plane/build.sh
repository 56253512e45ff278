#!/usr/bin/env bash
# Builds kube-apiserver, kubectl, etcd and helm from the Go module proxy and links them into
# target/control-plane/bin/; for the cluster with a node (`up.sh --node`) also kubelet,
# kube-controller-manager, kube-scheduler, containerd (+ shim, ctr) and the pause image. Binaries are cached by version outside the clone
# (FLASHBACK_CACHE_DIR, default ~/.cache/flashback-operator), so a fresh clone on the same
# machine builds nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=versions.env
. "$here/versions.env"

cache=${FLASHBACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flashback-operator}
mkdir -p "$cache" "$bin"

log() { printf 'control-plane/build: %s\n' "$*" >&2; }

# Runs "go build" with peak memory reported when GNU time is there.
timed_go_build() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f 'control-plane/build: %e s wall, %M KiB peak RSS' go build "$@"
  else
    go build "$@"
  fi
}

# Writes go.mod for a module that requires k8s.io/kubernetes and pins every staging module
# (listed at v0.0.0 in kubernetes' own go.mod) to its published v0.Y.Z tag.
write_kubernetes_module() {
  local dir=$1 version=$2 upstream staging_version
  upstream=$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$upstream" ] || { log "cannot download k8s.io/kubernetes@v$version"; exit 1; }
  staging_version="v0.${version#1.}"
  {
    echo "module flashback-operator.local/control-plane/kubernetes"
    echo
    echo "go $(sed -n 's/^go //p' "$upstream")"
    echo
    echo "require k8s.io/kubernetes v$version"
    echo
    echo "replace ("
    awk '/^require/,/^\)/' "$upstream" |
      awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' |
      while read -r module; do printf '\t%s => %s %s\n' "$module" "$module" "$staging_version"; done
    echo ")"
  } >"$dir/go.mod"
}

# -ldflags that stamp the Kubernetes version into a binary built from k8s.io/kubernetes.
kubernetes_ldflags() {
  local major=${KUBERNETES_VERSION%%.*} minor
  minor=${KUBERNETES_VERSION#*.}
  minor=${minor%%.*}
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$KUBERNETES_VERSION -X $pkg.gitMajor=$major"
    ldflags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$ldflags"
}

build_kubernetes() {
  local out=$cache/kubernetes-v$KUBERNETES_VERSION
  if [ -x "$out/bin/kube-apiserver" ] && [ -x "$out/bin/kubectl" ]; then return; fi
  log "building kube-apiserver and kubectl v$KUBERNETES_VERSION (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  write_kubernetes_module "$work" "$KUBERNETES_VERSION"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "$(kubernetes_ldflags)" \
    -o bin/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
  rm -rf "$out" && mv "$work" "$out"
}

# Writes DIR/go.mod of a module of the project's own that requires MODULE at VERSION (what
# `go build MODULE/cmd/...` of a published version needs).
wrapper_module() {
  local dir=$1 name=$2 module=$3 version=$4
  printf 'module flashback-operator.local/control-plane/%s\n\ngo 1.26.0\n\nrequire %s %s\n' \
    "$name" "$module" "$version" >"$dir/go.mod"
}

# Builds the FROM-scratch image of WORK/context/Containerfile as NAME and saves it as an OCI
# archive to WORK/ARCHIVE, with podman storage of its own (removed after).
scratch_image() {
  local work=$1 name=$2 archive=$3 runroot
  # podman wants a short runroot path.
  runroot=$(mktemp -d /tmp/flashback-image.XXXXXX)
  local podman=(podman --root "$work/storage" --runroot "$runroot" --storage-driver vfs)
  "${podman[@]}" build --quiet --pull=never -t "$name" "$work/context" >/dev/null
  "${podman[@]}" save --quiet --format oci-archive -o "$work/$archive" "$name"
  "${podman[@]}" rmi -a >/dev/null 2>&1 || true
  rm -rf "$work/storage" "$runroot"
}

# Debian packages a component needs, installed when missing (the scripts run as root in CI).
need_packages() {
  local missing=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} from Debian"
  [ "$(id -u)" -eq 0 ] || { log "run as root, or: apt-get install ${missing[*]}"; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}


build_etcd() {
  local out=$cache/etcd-v$ETCD_VERSION
  if [ -x "$out/bin/etcd" ]; then return; fi
  log "building etcd v$ETCD_VERSION (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  wrapper_module "$work" etcd go.etcd.io/etcd/server/v3 "v$ETCD_VERSION"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "-s -w" \
    -o bin/etcd go.etcd.io/etcd/server/v3)
  rm -rf "$out" && mv "$work" "$out"
}

# helm's directory in the cache: named after the Kubernetes version it reports too, so that
# changing either version (or a helm cached before it reported one) builds it again.
helm_dir() {
  printf '%s/helm-v%s-kubernetes-v%s' "$cache" "$HELM_VERSION" "$KUBERNETES_VERSION"
}

# -ldflags of helm, as helm's own Makefile sets them: its version, and the Kubernetes version
# that `helm template` (without --kube-version) and `helm lint` assume, here the one of the
# kube-apiserver built above rather than helm's fallback (v1.20), which charts with a
# kubeVersion constraint refuse.
helm_ldflags() {
  local major=${KUBERNETES_VERSION%%.*} minor pkg
  minor=${KUBERNETES_VERSION#*.}
  minor=${minor%%.*}
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
  done
  printf '%s' "$ldflags"
}

build_helm() {
  local out
  out=$(helm_dir)
  if [ -x "$out/bin/helm" ]; then return; fi
  log "building helm v$HELM_VERSION for Kubernetes v$KUBERNETES_VERSION (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  wrapper_module "$work" helm helm.sh/helm/v3 "v$HELM_VERSION"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "$(helm_ldflags)" \
    -o bin/helm helm.sh/helm/v3/cmd/helm)
  rm -rf "$out" && mv "$work" "$out"
}

# The node's Kubernetes components: the same module recipe as kube-apiserver.
build_node() {
  local out=$cache/kubernetes-node-v$KUBERNETES_VERSION
  if [ -x "$out/bin/kubelet" ] && [ -x "$out/bin/kube-controller-manager" ] && [ -x "$out/bin/kube-scheduler" ]; then return; fi
  log "building kubelet, kube-controller-manager and kube-scheduler v$KUBERNETES_VERSION (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  write_kubernetes_module "$work" "$KUBERNETES_VERSION"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "$(kubernetes_ldflags)" \
    -o bin/ k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
  rm -rf "$out" && mv "$work" "$out"
}
# containerd runs the node's containers with Debian's runc (installed here when missing).
build_containerd() {
  need_packages runc
  local out=$cache/containerd-v$CONTAINERD_VERSION
  if [ -x "$out/bin/containerd" ] && [ -x "$out/bin/containerd-shim-runc-v2" ] && [ -x "$out/bin/ctr" ]; then return; fi
  log "building containerd v$CONTAINERD_VERSION (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  wrapper_module "$work" containerd github.com/containerd/containerd/v2 "v$CONTAINERD_VERSION"
  local pkg=github.com/containerd/containerd/v2
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath \
    -tags "no_btrfs no_devmapper no_zfs no_dynamic_plugins" \
    -ldflags "-s -w -X $pkg/version.Version=v$CONTAINERD_VERSION" \
    -o bin/ $pkg/cmd/containerd $pkg/cmd/containerd-shim-runc-v2 $pkg/cmd/ctr)
  rm -rf "$out" && mv "$work" "$out"
}
# The sandbox ("pause") image every Pod starts with, built here from kubernetes' own pause.c
# (statically linked) into a FROM-scratch image: nothing is pulled.
build_pause() {
  local out=$cache/pause-v$KUBERNETES_VERSION
  if [ -f "$out/pause-image.tar" ]; then return; fi
  need_packages podman runc gcc libc6-dev
  log "building the pause image from k8s.io/kubernetes v$KUBERNETES_VERSION (first run on this machine only)"
  local work=$out.work source
  rm -rf "$work" && mkdir -p "$work/context"
  source=$(go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/build/pause/linux/pause.c
  [ -f "$source" ] || { log "no pause.c at $source"; exit 1; }
  gcc -Os -static -Wall -Werror -DVERSION="v$KUBERNETES_VERSION" -o "$work/context/pause" "$source"
  strip "$work/context/pause"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$work/context/Containerfile"
  scratch_image "$work" localhost/flashback-pause:latest pause-image.tar
  rm -rf "$out" && mv "$work" "$out"
}

# The node's network (node.sh): kube-proxy (the same module recipe as the kubelet), the CNI
# reference plugins the pods' network is made of (bridge, host-local, loopback, portmap),
# CoreDNS with only the plugins a cluster's DNS needs, and a local OCI registry
# (distribution), all built from the Go module proxy.
build_kube_proxy() {
  need_packages iproute2 nftables
  local out=$cache/kube-proxy-v$KUBERNETES_VERSION
  if [ -x "$out/bin/kube-proxy" ]; then return; fi
  log "building kube-proxy v$KUBERNETES_VERSION (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  write_kubernetes_module "$work" "$KUBERNETES_VERSION"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "$(kubernetes_ldflags)" \
    -o bin/ k8s.io/kubernetes/cmd/kube-proxy)
  rm -rf "$out" && mv "$work" "$out"
}

build_cni() {
  local out=$cache/cni-plugins-v$CNI_PLUGINS_VERSION
  if [ -x "$out/bin/bridge" ] && [ -x "$out/bin/host-local" ] && [ -x "$out/bin/loopback" ] && [ -x "$out/bin/portmap" ]; then return; fi
  log "building the CNI plugins v$CNI_PLUGINS_VERSION (first run on this machine only)"
  local work=$out.work pkg=github.com/containernetworking/plugins/plugins
  rm -rf "$work" && mkdir -p "$work/bin"
  wrapper_module "$work" cni github.com/containernetworking/plugins "v$CNI_PLUGINS_VERSION"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "-s -w" \
    -o bin/ $pkg/main/bridge $pkg/ipam/host-local $pkg/main/loopback $pkg/meta/portmap)
  rm -rf "$out" && mv "$work" "$out"
}

# CoreDNS's plugins: what the Corefile in node.sh uses. The cache is named after them too.
COREDNS_PLUGINS="bind kubernetes errors health ready cache loadbalance"
coredns_dir() {
  printf '%s/coredns-v%s-%s' "$cache" "$COREDNS_VERSION" "$(printf '%s' "$COREDNS_PLUGINS" | sha256sum | cut -c1-8)"
}

build_coredns() {
  local out
  out=$(coredns_dir)
  if [ -x "$out/bin/coredns" ]; then return; fi
  log "building CoreDNS v$COREDNS_VERSION (first run on this machine only)"
  local work=$out.work plugin
  rm -rf "$work" && mkdir -p "$work/bin"
  wrapper_module "$work" coredns github.com/coredns/coredns "v$COREDNS_VERSION"
  {
    echo '// CoreDNS with the plugins the node'"'"'s cluster DNS uses (tests/control-plane/node.sh).'
    echo 'package main'
    echo
    echo 'import ('
    echo '	"github.com/coredns/coredns/coremain"'
    for plugin in $COREDNS_PLUGINS; do
      printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$plugin"
    done
    echo ')'
    echo
    echo 'func main() { coremain.Run() }'
  } >"$work/main.go"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "-s -w" -o bin/coredns .)
  rm -rf "$out" && mv "$work" "$out"
}

build_registry() {
  need_packages skopeo
  local out=$cache/registry-v$REGISTRY_VERSION
  if [ -x "$out/bin/registry" ]; then return; fi
  log "building the OCI registry (distribution v$REGISTRY_VERSION; first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  wrapper_module "$work" registry github.com/distribution/distribution/v3 "v$REGISTRY_VERSION"
  cat >"$work/main.go" <<'GO'
// The distribution registry with its filesystem storage only (tests/control-plane/node.sh).
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
GO
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "-s -w" -o bin/registry .)
  rm -rf "$out" && mv "$work" "$out"
}

# A NetworkPolicy engine for the node: kube-router's network policy controller alone (no
# routing, no service proxy), which enforces NetworkPolicies with iptables and ipsets.
# (kube-network-policies builds too, but its datapath needs nftables' queue expression, which
# this kernel lacks: `nft add rule ip t c queue num 100` answers "No such file or directory".)
build_kube_router() {
  need_packages iptables ipset
  local out=$cache/kube-router-v$KUBE_ROUTER_VERSION
  if [ -x "$out/bin/kube-router" ]; then return; fi
  log "building kube-router v$KUBE_ROUTER_VERSION (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  wrapper_module "$work" kube-router github.com/cloudnativelabs/kube-router/v2 "v$KUBE_ROUTER_VERSION"
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "-s -w" \
    -o bin/kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  rm -rf "$out" && mv "$work" "$out"
}

# The image of tests/netprobe (what a Pod sees of the network, for tests/node.rs): a static
# binary in a FROM-scratch image, cached under the hash of its sources.
netprobe_dir() {
  local sources=$root/tests/netprobe
  printf '%s/netprobe-%s' "$cache" "$(cat "$sources/go.mod" "$sources"/*.go | sha256sum | cut -c1-16)"
}

build_netprobe() {
  local out
  out=$(netprobe_dir)
  if [ -f "$out/netprobe-image.tar" ]; then return; fi
  need_packages podman runc
  log "building the netprobe image (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/context"
  (cd "$root/tests/netprobe" && CGO_ENABLED=0 timed_go_build -trimpath -buildvcs=false \
    -ldflags "-s -w" -o "$work/context/netprobe" .)
  printf 'FROM scratch\nCOPY netprobe /netprobe\nUSER 65532:65532\nENTRYPOINT ["/netprobe"]\nCMD ["serve"]\n' \
    >"$work/context/Containerfile"
  scratch_image "$work" localhost/flashback-netprobe:latest netprobe-image.tar
  rm -rf "$out" && mv "$work" "$out"
}

# promtool, Prometheus' rule checker, for the chart's tests of its PrometheusRule. Prometheus
# publishes its Go module as v0.3MM.P for release 3.MM.P; the version is stamped as
# `promtool --version` reports it. Built without the service discoveries (remove_all_sd: no
# cloud SDKs), which checking rules does not use; that more than halves the build.
PROMTOOL_VERSION=${PROMTOOL_VERSION:-3.16.0}
promtool_dir() {
  printf '%s/promtool-v%s-remove_all_sd' "$cache" "$PROMTOOL_VERSION"
}

build_promtool() {
  local out
  out=$(promtool_dir)
  if [ -x "$out/bin/promtool" ]; then return; fi
  log "building promtool v$PROMTOOL_VERSION (first run on this machine only)"
  local work=$out.work minor=${PROMTOOL_VERSION#3.} module_version
  module_version="v0.3$(printf '%02d' "${minor%%.*}").${PROMTOOL_VERSION##*.}"
  rm -rf "$work" && mkdir -p "$work/bin"
  wrapper_module "$work" promtool github.com/prometheus/prometheus "$module_version"
  local pkg=github.com/prometheus/common/version
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -tags remove_all_sd \
    -ldflags "-s -w -X $pkg.Version=$PROMTOOL_VERSION -X $pkg.Branch=HEAD -X $pkg.Revision=$module_version" \
    -o bin/promtool github.com/prometheus/prometheus/cmd/promtool)
  rm -rf "$out" && mv "$work" "$out"
}

# Debian's Lua for the tests of the Argo CD health script (integrations/argocd/): 5.1, the
# language of gopher-lua that Argo CD runs it in, 5.4, and dkjson to read objects as JSON.
build_lua() {
  need_packages lua5.1 lua5.4 lua-dkjson
}

# integrations/kstatus-check: kstatus, Flux's fork of it and Flux's CEL health checks, judging
# one object. Cached under the hash of its sources, so an edit builds it again.
kstatus_dir() {
  local sources=$root/integrations/kstatus-check
  printf '%s/kstatus-check-%s' "$cache" \
    "$(cat "$sources/go.mod" "$sources/go.sum" "$sources"/*.go | sha256sum | cut -c1-16)"
}

build_kstatus() {
  local out
  out=$(kstatus_dir)
  if [ -x "$out/bin/kstatus-check" ]; then return; fi
  log "building kstatus-check (first run on this machine only)"
  local work=$out.work
  rm -rf "$work" && mkdir -p "$work/bin"
  (cd "$root/integrations/kstatus-check" && CGO_ENABLED=0 timed_go_build -trimpath -buildvcs=false \
    -ldflags "-s -w" -o "$work/bin/kstatus-check" .)
  rm -rf "$out" && mv "$work" "$out"
}

# Flux's source-controller, kustomize-controller and helm-controller (tests/gitops/), each from
# a wrapper module: the controller's own go.mod replaces its api module with a local folder,
# so `go install` refuses it; the wrapper requires the controller and its api at the same
# version and copies the controller's other replaces. The CRDs come from the same module.
# flux_dir NAME: the cache directory of the controller NAME at its version in versions.env.
flux_dir() {
  local version
  case $1 in
    source-controller) version=$FLUX_SOURCE_VERSION ;;
    kustomize-controller) version=$FLUX_KUSTOMIZE_VERSION ;;
    helm-controller) version=$FLUX_HELM_VERSION ;;
  esac
  printf '%s/flux-%s-v%s' "$cache" "$1" "$version"
}

build_flux_controller() {
  local name=$1 version=$2 out module=github.com/fluxcd/$1
  out=$(flux_dir "$name")
  if [ -x "$out/bin/$name" ]; then return; fi
  log "building Flux's $name v$version (first run on this machine only)"
  local work=$out.work upstream dir
  rm -rf "$work" && mkdir -p "$work/bin" "$work/crds"
  upstream=$(go mod download -json "$module@v$version")
  dir=$(printf '%s' "$upstream" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -f "$dir/go.mod" ] || { log "cannot download $module@v$version"; exit 1; }
  {
    echo "module flashback-operator.local/control-plane/flux-$name"
    echo
    echo "go $(sed -n 's/^go //p' "$dir/go.mod")"
    echo
    echo "require ("
    printf '\t%s v%s\n\t%s/api v%s\n' "$module" "$version" "$module" "$version"
    echo ")"
    echo
    echo "replace ("
    # The upstream replaces, one line or in a block, but not the local ./api.
    awk '/^replace \(/ { block = 1; next } block && /^\)/ { block = 0; next }
         block { print; next } /^replace / { sub(/^replace /, ""); print }' "$dir/go.mod" |
      grep '=>' | grep -v '=> \./' | sed 's/^[[:space:]]*/\t/'
    # Newer releases than the controller's go.mod names that the proxy here refuses; only their
    # go.mod differs.
    [ "$name" != source-controller ] || printf '\tgithub.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.1\n'
    echo ")"
  } >"$work/go.mod"
  cp "$dir"/config/crd/bases/*.yaml "$work/crds/"
  chmod u+w "$work"/crds/*.yaml
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "-s -w" \
    -o "bin/$name" "$module")
  rm -rf "$out" && mv "$work" "$out"
}

build_flux_source() { build_flux_controller source-controller "$FLUX_SOURCE_VERSION"; }
build_flux_kustomize() { build_flux_controller kustomize-controller "$FLUX_KUSTOMIZE_VERSION"; }
build_flux_helm() { build_flux_controller helm-controller "$FLUX_HELM_VERSION"; }

# Argo CD's application-controller and repo-server (tests/gitops/), one binary from a wrapper
# module (tests/control-plane/argocd/main.go) that requires Argo CD at its version and copies
# its replace lines; redis and git (for the repo-server's clones) from Debian. Cached
# under the version and the hash of main.go. The CRDs come from the same module. redis is
# redis-tools' binary under the name redis-server (it serves when called so), not the
# redis-server package, which would also install a system service.
argocd_dir() {
  printf '%s/argocd-v%s-%s' "$cache" "$ARGOCD_VERSION" \
    "$(sha256sum <"$root/tests/control-plane/argocd/main.go" | cut -c1-12)"
}

build_argocd() {
  need_packages redis-tools git
  local out module=github.com/argoproj/argo-cd/v3
  out=$(argocd_dir)
  if [ -x "$out/bin/argocd" ]; then return; fi
  log "building Argo CD v$ARGOCD_VERSION (first run on this machine only)"
  local work=$out.work dir
  rm -rf "$work" && mkdir -p "$work/bin" "$work/crds"
  dir=$(go mod download -json "$module@v$ARGOCD_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -f "$dir/go.mod" ] || { log "cannot download $module@v$ARGOCD_VERSION"; exit 1; }
  {
    printf 'module flashback-operator.local/control-plane/argocd\n\ngo %s\n\n' "$(sed -n 's/^go //p' "$dir/go.mod")"
    printf 'require %s v%s\n\nreplace (\n' "$module" "$ARGOCD_VERSION"
    awk '/^replace \(/ { block = 1; next } block && /^\)/ { block = 0; next }
         block { print; next } /^replace / { sub(/^replace /, ""); print }' "$dir/go.mod" |
      grep '=>' | grep -v '=> \./' | sed 's/^[[:space:]]*/\t/'
    echo ")"
  } >"$work/go.mod"
  cp "$root/tests/control-plane/argocd/main.go" "$work/"
  cp "$dir"/manifests/crds/application-crd.yaml "$dir"/manifests/crds/appproject-crd.yaml "$work/crds/"
  chmod u+w "$work"/crds/*.yaml
  (cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod timed_go_build -trimpath -ldflags "-s -w" -o bin/argocd .)
  rm -rf "$out" && mv "$work" "$out"
}

# One build of a component at a time: a second caller waits, then finds the binary ready.
locked() {
  (
    flock 9
    "build_$1"
  ) 9>"$cache/$1.lock"
}

case "${1:-all}" in
  kubernetes | etcd | helm | node | containerd | pause | kube_proxy | cni | coredns | registry | netprobe | kube_router) locked "$1" ;;
  promtool) locked promtool ;;
  lua | kstatus) locked "$1" ;;
  integrations) locked lua; locked kstatus ;;
  flux_source | flux_kustomize | flux_helm) locked "$1" ;;
  flux) locked flux_source; locked flux_kustomize; locked flux_helm ;;
  argocd) locked argocd ;;
  # One command per line, not an && list: set -e ignores a failure inside one, and a build that
  # failed would be cached.
  all) locked etcd; locked kubernetes; locked helm; locked node ;;
  all-node)
    locked etcd; locked kubernetes; locked helm; locked node; locked containerd
    locked pause; locked kube_proxy; locked cni; locked coredns; locked registry
    locked netprobe; locked kube_router
    ;;
  *)
    log "usage: build.sh [all|all-node|kubernetes|etcd|helm|node|containerd|pause|kube_proxy|cni|coredns|registry|netprobe|kube_router|promtool|lua|kstatus|integrations|flux|flux_source|flux_kustomize|flux_helm|argocd]"
    exit 2
    ;;
esac

for tool in kube-apiserver kubectl; do
  [ -x "$cache/kubernetes-v$KUBERNETES_VERSION/bin/$tool" ] &&
    ln -sfn "$cache/kubernetes-v$KUBERNETES_VERSION/bin/$tool" "$bin/$tool"
done
[ -x "$cache/etcd-v$ETCD_VERSION/bin/etcd" ] && ln -sfn "$cache/etcd-v$ETCD_VERSION/bin/etcd" "$bin/etcd"
[ -x "$(helm_dir)/bin/helm" ] && ln -sfn "$(helm_dir)/bin/helm" "$bin/helm"
node=$cache/kubernetes-node-v$KUBERNETES_VERSION/bin
for tool in kubelet kube-controller-manager kube-scheduler; do
  [ -x "$node/$tool" ] && ln -sfn "$node/$tool" "$bin/$tool"
done
for tool in containerd containerd-shim-runc-v2 ctr; do
  [ -x "$cache/containerd-v$CONTAINERD_VERSION/bin/$tool" ] &&
    ln -sfn "$cache/containerd-v$CONTAINERD_VERSION/bin/$tool" "$bin/$tool"
done
[ -x "$cache/kube-proxy-v$KUBERNETES_VERSION/bin/kube-proxy" ] &&
  ln -sfn "$cache/kube-proxy-v$KUBERNETES_VERSION/bin/kube-proxy" "$bin/kube-proxy"
[ -d "$cache/cni-plugins-v$CNI_PLUGINS_VERSION/bin" ] &&
  ln -sfn "$cache/cni-plugins-v$CNI_PLUGINS_VERSION/bin" "$bin/cni"
[ -x "$(coredns_dir)/bin/coredns" ] && ln -sfn "$(coredns_dir)/bin/coredns" "$bin/coredns"
[ -x "$cache/registry-v$REGISTRY_VERSION/bin/registry" ] &&
  ln -sfn "$cache/registry-v$REGISTRY_VERSION/bin/registry" "$bin/registry"
[ -f "$cache/pause-v$KUBERNETES_VERSION/pause-image.tar" ] &&
  ln -sfn "$cache/pause-v$KUBERNETES_VERSION/pause-image.tar" "$bin/pause-image.tar"
[ -x "$cache/kube-router-v$KUBE_ROUTER_VERSION/bin/kube-router" ] &&
  ln -sfn "$cache/kube-router-v$KUBE_ROUTER_VERSION/bin/kube-router" "$bin/kube-router"
[ -f "$(netprobe_dir)/netprobe-image.tar" ] && ln -sfn "$(netprobe_dir)/netprobe-image.tar" "$bin/netprobe-image.tar"
[ -x "$(promtool_dir)/bin/promtool" ] && ln -sfn "$(promtool_dir)/bin/promtool" "$bin/promtool"
for version in 5.1 5.4; do
  [ -x "/usr/bin/lua$version" ] && ln -sfn "/usr/bin/lua$version" "$bin/lua$version"
done
[ -x "$(kstatus_dir)/bin/kstatus-check" ] && ln -sfn "$(kstatus_dir)/bin/kstatus-check" "$bin/kstatus-check"
for name in source-controller kustomize-controller helm-controller; do
  if [ -x "$(flux_dir "$name")/bin/$name" ]; then
    ln -sfn "$(flux_dir "$name")/bin/$name" "$bin/$name"
    ln -sfn "$(flux_dir "$name")/crds" "$bin/$name-crds"
  fi
done
if [ -x "$(argocd_dir)/bin/argocd" ]; then
  ln -sfn "$(argocd_dir)/bin/argocd" "$bin/argocd"
  ln -sfn "$(argocd_dir)/crds" "$bin/argocd-crds"
fi
[ -x /usr/bin/redis-check-rdb ] && ln -sfn /usr/bin/redis-check-rdb "$bin/redis-server"
exit 0

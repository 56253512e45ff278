#!/usr/bin/env bash
# Pushes what `make image` built, and the chart, to an OCI registry:
#   the image  REGISTRY/flashback-operator:<version>   (skopeo, from the OCI archive)
#   the chart  oci://REGISTRY/charts/flashback-operator, version <version>   (helm push)
# REGISTRY defaults to the local cluster's registry (target/control-plane/node/node.env, written
# by `make node-up` / `make demo`), which speaks plain HTTP on loopback. With --if-running it
# does nothing (and succeeds) when no REGISTRY is given and the local cluster is not up.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=image.env
. demo/image.env
log() { printf 'publish: %s\n' "$*" >&2; }

if_running=
[ "${1:-}" != --if-running ] || if_running=1
node_env=target/control-plane/node/node.env
if [ -z "${REGISTRY:-}" ] && [ -f "$node_env" ]; then
  REGISTRY=$(sed -n 's/^REGISTRY=//p' "$node_env")
  # The registry of a cluster that is down no longer answers.
  curl -fsS -o /dev/null --max-time 5 "http://$REGISTRY/v2/" 2>/dev/null || REGISTRY=
fi
if [ -z "${REGISTRY:-}" ]; then
  [ -n "$if_running" ] && { log "no local registry is running (make node-up starts one): nothing pushed"; exit 0; }
  log "set REGISTRY=host:port, or start the local cluster (make node-up)"
  exit 1
fi
# Plain HTTP only for a registry on this machine's loopback.
plain=()
case $REGISTRY in 127.0.0.1:* | localhost:*) plain=(--plain-http) ;; esac

archive=target/image/$IMAGE_ARCHIVE
[ -f "$archive" ] || { log "$archive is missing: run make image"; exit 1; }
skopeo copy --quiet ${plain[0]:+--dest-tls-verify=false} "oci-archive:$archive" \
  "docker://$REGISTRY/flashback-operator:$IMAGE_TAG"
log "pushed $REGISTRY/flashback-operator:$IMAGE_TAG"

tests/control-plane/build.sh helm
mkdir -p target/image/chart
rm -f target/image/chart/*.tgz
target/control-plane/bin/helm package charts/flashback-operator -d target/image/chart >/dev/null
target/control-plane/bin/helm push target/image/chart/flashback-operator-*.tgz "oci://$REGISTRY/charts" \
  "${plain[@]}" 2>&1 | sed 's/^/publish: helm: /' >&2
log "pushed oci://$REGISTRY/charts/flashback-operator"
echo "REGISTRY=$REGISTRY"

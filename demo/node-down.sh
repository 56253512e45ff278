#!/usr/bin/env bash
# `make demo-down` (the node part): stops Flux's controllers and the Git server of
# `make demo GITOPS=flux`, then the cluster with a node, which kills every Pod's containers (the
# operator and the emulator) through containerd, then every process by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/demo/flux-down.sh"
"$root/tests/control-plane/down.sh" --node
rm -rf "$root/target/demo-node"

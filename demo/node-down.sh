#!/usr/bin/env bash
# `make demo-down` (the node part): stops the cluster with a node, which kills every Pod's
# containers (the operator and the emulator) through containerd, then every process by pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/tests/control-plane/down.sh" --node
rm -rf "$root/target/demo-node"

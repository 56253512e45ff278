#!/usr/bin/env bash
# Runs a command with the local control plane up, and brings it down afterwards whatever
# the command's outcome: `tests/control-plane/with.sh cargo test`. With `--node` first, the
# cluster with a real node instead (`up.sh --node`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=()
if [ "${1:-}" = --node ]; then
  mode=(--node)
  shift
fi
trap '"$here/down.sh" "${mode[@]}"' EXIT
eval "$("$here/up.sh" "${mode[@]}")"
"$@"

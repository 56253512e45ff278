#!/usr/bin/env bash
# Runs a command with the local control plane up, and brings it down afterwards whatever
# the command's outcome: `tests/control-plane/with.sh cargo test`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
trap '"$here/down.sh"' EXIT
eval "$("$here/up.sh")"
"$@"

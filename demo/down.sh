#!/usr/bin/env bash
# `make demo-down`: stops the operator, the emulator and the control plane `make demo` started.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state=$root/target/demo

stop() {
  local name=$1 binary=$2 pid
  pid=$(cat "$state/$name.pid" 2>/dev/null) || return 0
  if [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = "$binary" ]; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    echo "demo/down: stopped $name (pid $pid)"
  fi
  rm -f "$state/$name.pid"
}

stop operator flashback-operator
stop emulator flashback-emulator
"$root/tests/control-plane/down.sh"

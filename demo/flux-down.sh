#!/usr/bin/env bash
# Stops what demo/flux.sh started (Flux's controllers and the Git server), by the pid files it
# wrote in target/demo-node/flux/: each process is stopped only if it still runs the program its
# file names, with TERM, then KILL after ten seconds. Idempotent.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for pidfile in "$root"/target/demo-node/flux/*.pid; do
  [ -f "$pidfile" ] || continue
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  runs() { [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"; }
  if runs; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      runs || break
      sleep 0.1
    done
    if runs; then kill -KILL "$pid" 2>/dev/null || true; fi
    echo "demo-down: stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done

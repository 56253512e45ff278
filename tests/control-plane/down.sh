#!/usr/bin/env bash
# Stops exactly the etcd, kube-apiserver and garbage collector that up.sh started (by their
# pid files);
# `down.sh --node` stops the cluster with a node: its Pods' containers through containerd,
# then the kubelet, containerd, the scheduler, the controller-manager, the API server, etcd.
# Idempotent: with nothing running it does nothing and succeeds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

stop() {
  local name=$1 binary=${2:-$1} pid
  if is_running "$name" "$binary"; then
    pid=$(cat "$run/$name.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      is_running "$name" "$binary" || break
      sleep 0.1
    done
    if is_running "$name" "$binary"; then kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.1
    if is_running "$name" "$binary"; then
      echo "control-plane/down: $name (pid $pid) is still running" >&2
      exit 1
    fi
    echo "control-plane/down: stopped $name (pid $pid)"
  fi
  rm -f "$run/$name.pid"
}

if [ -n "$node_mode" ]; then
  # shellcheck source=node.sh
  . "$here/node.sh"
  stop_node
fi

# The garbage collector of the plain control plane (the node's controller-manager has stopped
# above), then the API server, so it does not log a storm of etcd connection errors.
[ -n "$node_mode" ] || stop kube-controller-manager
stop kube-apiserver
stop etcd
[ -z "$node_mode" ] || stop_node_network

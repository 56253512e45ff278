# shellcheck shell=bash
# Shared by up.sh and down.sh: where the control plane keeps its state, and how to tell
# that a pid file still names one of our processes.
#
# Two instances can run side by side, each with its own etcd, API server, ports and state:
# the plain control plane (target/control-plane/, used by most tests) and, with --node, the
# cluster with a node (target/control-plane/node/). Binaries are shared in target/control-plane/bin.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$root/target/control-plane/bin
node_mode=
if [ "${1:-}" = --node ]; then node_mode=1; fi
base=$root/target/control-plane${node_mode:+/node}
run=$base/run
kubeconfig=$base/kubeconfig

# True when run/NAME.pid names a live process running the binary NAME (or BINARY when given),
# so a recycled pid never gets a signal meant for our process.
is_running() {
  local name=$1 binary=${2:-$1} pid
  [ -f "$run/$name.pid" ] || return 1
  pid=$(cat "$run/$name.pid")
  [ -n "$pid" ] && [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = "$binary" ]
}

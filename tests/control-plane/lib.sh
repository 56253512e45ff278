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

# The cluster with a node lives in a network namespace of its own (node.sh): named after the
# clone, so that a second clone's scripts never touch it. Every process of that cluster runs
# in it (`"${in_node[@]}" COMMAND`; only the network namespace is entered, so the kubelet and
# containerd share the machine's mounts as on any node); the plain control plane runs here.
netns=fbnode-$(printf '%s' "$root" | sha256sum | cut -c1-10)
node_ip=10.88.0.2
in_node=()
[ -z "$node_mode" ] || in_node=(nsenter "--net=/run/netns/$netns")

# True when run/NAME.pid names a live process running the binary NAME (or BINARY when given;
# for a script, the script its interpreter runs), so a recycled pid never gets a signal meant
# for our process.
is_running() {
  local name=$1 binary=${2:-$1} pid
  [ -f "$run/$name.pid" ] || return 1
  pid=$(cat "$run/$name.pid")
  [ -n "$pid" ] || return 1
  [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = "$binary" ] ||
    [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 2p | xargs -r basename)" = "$binary" ]
}

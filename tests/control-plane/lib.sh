# Shared by up.sh and down.sh: where the control plane keeps its state, and how to tell
# that a pid file still names one of our processes.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
base=$root/target/control-plane
bin=$base/bin
run=$base/run
kubeconfig=$base/kubeconfig

# True when run/NAME.pid names a live process running the binary NAME, so a recycled pid
# never gets a signal meant for our process.
is_running() {
  local name=$1 pid
  [ -f "$run/$name.pid" ] || return 1
  pid=$(cat "$run/$name.pid")
  [ -n "$pid" ] && [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = "$name" ]
}

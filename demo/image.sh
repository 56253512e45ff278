#!/usr/bin/env bash
# Builds the flashback-operator image without a daemon and without pulling anything.
#   demo/image.sh context   prepares target/image/context/ (rootfs/ for the Containerfile)
#   demo/image.sh build     context + `podman build` + an OCI archive under target/image/
# IMAGE_PROFILE=release (default) or debug picks the Cargo profile whose binaries go in;
# IMAGE_SKIP_BUILD=1 uses binaries already built. podman keeps its storage under
# target/image/ so it never touches the machine's own image store.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=image.env
. demo/image.env

profile=${IMAGE_PROFILE:-release}
out=target/image
context=$out/context
rootfs=$context/rootfs
log() { printf 'image: %s\n' "$*" >&2; }

# Debian packages the build needs; installed when missing (the scripts run as root in CI).
need_packages() {
  local missing=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} from Debian"
  if [ "$(id -u)" -ne 0 ]; then log "run as root, or: apt-get install ${missing[*]}"; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}

podman_cmd() {
  podman --root "$root/$out/storage" --runroot "$root/$out/runroot" --storage-driver vfs \
    --cgroup-manager cgroupfs "$@"
}

context() {
  need_packages ca-certificates binutils
  if [ -z "${IMAGE_SKIP_BUILD:-}" ]; then
    log "building the binaries ($profile)"
    # Without the test-only failpoints (src/controller/failpoint.rs).
    if [ "$profile" = release ]; then cargo build --locked --workspace --no-default-features --release --bins; else cargo build --locked --workspace --no-default-features --bins; fi
  fi
  local dir=target/$profile binary
  rm -rf "$context" && mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  for binary in flashback-operator flashback-emulator; do
    [ -x "$dir/$binary" ] || { log "$dir/$binary is missing"; exit 1; }
    strip -o "$rootfs/usr/local/bin/$binary" "$dir/$binary"
  done
  # The binaries link glibc dynamically (the toolchain has only the gnu target): copy every
  # library ldd resolves, and the loader, to the same paths, from the Debian packages
  # installed here. packages.txt records which packages and versions they came from.
  local lib
  : >"$context/packages.txt"
  for lib in $(ldd "$dir/flashback-operator" "$dir/flashback-emulator" |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
    { dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null; } |
      cut -d: -f1 >>"$context/packages.txt" || true
  done
  cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  echo ca-certificates >>"$context/packages.txt"
  sort -u -o "$context/packages.txt" "$context/packages.txt"
  local pkgs=()
  mapfile -t pkgs <"$context/packages.txt"
  dpkg-query -W -f '${Package} ${Version}\n' "${pkgs[@]}" >"$context/packages.txt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  log "context ready in $context ($(du -sh "$rootfs" | cut -f1); libraries from: $(tr '\n' ' ' <"$context/packages.txt"))"
}

build() {
  need_packages podman runc
  context
  local revision archive=$out/$IMAGE_ARCHIVE
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  log "podman build -t $IMAGE_NAME:$IMAGE_TAG ($profile binaries)"
  podman_cmd build --quiet --pull=never -f Containerfile -t "$IMAGE_NAME:$IMAGE_TAG" \
    --build-arg "VERSION=$IMAGE_TAG" --build-arg "SOURCE=$IMAGE_SOURCE" \
    --build-arg "REVISION=$revision" "$context" >/dev/null
  rm -f "$archive"
  podman_cmd save --quiet --format oci-archive -o "$archive" "$IMAGE_NAME:$IMAGE_TAG"
  log "wrote $archive ($(du -h "$archive" | cut -f1))"
}

case "${1:-build}" in
  context) context ;;
  build) build ;;
  # Runs the built image with podman (runc, cgroupfs and explicit limits work on this kind of
  # machine; see docs/developing.md): demo/image.sh run [--entrypoint PATH] ARGS...
  run)
    shift
    entrypoint=()
    if [ "${1:-}" = --entrypoint ]; then entrypoint=(--entrypoint "$2"); shift 2; fi
    podman_cmd --runtime /usr/sbin/runc run --rm --network none --read-only \
      --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 "${entrypoint[@]}" \
      "$IMAGE_NAME:$IMAGE_TAG" "$@" ;;
  inspect) podman_cmd image inspect "$IMAGE_NAME:$IMAGE_TAG" ;;
  *) log "usage: demo/image.sh [context|build|run ARGS|inspect]"; exit 2 ;;
esac

#!/usr/bin/env bash
# Everything the test platform and `make demo` need on this machine, made once and cached:
# the Debian packages of a real node (containerd, runc, CNI plugins, iptables, podman), the
# Kubernetes binaries (scripts/kube-binaries.sh), the node's pause image and the kingest image
# built from the Dockerfile (scripts/image.sh). Needs root. Prints, on its last lines:
#   KUBE_BIN=<folder with etcd, kube-apiserver, ..., kubelet, kube-proxy>
#   IMAGE=<the kingest image podman holds, tagged by the hash of its inputs>
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

log() { printf 'platform: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || {
  log "the test platform runs a real node (containerd, kubelet, iptables) and needs root"
  exit 1
}

packages=(containerd runc containernetworking-plugins iptables conntrack iproute2 openssl
          podman uidmap debootstrap gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

kube_bin=$(bash "$HERE/kube-binaries.sh" | tail -n 1)
bash "$HERE/image.sh" pause >/dev/null
image=$(bash "$HERE/image.sh" | tail -n 1)
echo "KUBE_BIN=$kube_bin"
echo "IMAGE=$image"

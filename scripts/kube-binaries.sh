#!/usr/bin/env bash
# Provide the Kubernetes binaries of the test platform: etcd, kube-apiserver,
# kube-controller-manager, and for the real node kube-scheduler, kubelet and kube-proxy.
#
# Follows the envtest convention: when KUBEBUILDER_ASSETS names a folder holding etcd and
# kube-apiserver, that folder is used as is (it must then also hold the other binaries the
# platform starts). Otherwise the Kubernetes binaries are built once per machine from Debian's
# `kubernetes` source package (one `make` for all of them: ~10 min on 2 idle cores) and cached
# outside the repository, keyed by version. Prints the folder holding the binaries on its
# last line.
set -euo pipefail

KUBE_VERSION=1.20.2
# HOME may be unset (cron, some CI runners): the passwd entry has it.
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE_ROOT=${KINGEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kingest}
DEST="$CACHE_ROOT/kube/$KUBE_VERSION"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { printf 'kube-binaries: %s\n' "$*" >&2; }

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in etcd "${BINARIES[@]}"; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || { log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b"; exit 1; }
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

[ "$(id -u)" = 0 ] || { log "building the Kubernetes binaries needs root (apt-get); or set KUBEBUILDER_ASSETS"; exit 1; }

apt_updated=
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then apt-get update -qq >&2; apt_updated=1; fi
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

apt_install etcd-server
mkdir -p "$DEST"
ln -sfn "$(command -v etcd)" "$DEST/etcd"

missing=()
for b in "${BINARIES[@]}"; do [ -x "$DEST/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$DEST"
  exit 0
fi

start=$(date +%s)
log "building ${missing[*]} $KUBE_VERSION (once per machine, ~10 minutes)"
if [ ! -f /etc/apt/sources.list.d/debian-src.sources ]; then
  cat > /etc/apt/sources.list.d/debian-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_updated=
fi
if [ -z "$apt_updated" ]; then apt-get update -qq >&2; apt_updated=1; fi
apt_install golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev

work=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source --download-only kubernetes >&2
tar xzf kubernetes_*.orig.tar.gz
cd kubernetes-$KUBE_VERSION
# The vendored reflect2 v1.0.1 makes a Go >= 1.18 build crash at run time; Debian's 1.0.2 fixes it.
rm -rf vendor/github.com/modern-go/reflect2
mkdir -p vendor/github.com/modern-go/reflect2
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
   /usr/share/gocode/src/github.com/modern-go/reflect2/*.s vendor/github.com/modern-go/reflect2/
mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
what=$(printf 'cmd/%s ' "${missing[@]}")
GOPATH=$PWD/.go CGO_ENABLED=0 HOME=$(mktemp -d) make WHAT="${what% }" >&2
for b in "${missing[@]}"; do install -m 0755 "_output/bin/$b" "$DEST/"; done
log "built in $(( $(date +%s) - start )) s into $DEST"
echo "$DEST"

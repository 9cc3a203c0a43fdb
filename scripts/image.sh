#!/usr/bin/env bash
# Build the kingest image from the project's Dockerfile with podman, as the test platform and
# `make demo` run it. Prints the image reference on its last line.
#
#   image.sh         the kingest image
#   image.sh pause   the node's sandbox ("pause") image, localhost/pause:3.2: registry.k8s.io
#                    is unreachable here, so it is a 15-line static C program
#
# The tag is a hash of the build's inputs (Dockerfile, lock files, pyproject.toml, README.md,
# runner/, operator/), so the image is rebuilt only when one of them changes.
#
# The Dockerfile's base image is python:3.11-slim-bookworm. No container registry is reachable
# on the project's machines, so unless KINGEST_BASE_IMAGE names a base podman already has,
# an equivalent base (Debian bookworm + Python 3.11) is made once with debootstrap from
# Debian's mirror and cached as a podman image. `docker build .` stays the users' path.
#
# Needs root (apt-get, podman, debootstrap). Environment:
#   KINGEST_BASE_IMAGE  a podman image to build on instead of the debootstrap base
#   KINGEST_CACHE       cache folder (default ~/.cache/kingest)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
# HOME may be unset (cron, some CI runners): the passwd entry has it.
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE_ROOT=${KINGEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kingest}
DEBOOTSTRAP_BASE=localhost/kingest-base:bookworm-python3.11
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'image: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "building the image needs root (apt-get, podman); run as root"; exit 1; }

apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# podman with runc: crun's setrlimit(RLIMIT_NPROC) needs CAP_SYS_RESOURCE, which root lacks here.
apt_install podman runc debootstrap uidmap
PODMAN=(podman --runtime runc)

pause_image() {
  local tag=localhost/pause:3.2 b
  if ! "${PODMAN[@]}" image exists "$tag"; then
    apt_install gcc libc6-dev
    b=$(mktemp -d)
    cat > "$b/pause.c" <<'C'
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>
static void down(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction d = {0}, r = {0};
  d.sa_handler = down; sigaction(SIGINT, &d, NULL); sigaction(SIGTERM, &d, NULL);
  r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
}
C
    gcc -Os -static -o "$b/pause" "$b/pause.c" && strip "$b/pause"
    printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$b/Containerfile"
    "${PODMAN[@]}" build -q --pull=never -t "$tag" "$b" >/dev/null
    rm -rf "$b"
  fi
  echo "$tag"
}

if [ "${1:-}" = pause ]; then
  pause_image
  exit 0
fi

inputs_hash() {
  cd "$REPO"
  find Dockerfile requirements.lock requirements-build.lock pyproject.toml README.md runner operator \
      -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12
}

TAG=localhost/kingest:dev-$(inputs_hash)
if "${PODMAN[@]}" image exists "$TAG"; then
  echo "$TAG"
  exit 0
fi

base=${KINGEST_BASE_IMAGE:-}
if [ -z "$base" ]; then
  base=$DEBOOTSTRAP_BASE
  if ! "${PODMAN[@]}" image exists "$base"; then
    start=$(date +%s)
    log "making the base image $base with debootstrap (once per machine, ~1 minute)"
    root=$(mktemp -d "${TMPDIR:-/tmp}/kingest-base.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
      bookworm "$root" "$MIRROR" >&2
    # What python:3.11-slim leaves out too: package lists, caches, documentation, translations.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*
    tar -C "$root" -c . | "${PODMAN[@]}" import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["python3"]' - "$base" >/dev/null
    rm -rf "$root"
    trap - EXIT
    log "base image made in $(( $(date +%s) - start )) s"
  fi
fi

start=$(date +%s)
log "building $TAG from the Dockerfile on $base"
# The host's CA bundle and pip configuration let pip inside the build reach the package index
# the way it does on this machine.
mounts=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
[ -f /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
for d in /opt/wheels /opt/pypi /opt/pypi-more; do [ -d "$d" ] && mounts+=(-v "$d:$d:ro"); done
"${PODMAN[@]}" build --network host --pull=never "${mounts[@]}" \
  --build-arg PYTHON_IMAGE="$base" -t "$TAG" "$REPO" >&2
log "built in $(( $(date +%s) - start )) s"
# Earlier builds of this checkout are superseded; their layers shared with this one stay.
for old in $("${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' localhost/kingest); do
  case $old in localhost/kingest:dev-*) [ "$old" = "$TAG" ] || "${PODMAN[@]}" rmi "$old" >/dev/null 2>&1 || true ;; esac
done
# So are the untagged images of earlier builds' stages (each ~1 GB); an hour's grace spares
# those of a build running beside this one.
"${PODMAN[@]}" image prune --force --filter until=1h >/dev/null 2>&1 || true
echo "$TAG"

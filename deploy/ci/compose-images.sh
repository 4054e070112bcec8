#!/usr/bin/env bash
# Build every image the compose deployment needs without an image registry (CI's machines
# reach Debian's and Python's package registries, but no image registry):
#
#   deploy/ci/compose-images.sh [--force]
#
# 1. A Debian bookworm base image: `debootstrap --variant=minbase` with Python 3.11, its
#    headers and its venv module (what deploy/Dockerfile and deploy/keystone/Dockerfile need
#    of a base), made an image by `docker import` as stratus-ci-base:bookworm. The root file
#    system is cached as a tarball in ${STRATUS_COMPOSE_CACHE:-~/.cache/stratus/compose},
#    named after its recipe (this script's build_rootfs and the machine's extra CA
#    certificates, hashed), so a rerun imports it in seconds; --force builds it again.
# 2. `docker-compose -f docker-compose.yml -f docker-compose.ci.yml --profile keystone build`
#    of one service per image: the stratus and Keystone images on that base (BASE_IMAGE build
#    argument), and the PostgreSQL, RabbitMQ and HAProxy images built from Debian's packages
#    on it (deploy/compose/), standing in for the official images docker-compose.yml pulls.
#
# The machine's extra CA certificates (/usr/local/share/ca-certificates) go into the base, so
# that pip and apt in the builds trust what this machine trusts (a TLS-inspecting egress proxy).
# DOCKER (default /usr/bin/docker, the daemon's own client) and DOCKER_COMPOSE (default
# docker-compose) name the programs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
DOCKER_COMPOSE=${DOCKER_COMPOSE:-docker-compose}
SUITE=bookworm
MIRROR=${STRATUS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${STRATUS_COMPOSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stratus/compose}
BASE_IMAGE=stratus-ci-base:$SUITE
#: what the base holds besides minbase: Python with its venv module (pip comes with it) and
#: headers (the libvirt binding is compiled), TLS roots
INCLUDE=python3,python3-venv,python3-dev,ca-certificates

FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { echo "compose-images: $*" >&2; }
# debootstrap and chroot need root (CI runs as root; elsewhere, sudo)
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

extra_certs() { find /usr/local/share/ca-certificates -name '*.crt' 2> /dev/null | LC_ALL=C sort; }

recipe_hash() {
    {
        echo "$SUITE $MIRROR $INCLUDE"
        sed -n '/^build_rootfs()/,/^}/p' "$0"
        extra_certs | while read -r cert; do sha256sum "$cert"; done
    } | sha256sum | cut -c1-12
}

build_rootfs() {
    local tarball=$1 work
    work=$(mktemp -d)
    trap 'as_root rm -rf "$work"' RETURN
    log "debootstrap $SUITE (minbase + $INCLUDE) from $MIRROR"
    as_root debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$work/rootfs" "$MIRROR" \
        > "$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        return 1
    }
    extra_certs | while read -r cert; do
        as_root cp "$cert" "$work/rootfs/usr/local/share/ca-certificates/"
    done
    as_root chroot "$work/rootfs" update-ca-certificates > /dev/null
    # pip in a venv made from Debian's Python trusts the system's bundle
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' |
        as_root tee "$work/rootfs/etc/pip.conf" > /dev/null
    as_root chroot "$work/rootfs" apt-get clean
    as_root sh -c 'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/log/*.log \
        "$1"/var/cache/debconf/*-old' - "$work/rootfs"
    mkdir -p "$(dirname "$tarball")"
    as_root tar --numeric-owner -C "$work/rootfs" -c . > "$tarball.part"
    mv "$tarball.part" "$tarball"
}

start=$SECONDS
recipe=$(recipe_hash)
tarball=$CACHE/$SUITE-rootfs-$recipe.tar
if [ "$FORCE" = 1 ] || [ ! -f "$tarball" ]; then
    build_rootfs "$tarball"
    find "$CACHE" -name "$SUITE-rootfs-*.tar" ! -name "$(basename "$tarball")" -delete
    log "root file system built in $((SECONDS - start)) s: $tarball"
else
    log "reusing $tarball"
fi

have=$("$DOCKER" image inspect -f '{{index .Config.Labels "org.stratus.rootfs"}}' \
    "$BASE_IMAGE" 2> /dev/null || true)
if [ "$have" != "$recipe" ] || [ "$FORCE" = 1 ]; then
    "$DOCKER" import \
        --change "LABEL org.stratus.rootfs=$recipe" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        "$tarball" "$BASE_IMAGE" > /dev/null
    log "imported $BASE_IMAGE"
fi

# one service per image: the seven stratus services share stratus-ci:latest (migrate builds it)
SERVICES=(postgres rabbitmq proxy keystone migrate)
log "building the images (docker-compose.ci.yml): ${SERVICES[*]}"
cd "$ROOT"
# docker-compose builds through the first `docker` on PATH: make it the daemon's own client.
# BuildKit: the legacy builder copies the whole file system for every step on vfs (tens of
# seconds each) and sends the whole checkout (.venv too) as the context; BuildKit does neither.
# The builds' output goes to $CACHE/build.log, shown when a build fails.
mkdir -p "$CACHE"
PATH="$(dirname "$DOCKER"):$PATH" DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 \
    "$DOCKER_COMPOSE" -f docker-compose.yml -f docker-compose.ci.yml --profile keystone build \
    "${SERVICES[@]}" > "$CACHE/build.log" 2>&1 || {
    tail -n 80 "$CACHE/build.log" >&2
    log "a build failed: the whole output is in $CACHE/build.log"
    exit 1
}
# on vfs every image is whole on disk: drop the ones these builds replaced
"$DOCKER" image prune -f > /dev/null
log "done in $((SECONDS - start)) s"

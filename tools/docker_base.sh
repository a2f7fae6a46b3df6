#!/usr/bin/env bash
# Makes the Debian base image the Dockerfile runs on, locally, for machines that reach Debian's
# package mirror but no image registry:
#
#   bash tools/docker_base.sh [TAG]      (default: the Dockerfile's RUNTIME_IMAGE)
#
# debootstraps a minimal bookworm (minbase + ca-certificates; docs, man pages and apt lists
# removed) and `docker import`s it under TAG. The root filesystem is kept as a tarball in
# $EPUSDT_DOCKER_CACHE (default /var/cache/epusdt-docker), so a second run — or a fresh Docker
# data root — only re-imports it. Nothing happens when the image already exists.
# Needs root (debootstrap) and a running Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-$(sed -n 's/^ARG RUNTIME_IMAGE=//p' Dockerfile | head -1)}"
[ -n "$tag" ] || { echo "docker_base: no RUNTIME_IMAGE in Dockerfile" >&2; exit 2; }
cache="${EPUSDT_DOCKER_CACHE:-/var/cache/epusdt-docker}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
tarball="$cache/$(echo "$tag" | tr '/:@' '___').tar"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "docker_base: $tag already present"
  exit 0
fi
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null 2>&1 || {
    [ "$(id -u)" = 0 ] || { echo "docker_base: debootstrap is missing and this is not root" >&2; exit 1; }
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  mkdir -p "$cache"
  root="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  echo "docker_base: debootstrap bookworm (minbase) from $mirror"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # What a slim image leaves out: caches, docs, man pages, locales other than C.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
         "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
  tar --numeric-owner -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
fi
echo "docker_base: importing $tarball as $tag"
docker import --change 'CMD ["bash"]' "$tarball" "$tag" >/dev/null
docker image inspect "$tag" --format 'docker_base: {{.RepoTags}} {{.Size}} bytes'

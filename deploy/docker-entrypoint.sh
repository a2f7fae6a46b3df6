#!/bin/sh
# Container entrypoint: `docker run IMAGE [COMMAND…]` runs `epusdt COMMAND…` (default: serve).
#
# The image runs as uid 10001 (epusdt). Started as root instead (`--user 0`, e.g. with bind
# mounts a host user owns), it first gives the data and key directories to epusdt, then drops to
# epusdt with no capabilities and no new privileges, so the gateway never runs as root.
set -eu
data="${EPUSDT_DATA_DIR:-/var/lib/epusdt/data}"
key_file="${EPUSDT_MASTER_KEY_FILE:-}"

if [ "$(id -u)" = 0 ]; then
  for dir in "$data" ${key_file:+"$(dirname "$key_file")"}; do
    mkdir -p "$dir"
    if [ "$(stat -c %u "$dir")" != 10001 ] || find "$dir" ! -user 10001 -print -quit | grep -q .; then
      echo "docker-entrypoint: giving $dir to epusdt (uid 10001)" >&2
      chown -R 10001:10001 "$dir"
    fi
    chmod 0700 "$dir"
  done
  exec setpriv --reuid=10001 --regid=10001 --clear-groups --no-new-privs \
    --inh-caps=-all --bounding-set=-all /usr/local/bin/epusdt "$@"
fi
exec /usr/local/bin/epusdt "$@"

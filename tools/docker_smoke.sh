#!/usr/bin/env bash
# Docker smoke test: the runtime image and docker-compose.yaml (sqlite profile) as an operator
# runs them.
#
#   bash tools/docker_smoke.sh [BINARY]
#
# 1. Finds a Docker engine, or starts one (`dockerd` with its own data root, socket and no
#    bridge or iptables changes; stopped again at the end). Installs Debian's docker.io,
#    docker-compose and debootstrap first when they are missing and this is root.
# 2. Makes the Debian base image locally (tools/docker_base.sh: debootstrap + docker import,
#    cached) — no image registry is needed.
# 3. Builds the runtime image from BINARY (default: a `cargo build --release` binary), fed in
#    through the Dockerfile's BINARY=prebuilt stage.
# 4. Starts the compose stack (profile sqlite) from a fresh .env in a temporary project
#    directory, waits for the container's HEALTHCHECK to report healthy, checks the gateway
#    does not run as root and owns its volumes, adds a wallet, creates an order through the v1
#    API, restarts the container and finds the order again (status waiting, same amount).
#    Before that, `docker run --user 0` on a root-owned bind mount: the entrypoint hands it to
#    uid 10001 and the gateway runs as that user.
# 5. Points the TRON watcher at a node whose token has the wrong decimals (the watcher stops as
#    failed) and expects the HEALTHCHECK to report unhealthy. Removes the stack and its volumes.
#
# Exit status: 0 passed, 1 failed, 77 skipped (no engine can start here: the reason is printed
# on a "SKIP:" line). Knobs: EPUSDT_DOCKER_KEEP=1 keeps the stack for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

say() { printf '==> docker smoke: %s\n' "$*"; }
skip() { echo "SKIP: docker smoke: $*"; exit 77; }
die() { echo "FAIL: docker smoke: $*" >&2; exit 1; }
t0=$SECONDS
# One smoke at a time on a machine: they share the engine this script may start and stop.
exec 9>/tmp/epusdt-docker-smoke.lock
flock 9

# --- 1. tools and engine ----------------------------------------------------------------------
need_pkgs=()
[ -x /usr/bin/docker ] || need_pkgs+=(docker.io)
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need_pkgs+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_pkgs[*]} (Debian packages)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
      || skip "could not install ${need_pkgs[*]}"
  else
    skip "${need_pkgs[*]} missing and cannot be installed here (not root or no apt-get)"
  fi
fi
# Debian's docker CLI builds with BuildKit on its own (a newer CLI without buildx cannot).
docker_cli=/usr/bin/docker
export DOCKER_BUILDKIT=1
if docker compose version >/dev/null 2>&1; then compose_cli=(docker compose); else compose_cli=(docker-compose); fi

started_dockerd=""
if ! "$docker_cli" info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || skip "no Docker engine answers and starting dockerd needs root"
  export DOCKER_HOST=unix:///run/docker-epusdt.sock
  if ! "$docker_cli" info >/dev/null 2>&1; then
    say "starting dockerd (data root /var/lib/docker-epusdt)"
    mkdir -p /var/lib/docker-epusdt
    dockerd --data-root /var/lib/docker-epusdt --exec-root /run/docker-epusdt \
      --pidfile /run/docker-epusdt.pid -H "$DOCKER_HOST" \
      --bridge=none --iptables=false --ip-masq=false \
      >/var/tmp/docker-epusdt.log 2>&1 &
    started_dockerd=$!
    for _ in $(seq 1 60); do
      "$docker_cli" info >/dev/null 2>&1 && break
      kill -0 "$started_dockerd" 2>/dev/null || break
      sleep 0.5
    done
    "$docker_cli" info >/dev/null 2>&1 || {
      tail -5 /var/tmp/docker-epusdt.log
      skip "dockerd does not start here (log above, /var/tmp/docker-epusdt.log)"
    }
  fi
fi
docker() { "$docker_cli" "$@"; }

project="epusdt-smoke-$$"
work="$(mktemp -d /tmp/epusdt-docker-smoke.XXXXXX)"
compose() { "${compose_cli[@]}" -p "$project" -f "$repo/docker-compose.yaml" -f "$work/smoke.yaml" --project-directory "$work" "$@"; }
cleanup() {
  local rc=$?
  if [ "${EPUSDT_DOCKER_KEEP:-0}" = 1 ]; then
    echo "kept: project $project in $work (DOCKER_HOST=${DOCKER_HOST:-default})"
  else
    if [ "$rc" -ne 0 ] && [ -f "$work/smoke.yaml" ]; then compose logs --no-color --tail=40 2>/dev/null || true; fi
    [ -f "$work/smoke.yaml" ] && compose --profile sqlite down -v --remove-orphans >/dev/null 2>&1 || true
    [ -n "${node_pid:-}" ] && kill "$node_pid" 2>/dev/null || true
    rm -rf "$work" "$repo/target-docker"
  fi
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null || true
    wait "$started_dockerd" 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
# Leftovers of a smoke that was killed before its cleanup ran.
stale="$(docker ps -aq --filter name=epusdt-smoke- 2>/dev/null || true)"
[ -z "$stale" ] || docker rm -f $stale >/dev/null 2>&1 || true
stale="$(docker volume ls -q --filter name=epusdt-smoke- 2>/dev/null || true)"
[ -z "$stale" ] || docker volume rm $stale >/dev/null 2>&1 || true

# --- 2. base image ----------------------------------------------------------------------------
bash tools/docker_base.sh

# --- 3. runtime image -------------------------------------------------------------------------
binary="${1:-}"
if [ -z "$binary" ]; then
  say "cargo build --release --locked --bin epusdt"
  cargo build --release --locked --bin epusdt
  binary="${CARGO_TARGET_DIR:-target}/release/epusdt"
fi
[ -x "$binary" ] || die "no binary at $binary"
mkdir -p target-docker
install -m 0755 "$binary" target-docker/epusdt
strip target-docker/epusdt 2>/dev/null || true
image="epusdt:smoke"
say "building $image from $binary (BINARY=prebuilt)"
docker build -q --network none --build-arg BINARY=prebuilt -t "$image" . >/dev/null
say "image $(docker image inspect "$image" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"

# A root-owned bind mount, started as root: the entrypoint gives it to uid 10001 and drops to it.
mkdir -p "$work/bind" && touch "$work/bind/left-by-root"
docker run --rm --network none --user 0 --cap-drop ALL \
  --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER --cap-add SETUID --cap-add SETGID \
  -v "$work/bind:/var/lib/epusdt/data" "$image" migrate >/dev/null 2>&1 \
  || die "migrate as root on a bind mount failed"
[ -z "$(find "$work/bind" ! -uid 10001)" ] && [ -f "$work/bind/epusdt.db" ] \
  || die "the entrypoint left files not owned by uid 10001: $(ls -lan "$work/bind")"
say "a root-owned bind mount is handed to uid 10001"

# --- 4. compose stack -------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port="$(free_port)"
token="smoke$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# The operator's .env (compose.env.example filled in), on a loopback port of this machine.
cat >"$work/.env" <<EOF
COMPOSE_PROFILES=sqlite
GATEWAY_IMAGE=$image
EPUSDT_APP_URI=http://127.0.0.1:$port
EPUSDT_HTTP_LISTEN=127.0.0.1:$port
EPUSDT_API_AUTH_TOKEN=$token
EPUSDT_FORCED_USDT_RATE=7.2
EPUSDT_LOG_LEVEL=info
EOF
chmod 600 "$work/.env"
# In place of docker-compose.override.yaml (published ports): the host's network, so traffic
# stays on loopback and no bridge is made, and a faster health probe.
cat >"$work/smoke.yaml" <<'EOF'
services:
  epusdt:
    network_mode: host
    healthcheck:
      interval: 2s
      timeout: 5s
      start_period: 0s
      retries: 3
networks:
  default:
    external: true
    name: host
EOF

cid=""
health() { docker inspect --format '{{.State.Health.Status}} {{.RestartCount}}' "$cid"; }
wait_health() {
  local want="$1" secs="$2" got="" deadline=$((SECONDS + $2))
  cid="$(compose ps -q epusdt)"
  [ -n "$cid" ] || die "no epusdt container"
  while [ "$SECONDS" -lt "$deadline" ]; do
    got="$(health 2>/dev/null || true)"
    [ "${got% *}" = "$want" ] && return 0
    # A gateway that exits restarts in a loop (restart: unless-stopped): fail now, not later.
    [ "${got#* }" = 0 ] || die "the gateway exited and was restarted (health '${got% *}')"
    sleep 0.5
  done
  die "container health is '${got% *}', wanted '$want' within ${secs}s"
}
api() { curl -fsS --max-time 10 "http://127.0.0.1:$port$1" "${@:2}"; }

# The postgres profile resolves too (its images come from a registry, so it is not started here).
compose --profile postgres config -q || die "docker-compose.yaml (profile postgres) does not resolve"
say "compose up (profile sqlite, project $project)"
compose --profile sqlite up -d --no-build epusdt >/dev/null
wait_health healthy 60
say "healthy after $((SECONDS - t0)) s"

# PID 1 is the gateway itself (the entrypoint execs it): real, effective, saved and fs uid.
uids="$(docker exec "$cid" sh -c 'grep ^Uid: /proc/1/status; cat /proc/1/comm' | tr -s '\t\n' '  ')"
[ "$uids" = "Uid: 10001 10001 10001 10001 epusdt " ] || die "the gateway is not epusdt running as uid 10001: $uids"
owners="$(compose exec -T epusdt find /var/lib/epusdt/data /var/lib/epusdt/keys ! -user 10001 2>/dev/null || true)"
[ -z "$owners" ] || die "files not owned by epusdt: $owners"
compose exec -T epusdt /usr/local/bin/epusdt wallet add --network tron --address TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t >/dev/null

sign() { printf '%s%s' "$1" "$token" | md5sum | cut -d' ' -f1; }
order_id="smoke-$$"
fields="amount=72&notify_url=https://merchant.example/notify&order_id=$order_id&trade_type=usdt.trc20"
body="$(printf '{"order_id":"%s","amount":72,"notify_url":"https://merchant.example/notify","trade_type":"usdt.trc20","signature":"%s"}' "$order_id" "$(sign "$fields")")"
created="$(api /api/v1/order/create-transaction -H 'content-type: application/json' -d "$body")"
trade_id="$(printf '%s' "$created" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status_code"]==200, d; print(d["data"]["trade_id"])')" \
  || die "order creation failed: $created"
amount="$(printf '%s' "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["actual_amount"])')"
say "order $trade_id created ($amount USDT)"

compose restart epusdt >/dev/null
wait_health healthy 60
status="$(api "/pay/check-status/$trade_id")"
printf '%s' "$status" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["data"]["status"]==1, d' \
  || die "order $trade_id not found waiting after restart: $status"
again="$(api /api/v1/order/create-transaction -H 'content-type: application/json' -d "$body")"
printf '%s' "$again" | python3 -c "import json,sys; d=json.load(sys.stdin)['data']; assert d['trade_id']=='$trade_id' and d['actual_amount']==$amount, d" \
  || die "the repeated create did not return the same order after restart: $again"
say "order $trade_id found again after restart"

# --- 5. a failed chain watcher makes the container unhealthy ----------------------------------
# A TRON node (java-tron's HTTP API) that errs at the start-up check, so the gateway starts, and
# then reports a token with 18 decimals instead of 6: the watcher stops as failed.
node_port="$(free_port)"
python3 - "$node_port" >/dev/null 2>&1 <<'EOF' &
import http.server, json, sys
asked = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global asked
        self.rfile.read(int(self.headers.get("content-length") or 0))
        reply = {"Error": "class java.lang.NullPointerException : null"}
        if self.path.endswith("/triggerconstantcontract"):
            asked += 1
            if asked > 1:
                reply = {"result": {"result": True}, "constant_result": ["%064x" % 18]}
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
node_pid=$!
echo "EPUSDT_NETWORKS__TRON__RPC_URLS=http://127.0.0.1:$node_port" >>"$work/.env"
compose --profile sqlite up -d --no-build epusdt >/dev/null
wait_health unhealthy 60
said="$(compose exec -T epusdt /usr/local/bin/epusdt healthcheck 2>&1 || true)"
case "$said" in
  *"chain tron: error"*"networks.tron.decimals"*) ;;
  *) die "epusdt healthcheck does not name the failed tron watcher: $said" ;;
esac
say "a failed chain watcher makes the container unhealthy"

say "passed in $((SECONDS - t0)) s"

#!/usr/bin/env bash
# Create-order throughput and latency, measured with wrk over loopback against the release binary.
#
#   bash tools/bench_create.sh [sqlite|postgres] [duration_s] [connections]
#
# Every request is a distinct, correctly signed epusdt v1 create-transaction (unique order_id,
# random amount), generated up front by python3 so wrk only replays bodies. Prints wrk's summary
# (requests/s, latency percentiles incl. p99) and how many replies were `status_code: 200`.
# In the same run: /health (the yardstick), check-status and the checkout page of one order,
# and the gateway's RSS idle and after the creates; `BENCH ...` lines feed tools/bench.sh.
# PostgreSQL: uses postgres://postgres@127.0.0.1:5432 (override with EPUSDT_BENCH_POSTGRES_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"; duration="${2:-15}"; conns="${3:-32}"
# PROFILE=debug uses the test build (tools/bench.sh --short); the figures are the release's.
profile="${PROFILE:-release}"
if [ "$profile" = release ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/epusdt-release}"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/epusdt-target}"
fi

command -v wrk >/dev/null || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
# (debug: the same build as the tests, so a warm test build is reused as is)
if [ "$profile" = release ]; then build=(--release --bin epusdt); dir=release; else build=(--workspace --all-targets); dir=debug; fi
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build "${build[@]}" --locked
bin="$CARGO_TARGET_DIR/$dir/epusdt"

work=$(mktemp -d); trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export EPUSDT_HTTP_LISTEN="127.0.0.1:$port" EPUSDT_DATA_DIR="$work/data" EPUSDT_API_AUTH_TOKEN=bench-token-0123456789 \
       EPUSDT_FORCED_USDT_RATE=7.2 EPUSDT_LOG_LEVEL=warn EPUSDT_ALLOW_PRIVATE_CALLBACKS=true \
       EPUSDT_RATE_LIMIT_PER_MINUTE=0 EPUSDT_RATE_LIMIT_ROUTE_PER_MINUTE=0 EPUSDT_RATE_LIMIT_MERCHANT_PER_MINUTE=0
# (rate limits off: one load generator on one IP is exactly what they exist to stop)
if [ "$backend" = postgres ]; then
  base="${EPUSDT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"
  db="epusdt_bench_$$"
  psql "$base/postgres" -qc "CREATE DATABASE $db" >/dev/null
  export EPUSDT_DATABASE_URL="$base/$db"
fi
# Ten receive wallets (random valid TRON addresses), so the run measures creation, not a full
# slot space: each wallet offers every amount once among waiting orders.
for a in $(python3 - <<'PY'
import hashlib, os
alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
def b58(b):
    n = int.from_bytes(b, "big"); out = ""
    while n: n, r = divmod(n, 58); out = alphabet[r] + out
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + out
for _ in range(10):
    raw = b"\x41" + os.urandom(20)
    print(b58(raw + hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4]))
PY
); do
  "$bin" wallet add --network tron --address "$a" >/dev/null
done
"$bin" serve >"$work/serve.log" 2>&1 & pid=$!
for _ in $(seq 100); do curl -fs "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done

# Pre-signed bodies: far more than wrk can send in the run.
python3 - "$work/bodies.txt" "$((duration * 20000 + 20000))" <<'PY'
import hashlib, json, random, sys
path, n = sys.argv[1], int(sys.argv[2])
token = "bench-token-0123456789"
with open(path, "w") as f:
    for i in range(n):
        amount = f"{random.randint(1000, 99999) / 100:.2f}"
        p = {"order_id": f"B{i}", "amount": amount.rstrip('0').rstrip('.'), "notify_url": "http://127.0.0.1:9/notify"}
        sig = hashlib.md5(("&".join(f"{k}={p[k]}" for k in sorted(p)) + token).encode()).hexdigest()
        body = {"order_id": p["order_id"], "amount": float(amount), "notify_url": p["notify_url"], "signature": sig}
        f.write(json.dumps(body) + "\n")
PY

cat > "$work/bench.lua" <<'LUA'
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end
function init(args)
  idx = tid; ok = 0; bad = 0
  wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
end
function request()
  local b = bodies[idx]; idx = idx + 2
  return wrk.format(nil, nil, nil, b)
end
function response(status, headers, body)
  if string.find(body, '"status_code":200', 1, true) then ok = ok + 1 else
    bad = bad + 1
    if bad <= 3 then io.write("non-200 reply: " .. status .. " " .. body .. "\n") end
  end
end
function done(summary, latency, requests)
  local ok_total, bad_total = 0, 0
  for _, t in ipairs(threads) do ok_total = ok_total + t:get("ok"); bad_total = bad_total + t:get("bad") end
  io.write(string.format("replies status_code 200: %d, other: %d\n", ok_total, bad_total))
  io.write(string.format("p50 %.2f ms, p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
# CPU time (clock ticks, user + system) of the gateway, and of the PostgreSQL backends serving
# the bench database: CPU per request is the figure the machine's load disturbs least.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
db_ticks() {
  local t=0 p
  if [ "$backend" = postgres ]; then
    for p in $(pgrep -f "postgres: .* $db " || true); do t=$((t + $(ticks "$p"))); done
  fi
  echo $t
}
# One machine-readable line per figure for tools/bench.sh: BENCH <name> key=value ...
report() { # name, wrk output file
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$2")
  p50=$(awk '/^ *50%/ {print $2; exit}' "$2"); p99=$(awk '/^ *99%/ {print $2; exit}' "$2")
  echo "BENCH $1 backend=$backend rps=$rps p50=$p50 p99=$p99"
}
# BENCH_PERF=<file>: perf record of the gateway during the create run, or during the run that
# BENCH_PERF_STEP names (check_status, checkout_page, ...); BENCH_PERF_ALL=1: of the whole
# machine, e.g. PostgreSQL's backends and wrk too (`perf report --sort comm,dso`).
# BENCH_PERF_CALLERS=1 records call graphs too (DWARF: large files, keep the run short;
# `perf report --children`, `perf report --no-children -S <symbol> -G`).
perf_if() { # step name
  [ -n "${BENCH_PERF:-}" ] && [ "${BENCH_PERF_STEP:-create}" = "$1" ] || return 0
  if [ "${BENCH_PERF_ALL:-0}" = 1 ]; then target=(-a); else target=(-p "$pid"); fi
  if [ "${BENCH_PERF_CALLERS:-0}" = 1 ]; then target+=(--call-graph dwarf,16384); fi
  perf record -F 999 "${target[@]}" -o "$BENCH_PERF" -- sleep "$duration" >/dev/null 2>&1 &
}
plain() { # name, url: wrk with a plain GET
  perf_if "$1"
  wrk -t2 -c"$conns" -d"${duration}s" --latency "$2" > "$work/$1.txt"
  report "$1" "$work/$1.txt"
}
echo "BENCH rss_idle backend=$backend kb=$(rss_kb)"
echo "backend=$backend duration=${duration}s connections=$conns (wrk -t2)"
# The same run measures /health (a database and queue ping) as the yardstick.
plain health "http://127.0.0.1:$port/health"
perf_if create
cpu0=$(ticks $pid); db0=$(db_ticks)
BODIES="$work/bodies.txt" wrk -t2 -c"$conns" -d"${duration}s" --latency -s "$work/bench.lua" \
  "http://127.0.0.1:$port/api/v1/order/create-transaction" | tee "$work/create.txt"
report create "$work/create.txt"
cpu1=$(ticks $pid); db1=$(db_ticks)
python3 - "$work/create.txt" "$((cpu1 - cpu0))" "$((db1 - db0))" "$(getconf CLK_TCK)" "$backend" <<'PY'
import re, sys
text, gw, db, hz, backend = open(sys.argv[1]).read(), *map(int, sys.argv[2:5]), sys.argv[5]
n = int(re.search(r"(\d+) requests in", text).group(1))
us = lambda t: f"{t * 1e6 / hz / max(n, 1):.0f}"
print(f"BENCH create_cpu backend={backend} requests={n} gateway_us_per_req={us(gw)} db_us_per_req={us(db)}")
PY
live=$(grep -o 'replies status_code 200: [0-9]*' "$work/create.txt" | awk '{print $4}')
echo "BENCH rss_live backend=$backend kb=$(rss_kb) live_orders=${live:-0}"
# Read path: the status poll and the payer's page of one order (waiting, then paid when a
# test payment helper is available — the page of a waiting order is the common case).
trade=$(python3 - "$port" <<'PY'
import hashlib, json, sys, urllib.request
port, token = sys.argv[1], "bench-token-0123456789"
p = {"order_id": "READ-1", "amount": "42", "notify_url": "http://127.0.0.1:9/notify"}
p["signature"] = hashlib.md5(("&".join(f"{k}={p[k]}" for k in sorted(p)) + token).encode()).hexdigest()
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/order/create-transaction",
                             data=json.dumps(p).encode(), headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["data"]["trade_id"])
PY
)
plain check_status "http://127.0.0.1:$port/pay/check-status/$trade"
plain checkout_page "http://127.0.0.1:$port/pay/checkout-counter/$trade"
# The same order once final (cancelled here; paid is alike): it never changes again, so it is
# answered from memory.
python3 - "$port" "$trade" <<'PY'
import hashlib, json, sys, urllib.request
port, trade, token = sys.argv[1], sys.argv[2], "bench-token-0123456789"
p = {"trade_id": trade}
p["signature"] = hashlib.md5(("&".join(f"{k}={p[k]}" for k in sorted(p)) + token).encode()).hexdigest()
req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/order/cancel-transaction",
                             data=json.dumps(p).encode(), headers={"Content-Type": "application/json"})
r = json.load(urllib.request.urlopen(req))
assert r["status_code"] == 200 and r["data"]["status"] == 4, r
PY
plain check_status_final "http://127.0.0.1:$port/pay/check-status/$trade"
plain checkout_page_final "http://127.0.0.1:$port/pay/checkout-counter/$trade"
kill -TERM $pid; wait $pid || true
errors=$(grep -c '"level":"ERROR"' "$work/serve.log" || true)
echo "gateway ERROR log lines: $errors"; grep '"level":"ERROR"' "$work/serve.log" | head -3 || true
if [ "$backend" = postgres ]; then psql "$base/postgres" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null || true; fi

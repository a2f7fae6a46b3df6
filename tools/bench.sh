#!/usr/bin/env bash
# Every performance figure of wiki/BENCHMARKS.md in one command, printed as one table:
#
#   bash tools/bench.sh            # release build, 15 s per wrk run, 20 payments on anvil
#   bash tools/bench.sh --short    # the test build, 2 s runs, 3 payments: checks that the
#                                  # benchmark runs (CI), the figures mean nothing
#
# Create-order (SQLite and PostgreSQL, 32 connections, every request a distinct signed order,
# 10 wallets) beside /health of the same run (the ratio is the figure to compare across
# machines), check-status and the checkout page, RSS idle and after the creates
# (tools/bench_create.sh); the scale benchmark (benches/scale.rs); catch-up (benches/catchup.rs)
# and callback latency on anvil (tools/bench_chain.sh).
# PostgreSQL is skipped when 127.0.0.1:5432 does not answer (EPUSDT_BENCH_POSTGRES_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

short=0
[ "${1:-}" = --short ] && short=1
if [ $short = 1 ]; then
  export PROFILE=debug BENCH_ROUNDS=3 BENCH_BLOCKS=300 BENCH_RANGE=50 BENCH_BSC_BLOCKS=600 BENCH_ORDERS=2000; duration=2
else
  export PROFILE="${PROFILE:-release}" BENCH_ROUNDS="${BENCH_ROUNDS:-20}"; duration="${BENCH_SECONDS:-15}"
fi
out=$(mktemp); trap 'rm -f "$out"' EXIT
reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

backends=(sqlite)
if reachable 127.0.0.1 5432; then backends+=(postgres); else echo "PostgreSQL not reachable: skipped" >&2; fi
for b in "${backends[@]}"; do
  echo "==> create-order, /health, read path: $b ($PROFILE, ${duration}s per run)" >&2
  env -u EPUSDT_ANVIL bash tools/bench_create.sh "$b" "$duration" 32 | tee -a "$out" | grep -E '^(BENCH|non-200|gateway ERROR)' >&2
done
# A million orders (BENCH_ORDERS) through the service layer: create / check-status / sweeper /
# crediting before and after (benches/scale.rs; release in the full run, the test build in --short).
if [ "$PROFILE" = release ]; then
  scale=(env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/epusdt-release}" cargo bench --locked --bench scale)
else
  scale=(env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/epusdt-target}" cargo test --locked --bench scale)
fi
export BENCH_ORDERS="${BENCH_ORDERS:-1000000}"
scale_log=$(mktemp); trap 'rm -f "$out" "$scale_log"' EXIT
run_scale() {
  if ! "${scale[@]}" >"$scale_log" 2>&1; then
    tail -30 "$scale_log" >&2; echo "the scale benchmark failed" >&2; exit 1
  fi
  grep '^BENCH' "$scale_log" | tee -a "$out" >&2
}
for b in "${backends[@]}"; do
  echo "==> scale: $BENCH_ORDERS orders, $b ($PROFILE)" >&2
  if [ "$b" = postgres ]; then
    base="${EPUSDT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}"; db="epusdt_scale_$$"
    psql "$base/postgres" -qc "CREATE DATABASE $db" >/dev/null
    BENCH_DATABASE_URL="$base/$db" run_scale
    psql "$base/postgres" -qc "DROP DATABASE $db" >/dev/null || true
  else
    run_scale
  fi
done

# Catch-up (benches/catchup.rs) follows PROFILE; the detection latency is dominated by the poll
# interval, not the CPU: it runs in the test build unless CHAIN_PROFILE=release (building the
# whole test binary in release takes many minutes).
echo "==> chain watcher on anvil (catch-up $PROFILE, latency ${CHAIN_PROFILE:-debug}, $BENCH_ROUNDS payments)" >&2
LATENCY_PROFILE="${CHAIN_PROFILE:-debug}" bash tools/bench_chain.sh | tee -a "$out" >&2

python3 - "$out" <<'PY'
import re, sys
rows, chain = {}, []
for line in open(sys.argv[1]):
    if not line.startswith("BENCH "):
        continue
    parts = line.split()
    if parts[1] != "scale" and "=" in parts[2] and parts[2].startswith("backend="):
        kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
        rows[(kv["backend"], parts[1])] = kv
    else:
        chain.append(line[6:].strip())
print()
print(f"| figure | backend | req/s | p50 | p99 | × /health |")
print(f"|---|---|---:|---:|---:|---:|")
for (backend, name), kv in sorted(rows.items()):
    if "rps" not in kv:
        continue
    health = float(rows.get((backend, "health"), {}).get("rps") or 0)
    ratio = f"{float(kv['rps']) / health:.2f}" if health else "—"
    print(f"| {name} | {backend} | {kv['rps']} | {kv['p50']} | {kv['p99']} | {ratio} |")
for (backend, name), kv in sorted(rows.items()):
    if "kb" in kv:
        extra = f" ({kv['live_orders']} live orders)" if "live_orders" in kv else ""
        print(f"| {name} | {backend} | RSS {int(kv['kb']) / 1024:.1f} MB{extra} | | | |")
print()
for c in chain:
    print("-", c)
PY

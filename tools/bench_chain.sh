#!/usr/bin/env bash
# Measures the EVM chain watcher on a local anvil node (SQLite):
#  - catch-up speed (benches/catchup.rs): blocks/s over a 10,000-block backlog with transfers
#    scattered in it, the watcher starting at block 1, until the cursor reaches the confirmed
#    head; and 24 h of BSC (28,800 blocks) through an RPC double answering in 50 ms and
#    capping eth_getLogs at 1,000 blocks;
#  - detection latency (tests/api/chain_evm/bench.rs, the test build): ERC-20 transfer mined →
#    order paid / → merchant callback received, with confirmations=2 mined right after it.
#
#   bash tools/bench_chain.sh                    # catch-up in the test build (as the tests)
#   PROFILE=release bash tools/bench_chain.sh    # catch-up in release (`cargo bench`; the first
#                                                # build of the library takes minutes)
#
# Knobs: BENCH_BLOCKS (10000) BENCH_RANGE (1000, the ethereum default max_block_range)
# BENCH_BSC_BLOCKS (28800) BENCH_RPC_LATENCY_MS (50) BENCH_ONLY (catch-up | bsc-day)
# BENCH_COUNT=1 (RPC requests per method of the catch-up); BENCH_POLL_MS (1000) BENCH_ROUNDS
# (10) for the latency, LATENCY_PROFILE (debug; release builds the whole test binary).
set -euo pipefail
cd "$(dirname "$0")/.."

. tools/anvil.sh
[ -n "${EPUSDT_ANVIL:-}" ] || exit 1
# Fail instead of skipping when anvil is missing.
export EPUSDT_TEST_REQUIRE_SERVICES=1
export BENCH_BLOCKS="${BENCH_BLOCKS:-10000}" BENCH_RANGE="${BENCH_RANGE:-1000}" \
  BENCH_BSC_BLOCKS="${BENCH_BSC_BLOCKS:-28800}"

echo "anvil: $("$EPUSDT_ANVIL" --version | head -1); catch-up: ${PROFILE:-debug}; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
log=$(mktemp); trap 'rm -f "$log"' EXIT
if [ "${PROFILE:-debug}" = release ]; then
  catchup=(env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/epusdt-release}" cargo bench --locked --bench catchup)
else
  catchup=(env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/epusdt-target}" cargo test --locked --bench catchup)
fi
if ! "${catchup[@]}" >"$log" 2>&1; then
  tail -30 "$log" >&2; echo "the catch-up benchmark failed" >&2; exit 1
fi
grep '^BENCH' "$log"

latency=()
[ "${LATENCY_PROFILE:-debug}" = release ] && latency=(--release)
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/epusdt-target}" \
  cargo test --locked "${latency[@]}" --test api -- --ignored --nocapture --test-threads=1 \
  chain_evm::bench:: 2>&1 | grep -E '^BENCH|panicked|error' || true

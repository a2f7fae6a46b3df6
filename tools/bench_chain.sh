#!/usr/bin/env bash
# Measures the EVM chain watcher on a local anvil node (SQLite):
#  - detection latency: ERC-20 transfer mined → order paid / → merchant callback received,
#    with confirmations=2 mined right after the transfer;
#  - catch-up speed: blocks/s over a 10,000-block backlog with transfers scattered in it, the
#    watcher starting at cursor 0, until the cursor reaches the confirmed head.
#
#   bash tools/bench_chain.sh                    # debug build (as the tests)
#   PROFILE=release bash tools/bench_chain.sh    # optimised build (first build takes minutes)
#
# Knobs: BENCH_POLL_MS (1000) BENCH_ROUNDS (10) BENCH_BLOCKS (10000) BENCH_RANGE (1000, the
# ethereum default max_block_range).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/epusdt-target}"

. tools/anvil.sh
[ -n "${EPUSDT_ANVIL:-}" ] || exit 1
# Fail instead of skipping when anvil is missing.
export EPUSDT_TEST_REQUIRE_SERVICES=1

profile=()
[ "${PROFILE:-debug}" = release ] && profile=(--release)
echo "anvil: $("$EPUSDT_ANVIL" --version | head -1); profile: ${PROFILE:-debug}; $(nproc) CPUs"
cargo test "${profile[@]}" --test api -- --ignored --nocapture --test-threads=1 chain_evm::bench:: 2>&1 |
  grep -E '^BENCH|panicked|error' || true

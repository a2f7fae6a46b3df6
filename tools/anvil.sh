# Sourced by tools/test.sh and the chain benchmarks: installs anvil (Foundry's local EVM node) from
# the npm registry, pinned, once into ~/.cache/epusdt-anvil, and exports EPUSDT_ANVIL (the tests and
# benchmarks find it there). An EPUSDT_ANVIL already set wins. Leaves EPUSDT_ANVIL unset (with a
# message) when no package fits this machine or npm is missing.
ANVIL_VERSION=1.7.1
case "$(uname -m)" in
  x86_64 | amd64) anvil_pkg=anvil-linux-amd64 ;;
  aarch64 | arm64) anvil_pkg=anvil-linux-arm64 ;;
  *) anvil_pkg= ;;
esac
if [ -z "${EPUSDT_ANVIL:-}" ] && [ -n "$anvil_pkg" ]; then
  anvil_dir="$HOME/.cache/epusdt-anvil"
  anvil_bin="$anvil_dir/node_modules/@foundry-rs/$anvil_pkg/bin/anvil"
  if [ ! -x "$anvil_bin" ] && command -v npm >/dev/null 2>&1; then
    echo "==> installing anvil $ANVIL_VERSION (chain watcher tests)"
    npm install --prefix "$anvil_dir" --no-audit --no-fund --loglevel=error \
      "@foundry-rs/$anvil_pkg@$ANVIL_VERSION" || echo "npm install of anvil failed" >&2
  fi
  if [ -x "$anvil_bin" ]; then
    export EPUSDT_ANVIL="$anvil_bin"
  fi
fi
if [ -z "${EPUSDT_ANVIL:-}" ]; then
  echo "anvil not installed (no npm, or no package for $(uname -m)): set EPUSDT_ANVIL" >&2
fi

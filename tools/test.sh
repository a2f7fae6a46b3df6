#!/usr/bin/env bash
# The whole test suite, from a fresh clone:   bash tools/test.sh
#
# Installs what the tests need (Debian's chromium + playwright-core for the checkout page test),
# then runs every test on SQLite and — when reachable — on PostgreSQL (127.0.0.1:5432), MySQL/
# MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379). Tests for an unreachable service are
# skipped with a "SKIP:" line, unless EPUSDT_TEST_REQUIRE_SERVICES=1 (CI sets it), which makes
# them fail instead. Override the servers with EPUSDT_TEST_POSTGRES_URL, EPUSDT_TEST_MYSQL_URL,
# EPUSDT_TEST_REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Headless Chromium for the checkout page test (Debian package; no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing Debian chromium (checkout page test)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium not installed and cannot apt-get it: the browser test will skip" >&2
  fi
fi
# nginx and Caddy for the reverse-proxy config test (Debian packages; neither is started as a
# service). The Docker smoke (tools/docker_smoke.sh) installs docker.io and friends itself.
if ! command -v caddy >/dev/null 2>&1 || ! [ -x /usr/sbin/nginx ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing Debian nginx-light and caddy (proxy config test)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light caddy >/dev/null
  else
    echo "nginx/caddy not installed and cannot apt-get them: the proxy config test will skip" >&2
  fi
fi
if command -v npm >/dev/null 2>&1 && [ ! -d tests/browser/node_modules/playwright-core ]; then
  say "installing playwright-core (drives Debian chromium)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

# pg_dump/psql and mysqldump/mysql for the backup/restore tests (Debian packages).
for pair in "pg_dump postgresql-client" "mysqldump mariadb-client"; do
  set -- $pair
  if ! command -v "$1" >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      say "installing Debian $2 (backup tests)"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
      echo "$1 not installed and cannot apt-get $2: the backup tests on that database fail" >&2
    fi
  fi
done

# promtool (Debian package `prometheus`) for the alert-rule test (tests/api/monitoring.rs). The
# package's server is not wanted: no recommends, and policy-rc.d keeps apt from starting it.
if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing Debian prometheus (promtool, for the alert rules test)"
    policy_added=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
      policy_added=1
    fi
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    echo "promtool not installed and cannot apt-get it: the alert rules test will fail under EPUSDT_TEST_REQUIRE_SERVICES=1" >&2
  fi
fi

# anvil (Foundry's local EVM node) for the chain watcher tests: npm package, pinned.
. tools/anvil.sh
# Runs before the tests gave anvil its own --cache-path left its spilled states here, gigabytes
# per long backlog: clear what a finished run left.
find "$HOME/.foundry/anvil/tmp" -mindepth 1 -maxdepth 1 -name 'anvil-state-*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true

reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
for svc in "PostgreSQL 127.0.0.1 5432" "MySQL 127.0.0.1 3306" "Redis 127.0.0.1 6379"; do
  set -- $svc
  if reachable "$2" "$3"; then echo "service $1 on $2:$3: reachable"; else echo "service $1 on $2:$3: NOT reachable (its tests skip unless EPUSDT_TEST_REQUIRE_SERVICES=1)"; fi
done

# One integration-test binary (tests/api: every area, one module each, one link step), plus
# tests/architecture.rs (the layer check) and tests/bench_failover.rs (its test is ignored).
# Every test makes its own database on the servers and leaves it: drop what earlier runs left
# (PostgreSQL refuses to drop a database in use; on MySQL only those whose tables are over an
# hour old go — a concurrent run keeps its own either way).
if command -v psql >/dev/null 2>&1; then
  for d in $(psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'epusdt\_t\_%'" 2>/dev/null); do
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE \"$d\"" >/dev/null 2>&1 || true
  done
fi
if command -v mysql >/dev/null 2>&1; then
  for d in $(mysql -h 127.0.0.1 -u root -N -e "SELECT table_schema FROM information_schema.tables WHERE table_schema LIKE 'epusdt\_t\_%' GROUP BY table_schema HAVING MAX(create_time) < NOW() - INTERVAL 1 HOUR" 2>/dev/null); do
    mysql -h 127.0.0.1 -u root -e "DROP DATABASE \`$d\`" >/dev/null 2>&1 || true
  done
fi

say "cargo test (SQLite, PostgreSQL, MySQL, Redis, binary, browser)"
cargo test --workspace --all-targets --locked

#!/usr/bin/env bash
# Checks an epusdt deployment and prints what to fix.
#
#   bash tools/security_check.sh [DEPLOYMENT_DIR]     (default: the current directory)
#
# Reads DEPLOYMENT_DIR/.env and the process environment (EPUSDT_* wins, like the gateway does),
# then checks: file permissions of .env and the master key file, default or weak secrets, that a
# master key exists (and is backed up), the Redis password, callbacks to private addresses,
# listening on all interfaces without a proxy, and plain-http public URLs.
# Exit status: 0 = nothing to fix, 1 = at least one FAIL, 2 = usage error. WARN lines are advice.
set -uo pipefail

dir="${1:-.}"
[ -d "$dir" ] || { echo "usage: $0 [DEPLOYMENT_DIR]" >&2; exit 2; }
cd "$dir" || exit 2

fails=0; warns=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
warn() { echo "WARN: $*"; warns=$((warns + 1)); }
ok()   { echo "ok:   $*"; }

# Effective value of a key: EPUSDT_<KEY> env, else .env (upstream lower-case name), else "".
declare -A dotenv=()
if [ -f .env ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    case "$line" in ''|'#'*) continue ;; esac
    key="${line%%=*}"; val="${line#*=}"
    key="$(echo "$key" | tr '[:upper:]' '[:lower:]' | xargs)"
    val="${val%\"}"; val="${val#\"}"; val="${val%\'}"; val="${val#\'}"
    dotenv["$key"]="$val"
  done < .env
fi
get() {
  local env_name="EPUSDT_$(echo "$1" | tr '[:lower:]' '[:upper:]')"
  if [ -n "${!env_name:-}" ]; then printf '%s' "${!env_name}"; else printf '%s' "${dotenv[$1]:-}"; fi
}
mode_of() { stat -c '%a' "$1" 2>/dev/null; }
group_or_other_access() { local m; m=$(mode_of "$1"); [ -n "$m" ] && [ $((8#$m & 8#077)) -ne 0 ]; }

# 1. .env permissions
if [ -f .env ]; then
  if group_or_other_access .env; then
    fail ".env is mode $(mode_of .env): it holds tokens; run: chmod 600 .env"
  else ok ".env is mode $(mode_of .env)"; fi
else
  warn "no .env in $(pwd): checking the process environment only"
fi

# 2. master key
data_dir="$(get data_dir)"; data_dir="${data_dir:-./data}"
key_file="$(get master_key_file)"; key_file="${key_file:-$data_dir/master.key}"
if [ -n "$(get master_key)" ]; then
  ok "master key comes from EPUSDT_MASTER_KEY / master_key"
  if [ -f "$key_file" ]; then warn "both master_key and a key file $key_file exist: the gateway refuses ambiguous keys; remove one"; fi
elif [ -f "$key_file" ]; then
  if group_or_other_access "$key_file"; then
    fail "master key file $key_file is mode $(mode_of "$key_file"); run: chmod 600 $key_file"
  else ok "master key file $key_file is mode $(mode_of "$key_file")"; fi
  warn "make sure $key_file is backed up separately from the database: without it merchant secrets cannot be decrypted"
  [ -f "$key_file.previous" ] && warn "$key_file.previous is left from a key rotation: delete it once every instance has restarted"
else
  fail "no master key: neither master_key nor $key_file exists; start the gateway once to generate one (then back it up) or set EPUSDT_MASTER_KEY=\$(openssl rand -hex 32)"
fi

# 3. merchant token strength
token="$(get api_auth_token)"
case "$token" in
  "") ok "api_auth_token not set (legacy v1 API disabled)" ;;
  epusdt_password_xasddawqe|123456|12345678|password|changeme|change-me*|your*token*|test*)
    fail "api_auth_token is a default/example value: set a long random one: openssl rand -hex 24" ;;
  *)
    if [ "${#token}" -lt 16 ]; then
      fail "api_auth_token is only ${#token} characters: use at least 16 random characters (openssl rand -hex 24)"
    else ok "api_auth_token is ${#token} characters"; fi ;;
esac

# 4. Redis password
redis="$(get redis_url)"
[ -z "$redis" ] && [ -n "$(get redis_host)" ] && redis="redis://$(get redis_host)"
if [ -n "$redis" ]; then
  if [ -z "$(get redis_passwd)" ] && ! [[ "$redis" =~ ^rediss?://[^@/]*:[^@/]+@ ]]; then
    fail "Redis has no password in redis_url: use redis://:PASSWORD@host:6379/0 and requirepass on the server"
  else ok "Redis URL carries a password"; fi
fi

# 5. database password
db="$(get database_url)"
if [[ "$db" =~ ^(postgres|postgresql|mysql):// ]] && ! [[ "$db" =~ ://[^@/]*:[^@/]+@ ]]; then
  warn "database_url has no password: fine for a local socket/trust setup, not across a network"
fi

# 6. listening address
listen="$(get http_listen)"; listen="${listen:-127.0.0.1:8000}"
case "$listen" in
  :*|0.0.0.0:*|\[::\]:*)
    if [ -n "$(get trusted_proxies)" ]; then warn "listening on all interfaces ($listen) with trusted_proxies set: make sure a firewall lets only the proxy reach this port"
    else fail "listening on all interfaces ($listen) without a proxy: bind 127.0.0.1 and put a TLS reverse proxy (nginx, caddy) in front (then set trusted_proxies)"; fi ;;
  *) ok "listening on $listen" ;;
esac

# 7. public URL and callbacks
app_uri="$(get app_uri)"
case "$app_uri" in
  https://*) ok "app_uri is https" ;;
  ""|http://127.0.0.1*|http://localhost*) warn "app_uri is ${app_uri:-unset (http://127.0.0.1:8000)}: payers need the public https URL" ;;
  http://*) fail "app_uri is plain http ($app_uri): payers' browsers and merchants should reach the gateway over https" ;;
esac
if [ "$(get allow_private_callbacks)" = "true" ]; then
  fail "allow_private_callbacks=true lets merchants make the gateway call internal addresses (SSRF): set it to false outside development"
fi

echo
echo "$fails to fix, $warns warnings"
[ "$fails" -eq 0 ]

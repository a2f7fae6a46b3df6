#!/usr/bin/env bash
# Checks an epusdt deployment and prints what to fix.
#
#   bash tools/security_check.sh [DEPLOYMENT_DIR]     (default: the current directory)
#
# Reads DEPLOYMENT_DIR/epusdt.toml (or $EPUSDT_CONFIG), DEPLOYMENT_DIR/.env and the process
# environment, later wins, like the gateway does; then checks: file permissions of .env,
# epusdt.toml, the master key file and everything in the data directory (database, WAL, audit
# trail, logs), default or weak secrets, that a master key exists (and is backed up), the Redis
# password, callbacks to private addresses, listening on all interfaces without a proxy,
# plain-http public URLs, and that the gateway can take a payment at all: a watched chain, an
# enabled wallet and a fiat rate (read from a SQLite database with sqlite3, or PostgreSQL with
# psql, when those are installed).
# A systemd install keeps its .env in /etc/epusdt and its data in /var/lib/epusdt/data:
#   EPUSDT_DATA_DIR=/var/lib/epusdt/data bash tools/security_check.sh /etc/epusdt
# Exit status: 0 = nothing to fix, 1 = at least one FAIL, 2 = usage error. WARN lines are advice.
set -uo pipefail

dir="${1:-.}"
[ -d "$dir" ] || { echo "usage: $0 [DEPLOYMENT_DIR]" >&2; exit 2; }
cd "$dir" || exit 2

fails=0; warns=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
warn() { echo "WARN: $*"; warns=$((warns + 1)); }
ok()   { echo "ok:   $*"; }
note() { echo "note: $*"; }

# epusdt.toml: `key = value` lines, `[section]` tables and dotted keys, stored as the .env form
# (`[networks.tron]` + `rpc_urls = [..]` → networks__tron__rpc_urls). Strings lose their quotes;
# arrays and inline tables stay as written.
declare -A toml=()
toml_file="${EPUSDT_CONFIG:-epusdt.toml}"
if [ -f "$toml_file" ]; then
  section=""
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"; line="${line%"${line##*[![:space:]]}"}"
    case "$line" in ''|'#'*) continue ;; esac
    if [[ "$line" =~ ^\[([^]]+)\]$ ]]; then
      section="${BASH_REMATCH[1]//\"/}"; section="${section// /}"; section="${section//./__}"
      continue
    fi
    [[ "$line" =~ ^([A-Za-z0-9_.\"-]+)[[:space:]]*=[[:space:]]*(.*)$ ]] || continue
    key="${BASH_REMATCH[1]//\"/}"; key="${key//./__}"; val="${BASH_REMATCH[2]}"
    [ -n "$section" ] && key="${section}__${key}"
    case "$val" in
      \"*) val="${val#\"}"; val="${val%%\"*}" ;;
      \'*) val="${val#\'}"; val="${val%%\'*}" ;;
      \[*|\{*) ;;
      *) val="${val%%#*}"; val="${val%"${val##*[![:space:]]}"}" ;;
    esac
    toml["$(echo "$key" | tr '[:upper:]' '[:lower:]')"]="$val"
  done < "$toml_file"
fi

# Effective value of a key: EPUSDT_<KEY> env, else .env (upstream lower-case name), else
# epusdt.toml, else "".
declare -A dotenv=() compose_env=()
if [ -f .env ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    case "$line" in ''|'#'*) continue ;; esac
    key="${line%%=*}"; val="${line#*=}"
    key="$(echo "$key" | tr '[:upper:]' '[:lower:]' | xargs)"
    val="${val%\"}"; val="${val#\"}"; val="${val%\'}"; val="${val#\'}"
    # The compose .env (deploy/compose.env.example) holds EPUSDT_<KEY> names and compose's own.
    case "$key" in
      epusdt_*) key="${key#epusdt_}" ;;
      compose_profiles|postgres_password|redis_password) compose_env["$key"]="$val"; continue ;;
    esac
    dotenv["$key"]="$val"
  done < .env
fi
# A Docker Compose deployment: docker-compose.yaml beside the .env; the data lives in a volume.
compose=""
[ -f docker-compose.yaml ] || [ -f docker-compose.yml ] || [ -f compose.yaml ] && compose=1
get() {
  local env_name="EPUSDT_$(echo "$1" | tr '[:lower:]' '[:upper:]')"
  if [ -n "${!env_name:-}" ]; then printf '%s' "${!env_name}"
  elif [ -n "${dotenv[$1]:-}" ]; then printf '%s' "${dotenv[$1]}"
  else printf '%s' "${toml[$1]:-}"; fi
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

# 1b. epusdt.toml permissions, when it holds a secret
if [ -f "$toml_file" ]; then
  secret_keys=""
  for k in "${!toml[@]}"; do
    case "$k" in
      api_auth_token|master_key|master_key_previous|tg_bot_token|jwt_secret|*api_key|*passwd|*password) [ -n "${toml[$k]}" ] && secret_keys+=" $k" ;;
      redis_url|database_url) [[ "${toml[$k]}" =~ ://[^@/]*:[^@/]+@ ]] && secret_keys+=" $k" ;;
    esac
  done
  if [ -n "$secret_keys" ] && group_or_other_access "$toml_file"; then
    fail "$toml_file is mode $(mode_of "$toml_file") and holds secrets ($(echo $secret_keys | tr ' ' ',')): run: chmod 600 $toml_file"
  else ok "$toml_file read (mode $(mode_of "$toml_file"))"; fi
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
elif [ -n "$compose" ]; then
  note "the master key is in the gateway's volume: check it exists and copy it off this host (wiki/RUNBOOK.md, Key custody): docker compose exec epusdt ls -l /var/lib/epusdt/data/master.key"
else
  fail "no master key: neither master_key nor $key_file exists; start the gateway once to generate one (then back it up) or set EPUSDT_MASTER_KEY=\$(openssl rand -hex 32)"
fi

# 2b. compose: the postgres profile's passwords
if [ -n "$compose" ] && [[ ",${compose_env[compose_profiles]:-}," == *,postgres,* ]]; then
  for k in postgres_password redis_password; do
    v="${compose_env[$k]:-}"
    if [ "${#v}" -lt 16 ]; then
      if [ -z "$v" ]; then what=missing; else what="only ${#v} characters"; fi
      fail "$(echo "$k" | tr '[:lower:]' '[:upper:]') in .env is $what: the postgres profile needs a long random one (openssl rand -hex 24)"
    else ok "$(echo "$k" | tr '[:lower:]' '[:upper:]') is ${#v} characters"; fi
  done
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

# 8. data directory: the database, its WAL, the queue, the audit trail and logs are private
if [ -d "$data_dir" ]; then
  if [ $((8#$(mode_of "$data_dir") & 8#077)) -ne 0 ]; then
    fail "data directory $data_dir is mode $(mode_of "$data_dir"): run: chmod 700 $data_dir"
  fi
  world="$(find "$data_dir" -mindepth 1 -perm /o+rwx 2>/dev/null | head -5)"
  group="$(find "$data_dir" -mindepth 1 -perm /g+rwx 2>/dev/null | head -5)"
  if [ -n "$world" ]; then
    fail "others can read files in the data directory (database, audit trail, keys): $(echo $world | tr ' ' ','); run: chmod -R go-rwx $data_dir"
  elif [ -n "$group" ]; then
    warn "the group can read files in the data directory: $(echo $group | tr ' ' ','); run: chmod -R go-rwx $data_dir"
  else ok "data directory $data_dir is private"; fi
elif [ -n "$compose" ]; then
  note "the data directory is the gateway's volume (the image keeps it mode 0700, owned by uid 10001)"
else
  note "no data directory at $data_dir (set EPUSDT_DATA_DIR to check another)"
fi

# 9. can it take a payment: a watched chain, an enabled wallet, a fiat rate
chains=""
for src in "${!dotenv[@]}" "${!toml[@]}" $(compgen -v EPUSDT_NETWORKS__ 2>/dev/null | tr '[:upper:]' '[:lower:]' | sed 's/^epusdt_//'); do
  [[ "$src" =~ ^networks__([a-z0-9_-]+)__rpc_urls$ ]] || continue
  value="$(get "$src")"
  [ -n "$value" ] && [ "$value" != "[]" ] && chains+=" ${BASH_REMATCH[1]}"
done
chains="$(echo $chains | tr ' ' '\n' | sort -u | xargs)"
if [ -n "$chains" ]; then ok "watching: $chains"
else warn "no chain is watched (no networks.<name>.rpc_urls): no payment is ever detected; set networks__tron__rpc_urls=… in .env or [networks.tron] rpc_urls in epusdt.toml"; fi

# Wallets and admin-set rates live in the database: ask it read-only where a client is installed.
db_url="$(get database_url)"; db_url="${db_url:-sqlite://$data_dir/epusdt.db}"
db_query() {
  case "$db_url" in
    sqlite:*)
      local file="${db_url#sqlite:}"; file="${file#//}"; file="${file%%\?*}"
      [ -f "$file" ] && command -v sqlite3 >/dev/null 2>&1 || return 1
      sqlite3 -readonly -batch -noheader "file:$file?mode=ro" "$1" 2>/dev/null ;;
    postgres://*|postgresql://*)
      command -v psql >/dev/null 2>&1 || return 1
      psql "$db_url" -XAtqc "$1" 2>/dev/null ;;
    *) return 1 ;;
  esac
}
wallets="$(db_query "SELECT count(*) FROM wallets WHERE enabled = true" || db_query "SELECT count(*) FROM wallets WHERE enabled = 1")" || wallets=""
if [ -z "$wallets" ] && [ -n "$compose" ]; then note "the database is inside the stack: check wallets with \`docker compose exec epusdt epusdt wallet list\`"
elif [ -z "$wallets" ]; then note "could not read the database ($(echo "$db_url" | sed -E 's#://[^@/]*@#://***@#')): check wallets with \`epusdt wallet list\`"
elif [ "$wallets" -eq 0 ]; then warn "no wallet is enabled: orders fail with 10003; add one: epusdt wallet add --network tron --address T…"
else ok "$wallets enabled wallet(s)"; fi
if [ -n "$(get forced_usdt_rate)" ] || [ -n "$(get usdt_rates)" ]; then ok "a fiat rate is configured"
else
  rates="$(db_query "SELECT count(*) FROM settings WHERE key LIKE 'rate.%'")" || rates=""
  if [ -n "$rates" ] && [ "$rates" -gt 0 ]; then ok "$rates admin-set fiat rate(s)"
  else warn "no fiat rate (forced_usdt_rate, usdt_rates${rates:+ or epusdt rate set}): orders in fiat fail with 10006; set forced_usdt_rate=7.2 or run: epusdt rate set CNY 7.2"; fi
fi

echo
echo "$fails to fix, $warns warnings"
[ "$fails" -eq 0 ]

//! `.env` with the upstream epusdt key names: our keys in lower case, `networks__<name>__<field>`,
//! the upstream Go listen form `:8000`, and the upstream database and Redis keys (`db_type`,
//! `mysql_*`, `postgres_*`, `redis_*`) turned into `database_url` / `redis_url`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use figment::{
    Metadata, Profile, Provider,
    value::{Dict, Map, Value},
};

use super::ConfigError;

/// Our keys as `.env` spells them (lower case); every one is a [`Config`] key (tested).
pub(super) const DOTENV_KEYS: &[&str] = &[
    "http_listen",
    "app_uri",
    "http_header_timeout_secs",
    "http_idle_timeout_secs",
    "http_max_connections",
    "http_max_connections_per_ip",
    "data_dir",
    "log_dir",
    "log_level",
    "log_max_size_mb",
    "log_max_files",
    "audit_retention_days",
    "job_retention_days",
    "retention_interval_secs",
    "sqlite_checkpoint_secs",
    "database_url",
    "redis_url",
    "api_auth_token",
    "order_expiration_time",
    "forced_usdt_rate",
    "usdt_rates",
    "default_network",
    "amount_step",
    "amount_max_tries",
    "amount_precision",
    "notify_max_attempts",
    "notify_retry_base_secs",
    "notify_timeout_secs",
    "allow_private_callbacks",
    "admin_require_totp",
    "admin_listen",
    "metrics_listen",
    "metrics_token",
    "payment_clock_tolerance_secs",
    "secret_overlap_secs",
    "slot_reuse_grace_secs",
    "callback_requeue_after_secs",
    "queue_workers",
    "queue_name",
    "shutdown_timeout_secs",
    "tg_bot_token",
    "tg_manage",
    "tg_api_url",
    "tg_notify",
    "tg_lag_alert_blocks",
    "tg_poll",
    "master_key",
    "master_key_file",
    "master_key_previous",
    "rate_limit_per_minute",
    "rate_limit_route_per_minute",
    "rate_limit_routes",
    "rate_limit_merchant_per_minute",
    "rate_limit_redis_failure",
    "trusted_proxies",
];

/// Upstream keys (assimon/epusdt and GMWalletApp/epusdt `.env`) we do not honour, and why.
/// Keys read into `database_url` / `redis_url` (`db_type`, `mysql_*`, `postgres_*`, `redis_*`)
/// and the ones mapped onto ours (`queue_concurrency`, `order_notice_max_retry`) are not here.
const IGNORED: &[(&str, &str)] = &[
    (
        "app_name",
        "no branding setting yet; the checkout shows epusdt",
    ),
    ("app_debug", "no debug mode; set log_level=debug"),
    (
        "http_access_log",
        "no access log; requests are logged at log_level=debug",
    ),
    ("sql_debug", "set log_level=info,sqlx=debug to log SQL"),
    (
        "static_path",
        "the checkout's assets are built into the binary",
    ),
    ("runtime_root_path", "runtime files live in data_dir"),
    (
        "runtime_sqlite_filename",
        "no separate runtime store; everything lives in the main database",
    ),
    (
        "log_save_path",
        "logs go to log_dir (default <data_dir>/logs)",
    ),
    (
        "log_max_size",
        "set log_max_size_mb instead (log files rotate daily and at that size)",
    ),
    (
        "log_max_age",
        "log files are pruned by count: set log_max_files instead",
    ),
    ("max_backups", "set log_max_files instead"),
    (
        "sqlite_database_filename",
        "our SQLite file is <data_dir>/epusdt.db; bring upstream's data over with `epusdt import upstream --from sqlite://<file>`",
    ),
    (
        "queue_level_critical",
        "one job queue without priority levels",
    ),
    (
        "queue_level_default",
        "one job queue without priority levels",
    ),
    ("queue_level_low", "one job queue without priority levels"),
    ("queue_poll_interval_ms", "job workers poll every 500 ms"),
    (
        "callback_retry_base_seconds",
        "callback retries double from notify_retry_base_secs (default 180 s, 10 attempts over more than 24 h); upstream's are capped at 5 minutes",
    ),
    (
        "api_rate_url",
        "no rate source; set forced_usdt_rate or usdt_rates, or `epusdt rate set CNY 7.2`",
    ),
    (
        "tg_proxy",
        "the bot connects directly; set HTTPS_PROXY in the environment to use a proxy",
    ),
    (
        "redis_pool_size",
        "Redis connections are managed automatically",
    ),
    (
        "redis_max_retries",
        "Redis connections are managed automatically",
    ),
    (
        "redis_idle_timeout",
        "Redis connections are managed automatically",
    ),
    (
        "install",
        "no install wizard: add merchants with `epusdt merchant add` or `epusdt import upstream`",
    ),
];

/// Why an upstream key with a value is not honoured, if it is one we know of.
fn ignored_reason(key: &str) -> Option<&'static str> {
    if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == key) {
        return Some(why);
    }
    let db = ["mysql_", "postgres_", "sqlite_"];
    if db.iter().any(|p| key.starts_with(p)) {
        if key.ends_with("_table_prefix") {
            return Some(
                "our tables have fixed names; `epusdt import upstream --table-prefix` reads prefixed upstream tables",
            );
        }
        if key.ends_with("_max_idle_conns")
            || key.ends_with("_max_open_conns")
            || key.ends_with("_max_life_time")
        {
            return Some("the connection pool is sized by epusdt (20 per instance, 8 on SQLite)");
        }
    }
    None
}

/// Upstream keys read into `database_url` / `redis_url` (when no URL is given).
fn is_connection_key(key: &str) -> bool {
    key == "db_type"
        || ["mysql_", "postgres_"].iter().any(|p| {
            ["host", "port", "user", "passwd", "database"]
                .iter()
                .any(|f| key == format!("{p}{f}"))
        })
        || ["redis_host", "redis_port", "redis_passwd", "redis_db"].contains(&key)
}

/// `.env` with upstream epusdt key names. Upstream keys we understand are mapped onto ours;
/// every other key with a value is reported once as ignored, with the reason.
pub(super) struct DotEnv {
    path: PathBuf,
    dict: Dict,
    /// `ignored: <key> (<why>)` lines, one per key with a value that has no effect.
    pub(super) ignored: Vec<String>,
}

impl DotEnv {
    pub(super) fn read(path: &Path) -> Result<Self, ConfigError> {
        let iter = dotenvy::from_path_iter(path)
            .map_err(|e| ConfigError::Parse(format!("cannot read {}: {e}", path.display())))?;
        let mut raw = BTreeMap::new();
        for item in iter {
            let (k, v) =
                item.map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?;
            raw.insert(k.to_ascii_lowercase(), v);
        }
        let mut dict = Dict::new();
        for (k, v) in &raw {
            if !DOTENV_KEYS.contains(&k.as_str()) {
                continue;
            }
            let v = match k.as_str() {
                // Upstream Go style `:8000` means every interface.
                "http_listen" | "admin_listen" | "metrics_listen" if v.starts_with(':') => {
                    format!("0.0.0.0{v}")
                }
                // Secrets and free text stay strings even if they look like numbers.
                "api_auth_token"
                | "tg_bot_token"
                | "tg_api_url"
                | "tg_notify"
                | "app_uri"
                | "database_url"
                | "redis_url"
                | "master_key"
                | "master_key_previous"
                | "metrics_token" => {
                    // Empty means unset, as upstream's own `.env.example` ships `api_auth_token=`.
                    if !v.trim().is_empty() {
                        dict.insert(k.clone(), Value::from(v.clone()));
                    }
                    continue;
                }
                _ => v.clone(),
            };
            if !v.trim().is_empty() {
                let value = v
                    .parse::<Value>()
                    .unwrap_or_else(|_| Value::from(v.clone()));
                dict.insert(k.clone(), value);
            }
        }
        // `networks__<name>__<field>=…` → `networks.<name>.<field>` (the env form without
        // prefix); `networks__<name>__tokens__<symbol>__<field>` nests one level further.
        let mut networks = Dict::new();
        for (k, v) in &raw {
            let Some(path) = k.strip_prefix("networks__") else {
                continue;
            };
            let path: Vec<&str> = path.split("__").collect();
            if path.len() < 2 {
                continue;
            }
            let field = path[path.len() - 1];
            let value = match field {
                // Secrets, URLs, addresses and names stay strings even if they look like numbers.
                "api_key" | "rpc_urls" | "usdt_contract" | "contract" | "display_name"
                | "explorer_tx_url" | "kind" => Value::from(v.clone()),
                _ => v
                    .parse::<Value>()
                    .unwrap_or_else(|_| Value::from(v.clone())),
            };
            insert_path(&mut networks, &path, value);
        }
        if !networks.is_empty() {
            dict.insert("networks".into(), Value::from(networks));
        }
        let mut ignored = Vec::new();
        let mut ignore = |k: &str, why: &str| ignored.push(format!("ignored: {k} ({why})"));
        // Upstream's worker count is ours (1..=64 here).
        if let Some(v) = raw
            .get("queue_concurrency")
            .filter(|v| !v.trim().is_empty())
            && !raw.contains_key("queue_workers")
        {
            match v.trim().parse::<i64>() {
                Ok(n @ 1..=64) => {
                    dict.insert("queue_workers".into(), Value::from(n));
                }
                _ => ignore(
                    "queue_concurrency",
                    "not 1..=64; queue_workers (default 4) is in force",
                ),
            }
        }
        // Upstream's retries after the first callback; 0 (its default) would mean one attempt
        // only, which loses callbacks on a merchant's brief outage.
        if let Some(v) = raw
            .get("order_notice_max_retry")
            .filter(|v| !v.trim().is_empty())
            && !raw.contains_key("notify_max_attempts")
        {
            match v.trim().parse::<i64>() {
                Ok(n @ 1..) => {
                    dict.insert("notify_max_attempts".into(), Value::from((n + 1).min(50)));
                }
                _ => ignore(
                    "order_notice_max_retry",
                    "0 would mean a single callback attempt; notify_max_attempts (default 10) is in force",
                ),
            }
        }
        let known = super::known_keys();
        for (k, v) in &raw {
            // A switch left off asks for nothing we lack.
            let off = matches!(v.trim(), "false" | "0")
                && matches!(
                    k.as_str(),
                    "app_debug" | "http_access_log" | "sql_debug" | "install"
                );
            if v.trim().is_empty()
                || off
                || DOTENV_KEYS.contains(&k.as_str())
                || k.starts_with("networks__")
                || is_connection_key(k)
                || matches!(k.as_str(), "queue_concurrency" | "order_notice_max_retry")
            {
                continue;
            }
            let why = match ignored_reason(k) {
                Some(why) => why,
                None if known.contains(k) => {
                    "not read from .env; set it in epusdt.toml or as EPUSDT_<KEY>"
                }
                None => "not an epusdt key; see `epusdt config check`",
            };
            ignore(k, why);
        }
        // Upstream database keys → database_url, unless database_url is given.
        if !raw.contains_key("database_url") {
            // (scheme and key prefix, default user, default port); sqlite: no URL. Without
            // `db_type`, `mysql_*` keys mean MySQL, as upstream reads them.
            let has = |prefix: &str| {
                raw.iter()
                    .any(|(k, v)| k.starts_with(prefix) && !v.trim().is_empty())
            };
            let db_type = raw.get("db_type").map(|s| s.trim().to_ascii_lowercase());
            let server = match db_type.as_deref() {
                Some("mysql" | "mariadb") => Some(("mysql", "root", "3306")),
                Some("postgres" | "postgresql" | "pgsql") => Some(("postgres", "postgres", "5432")),
                Some("sqlite" | "sqlite3") => None,
                None | Some("") if has("mysql_") => Some(("mysql", "root", "3306")),
                None | Some("") => None,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        key: "db_type",
                        message: format!(
                            "`{other}` in {} is not a database type; use mysql, postgres or sqlite",
                            path.display()
                        ),
                    });
                }
            };
            if let Some((scheme, user, port)) = server {
                let g = |field: &str, d: &str| {
                    raw.get(&format!("{scheme}_{field}"))
                        .filter(|v| !v.trim().is_empty())
                        .cloned()
                        .unwrap_or_else(|| d.into())
                };
                let url = server_url(
                    scheme,
                    &g("host", "127.0.0.1"),
                    &g("port", port),
                    &g("user", user),
                    &g("passwd", ""),
                    &g("database", "epusdt"),
                )
                .map_err(|message| ConfigError::Invalid {
                    key: "db_type",
                    message: format!("{scheme}_* keys in {}: {message}", path.display()),
                })?;
                dict.insert("database_url".into(), Value::from(url));
            }
        }
        if !raw.contains_key("redis_url")
            && let Some(host) = raw.get("redis_host").filter(|h| !h.is_empty())
        {
            let port = raw
                .get("redis_port")
                .cloned()
                .unwrap_or_else(|| "6379".into());
            let db = raw.get("redis_db").cloned().unwrap_or_else(|| "0".into());
            let passwd = raw.get("redis_passwd").cloned().unwrap_or_default();
            let url = server_url("redis", host, &port, "", &passwd, &db).map_err(|message| {
                ConfigError::Invalid {
                    key: "redis_host",
                    message: format!("redis_* keys in {}: {message}", path.display()),
                }
            })?;
            dict.insert("redis_url".into(), Value::from(url));
        }
        Ok(Self {
            path: path.to_path_buf(),
            dict,
            ignored,
        })
    }
}

/// `scheme://user:password@host:port/database` with user, password and database percent-encoded
/// (upstream escaped them: a password with `/`, `#` or `@` must not break the URL).
fn server_url(
    scheme: &str,
    host: &str,
    port: &str,
    user: &str,
    password: &str,
    database: &str,
) -> Result<String, String> {
    let mut u = url::Url::parse(&format!("{scheme}://{}:{}", host.trim(), port.trim()))
        .map_err(|e| format!("host `{host}` / port `{port}` do not form an address ({e})"))?;
    if !user.is_empty() {
        u.set_username(user)
            .map_err(|()| format!("user `{user}` cannot be used"))?;
    }
    if !password.is_empty() {
        u.set_password(Some(password))
            .map_err(|()| "the password cannot be used".to_string())?;
    }
    u.path_segments_mut()
        .map_err(|()| "no database path".to_string())?
        .push(database);
    Ok(u.to_string())
}

impl Provider for DotEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!(".env file {}", self.path.display()))
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Inserts `value` at `path` (`["mychain", "tokens", "usdt", "contract"]`), making the dicts
/// on the way; a path through a non-dict value is dropped (figment reports the conflict).
fn insert_path(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            if let Value::Dict(_, d) = dict
                .entry((*first).to_string())
                .or_insert_with(|| Value::from(Dict::new()))
            {
                insert_path(d, rest, value);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use crate::config::{Config, Sources};
    use figment::Jail;

    #[test]
    fn upstream_mysql_keys_become_a_url_and_secrets_are_redacted() {
        Jail::expect_with(|jail| {
            jail.create_file(".env", "db_type=mysql\nmysql_host=db\nmysql_user=u\nmysql_passwd=pw\nmysql_database=e\napi_auth_token=topsecret\n")?;
            let c = Config::load(&Sources::default()).expect("valid");
            assert_eq!(c.database_url.as_deref(), Some("mysql://u:pw@db:3306/e"));
            let shown = serde_json::to_string(&c).expect("json");
            assert!(
                !shown.contains("topsecret") && !shown.contains(":pw@"),
                "{shown}"
            );
            assert!(!format!("{c:?}").contains("topsecret"));
            jail.create_file(
                ".env",
                "db_type=PostgreSQL\npostgres_passwd=pw\npostgres_port=6432\n",
            )?;
            let c = Config::load(&Sources::default()).expect("valid");
            assert_eq!(
                c.database_url.as_deref(),
                Some("postgres://postgres:pw@127.0.0.1:6432/epusdt")
            );
            Ok(())
        });
    }

    #[test]
    fn mysql_keys_without_db_type_mean_mysql_and_passwords_are_escaped() {
        Jail::expect_with(|jail| {
            jail.create_file(
                ".env",
                "mysql_host=db\nmysql_user=shop\nmysql_passwd=p/a#ss@w:rd%\nmysql_database=e\nredis_host=cache\nredis_passwd=r/#@\n",
            )?;
            let c = Config::load(&Sources::default()).expect("valid");
            let db = url::Url::parse(c.database_url.as_deref().expect("a MySQL URL")).unwrap();
            assert_eq!(db.scheme(), "mysql");
            assert_eq!(
                (db.host_str(), db.port(), db.username(), db.path()),
                (Some("db"), Some(3306), "shop", "/e")
            );
            let decoded = |s: &str| {
                url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            assert_eq!(
                decoded(db.password().unwrap()).as_deref(),
                Some("p/a#ss@w:rd%")
            );
            let redis = url::Url::parse(c.redis_url.as_deref().expect("redis")).unwrap();
            assert_eq!(
                (redis.host_str(), redis.port()),
                (Some("cache"), Some(6379))
            );
            assert_eq!(decoded(redis.password().unwrap()).as_deref(), Some("r/#@"));

            jail.create_file(".env", "db_type=oracle\n")?;
            let err = Config::load(&Sources::default()).unwrap_err().to_string();
            assert!(err.contains("db_type") && err.contains("oracle"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn upstream_keys_are_honoured_or_reported_once_with_why() {
        Jail::expect_with(|jail| {
            jail.create_file(
                ".env",
                "app_name=shop\napp_debug=false\ninstall=true\nqueue_concurrency=12\norder_notice_max_retry=4\n\
                 mysql_table_prefix=ep_\nsqlite_max_open_conns=5\ntg_proxy=\napi_auth_token=\nnonsense_key=1\n\
                 db_type=sqlite\n",
            )?;
            let c = Config::load(&Sources::default()).expect("valid");
            assert_eq!((c.queue_workers, c.notify_max_attempts), (12, 5));
            assert!(c.api_auth_token.is_none(), "empty means unset");
            let lines = c.dotenv_ignored.join("\n");
            for key in [
                "app_name",
                "install",
                "mysql_table_prefix",
                "sqlite_max_open_conns",
                "nonsense_key",
            ] {
                assert_eq!(
                    c.dotenv_ignored
                        .iter()
                        .filter(|l| l.starts_with(&format!("ignored: {key} (")))
                        .count(),
                    1,
                    "{key}: {lines}"
                );
            }
            for key in [
                "app_debug",
                "queue_concurrency",
                "order_notice_max_retry",
                "tg_proxy",
                "api_auth_token",
                "db_type",
            ] {
                assert!(!lines.contains(&format!("ignored: {key} ")), "{lines}");
            }
            jail.create_file(".env", "queue_concurrency=500\norder_notice_max_retry=0\n")?;
            let c = Config::load(&Sources::default()).expect("valid");
            assert_eq!((c.queue_workers, c.notify_max_attempts), (4, 10));
            assert_eq!(c.dotenv_ignored.len(), 2, "{:?}", c.dotenv_ignored);
            Ok(())
        });
    }
}

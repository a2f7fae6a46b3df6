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
    "payment_clock_tolerance_secs",
    "slot_reuse_grace_secs",
    "callback_requeue_after_secs",
    "queue_workers",
    "queue_name",
    "shutdown_timeout_secs",
    "tg_bot_token",
    "tg_manage",
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

/// `.env` with upstream epusdt key names. Upstream keys we understand are mapped onto ours;
/// keys of upstream features we do not have are ignored (logged by `config check`).
pub(super) struct DotEnv {
    path: PathBuf,
    dict: Dict,
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
                "http_listen" if v.starts_with(':') => format!("0.0.0.0{v}"),
                // Secrets and free text stay strings even if they look like numbers.
                "api_auth_token"
                | "tg_bot_token"
                | "app_uri"
                | "database_url"
                | "redis_url"
                | "master_key"
                | "master_key_previous" => {
                    dict.insert(k.clone(), Value::from(v.clone()));
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
        // `networks__<name>__<field>=…` → `networks.<name>.<field>` (the env form without prefix).
        let mut networks = Dict::new();
        for (k, v) in &raw {
            let Some((net, field)) = k
                .strip_prefix("networks__")
                .and_then(|rest| rest.split_once("__"))
            else {
                continue;
            };
            let value = match field {
                // Secrets and URLs stay strings even if they look like numbers.
                "api_key" | "rpc_urls" | "usdt_contract" => Value::from(v.clone()),
                _ => v
                    .parse::<Value>()
                    .unwrap_or_else(|_| Value::from(v.clone())),
            };
            if let Value::Dict(_, d) = networks
                .entry(net.to_string())
                .or_insert_with(|| Value::from(Dict::new()))
            {
                d.insert(field.to_string(), value);
            }
        }
        if !networks.is_empty() {
            dict.insert("networks".into(), Value::from(networks));
        }
        // Upstream database keys → database_url, unless database_url is given.
        if !raw.contains_key("database_url") {
            // (scheme and key prefix, default user, default port); sqlite and others: no URL.
            let server = match raw
                .get("db_type")
                .map(|s| s.to_ascii_lowercase())
                .as_deref()
            {
                Some("mysql") => Some(("mysql", "root", "3306")),
                Some("postgres") | Some("postgresql") => Some(("postgres", "postgres", "5432")),
                Some("sqlite") | None | Some(_) => None,
            };
            if let Some((scheme, user, port)) = server {
                let g = |field: &str, d: &str| {
                    raw.get(&format!("{scheme}_{field}"))
                        .cloned()
                        .unwrap_or_else(|| d.into())
                };
                let url = format!(
                    "{scheme}://{}:{}@{}:{}/{}",
                    g("user", user),
                    g("passwd", ""),
                    g("host", "127.0.0.1"),
                    g("port", port),
                    g("database", "epusdt"),
                );
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
            let auth = match raw.get("redis_passwd").filter(|p| !p.is_empty()) {
                Some(p) => format!(":{p}@"),
                None => String::new(),
            };
            dict.insert(
                "redis_url".into(),
                Value::from(format!("redis://{auth}{host}:{port}/{db}")),
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            dict,
        })
    }
}

impl Provider for DotEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!(".env file {}", self.path.display()))
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
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
}

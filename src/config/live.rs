//! The configuration in force, replaceable while the process runs (SIGHUP, `systemctl reload`).
//!
//! [`LiveConfig`] is what `AppState` holds: it dereferences to the current [`Config`], so every
//! `state.config.key` read is a read of the newest accepted configuration, with no call-site
//! change and no guard to hold. Consumers that build something from the config once (the log
//! filter, rate-limit rules, the callback resolver, chain watchers) either get pushed the new
//! value by the reloader or [`LiveConfig::subscribe`] and rebuild on a change.
//!
//! Each accepted configuration is leaked (one `Config`, a few KiB, per successful reload): a
//! `&Config` handed out by `Deref` must stay valid as long as its borrower holds it, however
//! long a request or a job runs. Reloads are operator actions, so the growth is bounded by how
//! often an operator reloads.
//!
//! [`diff`] names the keys that changed and [`keep_restart_keys`] keeps the values of the keys
//! read only at start-up (listeners, database, data and log directories, master key, queue,
//! connection caps): those changes are reported as "needs a restart" and not applied, so the
//! running process never believes in a database or a directory it is not using.
//!
//! Must never: load files or validate (that is `load` / `validate`, the same path as start-up).
use std::{ops::Deref, sync::Arc};

use tokio::sync::watch;

use super::Config;

/// The current configuration; cheap to clone (all clones see the same swaps).
#[derive(Clone)]
pub struct LiveConfig {
    tx: Arc<watch::Sender<&'static Config>>,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl LiveConfig {
    pub fn new(config: Config) -> Self {
        let (tx, _) = watch::channel(&*Box::leak(Box::new(config)));
        Self { tx: Arc::new(tx) }
    }

    /// The configuration in force now.
    pub fn get(&self) -> &'static Config {
        *self.tx.borrow()
    }

    /// Puts `config` in force and wakes every [`subscribe`](Self::subscribe)r.
    pub fn replace(&self, config: Config) {
        self.tx.send_replace(Box::leak(Box::new(config)));
    }

    /// A receiver that sees each replacement (`changed().await`, then `borrow()`).
    pub fn subscribe(&self) -> watch::Receiver<&'static Config> {
        self.tx.subscribe()
    }
}

impl Deref for LiveConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        self.get()
    }
}

/// Keys read once at start-up: a new value is reported and only takes effect after a restart.
/// Every other key is read through `state.config` on each use (or pushed by the reloader) and
/// takes effect at once. A key for a component that builds its client once (e.g. a bot token)
/// belongs here until that component subscribes to changes.
pub const RESTART_KEYS: &[&str] = &[
    "http_listen",
    "admin_listen",
    "metrics_listen",
    "http_header_timeout_secs",
    "http_idle_timeout_secs",
    "http_max_connections",
    "http_max_connections_per_ip",
    "data_dir",
    "log_dir",
    "log_max_size_mb",
    "log_max_files",
    "database_url",
    "redis_url",
    "master_key",
    "master_key_file",
    "master_key_previous",
    "queue_workers",
    "queue_name",
    "rate_limit_redis_failure",
    "tg_bot_token",
    "tg_api_url",
    "tg_poll",
];

/// One changed key: its name (`networks.<name>` for a chain) and whether it applies now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub needs_restart: bool,
}

/// The keys whose values differ between `old` and `new`, in key order. Secrets and URLs that
/// may carry a password are compared by value, not by their redacted form.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut keys: Vec<String> = Vec::new();
    let (a, b) = (serde_json::to_value(old), serde_json::to_value(new));
    if let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) {
        for (k, v) in &a {
            if k != "networks" && b.get(k) != Some(v) {
                keys.push(k.clone());
            }
        }
    }
    let raw = [
        ("api_auth_token", old.api_auth_token != new.api_auth_token),
        ("tg_bot_token", old.tg_bot_token != new.tg_bot_token),
        ("metrics_token", old.metrics_token != new.metrics_token),
        ("master_key", old.master_key != new.master_key),
        (
            "master_key_previous",
            old.master_key_previous != new.master_key_previous,
        ),
        ("database_url", old.database_url != new.database_url),
        ("redis_url", old.redis_url != new.redis_url),
    ];
    for (k, changed) in raw {
        if changed && !keys.iter().any(|x| x == k) {
            keys.push(k.to_owned());
        }
    }
    let names = old.networks.keys().chain(new.networks.keys());
    for name in names {
        let key = format!("networks.{name}");
        if old.networks.get(name) != new.networks.get(name) && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.sort();
    keys.into_iter()
        .map(|key| Change {
            needs_restart: RESTART_KEYS.contains(&key.as_str()),
            key,
        })
        .collect()
}

/// `new` with the values of the [`RESTART_KEYS`] taken from `old`: what a reload puts in force.
pub fn keep_restart_keys(old: &Config, new: Config) -> Config {
    let rate_limit = crate::config::ratelimit::RateLimitSettings {
        rate_limit_redis_failure: old.rate_limit.rate_limit_redis_failure,
        ..new.rate_limit
    };
    Config {
        http_listen: old.http_listen,
        admin_listen: old.admin_listen,
        metrics_listen: old.metrics_listen,
        http_header_timeout_secs: old.http_header_timeout_secs,
        http_idle_timeout_secs: old.http_idle_timeout_secs,
        http_max_connections: old.http_max_connections,
        http_max_connections_per_ip: old.http_max_connections_per_ip,
        data_dir: old.data_dir.clone(),
        log_dir: old.log_dir.clone(),
        log_max_size_mb: old.log_max_size_mb,
        log_max_files: old.log_max_files,
        database_url: old.database_url.clone(),
        redis_url: old.redis_url.clone(),
        master_key: old.master_key.clone(),
        master_key_file: old.master_key_file.clone(),
        master_key_previous: old.master_key_previous.clone(),
        queue_workers: old.queue_workers,
        queue_name: old.queue_name.clone(),
        tg_bot_token: old.tg_bot_token.clone(),
        tg_api_url: old.tg_api_url.clone(),
        tg_poll: old.tg_poll,
        rate_limit,
        ..new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn diff_names_live_and_restart_keys_and_keeps_restart_values() {
        let old = Config::default();
        let mut new = Config {
            forced_usdt_rate: Some(rust_decimal::Decimal::new(72, 1)),
            http_listen: "127.0.0.1:9999".parse().expect("addr"),
            api_auth_token: Some(Secret::new("x")),
            log_level: "debug".into(),
            ..Config::default()
        };
        new.rate_limit.rate_limit_per_minute = 7;
        new.networks.insert("tron".into(), Default::default());
        let changes = diff(&old, &new);
        let keys: Vec<(&str, bool)> = changes
            .iter()
            .map(|c| (c.key.as_str(), c.needs_restart))
            .collect();
        assert_eq!(
            keys,
            [
                ("api_auth_token", false),
                ("forced_usdt_rate", false),
                ("http_listen", true),
                ("log_level", false),
                ("networks.tron", false),
                ("rate_limit_per_minute", false),
            ]
        );
        let applied = keep_restart_keys(&old, new);
        assert_eq!(applied.http_listen, old.http_listen);
        assert_eq!(applied.rate_limit.rate_limit_per_minute, 7);
        assert!(diff(&old, &applied).iter().all(|c| !c.needs_restart));
    }

    #[test]
    fn live_config_swaps_for_every_clone_and_wakes_subscribers() {
        let live = LiveConfig::new(Config::default());
        let other = live.clone();
        let mut rx = live.subscribe();
        live.replace(Config {
            order_expiration_time: 42,
            ..Config::default()
        });
        assert_eq!(other.order_expiration_time, 42);
        assert!(rx.has_changed().expect("sender alive"));
        assert_eq!(rx.borrow_and_update().order_expiration_time, 42);
    }
}

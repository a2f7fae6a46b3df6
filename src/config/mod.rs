//! Configuration: built-in defaults < `epusdt.toml` (or `--config FILE`) < `.env` with the upstream
//! epusdt key names < `EPUSDT_<KEY>` process environment (DESIGN §3).
//!
//! This module owns parsing and validation only. It never opens sockets or files other than the
//! config sources, and it never prints a secret: every secret is a [`Secret`], whose `Debug` and
//! `Serialize` are redacted, so `epusdt config check` can print the effective config verbatim.
//!
//! Rooms: this file holds [`Config`], its defaults and [`ConfigError`]; `load` the figment
//! layering and unknown-key detection; `dotenv` the upstream `.env` key names; `validate` the
//! range and form checks; `networks` the chain watchers ([`NetworkConfig`] → [`ChainSettings`]);
//! `values` how decimals, rate tables and lists may be written and how URLs are shown;
//! `ratelimit` the rate-limit keys.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

mod dotenv;
pub mod live;
mod load;
mod networks;
pub mod ratelimit;
mod validate;
mod values;

pub use crate::secret::Secret;
pub use live::LiveConfig;
pub use load::{Sources, did_you_mean, known_keys, unknown_env_vars};
pub use networks::{ChainSettings, NetworkConfig, TokenConfig};
use values::{opt_plain_decimal, plain_decimal, rates_from_map_or_string, redact_url_password};

/// The effective configuration. Field names are the config keys: `http_listen` is
/// `http_listen = ".."` in TOML, `http_listen=..` in `.env` and `EPUSDT_HTTP_LISTEN` in the env.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server binds. Port 0 picks a free port (tests).
    pub http_listen: SocketAddr,
    /// Public base URL of this gateway, used to build `payment_url` for merchants.
    pub app_uri: String,
    /// Seconds a client has to send a complete request head after connecting (or between
    /// requests on a kept-alive connection).
    pub http_header_timeout_secs: u64,
    /// Seconds a connection may sit with no request in flight and no byte moving before it is
    /// closed.
    pub http_idle_timeout_secs: u64,
    /// Open connections at most (lowered to what the open-file limit allows).
    pub http_max_connections: usize,
    /// Open connections at most from one peer address (`trusted_proxies` are exempt).
    pub http_max_connections_per_ip: usize,
    /// Directory for the embedded SQLite database and generated files.
    pub data_dir: PathBuf,
    /// Directory for daily-rotated JSON log files; default `<data_dir>/logs`.
    pub log_dir: Option<PathBuf>,
    /// tracing filter, e.g. `info` or `epusdt=debug,sqlx=warn`.
    pub log_level: String,
    /// A log file is also rotated when it reaches this many MiB (besides daily); 0 = no limit.
    pub log_max_size_mb: u64,
    /// Rotated log files kept.
    pub log_max_files: usize,
    /// Days an audit JSONL file (`<data_dir>/audit/audit-YYYY-MM-DD.jsonl`) is kept; 0 = forever.
    /// The `audit_log` table is not pruned.
    pub audit_retention_days: u32,
    /// Days a finished job (done, or failed for good) stays in the queue's storage.
    pub job_retention_days: u32,
    /// Seconds between retention runs (finished jobs, audit files).
    pub retention_interval_secs: u64,
    /// Seconds between SQLite WAL checkpoints that truncate the `-wal` file; 0 = only SQLite's
    /// own automatic checkpoints.
    pub sqlite_checkpoint_secs: u64,
    /// `sqlite://…`, `postgres://…` or `mysql://…`. Default: `sqlite://<data_dir>/epusdt.db`.
    #[serde(serialize_with = "redact_url_password")]
    pub database_url: Option<String>,
    /// `redis://…`: rate limits and the job queue move to Redis when set.
    #[serde(serialize_with = "redact_url_password")]
    pub redis_url: Option<String>,
    /// Legacy epusdt v1 merchant token (the default merchant, pid 1000).
    pub api_auth_token: Option<Secret>,
    /// Minutes an order stays payable.
    pub order_expiration_time: u32,
    /// Forced CNY per 1 USDT (upstream semantics). Overrides any other CNY rate.
    #[serde(deserialize_with = "opt_plain_decimal")]
    pub forced_usdt_rate: Option<Decimal>,
    /// Fixed fiat → USDT rates, fiat units per 1 USDT, e.g. `{ USD = "1", EUR = "0.92" }`
    /// (`usdt_rates=USD:1,EUR:0.92` in `.env` / env).
    #[serde(deserialize_with = "rates_from_map_or_string")]
    pub usdt_rates: BTreeMap<String, Decimal>,
    /// Network used when a merchant sends no `trade_type`/`network`.
    pub default_network: String,
    /// EPay: the token of a request whose `type` is empty, `alipay` or `wxpay` and that sends no
    /// `token` (upstream setting `epay.default_token`): a token configured on the EPay default
    /// network (`USDT`, `USDC`).
    pub epay_default_token: String,
    /// EPay: the network of such a request when it sends no `network` (upstream setting
    /// `epay.default_network`); unset = `default_network`.
    pub epay_default_network: Option<String>,
    /// EPay: the fiat currency of a request without `currency` (upstream setting
    /// `epay.default_currency`, `cny` by default).
    pub epay_default_currency: String,
    /// Step added to the payable amount to find a free slot.
    #[serde(deserialize_with = "plain_decimal")]
    pub amount_step: Decimal,
    /// How many slots to try (≤ 100).
    pub amount_max_tries: u32,
    /// Decimal places of the payable amount shown to payers.
    pub amount_precision: u32,
    /// Callback delivery attempts before giving up (admins can resend).
    pub notify_max_attempts: u32,
    /// First retry delay in seconds; doubles per attempt, with jitter.
    pub notify_retry_base_secs: u64,
    /// Seconds to wait for a merchant's callback answer.
    pub notify_timeout_secs: u64,
    /// Allow callbacks to loopback/private/link-local addresses (development only).
    pub allow_private_callbacks: bool,
    /// Every admin must have TOTP: an admin without it can only set it up (admin API).
    pub admin_require_totp: bool,
    /// A separate listener for the admin API (e.g. `127.0.0.1:8001`), which is then absent from
    /// `http_listen`; unset: the admin API is served on `http_listen`.
    pub admin_listen: Option<SocketAddr>,
    /// A separate listener for `GET /metrics` (e.g. `127.0.0.1:9100`), which is then absent
    /// from `http_listen`; unset: `/metrics` is served on `http_listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token `GET /metrics` requires (`Authorization: Bearer <token>`); unset: none.
    pub metrics_token: Option<Secret>,
    /// Seconds a transfer's block time may precede an order's creation and still pay it (block
    /// timestamps are accurate to seconds). A transfer mined earlier than that never pays the
    /// order: it was meant for whoever held the slot before.
    pub payment_clock_tolerance_secs: u32,
    /// Seconds a merchant's old secret keeps verifying its requests after a rotation (admin
    /// API `rotate-secret`), so its servers can switch without refused requests; 0 = none, the
    /// old secret stops at once. Callbacks are always signed with the new secret.
    pub secret_overlap_secs: u32,
    /// Seconds an expired or cancelled order keeps its (network, address, amount) slot before
    /// another order may take it, so a late payer cannot pay a newer order by mistake.
    pub slot_reuse_grace_secs: u32,
    /// A queued callback whose next attempt is this many seconds overdue is queued again by the
    /// sweeper (its job was lost: a flushed Redis, a lost queue file).
    pub callback_requeue_after_secs: u32,
    /// Concurrent job workers in this instance.
    pub queue_workers: usize,
    /// Name of the job queue (instances sharing a database or Redis must use the same one).
    pub queue_name: String,
    /// Seconds in-flight requests and jobs get to finish on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Rate limits (DESIGN §8): `rate_limit_per_minute`, `rate_limit_route_per_minute`,
    /// `rate_limit_routes`, `rate_limit_merchant_per_minute`, `rate_limit_redis_failure`,
    /// `trusted_proxies`; see [`ratelimit::RateLimitSettings`].
    #[serde(flatten)]
    pub rate_limit: ratelimit::RateLimitSettings,
    /// Telegram bot token (from @BotFather): the bot runs inside `serve` when it is set
    /// (wiki/TELEGRAM.md). Redacted everywhere.
    pub tg_bot_token: Option<Secret>,
    /// Upstream's Telegram manager: this user id gets owner rights in the bot and every notice.
    pub tg_manage: Option<i64>,
    /// Base URL of the Telegram Bot API (tests and self-hosted Bot API servers point it elsewhere).
    pub tg_api_url: String,
    /// Which notices the bot sends to opted-in admins: `all`, `none` or a comma list of
    /// `paid`, `transfer`, `callback`, `chain`, `security`.
    pub tg_notify: String,
    /// A chain watcher this many blocks behind its confirmed head raises a `chain` notice.
    pub tg_lag_alert_blocks: u64,
    /// Whether this instance answers the bot's chat (long-polls `getUpdates`). Telegram allows
    /// one poller per token: with several instances, leave it on for one and set it `false` on
    /// the others (they still send notices from the shared queue).
    pub tg_poll: bool,
    /// Master key (32 bytes as 64 hex digits or base64) that encrypts merchant secrets at rest.
    /// Default: the key file `master_key_file`, else `<data_dir>/master.key`, generated (0600) on
    /// first start.
    pub master_key: Option<Secret>,
    /// File holding the master key (hex or base64, mode 0600).
    pub master_key_file: Option<PathBuf>,
    /// The previous master key during a rolling rotation (values sealed by it are re-sealed).
    pub master_key_previous: Option<Secret>,
    /// Chain watchers, keyed by canonical network name (`tron`, `ethereum`, `bsc`, `polygon`):
    /// `[networks.ethereum] rpc_urls = ["https://…"]` in TOML,
    /// `EPUSDT_NETWORKS__ETHEREUM__RPC_URLS=https://a,https://b` in the env,
    /// `networks__ethereum__rpc_urls=…` in `.env`. A network without `rpc_urls` is not watched.
    pub networks: BTreeMap<String, NetworkConfig>,
    /// The registry resolved from `networks` ([`Config::registry`]), once per value.
    #[serde(skip)]
    pub resolved: networks::Resolved,
    /// `ignored: <key> (<why>)` for each `.env` key with a value that has no effect (upstream
    /// keys of features we do not have, unknown keys); reported once at start and by
    /// `config check`. Not a config key.
    #[serde(skip)]
    pub dotenv_ignored: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            app_uri: "http://127.0.0.1:8000".into(),
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 60,
            http_max_connections: 4096,
            http_max_connections_per_ip: 128,
            data_dir: PathBuf::from("data"),
            log_dir: None,
            log_level: "info".into(),
            log_max_size_mb: 100,
            log_max_files: 30,
            audit_retention_days: 90,
            job_retention_days: 7,
            retention_interval_secs: 3600,
            sqlite_checkpoint_secs: 300,
            database_url: None,
            redis_url: None,
            api_auth_token: None,
            order_expiration_time: 10,
            forced_usdt_rate: None,
            usdt_rates: BTreeMap::new(),
            default_network: "tron".into(),
            epay_default_token: "USDT".into(),
            epay_default_network: None,
            epay_default_currency: "CNY".into(),
            amount_step: Decimal::new(1, 2),
            amount_max_tries: 100,
            amount_precision: 2,
            notify_max_attempts: 10,
            notify_retry_base_secs: 180,
            notify_timeout_secs: 10,
            allow_private_callbacks: false,
            admin_require_totp: false,
            admin_listen: None,
            metrics_listen: None,
            metrics_token: None,
            payment_clock_tolerance_secs: 5,
            secret_overlap_secs: 0,
            slot_reuse_grace_secs: 600,
            callback_requeue_after_secs: 900,
            queue_workers: 4,
            queue_name: "epusdt".into(),
            shutdown_timeout_secs: 15,
            rate_limit: Default::default(),
            tg_bot_token: None,
            tg_manage: None,
            tg_api_url: "https://api.telegram.org".into(),
            tg_notify: "all".into(),
            tg_lag_alert_blocks: 100,
            tg_poll: true,
            master_key: None,
            master_key_file: None,
            master_key_previous: None,
            networks: BTreeMap::new(),
            resolved: Default::default(),
            dotenv_ignored: Vec::new(),
        }
    }
}

/// Why the configuration was refused. `Display` names the key and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config error: {0}")]
    Parse(String),
    #[error("config error: key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    /// Like `Invalid`, for keys built at run time (`networks.<name>.<field>`).
    #[error("config error: key `{key}`: {message}")]
    InvalidKey { key: String, message: String },
}

impl Config {
    /// The database URL in effect: explicit, or the embedded SQLite file in `data_dir`.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("epusdt.db").display()
            ),
        }
    }

    /// What an operator should hear once at start (and from `config check`): the ignored
    /// `.env` keys, no chain watched, no fiat rate in the config. `serve` adds what only the
    /// database knows (no wallet; an admin-set rate).
    pub fn startup_warnings(&self) -> Vec<String> {
        let mut out = self.dotenv_ignored.clone();
        if !self
            .networks
            .values()
            .any(|n| n.enabled && !n.rpc_urls.is_empty())
        {
            out.push(
                "no chain is watched, so no payment is detected: set networks__tron__rpc_urls=https://… in .env (or EPUSDT_NETWORKS__TRON__RPC_URLS, or [networks.tron] rpc_urls in epusdt.toml)".into(),
            );
        }
        out
    }

    /// No fiat rate in the config (an admin-set rate in the database may still exist).
    pub fn has_configured_rate(&self) -> bool {
        self.forced_usdt_rate.is_some() || !self.usdt_rates.is_empty()
    }

    /// The network of an EPay request that names none: `epay_default_network`, else
    /// `default_network`.
    pub fn effective_epay_default_network(&self) -> &str {
        match self.epay_default_network.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => n,
            _ => &self.default_network,
        }
    }

    /// The notice kinds `tg_notify` selects (validated at load).
    pub fn tg_notify_kinds(&self) -> Vec<crate::domain::notice::NoticeKind> {
        crate::domain::notice::NoticeKind::parse_list(&self.tg_notify).unwrap_or_default()
    }

    pub fn effective_log_dir(&self) -> PathBuf {
        self.log_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("logs"))
    }

    /// Config for tests: port 0, a private data dir, short retries.
    pub fn for_tests(data_dir: &Path) -> Self {
        Self {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            log_level: "warn".into(),
            allow_private_callbacks: true,
            notify_retry_base_secs: 1,
            shutdown_timeout_secs: 5,
            ..Self::default()
        }
    }
}

//! Configuration: built-in defaults < `epusdt.toml` (or `--config FILE`) < `.env` with the upstream
//! epusdt key names < `EPUSDT_<KEY>` process environment (DESIGN §3).
//!
//! This module owns parsing and validation only. It never opens sockets or files other than the
//! config sources, and it never prints a secret: every secret is a [`Secret`], whose `Debug` and
//! `Serialize` are redacted, so `epusdt config check` can print the effective config verbatim.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Env, Format, Serialized, Toml},
    value::{Dict, Map, Value},
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

pub mod ratelimit;

pub use crate::secret::Secret;

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
    /// Seconds a transfer's block time may precede an order's creation and still pay it (block
    /// timestamps are accurate to seconds). A transfer mined earlier than that never pays the
    /// order: it was meant for whoever held the slot before.
    pub payment_clock_tolerance_secs: u32,
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
    /// Telegram bot token (accepted for compatibility; the bot is not part of this release).
    pub tg_bot_token: Option<Secret>,
    /// Telegram admin chat id (accepted for compatibility).
    pub tg_manage: Option<i64>,
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
            database_url: None,
            redis_url: None,
            api_auth_token: None,
            order_expiration_time: 10,
            forced_usdt_rate: None,
            usdt_rates: BTreeMap::new(),
            default_network: "tron".into(),
            amount_step: Decimal::new(1, 2),
            amount_max_tries: 100,
            amount_precision: 2,
            notify_max_attempts: 10,
            notify_retry_base_secs: 180,
            notify_timeout_secs: 10,
            allow_private_callbacks: false,
            payment_clock_tolerance_secs: 5,
            slot_reuse_grace_secs: 600,
            callback_requeue_after_secs: 900,
            queue_workers: 4,
            queue_name: "epusdt".into(),
            shutdown_timeout_secs: 15,
            rate_limit: Default::default(),
            tg_bot_token: None,
            tg_manage: None,
            master_key: None,
            master_key_file: None,
            master_key_previous: None,
            networks: BTreeMap::new(),
        }
    }
}

fn redact_url_password<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        None => s.serialize_none(),
        Some(raw) => s.serialize_str(&crate::redact::secrets(raw)),
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

/// Where to read config from; tests pass everything explicitly instead of touching the process env.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config FILE`; when `None`, `epusdt.toml` in the working directory if it exists.
    pub toml_file: Option<PathBuf>,
    /// `.env` file; when `None`, `.env` in the working directory if it exists.
    pub dotenv_file: Option<PathBuf>,
    /// Read `EPUSDT_*` from the process environment.
    pub process_env: bool,
}

impl Config {
    /// Loads the layered config the way the binary does.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match &sources.toml_file {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Parse(format!(
                        "config file {} does not exist",
                        p.display()
                    )));
                }
                check_toml_keys(p)?;
                fig = fig.merge(Toml::file_exact(p));
            }
            None => {
                if Path::new("epusdt.toml").exists() {
                    check_toml_keys(Path::new("epusdt.toml"))?;
                    fig = fig.merge(Toml::file_exact("epusdt.toml"));
                }
            }
        }
        let dotenv = sources
            .dotenv_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(".env"));
        if dotenv.exists() {
            fig = fig.merge(DotEnv::read(&dotenv)?);
        }
        if sources.process_env {
            fig = fig.merge(
                Env::prefixed("EPUSDT_")
                    .split("__")
                    .ignore(&["config"])
                    .filter(|k| !k.as_str().starts_with("test_")),
            );
        }
        Self::from_figment(fig)
    }

    /// Extracts and validates; used by [`Config::load`] and by tests that build a figment.
    pub fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let cfg: Config = fig.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| describe_figment_error(&e)).collect();
            ConfigError::Parse(msgs.join("; "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::Invalid { key, message });
        if url::Url::parse(&self.app_uri).map(|u| u.scheme().starts_with("http")) != Ok(true) {
            return bad(
                "app_uri",
                format!(
                    "`{}` is not an http(s) URL; set it to the public base URL, e.g. https://pay.example.com",
                    self.app_uri
                ),
            );
        }
        if let Some(db) = &self.database_url {
            let ok = [
                "sqlite:",
                "postgres://",
                "postgresql://",
                "mysql://",
                "mariadb://",
            ]
            .iter()
            .any(|p| db.starts_with(p));
            if !ok {
                return bad(
                    "database_url",
                    "must start with sqlite:, postgres:// or mysql:// (e.g. postgres://user:pass@127.0.0.1:5432/epusdt)".into(),
                );
            }
        }
        if let Some(r) = &self.redis_url
            && !(r.starts_with("redis://") || r.starts_with("rediss://"))
        {
            return bad(
                "redis_url",
                "must start with redis:// or rediss:// (e.g. redis://127.0.0.1:6379)".into(),
            );
        }
        if let Some(t) = &self.api_auth_token
            && t.expose().trim().is_empty()
        {
            return bad(
                "api_auth_token",
                "is empty; remove it or set a long random token".into(),
            );
        }
        if !(1..=10_080).contains(&self.order_expiration_time) {
            return bad(
                "order_expiration_time",
                format!(
                    "{} minutes is out of range; use 1..=10080",
                    self.order_expiration_time
                ),
            );
        }
        if !(1..=300).contains(&self.http_header_timeout_secs) {
            return bad(
                "http_header_timeout_secs",
                format!(
                    "{} is out of range; use 1..=300 seconds",
                    self.http_header_timeout_secs
                ),
            );
        }
        if !(1..=3600).contains(&self.http_idle_timeout_secs) {
            return bad(
                "http_idle_timeout_secs",
                format!(
                    "{} is out of range; use 1..=3600 seconds",
                    self.http_idle_timeout_secs
                ),
            );
        }
        if !(16..=1_000_000).contains(&self.http_max_connections) {
            return bad(
                "http_max_connections",
                format!(
                    "{} is out of range; use 16..=1000000",
                    self.http_max_connections
                ),
            );
        }
        if self.http_max_connections_per_ip == 0
            || self.http_max_connections_per_ip > self.http_max_connections
        {
            return bad(
                "http_max_connections_per_ip",
                format!(
                    "{} is out of range; use 1..=http_max_connections ({})",
                    self.http_max_connections_per_ip, self.http_max_connections
                ),
            );
        }
        if self.payment_clock_tolerance_secs > 300 {
            return bad(
                "payment_clock_tolerance_secs",
                format!(
                    "{} seconds is too long (a payer of the previous order of a slot could pay a newer one); use 0..=300",
                    self.payment_clock_tolerance_secs
                ),
            );
        }
        if self.slot_reuse_grace_secs > 7 * 24 * 3600 {
            return bad(
                "slot_reuse_grace_secs",
                format!(
                    "{} seconds is out of range; use 0..=604800",
                    self.slot_reuse_grace_secs
                ),
            );
        }
        if !(60..=7 * 24 * 3600).contains(&self.callback_requeue_after_secs) {
            return bad(
                "callback_requeue_after_secs",
                format!(
                    "{} seconds is out of range; use 60..=604800 (longer than a callback attempt takes)",
                    self.callback_requeue_after_secs
                ),
            );
        }
        if let Some(r) = self.forced_usdt_rate
            && r <= Decimal::ZERO
        {
            return bad(
                "forced_usdt_rate",
                format!("{r} must be a positive number of CNY per USDT, e.g. 7.2"),
            );
        }
        for (fiat, r) in &self.usdt_rates {
            if *r <= Decimal::ZERO
                || fiat.len() != 3
                || !fiat.chars().all(|c| c.is_ascii_uppercase())
            {
                return bad(
                    "usdt_rates",
                    format!(
                        "`{fiat}={r}`: use upper-case ISO 4217 codes and positive rates, e.g. USD:1,EUR:0.92"
                    ),
                );
            }
        }
        if crate::domain::network::Network::parse(&self.default_network).is_none() {
            return bad(
                "default_network",
                format!(
                    "`{}` is not a network; use tron, ethereum, bsc or polygon",
                    self.default_network
                ),
            );
        }
        if self.amount_step <= Decimal::ZERO || self.amount_step.scale() > self.amount_precision {
            return bad(
                "amount_step",
                format!(
                    "{} must be positive with at most amount_precision ({}) decimals",
                    self.amount_step, self.amount_precision
                ),
            );
        }
        if !(1..=100).contains(&self.amount_max_tries) {
            return bad("amount_max_tries", "use 1..=100".into());
        }
        if self.amount_precision > 6 {
            return bad(
                "amount_precision",
                "USDT has 6 decimals on TRON/Ethereum/Polygon; use 0..=6".into(),
            );
        }
        if !(1..=50).contains(&self.notify_max_attempts) {
            return bad("notify_max_attempts", "use 1..=50".into());
        }
        if self.notify_retry_base_secs == 0 {
            return bad("notify_retry_base_secs", "must be at least 1 second".into());
        }
        if !(1..=120).contains(&self.notify_timeout_secs) {
            return bad("notify_timeout_secs", "use 1..=120 seconds".into());
        }
        if !(1..=64).contains(&self.queue_workers) {
            return bad("queue_workers", "use 1..=64".into());
        }
        if self.queue_name.is_empty()
            || self.queue_name.len() > 64
            || !self
                .queue_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad(
                "queue_name",
                "use 1 to 64 letters, digits, `_` or `-`".into(),
            );
        }
        self.chains()?;
        if let Err((key, message)) = self.rate_limit.validate() {
            return bad(key, message);
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return bad(
                "log_level",
                format!(
                    "`{}` is not a valid filter; use error, warn, info, debug or trace",
                    self.log_level
                ),
            );
        }
        Ok(())
    }

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

/// Every top-level config key: the fields of [`Config`] as it serializes (the flattened rate
/// limit keys included) — the struct is the one source of truth.
pub fn known_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The known key closest to `key` by edit distance, when it is close enough to be a typo.
pub fn did_you_mean<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let (best, d) = known
        .iter()
        .map(|k| (k, edit_distance(key, k)))
        .min_by_key(|(_, d)| *d)?;
    let near = (key.chars().count() / 4).clamp(1, 3);
    (d <= near).then_some(best.as_str())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_key_message(key: &str, known: &[String]) -> String {
    match did_you_mean(key, known) {
        Some(k) => format!("`{key}` (did you mean `{k}`?)"),
        None => format!("`{key}`"),
    }
}

/// A top-level key of the TOML file that is no config key stops start-up (a typo would
/// otherwise silently leave the default in force). Syntax errors are left to the extraction,
/// which reports them with the line.
fn check_toml_keys(path: &Path) -> Result<(), ConfigError> {
    let Ok(data) = Toml::file_exact(path).data() else {
        return Ok(());
    };
    let known = known_keys();
    let unknown: Vec<String> = data
        .values()
        .flat_map(|dict| dict.keys())
        .filter(|k| !known.contains(k))
        .map(|k| unknown_key_message(k, &known))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ConfigError::Parse(format!(
        "unknown key{} {} in {}; remove or rename {} (see `epusdt config check` for every key)",
        if unknown.len() == 1 { "" } else { "s" },
        unknown.join(", "),
        path.display(),
        if unknown.len() == 1 { "it" } else { "them" },
    )))
}

/// `EPUSDT_*` variables among `vars` that name no config key, each with the variable meant when
/// one is close: for warnings, not errors, because the environment is shared with other
/// programs. `EPUSDT_CONFIG` and `EPUSDT_TEST_*` are not config keys but are ours.
pub fn unknown_env_vars(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, Option<String>)> {
    let known = known_keys();
    vars.into_iter()
        .filter_map(|(name, _)| {
            let rest = name.strip_prefix("EPUSDT_")?.to_ascii_lowercase();
            let top = rest.split("__").next().unwrap_or_default().to_string();
            if top == "config" || top.starts_with("test_") || known.contains(&top) {
                return None;
            }
            let hint =
                did_you_mean(&top, &known).map(|k| format!("EPUSDT_{}", k.to_ascii_uppercase()));
            Some((name, hint))
        })
        .collect()
}

fn describe_figment_error(e: &figment::Error) -> String {
    let key = if e.path.is_empty() {
        "<root>".to_string()
    } else {
        e.path.join(".")
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(src) => format!("{} ({src})", m.name),
            None => m.name.to_string(),
        })
        .unwrap_or_else(|| "defaults".into());
    format!("key `{key}` from {source}: {}", e.kind)
}

/// Our keys as `.env` spells them (lower case); every one is a [`Config`] key (tested).
const DOTENV_KEYS: &[&str] = &[
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
struct DotEnv {
    path: PathBuf,
    dict: Dict,
}

impl DotEnv {
    fn read(path: &Path) -> Result<Self, ConfigError> {
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
            match raw
                .get("db_type")
                .map(|s| s.to_ascii_lowercase())
                .as_deref()
            {
                Some("mysql") => {
                    let g = |k: &str, d: &str| raw.get(k).cloned().unwrap_or_else(|| d.into());
                    let url = format!(
                        "mysql://{}:{}@{}:{}/{}",
                        g("mysql_user", "root"),
                        g("mysql_passwd", ""),
                        g("mysql_host", "127.0.0.1"),
                        g("mysql_port", "3306"),
                        g("mysql_database", "epusdt"),
                    );
                    dict.insert("database_url".into(), Value::from(url));
                }
                Some("postgres") | Some("postgresql") => {
                    let g = |k: &str, d: &str| raw.get(k).cloned().unwrap_or_else(|| d.into());
                    let url = format!(
                        "postgres://{}:{}@{}:{}/{}",
                        g("postgres_user", "postgres"),
                        g("postgres_passwd", ""),
                        g("postgres_host", "127.0.0.1"),
                        g("postgres_port", "5432"),
                        g("postgres_database", "epusdt"),
                    );
                    dict.insert("database_url".into(), Value::from(url));
                }
                Some("sqlite") | None | Some(_) => {}
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

/// `usdt_rates` as a TOML table or as the `.env`/env string form `USD:1,EUR:0.92`.
fn rates_from_map_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Decimal>, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Map(BTreeMap<String, Value>),
        Str(String),
    }
    let pairs: Vec<(String, String)> = match Raw::deserialize(d)? {
        Raw::Map(m) => m
            .into_iter()
            // Write rates as strings (`EUR = "0.92"`): a TOML float would pass through f64.
            .map(|(k, v)| {
                let text = v
                    .to_i128()
                    .map(|n| n.to_string())
                    .or_else(|| v.into_string());
                (k, text.unwrap_or_else(|| "not-a-string".into()))
            })
            .collect(),
        Raw::Str(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.split_once([':', '='])
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| D::Error::custom(format!("`{p}` must look like USD:1")))
            })
            .collect::<Result<_, _>>()?,
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            let rate = crate::domain::amount::parse_plain(v.trim().trim_matches('"'), true)
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "rate for {k} `{v}` is not a decimal number (plain digits and one `.`, e.g. 0.92)"
                    ))
                })?;
            Ok((k.to_ascii_uppercase(), rate))
        })
        .collect()
}

/// A decimal config value: a number, or plain decimal text (`7.2`, never `7_2` or `7.2e0`,
/// which `rust_decimal` would take). Signs are let through for `validate` to name the key.
fn plain_decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Str(String),
        Int(i64),
        Float(f64),
    }
    match Raw::deserialize(d)? {
        Raw::Str(s) => crate::domain::amount::parse_plain(s.trim(), true).ok_or_else(|| {
            D::Error::custom(format!(
                "`{s}` is not a decimal number (plain digits and one `.`, e.g. 7.2)"
            ))
        }),
        Raw::Int(n) => Ok(Decimal::from(n)),
        // Float text from TOML or the env: its shortest round-trip form, parsed exactly.
        Raw::Float(f) => Decimal::from_str_exact(&f.to_string())
            .map_err(|_| D::Error::custom(format!("`{f}` is not a decimal number"))),
    }
}

fn opt_plain_decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    #[derive(Deserialize)]
    struct Plain(#[serde(deserialize_with = "plain_decimal")] Decimal);
    Ok(Option::<Plain>::deserialize(d)?.map(|p| p.0))
}

/// One chain watcher (`[networks.<name>]`). Every field is optional: unset ones take the
/// network's mainnet defaults (DESIGN §6), see [`Config::chains`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// `false` stops watching the network without removing its settings.
    pub enabled: bool,
    /// JSON-RPC (EVM) or FullNode HTTP API (TRON) base URLs, tried in order with failover.
    /// A list, or one string of comma-separated URLs. Printed by `config check` with the path
    /// redacted (providers put API keys there).
    #[serde(
        deserialize_with = "list_from_seq_or_string",
        serialize_with = "redact_rpc_urls"
    )]
    pub rpc_urls: Vec<String>,
    /// EVM chain id the RPC must report (checked at start-up). Default 1 / 56 / 137.
    pub chain_id: Option<u64>,
    /// Token contract (EVM `0x…`, TRON base58 `T…`). Default: the network's USDT.
    pub usdt_contract: Option<String>,
    /// Token decimals; checked against the contract's `decimals()` at start-up and before the first scan (EVM and TRON).
    pub decimals: Option<u32>,
    /// Blocks below the head before a transfer counts (TRON: below the solidified head).
    pub confirmations: Option<u64>,
    /// TRON only: sent as the `TRON-PRO-API-KEY` header (TronGrid).
    pub api_key: Option<Secret>,
    /// Pause between scan rounds once caught up.
    pub poll_interval_ms: Option<u64>,
    /// Largest block range per request (EVM `eth_getLogs`) or per round (TRON); shrinks on
    /// provider errors and grows back.
    pub max_block_range: Option<u64>,
    /// First block to scan when the network has no cursor yet; default: a few blocks below the
    /// confirmed head at first start.
    pub start_block: Option<u64>,
    /// Seconds the scanning lease lasts without renewal (one instance scans a network); the
    /// holder renews it every quarter of this, a standby takes over this long after the
    /// holder died. Default 5 (a standby takeover then keeps payment → callback under 10 s).
    pub lease_ttl_secs: Option<u64>,
    /// Seconds one RPC request may take.
    pub request_timeout_secs: Option<u64>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rpc_urls: Vec::new(),
            chain_id: None,
            usdt_contract: None,
            decimals: None,
            confirmations: None,
            api_key: None,
            poll_interval_ms: None,
            max_block_range: None,
            start_block: None,
            lease_ttl_secs: None,
            request_timeout_secs: None,
        }
    }
}

/// The effective settings of one watched network: [`NetworkConfig`] with defaults applied and
/// every value validated and normalised (contract address in the wallets' form).
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub network: crate::domain::network::Network,
    pub rpc_urls: Vec<url::Url>,
    pub chain_id: Option<u64>,
    /// Normalised: TRON base58 `T…`, EVM lower-case `0x…`.
    pub usdt_contract: String,
    pub decimals: u32,
    pub confirmations: u64,
    pub api_key: Option<Secret>,
    pub poll_interval: std::time::Duration,
    pub max_block_range: u64,
    pub start_block: Option<u64>,
    pub lease_ttl: std::time::Duration,
    pub request_timeout: std::time::Duration,
}

/// Mainnet defaults per network: (contract, decimals, chain id, confirmations, poll ms, range).
fn network_defaults(
    n: crate::domain::network::Network,
) -> (&'static str, u32, Option<u64>, u64, u64, u64) {
    use crate::domain::network::Network;
    match n {
        // Solidified blocks are final; no extra confirmations needed.
        Network::Tron => ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", 6, None, 0, 3_000, 20),
        Network::Ethereum => (
            "0xdAC17F958D2ee523a2206206994597C13D831ec7",
            6,
            Some(1),
            12,
            4_000,
            1_000,
        ),
        Network::Bsc => (
            "0x55d398326f99059fF775485246999027B3197955",
            18,
            Some(56),
            15,
            3_000,
            1_000,
        ),
        Network::Polygon => (
            "0xc2132D05D31c914a87C6611C10748AEb04B58e8F",
            6,
            Some(137),
            64,
            2_000,
            1_000,
        ),
    }
}

impl Config {
    /// The networks to watch: enabled entries of `networks` that have `rpc_urls`, with defaults
    /// applied. Errors name the key (`networks.ethereum.rpc_urls`) and say how to fix it.
    pub fn chains(&self) -> Result<Vec<ChainSettings>, ConfigError> {
        use crate::domain::network::Network;
        let mut out = Vec::new();
        for (name, nc) in &self.networks {
            let bad = |field: &str, message: String| {
                let key = if field.is_empty() {
                    format!("networks.{name}")
                } else {
                    format!("networks.{name}.{field}")
                };
                Err(ConfigError::InvalidKey { key, message })
            };
            let network = match Network::parse(name) {
                Some(n) if n.as_str() == name => n,
                Some(n) => {
                    return bad(
                        "",
                        format!("use the canonical network name `{n}` as the section name"),
                    );
                }
                None => {
                    return bad(
                        "",
                        format!(
                            "`{name}` is not a supported network; use tron, ethereum, bsc or polygon (further EVM chains are not supported yet)"
                        ),
                    );
                }
            };
            let (contract, decimals, chain_id, confirmations, poll_ms, range) =
                network_defaults(network);
            let mut urls = Vec::new();
            for raw in &nc.rpc_urls {
                match url::Url::parse(raw.trim()) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        urls.push(u)
                    }
                    _ => {
                        return bad(
                            "rpc_urls",
                            format!(
                                "`{}` is not an http(s) URL; use e.g. https://rpc.example.com/KEY",
                                redact_rpc_url(raw)
                            ),
                        );
                    }
                }
            }
            let usdt_contract = nc.usdt_contract.as_deref().unwrap_or(contract);
            let usdt_contract = match network.parse_address(usdt_contract) {
                Ok(a) => a,
                Err(e) => return bad("usdt_contract", e.to_string()),
            };
            let decimals = nc.decimals.unwrap_or(decimals);
            if decimals > 24 {
                return bad(
                    "decimals",
                    format!("{decimals} is out of range; USDT uses 6 (18 on BSC); use 0..=24"),
                );
            }
            if network == Network::Tron {
                if nc.chain_id.is_some() {
                    return bad(
                        "chain_id",
                        "is for EVM networks only; remove it from networks.tron".into(),
                    );
                }
            } else if nc.api_key.is_some() {
                return bad(
                    "api_key",
                    "is sent as TRON-PRO-API-KEY and only used for tron; EVM providers take their key in the rpc URL".into(),
                );
            }
            let confirmations = nc.confirmations.unwrap_or(confirmations);
            if confirmations > 10_000 {
                return bad("confirmations", "use 0..=10000 blocks".into());
            }
            let poll_ms = nc.poll_interval_ms.unwrap_or(poll_ms);
            if !(10..=600_000).contains(&poll_ms) {
                return bad("poll_interval_ms", "use 10..=600000 milliseconds".into());
            }
            let range = nc.max_block_range.unwrap_or(range);
            let max_range = if network == Network::Tron {
                200
            } else {
                100_000
            };
            if !(1..=max_range).contains(&range) {
                return bad("max_block_range", format!("use 1..={max_range} blocks"));
            }
            let lease = nc.lease_ttl_secs.unwrap_or(5);
            if !(2..=3_600).contains(&lease) {
                return bad("lease_ttl_secs", "use 2..=3600 seconds".into());
            }
            let timeout = nc.request_timeout_secs.unwrap_or(15);
            if !(1..=300).contains(&timeout) {
                return bad("request_timeout_secs", "use 1..=300 seconds".into());
            }
            if let Some(start) = nc.start_block
                && i64::try_from(start).is_err()
            {
                return bad("start_block", "is too large".into());
            }
            if !nc.enabled || urls.is_empty() {
                continue;
            }
            out.push(ChainSettings {
                network,
                rpc_urls: urls,
                chain_id: nc.chain_id.or(chain_id),
                usdt_contract,
                decimals,
                confirmations,
                api_key: nc.api_key.clone().filter(|k| !k.expose().trim().is_empty()),
                poll_interval: std::time::Duration::from_millis(poll_ms),
                max_block_range: range,
                start_block: nc.start_block,
                lease_ttl: std::time::Duration::from_secs(lease),
                request_timeout: std::time::Duration::from_secs(timeout),
            });
        }
        Ok(out)
    }
}

/// An RPC endpoint as shown anywhere: [`crate::redact::rpc_url`].
pub fn redact_rpc_url(raw: &str) -> String {
    crate::redact::rpc_url(raw)
}

fn redact_rpc_urls<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for u in v {
        seq.serialize_element(&redact_rpc_url(u))?;
    }
    seq.end()
}

/// A list as a TOML array, or as the env/`.env` string form `a,b,c`.
fn list_from_seq_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Str(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Str(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn every_key_stays_known_and_typos_get_a_suggestion() {
        let known = known_keys();
        for k in DOTENV_KEYS.iter().chain(&["networks"]) {
            assert!(
                known.iter().any(|n| n == k),
                "{k} is missing from known_keys()"
            );
        }
        assert_eq!(did_you_mean("http_lisen", &known), Some("http_listen"));
        assert_eq!(did_you_mean("queue_worker", &known), Some("queue_workers"));
        assert_eq!(did_you_mean("completely_unrelated", &known), None);
        let warned = unknown_env_vars([
            ("EPUSDT_CONFIG".to_string(), String::new()),
            ("EPUSDT_TEST_REQUIRE_SERVICES".to_string(), String::new()),
            ("EPUSDT_NETWORKS__TRON__RPC_URLS".to_string(), String::new()),
            ("EPUSDT_RATE_LIMIT_PER_MINUTE".to_string(), String::new()),
            ("EPUSDT_DATA_DIRR".to_string(), String::new()),
            ("HOME".to_string(), String::new()),
        ]);
        assert_eq!(
            warned,
            [(
                "EPUSDT_DATA_DIRR".to_string(),
                Some("EPUSDT_DATA_DIR".to_string())
            )]
        );
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = Config::from_figment(Figment::from(Serialized::defaults(Config::default())))
            .expect("defaults valid");
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:8000");
        assert!(
            c.effective_database_url()
                .starts_with("sqlite://data/epusdt.db")
        );
        assert_eq!(c.order_expiration_time, 10);
    }

    #[test]
    fn layering_and_bad_value_names_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "epusdt.toml",
                "http_listen = \"127.0.0.1:7000\"\norder_expiration_time = 5",
            )?;
            jail.create_file(".env", "http_listen=:9000\napi_auth_token=123456\nforced_usdt_rate=7.1\nusdt_rates=USD:1,eur:0.9\nfoo_unknown=1\n")?;
            let src = Sources {
                process_env: true,
                ..Default::default()
            };
            let c = Config::load(&src).expect("valid");
            assert_eq!(c.http_listen.to_string(), "0.0.0.0:9000");
            assert_eq!(c.order_expiration_time, 5);
            assert_eq!(
                c.api_auth_token.as_ref().map(Secret::expose),
                Some("123456")
            );
            assert_eq!(
                c.usdt_rates.get("EUR").map(|d| d.to_string()).as_deref(),
                Some("0.9")
            );
            jail.set_env("EPUSDT_HTTP_LISTEN", "127.0.0.1:9100");
            let c = Config::load(&src).expect("valid");
            assert_eq!(c.http_listen.to_string(), "127.0.0.1:9100");
            jail.set_env("EPUSDT_HTTP_LISTEN", "not-an-address");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("http_listen"), "{e}");
            jail.set_env("EPUSDT_HTTP_LISTEN", "127.0.0.1:9100");
            jail.set_env("EPUSDT_ORDER_EXPIRATION_TIME", "0");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("order_expiration_time"), "{e}");
            Ok(())
        });
    }

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
            Ok(())
        });
    }

    #[test]
    fn networks_from_toml_env_and_dotenv_with_defaults() {
        Jail::expect_with(|jail| {
            // No networks at all: nothing watched.
            let c = Config::load(&Sources::default()).expect("valid");
            assert!(c.chains().expect("ok").is_empty());
            jail.create_file(
                "epusdt.toml",
                "[networks.ethereum]\nrpc_urls = [\"https://eth.example.com/v3/KEY1\", \"http://127.0.0.1:8545\"]\nconfirmations = 3\n[networks.polygon]\nenabled = false\nrpc_urls = \"https://p.example.com\"\n[networks.bsc]\n",
            )?;
            jail.create_file(
                ".env",
                "networks__tron__rpc_urls=https://api.trongrid.io\nnetworks__tron__api_key=12345\n",
            )?;
            jail.set_env("EPUSDT_NETWORKS__ETHEREUM__POLL_INTERVAL_MS", "250");
            let src = Sources {
                process_env: true,
                ..Default::default()
            };
            let c = Config::load(&src).expect("valid");
            let chains = c.chains().expect("ok");
            // polygon is disabled and bsc has no rpc_urls: neither is watched.
            let names: Vec<_> = chains.iter().map(|c| c.network.as_str()).collect();
            assert_eq!(names, ["ethereum", "tron"]);
            let eth = &chains[0];
            assert_eq!(eth.rpc_urls.len(), 2);
            assert_eq!(eth.confirmations, 3);
            assert_eq!(eth.decimals, 6);
            assert_eq!(eth.chain_id, Some(1));
            assert_eq!(eth.poll_interval, std::time::Duration::from_millis(250));
            assert_eq!(
                eth.usdt_contract,
                "0xdac17f958d2ee523a2206206994597c13d831ec7"
            );
            let tron = &chains[1];
            assert_eq!(tron.usdt_contract, "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t");
            assert_eq!(tron.api_key.as_ref().map(Secret::expose), Some("12345"));
            // `config check` output hides URL paths (API keys) and the TRON key.
            let shown = serde_json::to_string(&c).expect("json");
            assert!(
                !shown.contains("KEY1") && !shown.contains("12345"),
                "{shown}"
            );
            // Errors name the key.
            jail.set_env("EPUSDT_NETWORKS__ETHEREUM__RPC_URLS", "ftp://x");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("networks.ethereum.rpc_urls"), "{e}");
            jail.set_env("EPUSDT_NETWORKS__ETHEREUM__RPC_URLS", "http://127.0.0.1:1");
            jail.set_env("EPUSDT_NETWORKS__ETHEREUM__USDT_CONTRACT", "0x12");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("networks.ethereum.usdt_contract"), "{e}");
            jail.set_env(
                "EPUSDT_NETWORKS__ETHEREUM__USDT_CONTRACT",
                "0x00000000000000000000000000000000000000aa",
            );
            jail.set_env("EPUSDT_NETWORKS__ARBITRUM__RPC_URLS", "http://127.0.0.1:1");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("networks.arbitrum"), "{e}");
            Ok(())
        });
    }
}

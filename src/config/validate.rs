//! [`Config::validate`]: every value in range, every URL of the right scheme, every network
//! resolvable; an error names the key and says how to fix it.

use std::net::SocketAddr;

use rust_decimal::Decimal;

use super::{Config, ConfigError};

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
        if let Some(t) = &self.tg_bot_token {
            let t = t.expose().trim();
            // @BotFather tokens are `<bot id>:<35 characters>`; the token ends up in a URL path.
            let ok = t.split_once(':').is_some_and(|(id, rest)| {
                !id.is_empty()
                    && id.chars().all(|c| c.is_ascii_digit())
                    && !rest.is_empty()
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !ok {
                return bad(
                    "tg_bot_token",
                    "is not a bot token (digits, a colon, then letters, digits, _ or -); copy it from @BotFather, or remove it to run without the bot".into(),
                );
            }
        }
        if url::Url::parse(&self.tg_api_url).map(|u| u.scheme().starts_with("http")) != Ok(true) {
            return bad(
                "tg_api_url",
                format!(
                    "`{}` is not an http(s) URL; the default is https://api.telegram.org",
                    self.tg_api_url
                ),
            );
        }
        if let Err(word) = crate::domain::notice::NoticeKind::parse_list(&self.tg_notify) {
            return bad(
                "tg_notify",
                format!(
                    "`{word}` is not a notice kind; use all, none or a comma list of paid, transfer, callback, chain, security"
                ),
            );
        }
        if self.tg_manage.is_some_and(|id| id <= 0) {
            return bad(
                "tg_manage",
                "must be a Telegram user id (a positive number; the bot tells an unlinked user their id)".into(),
            );
        }
        if self.tg_lag_alert_blocks == 0 {
            return bad("tg_lag_alert_blocks", "must be at least 1 block".into());
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
        if self.secret_overlap_secs > 7 * 24 * 3600 {
            return bad(
                "secret_overlap_secs",
                format!(
                    "{} seconds is out of range; use 0..=604800 (an old secret should not live on for long)",
                    self.secret_overlap_secs
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
            if *r <= Decimal::ZERO || !crate::domain::currency::is_fiat_code(fiat) {
                return bad(
                    "usdt_rates",
                    format!(
                        "`{fiat}={r}`: use upper-case ISO 4217 codes and positive rates, e.g. USD:1,EUR:0.92"
                    ),
                );
            }
        }
        // Resolved here without filling the cache of `registry()`: a caller may still change
        // `networks` after loading (tests do), and the cache must see the final value.
        let registry = self.resolve_registry();
        let registry = &registry;
        if let Err(e) = registry.asset(&self.default_network) {
            return bad("default_network", e.to_string());
        }
        if let Err(e) = registry.asset_of(
            &self.epay_default_token,
            self.effective_epay_default_network(),
        ) {
            let key = if registry
                .network(self.effective_epay_default_network())
                .is_none()
            {
                "epay_default_network"
            } else {
                "epay_default_token"
            };
            return bad(key, e.to_string());
        }
        let currency = crate::domain::currency::normalize(&self.epay_default_currency);
        if !crate::domain::currency::is_price_currency(&currency) {
            return bad(
                "epay_default_currency",
                format!(
                    "`{}` is not a currency code; use e.g. CNY or USD",
                    self.epay_default_currency
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
        if !(1..=10_000).contains(&self.log_max_files) {
            return bad("log_max_files", "use 1..=10000".into());
        }
        if self.job_retention_days == 0 {
            return bad(
                "job_retention_days",
                "must be at least 1 (finished jobs are kept that many days)".into(),
            );
        }
        if self.retention_interval_secs < 1 {
            return bad("retention_interval_secs", "must be at least 1".into());
        }
        self.chains()?;
        if let Err((key, message)) = self.rate_limit.validate() {
            return bad(key, message);
        }
        if let Some(t) = &self.metrics_token
            && t.expose().trim().len() < 16
        {
            return bad(
                "metrics_token",
                "must be at least 16 characters (e.g. `openssl rand -hex 32`); remove it to serve /metrics without a token".into(),
            );
        }
        if let Some(m) = self.metrics_listen {
            let clash = |other: SocketAddr| m.port() != 0 && m.port() == other.port();
            if clash(self.http_listen) || self.admin_listen.is_some_and(clash) {
                return bad(
                    "metrics_listen",
                    format!(
                        "{m} uses the port of http_listen or admin_listen; pick another port (e.g. 127.0.0.1:9100) or remove it to serve /metrics on http_listen"
                    ),
                );
            }
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
}

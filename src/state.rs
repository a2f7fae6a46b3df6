//! `AppState`: what every handler and job is handed. Built by `app`, read by `http` and `jobs`.
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    audit::AuditLog,
    chain,
    config::LiveConfig,
    crypto::keys::KeyStore,
    queue::JobQueue,
    security::{ratelimit::RateLimit, replay::ReplayGuard},
};

/// Shared state handed to every handler and job.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force: `state.config.key` reads the newest accepted one (reload).
    pub config: LiveConfig,
    pub db: DatabaseConnection,
    pub queue: JobQueue,
    /// Outbound HTTP client (merchant callbacks); rustls with the ring provider.
    pub http: reqwest::Client,
    /// Master keyring sealing merchant secrets at rest.
    pub keys: Arc<KeyStore>,
    /// Append-only audit trail (table + daily JSONL file).
    pub audit: AuditLog,
    /// Rate limits: the middleware's state; handlers call `check_merchant`.
    pub rate_limit: RateLimit,
    /// GMPay replay nonces (Redis or the `request_nonces` table).
    pub replay: ReplayGuard,
    /// Chain watchers' status, for `/health` (see `chain`).
    pub chains: chain::Registry,
    /// The admin API's JWT signing key (sealed in `settings`, loaded at start-up).
    pub admin_tokens: crate::service::admin::tokens::TokenKeys,
    /// Payer-submitted transaction lookups (`/pay/submit-tx-hash`), one per network.
    pub tx_lookup: chain::TxLookup,
    /// The Telegram bot's client when `tg_bot_token` is set (notices and the bot's replies).
    pub telegram: Option<crate::service::telegram::TelegramBot>,
    /// Merchants and receiving wallets read on every create (`service::cache`; short TTL).
    pub caches: crate::service::cache::Caches,
}

impl AppState {
    /// What the chain watchers need from this state (they never see the whole of it).
    pub fn chain_deps(&self) -> chain::Deps {
        chain::Deps {
            db: self.db.clone(),
            queue: self.queue.clone(),
            audit: self.audit.clone(),
            registry: self.chains.clone(),
            rules: crate::service::order::OrderRules::from_config(&self.config),
            data_dir: self.config.data_dir.clone(),
        }
    }
}

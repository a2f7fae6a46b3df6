//! Configuration reload (SIGHUP, `systemctl reload`): a new configuration, loaded and
//! validated by the caller exactly as at start-up, is checked against what only a running
//! process can check (chain settings against their RPCs, the default merchant's token), then
//! put in force: [`LiveConfig`] swaps, and the parts built once at start are pushed the new
//! values (rate-limit rules, the callback resolver's private-address policy, the payer
//! transaction lookups' RPC clients). Chain watchers
//! restart themselves when their settings changed (`run_until_stopped` subscribes). Keys read
//! only at start-up keep their running value and are reported as needing a restart.
//!
//! A refused configuration changes nothing: every check runs before the first change.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sea_orm::DatabaseConnection;

use crate::{
    audit::{ACTOR_SYSTEM, AuditEvent, AuditLog, actions},
    chain,
    config::{
        Config, LiveConfig,
        live::{Change, diff, keep_restart_keys},
    },
    crypto::keys::KeyStore,
    security::ratelimit::RateLimit,
    service,
};

/// Why a reload was refused; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("chain settings: {0}")]
    Chain(String),
    #[error("api_auth_token: {0}")]
    Merchant(#[from] service::merchant::MerchantError),
}

/// Applies reloaded configurations to a running [`App`](super::App). Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    pub(super) config: LiveConfig,
    pub(super) rate_limit: RateLimit,
    pub(super) allow_private: Arc<AtomicBool>,
    pub(super) chains: chain::Registry,
    pub(super) tx_lookup: chain::TxLookup,
    pub(super) db: DatabaseConnection,
    pub(super) keys: Arc<KeyStore>,
    pub(super) audit: AuditLog,
    pub(super) caches: service::cache::Caches,
}

impl Reloader {
    /// The configuration in force.
    pub fn current(&self) -> &'static Config {
        self.config.get()
    }

    /// Checks `new` and puts it in force. Returns every changed key (those with
    /// `needs_restart` were not applied); an empty list means nothing changed.
    pub async fn apply(&self, new: Config) -> Result<Vec<Change>, ReloadError> {
        let old = self.config.get();
        let changes = diff(old, &new);
        if changes.is_empty() {
            return Ok(changes);
        }
        let new = keep_restart_keys(old, new);
        let changed = |key: &str| changes.iter().any(|c| c.key == key);
        let mut lookups = None;
        if changes.iter().any(|c| c.key.starts_with("networks.")) {
            // Token contract and chain id must match, as at start-up (an unreachable RPC is
            // only logged: the watcher checks again before scanning).
            chain::check_startup(&new, &self.chains)
                .await
                .map_err(|e| ReloadError::Chain(e.to_string()))?;
            lookups =
                Some(chain::TxLookup::new(&new).map_err(|e| ReloadError::Chain(e.to_string()))?);
        }
        if changed("api_auth_token") {
            service::merchant::sync_default_merchant(
                &self.db,
                &self.keys,
                new.api_auth_token.as_ref(),
            )
            .await?;
        }
        if let Some(fresh) = &lookups {
            self.tx_lookup.replace_with(fresh);
        }
        self.rate_limit.set_settings(new.rate_limit.clone());
        self.allow_private
            .store(new.allow_private_callbacks, Ordering::Relaxed);
        self.config.replace(new);
        // A reload is the operator's "take my changes now": cached merchants and wallets too.
        self.caches.clear();
        let applied: Vec<&str> = keys(&changes, false);
        let restart: Vec<&str> = keys(&changes, true);
        let event = AuditEvent::new(ACTOR_SYSTEM, actions::CONFIG_RELOADED, "config")
            .with_details(serde_json::json!({ "applied": applied, "needs_restart": restart }));
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(error = %e, "audit write failed");
        }
        Ok(changes)
    }
}

/// The keys of `changes` that do (`true`) or do not need a restart.
pub fn keys(changes: &[Change], needs_restart: bool) -> Vec<&str> {
    changes
        .iter()
        .filter(|c| c.needs_restart == needs_restart)
        .map(|c| c.key.as_str())
        .collect()
}

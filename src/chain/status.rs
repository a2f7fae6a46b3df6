//! What `/health` and `/metrics` show of the chain watchers: one [`ChainStatus`] per network in
//! a shared [`Registry`] (held by `AppState`), the chain gauges, and the staleness rules.
//!
//! Must never: block on a poisoned lock (a panicked watcher must not take `/health` down), or
//! touch the database.
use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use serde::Serialize;

use crate::{config::ChainSettings, domain::network::Network, service};

/// One network's watcher state, as shown by `/health`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainStatus {
    /// `starting`, `active` (holds the lease), `standby` (another instance scans), `failed`
    /// (configuration does not match the chain), `stopped`.
    pub role: &'static str,
    pub head: Option<u64>,
    pub confirmed_head: Option<i64>,
    pub cursor: Option<i64>,
    /// Confirmed blocks not yet scanned.
    pub lag_blocks: Option<i64>,
    /// Unix seconds of the last round that reached the confirmed head without error.
    pub last_ok_unix: Option<i64>,
    pub error: Option<String>,
    /// The RPC URL the watcher uses now, redacted (admin `/chains`; not in `/health`).
    #[serde(skip)]
    pub rpc_url: Option<String>,
    /// Poll interval, so `/health` can tell a stalled watcher from an idle one.
    #[serde(skip)]
    pub poll_interval: Duration,
}

/// Shared, in-process view of every watcher of this instance (`AppState::chains`).
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<RwLock<BTreeMap<&'static str, ChainStatus>>>);

impl Registry {
    pub fn snapshot(&self) -> BTreeMap<&'static str, ChainStatus> {
        match self.0.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn update(&self, network: Network, f: impl FnOnce(&mut ChainStatus)) {
        let mut map = match self.0.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(map.entry(network.as_str()).or_default());
    }

    /// Forgets every network but `keep` (a reload removed or disabled the others, so `/health`
    /// no longer reports their stopped watchers).
    pub fn retain(&self, keep: &[Network]) {
        let mut map = match self.0.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.retain(|name, _| keep.iter().any(|n| n.as_str() == *name));
    }

    /// Registers a configured network before its watcher runs (so `/health` lists it).
    pub fn register(&self, settings: &ChainSettings) {
        self.update(settings.network, |s| {
            s.role = "starting";
            s.poll_interval = settings.poll_interval;
        });
        let urls: Vec<String> = settings
            .rpc_urls
            .iter()
            .map(|u| crate::redact::rpc_url(u.as_str()))
            .collect();
        crate::telemetry::metrics::chain_registered(settings.network, &urls);
    }
}

/// A stalled watcher: no successful round for this long is reported as degraded.
pub fn stalled_after(status: &ChainStatus) -> Duration {
    status
        .poll_interval
        .saturating_mul(10)
        .max(Duration::from_secs(120))
}

/// Whether a watcher is down: it failed (configuration), or it holds the lease and its last
/// error is older news than its last success by more than [`stalled_after`]. `/health` and the
/// `epusdt_chain_watcher_up` gauge use this one rule.
pub fn is_stalled(status: &ChainStatus) -> bool {
    let limit = i64::try_from(stalled_after(status).as_secs()).unwrap_or(i64::MAX);
    status.role == "failed"
        || (status.role == "active"
            && status.error.is_some()
            && age_secs(status.last_ok_unix).is_none_or(|a| a > limit))
}

/// Seconds since `unix`, or `None`.
pub fn age_secs(unix: Option<i64>) -> Option<i64> {
    unix.map(|t| service::now() - t)
}

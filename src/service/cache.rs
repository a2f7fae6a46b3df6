//! Short-lived read-through caches of rows the hot paths read on every request and that change
//! rarely: a merchant (with its secret unsealed) by pid, the receiving wallets of a (network,
//! merchant), and what a trade_id names for check-status and the checkout page. They save a
//! database round trip per request (each statement is a round trip, on SQLite a cross-thread
//! hand-off too).
//!
//! Staleness is bounded and safe:
//! - entries live [`TTL`] at most, so a change made by another process (the CLI, another
//!   instance) is seen within that time;
//! - this process' admin API and reload clear them at once ([`Caches::clear`]);
//! - a signature that does not verify against a cached merchant is checked again against a
//!   fresh read (a rotated secret works at once everywhere);
//! - nothing absent or empty is cached (a merchant or wallet added elsewhere is used at once);
//! - a wallet disabled elsewhere may still receive an order for up to [`TTL`]: it is still
//!   watched and credited (the watcher watches every wallet, enabled or not);
//! - a trade_id's order is kept [`FINAL_TTL`] once it is paid or cancelled (it never changes
//!   again) and never before; the checkout page's network-switch offer (networks with a wallet,
//!   the order's children) is kept [`LIVE_TTL`], and this process' network switch and cancel
//!   forget it at once; the orders with a confirming payment are kept [`LIVE_TTL`] too.
//!   Nothing that moves money reads these caches: crediting, expiry and
//!   callbacks always read the database.
use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{merchant::Merchant, order::choice::Lookup};
use crate::{domain::network::Network, store::entities::wallet};

/// How long a merchant or wallet list is served without a database read.
pub const TTL: Duration = Duration::from_secs(2);
/// How long a waiting order's network-switch offer is served from memory.
pub const LIVE_TTL: Duration = Duration::from_secs(1);
/// How long a paid or cancelled order is served from memory.
pub const FINAL_TTL: Duration = Duration::from_secs(600);
/// Entries per cache; past it the cache starts over (a flood of distinct pids cannot grow it).
const CAPACITY: usize = 4_096;

/// A map whose entries expire a TTL after they were stored.
pub struct TtlMap<K, V> {
    ttl: Duration,
    /// Each value with the instant it stops being served.
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value, while its TTL runs.
    pub fn get(&self, key: &K) -> Option<V> {
        let m = self.lock();
        m.get(key)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, v)| v.clone())
    }

    /// Stores `value` for the map's TTL.
    pub fn put(&self, key: K, value: V) {
        let mut m = self.lock();
        if m.len() >= CAPACITY {
            m.clear();
        }
        m.insert(key, (Instant::now() + self.ttl, value));
    }

    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// The receiving wallets of a (network, merchant id), in `wallet::receiving`'s order.
pub type Wallets = Arc<Vec<wallet::Model>>;

/// The caches one process shares between its handlers (cheap to clone).
#[derive(Clone)]
pub struct Caches {
    pub merchants: Arc<TtlMap<i64, Merchant>>,
    pub wallets: Arc<TtlMap<(Network, i64), Wallets>>,
    /// Paid and cancelled orders by trade_id (`order::choice::lookup_cached`).
    pub trades: Arc<TtlMap<String, Lookup>>,
    /// A waiting order's network-switch facts for its checkout page: the networks with a
    /// receiving wallet and the order's children (`LIVE_TTL`).
    pub switch_facts: Arc<TtlMap<String, SwitchFacts>>,
    /// Every order with a payment confirming now (`order::confirming`), read whole: the table
    /// is small, so check-status of a waiting order costs no query of its own (`LIVE_TTL`).
    pub confirming: Arc<TtlMap<(), Confirming>>,
    /// Not a cache: the group commit of order inserts (`store::order_inserts`), per process.
    pub order_inserts: Arc<crate::store::order_inserts::InsertQueue>,
}

/// Order id → (confirmations, confirmations required) of its most confirmed seen transfer.
pub type Confirming = Arc<HashMap<i64, (i64, i64)>>;

/// See [`Caches::switch_facts`].
pub type SwitchFacts = Arc<(
    Vec<crate::domain::network::Asset>,
    Vec<crate::domain::order::Order>,
)>;

impl Default for Caches {
    fn default() -> Self {
        Self {
            merchants: Arc::new(TtlMap::new(TTL)),
            wallets: Arc::new(TtlMap::new(TTL)),
            trades: Arc::new(TtlMap::new(FINAL_TTL)),
            switch_facts: Arc::new(TtlMap::new(LIVE_TTL)),
            confirming: Arc::new(TtlMap::new(LIVE_TTL)),
            order_inserts: Default::default(),
        }
    }
}

impl Caches {
    /// Forgets what the checkout page of `trade_id` shows (after a cancel or a switch here).
    pub fn forget_trade(&self, trade_id: &str) {
        let key = trade_id.to_string();
        self.trades.forget(&key);
        self.switch_facts.forget(&key);
    }

    /// Forgets everything (after an admin change or a reload in this process).
    pub fn clear(&self) {
        self.merchants.clear();
        self.wallets.clear();
        self.trades.clear();
        self.switch_facts.clear();
        self.confirming.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_clear() {
        let m: TtlMap<i64, &str> = TtlMap::new(Duration::from_millis(30));
        m.put(1, "a");
        assert_eq!(m.get(&1), Some("a"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(m.get(&1), None, "expired");
        m.put(2, "b");
        m.clear();
        assert_eq!(m.get(&2), None);
        m.put(3, "c");
        m.forget(&3);
        assert_eq!(m.get(&3), None);
    }

    #[test]
    fn capacity_bounds_the_map() {
        let m: TtlMap<usize, usize> = TtlMap::new(TTL);
        for i in 0..CAPACITY + 10 {
            m.put(i, i);
        }
        assert!(m.lock().len() <= CAPACITY);
        assert_eq!(m.get(&(CAPACITY + 9)), Some(CAPACITY + 9));
    }
}

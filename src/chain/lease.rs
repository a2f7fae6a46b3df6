//! The scanning lease: at most one instance scans a network at a time (DESIGN §3).
//!
//! A row `chain_lease:<network>` in `settings` holds `<owner>|<expiry unix ms>`. It is taken
//! with an INSERT (the primary key decides a race) or a compare-and-swap UPDATE on the exact
//! value read (only when it is ours or expired), renewed every round and deleted on shutdown.
//! The lease is an efficiency measure, not the safety net: the cursor's own compare-and-swap
//! and the unique transfer key keep two scanners from double-crediting even if clocks disagree.
//!
//! This module must never block on the database for longer than one query, and never take a
//! lease it has not seen expire.
use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};

use crate::{domain::network::Network, service, store::entities::setting};

/// One network's lease, as held (or wanted) by this watcher.
#[derive(Debug)]
pub struct Lease {
    key: String,
    owner: String,
    ttl: Duration,
    /// When we last took or renewed it (local monotonic clock).
    renewed: Option<Instant>,
}

impl Lease {
    pub fn new(network: Network, ttl: Duration) -> Self {
        use rand::Rng;
        let owner = format!(
            "pid{}-{:016x}",
            std::process::id(),
            rand::rng().random::<u64>()
        );
        Self {
            key: format!("chain_lease:{}", network.as_str()),
            owner,
            ttl,
            renewed: None,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// True once a third of the TTL has passed since the last renewal.
    pub fn renewal_due(&self) -> bool {
        self.renewed.is_none_or(|t| t.elapsed() >= self.ttl / 3)
    }

    fn value(&self, now_ms: i64) -> String {
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        format!("{}|{}", self.owner, now_ms.saturating_add(ttl_ms))
    }

    /// Takes or renews the lease. `Ok(false)`: another live instance holds it.
    pub async fn acquire(&mut self, db: &DatabaseConnection) -> Result<bool, DbErr> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let value = self.value(now_ms);
        let held = match setting::Entity::find_by_id(self.key.as_str())
            .one(db)
            .await?
        {
            None => {
                let row = setting::ActiveModel {
                    key: Set(self.key.clone()),
                    value: Set(value),
                    updated_at: Set(service::now()),
                };
                match row.insert(db).await {
                    Ok(_) => true,
                    Err(e) => {
                        // Someone inserted first (primary key), or the database failed.
                        let exists = setting::Entity::find_by_id(self.key.as_str())
                            .one(db)
                            .await?
                            .is_some();
                        if !exists {
                            return Err(e);
                        }
                        false
                    }
                }
            }
            Some(row) => {
                let (owner, expiry) = parse(&row.value);
                if owner != self.owner && expiry > now_ms {
                    false
                } else {
                    let res = setting::Entity::update_many()
                        .col_expr(setting::Column::Value, Expr::value(value))
                        .col_expr(setting::Column::UpdatedAt, Expr::value(service::now()))
                        .filter(setting::Column::Key.eq(self.key.as_str()))
                        .filter(setting::Column::Value.eq(row.value.as_str()))
                        .exec(db)
                        .await?;
                    res.rows_affected == 1
                }
            }
        };
        if held {
            if self.renewed.is_none() {
                tracing::info!(lease = %self.key, owner = %self.owner, "scanning lease taken");
            }
            self.renewed = Some(Instant::now());
        } else {
            if self.renewed.is_some() {
                tracing::warn!(lease = %self.key, owner = %self.owner, "scanning lease lost to another instance");
            }
            self.renewed = None;
        }
        Ok(held)
    }

    /// Gives the lease up (graceful shutdown) so another instance can take over at once.
    pub async fn release(&mut self, db: &DatabaseConnection) -> Result<(), DbErr> {
        if self.renewed.take().is_none() {
            return Ok(());
        }
        setting::Entity::delete_many()
            .filter(setting::Column::Key.eq(self.key.as_str()))
            .filter(setting::Column::Value.starts_with(format!("{}|", self.owner)))
            .exec(db)
            .await?;
        Ok(())
    }
}

/// `owner|expiry_ms`; anything unreadable counts as expired.
fn parse(value: &str) -> (&str, i64) {
    match value.rsplit_once('|') {
        Some((owner, exp)) => (owner, exp.parse().unwrap_or(0)),
        None => (value, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        assert_eq!(parse("a|12"), ("a", 12));
        assert_eq!(parse("garbage"), ("garbage", 0));
        assert_eq!(parse("a|x"), ("a", 0));
    }
}

//! GMPay replay protection: a signed request may carry `timestamp` (unix seconds) and `nonce`;
//! the timestamp must be within ±300 s of the gateway's clock and the nonce is accepted once per
//! merchant. Merchants in strict replay mode must send both.
//!
//! Used nonces live in Redis (`SET key 1 NX EX 600`) when Redis is configured, otherwise in the
//! `request_nonces` table, where the unique index `request_nonces_pid_nonce_key` is what makes a
//! nonce single-use (insert; a violation means reuse) — never SELECT-then-INSERT, which two
//! instances could both pass. Nonces are kept 600 s: a timestamp can be up to 300 s in the future
//! and stays acceptable for 300 s after that, so no accepted timestamp outlives its nonce.
//!
//! Invariant: this module fails closed. If the store cannot be reached the request is refused
//! (`StoreUnavailable` → "system error, retry later"), because accepting it could accept a replay.
use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use redis::aio::ConnectionManager;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use super::nonce_entity as nonce_row;
use crate::store;

/// Allowed distance between a request's `timestamp` and the gateway's clock.
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;
/// How long a used nonce is remembered (twice the window, see the module docs).
pub const NONCE_TTL_SECS: i64 = 2 * TIMESTAMP_WINDOW_SECS;
/// Expired database rows are purged at most this often per guard.
const PURGE_EVERY_SECS: i64 = 60;

/// Why a request was refused. `Display` is the message the merchant sees (except
/// `StoreUnavailable`, which the merchant sees as a system error); `http::error` maps it to the
/// protocol's reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "timestamp is {skew} s away from the gateway's clock (allowed ±300 s); check your server time"
    )]
    TimestampOutOfWindow { skew: i64 },
    #[error("timestamp `{0}` must be unix seconds")]
    TimestampMalformed(String),
    #[error("nonce was already used; send a fresh random nonce with every request")]
    NonceReused,
    #[error("nonce must be 8 to 64 characters of A-Z, a-z, 0-9, `_` or `-`")]
    NonceMalformed,
    #[error(
        "{0} is required (strict replay mode needs both; a nonce needs a timestamp): send unix seconds in `timestamp` and a fresh random `nonce` of 8 to 64 characters [A-Za-z0-9_-]"
    )]
    Missing(&'static str),
    #[error("nonce store unavailable: {0}")]
    StoreUnavailable(String),
}

/// Is `nonce` 8..=64 characters of `[A-Za-z0-9_-]`?
pub fn nonce_well_formed(nonce: &str) -> bool {
    (8..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Clone)]
enum NonceStore {
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
    Database(DatabaseConnection),
}

/// Checks timestamps and remembers nonces. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct ReplayGuard {
    store: NonceStore,
    last_purge: Arc<AtomicI64>,
}

impl ReplayGuard {
    /// Nonces in Redis (keys `epusdt:<namespace>:nonce:<pid>:<nonce>`; pass the deployment's
    /// `queue_name`) when `redis` is `Some`, else in the database.
    pub fn new(redis: Option<ConnectionManager>, db: DatabaseConnection, namespace: &str) -> Self {
        match redis {
            Some(conn) => Self::redis(conn, format!("epusdt:{namespace}:nonce:")),
            None => Self::database(db),
        }
    }

    /// Nonces in the `request_nonces` table.
    pub fn database(db: DatabaseConnection) -> Self {
        Self {
            store: NonceStore::Database(db),
            last_purge: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Nonces in Redis under `<prefix><pid>:<nonce>`.
    pub fn redis(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            store: NonceStore::Redis {
                conn,
                prefix: prefix.into(),
            },
            last_purge: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The whole GMPay policy for one authenticated request of merchant `pid`, from the raw
    /// `timestamp` and `nonce` parameters (empty counts as absent):
    /// - neither: accepted, unless `strict`;
    /// - `timestamp` only: must be within ±300 s; refused when `strict` (needs a nonce);
    /// - `nonce` only: refused (a nonce without a timestamp could never be forgotten);
    /// - both: [`ReplayGuard::check_and_store`].
    ///
    /// Call it after the signature is verified (so nobody can burn a merchant's nonces) and after
    /// the other fields are validated (so a typo does not burn the merchant's nonce).
    pub async fn check_request(
        &self,
        pid: i64,
        strict: bool,
        timestamp: Option<&str>,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<(), ReplayError> {
        let timestamp = timestamp.map(str::trim).filter(|s| !s.is_empty());
        let nonce = nonce.map(str::trim).filter(|s| !s.is_empty());
        match (timestamp, nonce) {
            (None, None) if strict => Err(ReplayError::Missing("timestamp")),
            (None, None) => Ok(()),
            (None, Some(_)) => Err(ReplayError::Missing("timestamp")),
            (Some(t), None) => {
                check_window(parse_timestamp(t)?, now)?;
                if strict {
                    Err(ReplayError::Missing("nonce"))
                } else {
                    Ok(())
                }
            }
            (Some(t), Some(n)) => self.check_and_store(pid, n, parse_timestamp(t)?, now).await,
        }
    }

    /// Accepts (`timestamp`, `nonce`) for merchant `pid` once: checks the nonce's shape and the
    /// ±300 s window, then records the nonce; a second call with the same nonce within 600 s is
    /// `NonceReused`, also across instances sharing the store.
    pub async fn check_and_store(
        &self,
        pid: i64,
        nonce: &str,
        timestamp: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        if !nonce_well_formed(nonce) {
            return Err(ReplayError::NonceMalformed);
        }
        check_window(timestamp, now)?;
        let fresh = match &self.store {
            NonceStore::Redis { conn, prefix } => {
                store_redis(conn.clone(), &format!("{prefix}{pid}:{nonce}")).await?
            }
            NonceStore::Database(db) => {
                self.maybe_purge(db, now).await;
                store_db(db, pid, nonce, now).await?
            }
        };
        if fresh {
            Ok(())
        } else {
            tracing::warn!(
                target: "epusdt::audit",
                action = "replay.rejected",
                pid,
                nonce,
                timestamp,
                "replayed GMPay request refused: nonce already used"
            );
            Err(ReplayError::NonceReused)
        }
    }

    /// Deletes expired nonce rows, at most once a minute per guard; failures are only logged.
    async fn maybe_purge(&self, db: &DatabaseConnection, now: i64) {
        let last = self.last_purge.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY_SECS
            || self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = purge_expired(db, now).await {
            tracing::warn!(error = %e, "purging expired request nonces failed");
        }
    }
}

/// Deletes nonce rows that expired before `now`; returns how many.
pub async fn purge_expired(db: &DatabaseConnection, now: i64) -> Result<u64, sea_orm::DbErr> {
    nonce_row::Entity::delete_many()
        .filter(nonce_row::Column::ExpiresAt.lte(now))
        .exec(db)
        .await
        .map(|r| r.rows_affected)
}

fn parse_timestamp(t: &str) -> Result<i64, ReplayError> {
    t.parse::<i64>()
        .map_err(|_| ReplayError::TimestampMalformed(t.chars().take(32).collect()))
}

fn check_window(timestamp: i64, now: i64) -> Result<(), ReplayError> {
    let skew = timestamp.saturating_sub(now);
    if skew.saturating_abs() > TIMESTAMP_WINDOW_SECS {
        Err(ReplayError::TimestampOutOfWindow { skew })
    } else {
        Ok(())
    }
}

/// `SET key 1 NX EX 600`: `true` when the nonce was new.
async fn store_redis(mut conn: ConnectionManager, key: &str) -> Result<bool, ReplayError> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(1).arg("NX").arg("EX").arg(NONCE_TTL_SECS);
    let set = cmd.query_async::<Option<String>>(&mut conn);
    match tokio::time::timeout(2 * super::REDIS_RESPONSE_TIMEOUT, set).await {
        Ok(Ok(reply)) => Ok(reply.is_some()),
        Ok(Err(e)) => Err(ReplayError::StoreUnavailable(format!("redis: {e}"))),
        Err(_) => Err(ReplayError::StoreUnavailable("redis: timed out".into())),
    }
}

/// Inserts the nonce; `false` when the unique index says it is already there and not expired.
async fn store_db(
    db: &DatabaseConnection,
    pid: i64,
    nonce: &str,
    now: i64,
) -> Result<bool, ReplayError> {
    let unavailable = |e: sea_orm::DbErr| ReplayError::StoreUnavailable(format!("database: {e}"));
    for attempt in 0..2 {
        let row = nonce_row::ActiveModel {
            pid: Set(pid),
            nonce: Set(nonce.to_owned()),
            expires_at: Set(now + NONCE_TTL_SECS),
            ..Default::default()
        };
        match nonce_row::Entity::insert(row)
            .exec_without_returning(db)
            .await
        {
            Ok(_) => return Ok(true),
            Err(e)
                if store::is_unique_violation(
                    &e,
                    "request_nonces_pid_nonce_key",
                    "request_nonces.pid, request_nonces.nonce",
                ) =>
            {
                if attempt > 0 {
                    return Ok(false);
                }
                // A row that expired but was not purged yet does not make the nonce used: delete
                // exactly that row (only if still expired) and insert again. Concurrent callers
                // race on the insert, and the unique index lets only one of them win.
                let freed = nonce_row::Entity::delete_many()
                    .filter(nonce_row::Column::Pid.eq(pid))
                    .filter(nonce_row::Column::Nonce.eq(nonce))
                    .filter(nonce_row::Column::ExpiresAt.lte(now))
                    .exec(db)
                    .await
                    .map_err(unavailable)?
                    .rows_affected;
                if freed == 0 {
                    return Ok(false);
                }
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_shape() {
        assert!(nonce_well_formed("abcDEF12"));
        assert!(nonce_well_formed(&"a_-9".repeat(16)));
        assert!(!nonce_well_formed("short7c"));
        assert!(!nonce_well_formed(&"a".repeat(65)));
        assert!(!nonce_well_formed("abc def12"));
        assert!(!nonce_well_formed("abcdefgé"));
        assert!(!nonce_well_formed("abcd:efgh"));
    }

    #[test]
    fn window_is_inclusive_300_s_both_ways() {
        assert_eq!(check_window(1000 + 300, 1000), Ok(()));
        assert_eq!(check_window(1000 - 300, 1000), Ok(()));
        assert_eq!(
            check_window(1000 - 301, 1000),
            Err(ReplayError::TimestampOutOfWindow { skew: -301 })
        );
        assert_eq!(
            check_window(1000 + 301, 1000),
            Err(ReplayError::TimestampOutOfWindow { skew: 301 })
        );
        assert!(check_window(i64::MIN, i64::MAX).is_err());
    }
}

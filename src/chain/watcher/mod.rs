//! The cursor loop: one [`Watcher`] drives one [`Scanner`] for one network (see the module
//! documentation of [`crate::chain`] for what a round does and the invariants it keeps).
//! Cursor persistence is in [`cursor`], the step back over a reorg in [`fork`].
mod cursor;
mod fork;
mod pending;
#[cfg(test)]
mod tests;

use std::{
    collections::{HashSet, VecDeque},
    future::Future,
    sync::Arc,
    time::Duration,
};

use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use tokio::{sync::watch, task::JoinHandle};
use tracing::Instrument;

mod notice;
pub use cursor::cursors;

use super::{
    Deps, Heads, InstanceId, Lease, MAX_BACKOFF, MAX_RETRY_AFTER, Registry, ScanBatch, ScanError,
    Scanner,
};
use crate::{
    audit::AuditLog,
    config::ChainSettings,
    domain::network::Network,
    queue::JobQueue,
    service::{
        self,
        order::{CreditOutcome, OrderError},
    },
    store::entities::wallet,
};

/// The persisted scan position: every block `<= block` has been scanned; `hash` is the hash
/// block `block` had when it was scanned (empty when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    block: i64,
    hash: String,
}

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("stopped")]
    Stopped,
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("crediting a transfer failed: {0}")]
    Credit(#[from] OrderError),
    #[error("the cursor was moved by someone else (another instance, or an operator); re-reading")]
    CursorMoved,
    #[error("the scanning lease is no longer ours; nothing written")]
    LeaseLost,
}

enum Round {
    /// Reached the confirmed head.
    CaughtUp,
    /// More to do right away (reorg handled).
    Continue,
    /// Another instance holds the lease.
    Standby,
}

/// A range being scanned ahead of the commits: blocks `from..=to`. Dropping it cancels the scan.
struct Ahead {
    from: u64,
    to: u64,
    task: JoinHandle<Result<ScanBatch, ScanError>>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Drives one [`Scanner`] for one network until told to stop.
pub struct Watcher<S> {
    scanner: Arc<S>,
    settings: ChainSettings,
    db: DatabaseConnection,
    queue: JobQueue,
    registry: Registry,
    audit: AuditLog,
    lease: Lease,
    /// Current range size; halves on errors, doubles on success up to `ceiling`.
    range: u64,
    /// Order matching rules (clock tolerance) from the configuration.
    rules: service::order::OrderRules,
    /// Largest range the provider has not refused (`max_block_range` until it refuses one):
    /// a refused size is never tried again, so the range does not double back into the cap.
    ceiling: u64,
    /// Ranges scanned at once: 1 after a failed range (so the next round's first range is
    /// scanned alone and progress is not left to a race), doubling per committed range up to
    /// `at_once_max`.
    at_once: usize,
    /// [`Scanner::ranges_at_once`]; halves when the provider rate limits, and stays there.
    at_once_max: usize,
    /// The current round advanced the cursor (a later failure starts a fresh back-off).
    progressed: bool,
    prepared: bool,
    /// The "confirming" rows last written ([`pending`]).
    pending: pending::Pending,
}

impl<S: Scanner> Watcher<S> {
    /// A watcher scanning under a temporary identity (see [`with_instance`](Self::with_instance)).
    pub fn new(scanner: S, settings: ChainSettings, deps: &Deps) -> Self {
        let lease = Lease::new(
            settings.network,
            settings.lease_ttl,
            &InstanceId::ephemeral(),
        );
        Self {
            range: settings.max_block_range,
            rules: deps.rules,
            ceiling: settings.max_block_range,
            progressed: false,
            at_once: scanner.ranges_at_once().max(1),
            at_once_max: scanner.ranges_at_once().max(1),
            scanner: Arc::new(scanner),
            db: deps.db.clone(),
            queue: deps.queue.clone(),
            registry: deps.registry.clone(),
            audit: deps.audit.clone(),
            lease,
            settings,
            prepared: false,
            pending: pending::Pending::default(),
        }
    }

    /// Scans under this process's stable identity, so a restart resumes its own lease.
    pub fn with_instance(mut self, instance: &InstanceId) -> Self {
        self.lease = Lease::new(self.settings.network, self.settings.lease_ttl, instance);
        self
    }

    fn network(&self) -> Network {
        self.settings.network
    }

    /// Runs rounds until `stop` is true; releases the lease on the way out.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let network = self.network();
        self.registry.register(&self.settings);
        tracing::info!(
            %network,
            tokens = %self.settings.tokens.iter().map(|t| format!("{}={}", t.token, if t.native { "native" } else { t.contract.as_str() })).collect::<Vec<_>>().join(", "),
            confirmations = self.settings.confirmations,
            rpc = %self.settings.rpc_urls.iter().map(|u| crate::redact::rpc_url(u.as_str())).collect::<Vec<_>>().join(", "),
            "chain watcher started"
        );
        self.lease.start(self.db.clone());
        let mut failures: u32 = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            let outcome = self.round(&mut stop).await;
            let active = self.scanner.active_endpoint();
            self.registry.update(network, |s| s.rpc_url = active);
            let delay = match outcome {
                Ok(Round::CaughtUp) => {
                    failures = 0;
                    self.settings.poll_interval
                }
                Ok(Round::Continue) => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(Round::Standby) => {
                    failures = 0;
                    self.registry.update(network, |s| {
                        s.role = "standby";
                        s.error = None;
                    });
                    // The heartbeat takes the lease when it expires; start scanning right then.
                    tokio::select! {
                        _ = self.lease.wait_held(self.lease.standby_poll()) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    Duration::ZERO
                }
                Err(RoundError::Stopped) => break,
                // The next round stands by (or resumes when the heartbeat renews it).
                Err(RoundError::LeaseLost) => Duration::ZERO,
                Err(RoundError::Scan(ScanError::Fatal(msg))) => {
                    tracing::error!(%network, error = %msg, "chain watcher stopped: fix the configuration and restart");
                    self.registry.update(network, |s| {
                        s.role = "failed";
                        s.error = Some(msg);
                    });
                    crate::telemetry::metrics::chain_error(network);
                    // Stop renewing: an instance with a working configuration may scan.
                    if let Err(e) = self.lease.release(&self.db).await {
                        tracing::warn!(%network, error = %e, "could not release the scanning lease; it expires on its own");
                    }
                    let _ = stop.wait_for(|s| *s).await;
                    break;
                }
                Err(e) => {
                    if self.progressed {
                        // The cursor moved this round: an old streak of failures is over.
                        failures = 0;
                    }
                    failures = failures.saturating_add(1);
                    let delay = self.backoff(failures, &e);
                    let msg = e.to_string();
                    if failures <= 3 || failures.is_power_of_two() {
                        tracing::warn!(%network, error = %msg, failures, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "chain scan round failed; nothing advanced, retrying");
                    }
                    self.registry.update(network, |s| s.error = Some(msg));
                    crate::telemetry::metrics::chain_error(network);
                    delay
                }
            };
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
        if let Err(e) = self.lease.release(&self.db).await {
            tracing::warn!(%network, error = %e, "could not release the scanning lease; another instance takes over when it expires");
        }
        self.registry.update(network, |s| s.role = "stopped");
        tracing::info!(%network, "chain watcher stopped");
    }

    /// Exponential back-off from the poll interval (at least 100 ms) up to [`MAX_BACKOFF`];
    /// a node's `Retry-After` wins when longer.
    fn backoff(&self, failures: u32, e: &RoundError) -> Duration {
        let base = self.settings.poll_interval.max(Duration::from_millis(100));
        let exp = base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(MAX_BACKOFF);
        match e {
            RoundError::Scan(ScanError::RateLimited {
                retry_after: Some(r),
                ..
            }) => exp.max((*r).min(MAX_RETRY_AFTER)),
            _ => exp,
        }
    }

    /// Runs `fut` unless `stop` turns true first.
    async fn stoppable<T>(
        stop: &mut watch::Receiver<bool>,
        fut: impl Future<Output = Result<T, ScanError>>,
    ) -> Result<T, RoundError> {
        tokio::select! {
            r = fut => r.map_err(RoundError::Scan),
            _ = stop.wait_for(|s| *s) => Err(RoundError::Stopped),
        }
    }

    async fn round(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Round, RoundError> {
        let network = self.network();
        self.progressed = false;
        if !self.lease.held() {
            return Ok(Round::Standby);
        }
        self.registry.update(network, |s| {
            if s.role != "active" {
                s.role = "active";
            }
        });
        if !self.prepared {
            Self::stoppable(stop, self.scanner.prepare()).await?;
            self.prepared = true;
        }
        let heads = Self::stoppable(stop, self.scanner.heads()).await?;
        let confirmed = i64::try_from(heads.finalized)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(self.settings.confirmations).unwrap_or(i64::MAX));
        // Read after the heads: a wallet added before a confirmed payment was made is watched.
        let watched = self.watched().await?;
        let mut cursor = self.load_cursor(confirmed, stop).await?;
        self.publish(&heads, confirmed, &cursor);

        if let Ok(at) = u64::try_from(cursor.block)
            && !cursor.hash.is_empty()
            && cursor.block <= confirmed
        {
            let now = Self::stoppable(stop, self.scanner.block_hash(at)).await?;
            if now != cursor.hash {
                self.step_back(&cursor, &now, stop).await?;
                return Ok(Round::Continue);
            }
        }

        // Up to `at_once` consecutive ranges are scanned ahead (each scan proves its own
        // range; see `Scanner::ranges_at_once`); they are committed strictly in order, each
        // with the compare-and-swap on the cursor the previous commit wrote. A range that
        // fails drops every range after it, scanned or not: nothing past it is written.
        let watched = Arc::new(watched);
        let mut ahead: VecDeque<Ahead> = VecDeque::new();
        // First block not yet handed to a scan.
        let mut next_from = cursor.block.saturating_add(1);
        loop {
            if *stop.borrow() {
                return Err(RoundError::Stopped);
            }
            while ahead.len() < self.at_once.max(1) && next_from <= confirmed {
                let to = next_from
                    .saturating_add(i64::try_from(self.range).unwrap_or(i64::MAX) - 1)
                    .min(confirmed);
                let (Ok(from_u), Ok(to_u)) = (u64::try_from(next_from), u64::try_from(to)) else {
                    break;
                };
                let (scanner, watched) = (self.scanner.clone(), watched.clone());
                let task = tokio::spawn(
                    async move { scanner.scan(from_u, to_u, &watched).await }.in_current_span(),
                );
                ahead.push_back(Ahead {
                    from: from_u,
                    to: to_u,
                    task,
                });
                next_from = to.saturating_add(1);
            }
            let Some(mut range) = ahead.pop_front() else {
                break;
            };
            let scanned = tokio::select! {
                r = &mut range.task => r.unwrap_or_else(|e| Err(ScanError::Unavailable(format!(
                    "scanning blocks {}..={} failed: {e}; retrying", range.from, range.to
                )))),
                _ = stop.wait_for(|s| *s) => return Err(RoundError::Stopped),
            };
            let batch = match scanned {
                Ok(b) => b,
                Err(ScanError::RangeTooLarge { message, hint }) => {
                    // A size signal: rescan from the cursor at once with a smaller range, no
                    // back-off (the ranges scanned ahead were as large: dropped).
                    self.refused(range.to - range.from + 1, hint, message)?;
                    ahead.clear();
                    next_from = cursor.block.saturating_add(1);
                    continue;
                }
                Err(e) => {
                    self.range = (self.range / 2).max(1);
                    self.at_once = 1;
                    if matches!(e, ScanError::RateLimited { .. }) {
                        // The provider wants fewer requests: fewer ranges at once from now on.
                        self.at_once_max = (self.at_once_max / 2).max(1);
                    }
                    return Err(RoundError::Scan(e));
                }
            };
            let next = Cursor {
                block: i64::try_from(range.to).unwrap_or(i64::MAX),
                hash: batch.to_hash.clone(),
            };
            let outcomes = self.commit(&cursor, &next, &batch.transfers).await?;
            cursor = next;
            for (t, outcome) in batch.transfers.iter().zip(&outcomes) {
                service::order::observe_credit(t, outcome);
                self.flagged_notice(outcome, t).await;
                if let CreditOutcome::Paid { order_id, trade_id } = outcome {
                    tracing::info!(%network, trade_id, "order paid on chain; queueing callback");
                    if let Err(e) =
                        service::order::queue_callback(&self.db, &self.queue, *order_id).await
                    {
                        // The order is paid and committed; the sweeper queues it later.
                        tracing::error!(%network, trade_id, error = %e, "could not queue the callback now; the sweeper will");
                    }
                }
            }
            self.progressed = true;
            self.publish(&heads, confirmed, &cursor);
            // Progress: whatever failed before has recovered.
            self.registry.update(network, |s| s.error = None);
            self.range = self.range.saturating_mul(2).min(self.ceiling).max(1);
            self.at_once = self.at_once.saturating_mul(2).min(self.at_once_max).max(1);
            if !self.lease.held() {
                return Ok(Round::Standby);
            }
        }
        self.registry.update(network, |s| {
            s.last_ok_unix = Some(service::now());
            s.error = None;
        });
        crate::telemetry::metrics::chain_caught_up(network, service::now());
        self.show_unconfirmed(&heads, confirmed, &watched, stop)
            .await;
        Ok(Round::CaughtUp)
    }

    /// The provider refused a range of `size` blocks: lower the ceiling below it (to the
    /// provider's hint when it gives a smaller one) and retry with a smaller range. A refused
    /// single block cannot shrink further: that is an error of the round.
    fn refused(&mut self, size: u64, hint: Option<u64>, message: String) -> Result<(), RoundError> {
        if size <= 1 {
            return Err(RoundError::Scan(ScanError::Unavailable(format!(
                "{message}; even a single block is refused: the provider caps the results, not the range — use another RPC URL"
            ))));
        }
        let below = size - 1;
        let ceiling = hint.filter(|h| (1..=below).contains(h)).unwrap_or(below);
        let next = hint
            .filter(|h| (1..=below).contains(h))
            .unwrap_or(size / 2)
            .max(1);
        if ceiling < self.ceiling {
            tracing::info!(network = %self.network(), refused = size, hint, ceiling, error = %message, "the provider refused this block range; scanning in smaller ranges from now on (lower networks.{}.max_block_range to skip this probe)", self.network());
            self.ceiling = ceiling;
        }
        self.range = next.min(self.ceiling);
        Ok(())
    }

    fn publish(&self, heads: &Heads, confirmed: i64, cursor: &Cursor) {
        let network = self.network();
        let lag = (confirmed - cursor.block).max(0);
        self.registry.update(network, |s| {
            s.head = Some(heads.head);
            s.confirmed_head = Some(confirmed);
            s.cursor = Some(cursor.block);
            s.lag_blocks = Some(lag);
        });
        crate::telemetry::metrics::chain_heights(network, heads.head, confirmed, cursor.block, lag);
    }

    /// Every wallet address of the network, enabled or not: an order created before its wallet
    /// was disabled must still be credited, and any transfer to our addresses is recorded.
    async fn watched(&self) -> Result<HashSet<String>, DbErr> {
        let rows: Vec<String> = wallet::Entity::find()
            .filter(wallet::Column::Network.eq(self.network().as_str()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|w| w.address)
            .collect();
        Ok(rows.into_iter().collect())
    }
}

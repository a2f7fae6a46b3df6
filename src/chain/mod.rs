//! Chain watching (DESIGN §6): one [`Scanner`] per network (EVM via alloy in [`evm`], TRON via
//! the FullNode HTTP API in [`tron`]) driven by one generic cursor loop, [`Watcher`].
//!
//! The loop owns the per-network cursor (`chain_cursors`), the scanning lease, reorg detection,
//! range sizing and back-off, and the chain part of `/health` and `/metrics`. Each round it:
//! checks that it holds the lease (one instance scans a network; renewed by a background
//! heartbeat, see [`lease`]), reads the heads, checks that the
//! cursor block still has the hash it had when it was scanned (else steps back), then scans
//! `cursor+1 ..= confirmed head` in ranges. For every range the transfers (through
//! `service::order::credit_transfer_in`) **and** the new cursor are written in one database
//! transaction, the cursor with a compare-and-swap on its previous value; callbacks are queued
//! after the commit (the order sweeper re-queues them if the process dies in between).
//!
//! Range sizing: the range halves after a failed scan and doubles after a good one, up to a
//! ceiling. A provider's refusal of the size ([`ScanError::RangeTooLarge`]) is no failure: the
//! range shrinks at once (to the provider's hint when it names one), the ceiling drops below the
//! refused size for the rest of the watcher's life, and the scan is retried without back-off.
//! The back-off grows with consecutive failed rounds and starts over after a round that moved
//! the cursor.
//!
//! Architecture invariants — this module must never:
//! - read or credit anything above the confirmed head (head − confirmations; TRON: solidified);
//! - advance the cursor past a range that failed, or write a cursor without its transfers;
//! - change an order itself (only `service::order` does, idempotently: replaying a range is a
//!   no-op thanks to the unique (network, tx hash, log index) key);
//! - count a Transfer event from any contract but the configured token;
//! - panic on a malformed node response (it is an error for that range, retried).
pub mod evm;
mod lease;
mod reorg;
mod rpc;
pub mod tron;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    future::Future,
    sync::{Arc, RwLock},
    time::Duration,
};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};
use serde::Serialize;
use tokio::{sync::watch, task::JoinHandle};

pub use lease::{InstanceId, Lease};

use crate::{
    audit::{ACTOR_SYSTEM, AuditEvent, AuditLog, actions},
    config::{ChainSettings, Config},
    domain::network::Network,
    queue::JobQueue,
    service::{
        self,
        order::{CreditOutcome, IncomingTransfer, OrderError},
    },
    state::AppState,
    store::entities::{chain_cursor, transfer, wallet},
};

/// Blocks below the confirmed head where a network without a cursor (and without
/// `start_block`) starts scanning, so a payment made while the gateway was being set up is seen.
pub const START_MARGIN: i64 = 20;
/// Longest pause between retries after consecutive failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest pause a node may impose with `Retry-After`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Blocks stepped back (at least) when the cursor block's hash changed.
pub const MIN_REORG_STEP: i64 = 32;

/// Latest and confirmed block numbers of a chain, as the node reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Newest block the node knows.
    pub head: u64,
    /// Newest block that counts as final *before* the configured confirmations are applied:
    /// the head for EVM chains, the solidified head for TRON.
    pub finalized: u64,
}

/// What one scanned range produced.
#[derive(Debug, Clone, Default)]
pub struct ScanBatch {
    /// Transfers of the configured token to watched addresses, in chain order.
    pub transfers: Vec<IncomingTransfer>,
    /// Hash of the last block of the range (stored with the cursor for reorg detection).
    pub to_hash: String,
}

/// Why a scanner call failed. Every message names the endpoint (redacted) and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScanError {
    /// Every configured URL failed (down, timed out, bad answer, behind the confirmed head).
    #[error("{0}")]
    Unavailable(String),
    /// The provider asked us to slow down (HTTP 429 / 403); nothing advances meanwhile.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The configuration does not match the chain (decimals, chain id): scanning this network
    /// stops until the operator fixes it and restarts.
    #[error("{0}")]
    Fatal(String),
    /// The provider refuses a range this large (`eth_getLogs` block-range or result caps):
    /// a size signal, not an outage. `hint` is the largest range it says it accepts.
    #[error("{message}")]
    RangeTooLarge { message: String, hint: Option<u64> },
}

/// A chain as the cursor loop sees it. Implementations are stateless apart from endpoint
/// health; they never touch the database.
pub trait Scanner: Send + Sync + 'static {
    /// One-time check before the first scan (EVM: chain id and token decimals; TRON: decimals).
    fn prepare(&self) -> impl Future<Output = Result<(), ScanError>> + Send {
        async { Ok(()) }
    }
    /// The current heads.
    fn heads(&self) -> impl Future<Output = Result<Heads, ScanError>> + Send;
    /// Hash of block `number` (at or below the finalized head).
    fn block_hash(&self, number: u64) -> impl Future<Output = Result<String, ScanError>> + Send;
    /// Token transfers to `watched` addresses in blocks `from..=to` (both at or below the
    /// confirmed head), plus the hash of block `to`.
    fn scan(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> impl Future<Output = Result<ScanBatch, ScanError>> + Send;
}

// ---------------------------------------------------------------------------------------------
// Status for /health and metrics.

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

    fn update(&self, network: Network, f: impl FnOnce(&mut ChainStatus)) {
        let mut map = match self.0.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(map.entry(network.as_str()).or_default());
    }

    /// Registers a configured network before its watcher runs (so `/health` lists it).
    pub fn register(&self, settings: &ChainSettings) {
        self.update(settings.network, |s| {
            s.role = "starting";
            s.poll_interval = settings.poll_interval;
        });
    }
}

fn set_gauge(name: &'static str, network: Network, value: f64) {
    metrics::gauge!(name, "network" => network.as_str()).set(value);
}

// ---------------------------------------------------------------------------------------------
// Wiring.

/// Start-up checks of every configured network: settings resolve, each token contract reports
/// the configured decimals (and each EVM RPC the configured chain id), and the TRON API key is
/// accepted. A mismatch is an error (refuse to start); an unreachable RPC is only logged — the
/// watcher checks again before its first scan and scans nothing until the check passes.
pub async fn check_startup(config: &Config, registry: &Registry) -> Result<(), String> {
    let chains = config.chains().map_err(|e| e.to_string())?;
    let mut checks = Vec::new();
    for settings in &chains {
        registry.register(settings);
        let check: futures::future::BoxFuture<'static, Result<(), ScanError>> =
            if settings.network.is_evm() {
                let scanner = evm::EvmScanner::new(settings)?;
                Box::pin(async move { scanner.check_contract().await })
            } else {
                let scanner = tron::TronScanner::new(settings)?;
                Box::pin(async move { scanner.check_contract().await })
            };
        let limit = settings.request_timeout.min(Duration::from_secs(10));
        let network = settings.network;
        checks.push(async move {
            match tokio::time::timeout(limit, check).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(ScanError::Fatal(msg))) => Err(msg),
                Ok(Err(e)) => {
                    tracing::warn!(%network, error = %e, "could not verify the token contract at start-up; the watcher checks again before scanning");
                    Ok(())
                }
                Err(_) => {
                    tracing::warn!(%network, "token contract check timed out at start-up; the watcher checks again before scanning");
                    Ok(())
                }
            }
        });
    }
    // All networks at once, so a slow RPC delays start-up by one timeout at most.
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, String>>()
        .map(|_| ())
}

/// Spawns one watcher per configured network; each stops when `stop` turns true.
pub fn spawn_all(state: &AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let chains = match state.config.chains() {
        Ok(c) => c,
        Err(e) => {
            // App::build validated them already; this cannot happen short of a bug.
            tracing::error!(error = %e, "chain watchers not started");
            return Vec::new();
        }
    };
    if chains.is_empty() {
        return Vec::new();
    }
    // One identity for every watcher of this process (the id file is locked while they run).
    let instance = InstanceId::load(&state.config.data_dir);
    let mut handles = Vec::new();
    for settings in chains {
        let network = settings.network;
        let stop = stop.clone();
        let handle = if network.is_evm() {
            match evm::EvmScanner::new(&settings) {
                Ok(scanner) => {
                    let w = Watcher::new(scanner, settings, state).with_instance(&instance);
                    tokio::spawn(w.run(stop))
                }
                Err(e) => {
                    tracing::error!(%network, error = %e, "chain watcher not started");
                    continue;
                }
            }
        } else {
            match tron::TronScanner::new(&settings) {
                Ok(scanner) => {
                    let w = Watcher::new(scanner, settings, state).with_instance(&instance);
                    tokio::spawn(w.run(stop))
                }
                Err(e) => {
                    tracing::error!(%network, error = %e, "chain watcher not started");
                    continue;
                }
            }
        };
        handles.push(handle);
    }
    handles
}

// ---------------------------------------------------------------------------------------------
// The cursor loop.

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

/// Drives one [`Scanner`] for one network until told to stop.
pub struct Watcher<S> {
    scanner: S,
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
    /// The current round advanced the cursor (a later failure starts a fresh back-off).
    progressed: bool,
    prepared: bool,
}

impl<S: Scanner> Watcher<S> {
    /// A watcher scanning under a temporary identity (see [`with_instance`](Self::with_instance)).
    pub fn new(scanner: S, settings: ChainSettings, state: &AppState) -> Self {
        let lease = Lease::new(
            settings.network,
            settings.lease_ttl,
            &InstanceId::ephemeral(),
        );
        Self {
            range: settings.max_block_range,
            rules: service::order::OrderRules::from_config(&state.config),
            ceiling: settings.max_block_range,
            progressed: false,
            scanner,
            db: state.db.clone(),
            queue: state.queue.clone(),
            registry: state.chains.clone(),
            audit: state.audit.clone(),
            lease,
            settings,
            prepared: false,
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
            contract = %self.settings.usdt_contract,
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
            let delay = match self.round(&mut stop).await {
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
                    metrics::counter!("epusdt_chain_errors_total", "network" => network.as_str())
                        .increment(1);
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
                    metrics::counter!("epusdt_chain_errors_total", "network" => network.as_str())
                        .increment(1);
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

        while cursor.block < confirmed {
            if *stop.borrow() {
                return Err(RoundError::Stopped);
            }
            let from = cursor.block.saturating_add(1);
            let to = from
                .saturating_add(i64::try_from(self.range).unwrap_or(i64::MAX) - 1)
                .min(confirmed);
            let (Ok(from_u), Ok(to_u)) = (u64::try_from(from), u64::try_from(to)) else {
                break;
            };
            let batch = match Self::stoppable(stop, self.scanner.scan(from_u, to_u, &watched)).await
            {
                Ok(b) => b,
                Err(RoundError::Scan(ScanError::RangeTooLarge { message, hint })) => {
                    // A size signal: retry at once with a smaller range, no back-off.
                    self.refused(to_u - from_u + 1, hint, message)?;
                    continue;
                }
                Err(e) => {
                    self.range = (self.range / 2).max(1);
                    return Err(e);
                }
            };
            let next = Cursor {
                block: to,
                hash: batch.to_hash.clone(),
            };
            let outcomes = self.commit(&cursor, &next, &batch.transfers).await?;
            cursor = next;
            for outcome in &outcomes {
                metrics::counter!(
                    "epusdt_transfers_total",
                    "network" => network.as_str(),
                    "kind" => outcome.kind()
                )
                .increment(1);
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
            if !self.lease.held() {
                return Ok(Round::Standby);
            }
        }
        self.registry.update(network, |s| {
            s.last_ok_unix = Some(service::now());
            s.error = None;
        });
        set_gauge(
            "epusdt_chain_last_ok_timestamp_seconds",
            network,
            service::now() as f64,
        );
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
        set_gauge("epusdt_chain_head", network, heads.head as f64);
        set_gauge("epusdt_chain_confirmed_head", network, confirmed as f64);
        set_gauge("epusdt_chain_cursor", network, cursor.block as f64);
        set_gauge("epusdt_chain_lag_blocks", network, lag as f64);
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

    async fn load_cursor(
        &self,
        confirmed: i64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Cursor, RoundError> {
        let network = self.network();
        if let Some(row) = chain_cursor::Entity::find_by_id(network.as_str())
            .one(&self.db)
            .await?
        {
            return Ok(Cursor {
                block: row.block_number,
                hash: row.block_hash,
            });
        }
        let block = match self.settings.start_block {
            Some(b) => i64::try_from(b).unwrap_or(i64::MAX).saturating_sub(1),
            None => confirmed.saturating_sub(START_MARGIN),
        }
        .max(-1);
        let hash = match u64::try_from(block) {
            Ok(at) if block <= confirmed => {
                Self::stoppable(stop, self.scanner.block_hash(at)).await?
            }
            _ => String::new(),
        };
        let row = chain_cursor::ActiveModel {
            network: Set(network.as_str().into()),
            block_number: Set(block),
            block_hash: Set(hash.clone()),
            updated_at: Set(service::now()),
        };
        if let Err(e) = row.insert(&self.db).await {
            // Lost a race with another instance: use its row.
            return match chain_cursor::Entity::find_by_id(network.as_str())
                .one(&self.db)
                .await?
            {
                Some(row) => Ok(Cursor {
                    block: row.block_number,
                    hash: row.block_hash,
                }),
                None => Err(e.into()),
            };
        }
        tracing::info!(%network, cursor = block, "chain cursor initialised; scanning starts at the next block");
        Ok(Cursor { block, hash })
    }

    /// Writes the range's transfers and the new cursor in one transaction. The cursor update
    /// is a compare-and-swap on the previous cursor: if anyone moved it meanwhile, nothing of
    /// this range is written.
    async fn commit(
        &self,
        prev: &Cursor,
        next: &Cursor,
        transfers: &[IncomingTransfer],
    ) -> Result<Vec<CreditOutcome>, RoundError> {
        // A watcher that lost the lease (renewals failing, or taken over) writes nothing; the
        // cursor compare-and-swap below catches what slips between this check and the commit.
        if !self.lease.held() {
            return Err(RoundError::LeaseLost);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.commit_once(prev, next, transfers).await {
                Err(RoundError::Db(e) | RoundError::Credit(service::order::OrderError::Db(e)))
                    if crate::store::is_transient(&e)
                        && attempt < crate::store::TRANSIENT_ATTEMPTS =>
                {
                    tracing::debug!(network = %self.network(), attempt, error = %e, "transient conflict committing a range; retrying");
                    crate::store::transient_pause(attempt).await;
                }
                other => return other,
            }
        }
    }

    async fn commit_once(
        &self,
        prev: &Cursor,
        next: &Cursor,
        transfers: &[IncomingTransfer],
    ) -> Result<Vec<CreditOutcome>, RoundError> {
        let txn = crate::store::begin_write(&self.db).await?;
        let mut outcomes = Vec::with_capacity(transfers.len());
        for t in transfers {
            outcomes.push(service::order::credit_transfer_in(&txn, &self.rules, t).await?);
        }
        let moved = move_cursor(&txn, self.network(), prev, next).await?;
        if !moved {
            txn.rollback().await?;
            return Err(RoundError::CursorMoved);
        }
        reorg::record(
            &txn,
            self.network(),
            (prev.block, &prev.hash),
            (next.block, &next.hash),
        )
        .await?;
        txn.commit().await?;
        Ok(outcomes)
    }

    /// The cursor block's hash changed: the chain reorganised below our cursor (deeper than
    /// the configured confirmations). Find the fork point — the newest stored checkpoint (see
    /// [`reorg`]) at least max(2 × confirmations, [`MIN_REORG_STEP`]) blocks back whose hash
    /// the chain still has — and rescan from there. Transfers recorded from blocks that are no
    /// longer on the chain are raised (error log, metric `epusdt_reorged_transfers_total`,
    /// audit event) every time they are found, **before** the cursor moves: an RPC failure
    /// during the check leaves the cursor where it is, so the next round checks again.
    async fn step_back(
        &mut self,
        cursor: &Cursor,
        now_hash: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), RoundError> {
        let network = self.network();
        let depth = i64::try_from(self.settings.confirmations)
            .unwrap_or(i64::MAX)
            .saturating_mul(2)
            .max(MIN_REORG_STEP);
        let limit = cursor.block.saturating_sub(depth);
        let checkpoints = reorg::load(&self.db, network).await?;
        let mut next = None;
        let mut probed = 0usize;
        for (block, stored) in checkpoints.iter().rev().filter(|(b, _)| *b <= limit) {
            let Ok(at) = u64::try_from(*block) else {
                continue;
            };
            probed += 1;
            if Self::stoppable(stop, self.scanner.block_hash(at)).await? == *stored {
                next = Some(Cursor {
                    block: *block,
                    hash: stored.clone(),
                });
                break;
            }
        }
        let next = match next {
            Some(c) => c,
            None => {
                // Nothing stored agrees (none kept yet, or a reorg deeper than every one of
                // them): step back by the minimum below the deepest block known to differ.
                let deepest = checkpoints
                    .iter()
                    .filter(|(b, _)| *b <= limit)
                    .map(|(b, _)| *b)
                    .min()
                    .unwrap_or(cursor.block);
                let block = deepest.saturating_sub(depth).max(-1).min(limit.max(-1));
                if probed > 0 {
                    tracing::error!(%network, cursor = cursor.block, new_cursor = block, probed, "reorg deeper than every stored block hash: rescanning from a guess; payments in older replaced blocks may be missed — check the chain and set networks.{network}.start_block if needed");
                }
                let hash = match u64::try_from(block) {
                    Ok(at) => Self::stoppable(stop, self.scanner.block_hash(at)).await?,
                    Err(_) => String::new(),
                };
                Cursor { block, hash }
            }
        };
        tracing::warn!(
            %network,
            cursor = cursor.block,
            stored_hash = %cursor.hash,
            chain_hash = %now_hash,
            new_cursor = next.block,
            "reorg below the cursor: the cursor block changed hash; stepping back to rescan (replay is a no-op). Consider raising networks.{network}.confirmations"
        );
        metrics::counter!("epusdt_chain_reorgs_total", "network" => network.as_str()).increment(1);

        // Transfers already recorded above the new cursor: still on the chain?
        let recorded = transfer::Entity::find()
            .filter(transfer::Column::Network.eq(network.as_str()))
            .filter(transfer::Column::BlockNumber.gt(next.block))
            .filter(transfer::Column::BlockNumber.lte(cursor.block))
            .all(&self.db)
            .await?;
        let blocks: BTreeSet<(i64, String)> = recorded
            .iter()
            .filter(|t| !t.block_hash.is_empty())
            .map(|t| (t.block_number, t.block_hash.clone()))
            .collect();
        let mut failed = None;
        for (number, recorded_hash) in blocks {
            let Ok(at) = u64::try_from(number) else {
                continue;
            };
            // One failed call must not hide the others: check every block, report what was
            // found, then fail the round (the cursor stays; the next round checks again).
            let chain_hash = match Self::stoppable(stop, self.scanner.block_hash(at)).await {
                Ok(h) => h,
                Err(RoundError::Stopped) => return Err(RoundError::Stopped),
                Err(e) => {
                    tracing::warn!(%network, block = number, error = %e, "could not check a recorded block after a reorg; checking again next round");
                    failed.get_or_insert(e);
                    continue;
                }
            };
            if chain_hash != recorded_hash {
                for t in recorded.iter().filter(|t| t.block_number == number) {
                    self.raise_reorged(t, &chain_hash).await;
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !self.lease.held() {
            return Err(RoundError::LeaseLost);
        }
        let txn = crate::store::begin_write(&self.db).await?;
        if !move_cursor(&txn, network, cursor, &next).await? {
            txn.rollback().await?;
            return Err(RoundError::CursorMoved);
        }
        reorg::record(
            &txn,
            network,
            (cursor.block, &cursor.hash),
            (next.block, &next.hash),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A recorded (maybe credited) transfer whose block is no longer on the chain: error log,
    /// metric and audit event, for an operator to review the order by hand.
    async fn raise_reorged(&self, t: &transfer::Model, chain_hash: &str) {
        let network = self.network();
        tracing::error!(
            %network,
            tx = %t.tx_hash,
            log_index = t.log_index,
            block = t.block_number,
            recorded_hash = %t.block_hash,
            chain_hash = %chain_hash,
            order_id = ?t.order_id,
            kind = %t.kind,
            "transfer was recorded from a block that is no longer on the chain (reorg deeper than the confirmations): review this order by hand and raise networks.{network}.confirmations"
        );
        metrics::counter!("epusdt_reorged_transfers_total", "network" => network.as_str())
            .increment(1);
        let event = AuditEvent::new(
            ACTOR_SYSTEM,
            actions::CHAIN_TRANSFER_REORGED,
            format!(
                "transfer:{}:{}:{}",
                network.as_str(),
                t.tx_hash,
                t.log_index
            ),
        )
        .with_details(serde_json::json!({
            "block": t.block_number,
            "recorded_hash": t.block_hash,
            "chain_hash": chain_hash,
            "order_id": t.order_id,
            "kind": t.kind,
            "amount": t.amount,
            "to": t.to_address,
        }));
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(%network, tx = %t.tx_hash, error = %e, "could not write the audit event of a reorged transfer");
        }
    }
}

/// Compare-and-swap of the cursor row from `prev` to `next`; `false` when it was not `prev`.
async fn move_cursor(
    txn: &sea_orm::DatabaseTransaction,
    network: Network,
    prev: &Cursor,
    next: &Cursor,
) -> Result<bool, DbErr> {
    let res = chain_cursor::Entity::update_many()
        .col_expr(chain_cursor::Column::BlockNumber, Expr::value(next.block))
        .col_expr(
            chain_cursor::Column::BlockHash,
            Expr::value(next.hash.clone()),
        )
        .col_expr(chain_cursor::Column::UpdatedAt, Expr::value(service::now()))
        .filter(chain_cursor::Column::Network.eq(network.as_str()))
        .filter(chain_cursor::Column::BlockNumber.eq(prev.block))
        .filter(chain_cursor::Column::BlockHash.eq(prev.hash.clone()))
        .exec(txn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Persisted cursors of every network (for `/health` on instances that do not hold the lease).
pub async fn cursors(db: &DatabaseConnection) -> Result<BTreeMap<String, i64>, DbErr> {
    Ok(chain_cursor::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|c| (c.network, c.block_number))
        .collect())
}

/// A stalled watcher: no successful round for this long is reported as degraded.
pub fn stalled_after(status: &ChainStatus) -> Duration {
    status
        .poll_interval
        .saturating_mul(10)
        .max(Duration::from_secs(120))
}

/// Seconds since `unix`, or `None`.
pub fn age_secs(unix: Option<i64>) -> Option<i64> {
    unix.map(|t| service::now() - t)
}

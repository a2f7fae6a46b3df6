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
//! Catching up, a scanner that allows it ([`Scanner::ranges_at_once`]; EVM) has the next few
//! ranges scanned while the current one is verified and committed: every range is still proven
//! by its own scan, commits stay in block order with the cursor compare-and-swap, a failed
//! range drops the ranges scanned after it and the next round starts with one range at once
//! (doubling per committed range), and a rate limit halves the most ranges at once for the
//! rest of the watcher's life. The round-start check of the cursor block's hash is unchanged.
//!
//! Architecture invariants — this module must never:
//! - read or credit anything above the confirmed head (head − confirmations; TRON: solidified);
//! - advance the cursor past a range that failed, or write a cursor without its transfers;
//! - change an order itself (only `service::order` does, idempotently: replaying a range is a
//!   no-op thanks to the unique (network, tx hash, log index) key);
//! - count a Transfer event from any contract but the network's configured tokens, or hand
//!   over a transfer without the token its contract is configured as;
//! - panic on a malformed node response (it is an error for that range, retried).
pub mod evm;
pub mod fake;
mod lease;
mod reorg;
mod rpc;
pub mod solana;
mod startup;
mod status;
pub mod tron;
mod verify;
mod watcher;

use std::{collections::HashSet, future::Future, time::Duration};

pub use lease::{InstanceId, Lease};
pub use startup::{Deps, check_startup, spawn_all};
pub use status::{ChainStatus, Registry, age_secs, is_stalled, stalled_after};
pub use verify::{SubmitError, Submitted, TxFound, TxLookup};
pub use watcher::{Watcher, cursors};

use crate::{config::ConfigError, domain::transfer::IncomingTransfer};

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// The RPC URL in use now, redacted (`redact::rpc_url`), for the admin `/chains` view.
    fn active_endpoint(&self) -> Option<String> {
        None
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
    /// How many consecutive ranges the cursor loop may scan at once while catching up. Each
    /// [`scan`](Self::scan) must prove its own range on its own (it may not rely on the range
    /// before it having been scanned); the loop commits them strictly in order, each with the
    /// compare-and-swap on the cursor the previous one wrote, and writes nothing past a range
    /// that failed. 1 (the default): one range after another.
    fn ranges_at_once(&self) -> usize {
        1
    }
    /// Token transfers to `watched` addresses in blocks `from..=to` **above** the confirmed
    /// head, for display only (the "confirming" status): never credited, so a cheaper read
    /// than [`scan`](Self::scan) is fine. The default sees nothing.
    fn scan_unconfirmed(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> impl Future<Output = Result<Vec<IncomingTransfer>, ScanError>> + Send {
        let _ = (from, to, watched);
        async { Ok(Vec::new()) }
    }
}

/// Why the chain watchers cannot be set up: the operator must fix the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The `networks` settings do not resolve.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The token contract is not an address of the network (the message names the setting).
    #[error("{0}")]
    Contract(String),
    /// The HTTP client for the network's RPC nodes could not be built.
    #[error("networks.{network}: HTTP client: {source}")]
    HttpClient {
        network: crate::domain::network::Network,
        source: reqwest::Error,
    },
    /// The chain does not match the configuration (decimals, chain id).
    #[error("{0}")]
    Mismatch(String),
    /// The network's kind has no scanner in this build (Solana).
    #[error("{0}")]
    Unsupported(String),
}

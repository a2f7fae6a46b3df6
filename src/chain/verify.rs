//! A payer's "I have paid, here is my transaction" (`POST /pay/submit-tx-hash/{trade_id}`):
//! look that one transaction up on the order's network now and, when it pays the order, credit
//! it through the watcher's own path (`service::order::credit_transfer`: the transfers table's
//! unique key, the order window, the compare-and-swap, the paid callback).
//!
//! The confirmation rule is the watcher's: a transfer counts once its block is at or below the
//! confirmed head (EVM: head − confirmations; TRON: solidified head − confirmations). A
//! transaction that is not confirmed yet is refused with the number of blocks missing; nothing
//! is recorded, and the watcher credits it when it gets there.
//!
//! Must never: record anything for a transaction that does not pay this order (another
//! address, token or amount, a failed transaction, one mined before the order existed or after
//! it expired); credit a transaction hash twice; or let payers hammer the RPC nodes — one
//! lookup per request, at most [`MAX_IN_FLIGHT`] at once and [`MAX_PER_SECOND`] started per
//! second per process, each bounded in time (the route is also rate limited per client like
//! every payer route); a hash already recorded is refused before any node is asked.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rust_decimal::Decimal;
use sea_orm::DatabaseConnection;
use tokio::sync::Semaphore;

use super::{ChainError, ScanError, evm::EvmScanner, tron::TronScanner};
use crate::{
    config::Config,
    domain::{
        network::{Network, NetworkKind},
        order::{Order, OrderStatus},
        transfer::IncomingTransfer,
    },
    queue::JobQueue,
    redact::truncate,
    service::order::{self, CreditOutcome, OrderError, OrderRules},
};

/// Lookups running at once in this process; more are refused with "busy, retry".
pub const MAX_IN_FLIGHT: usize = 4;
/// Lookups started per second in this process; more are refused with "busy, retry".
pub const MAX_PER_SECOND: u32 = 10;
/// Longest a whole lookup (every URL tried) may take.
const MAX_LOOKUP: Duration = Duration::from_secs(15);

/// What the chain says about one transaction.
#[derive(Debug, Clone)]
pub enum TxFound {
    /// The node does not know it (or it is still pending).
    NotFound,
    /// Mined, but it failed (reverted): it moved nothing.
    Failed,
    /// Mined; `missing` more blocks are needed before it counts.
    Unconfirmed { missing: u64 },
    /// Confirmed: the configured token's transfers in it to the address asked about.
    Confirmed(Vec<IncomingTransfer>),
}

enum Family {
    Evm(EvmScanner),
    Tron(TronScanner),
}

struct Net {
    family: Family,
    kind: NetworkKind,
    /// The network's tokens (contract per symbol), for the payer's error messages.
    tokens: Vec<crate::domain::network::TokenInfo>,
    confirmations: u64,
    limit: Duration,
}

/// The per-network lookups, built at start-up and again when a reload changes the chain
/// settings (their RPC clients keep the failover health across requests). Cheap to clone;
/// clones share the lookups.
#[derive(Clone)]
pub struct TxLookup {
    nets: Arc<std::sync::RwLock<Arc<HashMap<Network, Net>>>>,
    permits: Arc<Semaphore>,
    /// Start of the current one-second window and the lookups started in it.
    started: Arc<Mutex<(Instant, u32)>>,
}

/// The order after a successful submission (upstream's `ManualPaymentResponse`).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub trade_id: String,
    pub status: OrderStatus,
    pub block_transaction_id: String,
}

/// Why a submitted transaction was not credited. Every message says what the payer can do.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("block_transaction_id {0}")]
    BadHash(&'static str),
    #[error("order is {0} and no longer takes a transaction")]
    NotWaiting(&'static str),
    #[error("network {0} is not watched by this gateway")]
    NotWatched(Network),
    #[error("this transaction has already been recorded; a transaction pays one order, once")]
    AlreadyUsed,
    #[error("too many transactions are being verified right now; retry in a few seconds")]
    Busy,
    #[error(
        "transaction not found on {0}; check the hash and the network, or retry once it is mined"
    )]
    NotFound(Network),
    #[error("the transaction failed on chain and moved no tokens")]
    TxFailed,
    #[error(
        "the transaction needs {missing} more confirmation(s) (block confirmations required: {required}); it is credited automatically once confirmed, or submit it again then"
    )]
    Unconfirmed { missing: u64, required: u64 },
    #[error(
        "the transaction does not transfer {token} (contract {contract}) to this order's address {address}"
    )]
    NoTransfer {
        token: String,
        contract: String,
        address: String,
    },
    #[error(
        "the transaction transfers {paid} {token}, this order is for exactly {expected} {token}"
    )]
    WrongAmount {
        paid: String,
        expected: Decimal,
        token: String,
    },
    #[error("the transaction was mined before this order was created")]
    Predates,
    #[error("the transaction was mined after this order expired")]
    AfterExpiry,
    #[error("the transaction was recorded but did not pay this order: {0}")]
    NotCredited(&'static str),
    #[error("the {0} node could not be asked now; retry in a minute")]
    Unavailable(Network),
    #[error(transparent)]
    Order(#[from] OrderError),
}

/// `raw` as the watcher stores transaction hashes on `network`: EVM `0x` + 64 lower-case hex,
/// TRON 64 lower-case hex (surrounding spaces ignored, either case accepted).
pub fn normalize_tx_hash(kind: NetworkKind, raw: &str) -> Result<String, SubmitError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(SubmitError::BadHash("is required"));
    }
    let evm = match kind {
        NetworkKind::Evm => true,
        NetworkKind::Tron => false,
        NetworkKind::Solana => {
            return Err(SubmitError::BadHash(
                "cannot be checked on Solana in this build; the payment is credited when the watcher sees it",
            ));
        }
    };
    let hex = if evm {
        t.strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .ok_or(SubmitError::BadHash(
                "must be 0x followed by 64 hex digits (an EVM transaction hash)",
            ))?
    } else {
        t
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SubmitError::BadHash(if evm {
            "must be 0x followed by 64 hex digits (an EVM transaction hash)"
        } else {
            "must be 64 hex digits (a TRON transaction id)"
        }));
    }
    let hex = hex.to_ascii_lowercase();
    Ok(if evm { format!("0x{hex}") } else { hex })
}

fn status_word(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::Waiting => "waiting",
        OrderStatus::Paid => "paid",
        OrderStatus::Expired => "expired",
        OrderStatus::Cancelled => "cancelled",
    }
}

impl TxLookup {
    /// One lookup per configured network (its own RPC clients, same URLs and failover).
    pub fn new(config: &Config) -> Result<Self, ChainError> {
        let mut nets = HashMap::new();
        for s in config.chains()? {
            let family = match s.kind {
                NetworkKind::Evm => Family::Evm(EvmScanner::new(&s)?),
                NetworkKind::Tron => Family::Tron(TronScanner::new(&s)?),
                // No by-hash lookup for Solana yet: its watcher credits the payment.
                NetworkKind::Solana => continue,
            };
            let limit = s.request_timeout.saturating_mul(2).min(MAX_LOOKUP);
            nets.insert(
                s.network,
                Net {
                    family,
                    kind: s.kind,
                    tokens: s.tokens.clone(),
                    confirmations: s.confirmations,
                    limit,
                },
            );
        }
        Ok(Self {
            nets: Arc::new(std::sync::RwLock::new(Arc::new(nets))),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            started: Arc::new(Mutex::new((Instant::now(), 0))),
        })
    }

    /// Puts the lookups of `fresh` (built by [`TxLookup::new`] from a reloaded configuration)
    /// in force for every clone of `self`.
    pub fn replace_with(&self, fresh: &TxLookup) {
        let nets = fresh.current();
        match self.nets.write() {
            Ok(mut n) => *n = nets,
            Err(poisoned) => *poisoned.into_inner() = nets,
        }
    }

    fn current(&self) -> Arc<HashMap<Network, Net>> {
        match self.nets.read() {
            Ok(n) => n.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Counts one lookup against [`MAX_PER_SECOND`]; `false` when the second is used up.
    fn admit(&self) -> bool {
        let Ok(mut w) = self.started.lock() else {
            return false;
        };
        let now = Instant::now();
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 >= MAX_PER_SECOND {
            return false;
        }
        w.1 += 1;
        true
    }

    /// Verifies `raw_hash` against `o` and credits it when it pays `o` (see the module
    /// documentation for the rules).
    pub async fn submit(
        &self,
        db: &DatabaseConnection,
        queue: &JobQueue,
        rules: &OrderRules,
        o: &Order,
        raw_hash: &str,
    ) -> Result<Submitted, SubmitError> {
        let nets = self.current();
        let kind = nets
            .get(&o.network)
            .map(|n| n.kind)
            .unwrap_or_else(|| crate::domain::network::Networks::presets().kind(o.network));
        let hash = normalize_tx_hash(kind, raw_hash)?;
        let net = nets
            .get(&o.network)
            .ok_or(SubmitError::NotWatched(o.network))?;
        if order::tx_hash_used(db, o.network, &hash).await? {
            return Err(SubmitError::AlreadyUsed);
        }
        // An order past its time may still be paid by a transfer mined in its window.
        match o.status {
            OrderStatus::Waiting | OrderStatus::Expired => {}
            other => return Err(SubmitError::NotWaiting(status_word(other))),
        }
        let found = {
            let _permit = self.permits.try_acquire().map_err(|_| SubmitError::Busy)?;
            if !self.admit() {
                return Err(SubmitError::Busy);
            }
            let lookup = async {
                match &net.family {
                    Family::Evm(s) => s.tx_transfers(&hash, &o.address).await,
                    Family::Tron(s) => s.tx_transfers(&hash, &o.address, net.confirmations).await,
                }
            };
            match tokio::time::timeout(net.limit, lookup).await {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    let e = match e {
                        ScanError::Unavailable(m) | ScanError::Fatal(m) => m,
                        ScanError::RateLimited { message, .. } => message,
                        ScanError::RangeTooLarge { message, .. } => message,
                    };
                    tracing::warn!(network = %o.network, tx = %hash, trade_id = %o.trade_id, error = %truncate(&e, 500), "submitted transaction could not be looked up");
                    return Err(SubmitError::Unavailable(o.network));
                }
                Err(_) => {
                    tracing::warn!(network = %o.network, tx = %hash, trade_id = %o.trade_id, "submitted transaction lookup timed out");
                    return Err(SubmitError::Unavailable(o.network));
                }
            }
        };
        let transfers = match found {
            TxFound::NotFound => return Err(SubmitError::NotFound(o.network)),
            TxFound::Failed => return Err(SubmitError::TxFailed),
            TxFound::Unconfirmed { missing } => {
                return Err(SubmitError::Unconfirmed {
                    missing,
                    required: net.confirmations,
                });
            }
            TxFound::Confirmed(t) => t,
        };
        let t = pick_transfer(o, &transfers, net, rules)?;
        let outcome = order::credit_transfer(db, queue, rules, t).await?;
        tracing::info!(network = %o.network, tx = %hash, trade_id = %o.trade_id, outcome = outcome.kind(), "payer-submitted transaction recorded");
        match outcome {
            CreditOutcome::Paid { trade_id, .. } if trade_id == o.trade_id.as_str() => {
                Ok(Submitted {
                    trade_id,
                    status: OrderStatus::Paid,
                    block_transaction_id: hash,
                })
            }
            CreditOutcome::Paid { .. } => Err(SubmitError::NotCredited(
                "it was mined in the window of an earlier order for the same amount, which it paid",
            )),
            CreditOutcome::Duplicate => Err(SubmitError::AlreadyUsed),
            CreditOutcome::Late { .. } => Err(SubmitError::NotCredited(
                "it came too late for the order; the shop can review it",
            )),
            CreditOutcome::PaidTwice { .. } => Err(SubmitError::NotCredited(
                "the order was already paid; the shop can review this second payment",
            )),
            CreditOutcome::Partial { .. }
            | CreditOutcome::Overpaid { .. }
            | CreditOutcome::Unmatched => Err(SubmitError::NotCredited(
                "it matched no order; the shop can review it",
            )),
        }
    }
}

/// The transfer of `transfers` that pays `o`: the exact amount, mined inside the order's
/// window (clock tolerance as the watcher allows). Anything else is refused before a row is
/// written.
fn pick_transfer<'a>(
    o: &Order,
    transfers: &'a [IncomingTransfer],
    net: &Net,
    rules: &OrderRules,
) -> Result<&'a IncomingTransfer, SubmitError> {
    // Only the order's token pays it: a USDC transfer never pays a USDT order.
    let transfers: Vec<&IncomingTransfer> = transfers
        .iter()
        .filter(|t| t.token.as_str() == o.token)
        .collect();
    let Some(t) = transfers
        .iter()
        .copied()
        .find(|t| t.amount == o.actual_amount)
    else {
        let contract = net
            .tokens
            .iter()
            .find(|t| t.token.as_str() == o.token)
            .map(|t| {
                if t.native {
                    "none: the chain's own coin".to_string()
                } else {
                    t.contract.clone()
                }
            })
            .unwrap_or_default();
        if transfers.is_empty() {
            return Err(SubmitError::NoTransfer {
                token: o.token.clone(),
                contract,
                address: o.address.clone(),
            });
        }
        let paid = transfers
            .iter()
            .map(|t| t.amount.normalize().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        return Err(SubmitError::WrongAmount {
            paid,
            expected: o.actual_amount.normalize(),
            token: o.token.clone(),
        });
    };
    if t.block_time < o.created_at - rules.clock_tolerance_secs {
        return Err(SubmitError::Predates);
    }
    if t.block_time > o.expires_at {
        return Err(SubmitError::AfterExpiry);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_started_per_second_are_capped() {
        let l = TxLookup::new(&Config::default()).expect("no networks");
        for _ in 0..MAX_PER_SECOND {
            assert!(l.admit());
        }
        assert!(!l.admit(), "the 11th lookup in one second is refused");
        if let Ok(mut w) = l.started.lock() {
            w.0 -= Duration::from_secs(1);
        }
        assert!(l.admit(), "a new second admits again");
    }

    #[test]
    fn hashes_are_checked_and_stored_like_the_watcher_stores_them() {
        let evm = format!("0x{}", "Ab".repeat(32));
        assert_eq!(
            normalize_tx_hash(NetworkKind::Evm, &format!(" {evm} ")).expect("ok"),
            format!("0x{}", "ab".repeat(32))
        );
        assert!(normalize_tx_hash(NetworkKind::Evm, &"ab".repeat(32)).is_err());
        assert!(normalize_tx_hash(NetworkKind::Evm, &format!("0x{}", "ab".repeat(31))).is_err());
        assert!(normalize_tx_hash(NetworkKind::Evm, &format!("0x{}g", "a".repeat(63))).is_err());
        assert_eq!(
            normalize_tx_hash(NetworkKind::Tron, &"CD".repeat(32)).expect("ok"),
            "cd".repeat(32)
        );
        assert!(normalize_tx_hash(NetworkKind::Tron, &format!("0x{}", "cd".repeat(32))).is_err());
        assert!(normalize_tx_hash(NetworkKind::Tron, "").is_err());
    }
}

//! A token transfer seen on a chain, as a watcher hands it to the order service.
use rust_decimal::Decimal;

use super::network::{Network, Token};

/// The `log_index` of a native coin transfer (ETH value, TRX `TransferContract`): log indexes
/// are never negative, so it never collides with a token transfer of the same transaction and
/// the unique (network, tx hash, log index) key stops a replay.
pub const NATIVE_LOG_INDEX: i64 = -1;

/// A token transfer seen on chain at or below the confirmed head, tagged with its token.
#[derive(Debug, Clone)]
pub struct IncomingTransfer {
    pub network: Network,
    /// The token of `token_contract` on this network.
    pub token: Token,
    pub tx_hash: String,
    pub log_index: i64,
    pub block_number: i64,
    pub block_hash: String,
    pub token_contract: String,
    pub from_address: String,
    /// Normalised like wallets' addresses (TRON base58, EVM lower-case 0x).
    pub to_address: String,
    /// Token amount (already divided by the token's decimals).
    pub amount: Decimal,
    /// Unix seconds.
    pub block_time: i64,
}

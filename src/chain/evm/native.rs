//! Native coin payments (ETH, BNB, POL, …) on an EVM chain, read only when the network's native
//! coin is configured: every block of a scanned range as a full block
//! (`eth_getBlockByNumber(n, true)`, [`NATIVE_CONCURRENCY`] at a time), its top-level
//! transactions whose `to` is a watched address and whose `value` is above zero, and for those
//! candidates only, the receipt (`eth_getTransactionReceipt`): status `0x1` and the same block
//! hash, else the value never moved (a reverted transaction keeps its value with the sender).
//!
//! The full blocks must form one chain (each `parentHash` is the previous block's hash) ending
//! in the header of `to` the scan proves twice, so a block that changed while it was read fails
//! the range (retried) instead of paying. A native transfer's identity is its tx hash with log
//! index [`NATIVE_LOG_INDEX`] (−1): log indexes are never negative, so it can never collide
//! with a token transfer of the same transaction, and the unique (network, tx hash, log index)
//! key makes a replayed range a no-op.
//!
//! Out of scope (documented in wiki/CHAINS.md): value moved by a contract (`CALL` with value,
//! "internal transactions") — it leaves no trace in the block's transactions or logs and needs
//! tracing APIs most providers do not offer.
use std::{borrow::Cow, collections::HashSet};

use alloy::{
    primitives::{Address, B256, Bloom, U64, U256},
    providers::{Provider, RootProvider},
};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::{Header, call_error};
use crate::{
    chain::rpc::CallError,
    domain::{
        amount,
        network::{NATIVE_CONTRACT, Network, Token},
        transfer::IncomingTransfer,
    },
};

pub use crate::domain::transfer::NATIVE_LOG_INDEX;
/// Full blocks fetched at once within a range (public providers limit concurrent requests,
/// and a full block can be megabytes).
pub const NATIVE_CONCURRENCY: usize = 4;

/// The configured native coin of an EVM network.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NativeCoin {
    pub token: Token,
    pub decimals: u32,
}

/// A block with its transactions, as much of it as the scan needs (tolerant of chain extras).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct FullBlock {
    pub hash: B256,
    pub number: U64,
    #[serde(rename = "parentHash")]
    pub parent_hash: B256,
    pub timestamp: U64,
    #[serde(rename = "logsBloom", default)]
    pub logs_bloom: Option<Bloom>,
    #[serde(default)]
    pub transactions: Vec<BlockTx>,
}

impl FullBlock {
    pub fn header(&self) -> Header {
        Header {
            hash: self.hash,
            number: self.number,
            timestamp: self.timestamp,
            logs_bloom: self.logs_bloom,
        }
    }
}

/// One transaction of a full block (system transactions of some chains lack `to` or `value`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct BlockTx {
    pub hash: B256,
    #[serde(default)]
    pub from: Option<Address>,
    #[serde(default)]
    pub to: Option<Address>,
    #[serde(default)]
    pub value: Option<U256>,
}

/// The receipt fields the native path and the hash lookup need.
#[derive(Debug, Deserialize)]
pub(super) struct Receipt {
    #[serde(rename = "blockNumber")]
    pub block_number: Option<U64>,
    #[serde(rename = "blockHash")]
    pub block_hash: Option<B256>,
    pub status: Option<U64>,
    #[serde(default)]
    pub logs: Vec<alloy::rpc::types::Log>,
}

pub(super) async fn receipt(p: &RootProvider, tx: B256) -> Result<Option<Receipt>, CallError> {
    p.raw_request(Cow::Borrowed("eth_getTransactionReceipt"), (tx,))
        .await
        .map_err(call_error)
}

async fn full_block(p: &RootProvider, number: u64) -> Result<FullBlock, CallError> {
    let b: Option<FullBlock> = p
        .raw_request(
            Cow::Borrowed("eth_getBlockByNumber"),
            (format!("{number:#x}"), true),
        )
        .await
        .map_err(call_error)?;
    let b = b.ok_or_else(|| {
        CallError::Failed(format!(
            "block {number} not found (the node is behind the confirmed head)"
        ))
    })?;
    if b.number.to::<u64>() != number {
        return Err(CallError::Failed(format!(
            "asked for block {number}, the node answered block {}",
            b.number
        )));
    }
    Ok(b)
}

/// Blocks `from..=to` as full blocks, proven to be one chain ending in `last` (the header of
/// `to` the scan read first).
pub(super) async fn full_blocks(
    p: &RootProvider,
    from: u64,
    to: u64,
    last: &Header,
) -> Result<Vec<FullBlock>, CallError> {
    let blocks: Vec<FullBlock> = futures::stream::iter(from..=to)
        .map(|n| full_block(p, n))
        .buffered(NATIVE_CONCURRENCY)
        .try_collect()
        .await?;
    for pair in blocks.windows(2) {
        if pair[1].parent_hash != pair[0].hash {
            return Err(CallError::Failed(format!(
                "block {} does not follow block {} as read (a reorg while scanning); retrying",
                pair[1].number, pair[0].number
            )));
        }
    }
    if blocks.last().map(|b| b.hash) != Some(last.hash) {
        return Err(CallError::Failed(format!(
            "block {to} changed while scanning its transactions; retrying"
        )));
    }
    Ok(blocks)
}

/// Value transfers to `watched` in `blocks` whose receipt says they succeeded in that block.
pub(super) async fn transfers(
    p: &RootProvider,
    network: Network,
    coin: NativeCoin,
    blocks: &[FullBlock],
    watched: &HashSet<String>,
) -> Result<Vec<IncomingTransfer>, CallError> {
    let mut out = Vec::new();
    for b in blocks {
        for tx in &b.transactions {
            let (Some(to), Some(value)) = (tx.to, tx.value) else {
                continue;
            };
            let to_address = format!("{to:#x}");
            if value.is_zero() || !watched.contains(&to_address) {
                continue;
            }
            let Some(r) = receipt(p, tx.hash).await? else {
                return Err(CallError::Failed(format!(
                    "no receipt for transaction {:#x} of block {} yet (the node lags); retrying",
                    tx.hash, b.number
                )));
            };
            if r.block_hash != Some(b.hash) {
                return Err(CallError::Failed(format!(
                    "the receipt of {:#x} names another block than {} {:#x}; retrying",
                    tx.hash, b.number, b.hash
                )));
            }
            if r.status.map(|s| s.to::<u64>()) != Some(1) {
                tracing::info!(%network, tx = %format!("{:#x}", tx.hash), to = %to_address, "a value transfer to a watched address reverted; it moved nothing and pays nothing");
                continue;
            }
            if let Some(t) = to_transfer(network, coin, b, tx, to_address, value) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// One successful top-level value transfer as an [`IncomingTransfer`] (`None`: a value the
/// amount type cannot hold, logged).
pub(super) fn to_transfer(
    network: Network,
    coin: NativeCoin,
    b: &FullBlock,
    tx: &BlockTx,
    to_address: String,
    value: U256,
) -> Option<IncomingTransfer> {
    let hash = format!("{:#x}", tx.hash);
    let amount = u128::try_from(value)
        .ok()
        .and_then(|units| amount::from_base_units(units, coin.decimals));
    let Some(amount) = amount else {
        tracing::error!(%network, tx = %hash, %value, to = %to_address, "native value does not fit the amount type; skipped (not credited) — review it by hand");
        crate::telemetry::metrics::transfer(network, "unrepresentable");
        return None;
    };
    Some(IncomingTransfer {
        network,
        token: coin.token,
        tx_hash: hash,
        log_index: NATIVE_LOG_INDEX,
        block_number: i64::try_from(b.number.to::<u64>()).unwrap_or(i64::MAX),
        block_hash: format!("{:#x}", b.hash),
        token_contract: NATIVE_CONTRACT.to_string(),
        from_address: tx.from.map(|a| format!("{a:#x}")).unwrap_or_default(),
        to_address,
        amount,
        block_time: i64::try_from(b.timestamp.to::<u64>()).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_blocks_parse_with_chain_extras_and_value_transfers_become_transfers() {
        let to = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
        let b: FullBlock = serde_json::from_value(serde_json::json!({
            "hash": format!("0x{}", "ab".repeat(32)), "number": "0x10",
            "parentHash": format!("0x{}", "aa".repeat(32)), "timestamp": "0x6560f000",
            "miner": "0x0000000000000000000000000000000000000000", "extraData": "0x",
            "transactions": [
                {"hash": format!("0x{}", "01".repeat(32)), "type": "0x2",
                 "from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266", "to": to,
                 "value": "0x2386f26fc10000", "input": "0x"},
                // An OP-stack system deposit without `to`, an Arbitrum internal tx without value.
                {"hash": format!("0x{}", "02".repeat(32)), "type": "0x7e", "from": to},
                {"hash": format!("0x{}", "03".repeat(32)), "type": "0x6a", "to": to}
            ]
        }))
        .expect("shape");
        assert_eq!(b.transactions.len(), 3);
        let coin = NativeCoin {
            token: Token::named("ETH"),
            decimals: 18,
        };
        let tx = &b.transactions[0];
        let t = to_transfer(
            Network::ETHEREUM,
            coin,
            &b,
            tx,
            to.into(),
            tx.value.expect("value"),
        )
        .expect("transfer");
        assert_eq!(t.amount.normalize().to_string(), "0.01");
        assert_eq!(t.log_index, NATIVE_LOG_INDEX);
        assert_eq!(t.token_contract, "native");
        assert_eq!(t.block_number, 16);
        assert_eq!(t.block_time, 0x6560_f000);
        assert!(
            to_transfer(Network::ETHEREUM, coin, &b, tx, to.into(), U256::MAX).is_none(),
            "an unrepresentable value is skipped, never a panic"
        );
    }
}

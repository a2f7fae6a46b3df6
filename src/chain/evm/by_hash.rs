//! One transaction by its hash, for a payer who submits it (`chain::verify`): its receipt
//! (`eth_getTransactionReceipt`), the head for the confirmation count, and the header of its
//! block (hash and time) — on one URL, with the scanner's failover and chain-id check. With a
//! native coin configured, also the transaction itself (`eth_getTransactionByHash`): its
//! `value` to the address is a native transfer when the receipt says it succeeded.
//!
//! Must never: count a log of another contract, or report a transaction as confirmed when its
//! block is above the confirmed head (head − confirmations) or no longer the block the receipt
//! names.
use std::{borrow::Cow, collections::HashSet};

use alloy::{
    primitives::{B256, U64},
    providers::Provider,
};
use serde::Deserialize;

use super::{
    EvmScanner, call_error, header,
    logs::to_transfer,
    native::{self, BlockTx, FullBlock},
};
use crate::chain::{ScanError, rpc::CallError, verify::TxFound};

/// The transaction fields the native lookup needs.
#[derive(Debug, Deserialize)]
struct Tx {
    #[serde(flatten)]
    tx: BlockTx,
    #[serde(rename = "blockHash", default)]
    block_hash: Option<B256>,
}

impl EvmScanner {
    /// What the chain says about transaction `hash` (`0x` + 64 lower-case hex): the configured
    /// tokens' transfers in it to `to` (each tagged with its token), once its block is
    /// confirmed.
    pub async fn tx_transfers(&self, hash: &str, to: &str) -> Result<TxFound, ScanError> {
        let tx: B256 = hash
            .parse()
            .map_err(|_| ScanError::Unavailable(format!("not a transaction hash: {hash}")))?;
        let net = self.settings.network;
        let coin = self.native;
        let contracts = &self.contracts;
        let confirmations = self.settings.confirmations;
        let watched: HashSet<String> = [to.to_ascii_lowercase()].into();
        let watched = &watched;
        self.endpoints
            .call("eth_getTransactionReceipt", |n| {
                self.on(n, |p| async move {
                    let Some(r) = native::receipt(&p, tx).await? else {
                        return Ok(TxFound::NotFound);
                    };
                    let (Some(number), Some(block_hash)) = (r.block_number, r.block_hash) else {
                        // Some nodes answer a pending transaction's receipt without a block.
                        return Ok(TxFound::NotFound);
                    };
                    if r.status.map(|s| s.to::<u64>()) != Some(1) {
                        return Ok(TxFound::Failed);
                    }
                    let number = number.to::<u64>();
                    let head = p.get_block_number().await.map_err(call_error)?;
                    let confirmed = head.saturating_sub(confirmations);
                    if number > confirmed || head < confirmations {
                        return Ok(TxFound::Unconfirmed {
                            missing: (number + confirmations).saturating_sub(head).max(1),
                        });
                    }
                    // The block the receipt names must still be the chain's block there.
                    let h = header(&p, number).await?;
                    if h.hash != block_hash {
                        return Err(CallError::Failed(format!(
                            "the receipt of {hash} names block {number} {block_hash:#x}, the node's block {number} is {:#x} (reorg); retrying",
                            h.hash
                        )));
                    }
                    let block_time = i64::try_from(h.timestamp.to::<u64>()).unwrap_or(i64::MAX);
                    let mut out = Vec::new();
                    for log in &r.logs {
                        if let Some(mut t) =
                            to_transfer(log, net, contracts, watched, number, number)?
                        {
                            if t.tx_hash != hash {
                                return Err(CallError::Failed(format!(
                                    "the receipt of {hash} holds a log of transaction {}",
                                    t.tx_hash
                                )));
                            }
                            t.block_time = block_time;
                            out.push(t);
                        }
                    }
                    if let Some(coin) = coin {
                        let found: Option<Tx> = p
                            .raw_request(Cow::Borrowed("eth_getTransactionByHash"), (tx,))
                            .await
                            .map_err(call_error)?;
                        if let Some(found) = found
                            && found.block_hash == Some(block_hash)
                            && found.tx.hash == tx
                            && let (Some(to_addr), Some(value)) = (found.tx.to, found.tx.value)
                            && !value.is_zero()
                            && watched.contains(&format!("{to_addr:#x}"))
                        {
                            let b = FullBlock {
                                hash: h.hash,
                                number: U64::from(number),
                                parent_hash: B256::ZERO,
                                timestamp: h.timestamp,
                                logs_bloom: None,
                                transactions: Vec::new(),
                            };
                            out.extend(native::to_transfer(
                                net,
                                coin,
                                &b,
                                &found.tx,
                                format!("{to_addr:#x}"),
                                value,
                            ));
                        }
                    }
                    Ok(TxFound::Confirmed(out))
                })
            })
            .await
    }
}

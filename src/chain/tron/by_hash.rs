//! One transaction by its id, for a payer who submits it (`chain::verify`):
//! `/walletsolidity/gettransactioninfobyid {"value": id}` (its receipt and logs, once
//! solidified), the solidified head for the confirmation count and the block id of its block;
//! when the solidity node does not have it yet, `/wallet/gettransactioninfobyid` tells an
//! unconfirmed transaction from an unknown one. java-tron answers `{}` for an id it lacks.
//! With TRX configured, a transaction whose receipt has no VM result (a TransferContract) is
//! read itself (`/walletsolidity/gettransactionbyid`) for its TRX transfer.
//!
//! Must never: read the logs of an unsolidified transaction as a payment, or count a log of
//! another contract (the scanner's own [`TronScanner::transfers`] reads the logs).
use std::collections::HashSet;

use serde_json::{Value, json};

use super::{
    TronScanner,
    api::{Client, NowBlock, TxInfo, block_id_on, block_number_of, retry_lagging},
};
use crate::chain::{ScanError, rpc::CallError, verify::TxFound};

/// The transaction info in `v`, `None` for java-tron's `{}` (unknown id).
fn info_of(path: &str, v: Value) -> Result<Option<TxInfo>, CallError> {
    if v.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(None);
    }
    serde_json::from_value::<TxInfo>(v)
        .map(Some)
        .map_err(|e| CallError::Failed(format!("{path}: unexpected transaction info ({e})")))
}

impl TronScanner {
    /// What the chain says about transaction `id` (64 lower-case hex): the configured token's
    /// transfers in it to `to`, once its block is solidified and confirmed.
    pub async fn tx_transfers(
        &self,
        id: &str,
        to: &str,
        confirmations: u64,
    ) -> Result<TxFound, ScanError> {
        let watched: HashSet<String> = [to.to_string()].into();
        let watched = &watched;
        self.endpoints
            .call("gettransactioninfobyid", |c| async move {
                self.tx_on(&c, id, watched, confirmations).await
            })
            .await
    }

    async fn tx_on(
        &self,
        c: &Client,
        id: &str,
        watched: &HashSet<String>,
        confirmations: u64,
    ) -> Result<TxFound, CallError> {
        let solid: NowBlock = c.post("walletsolidity/getnowblock", json!({})).await?;
        let solid = block_number_of(&solid).ok_or_else(|| {
            CallError::Failed("walletsolidity/getnowblock: no block_header in the answer".into())
        })?;
        let path = "walletsolidity/gettransactioninfobyid";
        let info = info_of(path, c.post(path, json!({ "value": id })).await?)?;
        let Some(info) = info else {
            // Not solidified (or unknown): the full node knows a recent transaction.
            let path = "wallet/gettransactioninfobyid";
            return Ok(
                match info_of(path, c.post(path, json!({ "value": id })).await?)? {
                    Some(i) if i.block_number > 0 => TxFound::Unconfirmed {
                        missing: (i.block_number + confirmations)
                            .saturating_sub(solid)
                            .max(1),
                    },
                    _ => TxFound::NotFound,
                },
            );
        };
        if !info.id.eq_ignore_ascii_case(id) {
            return Err(CallError::Failed(format!(
                "{path}: asked for {id}, the node answered transaction {}",
                info.id
            )));
        }
        let vm_result = info.receipt.as_ref().and_then(|r| r.result.as_deref());
        // No VM result and not failed: a system contract (TransferContract); with TRX
        // configured, the transaction itself says what it moved.
        let plain = self.native.is_some()
            && vm_result.is_none()
            && info.result.as_deref() != Some("FAILED");
        let failed =
            !plain && (vm_result != Some("SUCCESS") || info.result.as_deref() == Some("FAILED"));
        // A transaction without a receipt result of SUCCESS moved no tokens (TRC-20 calls
        // always carry one).
        if failed {
            return Ok(TxFound::Failed);
        }
        let n = info.block_number;
        if n == 0 {
            // An info without its block is no proof of anything.
            return Ok(TxFound::NotFound);
        }
        if n + confirmations > solid {
            return Ok(TxFound::Unconfirmed {
                missing: (n + confirmations).saturating_sub(solid).max(1),
            });
        }
        let mut found = self.transfers(n, std::slice::from_ref(&info), watched)?;
        if plain && let Some(coin) = self.native {
            let path = "walletsolidity/gettransactionbyid";
            let v: Value = c.post(path, json!({ "value": id })).await?;
            let tx: super::native::BlockTx = serde_json::from_value(v)
                .map_err(|e| CallError::Failed(format!("{path}: unexpected transaction ({e})")))?;
            if !tx.tx_id.eq_ignore_ascii_case(id) {
                return Err(CallError::Failed(format!(
                    "{path}: asked for {id}, the node answered transaction {:?}",
                    tx.tx_id
                )));
            }
            let ok = tx.ret.first().and_then(|r| r.contract_ret.as_deref()) == Some("SUCCESS");
            if !ok {
                return Ok(TxFound::Failed);
            }
            let b = super::native::TxBlock {
                number: n,
                id: String::new(),
                time: info.block_timestamp.div_euclid(1000),
                transactions: vec![tx],
            };
            found.extend(b.transfers(self.network, coin, watched));
        }
        if !found.is_empty() {
            let hash = retry_lagging(|| block_id_on(c, n)).await?;
            for t in &mut found {
                t.block_hash.clone_from(&hash);
            }
        }
        Ok(TxFound::Confirmed(found))
    }
}

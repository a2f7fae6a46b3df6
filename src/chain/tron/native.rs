//! TRX payments: `TransferContract` transactions of a solidified block, read with
//! `/walletsolidity/getblock {"id_or_num": "<n>", "detail": true}` (java-tron prints hex
//! addresses `41…` and the amount in sun; `ret[0].contractRet` is the result). Only read when TRX
//! is configured.
//!
//! Must never: take java-tron's `{}` (a block the node lacks) for an empty block, count a
//! transaction whose result is not `SUCCESS`, or count any contract type but `TransferContract`
//! (TRC-10 `TransferAssetContract` moves another asset; value sent with a contract call is an
//! internal transfer, out of scope like on EVM chains).
use std::collections::HashSet;

use serde::Deserialize;
use serde_json::json;

use super::api::{Client, Try, TxInfo};
use crate::{
    chain::rpc::CallError,
    domain::{
        address, amount,
        network::{NATIVE_CONTRACT, Network, Token},
        transfer::{IncomingTransfer, NATIVE_LOG_INDEX},
    },
};

/// A solidified block with its transactions.
#[derive(Debug, Clone)]
pub(super) struct TxBlock {
    pub number: u64,
    /// `blockID`, lower-case.
    pub id: String,
    /// Unix seconds.
    pub time: i64,
    pub transactions: Vec<BlockTx>,
}

#[derive(Debug, Deserialize)]
struct RawBlock {
    #[serde(rename = "blockID")]
    block_id: Option<String>,
    block_header: Option<Header>,
    #[serde(default)]
    transactions: Option<Vec<BlockTx>>,
}

#[derive(Debug, Deserialize)]
struct Header {
    raw_data: RawHeader,
}

#[derive(Debug, Deserialize)]
struct RawHeader {
    #[serde(default)]
    number: u64,
    #[serde(default)]
    timestamp: i64,
}

/// One transaction as `Util.printTransaction` prints it (only the fields used).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct BlockTx {
    #[serde(rename = "txID", default)]
    pub tx_id: String,
    #[serde(default)]
    pub ret: Vec<Ret>,
    pub raw_data: Option<RawTx>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Ret {
    #[serde(rename = "contractRet")]
    pub contract_ret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawTx {
    #[serde(default)]
    pub contract: Vec<Contract>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Contract {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub parameter: Option<Parameter>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Parameter {
    pub value: Option<TransferValue>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct TransferValue {
    #[serde(default)]
    pub amount: Option<u64>,
    #[serde(default)]
    pub owner_address: Option<String>,
    #[serde(default)]
    pub to_address: Option<String>,
}

/// Block `n` with its transactions on `c`. java-tron's `{}` (the node lacks it) and a block
/// without transactions for which `c` served receipts are lagging answers.
pub(super) async fn tx_block(c: &Client, n: u64, infos: &[TxInfo]) -> Result<TxBlock, Try> {
    let b: RawBlock = c
        .post(
            "walletsolidity/getblock",
            json!({ "id_or_num": n.to_string(), "detail": true }),
        )
        .await?;
    let (Some(id), Some(h)) = (b.block_id, b.block_header) else {
        return Err(Try::Lagging(format!(
            "block {n} is not available on the node yet (getblock answered no blockID)"
        )));
    };
    if h.raw_data.number != n {
        return Err(Try::Other(CallError::Failed(format!(
            "asked for block {n}, the node answered block {}",
            h.raw_data.number
        ))));
    }
    let transactions = b.transactions.unwrap_or_default();
    if transactions.is_empty() && !infos.is_empty() {
        return Err(Try::Lagging(format!(
            "block {n} came without transactions although its receipts list {}: a lagging or mixed backend",
            infos.len()
        )));
    }
    Ok(TxBlock {
        number: n,
        id: id.to_ascii_lowercase(),
        time: h.raw_data.timestamp.div_euclid(1000),
        transactions,
    })
}

impl TxBlock {
    /// Successful TRX transfers to `watched` in this block.
    pub fn transfers(
        &self,
        network: Network,
        (token, decimals): (Token, u32),
        watched: &HashSet<String>,
    ) -> Vec<IncomingTransfer> {
        let mut out = Vec::new();
        for tx in &self.transactions {
            let Some(c) = tx.raw_data.as_ref().and_then(|r| r.contract.first()) else {
                continue;
            };
            if c.kind != "TransferContract" {
                continue;
            }
            let ok = tx.ret.first().and_then(|r| r.contract_ret.as_deref()) == Some("SUCCESS");
            if !ok {
                if tx.ret.is_empty() {
                    tracing::warn!(%network, tx = %tx.tx_id, "TransferContract without a result in a solidified block; not counted");
                }
                continue;
            }
            let Some(v) = c.parameter.as_ref().and_then(|p| p.value.as_ref()) else {
                continue;
            };
            let Some(to) = v
                .to_address
                .as_deref()
                .and_then(|h| address::tron_from_hex(h.get(2..)?).ok())
            else {
                continue;
            };
            if !watched.contains(&to) {
                continue;
            }
            let Some(amount) = v
                .amount
                .filter(|a| *a > 0)
                .and_then(|a| amount::from_base_units(u128::from(a), decimals))
            else {
                continue;
            };
            let from = v
                .owner_address
                .as_deref()
                .and_then(|h| address::tron_from_hex(h.get(2..)?).ok())
                .unwrap_or_default();
            out.push(IncomingTransfer {
                network,
                token,
                tx_hash: tx.tx_id.to_ascii_lowercase(),
                log_index: NATIVE_LOG_INDEX,
                block_number: i64::try_from(self.number).unwrap_or(i64::MAX),
                block_hash: self.id.clone(),
                token_contract: NATIVE_CONTRACT.to_string(),
                from_address: from,
                to_address: to,
                amount,
                block_time: self.time,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_contracts_with_success_only() {
        let to_hex = "abababababababababababababababababababab";
        let to = address::tron_from_hex(to_hex).expect("addr");
        let tx = |id: &str, kind: &str, ret: &str, amount: u64| {
            json!({
                "ret": [{"contractRet": ret}], "signature": ["00"], "txID": id,
                "raw_data": {"contract": [{"parameter": {"value": {
                    "amount": amount, "owner_address": "411212121212121212121212121212121212121212",
                    "to_address": format!("41{to_hex}")},
                    "type_url": format!("type.googleapis.com/protocol.{kind}")}, "type": kind}],
                    "ref_block_bytes": "0001", "expiration": 1, "timestamp": 1},
                "raw_data_hex": "00"
            })
        };
        let txs: Vec<BlockTx> = serde_json::from_value(json!([
            tx("AA", "TransferContract", "SUCCESS", 12_340_000),
            tx("bb", "TransferContract", "TRANSFER_FAILED", 12_340_000),
            tx("cc", "TransferAssetContract", "SUCCESS", 12_340_000),
            tx("dd", "TransferContract", "SUCCESS", 0),
        ]))
        .expect("shape");
        let b = TxBlock {
            number: 9,
            id: "00ff".into(),
            time: 1_700_000_000,
            transactions: txs,
        };
        let watched: HashSet<String> = [to.clone()].into();
        let found = b.transfers(Network::TRON, (Token::named("TRX"), 6), &watched);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].tx_hash, "aa");
        assert_eq!(found[0].amount.normalize().to_string(), "12.34");
        assert_eq!(found[0].log_index, -1);
        assert_eq!(found[0].to_address, to);
        assert!(
            b.transfers(Network::TRON, (Token::named("TRX"), 6), &HashSet::new())
                .is_empty()
        );
    }
}

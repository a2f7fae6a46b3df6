//! TRON through the FullNode HTTP API (TronGrid or your own node), reading solidified data
//! only: `/walletsolidity/getnowblock` (confirmed head), `/wallet/getnowblock` (head, for lag),
//! `/walletsolidity/gettransactioninfobyblocknum {"num": n}` (receipts and logs of one block)
//! and `/walletsolidity/getblock {"id_or_num": "n", "detail": false}` (block hash).
//!
//! It owns the translation of TRC-20 `Transfer` logs into [`IncomingTransfer`]s. Only receipts
//! with result `SUCCESS` and logs emitted by the configured contract count; the log index is
//! the log's position within its transaction. It must never treat a missing block (`{}`) as an
//! empty one, never panic on a malformed answer, and never send the API key anywhere but the
//! `TRON-PRO-API-KEY` header. HTTP 429/403 is a rate limit: back off, advance nothing.
use std::{collections::HashSet, time::Duration};

use alloy::primitives::U256;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::{
    Heads, ScanBatch, ScanError, Scanner,
    rpc::{CallError, Endpoints, retry_after, truncate},
};
use crate::{
    config::{ChainSettings, Secret},
    domain::{address, amount, network::Network},
    service::order::IncomingTransfer,
};

/// `keccak256("Transfer(address,address,uint256)")`, as TRON writes topics (no `0x`).
pub const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// Blocks fetched concurrently within one range.
const CONCURRENCY: usize = 4;

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: url::Url,
    api_key: Option<Secret>,
}

impl Client {
    async fn post<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, CallError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| CallError::Failed(format!("cannot build the URL for {path}: {e}")))?;
        let mut req = self.http.post(url).json(&body);
        if let Some(key) = &self.api_key {
            req = req.header("TRON-PRO-API-KEY", key.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::Failed(format!("{path}: {}", e.without_url())))?;
        let status = resp.status();
        if matches!(status.as_u16(), 429 | 403) {
            return Err(CallError::RateLimited {
                message: format!("{path}: HTTP {status}"),
                retry_after: retry_after(resp.headers()),
            });
        }
        let text = resp.text().await.map_err(|e| {
            CallError::Failed(format!("{path}: reading the body: {}", e.without_url()))
        })?;
        if !status.is_success() {
            return Err(CallError::Failed(format!(
                "{path}: HTTP {status}: {}",
                truncate(&text, 200)
            )));
        }
        serde_json::from_str(&text).map_err(|e| {
            CallError::Failed(format!(
                "{path}: unexpected answer ({e}): {}",
                truncate(&text, 200)
            ))
        })
    }
}

#[derive(Debug, Deserialize)]
struct NowBlock {
    #[serde(rename = "blockID")]
    block_id: Option<String>,
    block_header: Option<BlockHeader>,
}

#[derive(Debug, Deserialize)]
struct BlockHeader {
    raw_data: RawHeader,
}

#[derive(Debug, Deserialize)]
struct RawHeader {
    #[serde(default)]
    number: u64,
}

#[derive(Debug, Deserialize)]
struct TxInfo {
    id: String,
    #[serde(rename = "blockNumber", default)]
    block_number: u64,
    #[serde(rename = "blockTimeStamp", default)]
    block_timestamp: i64,
    /// `FAILED` on failed transactions; absent on success.
    result: Option<String>,
    receipt: Option<Receipt>,
    #[serde(default)]
    log: Vec<TxLog>,
}

#[derive(Debug, Deserialize)]
struct Receipt {
    result: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TxLog {
    #[serde(default)]
    address: String,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(default)]
    data: String,
}

pub struct TronScanner {
    network: Network,
    decimals: u32,
    /// Base58 `T…` (as stored on transfers).
    contract: String,
    /// 20-byte account id in lower-case hex, without `41` (as logs carry it).
    contract_hex: String,
    endpoints: Endpoints<Client>,
}

impl TronScanner {
    pub fn new(settings: &ChainSettings) -> Result<Self, String> {
        let contract_hex = address::tron_to_hex(&settings.usdt_contract)
            .map_err(|e| format!("networks.tron.usdt_contract: {e}"))?;
        crate::app::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("epusdt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("networks.tron: HTTP client: {e}"))?;
        let endpoints = Endpoints::new(
            settings
                .rpc_urls
                .iter()
                .map(|u| {
                    // `join` needs a trailing slash to keep a base path (e.g. a proxy prefix).
                    let mut base = u.clone();
                    if !base.path().ends_with('/') {
                        base.set_path(&format!("{}/", base.path()));
                    }
                    (
                        Client {
                            http: http.clone(),
                            base,
                            api_key: settings.api_key.clone(),
                        },
                        u,
                    )
                })
                .collect(),
        );
        Ok(Self {
            network: settings.network,
            decimals: settings.decimals,
            contract: settings.usdt_contract.clone(),
            contract_hex: contract_hex
                .get(2..)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            endpoints,
        })
    }

    /// The receipts of block `n`; an error when the node does not have it (`{}`).
    async fn block_infos(&self, n: u64) -> Result<Vec<TxInfo>, ScanError> {
        self.endpoints
            .call("gettransactioninfobyblocknum", |c| async move {
                let v: Value = c
                    .post(
                        "walletsolidity/gettransactioninfobyblocknum",
                        json!({ "num": n }),
                    )
                    .await?;
                match v {
                    Value::Array(items) => items
                        .into_iter()
                        .map(serde_json::from_value::<TxInfo>)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            CallError::Failed(format!(
                                "gettransactioninfobyblocknum {n}: unexpected transaction info ({e})"
                            ))
                        }),
                    Value::Object(o) if o.is_empty() => Err(CallError::Failed(format!(
                        "block {n} is not available on the node yet (answered {{}}); it is behind the solidified head"
                    ))),
                    other => Err(CallError::Failed(format!(
                        "gettransactioninfobyblocknum {n}: unexpected answer {}",
                        truncate(&other.to_string(), 200)
                    ))),
                }
            })
            .await
    }

    /// TRC-20 transfers to watched addresses in one block's receipts.
    fn transfers(
        &self,
        n: u64,
        infos: &[TxInfo],
        watched: &HashSet<String>,
    ) -> Result<Vec<IncomingTransfer>, ScanError> {
        let mut out = Vec::new();
        for tx in infos {
            let success = tx.receipt.as_ref().and_then(|r| r.result.as_deref()) == Some("SUCCESS")
                && tx.result.as_deref() != Some("FAILED");
            if !success {
                continue;
            }
            if tx.block_number != n {
                return Err(ScanError::Unavailable(format!(
                    "gettransactioninfobyblocknum {n} returned transaction {} of block {}; retrying",
                    tx.id, tx.block_number
                )));
            }
            for (index, log) in tx.log.iter().enumerate() {
                let emitter = log.address.to_ascii_lowercase();
                let emitter = emitter
                    .strip_prefix("41")
                    .filter(|s| s.len() == 40)
                    .unwrap_or(&emitter);
                if emitter != self.contract_hex
                    || log.topics.len() != 3
                    || !log.topics[0].eq_ignore_ascii_case(TRANSFER_TOPIC)
                {
                    continue;
                }
                let (Some(to), Some(from)) =
                    (topic_address(&log.topics[2]), topic_address(&log.topics[1]))
                else {
                    tracing::warn!(network = %self.network, tx = %tx.id, "Transfer log with malformed topics; skipped");
                    continue;
                };
                if !watched.contains(&to) {
                    continue;
                }
                let data = log.data.trim_start_matches("0x");
                let value = U256::from_str_radix(data, 16).ok();
                let amount = value
                    .filter(|_| data.len() == 64)
                    .and_then(|v| u128::try_from(v).ok())
                    .and_then(|units| amount::from_base_units(units, self.decimals));
                let Some(amount) = amount else {
                    tracing::error!(network = %self.network, tx = %tx.id, log_index = index, data = %truncate(&log.data, 80), to = %to, "transfer value is malformed or does not fit the amount type; skipped (not credited) — review it by hand");
                    metrics::counter!("epusdt_transfers_total", "network" => self.network.as_str(), "kind" => "unrepresentable").increment(1);
                    continue;
                };
                out.push(IncomingTransfer {
                    network: self.network,
                    tx_hash: tx.id.to_ascii_lowercase(),
                    log_index: i64::try_from(index).unwrap_or(i64::MAX),
                    block_number: i64::try_from(n).unwrap_or(i64::MAX),
                    block_hash: String::new(),
                    token_contract: self.contract.clone(),
                    from_address: from,
                    to_address: to,
                    amount,
                    block_time: tx.block_timestamp.div_euclid(1000),
                });
            }
        }
        Ok(out)
    }
}

/// The address in a 32-byte topic (last 20 bytes), as base58 `T…`.
fn topic_address(topic: &str) -> Option<String> {
    let t = topic.trim_start_matches("0x");
    if t.len() != 64 {
        return None;
    }
    address::tron_from_hex(t.get(24..)?).ok()
}

fn block_number_of(b: &NowBlock) -> Option<u64> {
    b.block_header.as_ref().map(|h| h.raw_data.number)
}

impl Scanner for TronScanner {
    async fn heads(&self) -> Result<Heads, ScanError> {
        self.endpoints
            .call("getnowblock", |c| async move {
                let solid: NowBlock = c.post("walletsolidity/getnowblock", json!({})).await?;
                let finalized = block_number_of(&solid).ok_or_else(|| {
                    CallError::Failed(
                        "walletsolidity/getnowblock: no block_header in the answer".into(),
                    )
                })?;
                // The unconfirmed head is only shown as lag; the solidified one is enough.
                let head = match c.post::<NowBlock>("wallet/getnowblock", json!({})).await {
                    Ok(b) => block_number_of(&b).unwrap_or(finalized).max(finalized),
                    Err(CallError::RateLimited {
                        message,
                        retry_after,
                    }) => {
                        return Err(CallError::RateLimited {
                            message,
                            retry_after,
                        });
                    }
                    Err(_) => finalized,
                };
                Ok(Heads { head, finalized })
            })
            .await
    }

    async fn block_hash(&self, number: u64) -> Result<String, ScanError> {
        self.endpoints
            .call("getblock", |c| async move {
                let b: NowBlock = c
                    .post(
                        "walletsolidity/getblock",
                        json!({ "id_or_num": number.to_string(), "detail": false }),
                    )
                    .await?;
                let n = block_number_of(&b);
                match (b.block_id, n) {
                    (Some(id), Some(n)) if n == number => Ok(id.to_ascii_lowercase()),
                    (None, _) => Err(CallError::Failed(format!(
                        "block {number} is not available on the node yet (no blockID)"
                    ))),
                    (_, other) => Err(CallError::Failed(format!(
                        "asked for block {number}, the node answered block {other:?}"
                    ))),
                }
            })
            .await
    }

    async fn scan(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<ScanBatch, ScanError> {
        let mut transfers = Vec::new();
        if !watched.is_empty() {
            let per_block: Vec<(u64, Vec<TxInfo>)> = futures::stream::iter(from..=to)
                .map(|n| async move { self.block_infos(n).await.map(|i| (n, i)) })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
            for (n, infos) in &per_block {
                let mut found = self.transfers(*n, infos, watched)?;
                if !found.is_empty() {
                    let hash = self.block_hash(*n).await?;
                    for t in &mut found {
                        t.block_hash = hash.clone();
                    }
                    transfers.append(&mut found);
                }
            }
        }
        let to_hash = self.block_hash(to).await?;
        Ok(ScanBatch { transfers, to_hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> TronScanner {
        let settings = crate::config::Config {
            networks: [(
                "tron".to_string(),
                crate::config::NetworkConfig {
                    rpc_urls: vec!["http://127.0.0.1:9/".into()],
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }
        .chains()
        .expect("valid")
        .remove(0);
        TronScanner::new(&settings).expect("scanner")
    }

    #[test]
    fn parses_real_shapes_and_keeps_only_successful_usdt_transfers() {
        let s = scanner();
        let to_hex = "a614f803b6fd780986a42c78ec9c7f77e6ded13c";
        let to = address::tron_from_hex(to_hex).expect("addr");
        let body = json!([
            {"id": "AA11", "blockNumber": 7, "blockTimeStamp": 1_700_000_000_123i64,
             "contract_address": "41a614f803b6fd780986a42c78ec9c7f77e6ded13c",
             "receipt": {"result": "SUCCESS", "energy_usage_total": 1},
             "log": [
                {"address": "1111111111111111111111111111111111111111", "topics": [TRANSFER_TOPIC,
                    format!("{:0>64}", "22"), format!("{:0>64}", to_hex)], "data": format!("{:064x}", 5)},
                {"address": "a614f803b6fd780986a42c78ec9c7f77e6ded13c", "topics": [TRANSFER_TOPIC,
                    format!("{:0>64}", "22"), format!("{:0>64}", to_hex)], "data": format!("{:064x}", 13_890_000)}
             ]},
            {"id": "bb22", "blockNumber": 7, "blockTimeStamp": 1_700_000_000_123i64,
             "receipt": {"result": "REVERT"}, "result": "FAILED",
             "log": [{"address": "a614f803b6fd780986a42c78ec9c7f77e6ded13c", "topics": [TRANSFER_TOPIC,
                    format!("{:0>64}", "22"), format!("{:0>64}", to_hex)], "data": format!("{:064x}", 1)}]},
            {"id": "cc33", "blockNumber": 7, "blockTimeStamp": 1, "receipt": {"net_usage": 5}}
        ]);
        let infos: Vec<TxInfo> = serde_json::from_value(body).expect("shape");
        let watched: HashSet<String> = [to.clone()].into();
        let t = s.transfers(7, &infos, &watched).expect("ok");
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0].tx_hash, "aa11");
        assert_eq!(t[0].log_index, 1, "position within the tx's logs");
        assert_eq!(t[0].amount.to_string(), "13.890000");
        assert_eq!(t[0].to_address, to);
        assert_eq!(t[0].block_time, 1_700_000_000);
        assert!(s.transfers(8, &infos, &watched).is_err(), "wrong block");
    }
}

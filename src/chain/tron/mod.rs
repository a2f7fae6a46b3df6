//! TRON through the FullNode HTTP API (TronGrid or your own node), reading solidified data
//! only: `/walletsolidity/getnowblock` (confirmed head), `/wallet/getnowblock` (head, for lag),
//! `/walletsolidity/gettransactioninfobyblocknum {"num": n}` (receipts and logs of one block),
//! `/walletsolidity/getblock {"id_or_num": "n", "detail": false}` (block id and header) and, at
//! start-up, `/wallet/triggerconstantcontract` (the token's `decimals()`).
//!
//! It owns the translation of TRC-20 `Transfer` logs into [`IncomingTransfer`]s. Only receipts
//! with result `SUCCESS` and logs emitted by a configured token contract (USDT, USDC) count,
//! each tagged with its token; the log index is the log's position within its transaction.
//!
//! TRX (only when `[networks.tron.tokens.trx] native = true`): every block of a range is also
//! read with its transactions, `/walletsolidity/getblock {"id_or_num": "n", "detail": true}`,
//! and each `TransferContract` (`raw_data.contract[0]`) to a watched address whose
//! `ret[0].contractRet` is `SUCCESS` is a transfer of `amount` sun, identified by its `txID` and
//! log index −1 (a TransferContract has no logs). That block answer proves the block itself
//! (`{}` from a node that lacks it is a lagging answer, retried, never an empty block), and a
//! block with receipts but without transactions is a lagging answer too. Without TRX
//! configured nothing extra is read.
//!
//! A node that lacks a block answers `[]` for its receipts — the same as for an empty block —
//! and `{}` for the block itself. So a range is scanned on one endpoint whose solidified head
//! (asked there) covers the range, receipts prove their block by their `blockNumber`, and an
//! empty receipt list is trusted only when the block, asked on the same endpoint, exists and
//! has no transactions (no `transactions`, all-zero `txTrieRoot`). Behind a load balancer the
//! head check proves little; the per-block proof is what keeps a lagging backend from turning a
//! payment into an "empty" block.
//!
//! It must never panic on a malformed answer and never send the API key anywhere but the
//! `TRON-PRO-API-KEY` header. HTTP 429, and 403/503 with a rate-limit message, back off
//! (honouring `Retry-After`); HTTP 401 (TronGrid: `{"Error":"ApiKey not exists"}`) or a 403
//! naming the API key is a configuration error; `{"Error": …}` with HTTP 200 (java-tron's
//! exceptions) is a failed call.
use std::collections::HashSet;

use alloy::primitives::U256;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

mod api;
mod by_hash;
mod native;
mod unconfirmed;

use api::{
    CALLER, Client, NowBlock, Try, TxInfo, block_id_on, block_number_of, get_block, retry_lagging,
};

use super::{
    ChainError, Heads, ScanBatch, ScanError, Scanner,
    rpc::{CallError, Endpoints},
};
use crate::{
    config::ChainSettings,
    domain::{
        address, amount,
        network::{Network, Token},
        transfer::IncomingTransfer,
    },
    redact::truncate,
};

/// `keccak256("Transfer(address,address,uint256)")`, as TRON writes topics (no `0x`).
pub const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// Blocks fetched concurrently within one range.
const CONCURRENCY: usize = 4;
/// Tries of one lagging answer on the same URL before the range fails there: behind a load
/// balancer (TronGrid) the next request usually reaches another, up-to-date backend.
const ATTEMPTS: usize = 3;

/// One watched TRC-20 contract.
#[derive(Debug, Clone)]
struct TronToken {
    token: Token,
    decimals: u32,
    /// Base58 `T…` (as stored on transfers).
    contract: String,
    /// 20-byte account id in lower-case hex, without `41` (as logs carry it).
    hex: String,
}

pub struct TronScanner {
    network: Network,
    settings: ChainSettings,
    tokens: Vec<TronToken>,
    /// TRX, when configured: (token, decimals).
    native: Option<(Token, u32)>,
    endpoints: Endpoints<Client>,
    /// Unsolidified blocks already read for the "confirming" status.
    recent: unconfirmed::Recent,
}

impl TronScanner {
    pub fn new(settings: &ChainSettings) -> Result<Self, ChainError> {
        let mut tokens = Vec::new();
        let mut native = None;
        for t in &settings.tokens {
            if t.native {
                native = Some((t.token, t.decimals));
                continue;
            }
            let hex = address::tron_to_hex(&t.contract).map_err(|e| {
                ChainError::Contract(format!("{}: {e}", settings.token_key(t.token, "contract")))
            })?;
            tokens.push(TronToken {
                token: t.token,
                decimals: t.decimals,
                contract: t.contract.clone(),
                hex: hex.get(2..).unwrap_or_default().to_ascii_lowercase(),
            });
        }
        let http = crate::net::rpc_client(settings.request_timeout).map_err(|source| {
            ChainError::HttpClient {
                network: settings.network,
                source,
            }
        })?;
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
                            network: settings.network,
                        },
                        u,
                    )
                })
                .collect(),
        );
        Ok(Self {
            network: settings.network,
            settings: settings.clone(),
            tokens,
            native,
            endpoints,
            recent: unconfirmed::Recent::default(),
        })
    }

    /// Checks every token contract's `decimals()` against its configured decimals.
    pub async fn check_contract(&self) -> Result<(), ScanError> {
        for t in &self.tokens {
            self.check_token(t).await?;
        }
        Ok(())
    }

    async fn check_token(&self, t: &TronToken) -> Result<(), ScanError> {
        let net = self.network;
        let want = t.decimals;
        let contract = t.contract.as_str();
        let contract_hex = format!("41{}", t.hex);
        let key = self.settings.token_key(t.token, "contract");
        let dkey = self.settings.token_key(t.token, "decimals");
        let (key, dkey) = (&key, &dkey);
        self.endpoints
            .call("contract check (decimals())", |c| {
                let contract_hex = contract_hex.clone();
                async move {
                    let v: Value = c
                        .post(
                            "wallet/triggerconstantcontract",
                            json!({
                                // Any address will do for a constant call; java-tron wants one.
                                "owner_address": CALLER,
                                "contract_address": contract_hex,
                                "function_selector": "decimals()",
                                "parameter": "",
                                "visible": false,
                            }),
                        )
                        .await?;
                    let result = &v["result"];
                    if result["result"].as_bool() != Some(true) {
                        let code = result["code"].as_str().unwrap_or("no result");
                        let message = result["message"].as_str().unwrap_or_default();
                        // A node run with vm.supportConstant = false cannot tell; not a reason
                        // to stop watching.
                        if message.contains("does not support constant") {
                            tracing::warn!(network = %net, "the TRON node does not run constant calls (vm.supportConstant = false): {dkey} cannot be checked against the contract");
                            return Ok(());
                        }
                        let msg = format!(
                            "{key} {contract}: decimals() failed ({code}: {})",
                            truncate(message, 200)
                        );
                        // The node says the contract is not there: the configuration is wrong.
                        let missing = message.contains("not exist") || message.contains("No contract");
                        return Err(if code == "CONTRACT_VALIDATE_ERROR" && missing {
                            CallError::Fatal(format!(
                                "{msg}; fix {key}"
                            ))
                        } else {
                            CallError::Failed(msg)
                        });
                    }
                    let word = v["constant_result"][0].as_str().unwrap_or_default();
                    let got = (word.len() == 64)
                        .then(|| U256::from_str_radix(word, 16).ok())
                        .flatten()
                        .ok_or_else(|| {
                            CallError::Fatal(format!(
                                "{key} {contract}: decimals() returned {:?}, not a number; is it a TRC-20 token? fix {key}",
                                truncate(word, 80)
                            ))
                        })?;
                    if got != U256::from(want) {
                        return Err(CallError::Fatal(format!(
                            "{dkey} is {want} but the token contract {contract} reports {got}: set {dkey} = {got} or fix {key}"
                        )));
                    }
                    Ok(())
                }
            })
            .await
    }

    /// Block `n` as `c` has it: `(receipts, block id if fetched)`. Receipts prove their block
    /// (`blockNumber`); an empty list is accepted only when `c` shows the block and it has no
    /// transactions — a node that lacks the block answers `[]` too.
    async fn block_on(&self, c: &Client, n: u64) -> Result<(Vec<TxInfo>, Option<String>), Try> {
        let v: Value = c
            .post(
                "walletsolidity/gettransactioninfobyblocknum",
                json!({ "num": n }),
            )
            .await?;
        let infos = match v {
            Value::Array(items) => items
                .into_iter()
                .map(serde_json::from_value::<TxInfo>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    CallError::Failed(format!(
                        "gettransactioninfobyblocknum {n}: unexpected transaction info ({e})"
                    ))
                })?,
            other => {
                return Err(Try::Other(CallError::Failed(format!(
                    "gettransactioninfobyblocknum {n}: unexpected answer {}",
                    truncate(&other.to_string(), 200)
                ))));
            }
        };
        if let Some(tx) = infos.iter().find(|t| t.block_number != n) {
            return Err(Try::Lagging(format!(
                "gettransactioninfobyblocknum {n} returned transaction {} of block {}",
                tx.id, tx.block_number
            )));
        }
        if !infos.is_empty() {
            return Ok((infos, None));
        }
        let b = get_block(c, n).await?;
        let root_is_zero = b
            .block_header
            .as_ref()
            .and_then(|h| h.raw_data.tx_trie_root.as_deref())
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|ch| ch == b'0'));
        if b.transactions.is_some() || !root_is_zero {
            return Err(Try::Lagging(format!(
                "block {n} has transactions but the node answered no receipts for it: it is not available on this node (a lagging node or load-balanced backend)"
            )));
        }
        Ok((infos, b.block_id.map(|id| id.to_ascii_lowercase())))
    }

    /// One range on one endpoint (see the module comment).
    async fn scan_on(
        &self,
        c: &Client,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<ScanBatch, CallError> {
        retry_lagging(|| async {
            let solid: NowBlock = c.post("walletsolidity/getnowblock", json!({})).await?;
            let solid = block_number_of(&solid).ok_or_else(|| {
                CallError::Failed(
                    "walletsolidity/getnowblock: no block_header in the answer".into(),
                )
            })?;
            if solid < to {
                return Err(Try::Lagging(format!(
                    "block {to} is not available on this node yet: its solidified head is {solid} (it lags)"
                )));
            }
            Ok(())
        })
        .await?;
        let mut transfers = Vec::new();
        let mut to_hash = None;
        if !watched.is_empty() {
            type Block = (u64, Vec<TxInfo>, Option<String>, Option<native::TxBlock>);
            let per_block: Vec<Block> = futures::stream::iter(from..=to)
                .map(|n| async move {
                    let (infos, id) = retry_lagging(|| self.block_on(c, n)).await?;
                    let full = match self.native {
                        Some(_) => Some(retry_lagging(|| native::tx_block(c, n, &infos)).await?),
                        None => None,
                    };
                    Ok::<_, CallError>((n, infos, id, full))
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
            for (n, infos, id, full) in &per_block {
                let id = id.clone().or_else(|| full.as_ref().map(|b| b.id.clone()));
                if *n == to {
                    to_hash.clone_from(&id);
                }
                let mut found = self.transfers(*n, infos, watched)?;
                if let (Some(b), Some(coin)) = (full, self.native) {
                    found.extend(b.transfers(self.network, coin, watched));
                }
                if !found.is_empty() {
                    let hash = match id {
                        Some(h) => h,
                        None => retry_lagging(|| block_id_on(c, *n)).await?,
                    };
                    for t in &mut found {
                        t.block_hash = hash.clone();
                    }
                    transfers.append(&mut found);
                }
            }
        }
        let to_hash = match to_hash {
            Some(h) => h,
            None => retry_lagging(|| block_id_on(c, to)).await?,
        };
        Ok(ScanBatch { transfers, to_hash })
    }

    /// TRC-20 transfers to watched addresses in one block's receipts.
    fn transfers(
        &self,
        n: u64,
        infos: &[TxInfo],
        watched: &HashSet<String>,
    ) -> Result<Vec<IncomingTransfer>, CallError> {
        let mut out = Vec::new();
        for tx in infos {
            let success = tx.receipt.as_ref().and_then(|r| r.result.as_deref()) == Some("SUCCESS")
                && tx.result.as_deref() != Some("FAILED");
            if !success {
                continue;
            }
            if tx.block_number != n {
                return Err(CallError::Failed(format!(
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
                let Some(tok) = self.tokens.iter().find(|t| t.hex == emitter) else {
                    continue;
                };
                if log.topics.len() != 3 || !log.topics[0].eq_ignore_ascii_case(TRANSFER_TOPIC) {
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
                    .and_then(|units| amount::from_base_units(units, tok.decimals));
                let Some(amount) = amount else {
                    tracing::error!(network = %self.network, tx = %tx.id, log_index = index, data = %truncate(&log.data, 80), to = %to, "transfer value is malformed or does not fit the amount type; skipped (not credited) — review it by hand");
                    crate::telemetry::metrics::transfer(self.network, "unrepresentable");
                    continue;
                };
                out.push(IncomingTransfer {
                    network: self.network,
                    token: tok.token,
                    tx_hash: tx.id.to_ascii_lowercase(),
                    log_index: i64::try_from(index).unwrap_or(i64::MAX),
                    block_number: i64::try_from(n).unwrap_or(i64::MAX),
                    block_hash: String::new(),
                    token_contract: tok.contract.clone(),
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

impl Scanner for TronScanner {
    fn active_endpoint(&self) -> Option<String> {
        self.endpoints.active_label()
    }
    async fn prepare(&self) -> Result<(), ScanError> {
        self.check_contract().await
    }

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
                block_id_on(&c, number).await.map_err(CallError::from)
            })
            .await
    }

    async fn scan(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<ScanBatch, ScanError> {
        self.endpoints
            .call("scan", |c| async move {
                self.scan_on(&c, from, to, watched).await
            })
            .await
    }

    async fn scan_unconfirmed(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<Vec<IncomingTransfer>, ScanError> {
        self.unconfirmed(from, to, watched).await
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

//! EVM chains (Ethereum, BSC, Polygon) through alloy's JSON-RPC provider: `eth_blockNumber`
//! for the head, `eth_getLogs` on the configured token contract and the ERC-20 `Transfer`
//! topic with `to` (topic 2) ∈ watched addresses, and block headers for hashes and timestamps.
//!
//! It owns the translation of logs into [`IncomingTransfer`]s and the start-up check of the
//! contract (chain id, `decimals()`). It must never trust the node blindly: a log from another
//! contract, with the wrong shape, outside the requested range, or whose block hash disagrees
//! with the header is rejected; a value that does not fit the amount type is logged and skipped,
//! never a panic. Headers are read as a minimal JSON shape so chains with non-standard header
//! fields (BSC, Polygon) parse.
use std::{
    borrow::Cow,
    collections::{BTreeMap, HashSet},
};

use alloy::{
    primitives::{Address, B256, Bytes, U64, U256},
    providers::{Provider, RootProvider},
    rpc::{
        client::RpcClient,
        types::{Filter, Log, TransactionInput, TransactionRequest},
    },
    sol,
    sol_types::{SolCall, SolEvent},
    transports::{RpcError, TransportError, TransportErrorKind},
};
use serde::Deserialize;

use super::{
    Heads, ScanBatch, ScanError, Scanner,
    rpc::{CallError, Endpoints, truncate},
};
use crate::{config::ChainSettings, domain::amount, service::order::IncomingTransfer};

sol! {
    /// The two ERC-20 items the watcher uses.
    interface Erc20 {
        function decimals() external view returns (uint8);
        event Transfer(address indexed from, address indexed to, uint256 value);
    }
}

/// Most `to` addresses in one `eth_getLogs` topic filter (providers cap topic lists); more
/// watched addresses are split over several requests per range.
pub const MAX_TOPIC_ADDRESSES: usize = 100;

/// `keccak256("Transfer(address,address,uint256)")`.
pub fn transfer_topic() -> B256 {
    Erc20::Transfer::SIGNATURE_HASH
}

/// The fields of a block header the watcher needs; tolerant of chain-specific extras.
#[derive(Debug, Clone, Deserialize)]
struct Header {
    hash: B256,
    number: U64,
    timestamp: U64,
}

pub struct EvmScanner {
    settings: ChainSettings,
    contract: Address,
    endpoints: Endpoints<RootProvider>,
}

impl EvmScanner {
    pub fn new(settings: &ChainSettings) -> Result<Self, String> {
        let contract: Address = settings.usdt_contract.parse().map_err(|e| {
            format!(
                "networks.{}.usdt_contract `{}` is not an address: {e}",
                settings.network, settings.usdt_contract
            )
        })?;
        crate::app::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(
                settings
                    .request_timeout
                    .min(std::time::Duration::from_secs(5)),
            )
            .user_agent(concat!("epusdt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("networks.{}: HTTP client: {e}", settings.network))?;
        let endpoints = Endpoints::new(
            settings
                .rpc_urls
                .iter()
                .map(|u| {
                    let client = RpcClient::new_http_with_client(http.clone(), u.clone());
                    (RootProvider::new(client), u)
                })
                .collect(),
        );
        Ok(Self {
            settings: settings.clone(),
            contract,
            endpoints,
        })
    }

    /// Chain id (when configured) and `decimals()` must match the configuration: a mismatch
    /// is [`ScanError::Fatal`] (refuse to start / stop scanning); unreachable is `Unavailable`.
    pub async fn check_contract(&self) -> Result<(), ScanError> {
        let net = self.settings.network;
        let want_chain = self.settings.chain_id;
        let want_decimals = self.settings.decimals;
        let contract = self.contract;
        self.endpoints
            .call("contract check (eth_chainId, decimals())", |p| async move {
                if let Some(want) = want_chain {
                    let got = p.get_chain_id().await.map_err(call_error)?;
                    if got != want {
                        return Err(CallError::Fatal(format!(
                            "networks.{net}.chain_id is {want} but the RPC reports chain id {got}: the URL points at another chain; fix networks.{net}.rpc_urls or chain_id"
                        )));
                    }
                }
                let req = TransactionRequest::default().to(contract).input(TransactionInput::new(
                    Bytes::from(Erc20::decimalsCall {}.abi_encode()),
                ));
                let out = p.call(req).await.map_err(call_error)?;
                if out.is_empty() {
                    return Err(CallError::Fatal(format!(
                        "networks.{net}.usdt_contract {contract:#x} has no code or no decimals() on this chain: fix networks.{net}.usdt_contract"
                    )));
                }
                let got = Erc20::decimalsCall::abi_decode_returns(&out).map_err(|e| {
                    CallError::Fatal(format!(
                        "networks.{net}.usdt_contract {contract:#x}: decimals() returned an undecodable value ({e}); is it an ERC-20 token?"
                    ))
                })?;
                if u32::from(got) != want_decimals {
                    return Err(CallError::Fatal(format!(
                        "networks.{net}.decimals is {want_decimals} but the token contract {contract:#x} reports {got}: set networks.{net}.decimals = {got} (amounts would be off by 10^{}) or fix usdt_contract",
                        u32::from(got).abs_diff(want_decimals)
                    )));
                }
                Ok(())
            })
            .await
    }

    fn address_topics(watched: &HashSet<String>) -> Vec<B256> {
        watched
            .iter()
            .filter_map(|a| a.parse::<Address>().ok())
            .map(|a| a.into_word())
            .collect()
    }
}

async fn header(p: &RootProvider, number: u64) -> Result<Header, CallError> {
    let h: Option<Header> = p
        .raw_request(
            Cow::Borrowed("eth_getBlockByNumber"),
            (format!("{number:#x}"), false),
        )
        .await
        .map_err(call_error)?;
    let h = h.ok_or_else(|| {
        CallError::Failed(format!(
            "block {number} not found (the node is behind the confirmed head)"
        ))
    })?;
    if h.number.to::<u64>() != number {
        return Err(CallError::Failed(format!(
            "asked for block {number}, the node answered block {}",
            h.number
        )));
    }
    Ok(h)
}

fn call_error(e: TransportError) -> CallError {
    match &e {
        RpcError::Transport(TransportErrorKind::HttpError(h)) if matches!(h.status, 429 | 403) => {
            CallError::RateLimited {
                message: format!("HTTP {}", h.status),
                retry_after: None,
            }
        }
        RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error, retry_after })
            if matches!(error.status, 429 | 403) =>
        {
            CallError::RateLimited {
                message: format!("HTTP {}", error.status),
                retry_after: Some(*retry_after),
            }
        }
        _ => CallError::Failed(truncate(&e.to_string(), 300)),
    }
}

impl Scanner for EvmScanner {
    async fn prepare(&self) -> Result<(), ScanError> {
        self.check_contract().await
    }

    async fn heads(&self) -> Result<Heads, ScanError> {
        self.endpoints
            .call("eth_blockNumber", |p| async move {
                let head = p.get_block_number().await.map_err(call_error)?;
                Ok(Heads {
                    head,
                    finalized: head,
                })
            })
            .await
    }

    async fn block_hash(&self, number: u64) -> Result<String, ScanError> {
        self.endpoints
            .call("eth_getBlockByNumber", |p| async move {
                Ok(format!("{:#x}", header(&p, number).await?.hash))
            })
            .await
    }

    async fn scan(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<ScanBatch, ScanError> {
        if watched.is_empty() {
            // Nothing to match: only the cursor hash is needed.
            let to_hash = self.block_hash(to).await?;
            return Ok(ScanBatch {
                transfers: Vec::new(),
                to_hash,
            });
        }
        let mut topics = Self::address_topics(watched);
        topics.sort();
        let filters: Vec<Filter> = topics
            .chunks(MAX_TOPIC_ADDRESSES)
            .map(|chunk| {
                Filter::new()
                    .address(self.contract)
                    .event_signature(transfer_topic())
                    .topic2(chunk.to_vec())
                    .from_block(from)
                    .to_block(to)
            })
            .collect();
        let net = self.settings.network;
        let decimals = self.settings.decimals;
        let contract = self.contract;
        let filters = &filters;
        self.endpoints
            .call("eth_getLogs", |p| async move {
                // The header of `to` first: a node that has it has every block of the range.
                let last = header(&p, to).await?;
                let mut logs = Vec::new();
                for filter in filters {
                    logs.extend(p.get_logs(filter).await.map_err(call_error)?);
                }
                let mut headers: BTreeMap<u64, Header> = BTreeMap::new();
                headers.insert(to, last.clone());
                let mut out = Vec::new();
                for log in logs {
                    let Some(mut t) = to_transfer(&log, net, contract, decimals, watched, from, to)?
                    else {
                        continue;
                    };
                    let number = log.block_number.unwrap_or_default();
                    let h = match headers.get(&number) {
                        Some(h) => h.clone(),
                        None => {
                            let h = header(&p, number).await?;
                            headers.insert(number, h.clone());
                            h
                        }
                    };
                    if format!("{:#x}", h.hash) != t.block_hash {
                        return Err(CallError::Failed(format!(
                            "block {number} changed while scanning (log hash {}, header hash {:#x}); retrying",
                            t.block_hash, h.hash
                        )));
                    }
                    t.block_time = i64::try_from(h.timestamp.to::<u64>()).unwrap_or(i64::MAX);
                    out.push(t);
                }
                out.sort_by_key(|t| (t.block_number, t.log_index));
                Ok(ScanBatch {
                    transfers: out,
                    to_hash: format!("{:#x}", last.hash),
                })
            })
            .await
    }
}

/// One log → a transfer to a watched address, `None` for logs to skip, an error for answers
/// that make the whole range suspect (outside the range, missing fields).
fn to_transfer(
    log: &Log,
    network: crate::domain::network::Network,
    contract: Address,
    decimals: u32,
    watched: &HashSet<String>,
    from: u64,
    to: u64,
) -> Result<Option<IncomingTransfer>, CallError> {
    if log.removed {
        return Ok(None);
    }
    if log.address() != contract {
        // Defence in depth: the filter asked for the contract only.
        tracing::warn!(%network, address = %log.address(), "ignoring a log from another contract");
        return Ok(None);
    }
    let topics = log.topics();
    if topics.len() != 3 || topics[0] != transfer_topic() || log.data().data.len() != 32 {
        return Ok(None);
    }
    let (Some(number), Some(block_hash), Some(tx_hash), Some(log_index)) = (
        log.block_number,
        log.block_hash,
        log.transaction_hash,
        log.log_index,
    ) else {
        return Err(CallError::Failed(
            "eth_getLogs returned a log without block number, block hash, tx hash or log index"
                .into(),
        ));
    };
    if number < from || number > to {
        return Err(CallError::Failed(format!(
            "eth_getLogs for blocks {from}..={to} returned a log of block {number}"
        )));
    }
    let to_address = format!("{:#x}", Address::from_word(topics[2]));
    if !watched.contains(&to_address) {
        return Ok(None);
    }
    let from_address = format!("{:#x}", Address::from_word(topics[1]));
    let value = U256::from_be_slice(&log.data().data);
    let tx = format!("{tx_hash:#x}");
    let amount = u128::try_from(value)
        .ok()
        .and_then(|units| amount::from_base_units(units, decimals));
    let Some(amount) = amount else {
        tracing::error!(%network, %tx, log_index, %value, to = %to_address, "transfer value does not fit the amount type; skipped (not credited) — review it by hand");
        metrics::counter!("epusdt_transfers_total", "network" => network.as_str(), "kind" => "unrepresentable").increment(1);
        return Ok(None);
    };
    Ok(Some(IncomingTransfer {
        network,
        tx_hash: tx,
        log_index: i64::try_from(log_index).unwrap_or(i64::MAX),
        block_number: i64::try_from(number).unwrap_or(i64::MAX),
        block_hash: format!("{block_hash:#x}"),
        token_contract: format!("{contract:#x}"),
        from_address,
        to_address,
        amount,
        block_time: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::LogData;

    fn log(contract: Address, to: Address, value: U256, number: u64) -> Log {
        let data = LogData::new_unchecked(
            vec![
                transfer_topic(),
                Address::repeat_byte(0x11).into_word(),
                to.into_word(),
            ],
            Bytes::from(value.to_be_bytes::<32>().to_vec()),
        );
        Log {
            inner: alloy::primitives::Log {
                address: contract,
                data,
            },
            block_hash: Some(B256::repeat_byte(0xbb)),
            block_number: Some(number),
            block_timestamp: None,
            transaction_hash: Some(B256::repeat_byte(0xcc)),
            transaction_index: Some(0),
            log_index: Some(3),
            removed: false,
        }
    }

    #[test]
    fn transfer_topic_is_the_erc20_one() {
        assert_eq!(
            format!("{:x}", transfer_topic()),
            "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
        );
    }

    #[test]
    fn logs_become_transfers_exactly() {
        let net = crate::domain::network::Network::Bsc;
        let contract = Address::repeat_byte(0x55);
        let to = Address::repeat_byte(0xaa);
        let watched: HashSet<String> = [format!("{to:#x}")].into();
        let v = U256::from(13_890_000_000_000_000_000u128);
        let t = to_transfer(
            &log(contract, to, v, 10),
            net,
            contract,
            18,
            &watched,
            5,
            10,
        )
        .expect("ok")
        .expect("transfer");
        assert_eq!(t.amount.to_string(), "13.890000000000000000");
        assert_eq!(t.to_address, format!("{to:#x}"));
        assert_eq!(t.log_index, 3);
        // Another contract, an unwatched address, an out-of-range block, a huge value.
        assert!(
            to_transfer(
                &log(Address::repeat_byte(1), to, v, 10),
                net,
                contract,
                18,
                &watched,
                5,
                10
            )
            .expect("ok")
            .is_none()
        );
        assert!(
            to_transfer(
                &log(contract, Address::repeat_byte(2), v, 10),
                net,
                contract,
                18,
                &watched,
                5,
                10
            )
            .expect("ok")
            .is_none()
        );
        assert!(
            to_transfer(
                &log(contract, to, v, 11),
                net,
                contract,
                18,
                &watched,
                5,
                10
            )
            .is_err()
        );
        assert!(
            to_transfer(
                &log(contract, to, U256::MAX, 10),
                net,
                contract,
                18,
                &watched,
                5,
                10
            )
            .expect("ok")
            .is_none()
        );
    }
}

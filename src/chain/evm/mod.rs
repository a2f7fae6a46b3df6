//! EVM chains (Ethereum, BSC, Polygon, Arbitrum, Base, any configured `kind = "evm"`) through
//! alloy's JSON-RPC provider: `eth_blockNumber` for the head, one `eth_getLogs` on **every**
//! configured token contract of the network at once (USDT and USDC) and the ERC-20 `Transfer`
//! topic with `to` (topic 2) ∈ watched addresses, and block headers for hashes and timestamps.
//! Each transfer is tagged with the token of the contract that emitted it. With the network's
//! native coin configured (ETH, BNB, …), each range is also read as full blocks for top-level
//! value transfers to watched addresses, confirmed by their receipts ([`native`]).
//!
//! It owns the translation of logs into [`IncomingTransfer`]s and the start-up check of the
//! contract (chain id, `decimals()`). It must never trust the node blindly: a log from another
//! contract, with the wrong shape, outside the requested range, or whose block hash disagrees
//! with the header is rejected; a value that does not fit the amount type is logged and skipped,
//! never a panic. Headers are read as a minimal JSON shape so chains with non-standard header
//! fields (BSC, Polygon) parse.
//!
//! Real providers, as handled here:
//! - Every URL's `eth_chainId` is checked before anything else is read from it (again after
//!   any failed call); a URL on another chain is refused by name and never read.
//! - Range caps and result caps come as JSON-RPC errors inside HTTP 200 ("block range is too
//!   large", "exceed maximum block range: 5000", "query returned more than 10000 results"…):
//!   they become [`ScanError::RangeTooLarge`] with the provider's hint when it gives one, a
//!   size signal for the cursor loop, not an outage. Quota texts ("daily request count
//!   exceeded") are rate limits.
//! - An empty `eth_getLogs` answer is trusted only from a node whose head is at or above the
//!   range's end and that still serves the same `to` header afterwards; and for the newest
//!   [`BLOOM_CHECK_DEPTH`] blocks, every block without a log in the answer is checked against
//!   its header's logsBloom — a block that may hold one of our transfers is asked again by hash
//!   (EIP-234), so a backend whose log index lags its headers cannot make a payment vanish.
use std::{
    borrow::Cow,
    collections::{BTreeMap, HashSet},
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use alloy::{
    primitives::{Address, B256, Bloom, BloomInput, Bytes, U64},
    providers::{Provider, RootProvider},
    rpc::{
        client::RpcClient,
        types::{Filter, TransactionInput, TransactionRequest},
    },
    sol,
    sol_types::{SolCall, SolEvent},
};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

mod by_hash;
mod errors;
mod logs;
mod native;
mod unconfirmed;

pub use native::{NATIVE_CONCURRENCY, NATIVE_LOG_INDEX};

use errors::{call_error, logs_error};
use logs::{Contract, to_transfer};

use super::{
    ChainError, Heads, ScanBatch, ScanError, Scanner,
    rpc::{CallError, Endpoints},
};
use crate::config::ChainSettings;

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
    #[serde(rename = "logsBloom", default)]
    logs_bloom: Option<Bloom>,
}

/// Blocks this close to a node's head have their `eth_getLogs` answer checked against their
/// headers' logsBloom (a lagging log index affects the newest blocks, not history).
pub const BLOOM_CHECK_DEPTH: u64 = 128;

/// Ranges scanned at once while catching up ([`Scanner::ranges_at_once`]): a scan proves its
/// range on its own (header of `to` before and after, the node's head, blooms near the head).
pub const RANGES_AT_ONCE: usize = 4;

/// The bloom may hold a Transfer of one of `contracts` to one of `to_topics`.
fn may_hold(bloom: &Bloom, contracts: &[Contract], to_topics: &[B256]) -> bool {
    contracts
        .iter()
        .any(|c| bloom.contains_input(BloomInput::Raw(c.address.as_slice())))
        && bloom.contains_input(BloomInput::Raw(transfer_topic().as_slice()))
        && to_topics
            .iter()
            .any(|t| bloom.contains_input(BloomInput::Raw(t.as_slice())))
}

/// One RPC URL: its provider, and whether its `eth_chainId` was checked (again after any
/// failed call: the node behind a URL that went away may come back as another one).
#[derive(Clone)]
struct Node {
    provider: RootProvider,
    chain_checked: Arc<AtomicBool>,
}

pub struct EvmScanner {
    settings: ChainSettings,
    contracts: Vec<Contract>,
    /// The native coin, when configured: every scanned block is then read in full.
    native: Option<native::NativeCoin>,
    endpoints: Endpoints<Node>,
}

impl EvmScanner {
    pub fn new(settings: &ChainSettings) -> Result<Self, ChainError> {
        let mut contracts = Vec::new();
        let mut coin = None;
        for t in &settings.tokens {
            if t.native {
                coin = Some(native::NativeCoin {
                    token: t.token,
                    decimals: t.decimals,
                });
                continue;
            }
            let address: Address = t.contract.parse().map_err(|e| {
                ChainError::Contract(format!(
                    "{} `{}` is not an address: {e}",
                    settings.token_key(t.token, "contract"),
                    t.contract
                ))
            })?;
            contracts.push(Contract {
                address,
                token: t.token,
                decimals: t.decimals,
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
                    let client = RpcClient::new_http_with_client(http.clone(), u.clone());
                    let node = Node {
                        provider: RootProvider::new(client),
                        chain_checked: Arc::new(AtomicBool::new(false)),
                    };
                    (node, u)
                })
                .collect(),
        );
        Ok(Self {
            settings: settings.clone(),
            contracts,
            native: coin,
            endpoints,
        })
    }

    /// On every URL that answers, the chain id (when configured) and `decimals()` must match
    /// the configuration: a mismatch is [`ScanError::Fatal`] naming the URL (refuse to start /
    /// stop scanning); none answering is `Unavailable`. A URL that does not answer now is
    /// checked before its first use.
    pub async fn check_contract(&self) -> Result<(), ScanError> {
        let contracts = &self.contracts;
        let settings = &self.settings;
        self.endpoints
            .call_each("contract check (eth_chainId, decimals())", |n| self.on(n, |p| async move {
                for c in contracts {
                    let (contract, want_decimals) = (c.address, c.decimals);
                    let key = settings.token_key(c.token, "contract");
                    let dkey = settings.token_key(c.token, "decimals");
                    let req = TransactionRequest::default().to(contract).input(TransactionInput::new(
                        Bytes::from(Erc20::decimalsCall {}.abi_encode()),
                    ));
                    let out = p.call(req).await.map_err(call_error)?;
                    if out.is_empty() {
                        return Err(CallError::Fatal(format!(
                            "{key} {contract:#x} ({}) has no code or no decimals() on this chain: fix {key}",
                            c.token
                        )));
                    }
                    let got = Erc20::decimalsCall::abi_decode_returns(&out).map_err(|e| {
                        CallError::Fatal(format!(
                            "{key} {contract:#x}: decimals() returned an undecodable value ({e}); is it an ERC-20 token?"
                        ))
                    })?;
                    if u32::from(got) != want_decimals {
                        return Err(CallError::Fatal(format!(
                            "{dkey} is {want_decimals} but the token contract {contract:#x} ({}) reports {got}: set {dkey} = {got} (amounts would be off by 10^{}) or fix {key}",
                            c.token,
                            u32::from(got).abs_diff(want_decimals)
                        )));
                    }
                }
                Ok(())
            }))
            .await
    }

    /// Runs `f` on the node behind one URL once its chain id is known to be the configured
    /// one; a URL on another chain is refused ([`CallError::WrongChain`]) and nothing is read
    /// from it.
    async fn on<T, F, Fut>(&self, node: Node, f: F) -> Result<T, CallError>
    where
        F: FnOnce(RootProvider) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        if let Some(want) = self.settings.chain_id
            && !node.chain_checked.load(Ordering::Acquire)
        {
            let net = self.settings.network;
            let got = node.provider.get_chain_id().await.map_err(call_error)?;
            if got != want {
                return Err(CallError::WrongChain(format!(
                    "it serves chain id {got} but networks.{net}.chain_id is {want}: this URL points at another chain and is never used; fix or remove it in networks.{net}.rpc_urls"
                )));
            }
            node.chain_checked.store(true, Ordering::Release);
        }
        let out = f(node.provider.clone()).await;
        if matches!(out, Err(CallError::Failed(_))) {
            node.chain_checked.store(false, Ordering::Release);
        }
        out
    }

    /// The sorted `to` topics of `watched` and the `eth_getLogs` filters over blocks
    /// `from..=to`: every token contract of the network, the ERC-20 Transfer event, at most
    /// [`MAX_TOPIC_ADDRESSES`] recipients per filter. Shared by the scan and the unconfirmed read.
    fn log_filters(
        &self,
        watched: &HashSet<String>,
        from: u64,
        to: u64,
    ) -> (Vec<B256>, Vec<Filter>) {
        let mut topics = Self::address_topics(watched);
        topics.sort();
        let contracts: Vec<Address> = self.contracts.iter().map(|c| c.address).collect();
        let filters = topics
            .chunks(MAX_TOPIC_ADDRESSES)
            .map(|chunk| {
                Filter::new()
                    .address(contracts.clone())
                    .event_signature(transfer_topic())
                    .topic2(chunk.to_vec())
                    .from_block(from)
                    .to_block(to)
            })
            .collect();
        (topics, filters)
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

impl Scanner for EvmScanner {
    fn active_endpoint(&self) -> Option<String> {
        self.endpoints.active_label()
    }
    fn ranges_at_once(&self) -> usize {
        RANGES_AT_ONCE
    }
    async fn prepare(&self) -> Result<(), ScanError> {
        self.check_contract().await
    }

    async fn heads(&self) -> Result<Heads, ScanError> {
        self.endpoints
            .call("eth_blockNumber", |n| {
                self.on(n, |p| async move {
                    let head = p.get_block_number().await.map_err(call_error)?;
                    Ok(Heads {
                        head,
                        finalized: head,
                    })
                })
            })
            .await
    }

    async fn block_hash(&self, number: u64) -> Result<String, ScanError> {
        self.endpoints
            .call("eth_getBlockByNumber", |n| {
                self.on(n, |p| async move {
                    Ok(format!("{:#x}", header(&p, number).await?.hash))
                })
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
        let (topics, filters) = self.log_filters(watched, from, to);
        let net = self.settings.network;
        let contracts = &self.contracts;
        let filters = &filters;
        let topics = &topics;
        let coin = self.native;
        self.endpoints
            .call("eth_getLogs", |n| self.on(n, |p| async move {
                // The header of `to` first: a node that has it has every block of the range.
                let last = header(&p, to).await?;
                let mut logs = Vec::new();
                for filter in filters {
                    logs.extend(
                        p.get_logs(filter)
                            .await
                            .map_err(|e| logs_error(e, to - from + 1))?,
                    );
                }
                // With a native coin: every block in full, proven to be one chain ending in
                // `last`, and its value transfers to watched addresses (`native`).
                let full = match coin {
                    Some(_) => native::full_blocks(&p, from, to, &last).await?,
                    None => Vec::new(),
                };
                // An empty or short answer is only trusted from a node that has indexed the
                // whole range: its head is at or above `to`, and `to` is still the block whose
                // header it served (a node whose log index or execution lags its headers, or a
                // backend switched under us, answers `[]` for blocks it has not processed).
                let head = p.get_block_number().await.map_err(call_error)?;
                if head < to {
                    return Err(CallError::Failed(format!(
                        "the node served block {to} but reports head {head}: its logs may not cover the range yet; retrying"
                    )));
                }
                let again = header(&p, to).await?;
                if again.hash != last.hash {
                    return Err(CallError::Failed(format!(
                        "block {to} changed while scanning ({:#x}, then {:#x}); retrying",
                        last.hash, again.hash
                    )));
                }
                let mut headers: BTreeMap<u64, Header> = BTreeMap::new();
                for b in &full {
                    headers.insert(b.number.to::<u64>(), b.header());
                }
                headers.insert(to, last.clone());
                // A node (or a balancer backend) whose log index lags its headers answers `[]`
                // for the newest blocks. Each recent block without a log in the answer is
                // checked against its header's logsBloom; a block whose bloom may hold one of
                // our transfers is asked again by its hash (EIP-234, read from the block's
                // own receipts), and a log found there fails the range: retried, never skipped.
                let with_logs: HashSet<u64> = logs.iter().filter_map(|l| l.block_number).collect();
                let recent = from.max(head.saturating_sub(BLOOM_CHECK_DEPTH));
                let unseen: Vec<u64> = (recent..=to).filter(|n| !with_logs.contains(n)).collect();
                let fetched: Vec<Header> = futures::stream::iter(unseen)
                    .map(|n| {
                        let p = p.clone();
                        let known = headers.get(&n).cloned();
                        async move {
                            match known {
                                Some(h) => Ok(h),
                                None => header(&p, n).await,
                            }
                        }
                    })
                    .buffered(8)
                    .try_collect()
                    .await?;
                for h in fetched {
                    let number = h.number.to::<u64>();
                    if h.logs_bloom.is_some_and(|b| may_hold(&b, contracts, topics)) {
                        for filter in filters {
                            let again = p
                                .get_logs(&filter.clone().at_block_hash(h.hash))
                                .await
                                .map_err(call_error)?;
                            if again.iter().any(|l| !l.removed) {
                                return Err(CallError::Failed(format!(
                                    "eth_getLogs for blocks {from}..={to} returned nothing for block {number}, but that block (asked by hash) holds a matching Transfer: the provider's log index lags; retrying"
                                )));
                            }
                        }
                    }
                    headers.insert(number, h);
                }
                let mut out = Vec::new();
                for log in logs {
                    let Some(mut t) = to_transfer(&log, net, contracts, watched, from, to)?
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
                if let Some(coin) = coin {
                    out.extend(native::transfers(&p, net, coin, &full, watched).await?);
                }
                out.sort_by_key(|t| (t.block_number, t.log_index));
                Ok(ScanBatch {
                    transfers: out,
                    to_hash: format!("{:#x}", last.hash),
                })
            }))
            .await
    }

    async fn scan_unconfirmed(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<Vec<crate::domain::transfer::IncomingTransfer>, ScanError> {
        self.unconfirmed(from, to, watched).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_topic_is_the_erc20_one() {
        assert_eq!(
            format!("{:x}", transfer_topic()),
            "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
        );
    }
}

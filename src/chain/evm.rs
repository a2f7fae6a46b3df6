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
    primitives::{Address, B256, Bloom, BloomInput, Bytes, U64, U256},
    providers::{Provider, RootProvider},
    rpc::{
        client::RpcClient,
        types::{Filter, Log, TransactionInput, TransactionRequest},
    },
    sol,
    sol_types::{SolCall, SolEvent},
    transports::{RpcError, TransportError, TransportErrorKind},
};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::{
    ChainError, Heads, ScanBatch, ScanError, Scanner,
    rpc::{CallError, Endpoints},
};
use crate::{
    config::ChainSettings,
    domain::{amount, transfer::IncomingTransfer},
    redact::truncate,
};

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

/// The bloom may hold a Transfer of `contract` to one of `to_topics`.
fn may_hold(bloom: &Bloom, contract: Address, to_topics: &[B256]) -> bool {
    bloom.contains_input(BloomInput::Raw(contract.as_slice()))
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
    contract: Address,
    endpoints: Endpoints<Node>,
}

impl EvmScanner {
    pub fn new(settings: &ChainSettings) -> Result<Self, ChainError> {
        let contract: Address = settings.usdt_contract.parse().map_err(|e| {
            ChainError::Contract(format!(
                "networks.{}.usdt_contract `{}` is not an address: {e}",
                settings.network, settings.usdt_contract
            ))
        })?;
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
            contract,
            endpoints,
        })
    }

    /// On every URL that answers, the chain id (when configured) and `decimals()` must match
    /// the configuration: a mismatch is [`ScanError::Fatal`] naming the URL (refuse to start /
    /// stop scanning); none answering is `Unavailable`. A URL that does not answer now is
    /// checked before its first use.
    pub async fn check_contract(&self) -> Result<(), ScanError> {
        let net = self.settings.network;
        let want_decimals = self.settings.decimals;
        let contract = self.contract;
        self.endpoints
            .call_each("contract check (eth_chainId, decimals())", |n| self.on(n, |p| async move {
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
    classify(e, None)
}

/// An `eth_getLogs` error for a range of `size` blocks: a provider's range or result cap is
/// [`CallError::RangeTooLarge`] (with its hint when it names one), not an outage.
fn logs_error(e: TransportError, size: u64) -> CallError {
    classify(e, Some(size))
}

/// Providers answer with a JSON-RPC error inside HTTP 200 (or with an error body on 4xx) for
/// rate limits and range caps; their texts differ, so the message is what is classified.
fn classify(e: TransportError, logs_size: Option<u64>) -> CallError {
    let text = match &e {
        RpcError::ErrorResp(p) => Some((
            p.code,
            p.message.to_string(),
            p.data.as_ref().map(|d| d.get().to_string()),
        )),
        RpcError::Transport(TransportErrorKind::HttpError(h))
        | RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error: h, .. }) => {
            Some((i64::from(h.status), h.body.clone(), None))
        }
        _ => None,
    };
    if let Some((code, message, data)) = &text {
        let all = format!("{message} {}", data.as_deref().unwrap_or("")).to_ascii_lowercase();
        if let Some(size) = logs_size
            && is_size_refusal(&all)
        {
            return CallError::RangeTooLarge {
                message: format!(
                    "eth_getLogs over {size} blocks refused: {}",
                    truncate(message, 200)
                ),
                hint: range_hint(message, data.as_deref(), size),
            };
        }
        if matches!(e, RpcError::ErrorResp(_)) && (*code == 429 || is_rate_limit(&all)) {
            return CallError::RateLimited {
                message: format!("JSON-RPC error {code}: {}", truncate(message, 200)),
                retry_after: None,
            };
        }
    }
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

/// "block range is too large", "exceed maximum block range: 5000", "query returned more than
/// 10000 results", "Log response size exceeded", "eth_getLogs is limited to a 10,000 range"…
fn is_size_refusal(t: &str) -> bool {
    let range = t.contains("range")
        && [
            "too large",
            "too wide",
            "too big",
            "too high",
            "exceed",
            "bigger",
            "larger",
            "limit",
            "maximum",
            "max ",
            "up to",
        ]
        .iter()
        .any(|w| t.contains(w));
    let results = ["results", "logs", "response size"]
        .iter()
        .any(|w| t.contains(w))
        && ["more than", "too many", "exceed"]
            .iter()
            .any(|w| t.contains(w));
    range || results
}

/// "daily request count exceeded, request rate limited", "too many requests", quotas.
fn is_rate_limit(t: &str) -> bool {
    [
        "rate limit",
        "rate-limit",
        "ratelimit",
        "rate exceeded",
        "too many requests",
        "request count",
        "quota",
        "capacity",
        "compute units",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// The largest range the provider says it accepts, when it says so: Infura's
/// `data: {from, to}`, Alchemy's "this block range should work: [0x…, 0x…]", reth's "retry
/// with the range A-B", or the cap in the message ("exceed maximum block range: 5000",
/// "range 20 exceeds limit of 10"). Only hints below the refused `size` count.
fn range_hint(message: &str, data: Option<&str>, size: u64) -> Option<u64> {
    let below = |n: u64| (1..size).contains(&n).then_some(n);
    let span = |a: u64, b: u64| b.checked_sub(a).map(|d| d + 1).and_then(below);
    let hex = |v: &str| u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok();
    if let Some(d) = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        && let (Some(a), Some(b)) = (
            d.get("from").and_then(|v| v.as_str()).and_then(hex),
            d.get("to").and_then(|v| v.as_str()).and_then(hex),
        )
        && let Some(n) = span(a, b)
    {
        return Some(n);
    }
    if let Some(open) = message.find("[0x")
        && let Some(close) = message[open..].find(']')
        && let Some((a, b)) = message[open + 1..open + close].split_once(',')
        && let (Some(a), Some(b)) = (hex(a), hex(b))
    {
        return span(a, b);
    }
    let lower = message.to_ascii_lowercase();
    if !lower.contains("range") || lower.contains("results") {
        return None;
    }
    if let Some(at) = lower.find("retry with the range ") {
        let rest = &lower[at + "retry with the range ".len()..];
        let mut parts = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        if let (Some(a), Some(b)) = (parts.next(), parts.next())
            && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
        {
            return span(a, b);
        }
    }
    // Decimal numbers of the message ("10,000" is one number; hex words are skipped).
    let mut numbers = Vec::new();
    for word in lower.split(|c: char| c.is_whitespace() || "()[]:=;".contains(c)) {
        let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if word.starts_with("0x") {
            continue;
        }
        let digits: String = word.chars().filter(|c| *c != ',').collect();
        if !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && let Ok(n) = digits.parse::<u64>()
        {
            numbers.push(n);
        }
    }
    numbers.into_iter().filter_map(below).min()
}

impl Scanner for EvmScanner {
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
        let topics = &topics;
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
                        let known = (n == to).then(|| last.clone());
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
                    if h.logs_bloom.is_some_and(|b| may_hold(&b, contract, topics)) {
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
            }))
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

    fn rpc_error(code: i64, message: &str, data: Option<&str>) -> TransportError {
        let mut body = serde_json::json!({"code": code, "message": message});
        if let Some(d) = data {
            body["data"] = serde_json::from_str(d).expect("data json");
        }
        RpcError::ErrorResp(serde_json::from_str(&body.to_string()).expect("error payload"))
    }

    fn refused(e: TransportError, size: u64) -> Option<Option<u64>> {
        match logs_error(e, size) {
            CallError::RangeTooLarge { hint, .. } => Some(hint),
            _ => None,
        }
    }

    /// Real providers' texts (Infura, Alchemy, QuickNode, BSC, reth, Moonbeam, Polygon).
    #[test]
    fn range_caps_are_size_signals_with_their_hints() {
        // (code, message, data, refused size, expected hint)
        type Case<'a> = (i64, &'a str, Option<&'a str>, u64, Option<u64>);
        let cases: [Case; 11] = [
            (
                -32005,
                "query returned more than 10000 results",
                Some(r#"{"from":"0x10","to":"0x19"}"#),
                100,
                Some(10),
            ),
            (
                -32602,
                "range 1000000 exceeds limit of 10000",
                None,
                1_000_000,
                Some(10_000),
            ),
            (
                -32600,
                "You can make eth_getLogs requests with up to a 500 block range. Based on your parameters, this block range should work: [0x123c9b2, 0x123cba5]",
                None,
                2000,
                Some(500),
            ),
            (
                -32614,
                "eth_getLogs is limited to a 10,000 range",
                None,
                20_000,
                Some(10_000),
            ),
            (
                -32000,
                "exceed maximum block range: 5000",
                None,
                6000,
                Some(5000),
            ),
            (
                -32000,
                "block range is larger than max block range, block range = 5120, max block range = 5000",
                None,
                5120,
                Some(5000),
            ),
            (
                -32602,
                "query exceeds max results 20000, retry with the range 25766988-25775072",
                None,
                8085,
                None,
            ),
            (
                -32000,
                "block range is too wide (maximum 1024)",
                None,
                2000,
                Some(1024),
            ),
            (-32005, "block range is too large", None, 20, None),
            (
                -32000,
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
                None,
                3000,
                None,
            ),
            (-32600, "block range too high", None, 50, None),
        ];
        for (code, message, data, size, hint) in cases {
            assert_eq!(
                refused(rpc_error(code, message, data), size),
                Some(hint),
                "{message}"
            );
        }
        // A rate limit is not a size signal; neither is a range cap outside eth_getLogs.
        let quota = "daily request count exceeded, request rate limited";
        assert!(refused(rpc_error(-32005, quota, None), 10).is_none());
        assert!(matches!(
            call_error(rpc_error(-32005, quota, None)),
            CallError::RateLimited { .. }
        ));
        assert!(matches!(
            call_error(rpc_error(-32000, "exceed maximum block range: 5000", None)),
            CallError::Failed(_)
        ));
        assert!(matches!(
            call_error(rpc_error(-32000, "header not found", None)),
            CallError::Failed(_)
        ));
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

//! Solana through its JSON-RPC API, commitment `finalized` throughout: SPL token payments
//! (USDT, USDC, any configured mint) to the **associated token accounts** of watched wallet
//! (owner) addresses. Slots play the part of blocks; a finalized slot never reorgs.
//!
//! Per round: `getSlot` (finalized → the confirmed head; confirmed → the head, for lag),
//! `getBlock` (`transactionDetails: "none"`) for the hash of the cursor slot. Per scanned
//! range `from..=to`, on one URL: for every watched owner × configured mint, the owner's ATA
//! (derived locally, [`address`]) is listed with `getSignaturesForAddress` (`minContextSlot:
//! to`, so a node that has not finalized `to` refuses instead of answering short; pages of
//! `signatures_page` walked back with `before` until a slot below `from`; `until` = the newest
//! signature already seen below `from`, so an ATA's old history is not sent again), then every
//! successful signature in range is fetched once with `getTransaction` (`jsonParsed`,
//! `maxSupportedTransactionVersion: 0`) and its transfers extracted ([`transfer`]), then
//! `getBlock` once per slot holding one of our transfers (its hash and time) and once for
//! `to`.
//!
//! A transaction the node answers `null` for (listed as finalized, but this node or the
//! balancer's backend lacks it) is asked again a few times, then the range fails and is
//! retried: never skipped. A skipped slot has no block: its "hash" is the empty string (the
//! cursor loop checks no hash then). Transfers to a token account that is not the owner's
//! ATA are not seen (a documented limit: the address the checkout shows is the owner's, and
//! wallets pay its ATA).
//!
//! Must never: read above the finalized slot, count a failed transaction or another mint,
//! panic on a malformed answer, or put a URL (providers keep API keys in it) in an error.
pub mod address;
mod jsonrpc;
mod transfer;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use self::{
    address::{Pubkey, associated_token_address},
    jsonrpc::{Account, BlockHeader, Client, RpcError, SignatureInfo, WithContext, code},
    transfer::{Target, Tx},
};
use super::{
    ChainError, Heads, ScanBatch, ScanError, Scanner,
    rpc::{CallError, Endpoints},
};
use crate::domain::{network::Network, transfer::IncomingTransfer};

pub use address::{AddressError, parse_owner};
pub use transfer::INNER_BASE;

/// Requests in flight at once on one URL within a range.
const CONCURRENCY: usize = 4;
/// Answers of `null` for a listed transaction (or a lagging block) tolerated on one URL
/// within a range before it fails there.
const ATTEMPTS: usize = 3;
/// `getSignaturesForAddress`'s largest page (agave refuses more).
pub const MAX_SIGNATURES_PAGE: usize = 1000;

/// One token watched on Solana.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolanaToken {
    /// The token this mint is (USDT, USDC, …): what a transfer of it pays.
    pub token: crate::domain::network::Token,
    /// Mint address, base58.
    pub mint: String,
    pub decimals: u32,
    /// The token program the mint lives under ([`address::TOKEN_PROGRAM`] for USDT and USDC,
    /// [`address::TOKEN_2022_PROGRAM`] for Token-2022 mints): it is a seed of the ATA.
    pub token_program: String,
}

impl SolanaToken {
    /// A mint of the classic SPL Token program.
    pub fn spl(token: crate::domain::network::Token, mint: &str, decimals: u32) -> Self {
        Self {
            token,
            mint: mint.to_string(),
            decimals,
            token_program: address::TOKEN_PROGRAM.to_string(),
        }
    }
}

/// Everything the scanner needs, as plain values (built from the network configuration).
#[derive(Debug, Clone)]
pub struct SolanaSettings {
    /// The network name transfers are recorded under.
    pub network: Network,
    pub rpc_urls: Vec<url::Url>,
    pub tokens: Vec<SolanaToken>,
    pub request_timeout: Duration,
    /// `getSignaturesForAddress` page size, 1..=[`MAX_SIGNATURES_PAGE`].
    pub signatures_page: usize,
}

impl SolanaSettings {
    /// From a watched `kind = "solana"` network: its token contracts are the mints (classic SPL
    /// Token program), pages of [`MAX_SIGNATURES_PAGE`] signatures.
    pub fn from_chain(settings: &crate::config::ChainSettings) -> Self {
        Self {
            network: settings.network,
            rpc_urls: settings.rpc_urls.clone(),
            tokens: settings
                .tokens
                .iter()
                .map(|t| SolanaToken::spl(t.token, &t.contract, t.decimals))
                .collect(),
            request_timeout: settings.request_timeout,
            signatures_page: MAX_SIGNATURES_PAGE,
        }
    }
}

struct Token {
    mint: Pubkey,
    program: Pubkey,
    spec: SolanaToken,
}

pub struct SolanaScanner {
    network: Network,
    tokens: Vec<Token>,
    page: usize,
    endpoints: Endpoints<Client>,
    /// Derived ATAs per owner (owner → one per token, `None` for a bad owner address).
    atas: Mutex<HashMap<String, Option<Vec<String>>>>,
    /// Per ATA, the newest (slot, signature) seen: `until` for later scans above it.
    anchors: Mutex<HashMap<String, (u64, String)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SolanaScanner {
    pub fn new(settings: &SolanaSettings) -> Result<Self, ChainError> {
        let net = settings.network;
        let mut tokens = Vec::new();
        for t in &settings.tokens {
            let mint = Pubkey::parse(&t.mint)
                .map_err(|e| ChainError::Contract(format!("networks.{net} token mint: {e}")))?;
            let program = Pubkey::parse(&t.token_program).map_err(|e| {
                ChainError::Contract(format!("networks.{net} token program of {}: {e}", t.mint))
            })?;
            tokens.push(Token {
                mint,
                program,
                spec: t.clone(),
            });
        }
        let http = crate::net::rpc_client(settings.request_timeout).map_err(|source| {
            ChainError::HttpClient {
                network: net,
                source,
            }
        })?;
        let endpoints = Endpoints::new(
            settings
                .rpc_urls
                .iter()
                .map(|u| {
                    (
                        Client {
                            http: http.clone(),
                            url: u.clone(),
                        },
                        u,
                    )
                })
                .collect(),
        );
        Ok(Self {
            network: net,
            tokens,
            page: settings.signatures_page.clamp(1, MAX_SIGNATURES_PAGE),
            endpoints,
            atas: Mutex::new(HashMap::new()),
            anchors: Mutex::new(HashMap::new()),
        })
    }

    /// Checks every configured mint on every URL (`getAccountInfo`, `jsonParsed`): it exists,
    /// it is a mint of the configured token program, and its decimals are the configured ones.
    pub async fn check_mints(&self) -> Result<(), ScanError> {
        let net = self.network;
        self.endpoints
            .call_each("mint check (getAccountInfo)", |c| async move {
                for t in &self.tokens {
                    let spec = &t.spec;
                    let mint = spec.mint.as_str();
                    let info: WithContext<Account> = c
                        .call(
                            "getAccountInfo",
                            json!([mint, {"encoding": "jsonParsed", "commitment": "finalized"}]),
                        )
                        .await
                        .map_err(CallError::from)?;
                    let Some(acc) = info.value else {
                        return Err(CallError::Fatal(format!(
                            "networks.{net}: the mint {mint} does not exist on this cluster: fix the mint, or the RPC URL serves another cluster (devnet/testnet)"
                        )));
                    };
                    if acc.owner != spec.token_program {
                        return Err(CallError::Fatal(format!(
                            "networks.{net}: the mint {mint} belongs to program {}, not the configured token program {}: fix the token's program",
                            acc.owner, spec.token_program
                        )));
                    }
                    let parsed = &acc.data["parsed"];
                    if parsed["type"].as_str() != Some("mint") {
                        return Err(CallError::Fatal(format!(
                            "networks.{net}: {mint} is not a token mint (it is a `{}` account): fix the mint",
                            parsed["type"].as_str().unwrap_or("?")
                        )));
                    }
                    let got = parsed["info"]["decimals"].as_u64();
                    if got != Some(u64::from(spec.decimals)) {
                        let got = got.map_or_else(|| "none".into(), |d| d.to_string());
                        return Err(CallError::Fatal(format!(
                            "networks.{net}: the token {mint} is configured with {} decimals but the mint has {got}: set its decimals = {got}",
                            spec.decimals
                        )));
                    }
                }
                Ok(())
            })
            .await
    }

    /// The ATAs of `owner` (one per token), `None` when it is not a Solana address.
    fn atas_of(&self, owner: &str) -> Option<Vec<String>> {
        if let Some(known) = lock(&self.atas).get(owner) {
            return known.clone();
        }
        let derived = match Pubkey::parse(owner) {
            Ok(key) => self
                .tokens
                .iter()
                .map(|t| associated_token_address(&key, &t.mint, &t.program).map(|a| a.to_base58()))
                .collect::<Option<Vec<_>>>(),
            Err(e) => {
                tracing::warn!(network = %self.network, owner, error = %e, "watched address is not a Solana address; it is not scanned");
                None
            }
        };
        lock(&self.atas).insert(owner.to_string(), derived.clone());
        derived
    }

    /// Token account → what it is, for every watched owner and token.
    fn targets(&self, watched: &HashSet<String>) -> HashMap<String, Target> {
        let mut out = HashMap::new();
        for owner in watched {
            let Some(atas) = self.atas_of(owner) else {
                continue;
            };
            for (ata, t) in atas.into_iter().zip(&self.tokens) {
                out.insert(
                    ata,
                    Target {
                        owner: owner.clone(),
                        mint: t.spec.mint.clone(),
                        program: t.spec.token_program.clone(),
                        decimals: t.spec.decimals,
                    },
                );
            }
        }
        out
    }

    /// Successful signatures of `account` in slots `from..=to` (see the module comment).
    async fn signatures(
        &self,
        c: &Client,
        account: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<SignatureInfo>, CallError> {
        let until = lock(&self.anchors)
            .get(account)
            .filter(|(slot, _)| *slot < from)
            .map(|(_, sig)| sig.clone());
        let mut before: Option<String> = None;
        let mut out = Vec::new();
        let mut newest: Option<(u64, String)> = None;
        loop {
            let mut config =
                json!({"commitment": "finalized", "limit": self.page, "minContextSlot": to});
            if let Some(b) = &before {
                config["before"] = json!(b);
            }
            if let Some(u) = &until {
                config["until"] = json!(u);
            }
            let page: Vec<SignatureInfo> = c
                .call("getSignaturesForAddress", json!([account, config]))
                .await?;
            let full = page.len() >= self.page;
            let mut below = false;
            for s in &page {
                if s.slot > to {
                    continue;
                }
                if newest.is_none() {
                    newest = Some((s.slot, s.signature.clone()));
                }
                if s.slot < from {
                    below = true;
                    break;
                }
                if s.err.is_null() {
                    out.push(s.clone());
                }
            }
            match page.last() {
                Some(last) if full && !below => before = Some(last.signature.clone()),
                _ => break,
            }
        }
        if let Some((slot, sig)) = newest {
            let mut anchors = lock(&self.anchors);
            let keep = anchors.get(account).is_some_and(|(s, _)| *s > slot);
            if !keep {
                anchors.insert(account.to_string(), (slot, sig));
            }
        }
        Ok(out)
    }

    /// `getTransaction` of a listed signature; `null` is asked again, then fails the range.
    async fn transaction(&self, c: &Client, signature: &str, slot: u64) -> Result<Tx, CallError> {
        for _ in 0..ATTEMPTS {
            let tx: Option<Tx> = c
                .call(
                    "getTransaction",
                    json!([signature, {"encoding": "jsonParsed", "commitment": "finalized", "maxSupportedTransactionVersion": 0}]),
                )
                .await?;
            if let Some(tx) = tx {
                if tx.transaction.signatures.first().map(String::as_str) != Some(signature) {
                    return Err(CallError::Failed(format!(
                        "getTransaction {signature}: the node answered another transaction ({:?})",
                        tx.transaction.signatures.first()
                    )));
                }
                if tx.slot != slot {
                    return Err(CallError::Failed(format!(
                        "getTransaction {signature}: the node puts it in slot {}, getSignaturesForAddress in slot {slot}",
                        tx.slot
                    )));
                }
                return Ok(tx);
            }
        }
        Err(CallError::Failed(format!(
            "getTransaction {signature} (slot {slot}) answered null {ATTEMPTS} times: this node does not have the finalized transaction yet; retrying (it is never skipped)"
        )))
    }

    /// The block at `slot`: `Some((hash, time))`, `None` for a skipped slot.
    async fn block(
        &self,
        c: &Client,
        slot: u64,
    ) -> Result<Option<(String, Option<i64>)>, CallError> {
        let params = json!([slot, {"commitment": "finalized", "encoding": "json", "transactionDetails": "none", "rewards": false, "maxSupportedTransactionVersion": 0}]);
        for _ in 0..ATTEMPTS {
            match c
                .call::<Option<BlockHeader>>("getBlock", params.clone())
                .await
            {
                Ok(Some(b)) => return Ok(Some((b.blockhash, b.block_time))),
                Ok(None) => continue,
                Err(RpcError::Rpc {
                    code: code::SLOT_SKIPPED | code::LONG_TERM_STORAGE_SLOT_SKIPPED,
                    ..
                }) => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CallError::Failed(format!(
            "getBlock {slot} answered null {ATTEMPTS} times: the node does not have the finalized block"
        )))
    }

    /// One range on one endpoint (see the module comment).
    async fn scan_on(
        &self,
        c: &Client,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<ScanBatch, CallError> {
        let targets = self.targets(watched);
        let mut accounts: Vec<String> = targets.keys().cloned().collect();
        accounts.sort();
        let lists: Vec<Vec<SignatureInfo>> = futures::stream::iter(accounts)
            .map(|a| async move { self.signatures(c, &a, from, to).await })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        // One fetch per transaction, even when it pays several of our accounts.
        let mut wanted: BTreeSet<(u64, String)> = BTreeSet::new();
        let mut listed_time: HashMap<String, i64> = HashMap::new();
        for s in lists.into_iter().flatten() {
            if let Some(t) = s.block_time {
                listed_time.insert(s.signature.clone(), t);
            }
            wanted.insert((s.slot, s.signature));
        }
        let txs: Vec<(String, Tx)> =
            futures::stream::iter(wanted)
                .map(|(slot, sig)| async move {
                    self.transaction(c, &sig, slot).await.map(|tx| (sig, tx))
                })
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
        let mut found = Vec::new();
        for (sig, tx) in &txs {
            for f in tx.transfers(&targets) {
                found.push((
                    tx.slot,
                    sig.clone(),
                    tx.block_time.or(listed_time.get(sig).copied()),
                    f,
                ));
            }
        }
        let mut blocks: HashMap<u64, (String, Option<i64>)> = HashMap::new();
        for slot in found.iter().map(|f| f.0).collect::<BTreeSet<_>>() {
            let b = self.block(c, slot).await?.ok_or_else(|| {
                CallError::Failed(format!(
                    "getBlock {slot}: the node says the slot was skipped, yet it lists a transaction in it"
                ))
            })?;
            blocks.insert(slot, b);
        }
        let mut transfers = Vec::new();
        for (slot, sig, time, f) in found {
            let (hash, block_time) = blocks.get(&slot).cloned().unwrap_or_default();
            let block_time = time.or(block_time).ok_or_else(|| {
                CallError::Failed(format!(
                    "transaction {sig} in slot {slot}: the node gives no block time"
                ))
            })?;
            let token = self
                .tokens
                .iter()
                .find(|t| t.spec.mint == f.mint)
                .map(|t| t.spec.token)
                .ok_or_else(|| {
                    CallError::Failed(format!(
                        "transaction {sig}: a transfer of mint {} that is not configured",
                        f.mint
                    ))
                })?;
            transfers.push(IncomingTransfer {
                network: self.network,
                token,
                tx_hash: sig,
                log_index: f.log_index,
                block_number: i64::try_from(slot).unwrap_or(i64::MAX),
                block_hash: hash,
                token_contract: f.mint,
                from_address: f.from,
                to_address: f.owner,
                amount: f.amount,
                block_time,
            });
        }
        transfers.sort_by(|a, b| {
            (a.block_number, &a.tx_hash, a.log_index).cmp(&(
                b.block_number,
                &b.tx_hash,
                b.log_index,
            ))
        });
        let to_hash = match blocks.get(&to) {
            Some((h, _)) => h.clone(),
            None => self.block(c, to).await?.map(|(h, _)| h).unwrap_or_default(),
        };
        Ok(ScanBatch { transfers, to_hash })
    }
}

impl Scanner for SolanaScanner {
    fn active_endpoint(&self) -> Option<String> {
        self.endpoints.active_label()
    }

    async fn prepare(&self) -> Result<(), ScanError> {
        self.check_mints().await
    }

    async fn heads(&self) -> Result<Heads, ScanError> {
        self.endpoints
            .call("getSlot", |c| async move {
                let finalized: u64 = c
                    .call("getSlot", json!([{"commitment": "finalized"}]))
                    .await?;
                // The confirmed slot only shows the lag; the finalized one is enough.
                let head = match c
                    .call::<u64>("getSlot", json!([{"commitment": "confirmed"}]))
                    .await
                {
                    Ok(h) => h.max(finalized),
                    Err(e) => match CallError::from(e) {
                        limited @ CallError::RateLimited { .. } => return Err(limited),
                        _ => finalized,
                    },
                };
                Ok(Heads { head, finalized })
            })
            .await
    }

    async fn block_hash(&self, number: u64) -> Result<String, ScanError> {
        self.endpoints
            .call("getBlock", |c| async move {
                Ok(self
                    .block(&c, number)
                    .await?
                    .map(|(h, _)| h)
                    .unwrap_or_default())
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
}

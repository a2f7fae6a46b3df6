//! A Solana JSON-RPC double (axum) answering the methods the scanner uses with bodies shaped
//! like agave's (rpc/src/rpc.rs, rpc-client-api): `getSlot`, `getBlock`,
//! `getSignaturesForAddress`, `getTransaction` (`jsonParsed`), `getAccountInfo`
//! (`jsonParsed`), each under commitment `finalized` as the scanner asks.
//!
//! And failing like the real ones: HTTP 429 with rpcpool's JSON-RPC body (api.mainnet-beta),
//! `-32007` for a skipped slot, `-32004` for a block above the node's root, `-32016` with
//! `data.contextSlot` when `minContextSlot` is above it, `null` for a transaction the node
//! does not have finalized (or not at all), `-32602 Invalid limit` for a page over 1000,
//! `-32015` for a version-0 transaction asked without `maxSupportedTransactionVersion`.
//!
//! Several nodes can share one chain, each `behind` the cluster by some slots and each with
//! its own URL ([`SolanaDouble::add_node`]). Every request is logged (node, method, params).
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
/// A router program whose inner instructions carry a transfer (Jupiter v6).
pub const ROUTER: &str = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4";
/// api.mainnet-beta.solana.com's (rpcpool's) rate-limit answer, sent with HTTP 429.
pub const RATE_LIMITED: &str = "{\"jsonrpc\":\"2.0\",\"error\":{\"code\": 429, \"message\":\"Too many requests for a specific RPC call, contact your app developer or support@rpcpool.com.\"}, \"id\": 1 }";

#[derive(Debug, Clone)]
pub struct Request {
    pub node: usize,
    pub method: String,
    pub params: Value,
}

struct Stored {
    signature: String,
    slot: u64,
    err: Value,
    accounts: Vec<String>,
    body: Value,
}

#[derive(Default)]
pub struct Chain {
    /// The cluster's finalized and confirmed slots (a node sees them minus its `behind`).
    pub finalized: u64,
    pub confirmed: u64,
    pub skipped: BTreeSet<u64>,
    /// Unix time of slot 0: the starting finalized slot is "now"; slots are 400 ms apart.
    pub base_time: i64,
    txs: Vec<Stored>,
    /// Mint accounts as `getAccountInfo` `jsonParsed` prints their `value`.
    pub accounts: HashMap<String, Value>,
    /// Answer this many next requests with HTTP 429 (and `Retry-After` when set).
    pub rate_limit_next: usize,
    pub retry_after: Option<u64>,
    /// Answer `getTransaction` of these signatures with `null` this many more times.
    pub null_tx: HashMap<String, usize>,
    /// Per node: slots behind the cluster.
    pub behind: Vec<u64>,
    pub requests: Vec<Request>,
}

#[derive(Clone)]
pub struct SolanaDouble {
    pub chain: Arc<Mutex<Chain>>,
    pub url: String,
}

/// A deterministic base58 id of `n` bytes from `label` (signatures 64, hashes 32).
pub fn fake_id(label: &str, n: usize) -> String {
    let mut bytes = Vec::new();
    let mut i = 0u8;
    while bytes.len() < n {
        bytes.extend(Sha256::digest(format!("{label}/{i}").as_bytes()));
        i += 1;
    }
    bs58::encode(&bytes[..n]).into_string()
}

pub fn blockhash(slot: u64) -> String {
    fake_id(&format!("block {slot}"), 32)
}

impl Chain {
    pub fn block_time(&self, slot: u64) -> i64 {
        self.base_time + i64::try_from(slot * 2 / 5).unwrap()
    }
}

impl SolanaDouble {
    /// A chain finalized at `finalized` (confirmed 32 slots above), one node, a mint account
    /// for each of `mints` (address, decimals).
    pub async fn start(finalized: u64, mints: &[(&str, u8)]) -> SolanaDouble {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut chain = Chain {
            base_time: i64::try_from(now - finalized * 2 / 5).unwrap(),
            finalized,
            confirmed: finalized + 32,
            behind: vec![0],
            ..Default::default()
        };
        for (mint, decimals) in mints {
            chain
                .accounts
                .insert((*mint).to_string(), mint_account(*decimals, TOKEN_PROGRAM));
        }
        let chain = Arc::new(Mutex::new(chain));
        let url = serve(chain.clone(), 0).await;
        SolanaDouble { chain, url }
    }

    /// Another node of the same chain, `behind` slots behind the cluster; its URL.
    pub async fn add_node(&self, behind: u64) -> String {
        let node = {
            let mut c = self.chain.lock().unwrap();
            c.behind.push(behind);
            c.behind.len() - 1
        };
        serve(self.chain.clone(), node).await
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Chain) -> T) -> T {
        f(&mut self.chain.lock().unwrap())
    }

    /// Adds `tx` (from [`TxBuilder::build`]) in `slot`.
    pub fn push_tx(&self, slot: u64, tx: (String, Value, Vec<String>)) -> String {
        let (signature, mut body, accounts) = tx;
        let err = body["meta"]["err"].clone();
        self.with(|c| {
            body["slot"] = json!(slot);
            body["blockTime"] = json!(c.block_time(slot));
            c.txs.push(Stored {
                signature: signature.clone(),
                slot,
                err,
                accounts,
                body,
            });
            c.txs.sort_by_key(|t| t.slot);
        });
        signature
    }

    /// Finalizes up to `slot`.
    pub fn finalize(&self, slot: u64) {
        self.with(|c| {
            c.finalized = c.finalized.max(slot);
            c.confirmed = c.confirmed.max(slot + 32);
        });
    }

    pub fn block_time(&self, slot: u64) -> i64 {
        self.with(|c| c.block_time(slot))
    }

    pub fn requests(&self) -> Vec<Request> {
        self.with(|c| c.requests.clone())
    }

    pub fn count(&self, method: &str) -> usize {
        self.with(|c| c.requests.iter().filter(|r| r.method == method).count())
    }
}

/// A mint account's `value` as `getAccountInfo` `jsonParsed` prints it.
pub fn mint_account(decimals: u8, program: &str) -> Value {
    json!({
        "data": {"parsed": {"info": {"decimals": decimals, "freezeAuthority": null, "isInitialized": true,
                 "mintAuthority": "Q6XprfkF8RQQKoQVG33xT88H7wi8Uk1B1CC7YAs69Gi", "supply": "2388986502463120"},
                 "type": "mint"}, "program": "spl-token", "space": 82},
        "executable": false, "lamports": 1_461_600, "owner": program,
        "rentEpoch": 18_446_744_073_709_551_615u64, "space": 82
    })
}

async fn serve(chain: Arc<Mutex<Chain>>, node: usize) -> String {
    let app = Router::new()
        .route("/", post(handle))
        .with_state((chain, node));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

fn ok(id: &Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "result": result, "id": id})).into_response()
}

fn err(id: &Value, code: i64, message: String, data: Option<Value>) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(d) = data {
        e["data"] = d;
    }
    Json(json!({"jsonrpc": "2.0", "error": e, "id": id})).into_response()
}

async fn handle(
    State((chain, node)): State<(Arc<Mutex<Chain>>, usize)>,
    Json(req): Json<Value>,
) -> Response {
    let mut c = chain.lock().unwrap();
    let method = req["method"].as_str().unwrap_or_default().to_string();
    let params = req["params"].clone();
    let id = req["id"].clone();
    c.requests.push(Request {
        node,
        method: method.clone(),
        params: params.clone(),
    });
    if c.rate_limit_next > 0 {
        c.rate_limit_next -= 1;
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CONTENT_TYPE, "application/json")],
            RATE_LIMITED,
        )
            .into_response();
        if let Some(s) = c.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, s.to_string().parse().unwrap());
        }
        return resp;
    }
    let behind = c.behind.get(node).copied().unwrap_or_default();
    let root = c.finalized.saturating_sub(behind);
    let confirmed = c.confirmed.saturating_sub(behind);
    let cfg = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    match method.as_str() {
        "getSlot" => {
            let slot = match cfg(0)["commitment"].as_str() {
                Some("confirmed") | Some("processed") => confirmed,
                _ => root,
            };
            ok(&id, json!(slot))
        }
        "getBlock" => {
            let Some(slot) = cfg(0).as_u64() else {
                return err(
                    &id,
                    -32602,
                    "Invalid params: invalid type: expected u64.".into(),
                    None,
                );
            };
            if slot > root {
                return err(
                    &id,
                    -32004,
                    format!("Block not available for slot {slot}"),
                    None,
                );
            }
            if c.skipped.contains(&slot) {
                return err(
                    &id,
                    -32007,
                    format!(
                        "Slot {slot} was skipped, or missing due to ledger jump to recent snapshot"
                    ),
                    None,
                );
            }
            let parent = (0..slot)
                .rev()
                .find(|s| !c.skipped.contains(s))
                .unwrap_or(0);
            ok(
                &id,
                json!({"blockHeight": slot - c.skipped.range(..slot).count() as u64, "blockTime": c.block_time(slot),
                       "blockhash": blockhash(slot), "parentSlot": parent, "previousBlockhash": blockhash(parent)}),
            )
        }
        "getSignaturesForAddress" => {
            let address = cfg(0).as_str().unwrap_or_default().to_string();
            let conf = cfg(1);
            let limit = conf["limit"].as_u64().unwrap_or(1000);
            if limit == 0 || limit > 1000 {
                return err(&id, -32602, "Invalid limit; max 1000".into(), None);
            }
            if let Some(min) = conf["minContextSlot"].as_u64()
                && min > root
            {
                return err(
                    &id,
                    -32016,
                    "Minimum context slot has not been reached".into(),
                    Some(json!({"contextSlot": root})),
                );
            }
            let before = conf["before"].as_str();
            let until = conf["until"].as_str();
            // Newest first: by slot, and within a slot the later transaction first.
            let base = c.base_time;
            let mut list = c
                .txs
                .iter()
                .filter(|t| t.slot <= root && t.accounts.contains(&address))
                .rev()
                .skip_while(|t| before.is_some_and(|b| t.signature != b))
                .skip(usize::from(before.is_some()))
                .take_while(|t| until != Some(t.signature.as_str()))
                .map(|t| {
                    json!({"blockTime": base + i64::try_from(t.slot * 2 / 5).unwrap(), "confirmationStatus": "finalized",
                           "err": t.err, "memo": null, "signature": t.signature, "slot": t.slot})
                })
                .collect::<Vec<_>>();
            list.truncate(usize::try_from(limit).unwrap());
            ok(&id, Value::Array(list))
        }
        "getTransaction" => {
            let sig = cfg(0).as_str().unwrap_or_default().to_string();
            let conf = cfg(1);
            if let Some(n) = c.null_tx.get_mut(&sig)
                && *n > 0
            {
                *n -= 1;
                return ok(&id, Value::Null);
            }
            let Some(t) = c.txs.iter().find(|t| t.signature == sig && t.slot <= root) else {
                return ok(&id, Value::Null);
            };
            if t.body["version"] == json!(0) && conf["maxSupportedTransactionVersion"].is_null() {
                return err(&id, -32015, "Transaction version (0) is not supported by the requesting client. Please try the request again with the following configuration parameter: \"maxSupportedTransactionVersion\": 0".into(), None);
            }
            if conf["encoding"] != "jsonParsed" {
                return err(
                    &id,
                    -32602,
                    "the double only serves encoding jsonParsed".into(),
                    None,
                );
            }
            ok(&id, t.body.clone())
        }
        "getAccountInfo" => {
            let address = cfg(0).as_str().unwrap_or_default().to_string();
            let value = c.accounts.get(&address).cloned().unwrap_or(Value::Null);
            ok(
                &id,
                json!({"context": {"apiVersion": "2.2.14", "slot": root}, "value": value}),
            )
        }
        _ => err(&id, -32601, "Method not found".into(), None),
    }
}

/// One SPL transfer inside a transaction.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub checked: bool,
    pub mint: String,
    pub decimals: u8,
    pub from_owner: String,
    pub from_account: String,
    pub to_owner: String,
    pub to_account: String,
    pub units: u64,
}

/// A `getTransaction` (`jsonParsed`, version 0) answer holding `transfers`.
#[derive(Debug, Clone, Default)]
pub struct TxBuilder {
    pub label: String,
    pub transfers: Vec<Transfer>,
    /// Carry the transfers as inner instructions of a router instruction.
    pub inner: bool,
    pub failed: bool,
}

impl TxBuilder {
    /// (signature, body, every account key).
    pub fn build(&self) -> (String, Value, Vec<String>) {
        let signature = fake_id(&format!("tx {}", self.label), 64);
        let payer = self.transfers[0].from_owner.clone();
        let mut keys: Vec<String> = vec![payer.clone()];
        let add = |k: &str, keys: &mut Vec<String>| {
            if !keys.iter().any(|x| x == k) {
                keys.push(k.to_string());
            }
        };
        for t in &self.transfers {
            add(&t.from_account, &mut keys);
            add(&t.to_account, &mut keys);
        }
        let writable = keys.len();
        for t in &self.transfers {
            add(&t.mint, &mut keys);
            add(&t.from_owner, &mut keys);
            add(&t.to_owner, &mut keys);
        }
        add(TOKEN_PROGRAM, &mut keys);
        if self.inner {
            add(ROUTER, &mut keys);
        }
        let index = |k: &str| keys.iter().position(|x| x == k).unwrap();
        let ixs: Vec<Value> = self
            .transfers
            .iter()
            .map(|t| {
                let amount = t.units.to_string();
                let ui = format!("{}", t.units as f64 / 10f64.powi(i32::from(t.decimals)));
                let parsed = if t.checked {
                    json!({"info": {"authority": t.from_owner, "destination": t.to_account, "mint": t.mint,
                           "source": t.from_account, "tokenAmount": {"amount": amount, "decimals": t.decimals,
                           "uiAmount": t.units as f64 / 10f64.powi(i32::from(t.decimals)), "uiAmountString": ui}},
                           "type": "transferChecked"})
                } else {
                    json!({"info": {"amount": amount, "authority": t.from_owner, "destination": t.to_account,
                           "source": t.from_account}, "type": "transfer"})
                };
                json!({"parsed": parsed, "program": "spl-token", "programId": TOKEN_PROGRAM,
                       "stackHeight": if self.inner { json!(2) } else { Value::Null }})
            })
            .collect();
        let compute = json!({"accounts": [], "data": "3DTZbgwsozUF", "programId": "ComputeBudget111111111111111111111111111111", "stackHeight": null});
        let (instructions, inner) = if self.inner {
            let route = json!({"accounts": keys.iter().take(writable).collect::<Vec<_>>(),
                               "data": "PrpFmsY4d26dKbdKMAXs4nrvg9y4qb2mQkjw", "programId": ROUTER, "stackHeight": null});
            (
                json!([compute, route]),
                json!([{"index": 1, "instructions": ixs}]),
            )
        } else {
            let mut all = vec![compute];
            all.extend(ixs);
            (Value::Array(all), json!([]))
        };
        // Token balances before and after, per token account (sources start rich).
        let mut pre: HashMap<String, (String, String, i128)> = HashMap::new();
        for t in &self.transfers {
            pre.entry(t.from_account.clone()).or_insert((
                t.mint.clone(),
                t.from_owner.clone(),
                1_000_000_000_000,
            ));
            pre.entry(t.to_account.clone())
                .or_insert((t.mint.clone(), t.to_owner.clone(), 0));
        }
        let mut post = pre.clone();
        if !self.failed {
            for t in &self.transfers {
                post.get_mut(&t.from_account).unwrap().2 -= i128::from(t.units);
                post.get_mut(&t.to_account).unwrap().2 += i128::from(t.units);
            }
        }
        let decimals: HashMap<&str, u8> = self
            .transfers
            .iter()
            .map(|t| (t.mint.as_str(), t.decimals))
            .collect();
        let balances = |m: &HashMap<String, (String, String, i128)>| {
            let mut v: Vec<Value> = m
                .iter()
                .map(|(account, (mint, owner, amount))| {
                    let d = decimals[mint.as_str()];
                    json!({"accountIndex": index(account), "mint": mint, "owner": owner, "programId": TOKEN_PROGRAM,
                           "uiTokenAmount": {"amount": amount.to_string(), "decimals": d,
                           "uiAmount": *amount as f64 / 10f64.powi(i32::from(d)),
                           "uiAmountString": format!("{}", *amount as f64 / 10f64.powi(i32::from(d)))}})
                })
                .collect();
            v.sort_by_key(|b| b["accountIndex"].as_u64());
            v
        };
        let err = if self.failed {
            json!({"InstructionError": [1, {"Custom": 1}]})
        } else {
            Value::Null
        };
        let status = if self.failed {
            json!({"Err": err})
        } else {
            json!({"Ok": null})
        };
        let account_keys: Vec<Value> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                json!({"pubkey": k, "signer": i == 0, "source": "transaction", "writable": i < writable})
            })
            .collect();
        let body = json!({
            "blockTime": 0, "slot": 0, "version": 0,
            "meta": {
                "computeUnitsConsumed": 12_345, "err": err, "fee": 5_000,
                "innerInstructions": inner, "loadedAddresses": {"readonly": [], "writable": []},
                "logMessages": ["Program ComputeBudget111111111111111111111111111111 invoke [1]",
                                "Program ComputeBudget111111111111111111111111111111 success"],
                "postBalances": vec![2_039_280u64; keys.len()], "preBalances": vec![2_039_280u64; keys.len()],
                "postTokenBalances": balances(&post), "preTokenBalances": balances(&pre),
                "rewards": [], "status": status
            },
            "transaction": {
                "message": {"accountKeys": account_keys, "addressTableLookups": [],
                            "instructions": instructions, "recentBlockhash": blockhash(1)},
                "signatures": [signature]
            }
        });
        (signature, body, keys)
    }
}

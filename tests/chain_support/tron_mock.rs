//! A TRON FullNode HTTP API double (axum) answering the endpoints the watcher uses with bodies
//! shaped exactly like java-tron's: `getnowblock`, `getblock`, `gettransactioninfobyblocknum`
//! under `/wallet/` and `/walletsolidity/`, hex without `0x`, log addresses without the `41`
//! prefix, `[]` for an empty block and `{}` for a height the node does not have.
//!
//! Knobs: the solidified and latest heads, a number of requests to answer with HTTP 429, a
//! block to pretend not to have yet, and a log of every request (path, body, API key, time).
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

pub const TRANSFER_TOPIC: &str = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// The USDT contract `TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t` as 20-byte hex (no `41`).
pub const USDT_HEX: &str = "a614f803b6fd780986a42c78ec9c7f77e6ded13c";

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub body: Value,
    pub api_key: Option<String>,
    pub at: Instant,
    pub status: u16,
}

#[derive(Default)]
pub struct Chain {
    /// Transactions (gettransactioninfobyblocknum items) of blocks that have any; every other
    /// block up to the head exists and is empty.
    pub blocks: BTreeMap<u64, Vec<Value>>,
    pub head: u64,
    pub solid: u64,
    /// Answer this many next requests with HTTP 429.
    pub rate_limit_next: usize,
    /// Pretend not to have this block yet (`{}`), although it is below the solidified head.
    pub missing: Option<u64>,
    pub requests: Vec<Request>,
}

#[derive(Clone, Default)]
pub struct TronMock {
    pub chain: Arc<Mutex<Chain>>,
    pub url: String,
}

pub fn block_id(n: u64) -> String {
    // Real block ids start with the block number (8 bytes), then 24 bytes of hash.
    format!("{n:016x}{:048x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

pub fn block_ms(n: u64) -> i64 {
    // Blocks are "now"; order matching needs block time ≥ order creation − 60 s.
    epusdt::service::now() * 1000 + i64::try_from(n % 1000).unwrap_or(0)
}

/// One TRC-20 transfer transaction info, shaped like java-tron's.
pub fn trc20_tx(
    txid: &str,
    block: u64,
    contract_hex: &str,
    from_hex: &str,
    to_hex: &str,
    units: u128,
    success: bool,
) -> Value {
    let log = json!({
        "address": contract_hex,
        "topics": [
            TRANSFER_TOPIC,
            format!("{:0>64}", from_hex),
            format!("{:0>64}", to_hex),
        ],
        "data": format!("{units:064x}"),
    });
    let mut tx = json!({
        "id": txid,
        "fee": 345_000,
        "blockNumber": block,
        "blockTimeStamp": block_ms(block),
        "contractResult": [if success { "0000000000000000000000000000000000000000000000000000000000000001" } else { "" }],
        "contract_address": format!("41{contract_hex}"),
        "receipt": {
            "energy_fee": 345_000,
            "energy_usage_total": 64_285,
            "net_usage": 345,
            "result": if success { "SUCCESS" } else { "REVERT" },
        },
        "log": [log],
    });
    if !success {
        tx["result"] = json!("FAILED");
        tx["resMessage"] = json!("5452414e534645525f4641494c4544");
    }
    tx
}

fn now_block(n: u64) -> Value {
    json!({
        "blockID": block_id(n),
        "block_header": {
            "raw_data": {
                "number": n,
                "txTrieRoot": "0000000000000000000000000000000000000000000000000000000000000000",
                "witness_address": "41b4a428ab7092c2f1395f376ce297033b3bb446c1",
                "parentHash": block_id(n.saturating_sub(1)),
                "version": 31,
                "timestamp": block_ms(n),
            },
            "witness_signature": "00",
        },
    })
}

impl TronMock {
    pub async fn start() -> TronMock {
        let mut mock = TronMock::default();
        let router = Router::new()
            .route("/{api}/{method}", post(handle))
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        mock.url = format!("http://{addr}");
        mock.with(|c| {
            c.head = 100;
            c.solid = 100;
        });
        mock
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Chain) -> T) -> T {
        f(&mut self.chain.lock().expect("lock"))
    }

    /// Appends a block with `txs` and advances both heads to it (`solid_lag` blocks behind).
    pub fn push_block(&self, txs: Vec<Value>, solid_lag: u64) -> u64 {
        self.with(|c| {
            let n = c.head + 1;
            let txs = txs
                .into_iter()
                .map(|mut t| {
                    t["blockNumber"] = json!(n);
                    t["blockTimeStamp"] = json!(block_ms(n));
                    t
                })
                .collect();
            c.blocks.insert(n, txs);
            c.head = n;
            c.solid = n.saturating_sub(solid_lag);
            n
        })
    }

    pub fn requests(&self) -> Vec<Request> {
        self.with(|c| c.requests.clone())
    }
}

async fn handle(
    State(mock): State<TronMock>,
    Path((api, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(v)| v).unwrap_or(Value::Null);
    let api_key = headers
        .get("TRON-PRO-API-KEY")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let mut chain = mock.chain.lock().expect("lock");
    let path = format!("/{api}/{method}");
    let limited = chain.rate_limit_next > 0;
    chain.requests.push(Request {
        path: path.clone(),
        body: body.clone(),
        api_key,
        at: Instant::now(),
        status: if limited { 429 } else { 200 },
    });
    if limited {
        chain.rate_limit_next -= 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "{\"Error\":\"request rate exceeded the allowed_rps(15), and the query server is suspended for 1s\"}",
        )
            .into_response();
    }
    let solid = api == "walletsolidity";
    let top = if solid { chain.solid } else { chain.head };
    let reply = match method.as_str() {
        "getnowblock" => now_block(top),
        "getblock" | "getblockbynum" => {
            let n = body
                .get("id_or_num")
                .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64()))
                .or_else(|| body.get("num").and_then(Value::as_u64));
            match n {
                Some(n) if n <= top && chain.missing != Some(n) => now_block(n),
                _ => json!({}),
            }
        }
        "gettransactioninfobyblocknum" => match body.get("num").and_then(Value::as_u64) {
            Some(n) if n <= top && chain.missing != Some(n) => {
                Value::Array(chain.blocks.get(&n).cloned().unwrap_or_default())
            }
            _ => json!({}),
        },
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    Json(reply).into_response()
}

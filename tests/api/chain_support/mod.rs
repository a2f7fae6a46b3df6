//! Helpers for the chain watcher tests: a real anvil node with the test ERC-20 deployed, a TCP
//! proxy that can be switched off (RPC outage) or slowed down, a TRON FullNode HTTP API mock
//! answering with the real response shapes, and polling helpers over the gateway's database.
//!
//! Independent of the crate's chain code on purpose: transactions are encoded by hand here
//! (selector + 32-byte words), addresses converted with the crate's codecs only.
#![allow(dead_code)]

mod faults;
pub mod tron_mock;

#[allow(unused_imports)] // bench_failover uses none of them
pub use faults::{Proxy, RpcDouble, RpcFaults};

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use epusdt::store::entities::{chain_cursor, transfer};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    process::{Child, Command},
};

use crate::common::{self, TestApp};

/// The chain watchers' dependencies taken from a test app's state (as `App::run` builds them).
pub fn deps(app: &TestApp) -> epusdt::chain::Deps {
    app.state.chain_deps()
}

/// Anvil's first dev accounts (deterministic mnemonic), unlocked for `eth_sendTransaction`.
pub const ACCOUNTS: [&str; 4] = [
    "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
    "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
    "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
    "0x90f79bf6eb2c4f870365e785982e1f101e93b906",
];

fn require_services() -> bool {
    std::env::var("EPUSDT_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// `EPUSDT_ANVIL`, else the binary `tools/test.sh` installs with npm.
pub fn anvil_path() -> PathBuf {
    if let Ok(p) = std::env::var("EPUSDT_ANVIL") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home)
        .join(".cache/epusdt-anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// The compiled test token (tests/fixtures/TestToken.sol).
fn token_bytecode() -> String {
    let raw = include_str!("../../fixtures/TestToken.json");
    let v: Value = serde_json::from_str(raw).expect("fixture json");
    v["bytecode"].as_str().expect("bytecode").to_string()
}

fn word_u128(v: u128) -> String {
    format!("{v:064x}")
}

fn word_addr(a: &str) -> String {
    format!("{:0>64}", a.trim_start_matches("0x").to_ascii_lowercase())
}

/// A local anvil node, killed on drop.
pub struct Anvil {
    child: Child,
    pub url: String,
    pub port: u16,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Anvil {
    /// Starts anvil on a free port, or `None` (skip) when it is not installed and services
    /// are not required.
    pub async fn start() -> Option<Anvil> {
        Self::start_with_chain_id(31337).await
    }

    /// Like [`Anvil::start`], on chain id `chain_id` (another chain for failover tests).
    pub async fn start_with_chain_id(chain_id: u64) -> Option<Anvil> {
        epusdt::net::install_crypto_provider();
        let path = anvil_path();
        if !path.exists() {
            let msg = format!(
                "anvil not found at {} (run tools/test.sh, or set EPUSDT_ANVIL)",
                path.display()
            );
            if require_services() {
                panic!("{msg} (EPUSDT_TEST_REQUIRE_SERVICES=1)");
            }
            eprintln!("SKIP: {msg}");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("anvil.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&path)
            .args(["--port", "0", "--host", "127.0.0.1", "--chain-id"])
            .arg(chain_id.to_string())
            // Historical states anvil spills to disk (gigabytes over a long backlog) go into
            // this node's own temporary directory, removed with it — by default they pile up
            // in ~/.foundry/anvil/tmp and outlive every run.
            .arg("--cache-path")
            .arg(dir.path().join("states"))
            .stdout(Stdio::from(out.try_clone().expect("dup")))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let port = common::eventually(20, "anvil to listen", || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).ok()?;
                let at = text.find("Listening on 127.0.0.1:")?;
                let rest = &text[at + "Listening on 127.0.0.1:".len()..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                digits.parse::<u16>().ok()
            }
        })
        .await;
        let anvil = Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("client"),
            _dir: dir,
        };
        let _ = anvil.block_number().await;
        Some(anvil)
    }

    pub async fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp: Value = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match resp.get("error") {
            Some(e) => Err(e.to_string()),
            None => Ok(resp["result"].clone()),
        }
    }

    pub async fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    pub async fn block_number(&self) -> u64 {
        let v = self.rpc("eth_blockNumber", json!([])).await;
        u64::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("num")
    }

    pub async fn mine(&self, blocks: u64) {
        self.rpc("anvil_mine", json!([format!("{blocks:#x}")]))
            .await;
    }

    /// Sends a transaction from an unlocked account (automine) and returns (tx hash, receipt).
    pub async fn send(&self, from: &str, to: Option<&str>, data: &str) -> (String, Value) {
        let mut tx = json!({"from": from, "data": data, "gas": "0x7a1200"});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx])).await;
        let hash = hash.as_str().expect("tx hash").to_string();
        let receipt = common::eventually(10, "receipt", || async {
            let r = self
                .try_rpc("eth_getTransactionReceipt", json!([hash]))
                .await
                .ok()?;
            (!r.is_null()).then_some(r)
        })
        .await;
        assert_eq!(receipt["status"], "0x1", "transaction reverted: {receipt}");
        (hash, receipt)
    }

    /// Deploys the test token with `decimals`, the whole supply to account 0.
    pub async fn deploy_token(&self, decimals: u8) -> String {
        let supply = 10u128.pow(u32::from(decimals)) * 1_000_000_000;
        let data = format!(
            "{}{}{}",
            token_bytecode(),
            word_u128(u128::from(decimals)),
            word_u128(supply)
        );
        let (_, receipt) = self.send(ACCOUNTS[0], None, &data).await;
        receipt["contractAddress"]
            .as_str()
            .expect("contract address")
            .to_ascii_lowercase()
    }

    /// ERC-20 `transfer(to, units)` from account 0; returns (tx hash, block number).
    pub async fn transfer(&self, token: &str, to: &str, units: u128) -> (String, u64) {
        let data = format!("0xa9059cbb{}{}", word_addr(to), word_u128(units));
        let (hash, receipt) = self.send(ACCOUNTS[0], Some(token), &data).await;
        let block = u64::from_str_radix(
            receipt["blockNumber"]
                .as_str()
                .expect("block")
                .trim_start_matches("0x"),
            16,
        )
        .expect("block number");
        (hash, block)
    }

    /// `multiTransfer(address[],uint256[])`: several Transfer logs in one transaction.
    pub async fn multi_transfer(&self, token: &str, to: &[(&str, u128)]) -> (String, u64) {
        // selector = keccak256("multiTransfer(address[],uint256[])")[..4]
        let selector = alloy::primitives::keccak256("multiTransfer(address[],uint256[])");
        let n = to.len() as u128;
        let mut data = format!("0x{}", alloy::primitives::hex::encode(&selector[..4]));
        // Two dynamic arrays: offsets 0x40 and 0x40 + 32 * (1 + n).
        data += &word_u128(0x40);
        data += &word_u128(0x40 + 32 * (1 + n));
        data += &word_u128(n);
        for (a, _) in to {
            data += &word_addr(a);
        }
        data += &word_u128(n);
        for (_, v) in to {
            data += &word_u128(*v);
        }
        let (hash, receipt) = self.send(ACCOUNTS[0], Some(token), &data).await;
        let block = u64::from_str_radix(
            receipt["blockNumber"]
                .as_str()
                .expect("block")
                .trim_start_matches("0x"),
            16,
        )
        .expect("block number");
        (hash, block)
    }
}

/// Network settings for a test chain (fast polling, 2 confirmations).
pub fn evm_network(
    rpc_urls: Vec<String>,
    token: &str,
    decimals: u32,
) -> epusdt::config::NetworkConfig {
    epusdt::config::NetworkConfig {
        rpc_urls,
        chain_id: Some(31337),
        usdt_contract: Some(token.to_string()),
        decimals: Some(decimals),
        confirmations: Some(2),
        poll_interval_ms: Some(100),
        request_timeout_secs: Some(5),
        ..Default::default()
    }
}

/// The persisted cursor of `network`.
pub async fn cursor(db: &DatabaseConnection, network: &str) -> Option<i64> {
    chain_cursor::Entity::find_by_id(network)
        .one(db)
        .await
        .expect("read cursor")
        .map(|c| c.block_number)
}

/// TRON payments go to the account `hex` (20 bytes, no `41`) only — the placeholder TRON wallet
/// is disabled — once the watcher has caught up with the TRON double's solidified head (100).
pub async fn receive_tron_at(app: &TestApp, hex: &str) -> String {
    epusdt::service::wallet::set_enabled(&app.state.db, common::TRON_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let wallet = epusdt::domain::address::tron_from_hex(hex).expect("address");
    epusdt::service::wallet::add(
        &app.state.db,
        app.state.config.registry(),
        "tron",
        &wallet,
        None,
        "w",
    )
    .await
    .expect("wallet");
    wait_cursor(app, "tron", 100, 20).await;
    wallet
}

/// Waits until the cursor of `network` reaches `block`.
pub async fn wait_cursor(app: &TestApp, network: &str, block: i64, secs: u64) {
    let db = app.state.db.clone();
    common::eventually(secs, &format!("{network} cursor to reach {block}"), || {
        let db = db.clone();
        async move { cursor(&db, network).await.filter(|c| *c >= block) }
    })
    .await;
}

pub async fn transfers(db: &DatabaseConnection, network: &str) -> Vec<transfer::Model> {
    transfer::Entity::find()
        .filter(transfer::Column::Network.eq(network))
        .all(db)
        .await
        .expect("read transfers")
}

pub async fn transfer_count(db: &DatabaseConnection) -> u64 {
    transfer::Entity::find()
        .count(db)
        .await
        .expect("count transfers")
}

/// Creates a v1 order on `trade_type`; returns (trade_id, actual amount text, address).
pub async fn create_order(
    app: &TestApp,
    order_id: &str,
    amount: &str,
    trade_type: &str,
    notify_url: &str,
) -> (String, String, String) {
    let reply = common::create_v1(
        app,
        &[
            ("order_id", order_id),
            ("amount", amount),
            ("notify_url", notify_url),
            ("trade_type", trade_type),
        ],
    )
    .await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    let d = &reply["data"];
    (
        d["trade_id"].as_str().expect("trade id").to_string(),
        d["actual_amount"].to_string(),
        d["token"].as_str().expect("address").to_string(),
    )
}

/// Token base units of a decimal amount text (`13.89`, 6) → 13890000.
pub fn units(amount: &str, decimals: u32) -> u128 {
    let d: rust_decimal::Decimal = amount.parse().expect("decimal");
    let scaled = d * rust_decimal::Decimal::from(10u64.pow(decimals.min(18)));
    let scaled = if decimals > 18 {
        scaled * rust_decimal::Decimal::from(10u64.pow(decimals - 18))
    } else {
        scaled
    };
    assert_eq!(scaled.fract(), rust_decimal::Decimal::ZERO);
    scaled.trunc().to_string().parse().expect("units")
}

/// The status of an order (1 waiting, 2 paid, ...).
pub async fn order_status(app: &TestApp, trade_id: &str) -> i16 {
    epusdt::service::order::find_by_trade_id(&app.state.db, trade_id)
        .await
        .expect("read order")
        .expect("order exists")
        .status
        .code()
}

/// Runs a chain scenario on SQLite and PostgreSQL (MySQL is covered by the merchant tests; the
/// watcher's SQL is the same).
#[macro_export]
macro_rules! on_sqlite_and_postgres {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(common::Backend::Postgres).await
            }
        }
    };
}

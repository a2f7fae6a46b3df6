//! Catch-up speed of the EVM chain watcher (run by tools/bench.sh): how fast does a gateway
//! that was down work through the blocks it missed?
//!
//! `cargo bench --bench catchup` (release; `cargo test --bench catchup` runs it as a small smoke
//! test) starts anvil (`EPUSDT_ANVIL`, else where tools/anvil.sh installs it), deploys the test
//! ERC-20 (tests/fixtures), builds a backlog with `anvil_mine` in steps of 200 blocks and
//! transfers to the watched wallet scattered through it, then starts the gateway (SQLite, the
//! wallet in its database, `start_block` 1) and measures blocks/s from the first cursor the
//! watcher publishes to the cursor reaching the confirmed head (start-up is not counted), and
//! checks that every transfer was recorded:
//!
//! - **catch-up**: `BENCH_BLOCKS` (10,000) blocks straight from anvil, `max_block_range`
//!   `BENCH_RANGE` (1,000, the `ethereum` preset);
//! - **BSC day**: `BENCH_BSC_BLOCKS` (28,800: 24 h at 3 s) through the JSON-RPC double of the
//!   chain tests (tests/api/chain_support/faults.rs) answering every request after
//!   `BENCH_RPC_LATENCY_MS` (50) and refusing `eth_getLogs` over more than 1,000 blocks, the
//!   `bsc` preset's `max_block_range`.
//!
//! Each prints one `BENCH` line (`BENCH_COUNT=1`: the catch-up's requests per method, through a
//! counting proxy; `BENCH_ONLY=catch-up|bsc-day`: one of the two).
use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use epusdt::{
    app::App,
    config::{Config, NetworkConfig},
    domain::network::Networks,
    state::AppState,
};
use serde_json::{Value, json};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    process::{Child, Command},
};

// The JSON-RPC double of the chain tests, shared as is.
#[allow(dead_code)]
#[path = "../tests/api/chain_support/faults.rs"]
mod faults;
use faults::RpcDouble;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// Anvil's first dev accounts: 0 pays, 1 is the watched wallet.
const ACCOUNTS: [&str; 2] = [
    "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
    "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
];

fn word(v: u128) -> String {
    format!("{v:064x}")
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("hex").trim_start_matches("0x"), 16).expect("number")
}

/// A local anvil node, killed on drop (a trimmed copy of the test suite's, which depends on
/// the test harness).
struct Anvil {
    child: Child,
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Anvil {
    async fn start(path: &std::path::Path) -> Anvil {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("anvil.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(path)
            .args(["--port", "0", "--host", "127.0.0.1", "--chain-id", "31337"])
            // The states anvil spills over a long backlog (gigabytes) stay in this node's own
            // temporary directory, as in the tests' anvil (tests/api/chain_support).
            .arg("--cache-path")
            .arg(dir.path().join("states"))
            .stdout(Stdio::from(out.try_clone().expect("dup")))
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let started = Instant::now();
        let port = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("Listening on 127.0.0.1:") {
                let rest = &text[at + "Listening on 127.0.0.1:".len()..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if let Ok(port) = digits.parse::<u16>() {
                    break port;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "anvil did not listen: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Anvil {
            child,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn rpc(&self, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp: Value = self
            .client
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("{method}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        if let Some(e) = resp.get("error") {
            panic!("{method}: {e}");
        }
        resp["result"].clone()
    }

    async fn block_number(&self) -> u64 {
        hex_u64(&self.rpc("eth_blockNumber", json!([])).await)
    }

    /// `anvil_mine` of many blocks in one call slows down more than linearly: calls of at
    /// most 200 blocks.
    async fn mine(&self, mut blocks: u64) {
        while blocks > 0 {
            let step = blocks.min(200);
            self.rpc("anvil_mine", json!([format!("{step:#x}")])).await;
            blocks -= step;
        }
    }

    /// Sends a transaction from account 0 (automine); returns its receipt.
    async fn send(&self, to: Option<&str>, data: &str) -> Value {
        let mut tx = json!({"from": ACCOUNTS[0], "data": data, "gas": "0x7a1200"});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        let hash = self.rpc("eth_sendTransaction", json!([tx])).await;
        for _ in 0..200 {
            let r = self
                .rpc("eth_getTransactionReceipt", json!([hash.clone()]))
                .await;
            if !r.is_null() {
                assert_eq!(r["status"], "0x1", "transaction reverted: {r}");
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no receipt for {hash}");
    }

    /// Deploys the test token (tests/fixtures/TestToken.sol) with `decimals`.
    async fn deploy_token(&self, decimals: u8) -> String {
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/TestToken.json")).expect("json");
        let supply = 10u128.pow(u32::from(decimals)) * 1_000_000_000;
        let data = format!(
            "{}{}{}",
            fixture["bytecode"].as_str().expect("bytecode"),
            word(u128::from(decimals)),
            word(supply)
        );
        let receipt = self.send(None, &data).await;
        receipt["contractAddress"]
            .as_str()
            .expect("contract address")
            .to_ascii_lowercase()
    }

    /// ERC-20 `transfer(to, units)` from account 0.
    async fn transfer(&self, token: &str, to: &str, units: u128) {
        let to = format!("{:0>64}", to.trim_start_matches("0x"));
        self.send(Some(token), &format!("0xa9059cbb{to}{}", word(units)))
            .await;
    }
}

/// A token with `decimals` and a backlog of `blocks` blocks holding `transfers` transfers to
/// `ACCOUNTS[1]` scattered through it: (token, transfers sent, head).
async fn backlog(anvil: &Anvil, decimals: u8, blocks: u64, transfers: u64) -> (String, u64, u64) {
    let token = anvil.deploy_token(decimals).await;
    let unit = 10u128.pow(u32::from(decimals));
    let step = (blocks / transfers).max(1);
    let mut sent = 0;
    while anvil.block_number().await < blocks {
        if sent < transfers {
            anvil
                .transfer(&token, ACCOUNTS[1], unit + u128::from(sent))
                .await;
            sent += 1;
        }
        anvil.mine(step).await;
    }
    (token, sent, anvil.block_number().await)
}

/// The gateway (SQLite in a temporary directory) watching `network` (`nc`) for `ACCOUNTS[1]`,
/// whose wallet is in the database before the watcher starts.
struct Gateway {
    state: AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    async fn start(network: &str, nc: NetworkConfig) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_tests(dir.path());
        config.networks.insert(network.into(), nc);
        let db = epusdt::app::open_database(&config).await.expect("database");
        epusdt::service::wallet::add(
            &db,
            &Networks::presets(),
            network,
            ACCOUNTS[1],
            None,
            "bench",
        )
        .await
        .expect("wallet");
        db.close().await.expect("close");
        let app = App::build(config).await.expect("app builds");
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("app runs");
        });
        Gateway {
            state,
            stop,
            running,
            _dir: dir,
        }
    }

    /// Blocks/s from the first cursor the watcher of `network` publishes (start-up and the
    /// initial cursor row are not counted) to the cursor reaching `target`: (blocks, seconds).
    async fn measure(&self, network: &str, target: i64) -> (i64, f64) {
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut first: Option<(i64, Instant)> = None;
        loop {
            let status = self.state.chains.snapshot().remove(network);
            if let Some(c) = status.as_ref().and_then(|s| s.cursor) {
                let (c0, t0) = *first.get_or_insert((c, Instant::now()));
                if c >= target {
                    return (c - c0, t0.elapsed().as_secs_f64());
                }
            }
            assert!(
                Instant::now() < deadline,
                "{network} cursor stuck: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn transfers(&self, network: &str) -> usize {
        use epusdt::store::entities::transfer;
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        let n = transfer::Entity::find()
            .filter(transfer::Column::Network.eq(network))
            .count(&self.state.db)
            .await
            .expect("count transfers");
        usize::try_from(n).expect("count")
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.running.await;
    }
}

/// Network settings for anvil: chain id 31337, 2 confirmations, from block 1.
fn network(url: &str, token: &str, decimals: u32) -> NetworkConfig {
    NetworkConfig {
        rpc_urls: vec![url.to_string()],
        chain_id: Some(31337),
        usdt_contract: Some(token.to_string()),
        decimals: Some(decimals),
        confirmations: Some(2),
        poll_interval_ms: Some(100),
        request_timeout_secs: Some(10),
        start_block: Some(1),
        ..Default::default()
    }
}

/// JSON-RPC requests per method seen by a counting proxy in front of anvil.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counts {
    fn summary(&self) -> String {
        let m = self.0.lock().expect("counts");
        let total: u64 = m.values().sum();
        let each: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
        format!("{total} requests: {}", each.join(", "))
    }
}

/// A plain forwarding JSON-RPC proxy that counts requests per method (`BENCH_COUNT=1`; its own
/// hop is then part of the figure).
async fn counting_proxy(upstream: &str) -> (String, Counts) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let counts = Counts::default();
    let (c, upstream, client) = (counts.clone(), upstream.to_string(), reqwest::Client::new());
    let router = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (c, upstream, client) = (c.clone(), upstream.clone(), client.clone());
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    let method = v["method"].as_str().unwrap_or("?").to_string();
                    *c.0.lock().expect("counts").entry(method).or_default() += 1;
                }
                let resp = client
                    .post(&upstream)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match resp {
                    Ok(r) => (
                        [("content-type", "application/json")],
                        r.bytes().await.unwrap_or_default(),
                    )
                        .into_response(),
                    Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, counts)
}

use axum::response::IntoResponse;

fn rate(blocks: i64, secs: f64) -> f64 {
    if blocks > 0 && secs > 0.0 {
        blocks as f64 / secs
    } else {
        0.0
    }
}

async fn catch_up(anvil_path: &std::path::Path, blocks: u64, range: u64) {
    let anvil = Anvil::start(anvil_path).await;
    let (token, sent, head) = backlog(&anvil, 6, blocks, 20).await;
    let (url, counts) = if std::env::var("BENCH_COUNT").is_ok_and(|v| v == "1") {
        let (url, counts) = counting_proxy(&anvil.url).await;
        (url, Some(counts))
    } else {
        (anvil.url.clone(), None)
    };
    let mut nc = network(&url, &token, 6);
    nc.max_block_range = Some(range);
    let gw = Gateway::start("ethereum", nc).await;
    let (scanned, secs) = gw
        .measure("ethereum", i64::try_from(head).expect("head") - 2)
        .await;
    assert_eq!(
        gw.transfers("ethereum").await,
        usize::try_from(sent).expect("sent"),
        "every transfer found"
    );
    let requests = counts.map_or_else(
        || "BENCH_COUNT=1 counts the requests".into(),
        |c| c.summary(),
    );
    println!(
        "BENCH catch-up: {scanned} blocks ({sent} transfers in the backlog) in {secs:.3} s = {:.0} blocks/s (max_block_range={range}, SQLite, anvil; from the first cursor published; {requests})",
        rate(scanned, secs)
    );
    gw.stop().await;
}

async fn bsc_day(anvil_path: &std::path::Path, blocks: u64, latency: u64) {
    let anvil = Anvil::start(anvil_path).await;
    let (token, sent, head) = backlog(&anvil, 18, blocks, 24).await;
    let double = RpcDouble::start(&anvil.url).await;
    double.set(|f| {
        f.max_logs_range = Some(1_000);
        f.range_error = Some((-32005, "exceed maximum block range: 1000".into()));
        f.latency_ms = Some(latency);
    });
    let gw = Gateway::start("bsc", network(&double.url, &token, 18)).await;
    let (scanned, secs) = gw
        .measure("bsc", i64::try_from(head).expect("head") - 2)
        .await;
    assert_eq!(
        gw.transfers("bsc").await,
        usize::try_from(sent).expect("sent"),
        "every transfer found"
    );
    println!(
        "BENCH catch-up BSC day: {scanned} blocks ({sent} transfers) in {secs:.2} s = {:.0} blocks/s through a double answering in {latency} ms and capping eth_getLogs at 1,000 blocks ({} requests, {} ranges refused)",
        rate(scanned, secs),
        double.requests.load(Ordering::SeqCst),
        double.logs_refused.load(Ordering::SeqCst)
    );
    gw.stop().await;
}

/// `EPUSDT_ANVIL`, else where tools/anvil.sh installs it.
fn anvil_path() -> PathBuf {
    if let Ok(p) = std::env::var("EPUSDT_ANVIL") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home)
        .join(".cache/epusdt-anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}

async fn run() {
    epusdt::net::install_crypto_provider();
    // `cargo bench` passes `--bench`; `cargo test --bench catchup` runs a small smoke.
    let measuring = std::env::args().any(|a| a == "--bench");
    let path = anvil_path();
    if !path.exists() {
        let msg = format!(
            "anvil not found at {} (source tools/anvil.sh, or set EPUSDT_ANVIL)",
            path.display()
        );
        let required = std::env::var("EPUSDT_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(!(measuring || required), "{msg}");
        eprintln!("SKIP: {msg}");
        return;
    }
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "catch-up" {
        catch_up(
            &path,
            env_u64("BENCH_BLOCKS", if measuring { 10_000 } else { 300 }),
            env_u64("BENCH_RANGE", if measuring { 1_000 } else { 50 }),
        )
        .await;
    }
    if only.is_empty() || only == "bsc-day" {
        bsc_day(
            &path,
            env_u64("BENCH_BSC_BLOCKS", if measuring { 28_800 } else { 600 }),
            env_u64("BENCH_RPC_LATENCY_MS", 50),
        )
        .await;
    }
}

//! Failover soak benchmark (issue 8): two real `epusdt serve` processes on one fresh PostgreSQL
//! database and one Redis (job queue and rate limits), each with its own data dir, watching one
//! EVM network on a local anvil that mines a block every second. A payer creates orders over
//! HTTP on either instance and pays them; a killer SIGKILLs whichever instance holds the
//! scanning lease every 5–15 s (seeded) and restarts it on its data dir 0–3 s later.
//!
//! The test asserts correctness (every payment credited exactly once, every order paid and
//! called back); it prints the latency figures (payment mined → callback received) as `BENCH`
//! lines, which `tools/bench_failover.sh` gates on (p95 < 10 s). It is `#[ignore]`d: a
//! benchmark, not a CI test. Everything listens on 127.0.0.1.
//!
//! Knobs (env): BENCH_PAYMENTS (60), BENCH_SEED (1), BENCH_POLL_MS (500), BENCH_CONFIRMATIONS
//! (2), BENCH_KILL_EVERY_MS (5000-15000), BENCH_RESTART_AFTER_MS (0-3000), BENCH_PAY_EVERY_MS
//! (1000-2000), BENCH_LEASE_TTL_SECS (unset: the default, 5 s).
#[path = "api/chain_support/mod.rs"]
mod chain_support;
#[path = "api/common/mod.rs"]
mod common;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use chain_support::{ACCOUNTS, Anvil, units};
use epusdt::store::entities::setting;
use rand::{Rng, SeedableRng, rngs::StdRng};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

const MASTER_KEY: &str = "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";
const LEASE_KEY: &str = "chain_lease:ethereum";

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v}: a number")))
        .unwrap_or(default)
}

/// `a-b` (milliseconds) → a..=b.
fn knob_range(name: &str, default: (u64, u64)) -> (u64, u64) {
    match std::env::var(name) {
        Ok(v) => {
            let (a, b) = v
                .split_once('-')
                .unwrap_or_else(|| panic!("{name}={v}: use a-b"));
            let (a, b): (u64, u64) = (a.parse().expect("range start"), b.parse().expect("end"));
            assert!(a <= b, "{name}={v}");
            (a, b)
        }
        Err(_) => default,
    }
}

/// What the gateways are started with (shared by both instances and every restart).
struct Setup {
    db_url: String,
    redis_url: String,
    queue: String,
    anvil_url: String,
    token: String,
    poll_ms: u64,
    confirmations: u64,
    lease_ttl: Option<u64>,
    cwd: PathBuf,
}

/// One instance: its data dir, and the running process when up.
struct Instance {
    name: &'static str,
    data_dir: PathBuf,
    child: Option<Child>,
    /// Listening (set once the port accepts connections).
    port: Option<u16>,
    /// `<data_dir>/instance_id`, read after the first start.
    id: Option<String>,
}

struct Fleet {
    setup: Setup,
    instances: Mutex<Vec<Instance>>,
}

/// No `epusdt serve` outlives the run, even when it panics.
impl Drop for Fleet {
    fn drop(&mut self) {
        let all = self.instances.get_mut().unwrap_or_else(|e| e.into_inner());
        for i in all.iter_mut() {
            if let Some(mut child) = i.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Fleet {
    fn spawn(&self, data_dir: &Path, port: u16) -> Child {
        let s = &self.setup;
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        let mut cmd = common::epusdt(&s.cwd);
        cmd.env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("EPUSDT_DATA_DIR", data_dir)
            .env("EPUSDT_DATABASE_URL", &s.db_url)
            .env("EPUSDT_REDIS_URL", &s.redis_url)
            .env("EPUSDT_QUEUE_NAME", &s.queue)
            .env("EPUSDT_MASTER_KEY", MASTER_KEY)
            .env("EPUSDT_API_AUTH_TOKEN", common::TOKEN)
            .env("EPUSDT_FORCED_USDT_RATE", "7.2")
            .env("EPUSDT_ALLOW_PRIVATE_CALLBACKS", "true")
            .env("EPUSDT_LOG_LEVEL", "info")
            .env("EPUSDT_NETWORKS__ETHEREUM__RPC_URLS", &s.anvil_url)
            .env("EPUSDT_NETWORKS__ETHEREUM__CHAIN_ID", "31337")
            .env("EPUSDT_NETWORKS__ETHEREUM__USDT_CONTRACT", &s.token)
            .env("EPUSDT_NETWORKS__ETHEREUM__DECIMALS", "6")
            .env(
                "EPUSDT_NETWORKS__ETHEREUM__CONFIRMATIONS",
                s.confirmations.to_string(),
            )
            .env(
                "EPUSDT_NETWORKS__ETHEREUM__POLL_INTERVAL_MS",
                s.poll_ms.to_string(),
            )
            .env("EPUSDT_NETWORKS__ETHEREUM__REQUEST_TIMEOUT_SECS", "5");
        if let Some(ttl) = s.lease_ttl {
            cmd.env("EPUSDT_NETWORKS__ETHEREUM__LEASE_TTL_SECS", ttl.to_string());
        }
        cmd.arg("serve")
            .stdout(Stdio::from(log.try_clone().expect("dup")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start epusdt")
    }

    /// Starts instance `i` (not running) and waits until it listens.
    async fn start(&self, i: usize) {
        let port = common::free_port();
        {
            let mut all = self.instances.lock().expect("fleet");
            assert!(all[i].child.is_none(), "{} already runs", all[i].name);
            let child = self.spawn(&all[i].data_dir.clone(), port);
            all[i].child = Some(child);
        }
        common::wait_listening(port).await;
        let mut all = self.instances.lock().expect("fleet");
        all[i].port = Some(port);
        if all[i].id.is_none() {
            let text = std::fs::read_to_string(all[i].data_dir.join("instance_id"))
                .expect("instance_id written at start");
            all[i].id = Some(text.trim().to_string());
        }
    }

    /// SIGKILL (no graceful release: the lease row stays).
    fn kill(&self, i: usize) {
        let mut all = self.instances.lock().expect("fleet");
        all[i].port = None;
        if let Some(mut child) = all[i].child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// Ports of the instances that listen now.
    fn ports(&self) -> Vec<u16> {
        let all = self.instances.lock().expect("fleet");
        all.iter().filter_map(|i| i.port).collect()
    }

    /// The running instance whose id owns an unexpired lease row.
    fn holder(&self, row: Option<&str>) -> Option<usize> {
        let (owner, expiry) = row?.rsplit_once('|')?;
        let expiry: i64 = expiry.parse().ok()?;
        if expiry <= chrono::Utc::now().timestamp_millis() {
            return None;
        }
        let all = self.instances.lock().expect("fleet");
        all.iter()
            .position(|i| i.child.is_some() && i.id.as_deref() == Some(owner))
    }

    fn stop_all(&self) {
        let n = self.instances.lock().expect("fleet").len();
        for i in 0..n {
            self.kill(i);
        }
    }
}

async fn lease_row(db: &sea_orm::DatabaseConnection) -> Option<String> {
    setting::Entity::find_by_id(LEASE_KEY)
        .one(db)
        .await
        .ok()
        .flatten()
        .map(|r| r.value)
}

/// Creates a v1 order of `cny` on the gateway at `port`; (trade id, amount, address).
async fn create_order(
    client: &reqwest::Client,
    port: u16,
    order_id: &str,
    cny: u32,
    notify_url: &str,
) -> Result<(String, String, String), String> {
    let mut params: BTreeMap<&str, String> = BTreeMap::new();
    params.insert("order_id", order_id.into());
    params.insert("amount", cny.to_string());
    params.insert("notify_url", notify_url.into());
    params.insert("trade_type", "usdt.erc20".into());
    let sig = common::v1_sign(&params, common::TOKEN);
    let reply: Value = client
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/order/create-transaction"
        ))
        .json(
            &json!({"order_id": order_id, "amount": cny, "notify_url": notify_url,
                      "trade_type": "usdt.erc20", "signature": sig}),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if reply["status_code"] != 200 {
        return Err(reply.to_string());
    }
    let d = &reply["data"];
    Ok((
        d["trade_id"].as_str().ok_or("trade id")?.to_string(),
        d["actual_amount"].to_string(),
        d["token"].as_str().ok_or("address")?.to_string(),
    ))
}

/// ERC-20 transfer from account 0; returns (tx hash, block, when the receipt was seen). The
/// receipt is polled every 20 ms, so "mined" is late by at most that.
async fn pay(anvil: &Anvil, token: &str, to: &str, units: u128) -> (String, u64, Instant) {
    let data = format!(
        "0xa9059cbb{:0>64}{units:064x}",
        to.trim_start_matches("0x").to_ascii_lowercase()
    );
    let hash = anvil
        .rpc(
            "eth_sendTransaction",
            json!([{"from": ACCOUNTS[0], "to": token, "data": data, "gas": "0x200000"}]),
        )
        .await
        .as_str()
        .expect("tx hash")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = anvil
            .try_rpc("eth_getTransactionReceipt", json!([hash]))
            .await
            .unwrap_or(Value::Null);
        if !r.is_null() {
            let mined = Instant::now();
            assert_eq!(r["status"], "0x1", "transfer reverted: {r}");
            let block = u64::from_str_radix(
                r["blockNumber"]
                    .as_str()
                    .expect("block")
                    .trim_start_matches("0x"),
                16,
            )
            .expect("block number");
            return (hash, block, mined);
        }
        assert!(Instant::now() < deadline, "{hash} not mined in 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone)]
struct Payment {
    order_id: String,
    trade_id: String,
    tx: String,
    block: u64,
    mined: Instant,
    created_on: u16,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run by tools/bench_failover.sh"]
async fn bench_failover_soak() {
    epusdt::net::install_crypto_provider();
    let payments_n = knob("BENCH_PAYMENTS", 60) as usize;
    let seed = knob("BENCH_SEED", 1);
    let kill_every = knob_range("BENCH_KILL_EVERY_MS", (5_000, 15_000));
    let restart_after = knob_range("BENCH_RESTART_AFTER_MS", (0, 3_000));
    let pay_every = knob_range("BENCH_PAY_EVERY_MS", (1_000, 2_000));
    let lease_ttl = std::env::var("BENCH_LEASE_TTL_SECS")
        .ok()
        .map(|v| v.parse::<u64>().expect("BENCH_LEASE_TTL_SECS"));

    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let anvil = Arc::new(anvil);
    let token = anvil.deploy_token(6).await;
    anvil.mine(5).await;
    // A block every second from now on (transactions wait for the next block), so block times
    // follow the wall clock.
    anvil.rpc("evm_setIntervalMining", json!([1])).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let Some(db_url) = common::fresh_database(common::Backend::Postgres, dir.path()).await else {
        return;
    };
    let Some(redis_url) = common::redis_url() else {
        return;
    };
    let mut config = epusdt::config::Config::for_tests(&dir.path().join("setup"));
    config.database_url = Some(db_url.clone());
    let db = epusdt::app::open_database(&config).await.expect("database");
    epusdt::service::wallet::add(
        &db,
        &epusdt::domain::network::Networks::presets(),
        "ethereum",
        ACCOUNTS[1],
        None,
        "anvil-1",
    )
    .await
    .expect("wallet");
    let queue = format!("bench_failover_{:08x}", rand::rng().random::<u32>());

    let fleet = Arc::new(Fleet {
        setup: Setup {
            db_url,
            redis_url,
            queue,
            anvil_url: anvil.url.clone(),
            token: token.clone(),
            poll_ms: knob("BENCH_POLL_MS", 500),
            confirmations: knob("BENCH_CONFIRMATIONS", 2),
            lease_ttl,
            cwd: dir.path().to_path_buf(),
        },
        instances: Mutex::new(
            ["a", "b"]
                .into_iter()
                .map(|name| Instance {
                    name,
                    data_dir: dir.path().join(name),
                    child: None,
                    port: None,
                    id: None,
                })
                .collect(),
        ),
    });
    eprintln!(
        "failover soak: {payments_n} payments every {pay_every:?} ms, kill every {kill_every:?} ms, restart after {restart_after:?} ms, seed {seed}, poll {} ms, {} confirmations, lease TTL {}; logs in {}",
        fleet.setup.poll_ms,
        fleet.setup.confirmations,
        lease_ttl.map_or("default".to_string(), |t| format!("{t} s")),
        dir.path().display()
    );
    fleet.start(0).await;
    common::eventually(30, "instance a to take the lease", || async {
        fleet
            .holder(lease_row(&db).await.as_deref())
            .filter(|h| *h == 0)
    })
    .await;
    fleet.start(1).await;

    // Callback arrivals: first time each trade id is seen, and how often.
    let (merchant, murl) = common::Merchant::start(0, "ok").await;
    let notify_url = format!("{murl}/notify");
    let arrivals: Arc<Mutex<HashMap<String, (Instant, usize)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (merchant, arrivals, done) = (merchant.clone(), arrivals.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let calls = merchant.received();
                let now = Instant::now();
                for c in &calls[seen..] {
                    let body: Value = serde_json::from_str(&c.body).unwrap_or(Value::Null);
                    let trade = body["trade_id"].as_str().unwrap_or("?").to_string();
                    let mut a = arrivals.lock().expect("arrivals");
                    a.entry(trade).or_insert((now, 0)).1 += 1;
                }
                seen = calls.len();
                if done.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Killer: SIGKILL the lease holder every 5–15 s, restart it 0–3 s later on its data dir.
    let kills: Arc<Mutex<Vec<(Instant, &'static str)>>> = Arc::default();
    let no_holder = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (fleet, db, kills, no_holder, stop) = (
            fleet.clone(),
            db.clone(),
            kills.clone(),
            no_holder.clone(),
            done.clone(),
        );
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6b11);
        tokio::spawn(async move {
            loop {
                let wait = Duration::from_millis(rng.random_range(kill_every.0..=kill_every.1));
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let Some(i) = fleet.holder(lease_row(&db).await.as_deref()) else {
                    no_holder.fetch_add(1, Ordering::SeqCst);
                    eprintln!("killer: no live lease holder right now");
                    continue;
                };
                let name = fleet.instances.lock().expect("fleet")[i].name;
                fleet.kill(i);
                kills.lock().expect("kills").push((Instant::now(), name));
                let down =
                    Duration::from_millis(rng.random_range(restart_after.0..=restart_after.1));
                tokio::time::sleep(down).await;
                fleet.start(i).await;
            }
        })
    };

    // Lease monitor: the longest stretch without a live holder.
    let gaps: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let monitor = {
        let (fleet, db, gaps, stop) = (fleet.clone(), db.clone(), gaps.clone(), done.clone());
        tokio::spawn(async move {
            let mut since: Option<Instant> = None;
            while !stop.load(Ordering::SeqCst) {
                let held = fleet.holder(lease_row(&db).await.as_deref()).is_some();
                match (held, since) {
                    (false, None) => since = Some(Instant::now()),
                    (true, Some(t)) => {
                        gaps.lock().expect("gaps").push(t.elapsed());
                        since = None;
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Payer: one payment every 1–2 s, each in its own task (order over HTTP, then the transfer).
    let started = Instant::now();
    let orphans = Arc::new(AtomicUsize::new(0));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tasks = Vec::new();
    for n in 0..payments_n {
        tokio::time::sleep(Duration::from_millis(
            rng.random_range(pay_every.0..=pay_every.1),
        ))
        .await;
        let pick: usize = rng.random_range(0..2);
        let cny = 50 + u32::try_from(n).expect("n");
        let (fleet, anvil, token, notify_url, orphans) = (
            fleet.clone(),
            anvil.clone(),
            token.clone(),
            notify_url.clone(),
            orphans.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut attempt = 0;
            let (order_id, (trade_id, amount, address), port) = loop {
                let ports = fleet.ports();
                if !ports.is_empty() {
                    let port = ports[(pick + attempt) % ports.len()];
                    let order_id = format!("F-{n}-{attempt}");
                    match create_order(&client, port, &order_id, cny, &notify_url).await {
                        Ok(o) => break (order_id, o, port),
                        Err(e) => {
                            // The instance may have been killed mid-request: the order may
                            // exist, unpaid. Never pay an order we did not get an answer for.
                            orphans.fetch_add(1, Ordering::SeqCst);
                            eprintln!("payer: create {order_id} on :{port} failed: {e}");
                        }
                    }
                }
                attempt += 1;
                assert!(
                    Instant::now() < deadline,
                    "no instance took an order in 60 s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            assert_eq!(address, ACCOUNTS[1]);
            let (tx, block, mined) = pay(&anvil, &token, &address, units(&amount, 6)).await;
            Payment {
                order_id,
                trade_id,
                tx,
                block,
                mined,
                created_on: port,
            }
        }));
    }
    let mut payments = Vec::new();
    for t in tasks {
        payments.push(t.await.expect("payment task"));
    }
    let paid_in = started.elapsed();

    // Every callback, or two minutes after the last payment (the killer keeps going meanwhile).
    let drain = Instant::now();
    while drain.elapsed() < Duration::from_secs(120) {
        let all_in = {
            let a = arrivals.lock().expect("arrivals");
            payments.iter().all(|p| a.contains_key(&p.trade_id))
        };
        if all_in {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, Ordering::SeqCst);
    killer.await.expect("killer");
    monitor.await.expect("monitor");
    // Late duplicates (at-least-once) still count: give in-flight deliveries a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    watcher.await.expect("watcher");
    let arrivals = arrivals.lock().expect("arrivals").clone();

    // --- Correctness --------------------------------------------------------------------
    let mut problems = Vec::new();
    let rows = chain_support::transfers(&db, "ethereum").await;
    for p in &payments {
        let order = epusdt::service::order::find_by_trade_id(&db, &p.trade_id)
            .await
            .expect("read order")
            .expect("order exists");
        let credited: Vec<_> = rows.iter().filter(|t| t.tx_hash == p.tx).collect();
        if credited.len() != 1 {
            problems.push(format!(
                "{} ({}): {} transfer rows for {}",
                p.order_id,
                p.trade_id,
                credited.len(),
                p.tx
            ));
        } else if credited[0].kind != "matched" || credited[0].order_id != Some(order.id.get()) {
            problems.push(format!(
                "{}: transfer {} recorded as {} for order {:?}",
                p.order_id, p.tx, credited[0].kind, credited[0].order_id
            ));
        }
        if order.status.code() != 2 || order.block_transaction_id.as_deref() != Some(p.tx.as_str())
        {
            problems.push(format!(
                "{}: status {} paid by {:?} (expected {})",
                p.order_id,
                order.status.code(),
                order.block_transaction_id,
                p.tx
            ));
        }
        if !arrivals.contains_key(&p.trade_id) {
            problems.push(format!(
                "{} ({}): no callback (callback_state {}, attempts {}), mined in block {}",
                p.order_id, p.trade_id, order.callback_state, order.callback_attempts, p.block
            ));
        }
    }
    if rows.len() != payments.len() {
        problems.push(format!(
            "{} transfer rows for {} payments: {rows:?}",
            rows.len(),
            payments.len()
        ));
    }
    let foreign: Vec<_> = arrivals
        .keys()
        .filter(|t| !payments.iter().any(|p| &p.trade_id == *t))
        .collect();
    if !foreign.is_empty() {
        problems.push(format!("callbacks for orders nobody paid: {foreign:?}"));
    }

    // --- Figures ------------------------------------------------------------------------
    let kills = kills.lock().expect("kills").clone();
    let mut latencies: Vec<(Duration, &Payment)> = payments
        .iter()
        .filter_map(|p| {
            arrivals
                .get(&p.trade_id)
                .map(|(at, _)| (at.saturating_duration_since(p.mined), p))
        })
        .collect();
    latencies.sort_by_key(|(d, _)| *d);
    let sorted: Vec<Duration> = latencies.iter().map(|(d, _)| *d).collect();
    let duplicates: usize = arrivals.values().map(|(_, n)| n - 1).sum();
    let gaps = gaps.lock().expect("gaps").clone();
    let max_gap = gaps.iter().max().copied().unwrap_or_default();
    let (p50, p95, max) = (
        percentile(&sorted, 50.0),
        percentile(&sorted, 95.0),
        sorted.last().copied().unwrap_or_default(),
    );
    println!(
        "BENCH failover payments={} called_back={} kills={} (a={}, b={}) no_holder_at_kill={} failed_creates={} duplicates={} paid_in_s={:.0} lease_gaps={} max_lease_gap_ms={}",
        payments.len(),
        latencies.len(),
        kills.len(),
        kills.iter().filter(|k| k.1 == "a").count(),
        kills.iter().filter(|k| k.1 == "b").count(),
        no_holder.load(Ordering::SeqCst),
        orphans.load(Ordering::SeqCst),
        duplicates,
        paid_in.as_secs_f64(),
        gaps.len(),
        ms(max_gap),
    );
    println!(
        "BENCH failover latency mined->callback p50_ms={} p95_ms={} max_ms={}",
        ms(p50),
        ms(p95),
        ms(max)
    );
    for (d, p) in latencies.iter().rev().take(5) {
        let last_kill = kills
            .iter()
            .rev()
            .find(|(t, _)| *t <= p.mined + *d)
            .map(|(t, who)| {
                let rel = if *t <= p.mined {
                    format!("{} ms before mining", ms(p.mined - *t))
                } else {
                    format!("{} ms after mining", ms(*t - p.mined))
                };
                format!("last kill ({who}) {rel}")
            })
            .unwrap_or_else(|| "no kill before".into());
        let dup = arrivals.get(&p.trade_id).map_or(0, |(_, n)| *n);
        println!(
            "BENCH failover slowest {} ms: {} block {} created on :{} callbacks {}; {last_kill}",
            ms(*d),
            p.order_id,
            p.block,
            p.created_on,
            dup
        );
    }
    fleet.stop_all();
    if !problems.is_empty() || std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1") {
        eprintln!("logs kept in {}", dir.keep().display());
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert_eq!(payments.len(), payments_n);
}

//! State scale (run by tools/bench.sh): does the gateway keep its speed with a million orders
//! in its database?
//!
//! `BENCH_ORDERS=1000000 [BENCH_DATABASE_URL=postgres://…/empty_db] cargo bench --bench scale`
//! (SQLite in a temporary directory by default) creates `BENCH_ORDERS` waiting orders through
//! the service layer (`service::order::create_order`, 100 wallets, 32 at a time) on a running
//! gateway, and measures before and after the fill: create-order throughput (the service call,
//! the median of three runs of 20,000 orders), check-status latency over HTTP (2,000 sequential
//! requests for random orders), one sweeper pass (`expire_due`) and one scanner crediting pass
//! (20 transfers credited in one transaction, as a scanned range is). It also prints the
//! process' RSS idle and holding the first 10,000 waiting orders (made before the "before").
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use epusdt::{
    app::App,
    config::{Config, Secret},
    domain::network::{Network, Token},
    service::{
        self,
        order::{IncomingTransfer, NewOrder, OrderRules, Protocol},
    },
    state::AppState,
};
use rust_decimal::Decimal;

/// The gateway under measurement: its state and its HTTP address.
struct TestApp {
    state: AppState,
    base: String,
    client: reqwest::Client,
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

const WALLETS: u64 = 100;
const CONCURRENCY: u64 = 32;

fn wallet(i: u64) -> String {
    format!("0x{:040x}", 0xbe_0000 + i)
}

/// Creates `n` orders (ids `prefix-0..n`) 32 at a time; returns (orders/s, created orders as
/// (trade_id, address, amount)).
async fn fill(app: &TestApp, prefix: &str, n: u64) -> (f64, Vec<(String, String, Decimal)>) {
    let merchant = service::merchant::find_by_pid(&app.state.db, &app.state.keys, 1000)
        .await
        .expect("merchant")
        .expect("the api_auth_token merchant");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (state, merchant, next, prefix) = (
            app.state.clone(),
            merchant.clone(),
            next.clone(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return made;
                }
                // 1.00 … 20,000.00 USDT: ~2M distinct amounts × 100 wallets of slots.
                let cents: u64 = rand::random_range(100..2_000_000);
                let req = NewOrder {
                    merchant: merchant.clone(),
                    protocol: Protocol::V1,
                    order_id: format!("{prefix}-{i}"),
                    currency: "USDT".into(),
                    amount: Decimal::new(i64::try_from(cents).unwrap(), 2),
                    network: Network::ETHEREUM,
                    token: Token::USDT,
                    notify_url: "http://127.0.0.1:9/notify".into(),
                    redirect_url: String::new(),
                    name: String::new(),
                    timeout_secs: Some(7 * 24 * 3600),
                    sign_alg: String::new(),
                    epay_type: String::new(),
                };
                let created =
                    service::order::create_order(&state.db, &state.config, &state.caches, req)
                        .await
                        .expect("create");
                if i % 997 == 0 {
                    let o = created.order;
                    made.push((o.trade_id.to_string(), o.address, o.actual_amount));
                }
            }
        }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.extend(t.await.expect("task"));
    }
    (n as f64 / started.elapsed().as_secs_f64(), made)
}

/// Create-order rate probes before and after the fill; the median is reported. One probe of
/// 20,000 orders lasts under two seconds and swung 11.2–13.2k/s on an empty table.
const PROBES: u64 = 3;

/// The median rate of [`PROBES`] fills of `n` orders each (ids `prefix{k}-…`), and the orders
/// they sampled.
async fn probe_rate(app: &TestApp, prefix: &str, n: u64) -> (f64, Vec<(String, String, Decimal)>) {
    let mut rates = Vec::new();
    let mut made = Vec::new();
    for k in 0..PROBES {
        let (rate, m) = fill(app, &format!("{prefix}{k}"), n).await;
        rates.push(rate);
        made.extend(m);
    }
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], made)
}

/// This process' resident memory (VmRSS), MB.
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Milliseconds at the 50th and 99th percentile of `samples`.
fn p50_p99(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: usize| samples[(samples.len() * q).div_ceil(100).max(1) - 1].as_secs_f64() * 1e3;
    (at(50), at(99))
}

async fn check_status_latency(app: &TestApp, orders: &[(String, String, Decimal)]) -> (f64, f64) {
    let mut samples = Vec::new();
    for k in 0..2_000usize {
        let (trade_id, _, _) = &orders[(k * 7919) % orders.len()];
        let t = Instant::now();
        let r = app
            .client
            .get(app.url(&format!("/pay/check-status/{trade_id}")))
            .send()
            .await
            .expect("check-status");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
        samples.push(t.elapsed());
    }
    p50_p99(samples)
}

/// One sweeper pass, the slowest of 5 (ms).
async fn sweep_ms(app: &TestApp, rules: &OrderRules) -> f64 {
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        service::order::expire_due(&app.state.db, rules)
            .await
            .expect("sweep");
        worst = worst.max(t.elapsed());
    }
    worst.as_secs_f64() * 1e3
}

/// One scanned range's crediting: 20 transfers paying 20 of `orders`, in one transaction (ms).
async fn credit_ms(
    app: &TestApp,
    rules: &OrderRules,
    orders: &mut Vec<(String, String, Decimal)>,
    tag: &str,
) -> f64 {
    let batch: Vec<_> = orders.drain(..20.min(orders.len())).collect();
    let now = chrono::Utc::now().timestamp();
    let t = Instant::now();
    let txn = epusdt::store::begin_write(&app.state.db)
        .await
        .expect("txn");
    for (k, (trade_id, address, amount)) in batch.iter().enumerate() {
        let transfer = IncomingTransfer {
            network: Network::ETHEREUM,
            token: Token::USDT,
            tx_hash: format!("0x{tag}{k:060x}"),
            log_index: 0,
            block_number: 1,
            block_hash: "0xb1".into(),
            token_contract: "0xdac17f958d2ee523a2206206994597c13d831ec7".into(),
            from_address: wallet(9_999),
            to_address: address.clone(),
            amount: *amount,
            block_time: now,
        };
        let outcome = service::order::credit_transfer_in(&txn, rules, &transfer)
            .await
            .expect("credit");
        assert!(
            format!("{outcome:?}").contains(trade_id.as_str()),
            "{outcome:?} pays {trade_id}"
        );
    }
    txn.commit().await.expect("commit");
    t.elapsed().as_secs_f64() * 1e3
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
    // `cargo bench` passes `--bench`; `cargo test` (the test suite) runs this as a smoke test.
    let measuring = std::env::args().any(|a| a == "--bench");
    let total = env_u64("BENCH_ORDERS", if measuring { 1_000_000 } else { 300 });
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::for_tests(dir.path());
    config.database_url = std::env::var("BENCH_DATABASE_URL").ok();
    config.api_auth_token = Some(Secret::new("bench-token-0123456789"));
    // Rate limits off, as in tools/bench_create.sh: the figures are the gateway's, not the limiter's.
    config.rate_limit.rate_limit_per_minute = 0;
    config.rate_limit.rate_limit_route_per_minute = 0;
    config.rate_limit.rate_limit_merchant_per_minute = 0;
    let name = match config.database_url.as_deref() {
        Some(u) if u.starts_with("postgres") => "postgres",
        Some(u) if u.starts_with("mysql") => "mysql",
        _ => "sqlite",
    };
    let app = App::build(config).await.expect("app builds");
    let port = app.port();
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let app = TestApp {
        state,
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
    };
    for i in 0..WALLETS {
        service::wallet::add(
            &app.state.db,
            app.state.config.registry(),
            "ethereum",
            &wallet(i),
            None,
            "bench",
        )
        .await
        .expect("wallet");
    }
    let rules = OrderRules::from_config(&app.state.config);
    let probe = (total / 50).clamp(200, 20_000);

    // Memory: the process (the gateway runs in it) idle, then holding 10,000 waiting orders.
    let live = total.min(10_000);
    let rss_idle = rss_mb();
    fill(&app, "L", live).await;
    let rss_live = rss_mb();

    let (rate0, mut sample0) = probe_rate(&app, "A", probe).await;
    let (s50_0, s99_0) = check_status_latency(&app, &sample0).await;
    let sweep0 = sweep_ms(&app, &rules).await;
    let credit0 = credit_ms(&app, &rules, &mut sample0, "a").await;

    let started = Instant::now();
    let (fill_rate, _) = fill(&app, "F", total.saturating_sub(live + 2 * PROBES * probe)).await;
    let fill_secs = started.elapsed().as_secs_f64();

    let (rate1, mut sample1) = probe_rate(&app, "Z", probe).await;
    let (s50_1, s99_1) = check_status_latency(&app, &sample1).await;
    let sweep1 = sweep_ms(&app, &rules).await;
    let credit1 = credit_ms(&app, &rules, &mut sample1, "b").await;

    println!(
        "BENCH scale backend={name} orders={total} fill={fill_rate:.0}/s in {fill_secs:.0} s (service layer, 32 at a time)"
    );
    println!(
        "BENCH scale backend={name} create {rate0:.0}/s → {rate1:.0}/s ({:+.0} %), check-status p50 {s50_0:.2} → {s50_1:.2} ms, p99 {s99_0:.2} → {s99_1:.2} ms, sweeper pass {sweep0:.1} → {sweep1:.1} ms, crediting pass (20 transfers) {credit0:.1} → {credit1:.1} ms",
        (rate1 / rate0 - 1.0) * 100.0
    );
    println!(
        "BENCH scale backend={name} RSS {rss_idle:.1} MB idle → {rss_live:.1} MB holding {live} waiting orders (the bench process, gateway in it)"
    );
    let _ = stop.send(());
    let _ = running.await;
}

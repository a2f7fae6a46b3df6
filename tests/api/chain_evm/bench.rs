//! Measurements (tools/bench_chain.sh), ignored by default.
use super::*;

// ---------------------------------------------------------------------------------------------
// Measurements (tools/bench_chain.sh):
// `cargo test --test api -- --ignored --nocapture chain_evm::bench::`.

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Detection latency: transfer mined → order paid in the database (detection) and → callback
/// received by the merchant (detection + job queue + HTTP), confirmations 2 mined right away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run tools/bench_chain.sh"]
async fn bench_detection_latency() {
    let poll = env_u64("BENCH_POLL_MS", 1000);
    let rounds = env_u64("BENCH_ROUNDS", 10);
    let Some(s) = setup(Backend::Sqlite, 6, "ethereum", |nc, _| {
        nc.poll_interval_ms = Some(poll);
    })
    .await
    else {
        return;
    };
    let (mut detect, mut callback) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let (trade_id, amount, address) =
            create_order(&s.app, &format!("L-{i}"), "100", "usdt.erc20", &s.notify).await;
        let before = s.merchant.received().len();
        s.anvil
            .transfer(&s.token, &address, units(&amount, 6))
            .await;
        let mined = Instant::now();
        s.anvil.mine(2).await;
        let mut paid_at = None;
        loop {
            if paid_at.is_none() && chain_support::order_status(&s.app, &trade_id).await == 2 {
                paid_at = Some(mined.elapsed());
            }
            if s.merchant.received().len() > before {
                callback.push(mined.elapsed());
                break;
            }
            assert!(mined.elapsed() < Duration::from_secs(30), "no callback");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        detect.push(paid_at.unwrap_or_else(|| *callback.last().unwrap()));
        s.app.wait_delivered(&trade_id, 20).await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (what, samples) in [
        ("detected (order paid)", &mut detect),
        ("callback received", &mut callback),
    ] {
        samples.sort();
        println!(
            "BENCH latency mined → {what} (poll_interval_ms={poll}, confirmations=2 mined at once, {rounds} payments): min {:.0} ms, median {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            ms(samples[0]),
            ms(samples[samples.len() / 2]),
            ms(samples[(samples.len() * 95).div_ceil(100) - 1]),
            ms(samples[samples.len() - 1])
        );
    }
    s.app.stop().await;
}

/// Blocks/s of a catch-up: from the first cursor the watcher writes (so start-up and the first
/// range are not counted) to the cursor reaching `target`. Returns (blocks, seconds).
async fn measure_catch_up(app: &TestApp, network: &str, target: i64) -> (i64, f64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(i64, Instant)> = None;
    loop {
        let c = chain_support::cursor(&app.state.db, network).await;
        // (A backlog of one range is done at its first write: 0 blocks measured.)
        if let Some(c) = c {
            let (c0, t0) = *first.get_or_insert((c, Instant::now()));
            if c >= target {
                return (c - c0, t0.elapsed().as_secs_f64());
            }
        }
        assert!(Instant::now() < deadline, "{network} cursor stuck at {c:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Catch-up: a 10,000-block backlog with transfers scattered in it, the watcher starting at
/// cursor 0; blocks/s from its first range to the confirmed head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run tools/bench_chain.sh"]
async fn bench_catch_up() {
    let blocks = env_u64("BENCH_BLOCKS", 10_000);
    let range = env_u64("BENCH_RANGE", 1_000);
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let (token, sent, head) = backlog(&anvil, 6, blocks, 20).await;
    let (config, dir) = common::test_config(Backend::Sqlite).await.unwrap();
    let mut nc = evm_network(vec![anvil.url.clone()], &token, 6);
    nc.start_block = Some(1);
    nc.max_block_range = Some(range);
    let app = spawn_watching(config, dir, "ethereum", nc).await;
    let (scanned, secs) = measure_catch_up(&app, "ethereum", head - 2).await;
    let rows = chain_support::transfers(&app.state.db, "ethereum").await;
    assert_eq!(
        rows.len(),
        usize::try_from(sent).unwrap(),
        "every transfer found"
    );
    println!(
        "BENCH catch-up: {scanned} blocks ({sent} transfers in the backlog) in {secs:.3} s = {:.0} blocks/s (max_block_range={range}, SQLite, anvil; from the first range written)",
        rate(scanned, secs)
    );
    app.stop().await;
}

/// A token with `decimals` deployed on `anvil` and a backlog of `blocks` blocks holding
/// `transfers` transfers to `ACCOUNTS[1]` scattered through it: (token, transfers sent, head).
async fn backlog(anvil: &Anvil, decimals: u8, blocks: u64, transfers: u64) -> (String, u64, i64) {
    let token = anvil.deploy_token(decimals).await;
    let unit = 10u128.pow(u32::from(decimals));
    let mut sent = 0;
    while anvil.block_number().await < blocks {
        if sent < transfers {
            anvil
                .transfer(&token, ACCOUNTS[1], unit + u128::from(sent))
                .await;
            sent += 1;
        }
        mine_in_steps(anvil, blocks / transfers).await;
    }
    let head = i64::try_from(anvil.block_number().await).unwrap();
    (token, sent, head)
}

/// The gateway watching `network` (`nc`) for `ACCOUNTS[1]`, whose wallet exists before the
/// watcher starts (it watches the wallets of the database).
async fn spawn_watching(
    mut config: epusdt::config::Config,
    dir: std::sync::Arc<tempfile::TempDir>,
    network: &str,
    nc: NetworkConfig,
) -> TestApp {
    config.networks.insert(network.into(), nc);
    let db = epusdt::app::open_database(&config).await.unwrap();
    epusdt::service::wallet::add(
        &db,
        &epusdt::domain::network::Networks::presets(),
        network,
        ACCOUNTS[1],
        None,
        "a1",
    )
    .await
    .unwrap();
    db.close().await.unwrap();
    common::spawn_with(config, dir).await
}

/// `anvil_mine` of many blocks in one call slows down more than linearly (1,200 blocks took
/// 5 s where 500 took 1.3 s): mine a backlog in calls of at most 200 blocks.
async fn mine_in_steps(anvil: &Anvil, mut blocks: u64) {
    while blocks > 0 {
        let step = blocks.min(200);
        anvil.mine(step).await;
        blocks -= step;
    }
}

fn rate(blocks: i64, secs: f64) -> f64 {
    if blocks > 0 && secs > 0.0 {
        blocks as f64 / secs
    } else {
        0.0
    }
}

/// Catch-up of 24 h of BSC (28,800 blocks at 3 s) through an RPC double in front of anvil that
/// answers every request after 50 ms and refuses `eth_getLogs` over more than 1,000 blocks, as
/// public BSC providers do; the network keeps its preset `max_block_range`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run tools/bench_chain.sh"]
async fn bench_catch_up_bsc_day() {
    let blocks = env_u64("BENCH_BSC_BLOCKS", 28_800);
    let latency = env_u64("BENCH_RPC_LATENCY_MS", 50);
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let (token, sent, head) = backlog(&anvil, 18, blocks, 24).await;
    let double = RpcDouble::start(&anvil.url).await;
    double.set(|f| {
        f.max_logs_range = Some(1_000);
        f.range_error = Some((-32005, "exceed maximum block range: 1000".into()));
        f.latency_ms = Some(latency);
    });
    let (config, dir) = common::test_config(Backend::Sqlite).await.unwrap();
    let mut nc = evm_network(vec![double.url.clone()], &token, 18);
    nc.start_block = Some(1);
    nc.max_block_range = None;
    nc.request_timeout_secs = Some(10);
    let app = spawn_watching(config, dir, "bsc", nc).await;
    let (scanned, secs) = measure_catch_up(&app, "bsc", head - 2).await;
    let rows = chain_support::transfers(&app.state.db, "bsc").await;
    assert_eq!(
        rows.len(),
        usize::try_from(sent).unwrap(),
        "every transfer found"
    );
    let requests = double.requests.load(std::sync::atomic::Ordering::SeqCst);
    let refused = double
        .logs_refused
        .load(std::sync::atomic::Ordering::SeqCst);
    println!(
        "BENCH catch-up BSC day: {scanned} blocks ({sent} transfers) in {secs:.2} s = {:.0} blocks/s through a double answering in {latency} ms and capping eth_getLogs at 1,000 blocks ({requests} requests, {refused} ranges refused)",
        rate(scanned, secs)
    );
    app.stop().await;
}

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

/// Catch-up: a 10,000-block backlog with transfers scattered in it, the watcher starting at
/// cursor 0; time until the cursor reaches the confirmed head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run tools/bench_chain.sh"]
async fn bench_catch_up() {
    let blocks = env_u64("BENCH_BLOCKS", 10_000);
    let range = env_u64("BENCH_RANGE", 1_000);
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let token = anvil.deploy_token(6).await;
    let transfers = 20u64;
    let mut sent = 0;
    while anvil.block_number().await < blocks {
        if sent < transfers {
            anvil
                .transfer(&token, ACCOUNTS[1], 1_000_000 + u128::from(sent))
                .await;
            sent += 1;
        }
        anvil.mine(blocks / transfers).await;
    }
    let head = i64::try_from(anvil.block_number().await).unwrap();
    let (mut config, dir) = common::test_config(Backend::Sqlite).await.unwrap();
    let mut nc = evm_network(vec![anvil.url.clone()], &token, 6);
    nc.start_block = Some(1);
    nc.max_block_range = Some(range);
    config.networks.insert("ethereum".into(), nc);
    // The wallet exists before the watcher starts (it watches wallets of the database).
    let db = epusdt::app::open_database(&config).await.unwrap();
    epusdt::service::wallet::add(
        &db,
        &epusdt::domain::network::Networks::presets(),
        "ethereum",
        ACCOUNTS[1],
        None,
        "a1",
    )
    .await
    .unwrap();
    db.close().await.unwrap();
    let started = Instant::now();
    let app = common::spawn_with(config, dir).await;
    chain_support::wait_cursor(&app, "ethereum", head - 2, 600).await;
    let took = started.elapsed();
    let rows = chain_support::transfers(&app.state.db, "ethereum").await;
    assert_eq!(
        rows.len(),
        usize::try_from(sent).unwrap(),
        "every transfer found"
    );
    println!(
        "BENCH catch-up: {} blocks ({sent} transfers) in {:.2} s = {:.0} blocks/s (max_block_range={range}, SQLite, anvil)",
        head - 2,
        took.as_secs_f64(),
        (head - 2) as f64 / took.as_secs_f64()
    );
    app.stop().await;
}

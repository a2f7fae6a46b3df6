//! Measurements (tools/bench_chain.sh), ignored by default. The catch-up figures are
//! benches/catchup.rs (`cargo bench --bench catchup`: release, without this test binary).
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

//! The EVM watcher's log scanning: replayed and capped `eth_getLogs` ranges, rate limits, lagging log indexes, failover URLs on another chain and the scan lease.
use super::*;

/// Transfers without an order are recorded (unmatched), two logs in one transaction are two
/// transfers, and scanning the whole range again changes nothing.
async fn replaying_a_range_is_a_noop(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |_, _| {}).await else {
        return;
    };
    let (trade_id, amount, address) =
        create_order(&s.app, "P-1", "100", "usdt.erc20", &s.notify).await;
    let tx = s.pay(&address, &amount, 6).await;
    s.expect_paid(&trade_id, &tx, 20).await;
    s.app.wait_delivered(&trade_id, 20).await;
    // No order for these: recorded as unmatched, one row per log.
    s.anvil.transfer(&s.token, &s.wallet, 1_234_567).await;
    let (multi, block) = s
        .anvil
        .multi_transfer(
            &s.token,
            &[(&s.wallet, 5), (ACCOUNTS[2], 6), (&s.wallet, 7)],
        )
        .await;
    s.anvil.mine(2).await;
    chain_support::wait_cursor(&s.app, "ethereum", i64::try_from(block).unwrap(), 20).await;
    let rows = chain_support::transfers(&s.app.state.db, "ethereum").await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    let multi_rows: Vec<_> = rows.iter().filter(|t| t.tx_hash == multi).collect();
    assert_eq!(multi_rows.len(), 2, "two logs to the wallet in one tx");
    assert_ne!(multi_rows[0].log_index, multi_rows[1].log_index);
    assert!(
        rows.iter()
            .filter(|t| t.tx_hash != tx)
            .all(|t| t.kind == "unmatched")
    );

    // Rewind the cursor to the start of the chain: the replay is a no-op. The proof is in the
    // database (rows and order unchanged) and in the ranges the node was asked for after the
    // rewind (the payment's block was scanned again), not in process-wide metrics that the
    // other backend's copy of this test also moves.
    let paid_block =
        u64::try_from(rows.iter().find(|t| t.tx_hash == tx).unwrap().block_number).unwrap();
    let head = i64::try_from(s.anvil.block_number().await).unwrap();
    let asked_before = s.double.logs_ranges.lock().unwrap().len();
    use sea_orm::ConnectionTrait;
    s.app
        .state
        .db
        .execute_unprepared(
            "UPDATE chain_cursors SET block_number = 0, block_hash = '' WHERE network = 'ethereum'",
        )
        .await
        .unwrap();
    common::eventually(20, "the watcher to rescan the payment's block", || async {
        let ranges = s.double.logs_ranges.lock().unwrap().clone();
        ranges[asked_before..]
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&paid_block))
            .then_some(())
    })
    .await;
    chain_support::wait_cursor(&s.app, "ethereum", head - 2, 20).await;
    let key = |t: &epusdt::store::entities::transfer::Model| {
        (
            t.id,
            t.tx_hash.clone(),
            t.log_index,
            t.kind.clone(),
            t.order_id,
            t.amount.clone(),
        )
    };
    let mut before: Vec<_> = rows.iter().map(key).collect();
    let mut again: Vec<_> = chain_support::transfers(&s.app.state.db, "ethereum")
        .await
        .iter()
        .map(key)
        .collect();
    before.sort();
    again.sort();
    assert_eq!(again, before, "the replay changed the recorded transfers");
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 2);
    assert_eq!(s.merchant.received().len(), 1, "no second callback");
    s.app.stop().await;
}
on_sqlite_and_postgres!(replaying_a_range_is_a_noop);

/// Mines `blocks` blocks every `every` until the returned flag is set (a chain that keeps
/// moving).
fn mine_steadily(
    anvil_url: String,
    blocks: u64,
    every: Duration,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let params = json!([format!("{blocks:#x}")]);
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = client
                .post(&anvil_url)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": params}))
                .send()
                .await;
            tokio::time::sleep(every).await;
        }
    });
    stop
}

/// Confirmed blocks the watcher has not scanned yet (anvil's head − 2 confirmations − cursor).
async fn lag(s: &Setup, network: &str) -> i64 {
    let head = i64::try_from(s.anvil.block_number().await).unwrap();
    let cursor = chain_support::cursor(&s.app.state.db, network)
        .await
        .unwrap_or(-1);
    head - 2 - cursor
}

/// Samples the lag for `secs` and returns the largest seen.
async fn max_lag(s: &Setup, network: &str, secs: u64) -> i64 {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut worst = 0;
    while Instant::now() < until {
        worst = worst.max(lag(s, network).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    worst
}

/// A public BSC-like endpoint refuses `eth_getLogs` over 10 blocks with a JSON-RPC error in
/// HTTP 200 and no hint, while blocks keep coming: the watcher shrinks its range at once (no
/// back-off), stays under the cap, keeps up with the chain and credits the payment in time.
async fn capped_get_logs_range_keeps_up(backend: Backend) {
    capped_range(backend, (-32000, "block range is too large"), 40).await
}
on_sqlite_and_postgres!(capped_get_logs_range_keeps_up);

/// The same with BSC's own text, which names the cap: the watcher takes the hint and is
/// refused once, not again and again on its way down.
async fn capped_get_logs_range_takes_the_providers_hint(backend: Backend) {
    capped_range(backend, (-32000, "exceed maximum block range: 10"), 1).await
}
on_sqlite_and_postgres!(capped_get_logs_range_takes_the_providers_hint);

async fn capped_range(backend: Backend, error: (i64, &str), max_refused: u64) {
    let Some(s) = setup(backend, 18, "bsc", |_, _| {}).await else {
        return;
    };
    s.double.set(|f| {
        f.max_logs_range = Some(10);
        f.range_error = Some((error.0, error.1.into()));
    });
    // A 60-block backlog, then a block every 150 ms.
    s.anvil.mine(60).await;
    let stop = mine_steadily(s.anvil.url.clone(), 1, Duration::from_millis(150));
    let (trade_id, amount, address) =
        create_order(&s.app, "C-1", "100", "usdt.bep20", &s.notify).await;
    let (tx, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 18))
        .await;
    let calls = s.merchant.wait_for(1, 30).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    let worst = max_lag(&s, "bsc", 8).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = s
        .double
        .logs_refused
        .load(std::sync::atomic::Ordering::SeqCst);
    let served = s
        .double
        .logs_served
        .load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "capped range: worst lag {worst} blocks, eth_getLogs served {served}, refused {refused}"
    );
    assert!(
        worst <= 40,
        "the watcher fell {worst} blocks behind a chain it can keep up with"
    );
    assert!(
        (1..=max_refused).contains(&refused),
        "{refused} refused eth_getLogs (served {served}): the watcher keeps probing past the cap"
    );
    let h = health(&s.app).await;
    assert_eq!(h["chains"]["bsc"]["role"], "active", "{h}");
    s.app.stop().await;
}

/// A balancer that answers every second `eth_getLogs` with HTTP 502 during a 200-block
/// catch-up: each round advances the cursor before it fails, so the back-off must start over
/// after that progress instead of growing to its 30 s maximum (the catch-up then takes
/// minutes and the payment at its end waits).
async fn failures_after_progress_do_not_escalate_back_off(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |nc, _| {
        nc.start_block = Some(1);
        nc.max_block_range = Some(20);
        // No lease renewal (a `Continue` round) within the test to reset the count instead.
        nc.lease_ttl_secs = Some(600);
    })
    .await
    else {
        return;
    };
    s.double.set(|f| f.fail_every_nth_logs = Some(2));
    s.anvil.mine(200).await;
    let (trade_id, amount, address) =
        create_order(&s.app, "K-1", "100", "usdt.erc20", &s.notify).await;
    let (tx, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 6))
        .await;
    s.anvil.mine(2).await;
    let started = Instant::now();
    let calls = s.merchant.wait_for(1, 30).await;
    eprintln!(
        "failures after progress: 200-block catch-up with every second eth_getLogs failing took {:?}",
        started.elapsed()
    );
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    s.app.stop().await;
}
on_sqlite_and_postgres!(failures_after_progress_do_not_escalate_back_off);

/// JSON-RPC errors inside HTTP 200 that mean "slow down" (Infura's -32005 daily quota) are a
/// rate limit, shown as such in /health, not an outage; a 429 with Retry-After too. Nothing
/// advances meanwhile and the payment is credited when the provider answers again.
async fn rate_limits_in_http_200_and_429(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |_, _| {}).await else {
        return;
    };
    let (trade_id, amount, address) =
        create_order(&s.app, "Q-1", "100", "usdt.erc20", &s.notify).await;
    for fault in ["json-rpc", "429"] {
        s.double.set(|f| match fault {
            "json-rpc" => {
                f.rpc_error = Some((
                    -32005,
                    "daily request count exceeded, request rate limited".into(),
                ))
            }
            _ => f.too_many_requests = Some(1),
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let error = loop {
            let h = health(&s.app).await;
            if let Some(e) = h["chains"]["ethereum"]["error"]
                .as_str()
                .filter(|e| e.starts_with("rate limited:"))
            {
                break e.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{fault}: the rate limit never showed in /health; last: {}",
                h["chains"]["ethereum"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if fault == "json-rpc" {
            assert!(error.contains("daily request count exceeded"), "{error}");
        }
        s.double.set(|f| *f = Default::default());
        // Recovered (its back-off reset) before the next fault, so each phase starts alike.
        common::eventually(60, "the watcher to recover from the rate limit", || async {
            let h = health(&s.app).await;
            h["chains"]["ethereum"]["error"].is_null().then_some(())
        })
        .await;
    }
    let tx = s.pay(&address, &amount, 6).await;
    s.expect_paid(&trade_id, &tx, 30).await;
    s.app.stop().await;
}
on_sqlite_and_postgres!(rate_limits_in_http_200_and_429);

/// A provider whose log index lags the headers and head it serves (a balancer backend still
/// indexing): `eth_getLogs` answers `[]` for the newest blocks. The payment in such a block
/// must not be skipped: the cursor stays below it until the index has it.
async fn lagging_log_index_never_skips_a_payment(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |_, _| {}).await else {
        return;
    };
    s.anvil.mine(3).await;
    let head = s.anvil.block_number().await;
    chain_support::wait_cursor(&s.app, "ethereum", i64::try_from(head).unwrap() - 2, 20).await;
    let (trade_id, amount, address) =
        create_order(&s.app, "I-1", "100", "usdt.erc20", &s.notify).await;
    s.double.set(|f| f.logs_lag_at = Some(head));
    let (tx, block) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 6))
        .await;
    s.anvil.mine(5).await;
    common::eventually(20, "the watcher to ask for the payment's block", || async {
        let ranges = s.double.logs_ranges.lock().unwrap().clone();
        ranges
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&block))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cursor = chain_support::cursor(&s.app.state.db, "ethereum")
        .await
        .unwrap();
    assert!(
        cursor < i64::try_from(block).unwrap(),
        "cursor {cursor} moved past the payment in block {block} on an answer from a log index that lacked it"
    );
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    let h = health(&s.app).await;
    assert!(
        h["chains"]["ethereum"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("log index lags")),
        "{h}"
    );
    // The index catches up: the payment is found.
    s.double.set(|f| *f = Default::default());
    let calls = s.merchant.wait_for(1, 30).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    s.app.stop().await;
}
on_sqlite_and_postgres!(lagging_log_index_never_skips_a_payment);

/// Two URLs, the second on another chain (chain id 999, with the same token at the same
/// address and a payment to our wallet). When the first goes down the second must be refused
/// (named in /health), nothing credited from it, and scanning resumes when the first is back.
async fn failover_url_on_another_chain_is_refused(backend: Backend) {
    let Some(right) = Anvil::start().await else {
        return;
    };
    let Some(wrong) = Anvil::start_with_chain_id(999).await else {
        return;
    };
    let token = right.deploy_token(6).await;
    assert_eq!(
        wrong.deploy_token(6).await,
        token,
        "same deployer, same nonce, same address"
    );
    let a = Proxy::start(right.port, true).await;
    // Down at start-up (a reachable URL on another chain refuses the start instead).
    let b = Proxy::start(wrong.port, false).await;
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.networks.insert(
            "ethereum".into(),
            evm_network(vec![a.url.clone(), b.url.clone()], &token, 6),
        );
    })
    .await
    else {
        return;
    };
    let wallet = receive_on_anvil_account(&app, "ethereum").await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let head = i64::try_from(right.block_number().await).unwrap();
    chain_support::wait_cursor(&app, "ethereum", head - 2, 20).await;

    let (trade_id, amount, address) =
        create_order(&app, "W-1", "100", "usdt.erc20", &format!("{murl}/n")).await;
    assert_eq!(address, wallet);
    b.set_up(true);
    a.set_up(false);
    // The other chain pays the order's exact amount and moves on past our cursor.
    wrong.transfer(&token, &address, units(&amount, 6)).await;
    wrong.mine(50).await;
    let label = epusdt::redact::rpc_url(&b.url);
    let error = common::eventually(20, "the refused URL to show in /health", || async {
        let h = health(&app).await;
        h["chains"]["ethereum"]["error"]
            .as_str()
            .filter(|e| e.contains("chain id 999"))
            .map(String::from)
    })
    .await;
    assert!(error.contains(&label), "{error}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 1);
    assert!(
        chain_support::transfers(&app.state.db, "ethereum")
            .await
            .is_empty()
    );
    assert!(merchant.received().is_empty());
    let cursor = chain_support::cursor(&app.state.db, "ethereum")
        .await
        .unwrap();
    assert!(cursor <= head, "cursor {cursor} moved on the wrong chain");

    // The right chain's payment, found when its URL is back.
    let (tx, _) = right.transfer(&token, &address, units(&amount, 6)).await;
    right.mine(2).await;
    a.set_up(true);
    let calls = merchant.wait_for(1, 40).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    let rows = chain_support::transfers(&app.state.db, "ethereum").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].tx_hash, tx);
    app.stop().await;
}
on_sqlite_and_postgres!(failover_url_on_another_chain_is_refused);

/// A failover URL on another chain that answers at start-up refuses the start, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reachable_failover_url_on_another_chain_refuses_to_start() {
    let Some(right) = Anvil::start().await else {
        return;
    };
    let Some(wrong) = Anvil::start_with_chain_id(999).await else {
        return;
    };
    let token = right.deploy_token(6).await;
    wrong.deploy_token(6).await;
    let (mut config, _dir) = common::test_config(Backend::Sqlite).await.unwrap();
    config.networks.insert(
        "ethereum".into(),
        evm_network(vec![right.url.clone(), wrong.url.clone()], &token, 6),
    );
    let err = match epusdt::App::build(config).await {
        Ok(_) => panic!("must refuse to start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&epusdt::redact::rpc_url(&wrong.url))
            && err.contains("it serves chain id 999 but networks.ethereum.chain_id is 31337"),
        "{err}"
    );
}

/// Two gateways on one database: one scans (holds the lease), the other stands by and takes
/// over when the first stops; the payment made after the hand-over is credited once.
async fn one_instance_scans_the_other_takes_over(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |nc, _| {
        nc.lease_ttl_secs = Some(5);
    })
    .await
    else {
        return;
    };
    let second = common::spawn_with(s.app.config.clone(), s.app.dir.clone()).await;
    let roles = common::eventually(10, "one active and one standby watcher", || async {
        let a = health(&s.app).await["chains"]["ethereum"]["role"].clone();
        let b = health(&second).await["chains"]["ethereum"]["role"].clone();
        let mut r = [a.as_str()?.to_string(), b.as_str()?.to_string()];
        r.sort();
        (r == ["active", "standby"]).then_some(a)
    })
    .await;
    let (active, standby) = if roles == "active" {
        (s.app, second)
    } else {
        (second, s.app)
    };
    // The standby sees the scanning instance's cursor through the database.
    assert!(
        health(&standby).await["chains"]["ethereum"]["cursor"]
            .as_i64()
            .is_some()
    );
    active.stop().await;
    common::eventually(10, "the standby to take over", || async {
        (health(&standby).await["chains"]["ethereum"]["role"] == "active").then_some(())
    })
    .await;
    let (trade_id, amount, address) =
        create_order(&standby, "H-1", "100", "usdt.erc20", &s.notify).await;
    let (tx, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 6))
        .await;
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    assert_eq!(
        chain_support::transfers(&standby.state.db, "ethereum")
            .await
            .len(),
        1
    );
    standby.stop().await;
}
on_sqlite_and_postgres!(one_instance_scans_the_other_takes_over);

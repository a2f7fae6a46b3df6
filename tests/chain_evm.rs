//! EVM chain watcher end to end on a real anvil node with a real ERC-20 (tests/fixtures): an
//! order created over HTTP, paid on chain, confirmed, and exactly one signed callback — plus the
//! faults that lose or double money elsewhere: RPC outage and failover, a restart mid-scan, a
//! reorg above the confirmed head, a reorg below the cursor, a look-alike token contract, and a
//! replayed range. On SQLite and PostgreSQL.
//!
//! The gateway reads the node through [`RpcDouble`], which fails like public providers do when
//! told to: `eth_getLogs` range caps and rate limits as JSON-RPC errors inside HTTP 200, 429
//! with Retry-After, a 502 every n-th request, a log index lagging the headers; and a second
//! anvil on another chain id stands in for a misconfigured failover URL.
//!
//! anvil comes from `tools/test.sh` (npm `@foundry-rs/anvil-linux-amd64`) or `EPUSDT_ANVIL`;
//! without it these tests skip, unless `EPUSDT_TEST_REQUIRE_SERVICES=1`.
mod chain_support;
mod common;

use std::time::{Duration, Instant};

use chain_support::{ACCOUNTS, Anvil, Proxy, RpcDouble, create_order, evm_network, units};
use common::{Backend, Merchant, TestApp, borrow, json_params};
use epusdt::config::NetworkConfig;
use serde_json::{Value, json};

struct Setup {
    anvil: Anvil,
    /// The gateway's RPC URL: a JSON-RPC double in front of anvil (no faults unless set).
    double: RpcDouble,
    token: String,
    app: TestApp,
    merchant: Merchant,
    notify: String,
    /// The receive wallet (anvil account 1).
    wallet: String,
}

/// Receive on anvil account 1 instead of the harness's placeholder EVM wallet; returns it.
async fn receive_on_anvil_account(app: &TestApp, network: &str) -> String {
    epusdt::service::wallet::set_enabled(&app.state.db, common::EVM_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let wallet = ACCOUNTS[1].to_string();
    epusdt::service::wallet::add(&app.state.db, network, &wallet, None, "anvil-1")
        .await
        .expect("add wallet");
    wallet
}

/// anvil + token with `decimals` + the gateway watching `network` on it (through an
/// [`RpcDouble`], unless `tweak` sets other URLs) + a merchant server.
async fn setup(
    backend: Backend,
    decimals: u8,
    network: &str,
    tweak: impl FnOnce(&mut NetworkConfig, &Anvil),
) -> Option<Setup> {
    let anvil = Anvil::start().await?;
    let token = anvil.deploy_token(decimals).await;
    let double = RpcDouble::start(&anvil.url).await;
    let mut nc = evm_network(vec![double.url.clone()], &token, u32::from(decimals));
    tweak(&mut nc, &anvil);
    let app = common::spawn_app_with(backend, |c| {
        c.networks.insert(network.to_string(), nc);
    })
    .await?;
    let wallet = receive_on_anvil_account(&app, network).await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    Some(Setup {
        anvil,
        double,
        token,
        app,
        merchant,
        notify: format!("{murl}/notify"),
        wallet,
    })
}

async fn health(app: &TestApp) -> Value {
    app.client
        .get(app.url("/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("health json")
}

/// Checks one callback like a merchant would: signature, status, tx, trade id.
fn assert_paid_callback(body: &str, trade_id: &str, tx: &str) {
    let body: Value = serde_json::from_str(body).expect("callback json");
    assert_eq!(body["trade_id"], trade_id, "{body}");
    assert_eq!(body["status"], 2, "{body}");
    assert_eq!(body["block_transaction_id"], tx, "{body}");
    let params = json_params(&body);
    assert_eq!(
        body["signature"].as_str().expect("signature"),
        common::v1_sign(&borrow(&params), common::TOKEN),
        "callback signature"
    );
}

async fn wait_delivered(app: &TestApp, trade_id: &str) {
    common::eventually(20, "callback marked delivered", || async {
        let o = epusdt::service::order::find_by_trade_id(&app.state.db, trade_id)
            .await
            .ok()??;
        (o.callback_state == 2).then_some(())
    })
    .await;
}

async fn erc20_payment_end_to_end(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |_, _| {}).await else {
        return;
    };
    let (trade_id, amount, address) =
        create_order(&s.app, "E-1", "100", "usdt.erc20", &s.notify).await;
    assert_eq!(address, s.wallet);
    assert_eq!(amount, "13.89");
    let (tx, block) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 6))
        .await;
    let mined = Instant::now();
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    eprintln!(
        "detection latency (mined → callback, 2 confirmations mined at once, poll 100 ms): {:?}",
        mined.elapsed()
    );
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    wait_delivered(&s.app, &trade_id).await;

    // The watcher keeps scanning past the block: still exactly one callback.
    s.anvil.mine(3).await;
    chain_support::wait_cursor(&s.app, "ethereum", i64::try_from(block).unwrap() + 3, 20).await;
    assert_eq!(s.merchant.received().len(), 1, "exactly one callback");
    let rows = chain_support::transfers(&s.app.state.db, "ethereum").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].kind, "matched");
    assert_eq!(rows[0].tx_hash, tx);
    assert_eq!(rows[0].block_number, i64::try_from(block).unwrap());
    assert_eq!(rows[0].token_contract, s.token);
    assert!(rows[0].block_hash.starts_with("0x") && rows[0].block_hash.len() == 66);

    // /health shows the chain, /metrics its lag and the transfer.
    let h = health(&s.app).await;
    let eth = &h["chains"]["ethereum"];
    assert_eq!(eth["role"], "active", "{h}");
    assert!(
        eth["cursor"].as_i64().unwrap() >= i64::try_from(block).unwrap() + 3,
        "{h}"
    );
    assert!(eth["lag_blocks"].as_i64().is_some(), "{h}");
    assert!(
        eth["head"].as_u64().is_some() && eth["last_ok_unix"].as_i64().is_some(),
        "{h}"
    );
    let metrics = s
        .app
        .client
        .get(s.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Only that the series are exported: the recorder is process-wide, shared with the other
    // backends' copies of this test, so its values prove nothing about this app (the database
    // checks above do).
    for needle in [
        "epusdt_chain_lag_blocks{network=\"ethereum\"}",
        "epusdt_chain_cursor{network=\"ethereum\"}",
        "epusdt_transfers_total{network=\"ethereum\",kind=\"matched\"}",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    s.app.stop().await;
}
on_all_backends!(erc20_payment_end_to_end);

/// BSC-like token with 18 decimals.
async fn bep20_18_decimals(backend: Backend) {
    let Some(s) = setup(backend, 18, "bsc", |_, _| {}).await else {
        return;
    };
    let (trade_id, amount, address) =
        create_order(&s.app, "B-1", "100", "usdt.bep20", &s.notify).await;
    assert_eq!(amount, "13.89");
    let (tx, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 18))
        .await;
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    let rows = chain_support::transfers(&s.app.state.db, "bsc").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].amount, "13.89");
    s.app.stop().await;
}
on_sqlite_and_postgres!(bep20_18_decimals);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_decimals_or_chain_id_refuse_to_start() {
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let token = anvil.deploy_token(6).await;
    for (nc, needle) in [
        (
            evm_network(vec![anvil.url.clone()], &token, 18),
            "networks.ethereum.decimals is 18 but the token contract",
        ),
        (
            NetworkConfig {
                chain_id: Some(1),
                ..evm_network(vec![anvil.url.clone()], &token, 6)
            },
            "it serves chain id 31337 but networks.ethereum.chain_id is 1",
        ),
    ] {
        let (mut config, _dir) = common::test_config(Backend::Sqlite).await.unwrap();
        config.networks.insert("ethereum".into(), nc);
        let err = match epusdt::App::build(config).await {
            Ok(_) => panic!("must refuse to start"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{err}");
    }
}

/// The first URL is dead: the watcher fails over to the second and misses nothing.
async fn failover_to_the_next_rpc_url(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |nc, anvil| {
        nc.rpc_urls = vec!["http://127.0.0.1:1/dead".into(), anvil.url.clone()];
    })
    .await
    else {
        return;
    };
    let (trade_id, amount, address) =
        create_order(&s.app, "F-1", "100", "usdt.erc20", &s.notify).await;
    let (tx, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 6))
        .await;
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    s.app.stop().await;
}
on_sqlite_and_postgres!(failover_to_the_next_rpc_url);

/// The only RPC goes down after the watcher started; a payment and 60 blocks happen during the
/// outage; nothing advances meanwhile and the payment is found when the RPC is back.
async fn rpc_outage_then_back(backend: Backend) {
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let proxy = Proxy::start(anvil.port, true).await;
    let token = anvil.deploy_token(6).await;
    anvil.mine(5).await;
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.networks.insert(
            "ethereum".into(),
            evm_network(vec![proxy.url.clone()], &token, 6),
        );
    })
    .await
    else {
        return;
    };
    receive_on_anvil_account(&app, "ethereum").await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let head = i64::try_from(anvil.block_number().await).unwrap();
    chain_support::wait_cursor(&app, "ethereum", head - 2, 20).await;

    proxy.set_up(false);
    let (trade_id, amount, address) =
        create_order(&app, "O-1", "100", "usdt.erc20", &format!("{murl}/n")).await;
    let (tx, block) = anvil.transfer(&token, &address, units(&amount, 6)).await;
    anvil.mine(60).await;
    // The watcher notices the outage (an error in /health) and advances nothing.
    common::eventually(20, "the outage to show in /health", || async {
        let h = health(&app).await;
        h["chains"]["ethereum"]["error"].as_str().map(String::from)
    })
    .await;
    let stuck = chain_support::cursor(&app.state.db, "ethereum")
        .await
        .unwrap();
    assert!(
        stuck < i64::try_from(block).unwrap(),
        "cursor {stuck} passed the payment block during the outage"
    );
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 1);
    assert!(merchant.received().is_empty());

    proxy.set_up(true);
    let calls = merchant.wait_for(1, 30).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    let h = health(&app).await;
    assert!(h["chains"]["ethereum"]["error"].is_null(), "{h}");
    app.stop().await;
}
on_sqlite_and_postgres!(rpc_outage_then_back);

/// Payments spread over a 300-block backlog; the gateway is stopped while it scans (slowed by
/// a proxy, 5 blocks per range) and restarted on the same database: every order is credited,
/// each exactly once, and each merchant gets one callback.
async fn restart_mid_scan(backend: Backend) {
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let proxy = Proxy::start(anvil.port, true).await;
    let token = anvil.deploy_token(6).await;
    let Some(app) = common::spawn_app_with(backend, |c| {
        let mut nc = evm_network(vec![proxy.url.clone()], &token, 6);
        nc.max_block_range = Some(5);
        c.networks.insert("ethereum".into(), nc);
    })
    .await
    else {
        return;
    };
    receive_on_anvil_account(&app, "ethereum").await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let head = i64::try_from(anvil.block_number().await).unwrap();
    chain_support::wait_cursor(&app, "ethereum", head - 2, 20).await;
    let start = chain_support::cursor(&app.state.db, "ethereum")
        .await
        .unwrap();

    // Build the backlog while the watcher cannot reach the node.
    proxy.set_up(false);
    let mut paid = Vec::new();
    for i in 0..5 {
        let (trade_id, amount, address) = create_order(
            &app,
            &format!("R-{i}"),
            "100",
            "usdt.erc20",
            &format!("{murl}/n"),
        )
        .await;
        let (tx, _) = anvil.transfer(&token, &address, units(&amount, 6)).await;
        anvil.mine(60).await;
        paid.push((trade_id, tx));
    }
    let target = i64::try_from(anvil.block_number().await).unwrap() - 2;
    proxy.set_delay_ms(4);
    proxy.set_up(true);
    chain_support::wait_cursor(&app, "ethereum", start + 100, 30).await;
    let config = app.config.clone();
    let dir = app.dir.clone();
    app.stop().await;
    let stopped_at = {
        let db = epusdt::store::connect(&config.effective_database_url())
            .await
            .unwrap();
        let c = chain_support::cursor(&db, "ethereum").await.unwrap();
        db.close().await.ok();
        c
    };
    assert!(
        stopped_at < target,
        "stopped at {stopped_at}, not mid-scan (target {target})"
    );

    proxy.set_delay_ms(0);
    let app = common::spawn_with(config, dir).await;
    chain_support::wait_cursor(&app, "ethereum", target, 30).await;
    let calls = merchant.wait_for(paid.len(), 30).await;
    for (trade_id, tx) in &paid {
        assert_eq!(
            chain_support::order_status(&app, trade_id).await,
            2,
            "{trade_id} paid"
        );
        let n = calls
            .iter()
            .filter(|c| c.body.contains(trade_id.as_str()))
            .count();
        assert_eq!(n, 1, "one callback for {trade_id}");
        let rows: Vec<_> = chain_support::transfers(&app.state.db, "ethereum")
            .await
            .into_iter()
            .filter(|t| &t.tx_hash == tx)
            .collect();
        assert_eq!(rows.len(), 1, "transfer {tx} recorded once");
        assert_eq!(rows[0].kind, "matched");
    }
    assert_eq!(chain_support::transfer_count(&app.state.db).await, 5);
    app.stop().await;
}
on_sqlite_and_postgres!(restart_mid_scan);

/// A payment in a block above the confirmed head that a reorg removes is never credited; the
/// next payment still is.
async fn reorg_above_confirmed_head_credits_nothing(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |_, _| {}).await else {
        return;
    };
    let (trade_a, amount_a, address) =
        create_order(&s.app, "G-A", "100", "usdt.erc20", &s.notify).await;
    let (trade_b, amount_b, _) = create_order(&s.app, "G-B", "100", "usdt.erc20", &s.notify).await;
    let (tx_a, block_a) = s
        .anvil
        .transfer(&s.token, &address, units(&amount_a, 6))
        .await;
    // The watcher has seen the block as head (unconfirmed) before it disappears.
    common::eventually(10, "the watcher to see the new head", || async {
        let h = health(&s.app).await;
        h["chains"]["ethereum"]["head"]
            .as_u64()
            .filter(|n| *n >= block_a)
    })
    .await;
    s.anvil.rpc("anvil_reorg", json!([1, []])).await;
    assert!(
        s.anvil
            .rpc("eth_getTransactionReceipt", json!([tx_a]))
            .await
            .is_null(),
        "the reorg removed the payment"
    );
    s.anvil.mine(3).await;
    let (tx_b, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount_b, 6))
        .await;
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_b, &tx_b);
    assert_eq!(
        chain_support::order_status(&s.app, &trade_a).await,
        1,
        "A still waiting"
    );
    let rows = chain_support::transfers(&s.app.state.db, "ethereum").await;
    assert!(rows.iter().all(|t| t.tx_hash != tx_a), "{rows:?}");
    assert_eq!(rows.len(), 1);
    assert_eq!(s.merchant.received().len(), 1);
    s.app.stop().await;
}
on_sqlite_and_postgres!(reorg_above_confirmed_head_credits_nothing);

/// A reorg deeper than the confirmations replaces the cursor block: the watcher notices the
/// hash change, steps back and rescans, and credits the payment the new chain contains.
async fn deep_reorg_steps_back_and_rescans(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |_, _| {}).await else {
        return;
    };
    s.anvil.mine(10).await;
    let head = s.anvil.block_number().await;
    chain_support::wait_cursor(&s.app, "ethereum", i64::try_from(head).unwrap() - 2, 20).await;
    let before = chain_support::cursor(&s.app.state.db, "ethereum")
        .await
        .unwrap();
    let (trade_id, amount, address) =
        create_order(&s.app, "D-1", "100", "usdt.erc20", &s.notify).await;
    // Replace the last 6 blocks (below the cursor) with ones that contain the payment.
    let data = format!(
        "0xa9059cbb{:0>64}{:064x}",
        address.trim_start_matches("0x"),
        units(&amount, 6)
    );
    let tx = json!({"from": ACCOUNTS[0], "to": s.token, "data": data, "gas": "0x200000"});
    s.anvil.rpc("anvil_reorg", json!([6, [[tx, 1]]])).await;
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    let body: Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(body["trade_id"], trade_id);
    let rows = chain_support::transfers(&s.app.state.db, "ethereum").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].kind, "matched");
    assert!(
        rows[0].block_number <= before,
        "found at block {} below the old cursor {before}: only a step back rescans there",
        rows[0].block_number
    );
    s.app.stop().await;
}
on_sqlite_and_postgres!(deep_reorg_steps_back_and_rescans);

/// A Transfer event with the right amount to the right address from another token contract
/// is ignored.
async fn lookalike_contract_is_ignored(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |_, _| {}).await else {
        return;
    };
    let fake = s.anvil.deploy_token(6).await;
    let (trade_a, amount_a, address) =
        create_order(&s.app, "L-A", "100", "usdt.erc20", &s.notify).await;
    let (trade_b, amount_b, _) = create_order(&s.app, "L-B", "100", "usdt.erc20", &s.notify).await;
    let (fake_tx, _) = s.anvil.transfer(&fake, &address, units(&amount_a, 6)).await;
    let (tx_b, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount_b, 6))
        .await;
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_b, &tx_b);
    assert_eq!(chain_support::order_status(&s.app, &trade_a).await, 1);
    let rows = chain_support::transfers(&s.app.state.db, "ethereum").await;
    assert!(
        rows.iter()
            .all(|t| t.tx_hash != fake_tx && t.token_contract == s.token),
        "{rows:?}"
    );
    assert_eq!(rows.len(), 1);
    s.app.stop().await;
}
on_sqlite_and_postgres!(lookalike_contract_is_ignored);

/// Transfers without an order are recorded (unmatched), two logs in one transaction are two
/// transfers, and scanning the whole range again changes nothing.
async fn replaying_a_range_is_a_noop(backend: Backend) {
    let Some(s) = setup(backend, 6, "ethereum", |_, _| {}).await else {
        return;
    };
    let (trade_id, amount, address) =
        create_order(&s.app, "P-1", "100", "usdt.erc20", &s.notify).await;
    let (tx, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 6))
        .await;
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    wait_delivered(&s.app, &trade_id).await;
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
    let (tx, _) = s
        .anvil
        .transfer(&s.token, &address, units(&amount, 6))
        .await;
    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 30).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
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

// ---------------------------------------------------------------------------------------------
// Measurements (tools/bench_chain.sh): `cargo test --test chain_evm -- --ignored --nocapture`.

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
        wait_delivered(&s.app, &trade_id).await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (what, samples) in [
        ("detected (order paid)", &mut detect),
        ("callback received", &mut callback),
    ] {
        samples.sort();
        println!(
            "BENCH latency mined → {what} (poll_interval_ms={poll}, confirmations=2 mined at once, {rounds} payments): min {:.0} ms, median {:.0} ms, max {:.0} ms",
            ms(samples[0]),
            ms(samples[samples.len() / 2]),
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
    epusdt::service::wallet::add(&db, "ethereum", ACCOUNTS[1], None, "a1")
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

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
use crate::chain_support;
use crate::common;

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

impl Setup {
    /// The payer sends `amount` of the token (`decimals`) to `address`; two blocks confirm it.
    /// Returns the transaction hash.
    async fn pay(&self, address: &str, amount: &str, decimals: u32) -> String {
        let (tx, _) = self
            .anvil
            .transfer(&self.token, address, units(amount, decimals))
            .await;
        self.anvil.mine(2).await;
        tx
    }

    /// Waits up to `secs` for the merchant's first callback and checks it is the signed paid
    /// callback of `trade_id` by `tx`.
    async fn expect_paid(&self, trade_id: &str, tx: &str, secs: u64) {
        let calls = self.merchant.wait_for(1, secs).await;
        assert_paid_callback(&calls[0].body, trade_id, tx);
    }
}

/// Receive on anvil account 1 instead of the harness's placeholder EVM wallet; returns it.
async fn receive_on_anvil_account(app: &TestApp, network: &str) -> String {
    epusdt::service::wallet::set_enabled(&app.state.db, common::EVM_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let wallet = ACCOUNTS[1].to_string();
    epusdt::service::wallet::add(
        &app.state.db,
        &epusdt::domain::network::Networks::presets(),
        network,
        &wallet,
        None,
        "anvil-1",
    )
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
    s.app.wait_delivered(&trade_id, 20).await;

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
    let tx = s.pay(&address, &amount, 18).await;
    s.expect_paid(&trade_id, &tx, 20).await;
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
    let tx = s.pay(&address, &amount, 6).await;
    s.expect_paid(&trade_id, &tx, 20).await;
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
    let tx_b = s.pay(&address, &amount_b, 6).await;
    s.expect_paid(&trade_b, &tx_b, 20).await;
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
    let tx_b = s.pay(&address, &amount_b, 6).await;
    s.expect_paid(&trade_b, &tx_b, 20).await;
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

mod bench;
mod get_logs;

//! Reorgs deeper than the step-back, and catching up over a long backlog.
use super::*;

// ---------------------------------------------------------------------------------------------
// Reorgs deeper than the step-back, with an RPC failure in the middle of the step back.

/// The EVM scanner, with `block_hash(fail_block)` failing `fails` times (an RPC error in the
/// middle of the reorg check), counting the injected failures.
struct Flaky {
    inner: epusdt::chain::evm::EvmScanner,
    fail_block: Arc<AtomicU64>,
    fails: Arc<AtomicU32>,
    injected: Arc<AtomicU32>,
}

impl epusdt::chain::Scanner for Flaky {
    async fn prepare(&self) -> Result<(), epusdt::chain::ScanError> {
        self.inner.prepare().await
    }
    async fn heads(&self) -> Result<epusdt::chain::Heads, epusdt::chain::ScanError> {
        self.inner.heads().await
    }
    async fn block_hash(&self, number: u64) -> Result<String, epusdt::chain::ScanError> {
        if number == self.fail_block.load(Ordering::SeqCst)
            && self
                .fails
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(epusdt::chain::ScanError::Unavailable(
                "injected: connection reset".into(),
            ));
        }
        self.inner.block_hash(number).await
    }
    async fn scan(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<epusdt::chain::ScanBatch, epusdt::chain::ScanError> {
        self.inner.scan(from, to, watched).await
    }
}

async fn audit_targets(db: &sea_orm::DatabaseConnection, action: &str) -> Vec<String> {
    use epusdt::store::entities::audit_log;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq(action))
        .all(db)
        .await
        .expect("read audit log")
        .into_iter()
        .map(|e| format!("{} {}", e.target, e.details))
        .collect()
}

/// A reorg 50 blocks deep (step-back: 32) replaces the blocks of two recorded transfers (A
/// paid its order, C an odd amount) and puts order B's payment in a block below `cursor - 32`. The
/// watcher finds the fork point from its stored block hashes and rescans from there: B is
/// credited; A and C, whose blocks vanished, are raised (audit event + metric) although the
/// first `block_hash` call for A's block fails.
async fn reorg_deeper_than_the_step_back(backend: Backend) {
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let token = anvil.deploy_token(6).await;
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    epusdt::service::wallet::set_enabled(&app.state.db, common::EVM_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let wallet = ACCOUNTS[1];
    epusdt::service::wallet::add(
        &app.state.db,
        &epusdt::domain::network::Networks::presets(),
        "ethereum",
        wallet,
        None,
        "anvil-1",
    )
    .await
    .expect("wallet");
    let (merchant, murl) = common::Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");
    // Both orders exist before every block that matters (block times are never earlier).
    let (trade_a, amount_a, address) =
        chain_support::create_order(&app, "D-A", "100", "usdt.erc20", &notify).await;
    assert_eq!(address, wallet);
    let (trade_b, amount_b, _) =
        chain_support::create_order(&app, "D-B", "100", "usdt.erc20", &notify).await;
    anvil.mine(5).await;

    // Our own watcher (the app watches no network), on a scanner that can fail on demand.
    let mut config = app.config.clone();
    config.networks.insert(
        "ethereum".into(),
        chain_support::evm_network(vec![anvil.url.clone()], &token, 6),
    );
    let settings = config.chains().expect("chains").remove(0);
    let fail_block = Arc::new(AtomicU64::new(u64::MAX));
    let fails = Arc::new(AtomicU32::new(0));
    let injected = Arc::new(AtomicU32::new(0));
    let scanner = Flaky {
        inner: epusdt::chain::evm::EvmScanner::new(&settings).expect("scanner"),
        fail_block: fail_block.clone(),
        fails: fails.clone(),
        injected: injected.clone(),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(
        epusdt::chain::Watcher::new(scanner, settings, &chain_support::deps(&app)).run(stop_rx),
    );
    let head = i64::try_from(anvil.block_number().await).unwrap();
    chain_support::wait_cursor(&app, "ethereum", head - 2, 20).await;

    // A pays its order in block P, C (no order) in P + 1; both confirmed in one step, so the
    // cursor never stops at P.
    let (tx_a, p) = anvil.transfer(&token, wallet, units(&amount_a, 6)).await;
    let (tx_c, _) = anvil.transfer(&token, wallet, 1_234_567).await;
    anvil.mine(2).await;
    merchant.wait_for(1, 20).await;
    assert_eq!(chain_support::order_status(&app, &trade_a).await, 2);
    anvil.mine(45).await;
    let head = anvil.block_number().await;
    chain_support::wait_cursor(&app, "ethereum", i64::try_from(head).unwrap() - 2, 20).await;
    let cursor_before = chain_support::cursor(&app.state.db, "ethereum")
        .await
        .unwrap();

    // Replace blocks P-2 ..= head; B's payment lands in P-1, 45 blocks below the cursor.
    fail_block.store(p, Ordering::SeqCst);
    fails.store(1, Ordering::SeqCst);
    let data = format!(
        "0xa9059cbb{:0>64}{:064x}",
        wallet.trim_start_matches("0x"),
        units(&amount_b, 6)
    );
    let tx_b = json!({"from": ACCOUNTS[0], "to": token, "data": data, "gas": "0x200000"});
    let depth = head - (p - 2) + 1;
    anvil.rpc("anvil_reorg", json!([depth, [[tx_b, 1]]])).await;
    for tx in [&tx_a, &tx_c] {
        assert!(
            anvil
                .rpc("eth_getTransactionReceipt", json!([tx]))
                .await
                .is_null(),
            "the reorg removed {tx}"
        );
    }
    anvil.mine(2).await;

    // B, paid below cursor - 32, is credited.
    let calls = merchant.wait_for(2, 30).await;
    assert!(calls[1].body.contains(&trade_b), "{}", calls[1].body);
    assert_eq!(chain_support::order_status(&app, &trade_b).await, 2);
    let rows = chain_support::transfers(&app.state.db, "ethereum").await;
    let b_row = rows
        .iter()
        .find(|t| t.order_id.is_some() && t.tx_hash != tx_a)
        .expect("B's transfer");
    assert!(
        b_row.block_number < cursor_before - 32,
        "B's payment at {} is below the step-back from {cursor_before}",
        b_row.block_number
    );
    // A and C vanished with their blocks: raised, despite the failed RPC call.
    let reported = common::eventually(20, "the vanished transfers to be audited", || async {
        let r = audit_targets(&app.state.db, "chain.transfer_reorged").await;
        (r.iter().any(|e| e.contains(&tx_a)) && r.iter().any(|e| e.contains(&tx_c))).then_some(r)
    })
    .await;
    assert!(
        injected.load(Ordering::SeqCst) >= 1,
        "the RPC failure happened"
    );
    eprintln!("audited: {reported:?}");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("epusdt_reorged_transfers_total{network=\"ethereum\"}"),
        "{metrics}"
    );
    // A stays paid (an operator reviews it); nothing was credited twice.
    assert_eq!(chain_support::order_status(&app, &trade_a).await, 2);
    assert_eq!(merchant.received().len(), 2);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(20), watcher)
        .await
        .expect("watcher stops")
        .expect("watcher task");
    app.stop().await;
}
on_sqlite_and_postgres!(reorg_deeper_than_the_step_back);

// ---------------------------------------------------------------------------------------------
// Catch-up correctness (the CI-sized version of tools/bench_chain.sh's 10,000-block benchmark).

/// A 1,500-block backlog with 10 transfers spread over it, scanned from block 1 in ranges of
/// 100: every transfer recorded exactly once, every order paid with one callback, the cursor
/// at the confirmed head.
async fn catch_up_over_a_1500_block_backlog(backend: Backend) {
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let proxy = chain_support::Proxy::start(anvil.port, false).await;
    let token = anvil.deploy_token(6).await;
    let Some(app) = common::spawn_app_with(backend, |c| {
        let mut nc = chain_support::evm_network(vec![proxy.url.clone()], &token, 6);
        nc.start_block = Some(1);
        nc.max_block_range = Some(100);
        c.networks.insert("ethereum".into(), nc);
        // anvil_mine moves the chain's clock 1 s per block: 1,500 blocks run 25 min ahead.
        c.order_expiration_time = 120;
    })
    .await
    else {
        return;
    };
    epusdt::service::wallet::set_enabled(&app.state.db, common::EVM_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    epusdt::service::wallet::add(
        &app.state.db,
        &epusdt::domain::network::Networks::presets(),
        "ethereum",
        ACCOUNTS[1],
        None,
        "anvil-1",
    )
    .await
    .expect("wallet");
    let (merchant, murl) = common::Merchant::start(0, "ok").await;
    // The node is unreachable while the backlog builds: orders first, then their payments,
    // 150 blocks apart (5 paid orders, 5 transfers without an order).
    let mut orders = Vec::new();
    for i in 0..5 {
        orders.push(
            chain_support::create_order(
                &app,
                &format!("C-{i}"),
                "100",
                "usdt.erc20",
                &format!("{murl}/n"),
            )
            .await,
        );
    }
    let mut txs = Vec::new();
    for i in 0..10u32 {
        let units_paid = match orders.get(i as usize / 2) {
            Some((_, amount, _)) if i % 2 == 0 => units(amount, 6),
            _ => 1_000_000 + u128::from(i),
        };
        txs.push(anvil.transfer(&token, ACCOUNTS[1], units_paid).await.0);
        anvil.mine(149).await;
    }
    let head = i64::try_from(anvil.block_number().await).unwrap();
    assert!(head >= 1_500, "{head}");
    proxy.set_up(true);
    chain_support::wait_cursor(&app, "ethereum", head - 2, 120).await;

    let rows = chain_support::transfers(&app.state.db, "ethereum").await;
    assert_eq!(rows.len(), txs.len(), "{rows:?}");
    for tx in &txs {
        assert_eq!(
            rows.iter().filter(|t| &t.tx_hash == tx).count(),
            1,
            "{tx} recorded once"
        );
    }
    let calls = merchant.wait_for(orders.len(), 30).await;
    for (trade_id, _, _) in &orders {
        assert_eq!(chain_support::order_status(&app, trade_id).await, 2);
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.body.contains(trade_id.as_str()))
                .count(),
            1,
            "one callback for {trade_id}"
        );
    }
    assert_eq!(
        rows.iter().filter(|t| t.kind == "matched").count(),
        orders.len()
    );
    assert_eq!(
        chain_support::cursor(&app.state.db, "ethereum").await,
        Some(head - 2)
    );
    app.stop().await;
}
on_sqlite_and_postgres!(catch_up_over_a_1500_block_backlog);

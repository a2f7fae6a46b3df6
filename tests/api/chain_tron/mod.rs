//! TRON watcher end to end against a FullNode HTTP API double that answers with java-tron's
//! real response shapes (tests/api/chain_support/tron_mock.rs): an order paid with a TRC-20
//! transfer gets one signed callback; failed receipts and look-alike contracts are ignored;
//! nothing above the solidified head is read. A height the node lacks (receipts `[]`, block
//! `{}`) stalls the cursor instead of being skipped — with one node, a lagging second URL, or a
//! balancer whose backends sit at different heights. The token's decimals are checked against
//! the contract; an unknown API key is a configuration error; java-tron's `{"Error": …}` fails
//! the round; rate limits back off (exponentially, and at least `Retry-After`) without
//! advancing.
use crate::chain_support;
use crate::common;

use chain_support::tron_mock::{TronMock, USDT_HEX, trc20_tx};
use common::{Backend, Merchant, TestApp, borrow, json_params};
use epusdt::{
    config::{NetworkConfig, Secret},
    domain::address::tron_from_hex,
};
use serde_json::Value;

/// The receive wallet: account id ab…ab.
const WALLET_HEX: &str = "abababababababababababababababababababab";
const PAYER_HEX: &str = "1212121212121212121212121212121212121212";

struct Setup {
    mock: TronMock,
    app: TestApp,
    merchant: Merchant,
    notify: String,
}

async fn setup(backend: Backend) -> Option<Setup> {
    let mock = TronMock::start().await;
    let url = mock.url.clone();
    start_app(backend, mock, vec![url], |_| {}).await
}

/// The gateway watching TRON through `rpc_urls` (nodes of `mock`'s chain), a receive wallet and
/// a merchant; returns once the cursor is initialised.
async fn start_app(
    backend: Backend,
    mock: TronMock,
    rpc_urls: Vec<String>,
    tweak: impl FnOnce(&mut NetworkConfig),
) -> Option<Setup> {
    let app = common::spawn_app_with(backend, |c| {
        let mut nc = NetworkConfig {
            rpc_urls,
            api_key: Some(Secret::new("test-key")),
            poll_interval_ms: Some(100),
            request_timeout_secs: Some(5),
            ..Default::default()
        };
        tweak(&mut nc);
        c.networks.insert("tron".into(), nc);
    })
    .await?;
    epusdt::service::wallet::set_enabled(&app.state.db, common::TRON_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let wallet = tron_from_hex(WALLET_HEX).expect("address");
    epusdt::service::wallet::add(
        &app.state.db,
        &epusdt::domain::network::Networks::presets(),
        "tron",
        &wallet,
        None,
        "w",
    )
    .await
    .expect("add wallet");
    let (merchant, murl) = Merchant::start(0, "ok").await;
    // Started at solidified head 100 − 20 (or at start_block − 1 = 100), then caught up to the
    // head: from here on, rounds are sequential requests until a test pushes a block.
    chain_support::wait_cursor(&app, "tron", 100, 20).await;
    Some(Setup {
        mock,
        app,
        merchant,
        notify: format!("{murl}/notify"),
    })
}

fn assert_paid_callback(body: &str, trade_id: &str, tx: &str) {
    let body: Value = serde_json::from_str(body).expect("callback json");
    assert_eq!(body["trade_id"], trade_id, "{body}");
    assert_eq!(body["status"], 2, "{body}");
    assert_eq!(body["block_transaction_id"], tx, "{body}");
    let params = json_params(&body);
    assert_eq!(
        body["signature"].as_str().expect("signature"),
        common::v1_sign(&borrow(&params), common::TOKEN)
    );
}

async fn trc20_payment_end_to_end(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return;
    };
    let (trade_id, amount, address) =
        chain_support::create_order(&s.app, "T-1", "100", "usdt.trc20", &s.notify).await;
    assert_eq!(address, tron_from_hex(WALLET_HEX).unwrap());
    let units = chain_support::units(&amount, 6);
    // Same block: a reverted transfer and a look-alike token, both with the exact amount.
    let failed = trc20_tx(
        "f0".repeat(32).as_str(),
        0,
        USDT_HEX,
        PAYER_HEX,
        WALLET_HEX,
        units,
        false,
    );
    let fake = trc20_tx(
        "fa".repeat(32).as_str(),
        0,
        "3487b63d30b5b2c87fb7ffa8bcfade38eaac1abf",
        PAYER_HEX,
        WALLET_HEX,
        units,
        true,
    );
    s.mock.push_block(vec![failed, fake], 0);
    chain_support::wait_cursor(&s.app, "tron", 101, 20).await;
    assert!(
        chain_support::transfers(&s.app.state.db, "tron")
            .await
            .is_empty()
    );

    // The real payment, first above the solidified head: not read until it is solidified.
    let txid = "c0ffee".repeat(10) + "abcd";
    let real = trc20_tx(&txid, 0, USDT_HEX, PAYER_HEX, WALLET_HEX, units, true);
    let since = s.mock.request_count();
    let block = s.mock.push_block(vec![real], 1);
    // Three rounds after the block was pushed (not since start-up), each reading the heads.
    common::eventually(10, "the watcher to poll past the payment block", || async {
        let seen = s
            .mock
            .requests_since(since)
            .iter()
            .filter(|r| r.path == "/walletsolidity/getnowblock")
            .count();
        (seen >= 3).then_some(())
    })
    .await;
    // (The unsolidified `/wallet/` API may read it for the "confirming" display only.)
    assert!(
        !s.mock.requests().iter().any(|r| {
            r.path == "/walletsolidity/gettransactioninfobyblocknum" && r.body["num"] == block
        }),
        "nothing above the solidified head is read for crediting"
    );
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    s.mock.push_block(vec![], 0);
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &txid);
    let rows = chain_support::transfers(&s.app.state.db, "tron").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].kind, "matched");
    assert_eq!(rows[0].token_contract, "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t");
    assert_eq!(rows[0].from_address, tron_from_hex(PAYER_HEX).unwrap());
    assert_eq!(rows[0].log_index, 0);
    assert_eq!(rows[0].block_number, i64::try_from(block).unwrap());
    assert_eq!(
        rows[0].block_hash,
        chain_support::tron_mock::block_id(block)
    );
    // Every request carried the API key.
    assert!(
        s.mock
            .requests()
            .iter()
            .all(|r| r.api_key.as_deref() == Some("test-key"))
    );
    s.app.stop().await;
}
on_all_backends!(trc20_payment_end_to_end);

/// The node says the solidified head is N but answers `{}` for block N: the watcher waits at
/// N − 1 (an unknown block is not an empty one) and credits the payment once the block shows.
async fn unknown_height_is_not_empty(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return;
    };
    let (trade_id, amount, _) =
        chain_support::create_order(&s.app, "T-2", "100", "usdt.trc20", &s.notify).await;
    let txid = "0d".repeat(32);
    let tx = trc20_tx(
        &txid,
        0,
        USDT_HEX,
        PAYER_HEX,
        WALLET_HEX,
        chain_support::units(&amount, 6),
        true,
    );
    let block = s.mock.with(|c| c.head + 1);
    s.mock.with(|c| c.missing = Some(block));
    s.mock.push_block(vec![tx], 0);
    s.mock.push_block(vec![], 0);
    common::eventually(
        10,
        "the watcher to ask for the missing block twice",
        || async {
            let asks = s
                .mock
                .requests()
                .iter()
                .filter(|r| {
                    r.path.ends_with("gettransactioninfobyblocknum") && r.body["num"] == block
                })
                .count();
            (asks >= 2).then_some(())
        },
    )
    .await;
    let cursor = chain_support::cursor(&s.app.state.db, "tron")
        .await
        .unwrap();
    assert!(
        cursor < i64::try_from(block).unwrap(),
        "cursor {cursor} skipped the unknown block {block}"
    );
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    let h: Value = s
        .app
        .client
        .get(s.app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        h["chains"]["tron"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not available")),
        "{h}"
    );
    s.mock.with(|c| c.missing = None);
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &txid);
    s.app.stop().await;
}
on_sqlite_and_postgres!(unknown_height_is_not_empty);

/// HTTP 429: every round fails at once, the pause between tries grows, nothing is read or
/// advanced meanwhile, and the payment is credited when the limit lifts.
async fn rate_limited_backs_off(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return;
    };
    let (trade_id, amount, _) =
        chain_support::create_order(&s.app, "T-3", "100", "usdt.trc20", &s.notify).await;
    let txid = "3a".repeat(32);
    let tx = trc20_tx(
        &txid,
        0,
        USDT_HEX,
        PAYER_HEX,
        WALLET_HEX,
        chain_support::units(&amount, 6),
        true,
    );
    let before = s.mock.requests().len();
    s.mock.with(|c| c.rate_limit_next = 5);
    s.mock.push_block(vec![tx], 0);
    let calls = s.merchant.wait_for(1, 30).await;
    assert_paid_callback(&calls[0].body, &trade_id, &txid);
    let reqs: Vec<_> = s.mock.requests().into_iter().skip(before).collect();
    let limited: Vec<_> = reqs.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 5);
    let gaps: Vec<_> = limited.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0].mul_f64(1.5)),
        "back-off must grow: {gaps:?}"
    );
    let last_limited = limited.last().unwrap().at;
    assert!(
        !reqs.iter().any(|r| r.status == 200
            && r.at < last_limited
            && r.path.ends_with("gettransactioninfobyblocknum")),
        "nothing read while rate limited"
    );
    s.app.stop().await;
}
on_sqlite_and_postgres!(rate_limited_backs_off);

/// A payment transaction of `amount` (order text) to the wallet, with id `txid`.
fn payment(txid: &str, amount: &str) -> Value {
    trc20_tx(
        txid,
        0,
        USDT_HEX,
        PAYER_HEX,
        WALLET_HEX,
        chain_support::units(amount, 6),
        true,
    )
}

/// Receipt requests for block `n` after the first `since` requests.
fn receipt_asks(mock: &TronMock, since: usize, n: u64) -> usize {
    mock.requests_since(since)
        .iter()
        .filter(|r| r.path.ends_with("gettransactioninfobyblocknum") && r.body["num"] == n)
        .count()
}

/// Two URLs: the first (up to date) answers 502 for receipts, the second is two blocks
/// behind and answers `[]` for the blocks it lacks, as java-tron does. The second URL's `[]`
/// must not pass for an empty block: the cursor stays below the payment until a node that has
/// the block answers, then the payment is credited.
async fn lagging_url_is_not_an_empty_block(backend: Backend) {
    let mock = TronMock::start().await;
    let lagging = mock.add_node(2).await;
    mock.set_node(|n| n.fail = Some((502, "gettransactioninfobyblocknum".into())));
    let urls = vec![mock.url.clone(), lagging.url.clone()];
    let Some(s) = start_app(backend, mock, urls, |nc| nc.start_block = Some(101)).await else {
        return;
    };
    let (trade_id, amount, _) =
        chain_support::create_order(&s.app, "T-L", "100", "usdt.trc20", &s.notify).await;
    let txid = "1a".repeat(32);
    let since = s.mock.request_count();
    let block = s.mock.push_block(vec![payment(&txid, &amount)], 0);
    s.mock.push_block(vec![], 0);
    let db = s.app.state.db.clone();
    common::eventually(
        20,
        "the watcher to try the payment block repeatedly (or to move past it)",
        || async {
            let cursor = chain_support::cursor(&db, "tron").await.unwrap_or(-1);
            (cursor >= i64::try_from(block).unwrap() || receipt_asks(&s.mock, since, block) >= 4)
                .then_some(())
        },
    )
    .await;
    let cursor = chain_support::cursor(&db, "tron").await.unwrap();
    assert!(
        cursor < i64::try_from(block).unwrap(),
        "cursor {cursor} moved past block {block} whose only answer was a lagging node's []"
    );
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    // The lagging node catches up: the payment is found.
    lagging.set_node(|n| n.behind = 0);
    let calls = s.merchant.wait_for(1, 40).await;
    assert_paid_callback(&calls[0].body, &trade_id, &txid);
    s.app.stop().await;
}
on_sqlite_and_postgres!(lagging_url_is_not_an_empty_block);

/// One URL in front of two backends at different heights: the watcher must never move the
/// cursor past a payment block that only the lagging backend was asked for. Samples, until
/// the payment block was asked for a few times, that the cursor never stands at or past the
/// block without its transfer (they are committed together); then the lagging backend catches
/// up and the order is paid.
async fn balanced_backends_never_skip(
    backend: Backend,
    route: impl AsyncFnOnce(&TronMock, &TronMock) -> String,
) {
    let mock = TronMock::start().await;
    let lagging = mock.add_node(0).await;
    let url = route(&mock, &lagging).await;
    let Some(s) = start_app(backend, mock, vec![url], |nc| nc.start_block = Some(101)).await else {
        return;
    };
    let (trade_id, amount, _) =
        chain_support::create_order(&s.app, "T-B", "100", "usdt.trc20", &s.notify).await;
    lagging.set_node(|n| n.behind = 1);
    let txid = "b0".repeat(32);
    let since = s.mock.request_count();
    let block = s.mock.push_block(vec![payment(&txid, &amount)], 0);
    let started = std::time::Instant::now();
    let db = s.app.state.db.clone();
    // Until the watcher has tried a few rounds since the block was pushed.
    while s.mock.requests_since(since).len() < 20
        && started.elapsed() < std::time::Duration::from_secs(20)
    {
        // Cursor first: a transfer is committed with (never after) the cursor that covers it.
        let cursor = chain_support::cursor(&db, "tron").await.unwrap_or(-1);
        let recorded = chain_support::transfers(&db, "tron")
            .await
            .iter()
            .any(|t| t.tx_hash == txid);
        assert!(
            cursor < i64::try_from(block).unwrap() || recorded,
            "cursor {cursor} passed block {block} but its payment was not recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The up-to-date backend told the watcher the block is solidified: skipping was possible.
    assert!(
        s.mock
            .requests_since(since)
            .iter()
            .any(|r| r.node == s.mock.node && r.path == "/walletsolidity/getnowblock"),
        "the watcher never learnt that block {block} is solidified"
    );
    lagging.set_node(|n| n.behind = 0);
    let calls = s.merchant.wait_for(1, 40).await;
    assert_paid_callback(&calls[0].body, &trade_id, &txid);
    s.app.stop().await;
}

/// Round-robin: each request goes to the other backend (one is a block behind).
async fn round_robin_balancer_never_skips(backend: Backend) {
    balanced_backends_never_skip(backend, async |a, b| a.balancer(&[a, b]).await).await
}
on_sqlite_and_postgres!(round_robin_balancer_never_skips);

/// A gateway sending receipts to a pool that lags and everything else to one that does not:
/// the head check passes, the receipts are `[]`, and the block (asked on the same URL) has
/// transactions — the empty answer is refused.
async fn path_routed_balancer_never_skips(backend: Backend) {
    balanced_backends_never_skip(backend, async |a, b| {
        a.path_router(&[("gettransactioninfobyblocknum", b)], a)
            .await
    })
    .await
}
on_sqlite_and_postgres!(path_routed_balancer_never_skips);

mod node_errors;

//! The "confirming" status (BEpusdt's 5): a payment seen in a block above the confirmed head is
//! shown by check-status (with its confirmations) and on the checkout page, never credited;
//! it becomes paid (one callback) only at the confirmed head, and shows waiting again when its
//! block vanishes. On a real anvil node (EVM) and the TRON FullNode double (a block above the
//! solidified head); the page in headless Chromium.
use crate::admin_auth;
use crate::chain_support;
use crate::common;

use std::{path::PathBuf, process::Command, time::Duration};

use chain_support::{
    ACCOUNTS, Anvil, create_order, evm_network, tron_mock::TronMock, tron_mock::USDT_HEX,
    tron_mock::trc20_tx, units,
};
use common::{Backend, Merchant, TestApp};
use epusdt::{domain::address::tron_from_hex, service::admin::Role};
use serde_json::{Value, json};

/// The TRON receive wallet: account id ab…ab.
const WALLET_HEX: &str = "abababababababababababababababababababab";
const PAYER_HEX: &str = "1212121212121212121212121212121212121212";

/// `data` of check-status for `trade_id`.
async fn check_status(app: &TestApp, trade_id: &str) -> Value {
    let reply = common::get_json(app, &format!("/pay/check-status/{trade_id}")).await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    reply["data"].clone()
}

/// Waits until check-status shows `status` (and, for 5, `confirmations` seen); returns it.
async fn wait_status(app: &TestApp, trade_id: &str, status: i64, seen: Option<i64>) -> Value {
    common::eventually(20, &format!("check-status {status} {seen:?}"), || async {
        let d = check_status(app, trade_id).await;
        (d["status"] == status && seen.is_none_or(|n| d["confirmations"] == n)).then_some(d)
    })
    .await
}

async fn pending_rows(app: &TestApp) -> usize {
    use epusdt::store::entities::pending_transfer;
    use sea_orm::EntityTrait;
    pending_transfer::Entity::find()
        .all(&app.state.db)
        .await
        .expect("read pending transfers")
        .len()
}

struct Evm {
    anvil: Anvil,
    token: String,
    app: TestApp,
    merchant: Merchant,
    notify: String,
    wallet: String,
}

/// anvil + token + the gateway watching `ethereum` with 3 confirmations, caught up.
async fn evm(backend: Backend) -> Option<Evm> {
    let anvil = Anvil::start().await?;
    let token = anvil.deploy_token(6).await;
    let mut nc = evm_network(vec![anvil.url.clone()], &token, 6);
    nc.confirmations = Some(3);
    let app = common::spawn_app_with(backend, |c| {
        c.networks.insert("ethereum".into(), nc);
    })
    .await?;
    epusdt::service::wallet::set_enabled(&app.state.db, common::EVM_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let wallet = ACCOUNTS[1].to_string();
    epusdt::service::wallet::add(
        &app.state.db,
        app.state.config.registry(),
        "ethereum",
        &wallet,
        None,
        "anvil-1",
    )
    .await
    .expect("wallet");
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let head = i64::try_from(anvil.block_number().await).unwrap();
    chain_support::wait_cursor(&app, "ethereum", head - 3, 20).await;
    Some(Evm {
        anvil,
        token,
        app,
        merchant,
        notify: format!("{murl}/notify"),
        wallet,
    })
}

/// With 3 confirmations, a payment just mined shows 5 with 1/4 (its own block counts as the
/// first confirmation; it is credited once 3 blocks are on top), then 2/4; the order row stays
/// waiting, nothing is recorded, no callback. Three blocks on top: paid, one callback, and the
/// confirming row is gone.
async fn evm_confirming_then_paid(backend: Backend) {
    let Some(s) = evm(backend).await else {
        return;
    };
    let (trade_id, amount, address) =
        create_order(&s.app, "C-1", "100", "usdt.erc20", &s.notify).await;
    assert_eq!(address, s.wallet);
    assert_eq!(
        check_status(&s.app, &trade_id).await,
        json!({"trade_id": trade_id, "status": 1})
    );

    let (tx, _) = s
        .anvil
        .transfer(&s.token, &s.wallet, units(&amount, 6))
        .await;
    let d = wait_status(&s.app, &trade_id, 5, Some(1)).await;
    assert_eq!(
        d,
        json!({"trade_id": trade_id, "status": 5, "confirmations": 1, "confirmations_required": 4})
    );
    // Seen, not credited: the order row is waiting, no transfer recorded, no callback.
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    assert!(
        chain_support::transfers(&s.app.state.db, "ethereum")
            .await
            .is_empty()
    );
    // The admin order view lists it apart from the recorded transfers.
    admin_auth::add_admin(&s.app, "carol", Role::Viewer, admin_auth::VIEWER_PW).await;
    let token = admin_auth::access(&s.app, "carol", admin_auth::VIEWER_PW).await;
    let (code, v) = admin_auth::call(
        &s.app,
        "GET",
        &format!("/admin/api/v1/orders/{trade_id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "waiting", "{v}");
    assert_eq!(v["transfers"], json!([]), "{v}");
    assert_eq!(v["confirming"][0]["tx_hash"], tx, "{v}");
    assert_eq!(v["confirming"][0]["confirmations_required"], 4, "{v}");
    s.anvil.mine(1).await;
    wait_status(&s.app, &trade_id, 5, Some(2)).await;
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    assert!(s.merchant.received().is_empty(), "no callback for status 5");

    s.anvil.mine(2).await;
    let calls = s.merchant.wait_for(1, 20).await;
    let body: Value = serde_json::from_str(&calls[0].body).expect("callback json");
    assert_eq!(body["status"], 2, "{body}");
    assert_eq!(body["block_transaction_id"], tx, "{body}");
    assert_eq!(
        check_status(&s.app, &trade_id).await,
        json!({"trade_id": trade_id, "status": 2})
    );
    common::eventually(10, "the confirming row to go", || async {
        (pending_rows(&s.app).await == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.merchant.received().len(), 1, "one callback");
    s.app.stop().await;
}
on_sqlite_and_postgres!(evm_confirming_then_paid);

/// The block holding the seen payment vanishes (anvil `evm_revert` to before it): check-status
/// goes back to 1, and nothing is ever credited from it.
async fn evm_vanished_payment_shows_waiting_again(backend: Backend) {
    let Some(s) = evm(backend).await else {
        return;
    };
    let (trade_id, amount, _) = create_order(&s.app, "C-2", "100", "usdt.erc20", &s.notify).await;
    let snapshot = s.anvil.rpc("evm_snapshot", json!([])).await;
    s.anvil
        .transfer(&s.token, &s.wallet, units(&amount, 6))
        .await;
    wait_status(&s.app, &trade_id, 5, Some(1)).await;

    assert_eq!(
        s.anvil.rpc("evm_revert", json!([snapshot])).await,
        json!(true)
    );
    wait_status(&s.app, &trade_id, 1, None).await;
    assert_eq!(pending_rows(&s.app).await, 0);
    // The chain moves on without it: never credited.
    s.anvil.mine(5).await;
    let head = i64::try_from(s.anvil.block_number().await).unwrap();
    chain_support::wait_cursor(&s.app, "ethereum", head - 3, 20).await;
    assert_eq!(check_status(&s.app, &trade_id).await["status"], 1);
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    assert!(
        chain_support::transfers(&s.app.state.db, "ethereum")
            .await
            .is_empty()
    );
    assert!(s.merchant.received().is_empty());
    s.app.stop().await;
}
on_sqlite_and_postgres!(evm_vanished_payment_shows_waiting_again);

/// `show_confirming = false`: no extra read, the payment shows waiting until it is paid.
async fn evm_confirming_can_be_switched_off(backend: Backend) {
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let token = anvil.deploy_token(6).await;
    let mut nc = evm_network(vec![anvil.url.clone()], &token, 6);
    nc.confirmations = Some(3);
    nc.show_confirming = false;
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.networks.insert("ethereum".into(), nc);
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
        app.state.config.registry(),
        "ethereum",
        ACCOUNTS[1],
        None,
        "anvil-1",
    )
    .await
    .expect("wallet");
    let (_merchant, murl) = Merchant::start(0, "ok").await;
    let (trade_id, amount, _) =
        create_order(&app, "C-3", "100", "usdt.erc20", &format!("{murl}/notify")).await;
    let (_, block) = anvil.transfer(&token, ACCOUNTS[1], units(&amount, 6)).await;
    anvil.mine(1).await;
    chain_support::wait_cursor(&app, "ethereum", i64::try_from(block).unwrap() - 2, 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(check_status(&app, &trade_id).await["status"], 1);
    assert_eq!(pending_rows(&app).await, 0);
    anvil.mine(2).await;
    wait_status(&app, &trade_id, 2, None).await;
    app.stop().await;
}
on_sqlite_and_postgres!(evm_confirming_can_be_switched_off);

struct Tron {
    mock: TronMock,
    app: TestApp,
    merchant: Merchant,
    notify: String,
}

/// The gateway watching the TRON double (heads 100/100), caught up.
async fn tron(backend: Backend) -> Option<Tron> {
    let mock = TronMock::start().await;
    let url = mock.url.clone();
    let app = common::spawn_app_with(backend, |c| {
        c.networks.insert(
            "tron".into(),
            epusdt::config::NetworkConfig {
                rpc_urls: vec![url],
                poll_interval_ms: Some(100),
                request_timeout_secs: Some(5),
                ..Default::default()
            },
        );
    })
    .await?;
    epusdt::service::wallet::set_enabled(&app.state.db, common::TRON_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let wallet = tron_from_hex(WALLET_HEX).expect("address");
    epusdt::service::wallet::add(
        &app.state.db,
        app.state.config.registry(),
        "tron",
        &wallet,
        None,
        "w",
    )
    .await
    .expect("add wallet");
    let (merchant, murl) = Merchant::start(0, "ok").await;
    chain_support::wait_cursor(&app, "tron", 100, 20).await;
    Some(Tron {
        mock,
        app,
        merchant,
        notify: format!("{murl}/notify"),
    })
}

fn tron_payment(txid: &str, amount: &str) -> Value {
    trc20_tx(
        txid,
        0,
        USDT_HEX,
        PAYER_HEX,
        WALLET_HEX,
        units(amount, 6),
        true,
    )
}

/// A TRC-20 payment in block 101 while the solidified head is 98: 5 with 1/4 (blocks 99..=101
/// are unsolidified), read through `/wallet/` only; solidified → paid, one callback.
async fn tron_above_the_solidified_head(backend: Backend) {
    let Some(s) = tron(backend).await else {
        return;
    };
    let (trade_id, amount, _) = create_order(&s.app, "TC-1", "100", "usdt.trc20", &s.notify).await;
    let txid = "c1".repeat(32);
    let block = s.mock.push_block(vec![tron_payment(&txid, &amount)], 3);
    let d = wait_status(&s.app, &trade_id, 5, Some(1)).await;
    assert_eq!(d["confirmations_required"], 4, "{d}");
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    assert!(
        chain_support::transfers(&s.app.state.db, "tron")
            .await
            .is_empty()
    );
    assert!(
        !s.mock.requests().iter().any(|r| {
            r.path == "/walletsolidity/gettransactioninfobyblocknum" && r.body["num"] == block
        }),
        "not read for crediting before it is solidified"
    );
    // Each unsolidified block with receipts is read once, however many rounds pass.
    let since = s.mock.request_count();
    s.mock.push_block(vec![], 4);
    wait_status(&s.app, &trade_id, 5, Some(2)).await;
    let asks = s
        .mock
        .requests_since(since)
        .iter()
        .filter(|r| r.path == "/wallet/gettransactioninfobyblocknum" && r.body["num"] == block)
        .count();
    assert_eq!(asks, 0, "block {block} read again");
    assert!(s.merchant.received().is_empty());

    s.mock.push_block(vec![], 0);
    let calls = s.merchant.wait_for(1, 20).await;
    let body: Value = serde_json::from_str(&calls[0].body).expect("callback json");
    assert_eq!(body["status"], 2, "{body}");
    wait_status(&s.app, &trade_id, 2, None).await;
    s.app.stop().await;
}
on_sqlite_and_postgres!(tron_above_the_solidified_head);

/// The checkout page in headless Chromium: "confirming 1/4" while the payment waits for
/// solidification (the payment details hidden), then "Payment received".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_page_shows_confirming() {
    let Some(dir) = crate::checkout_browser::browser_tools() else {
        return;
    };
    let Some(s) = tron(Backend::Sqlite).await else {
        return;
    };
    let (trade_id, amount, _) = create_order(&s.app, "TC-B", "100", "usdt.trc20", &s.notify).await;
    s.mock
        .push_block(vec![tron_payment(&"b5".repeat(32), &amount)], 3);
    wait_status(&s.app, &trade_id, 5, Some(1)).await;
    let url = s.app.url(&format!("/pay/checkout-counter/{trade_id}"));
    let shot: PathBuf = crate::checkout_browser::screenshot_dir().join("confirming.png");
    let _ = std::fs::remove_file(&shot);
    // Once the page has shown "confirming" (its screenshot is on disk), solidify the block.
    let confirm = tokio::spawn({
        let shot = shot.clone();
        let mock = s.mock.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while !shot.exists() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            mock.push_block(vec![], 0);
        }
    });
    let out = tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            Command::new("node")
                .current_dir(&dir)
                .arg("confirming.mjs")
                .arg(&url)
                .arg(&shot)
                .arg("confirming 1/4")
                .args(["--then", "Payment received"])
                .output()
                .expect("node runs")
        }
    })
    .await
    .unwrap();
    confirm.await.unwrap();
    assert!(
        out.status.success(),
        "browser check failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{}confirming screenshot: {}",
        String::from_utf8_lossy(&out.stdout),
        shot.display()
    );
    s.merchant.wait_for(1, 20).await;
    s.app.stop().await;
}

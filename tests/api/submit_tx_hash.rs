//! `POST /pay/submit-tx-hash/{trade_id}` as GMWalletApp/epusdt documents it (body
//! `{"block_transaction_id": "<hash>"}`, reply `{trade_id, status, block_transaction_id}` in the
//! usual envelope): the payer's transaction is verified on chain now and credited like the
//! watcher would, before the watcher gets to it (its poll interval here is ten minutes, so
//! after its first round at start-up only the route can credit anything).
//!
//! EVM on a real anvil node with the test ERC-20; TRON on the java-tron HTTP double. Checked:
//! an unconfirmed transaction says how many confirmations are missing and records nothing; a
//! confirmed exact payment pays the order and sends one signed callback; the same hash again,
//! for the same or another order, is refused; a wrong amount, another address, a failed or
//! unknown transaction, a look-alike token, one mined before the order or after it expired
//! are refused and record nothing; a malformed hash is 10009 and an unknown order 10008. EVM on
//! SQLite and PostgreSQL, TRON on every backend.
use crate::chain_support;
use crate::common;

use chain_support::{
    ACCOUNTS, Anvil, create_order, evm_network,
    tron_mock::{TronMock, USDT_HEX, trc20_tx},
    units,
};
use common::{Backend, Merchant, TestApp, borrow, json_params};
use epusdt::{config::NetworkConfig, domain::address::tron_from_hex};
use serde_json::{Value, json};

/// The watcher's poll interval in these tests: it scans once at start-up, then not again.
const QUIET_POLL_MS: u64 = 600_000;

async fn submit(app: &TestApp, trade_id: &str, hash: &str) -> Value {
    common::post_json(
        &app.client,
        &app.url(&format!("/pay/submit-tx-hash/{trade_id}")),
        &json!({ "block_transaction_id": hash }),
    )
    .await
}

/// The same request as an HTML form would send it.
async fn submit_form(app: &TestApp, trade_id: &str, hash: &str) -> Value {
    app.client
        .post(app.url(&format!("/pay/submit-tx-hash/{trade_id}")))
        .form(&[("block_transaction_id", hash)])
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json reply")
}

fn assert_refused(reply: &Value, code: u32, needle: &str) {
    assert_eq!(reply["status_code"], code, "{reply}");
    let msg = reply["message"].as_str().expect("message");
    assert!(msg.contains(needle), "`{needle}` not in {msg:?}");
    assert!(reply["data"].is_null(), "{reply}");
}

fn assert_paid_reply(reply: &Value, trade_id: &str, tx: &str) {
    assert_eq!(reply["status_code"], 200, "{reply}");
    assert_eq!(reply["data"]["trade_id"], trade_id, "{reply}");
    assert_eq!(reply["data"]["status"], 2, "{reply}");
    assert_eq!(reply["data"]["block_transaction_id"], tx, "{reply}");
}

/// The merchant's view of the paid callback: signed (v1 MD5 over the sorted fields), status 2,
/// this transaction.
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

async fn flags(app: &TestApp, trade_id: &str) -> i32 {
    epusdt::service::order::find_by_trade_id(&app.state.db, trade_id)
        .await
        .expect("read order")
        .expect("order")
        .flags
}

async fn evm_submitted_hash(backend: Backend) {
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let token = anvil.deploy_token(6).await;
    let mut nc = evm_network(vec![anvil.url.clone()], &token, 6);
    nc.poll_interval_ms = Some(QUIET_POLL_MS);
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
    let wallet = ACCOUNTS[1].to_string();
    epusdt::service::wallet::add(
        &app.state.db,
        &epusdt::domain::network::Networks::presets(),
        "ethereum",
        &wallet,
        None,
        "anvil-1",
    )
    .await
    .expect("add wallet");
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");
    let db = app.state.db.clone();

    let (trade_id, amount, address) = create_order(&app, "S-1", "100", "usdt.erc20", &notify).await;
    assert_eq!(
        (address.as_str(), amount.as_str()),
        (wallet.as_str(), "13.89")
    );

    // Malformed hashes and unknown orders, before anything is asked of the chain.
    for bad in [
        "",
        "0x1234",
        &"ab".repeat(32),
        &format!("0x{}", "zz".repeat(32)),
    ] {
        assert_refused(
            &submit(&app, &trade_id, bad).await,
            10009,
            "block_transaction_id",
        );
    }
    let unknown = format!("0x{}", "11".repeat(32));
    assert_refused(&submit(&app, "nope-123", &unknown).await, 10008, "");
    // A well-formed hash the chain does not know.
    assert_refused(&submit(&app, &trade_id, &unknown).await, 10038, "not found");

    // Mined, not confirmed: the head is the transaction's block, 2 confirmations are required.
    let (tx, _) = anvil.transfer(&token, &address, units(&amount, 6)).await;
    assert_refused(
        &submit(&app, &trade_id, &tx).await,
        10038,
        "needs 2 more confirmation",
    );
    anvil.mine(1).await;
    assert_refused(
        &submit(&app, &trade_id, &tx).await,
        10038,
        "needs 1 more confirmation",
    );
    assert_eq!(chain_support::transfer_count(&db).await, 0);
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 1);

    // Confirmed: paid now (upper-case spelling accepted, stored as the watcher stores it), one
    // signed callback.
    anvil.mine(1).await;
    let shouted = format!("0x{}", tx.trim_start_matches("0x").to_ascii_uppercase());
    assert_paid_reply(&submit(&app, &trade_id, &shouted).await, &trade_id, &tx);
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 2);
    let calls = merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &tx);
    app.wait_delivered(&trade_id, 20).await;
    let rows = chain_support::transfers(&db, "ethereum").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].kind.as_str(), rows[0].tx_hash.as_str()),
        ("matched", tx.as_str())
    );

    // The same hash again: for this order, and for another one.
    assert_refused(
        &submit(&app, &trade_id, &tx).await,
        10007,
        "already been recorded",
    );
    let (trade_2, amount_2, _) = create_order(&app, "S-2", "200", "usdt.erc20", &notify).await;
    assert_eq!(amount_2, "27.78");
    assert_refused(
        &submit(&app, &trade_2, &tx).await,
        10007,
        "already been recorded",
    );

    // A wrong amount, and the right amount to another address: refused, nothing recorded.
    let (short, _) = anvil.transfer(&token, &address, units("27.77", 6)).await;
    let (elsewhere, _) = anvil
        .transfer(&token, ACCOUNTS[2], units(&amount_2, 6))
        .await;
    anvil.mine(2).await;
    assert_refused(
        &submit(&app, &trade_2, &short).await,
        10038,
        "transfers 27.77 USDT, this order is for exactly 27.78 USDT",
    );
    assert_refused(
        &submit(&app, &trade_2, &elsewhere).await,
        10038,
        "does not transfer USDT",
    );
    assert_eq!(chain_support::transfer_count(&db).await, 1);
    assert_eq!(
        flags(&app, &trade_2).await,
        0,
        "no partial-payment flag either"
    );
    assert_eq!(chain_support::order_status(&app, &trade_2).await, 1);

    // The exact payment, submitted as a form: paid.
    let (right, _) = anvil.transfer(&token, &address, units(&amount_2, 6)).await;
    anvil.mine(2).await;
    assert_paid_reply(&submit_form(&app, &trade_2, &right).await, &trade_2, &right);
    let calls = merchant.wait_for(2, 20).await;
    assert_paid_callback(&calls[1].body, &trade_2, &right);
    assert_eq!(chain_support::transfer_count(&db).await, 2);
    assert_eq!(merchant.received().len(), 2, "one callback per order");

    // The watcher scanning those blocks afterwards (the app restarted with a fast poll) sees the
    // submitted transfers as recorded: nothing credited twice, no third callback. It records
    // the short payment (no waiting order left at the address: unmatched).
    let mut config = app.config.clone();
    let dir = app.dir.clone();
    app.stop().await;
    config
        .networks
        .get_mut("ethereum")
        .expect("network")
        .poll_interval_ms = Some(100);
    let app = common::spawn_with(config, dir).await;
    let head = i64::try_from(anvil.block_number().await).expect("head");
    chain_support::wait_cursor(&app, "ethereum", head - 2, 30).await;
    let mut kinds: Vec<(String, String)> = chain_support::transfers(&app.state.db, "ethereum")
        .await
        .into_iter()
        .map(|r| (r.tx_hash, r.kind))
        .collect();
    kinds.sort();
    let mut want = vec![
        (tx.clone(), "matched".to_string()),
        (right.clone(), "matched".to_string()),
        (short.clone(), "unmatched".to_string()),
    ];
    want.sort();
    assert_eq!(kinds, want);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(merchant.received().len(), 2, "no callback twice");
    app.stop().await;
}
on_sqlite_and_postgres!(evm_submitted_hash);

/// The receive wallet on the TRON double: account id cd…cd.
const WALLET_HEX: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
const PAYER_HEX: &str = "3434343434343434343434343434343434343434";

async fn tron_submitted_hash(backend: Backend) {
    let mock = TronMock::start().await;
    let url = mock.url.clone();
    let Some(app) = common::spawn_app_with(backend, |c| {
        let nc = NetworkConfig {
            rpc_urls: vec![url],
            poll_interval_ms: Some(QUIET_POLL_MS),
            request_timeout_secs: Some(5),
            ..Default::default()
        };
        c.networks.insert("tron".into(), nc);
    })
    .await
    else {
        return;
    };
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
    // The watcher's one round at start-up.
    chain_support::wait_cursor(&app, "tron", 100, 20).await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");
    let db = app.state.db.clone();
    let (trade_id, amount, address) = create_order(&app, "T-1", "100", "usdt.trc20", &notify).await;
    assert_eq!(address, wallet);

    // TRON ids are 64 hex digits, without 0x.
    let id = format!("{:064x}", 0x7e57_0001u64);
    assert_refused(
        &submit(&app, &trade_id, &format!("0x{id}")).await,
        10009,
        "64 hex digits",
    );
    assert_refused(&submit(&app, &trade_id, &id).await, 10038, "not found");

    // A failed transfer (REVERT) is refused once solidified.
    let failed = format!("{:064x}", 0x7e57_0002u64);
    let tx = |id: &str, to: &str, units: u128, ok: bool| {
        trc20_tx(id, 0, USDT_HEX, PAYER_HEX, to, units, ok)
    };
    mock.push_block(vec![tx(&failed, WALLET_HEX, units(&amount, 6), false)], 0);
    assert_refused(&submit(&app, &trade_id, &failed).await, 10038, "failed");

    // Solidified transfers that do not pay this order, each refused with nothing recorded: a
    // look-alike token, mined before the order was created, mined after it expired.
    let o = epusdt::service::order::find_by_trade_id(&db, &trade_id)
        .await
        .expect("read order")
        .expect("order");
    let fake_token = "5656565656565656565656565656565656565656";
    let cases = [
        (0x7e57_0003u64, fake_token, None, "does not transfer USDT"),
        (
            0x7e57_0004,
            USDT_HEX,
            Some((o.created_at - 3600) * 1000),
            "before this order was created",
        ),
        (
            0x7e57_0005,
            USDT_HEX,
            Some((o.expires_at + 60) * 1000),
            "after this order expired",
        ),
    ];
    for (n, contract, mined_ms, why) in cases {
        let id = format!("{n:064x}");
        let t = trc20_tx(
            &id,
            0,
            contract,
            PAYER_HEX,
            WALLET_HEX,
            units(&amount, 6),
            true,
        );
        let block = mock.push_block(vec![t], 0);
        if let Some(ms) = mined_ms {
            mock.with(|c| {
                c.blocks.get_mut(&block).expect("block")[0]["blockTimeStamp"] = json!(ms);
            });
        }
        assert_refused(&submit(&app, &trade_id, &id).await, 10038, why);
    }
    assert_eq!(chain_support::transfer_count(&db).await, 0);
    assert_eq!(flags(&app, &trade_id).await, 0);

    // In a block above the solidified head: one confirmation missing, nothing recorded.
    mock.push_block(vec![tx(&id, WALLET_HEX, units(&amount, 6), true)], 1);
    assert_refused(
        &submit(&app, &trade_id, &id).await,
        10038,
        "needs 1 more confirmation",
    );
    assert_eq!(chain_support::transfer_count(&db).await, 0);

    // Solidified: paid, one signed callback.
    mock.push_block(vec![], 0);
    assert_paid_reply(&submit(&app, &trade_id, &id).await, &trade_id, &id);
    let calls = merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &id);
    // Asked through the solidity API, as the watcher reads.
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.path == "/walletsolidity/gettransactioninfobyid"
                && r.body["value"] == id.as_str()),
        "{:?}",
        mock.requests()
    );

    // Used again for another order: refused.
    let (trade_2, _, _) = create_order(&app, "T-2", "200", "usdt.trc20", &notify).await;
    assert_refused(
        &submit(&app, &trade_2, &id).await,
        10007,
        "already been recorded",
    );
    assert_eq!(chain_support::transfer_count(&db).await, 1);
    assert_eq!(merchant.received().len(), 1);
    app.stop().await;
}
on_all_backends!(tron_submitted_hash);

//! Native coins (issue 16): ETH on anvil configured as `ethereum` (`tokens.eth.native = true`,
//! a forced `usdt_price`) paid by a plain value transaction end to end with a signed callback; a
//! value transfer of the exact amount that reverts, and an ERC-20 transfer of the same numeric
//! amount, never pay it. TRX against the TRON double: no price → 10006 naming both ways to set
//! one; an admin-set price (admin API) prices the order; a TransferContract whose result is not
//! SUCCESS is ignored; a node that answers `{}` for the block with its transactions does not
//! lose the payment, which is credited once the block is served; GMPay `TRX` + `tron` selects it.
use crate::chain_support;
use crate::common;

use std::collections::BTreeMap;

use chain_support::{ACCOUNTS, Anvil, units};
use common::{Backend, Merchant, json_params};
use epusdt::config::{NetworkConfig, TokenConfig};
use serde_json::{Value, json};

/// The reverting contract: init code returning the runtime `PUSH1 0 PUSH1 0 REVERT`.
const REVERTER: &str = "0x6005600c60003960056000f360006000fd";

fn assert_paid(body: &str, trade_id: &str, tx: &str, amount: &str) {
    let body: Value = serde_json::from_str(body).expect("callback json");
    assert_eq!(body["trade_id"], trade_id, "{body}");
    assert_eq!(body["status"], 2, "{body}");
    assert_eq!(body["block_transaction_id"], tx, "{body}");
    assert_eq!(body["actual_amount"].to_string(), amount, "{body}");
    let params = json_params(&body);
    assert_eq!(
        body["signature"].as_str().expect("signature"),
        common::v1_sign(&common::borrow(&params), common::TOKEN),
        "callback signature"
    );
}

/// A value transaction from anvil account 0 (explicit gas: a reverting one is mined too).
async fn send_value(anvil: &Anvil, to: &str, wei: u128) -> (String, Value) {
    let hash = anvil
        .rpc(
            "eth_sendTransaction",
            json!([{"from": ACCOUNTS[0], "to": to, "value": format!("{wei:#x}"), "gas": "0x30000"}]),
        )
        .await;
    let hash = hash.as_str().expect("tx hash").to_string();
    let receipt = common::eventually(10, "receipt", || async {
        let r = anvil
            .try_rpc("eth_getTransactionReceipt", json!([hash]))
            .await
            .ok()?;
        (!r.is_null()).then_some(r)
    })
    .await;
    (hash, receipt)
}

async fn native_eth_on_anvil(backend: Backend) {
    let Some(anvil) = Anvil::start_with_chain_id(1).await else {
        return;
    };
    // A USDT with 18 decimals: an ERC-20 transfer of the ETH order's very amount.
    let usdt = anvil.deploy_token(18).await;
    let (_, r) = anvil.send(ACCOUNTS[0], None, REVERTER).await;
    let reverter = r["contractAddress"]
        .as_str()
        .expect("contract")
        .to_ascii_lowercase();
    let url = anvil.url.clone();
    let usdt_c = usdt.clone();
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.networks.insert(
            "ethereum".into(),
            NetworkConfig {
                rpc_urls: vec![url],
                confirmations: Some(2),
                poll_interval_ms: Some(100),
                request_timeout_secs: Some(5),
                tokens: BTreeMap::from([
                    (
                        "usdt".to_string(),
                        TokenConfig {
                            contract: Some(usdt_c),
                            decimals: Some(18),
                            ..Default::default()
                        },
                    ),
                    (
                        "usdc".to_string(),
                        TokenConfig {
                            enabled: false,
                            ..Default::default()
                        },
                    ),
                    (
                        "eth".to_string(),
                        TokenConfig {
                            native: true,
                            usdt_price: Some("2000".parse().expect("price")),
                            ..Default::default()
                        },
                    ),
                ]),
                ..Default::default()
            },
        );
    })
    .await
    else {
        return;
    };
    epusdt::service::wallet::set_enabled(&app.state.db, common::EVM_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let add = |address: String| {
        let db = app.state.db.clone();
        let reg = app.state.config.registry().clone();
        async move {
            epusdt::service::wallet::add(&db, &reg, "ethereum", &address, None, "w")
                .await
                .expect("add wallet")
        }
    };
    // The reverting contract is the only wallet first: the ETH order is placed there.
    add(reverter.clone()).await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");
    let reply = common::create_v1(
        &app,
        &[
            ("order_id", "E-1"),
            ("amount", "10"),
            ("notify_url", &notify),
            ("trade_type", "ethereum.eth"),
        ],
    )
    .await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    assert_eq!(reply["data"]["trade_type"], "ethereum.eth", "{reply}");
    // 10 CNY / 7.2 CNY per USDT / 2000 USDT per ETH = 0.000694444… → 6 places.
    assert_eq!(reply["data"]["actual_amount"].to_string(), "0.000694");
    let reverted_trade = reply["data"]["trade_id"].as_str().expect("id").to_string();
    let o = epusdt::service::order::find_by_trade_id(&app.state.db, &reverted_trade)
        .await
        .expect("read")
        .expect("order");
    assert_eq!(o.token, "ETH");
    assert_eq!(o.rate.normalize().to_string(), "14400", "fiat per coin");
    let wei = units("0.000694", 18);
    let (reverted_tx, receipt) = send_value(&anvil, &reverter, wei).await;
    assert_eq!(
        receipt["status"], "0x0",
        "the value transfer reverts: {receipt}"
    );
    // The same numeric amount as an ERC-20 transfer to the same address.
    let (erc20_tx, _) = anvil.transfer(&usdt, &reverter, wei).await;
    anvil.mine(3).await;
    let head = i64::try_from(anvil.block_number().await).expect("head");
    chain_support::wait_cursor(&app, "ethereum", head - 2, 30).await;
    assert_eq!(chain_support::order_status(&app, &reverted_trade).await, 1);
    let rows = chain_support::transfers(&app.state.db, "ethereum").await;
    assert!(
        rows.iter().all(|r| r.tx_hash != reverted_tx),
        "a reverted value transfer is never recorded: {rows:?}"
    );
    let erc20: Vec<_> = rows.iter().filter(|r| r.tx_hash == erc20_tx).collect();
    assert_eq!(erc20.len(), 1, "{rows:?}");
    assert_eq!(
        (erc20[0].token.as_str(), erc20[0].kind.as_str()),
        ("USDT", "unmatched")
    );

    // A plain value transaction to an ordinary address pays its order.
    epusdt::service::wallet::set_enabled(&app.state.db, &reverter, false)
        .await
        .expect("disable");
    let wallet = ACCOUNTS[1].to_ascii_lowercase();
    add(wallet.clone()).await;
    app.state.caches.clear();
    let (trade_id, amount, address) =
        chain_support::create_order(&app, "E-2", "20", "ethereum.eth", &notify).await;
    assert_eq!(address, wallet);
    assert_eq!(amount, "0.001389");
    let (tx, receipt) = send_value(&anvil, &wallet, units(&amount, 18)).await;
    assert_eq!(receipt["status"], "0x1");
    anvil.mine(2).await;
    let calls = merchant.wait_for(1, 30).await;
    assert_paid(&calls[0].body, &trade_id, &tx, &amount);
    let rows = chain_support::transfers(&app.state.db, "ethereum").await;
    let paid: Vec<_> = rows.iter().filter(|r| r.tx_hash == tx).collect();
    assert_eq!(paid.len(), 1, "{rows:?}");
    assert_eq!(
        (
            paid[0].token.as_str(),
            paid[0].log_index,
            paid[0].token_contract.as_str(),
            paid[0].kind.as_str()
        ),
        ("ETH", -1, "native", "matched")
    );
    // Replaying the range (an operator moves the cursor back below the payment's block): the
    // transfer is read again and credits nothing twice.
    let before = chain_support::transfer_count(&app.state.db).await;
    let paid_block = paid[0].block_number;
    let back = anvil
        .rpc(
            "eth_getBlockByNumber",
            json!([format!("{:#x}", paid_block - 1), false]),
        )
        .await;
    {
        use sea_orm::{ActiveModelTrait, Set};
        epusdt::store::entities::chain_cursor::ActiveModel {
            network: Set("ethereum".into()),
            block_number: Set(paid_block - 1),
            block_hash: Set(back["hash"].as_str().expect("hash").to_string()),
            updated_at: Set(epusdt::service::now()),
        }
        .update(&app.state.db)
        .await
        .expect("move the cursor back");
    }
    anvil.mine(3).await;
    let head = i64::try_from(anvil.block_number().await).expect("head");
    chain_support::wait_cursor(&app, "ethereum", head - 2, 30).await;
    assert_eq!(chain_support::transfer_count(&app.state.db).await, before);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(merchant.received().len(), 1, "one callback");
    app.stop().await;
}
on_sqlite_and_postgres!(native_eth_on_anvil);

/// TRX against the TRON double, end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trx_pays_tron_orders_from_transfer_contracts() {
    use chain_support::tron_mock::{TronMock, trx_tx};
    const WALLET_HEX: &str = "abababababababababababababababababababab";
    const PAYER_HEX: &str = "1212121212121212121212121212121212121212";
    let mock = TronMock::start().await;
    let url = mock.url.clone();
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.networks.insert(
            "tron".into(),
            NetworkConfig {
                rpc_urls: vec![url],
                poll_interval_ms: Some(100),
                request_timeout_secs: Some(5),
                tokens: BTreeMap::from([(
                    "trx".to_string(),
                    TokenConfig {
                        native: true,
                        ..Default::default()
                    },
                )]),
                ..Default::default()
            },
        );
    })
    .await
    else {
        return;
    };
    let wallet = chain_support::receive_tron_at(&app, WALLET_HEX).await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");

    // No price anywhere: 10006, naming the coin and both ways to set one.
    let r = common::create_v1(
        &app,
        &[
            ("order_id", "T-0"),
            ("amount", "30"),
            ("notify_url", &notify),
            ("trade_type", "tron.trx"),
        ],
    )
    .await;
    assert_eq!(r["status_code"], 10006, "{r}");
    let msg = r["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("no USDT price for TRX on tron")
            && msg.contains("epusdt rate price TRX")
            && msg.contains("usdt_price in [networks.tron.tokens.trx]"),
        "{msg}"
    );
    // An admin sets the price (admin API, audited); the order is priced with it.
    use crate::admin_auth::{OWNER_PW, access, add_admin, call};
    add_admin(&app, "alice", epusdt::service::admin::Role::Admin, OWNER_PW).await;
    let token = access(&app, "alice", OWNER_PW).await;
    let (s, e) = call(
        &app,
        "PUT",
        "/admin/api/v1/prices/BNB",
        Some(&token),
        Some(json!({ "usdt_price": "600" })),
    )
    .await;
    assert_eq!(s, 422, "BNB is not configured: {e}");
    let (s, p) = call(
        &app,
        "PUT",
        "/admin/api/v1/prices/trx",
        Some(&token),
        Some(json!({ "usdt_price": "0.25" })),
    )
    .await;
    assert_eq!((s, &p["usdt_price"]), (200, &json!("0.25")), "{p}");
    let (_, list) = call(&app, "GET", "/admin/api/v1/rates", Some(&token), None).await;
    assert_eq!(
        list["prices"],
        json!([{"network": "tron", "coin": "TRX", "usdt_price": "0.25", "source": "admin"}]),
        "{list}"
    );
    // GMPay's pair selects TRX too (covered by the registry's unit test); v1 here.
    let (trade_id, amount, address) =
        chain_support::create_order(&app, "T-1", "30", "tron.trx", &notify).await;
    assert_eq!(address, wallet);
    // 30 CNY / 7.2 / 0.25 = 16.666… → 2 places.
    assert_eq!(amount, "16.67");
    let sun = u64::try_from(units(&amount, 6)).expect("sun");

    // A TransferContract that did not succeed is ignored.
    let failed_id = "f0".repeat(32);
    let n = mock.push_block(
        vec![trx_tx(
            &failed_id,
            PAYER_HEX,
            WALLET_HEX,
            sun,
            "TRANSFER_FAILED",
        )],
        0,
    );
    chain_support::wait_cursor(&app, "tron", i64::try_from(n).expect("n"), 20).await;
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 1);

    // The node answers `{}` for the next block with its transactions: nothing is skipped.
    let paid_id = "a1".repeat(32);
    mock.with(|c| c.missing_detail = Some(n + 1));
    let m = mock.push_block(
        vec![trx_tx(&paid_id, PAYER_HEX, WALLET_HEX, sun, "SUCCESS")],
        0,
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        chain_support::cursor(&app.state.db, "tron").await < Some(i64::try_from(m).expect("m")),
        "the cursor never passes a block the node did not serve"
    );
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 1);
    mock.with(|c| c.missing_detail = None);
    let calls = merchant.wait_for(1, 20).await;
    assert_paid(&calls[0].body, &trade_id, &paid_id, &amount);
    let rows = chain_support::transfers(&app.state.db, "tron").await;
    assert_eq!(
        rows.len(),
        1,
        "the failed transfer is never recorded: {rows:?}"
    );
    assert_eq!(
        (
            rows[0].token.as_str(),
            rows[0].log_index,
            rows[0].kind.as_str()
        ),
        ("TRX", -1, "matched")
    );
    assert_eq!(rows[0].block_hash, chain_support::tron_mock::block_id(m));

    // GMPay's `token` + `network` pair selects TRX the same way.
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in [
        ("pid", "1000"),
        ("currency", "CNY"),
        ("notify_url", notify.as_str()),
        ("order_id", "G-1"),
        ("amount", "30"),
        ("token", "TRX"),
        ("network", "tron"),
    ] {
        p.insert(k, v.to_string());
    }
    let mut body: serde_json::Map<String, Value> =
        p.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    body.insert(
        "signature".into(),
        json!(common::gmpay_sign(&p, common::TOKEN)),
    );
    let g = common::post_json(
        &app.client,
        &app.url("/payments/gmpay/v1/order/create-transaction"),
        &body,
    )
    .await;
    assert_eq!(g["status_code"], 200, "{g}");
    assert_eq!(
        (&g["data"]["token"], &g["data"]["receive_address"]),
        (&json!("TRX"), &json!(wallet)),
        "{g}"
    );
    app.stop().await;
}

/// `/pay/submit-tx-hash` finds a native transfer by its hash (the watcher polls once at start
/// and then not again): an ETH value transaction on anvil, a TRX TransferContract on the double;
/// a reverted ETH value transfer is refused as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_native_hashes_pay() {
    use chain_support::tron_mock::{TronMock, trx_tx};
    const QUIET: u64 = 600_000;
    let Some(anvil) = Anvil::start_with_chain_id(1).await else {
        return;
    };
    let usdt = anvil.deploy_token(6).await;
    let (_, r) = anvil.send(ACCOUNTS[0], None, REVERTER).await;
    let reverter = r["contractAddress"]
        .as_str()
        .expect("contract")
        .to_ascii_lowercase();
    let mock = TronMock::start().await;
    let (eth_url, tron_url) = (anvil.url.clone(), mock.url.clone());
    let native = |price: &str| TokenConfig {
        native: true,
        usdt_price: Some(price.parse().expect("price")),
        ..Default::default()
    };
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.networks.insert(
            "ethereum".into(),
            NetworkConfig {
                rpc_urls: vec![eth_url],
                confirmations: Some(2),
                poll_interval_ms: Some(QUIET),
                request_timeout_secs: Some(5),
                tokens: BTreeMap::from([
                    (
                        "usdt".to_string(),
                        TokenConfig {
                            contract: Some(usdt),
                            decimals: Some(6),
                            ..Default::default()
                        },
                    ),
                    (
                        "usdc".to_string(),
                        TokenConfig {
                            enabled: false,
                            ..Default::default()
                        },
                    ),
                    ("eth".to_string(), native("2000")),
                ]),
                ..Default::default()
            },
        );
        c.networks.insert(
            "tron".into(),
            NetworkConfig {
                rpc_urls: vec![tron_url],
                poll_interval_ms: Some(QUIET),
                request_timeout_secs: Some(5),
                tokens: BTreeMap::from([("trx".to_string(), native("0.25"))]),
                ..Default::default()
            },
        );
    })
    .await
    else {
        return;
    };
    for w in [common::EVM_WALLET, common::TRON_WALLET] {
        epusdt::service::wallet::set_enabled(&app.state.db, w, false)
            .await
            .expect("disable placeholder wallet");
    }
    let reg = app.state.config.registry().clone();
    let tron_wallet =
        epusdt::domain::address::tron_from_hex(&"cd".repeat(20)).expect("tron address");
    for (net, w) in [
        ("ethereum", reverter.as_str()),
        ("tron", tron_wallet.as_str()),
    ] {
        epusdt::service::wallet::add(&app.state.db, &reg, net, w, None, "w")
            .await
            .expect("add wallet");
    }
    chain_support::wait_cursor(&app, "tron", 100, 20).await;
    let (_merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");
    let submit = |trade_id: String, hash: String| {
        let app = &app;
        async move {
            common::post_json(
                &app.client,
                &app.url(&format!("/pay/submit-tx-hash/{trade_id}")),
                &json!({ "block_transaction_id": hash }),
            )
            .await
        }
    };

    // ETH: a reverted value transfer is refused; a plain one pays.
    let (trade_id, amount, _) =
        chain_support::create_order(&app, "H-1", "20", "ethereum.eth", &notify).await;
    let (reverted, receipt) = send_value(&anvil, &reverter, units(&amount, 18)).await;
    assert_eq!(receipt["status"], "0x0");
    anvil.mine(2).await;
    let reply = submit(trade_id.clone(), reverted).await;
    assert_ne!(reply["status_code"], 200, "{reply}");
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 1);
    epusdt::service::wallet::set_enabled(&app.state.db, &reverter, false)
        .await
        .expect("disable");
    let wallet = ACCOUNTS[1].to_ascii_lowercase();
    epusdt::service::wallet::add(&app.state.db, &reg, "ethereum", &wallet, None, "w")
        .await
        .expect("add wallet");
    app.state.caches.clear();
    let (trade_id, amount, address) =
        chain_support::create_order(&app, "H-2", "20", "ethereum.eth", &notify).await;
    assert_eq!(address, wallet);
    let (tx, _) = send_value(&anvil, &wallet, units(&amount, 18)).await;
    anvil.mine(2).await;
    let reply = submit(trade_id.clone(), tx.clone()).await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    assert_eq!(reply["data"]["status"], 2, "{reply}");
    assert_eq!(reply["data"]["block_transaction_id"], tx, "{reply}");

    // TRX: a TransferContract found by its id once solidified.
    let (trade_id, amount, address) =
        chain_support::create_order(&app, "H-3", "30", "tron.trx", &notify).await;
    assert_eq!(
        (address.as_str(), amount.as_str()),
        (tron_wallet.as_str(), "16.67")
    );
    let id = "b2".repeat(32);
    mock.push_block(
        vec![trx_tx(
            &id,
            &"12".repeat(20),
            &"cd".repeat(20),
            16_670_000,
            "SUCCESS",
        )],
        0,
    );
    let reply = submit(trade_id.clone(), id.clone()).await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    assert_eq!(reply["data"]["status"], 2, "{reply}");
    assert_eq!(reply["data"]["block_transaction_id"], id, "{reply}");
    app.stop().await;
}

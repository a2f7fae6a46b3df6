//! Networks and tokens as configuration (issue 16) on real anvil nodes and the TRON double:
//! two chains configured as the presets `arbitrum` and `base` (their real chain ids), USDT and
//! USDC deployed on each, an order of every `trade_type` paid end to end with a valid signed
//! callback; a transfer of the other token (same amount) and a look-alike contract never pay;
//! a URL on another chain refuses the start, naming it; a network no preset has (`mychain`)
//! works by configuration alone; TRC-20 USDC against the TRON double.
use crate::chain_support;
use crate::common;

use std::collections::BTreeMap;

use chain_support::{ACCOUNTS, Anvil, create_order, units};
use common::{Backend, Merchant, TestApp, borrow, json_params};
use epusdt::config::{NetworkConfig, TokenConfig};
use serde_json::Value;

const ARBITRUM: u64 = 42161;
const BASE: u64 = 8453;

/// One anvil with a USDT and a USDC (both 6 decimals).
struct Chain {
    anvil: Anvil,
    usdt: String,
    usdc: String,
}

async fn chain(chain_id: u64) -> Option<Chain> {
    let anvil = Anvil::start_with_chain_id(chain_id).await?;
    let usdt = anvil.deploy_token(6).await;
    let usdc = anvil.deploy_token(6).await;
    Some(Chain { anvil, usdt, usdc })
}

fn token(contract: &str, decimals: Option<u32>) -> TokenConfig {
    TokenConfig {
        contract: Some(contract.to_string()),
        decimals,
        ..Default::default()
    }
}

/// `[networks.<name>]` for a test chain: fast polling, 2 confirmations, its two tokens.
fn network(urls: Vec<String>, c: &Chain, decimals: Option<u32>) -> NetworkConfig {
    NetworkConfig {
        rpc_urls: urls,
        confirmations: Some(2),
        poll_interval_ms: Some(100),
        request_timeout_secs: Some(5),
        tokens: BTreeMap::from([
            ("usdt".to_string(), token(&c.usdt, decimals)),
            ("usdc".to_string(), token(&c.usdc, decimals)),
        ]),
        ..Default::default()
    }
}

/// Receive on anvil account 1 on `networks` (the harness's placeholder EVM wallet disabled).
async fn receive_on(app: &TestApp, networks: &[&str]) -> String {
    epusdt::service::wallet::set_enabled(&app.state.db, common::EVM_WALLET, false)
        .await
        .expect("disable placeholder wallet");
    let wallet = ACCOUNTS[1].to_string();
    for n in networks {
        epusdt::service::wallet::add(
            &app.state.db,
            app.state.config.registry(),
            n,
            &wallet,
            None,
            "anvil-1",
        )
        .await
        .expect("add wallet");
    }
    wallet
}

/// Checks one callback like a merchant would: signature, status, tx, trade id.
fn assert_paid(body: &str, trade_id: &str, tx: &str) {
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

async fn pay(c: &Chain, contract: &str, to: &str, amount: &str) -> String {
    let (tx, _) = c.anvil.transfer(contract, to, units(amount, 6)).await;
    c.anvil.mine(2).await;
    tx
}

/// Every trade_type of two preset chains paid end to end; the other token and a look-alike
/// never pay.
async fn usdt_and_usdc_on_arbitrum_and_base(backend: Backend) {
    let Some(arb) = chain(ARBITRUM).await else {
        return;
    };
    let Some(base) = chain(BASE).await else {
        return;
    };
    let lookalike = arb.anvil.deploy_token(6).await;
    let (arb_url, base_url) = (arb.anvil.url.clone(), base.anvil.url.clone());
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.networks
            .insert("arbitrum".into(), network(vec![arb_url], &arb, None));
        // Base has no USDT preset: its contract and decimals come from the configuration.
        c.networks
            .insert("base".into(), network(vec![base_url], &base, Some(6)));
    })
    .await
    else {
        return;
    };
    let wallet = receive_on(&app, &["arbitrum", "base"]).await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");

    // The v1 reply carries the order's own trade_type.
    let reply = common::create_v1(
        &app,
        &[
            ("order_id", "A-USDT"),
            ("amount", "10"),
            ("notify_url", &notify),
            ("trade_type", "usdt.arbitrum"),
        ],
    )
    .await;
    assert_eq!(reply["data"]["trade_type"], "usdt.arbitrum", "{reply}");
    let trade_id = reply["data"]["trade_id"].as_str().expect("trade id");
    let amount = reply["data"]["actual_amount"].to_string();
    assert_eq!(reply["data"]["token"], wallet.as_str());

    // USDC with the exact amount of the USDT order, and a look-alike "USDT": neither pays it.
    pay(&arb, &arb.usdc, &wallet, &amount).await;
    pay(&arb, &lookalike, &wallet, &amount).await;
    let tx = pay(&arb, &arb.usdt, &wallet, &amount).await;
    let calls = merchant.wait_for(1, 30).await;
    assert_paid(&calls[0].body, trade_id, &tx);
    let rows = chain_support::transfers(&app.state.db, "arbitrum").await;
    let mut seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.token.clone(), r.kind.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("USDC".to_string(), "unmatched".to_string()),
            ("USDT".to_string(), "matched".to_string())
        ],
        "the look-alike contract is never recorded: {rows:?}"
    );
    assert!(rows.iter().all(|r| r.token_contract != lookalike));

    // The three other trade types, each paid with its own token on its own chain.
    for (i, (trade_type, c, contract)) in [
        ("usdc.arbitrum", &arb, &arb.usdc),
        ("usdt.base", &base, &base.usdt),
        ("usdc.base", &base, &base.usdc),
    ]
    .into_iter()
    .enumerate()
    {
        let (trade_id, amount, address) =
            create_order(&app, &format!("B-{i}"), "20", trade_type, &notify).await;
        assert_eq!(address, wallet);
        let o = epusdt::service::order::find_by_trade_id(&app.state.db, &trade_id)
            .await
            .expect("read order")
            .expect("order exists");
        assert_eq!(
            (o.network.as_str(), o.token.as_str()),
            (
                trade_type.split('.').nth(1).unwrap(),
                &*trade_type.split('.').next().unwrap().to_ascii_uppercase()
            )
        );
        let tx = pay(c, contract, &wallet, &amount).await;
        let calls = merchant.wait_for(i + 2, 30).await;
        assert_paid(&calls[i + 1].body, &trade_id, &tx);
    }
    // An unconfigured combination is 10009, naming what is configured.
    let r = common::create_v1(
        &app,
        &[
            ("order_id", "C-1"),
            ("amount", "1"),
            ("notify_url", &notify),
            ("trade_type", "usdt.optimism"),
        ],
    )
    .await;
    assert_eq!(r["status_code"], 10009, "{r}");
    let msg = r["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("usdt.arbitrum, usdc.arbitrum, usdc.base, usdt.base"),
        "{msg}"
    );
    app.stop().await;
}
on_sqlite_and_postgres!(usdt_and_usdc_on_arbitrum_and_base);

/// A URL of `arbitrum` that serves Base refuses the start, naming the URL and both chain ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_on_another_chain_is_refused_by_name() {
    let Some(arb) = chain(ARBITRUM).await else {
        return;
    };
    let Some(base) = chain(BASE).await else {
        return;
    };
    let (mut config, _dir) = common::test_config(Backend::Sqlite).await.unwrap();
    config.networks.insert(
        "arbitrum".into(),
        network(
            vec![arb.anvil.url.clone(), base.anvil.url.clone()],
            &arb,
            None,
        ),
    );
    let err = match epusdt::App::build(config).await {
        Ok(_) => panic!("must refuse to start"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&epusdt::redact::rpc_url(&base.anvil.url))
            && err.contains("it serves chain id 8453 but networks.arbitrum.chain_id is 42161"),
        "{err}"
    );
}

/// A network no preset has, by configuration alone: kind, chain id, one token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_of_ones_own_works_by_configuration_alone() {
    let Some(my) = chain(777_001).await else {
        return;
    };
    let url = my.anvil.url.clone();
    let usdt = my.usdt.clone();
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.networks.insert(
            "mychain".into(),
            NetworkConfig {
                kind: Some("evm".into()),
                chain_id: Some(777_001),
                display_name: Some("My Chain".into()),
                explorer_tx_url: Some("https://scan.example.com/tx/{}".into()),
                rpc_urls: vec![url],
                confirmations: Some(2),
                poll_interval_ms: Some(100),
                tokens: BTreeMap::from([("usdt".to_string(), token(&usdt, Some(6)))]),
                ..Default::default()
            },
        );
    })
    .await
    else {
        return;
    };
    let wallet = receive_on(&app, &["mychain"]).await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let (trade_id, amount, _) =
        create_order(&app, "M-1", "5", "usdt.mychain", &format!("{murl}/notify")).await;
    // The checkout page shows the token and the configured display name.
    let page = app
        .client
        .get(app.url(&format!("/pay/checkout-counter/{trade_id}")))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("My Chain") && page.contains("USDT"), "{page}");
    let tx = pay(&my, &my.usdt, &wallet, &amount).await;
    let calls = merchant.wait_for(1, 30).await;
    assert_paid(&calls[0].body, &trade_id, &tx);
    app.stop().await;
}

/// TRC-20 USDC against the TRON double: a USDC order is paid by USDC only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trc20_usdc_pays_usdc_orders_only() {
    use chain_support::tron_mock::{TronMock, USDC_HEX, USDT_HEX, trc20_tx};
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
                ..Default::default()
            },
        );
    })
    .await
    else {
        return;
    };
    chain_support::receive_tron_at(&app, WALLET_HEX).await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let (trade_id, amount, _) =
        create_order(&app, "U-1", "30", "usdc.trc20", &format!("{murl}/notify")).await;
    let n = units(&amount, 6);
    let usdt = trc20_tx(
        &"d0".repeat(32),
        0,
        USDT_HEX,
        PAYER_HEX,
        WALLET_HEX,
        n,
        true,
    );
    let usdc_id = "e0".repeat(32);
    let usdc = trc20_tx(&usdc_id, 0, USDC_HEX, PAYER_HEX, WALLET_HEX, n, true);
    mock.push_block(vec![usdt], 0);
    chain_support::wait_cursor(&app, "tron", 101, 20).await;
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 1);
    mock.push_block(vec![usdc], 0);
    let calls = merchant.wait_for(1, 20).await;
    assert_paid(&calls[0].body, &trade_id, &usdc_id);
    let rows = chain_support::transfers(&app.state.db, "tron").await;
    let mut seen: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.token.clone(), r.token_contract.clone(), r.kind.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "USDC".to_string(),
                "TEkxiTehnzSmSe2XqrBj4w32RUN966rdz8".to_string(),
                "matched".to_string()
            ),
            (
                "USDT".to_string(),
                "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".to_string(),
                "unmatched".to_string()
            ),
        ]
    );
    app.stop().await;
}

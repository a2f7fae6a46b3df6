//! The checkout API of GMWalletApp/epusdt, driven as upstream's cashier and a GMPay shop drive
//! it (clients from upstream's documentation: request fields, response fields and errno values
//! of its controllers, the GMPay signature built here): a create without token/network is a
//! status 4 placeholder; `/payments/gmpay/v1/config` lists what a payer may choose;
//! `/pay/checkout-counter-resp` shapes; `/pay/switch-network` completes a placeholder in place
//! or gives a waiting order its one child; a paid child pays and calls back the PARENT once.
use std::collections::BTreeMap;

use epusdt::{
    domain::order::flags,
    service::order::{CreditOutcome, IncomingTransfer},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::common::{self, Backend, Merchant, TestApp};

struct Shop {
    pid: i64,
    secret: String,
    notify: String,
    merchant: Merchant,
}

async fn shop(app: &TestApp) -> Shop {
    let m =
        epusdt::service::merchant::add(&app.state.db, &app.state.keys, "shop", None, None, false)
            .await
            .expect("merchant");
    let (merchant, url) = Merchant::start(0, "ok").await;
    Shop {
        pid: m.pid,
        secret: m.secret.expose().to_string(),
        notify: format!("{url}/notify"),
        merchant,
    }
}

/// A GMPay create as upstream documents it: sorted `k=v` joined by `&`, signed with the
/// merchant's secret; `amount` and `pid` sent as JSON numbers.
async fn gm_create(app: &TestApp, s: &Shop, fields: &[(&str, &str)]) -> Value {
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("pid", s.pid.to_string());
    p.insert("currency", "CNY".into());
    p.insert("notify_url", s.notify.clone());
    for (k, v) in fields {
        p.insert(k, v.to_string());
    }
    let mut body = serde_json::Map::new();
    for (k, v) in &p {
        body.insert(k.to_string(), json!(v));
    }
    body.insert("pid".into(), json!(s.pid));
    if let Some(a) = p.get("amount") {
        body.insert("amount".into(), serde_json::from_str(a).expect("amount"));
        p.insert("amount", common::shortest(a));
    }
    body.insert("signature".into(), json!(common::gmpay_sign(&p, &s.secret)));
    common::post_json(
        &app.client,
        &app.url("/payments/gmpay/v1/order/create-transaction"),
        &body,
    )
    .await
}

async fn switch(app: &TestApp, trade_id: &str, token: &str, network: &str) -> Value {
    common::post_json(
        &app.client,
        &app.url("/pay/switch-network"),
        &json!({ "trade_id": trade_id, "token": token, "network": network }),
    )
    .await
}

async fn counter(app: &TestApp, trade_id: &str) -> Value {
    common::get_json(app, &format!("/pay/checkout-counter-resp/{trade_id}")).await
}

async fn status(app: &TestApp, trade_id: &str) -> Value {
    common::get_json(app, &format!("/pay/check-status/{trade_id}")).await["data"]["status"].clone()
}

/// Pays a checkout-counter-resp `data` (its network, address and amount) as the watcher would.
async fn pay(app: &TestApp, d: &Value) -> CreditOutcome {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let tx = format!(
        "0xswitch{}{n}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let network = epusdt::domain::network::Networks::presets()
        .network(d["network"].as_str().expect("network"))
        .expect("known network");
    app.credit(&IncomingTransfer {
        network,
        token: epusdt::domain::network::Token::USDT,
        tx_hash: tx.clone(),
        log_index: 0,
        block_number: 100,
        block_hash: format!("blk-{tx}"),
        token_contract: "contract".into(),
        from_address: "payer".into(),
        to_address: d["receive_address"].as_str().expect("address").into(),
        amount: d["actual_amount"].to_string().parse().expect("amount"),
        block_time: epusdt::service::now(),
    })
    .await
}

async fn placeholder_is_status_4_until_the_payer_chooses(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let s = shop(&app).await;
    let r = gm_create(&app, &s, &[("order_id", "P-1"), ("amount", "72.00")]).await;
    assert_eq!(r["status_code"], 200, "{r}");
    let d = &r["data"];
    assert_eq!(d["status"], 4, "{r}");
    assert_eq!(d["receive_address"], "");
    assert_eq!(d["token"], "");
    assert_eq!(d["actual_amount"], 0);
    assert_eq!(d["order_id"], "P-1");
    let trade_id = d["trade_id"].as_str().expect("trade_id").to_string();
    assert!(d["payment_url"].as_str().unwrap().ends_with(&trade_id));

    // The same request again: the same placeholder. Other parameters: 10002.
    let again = gm_create(&app, &s, &[("order_id", "P-1"), ("amount", "72.00")]).await;
    assert_eq!(again["data"]["trade_id"], trade_id.as_str(), "{again}");
    let other = gm_create(&app, &s, &[("order_id", "P-1"), ("amount", "73")]).await;
    assert_eq!(other["status_code"], 10002, "{other}");
    // A concrete create cannot take the placeholder's order_id either.
    let concrete = gm_create(
        &app,
        &s,
        &[
            ("order_id", "P-1"),
            ("amount", "72.00"),
            ("token", "USDT"),
            ("network", "tron"),
        ],
    )
    .await;
    assert_eq!(concrete["status_code"], 10002, "{concrete}");
    // Only one of token / network: 10009.
    for half in [("token", "USDT"), ("network", "tron")] {
        let r = gm_create(&app, &s, &[("order_id", "P-2"), ("amount", "10"), half]).await;
        assert_eq!(r["status_code"], 10009, "{half:?}: {r}");
    }

    assert_eq!(status(&app, &trade_id).await, 4);
    let c = counter(&app, &trade_id).await;
    assert_eq!(c["status_code"], 200, "{c}");
    let cd = &c["data"];
    assert_eq!(cd["status"], 4);
    assert_eq!(cd["network"], "");
    assert_eq!(cd["receive_address"], "");
    assert_eq!(cd["actual_amount"], 0);
    assert_eq!(cd["amount"].to_string(), "72");
    assert_eq!(cd["currency"], "CNY");
    assert_eq!(cd["payment_type"], "gmpay");
    assert_eq!(cd["is_selected"], false);
    assert!(cd["expiration_time"].as_i64().unwrap() > cd["created_at"].as_i64().unwrap());

    // Unsupported asset: 10016; the placeholder stays as it was.
    let r = switch(&app, &trade_id, "TRX", "tron").await;
    assert_eq!(r["status_code"], 10016, "{r}");
    let r = switch(&app, &trade_id, "USDT", "bsc").await;
    assert_eq!(r["status_code"], 10016, "bsc has no wallet: {r}");
    assert_eq!(status(&app, &trade_id).await, 4);

    // The payer chooses TRON: the same trade_id becomes payable.
    let r = switch(&app, &trade_id, "USDT", "tron").await;
    assert_eq!(r["status_code"], 200, "{r}");
    let d = r["data"].clone();
    assert_eq!(d["trade_id"], trade_id.as_str());
    assert_eq!(d["status"], 1);
    assert_eq!(d["network"], "tron");
    assert_eq!(d["token"], "USDT");
    assert_eq!(d["receive_address"], common::TRON_WALLET);
    assert_eq!(d["actual_amount"].to_string(), "10");
    assert_eq!(d["is_selected"], false);
    assert_eq!(status(&app, &trade_id).await, 1);
    // The merchant repeating its create now sees the order it became.
    let again = gm_create(&app, &s, &[("order_id", "P-1"), ("amount", "72.00")]).await;
    assert_eq!(again["data"]["trade_id"], trade_id.as_str(), "{again}");
    assert_eq!(again["data"]["status"], 1, "{again}");
    assert_eq!(again["data"]["receive_address"], common::TRON_WALLET);

    // Paid: the callback names the merchant's order.
    assert!(matches!(pay(&app, &d).await, CreditOutcome::Paid { .. }));
    app.wait_delivered(&trade_id, 15).await;
    let calls = s.merchant.wait_for(1, 5).await;
    let cb: Value = serde_json::from_str(&calls[0].body).expect("json callback");
    assert_eq!(cb["trade_id"], trade_id.as_str());
    assert_eq!(cb["order_id"], "P-1");
    assert_eq!(cb["status"], 2);
    assert_eq!(status(&app, &trade_id).await, 2);
    // Paid: no more switching (10013).
    let r = switch(&app, &trade_id, "USDT", "ethereum").await;
    assert_eq!(r["status_code"], 10013, "{r}");
    app.stop().await;
}
on_all_backends!(placeholder_is_status_4_until_the_payer_chooses);

async fn a_paid_child_pays_its_parent_once(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let s = shop(&app).await;
    let r = gm_create(
        &app,
        &s,
        &[
            ("order_id", "C-1"),
            ("amount", "36"),
            ("token", "USDT"),
            ("network", "tron"),
        ],
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    let parent = r["data"]["trade_id"].as_str().unwrap().to_string();
    let pd = counter(&app, &parent).await["data"].clone();
    assert_eq!(pd["is_selected"], false);

    // Same network as the order: the order itself, selected.
    let same = switch(&app, &parent, "usdt", "TRON").await;
    assert_eq!(same["data"]["trade_id"], parent.as_str(), "{same}");
    assert_eq!(same["data"]["is_selected"], true);

    let r = switch(&app, &parent, "USDT", "ethereum").await;
    assert_eq!(r["status_code"], 200, "{r}");
    let child = r["data"].clone();
    let child_id = child["trade_id"].as_str().unwrap().to_string();
    assert_ne!(child_id, parent);
    assert_eq!(child["network"], "ethereum");
    assert_eq!(child["receive_address"], common::EVM_WALLET);
    assert_eq!(child["status"], 1);
    assert_eq!(child["is_selected"], true);
    assert_eq!(child["amount"].to_string(), "36");
    // Asking again returns the same child; another network: 10011; the child: 10012.
    let again = switch(&app, &parent, "USDT", "ethereum").await;
    assert_eq!(again["data"]["trade_id"], child_id.as_str(), "{again}");
    let r = switch(&app, &parent, "USDT", "polygon").await;
    assert_eq!(r["status_code"], 10011, "{r}");
    let r = switch(&app, &child_id, "USDT", "tron").await;
    assert_eq!(r["status_code"], 10012, "{r}");
    assert_eq!(counter(&app, &parent).await["data"]["is_selected"], true);

    // The payer pays the child: the parent is credited and called back with its own ids.
    match pay(&app, &child).await {
        CreditOutcome::Paid { trade_id, .. } => assert_eq!(trade_id, parent),
        other => panic!("child payment: {other:?}"),
    }
    let paid = app.wait_delivered(&parent, 15).await;
    assert!(paid.block_transaction_id.is_some());
    let calls = s.merchant.wait_for(1, 5).await;
    let cb: Value = serde_json::from_str(&calls[0].body).expect("json callback");
    assert_eq!(cb["trade_id"], parent.as_str(), "{cb}");
    assert_eq!(cb["order_id"], "C-1");
    assert_eq!(cb["status"], 2);
    assert_eq!(status(&app, &parent).await, 2);
    assert_eq!(status(&app, &child_id).await, 2);

    // A second payment, to the parent's own address: recorded for the operator, no callback.
    assert!(
        matches!(pay(&app, &pd).await, CreditOutcome::PaidTwice { .. }),
        "second payment is flagged"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(s.merchant.received().len(), 1, "exactly one callback");
    let o = epusdt::service::order::find_by_trade_id(&app.state.db, &parent)
        .await
        .unwrap()
        .unwrap();
    assert!(o.has_flag(flags::PAID_TWICE));
    let r = switch(&app, &parent, "USDT", "ethereum").await;
    assert_eq!(r["status_code"], 10013, "{r}");
    app.stop().await;
}
on_all_backends!(a_paid_child_pays_its_parent_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_paid_directly_ends_the_child_and_no_second_callback() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let s = shop(&app).await;
    let r = gm_create(
        &app,
        &s,
        &[
            ("order_id", "D-1"),
            ("amount", "7.2"),
            ("token", "USDT"),
            ("network", "tron"),
        ],
    )
    .await;
    let parent = r["data"]["trade_id"].as_str().unwrap().to_string();
    let pd = counter(&app, &parent).await["data"].clone();
    let child = switch(&app, &parent, "USDT", "erc20").await["data"].clone();
    let child_id = child["trade_id"].as_str().unwrap().to_string();

    assert!(matches!(pay(&app, &pd).await, CreditOutcome::Paid { .. }));
    app.wait_delivered(&parent, 15).await;
    assert_eq!(
        status(&app, &child_id).await,
        3,
        "the child ended with its parent"
    );
    // The payer pays the (ended) child on time anyway: flagged on the parent, no callback.
    let late = pay(&app, &child).await;
    assert!(matches!(late, CreditOutcome::PaidTwice { .. }), "{late:?}");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(s.merchant.received().len(), 1, "exactly one callback");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_unknown_orders_cannot_switch() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let s = shop(&app).await;
    let r = gm_create(&app, &s, &[("order_id", "E-1"), ("amount", "10")]).await;
    let placeholder = r["data"]["trade_id"].as_str().unwrap().to_string();
    let r = gm_create(
        &app,
        &s,
        &[
            ("order_id", "E-2"),
            ("amount", "10"),
            ("token", "USDT"),
            ("network", "tron"),
        ],
    )
    .await;
    let order = r["data"]["trade_id"].as_str().unwrap().to_string();
    // Both reach their expiry.
    use epusdt::store::entities::{order, order_choice};
    let past = epusdt::service::now() - 1;
    order_choice::Entity::update_many()
        .col_expr(order_choice::Column::ExpiresAt, Expr::value(past))
        .filter(order_choice::Column::TradeId.eq(&placeholder))
        .exec(&app.state.db)
        .await
        .unwrap();
    order::Entity::update_many()
        .col_expr(order::Column::ExpiresAt, Expr::value(past))
        .filter(order::Column::TradeId.eq(&order))
        .exec(&app.state.db)
        .await
        .unwrap();
    for t in [&placeholder, &order] {
        assert_eq!(status(&app, t).await, 3, "{t}");
        let r = switch(&app, t, "USDT", "ethereum").await;
        assert_eq!(r["status_code"], 10013, "{r}");
    }
    assert_eq!(counter(&app, &placeholder).await["data"]["status"], 3);

    let r = counter(&app, "20261202000000123456789").await;
    assert_eq!(r["status_code"], 10008, "{r}");
    let r = switch(&app, "20261202000000123456789", "USDT", "tron").await;
    assert_eq!(r["status_code"], 10008, "{r}");
    let r = common::post_json(
        &app.client,
        &app.url("/pay/switch-network"),
        &json!({ "trade_id": order, "token": "USDT" }),
    )
    .await;
    assert_eq!(r["status_code"], 10009, "{r}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_lists_only_networks_with_an_enabled_wallet() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    // A BSC wallet, disabled: BSC is not offered.
    epusdt::service::wallet::add(
        &app.state.db,
        &epusdt::domain::network::Networks::presets(),
        "bsc",
        "0x00000000000000000000000000000000000000bb",
        None,
        "b1",
    )
    .await
    .expect("wallet");
    epusdt::service::wallet::set_enabled(
        &app.state.db,
        "0x00000000000000000000000000000000000000bb",
        false,
    )
    .await
    .expect("disable");
    let r = common::get_json(&app, "/payments/gmpay/v1/config").await;
    assert_eq!(r["status_code"], 200, "{r}");
    let assets = r["data"]["supported_assets"].as_array().expect("assets");
    let networks: Vec<&str> = assets
        .iter()
        .map(|a| a["network"].as_str().unwrap())
        .collect();
    assert_eq!(networks, ["tron", "ethereum"], "{r}");
    assert_eq!(assets[0]["tokens"], json!(["USDT", "USDC"]));
    assert!(assets[0]["display_name"].as_str().unwrap().contains("TRON"));
    for key in ["cashier_name", "logo_url", "website_title", "support_link"] {
        assert!(r["data"]["site"][key].is_string(), "site.{key}: {r}");
    }
    assert!(r["data"]["version"].is_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_placeholder_reads_4_and_cannot_be_chosen() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let s = shop(&app).await;
    let r = gm_create(&app, &s, &[("order_id", "X-1"), ("amount", "10")]).await;
    let trade_id = r["data"]["trade_id"].as_str().unwrap().to_string();
    // GMPay cancel: v1's cancel route with the merchant's pid, signed like create.
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("pid", s.pid.to_string());
    p.insert("trade_id", trade_id.clone());
    let sig = common::gmpay_sign(&p, &s.secret);
    let r = common::post_json(
        &app.client,
        &app.url("/api/v1/order/cancel-transaction"),
        &json!({ "pid": s.pid, "trade_id": trade_id, "signature": sig }),
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    assert_eq!(r["data"]["status"], 4);
    let r = switch(&app, &trade_id, "USDT", "tron").await;
    assert_eq!(r["status_code"], 10013, "{r}");
    app.stop().await;
}

async fn page(app: &TestApp, trade_id: &str) -> String {
    let r = app
        .client
        .get(app.url(&format!("/pay/checkout-counter/{trade_id}")))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), 200);
    r.text().await.expect("html")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkout_page_offers_the_network_choice() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let s = shop(&app).await;
    // A placeholder: one button per supported network, nothing to pay yet.
    let r = gm_create(&app, &s, &[("order_id", "W-1"), ("amount", "72")]).await;
    let placeholder = r["data"]["trade_id"].as_str().unwrap().to_string();
    let html = page(&app, &placeholder).await;
    assert!(html.contains(r#"data-switch-network="tron""#), "{html}");
    assert!(html.contains(r#"data-switch-network="ethereum""#));
    assert!(!html.contains(r#"data-switch-network="bsc""#));
    assert!(html.contains("/pay/switch-network"));
    assert!(html.contains("72.00"));

    // A waiting TRON USDT order: "pay on another network" offers Ethereum, and USDC on TRON.
    let r = gm_create(
        &app,
        &s,
        &[
            ("order_id", "W-2"),
            ("amount", "72"),
            ("token", "USDT"),
            ("network", "tron"),
        ],
    )
    .await;
    let parent = r["data"]["trade_id"].as_str().unwrap().to_string();
    let html = page(&app, &parent).await;
    assert!(html.contains("Pay on another network"));
    assert!(html.contains(r#"data-switch-network="ethereum""#));
    assert!(!html.contains(r#"data-switch-network="tron" data-switch-token="USDT""#));
    assert!(html.contains(r#"data-switch-network="tron" data-switch-token="USDC""#));
    // The child's page offers nothing more; the parent's offers only the child's network.
    let child = switch(&app, &parent, "USDT", "ethereum").await["data"]["trade_id"]
        .as_str()
        .unwrap()
        .to_string();
    let html = page(&app, &child).await;
    assert!(!html.contains("data-switch-network=\""));
    assert!(html.contains(common::EVM_WALLET));
    let html = page(&app, &parent).await;
    assert!(html.contains(r#"data-switch-network="ethereum""#));
    app.stop().await;
}

/// The payer's choice in headless Chromium (skipped without node, chromium and `npm ci` in
/// tests/browser, like `checkout_browser`): the placeholder's page, a click on TRON, the page
/// of the now payable order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payer_chooses_a_network_in_headless_chromium() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !(node_ok
        && std::path::Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").is_dir())
    {
        common::skip("browser test needs node, chromium and `npm ci` in tests/browser");
        return;
    }
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let s = shop(&app).await;
    let r = gm_create(&app, &s, &[("order_id", "B-1"), ("amount", "72")]).await;
    let trade_id = r["data"]["trade_id"].as_str().unwrap().to_string();
    let url = app.url(&format!("/pay/checkout-counter/{trade_id}"));
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let shot = shots.join("choose.png");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .current_dir(&dir)
            .arg("switch.mjs")
            .arg(&url)
            .arg(&shot)
            .arg("tron")
            .arg(common::TRON_WALLET)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "browser check failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        status(&app, &trade_id).await,
        1,
        "the placeholder became payable"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parents_expiry_or_cancel_ends_its_child() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let s = shop(&app).await;
    let mut pairs = Vec::new();
    for id in ["K-1", "K-2"] {
        let r = gm_create(
            &app,
            &s,
            &[
                ("order_id", id),
                ("amount", "7.2"),
                ("token", "USDT"),
                ("network", "tron"),
            ],
        )
        .await;
        let parent = r["data"]["trade_id"].as_str().unwrap().to_string();
        let child = switch(&app, &parent, "USDT", "ethereum").await["data"]["trade_id"]
            .as_str()
            .unwrap()
            .to_string();
        // The parent now lasts as long as its child.
        let p = counter(&app, &parent).await["data"].clone();
        let c = counter(&app, &child).await["data"].clone();
        assert_eq!(p["expiration_time"], c["expiration_time"]);
        pairs.push((parent, child));
    }
    // K-1: the merchant cancels the parent (GMPay cancel): the child is cancelled too.
    let (parent, child) = &pairs[0];
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("pid", s.pid.to_string());
    p.insert("trade_id", parent.clone());
    let sig = common::gmpay_sign(&p, &s.secret);
    let r = common::post_json(
        &app.client,
        &app.url("/api/v1/order/cancel-transaction"),
        &json!({ "pid": s.pid, "trade_id": parent, "signature": sig }),
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    assert_eq!(
        status(&app, child).await,
        4,
        "child cancelled with its parent"
    );

    // K-2: the parent's expiry job runs at its time: the child ends too.
    let (parent, child) = &pairs[1];
    use epusdt::store::entities::order;
    order::Entity::update_many()
        .col_expr(
            order::Column::ExpiresAt,
            Expr::value(epusdt::service::now() - 1),
        )
        .filter(order::Column::TradeId.eq(parent))
        .exec(&app.state.db)
        .await
        .unwrap();
    let outcome = epusdt::service::order::expire_order(&app.state.db, &common::rules(&app), parent)
        .await
        .unwrap();
    assert_eq!(outcome, epusdt::service::order::ExpireOutcome::Expired);
    let c = epusdt::service::order::find_by_trade_id(&app.state.db, child)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status.code(), 3, "child expired with its parent");
    app.stop().await;
}

async fn concurrent_switches_make_one_order(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let s = shop(&app).await;
    // Two payers' tabs choose at once: one order, the same for both.
    let r = gm_create(&app, &s, &[("order_id", "R-1"), ("amount", "72")]).await;
    let placeholder = r["data"]["trade_id"].as_str().unwrap().to_string();
    let (a, b) = tokio::join!(
        switch(&app, &placeholder, "USDT", "tron"),
        switch(&app, &placeholder, "USDT", "tron")
    );
    for r in [&a, &b] {
        assert_eq!(r["status_code"], 200, "{r}");
        assert_eq!(r["data"]["trade_id"], placeholder.as_str());
    }
    assert_eq!(a["data"]["actual_amount"], b["data"]["actual_amount"]);
    // Two switches of a waiting order at once: one child.
    let r = gm_create(
        &app,
        &s,
        &[
            ("order_id", "R-2"),
            ("amount", "72"),
            ("token", "USDT"),
            ("network", "tron"),
        ],
    )
    .await;
    let parent = r["data"]["trade_id"].as_str().unwrap().to_string();
    let (a, b) = tokio::join!(
        switch(&app, &parent, "USDT", "ethereum"),
        switch(&app, &parent, "USDT", "ethereum")
    );
    for r in [&a, &b] {
        assert_eq!(r["status_code"], 200, "{r}");
    }
    assert_eq!(a["data"]["trade_id"], b["data"]["trade_id"], "{a} {b}");
    let kids = epusdt::service::order::children(&app.state.db, &parent)
        .await
        .unwrap();
    assert_eq!(kids.len(), 1);
    app.stop().await;
}
on_all_backends!(concurrent_switches_make_one_order);

/// A placeholder and a concrete create of one order_id at once (a merchant's retry that
/// changed its mind, or two shop servers): never both stand. The orders table and the
/// placeholders table have no index in common, so `service::order::create` (insert, then read;
/// on SQLite the read is inside the insert) and the placeholder's create (insert, then read)
/// guarantee it themselves: what answered 200 stands, what answered 10002 does not (both may
/// yield under a close race: the merchant's retry then decides; nobody was shown an address).
async fn a_placeholder_and_an_order_of_one_order_id_never_both_stand(backend: Backend) {
    use epusdt::store::entities::{order, order_choice};
    use sea_orm::PaginatorTrait;
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let s = shop(&app).await;
    for i in 0..12 {
        let order_id = format!("RACE-{i}");
        let placeholder = [("order_id", order_id.as_str()), ("amount", "72")];
        let concrete = [
            ("order_id", order_id.as_str()),
            ("amount", "72"),
            ("token", "USDT"),
            ("network", "tron"),
        ];
        let (p, c) = tokio::join!(
            gm_create(&app, &s, &placeholder),
            gm_create(&app, &s, &concrete)
        );
        let ok = |r: &Value| r["status_code"] == 200;
        for r in [&p, &c] {
            assert!(ok(r) || r["status_code"] == 10002, "{r}");
        }
        let choosing = order_choice::Entity::find()
            .filter(order_choice::Column::OrderId.eq(order_id.as_str()))
            .filter(
                order_choice::Column::Status
                    .eq(epusdt::service::order::choice::choice_state::CHOOSING),
            )
            .count(&app.state.db)
            .await
            .unwrap();
        let orders = order::Entity::find()
            .filter(order::Column::OrderId.eq(order_id.as_str()))
            .count(&app.state.db)
            .await
            .unwrap();
        assert!(
            !(choosing == 1 && orders == 1),
            "{order_id}: a placeholder and an order both stand ({p} / {c})"
        );
        assert_eq!(ok(&p), choosing == 1, "placeholder answer {p}");
        assert_eq!(ok(&c), orders == 1, "order answer {c}");
    }
    app.stop().await;
}
on_all_backends!(a_placeholder_and_an_order_of_one_order_id_never_both_stand);

//! EPay as shop plugins send it (issue 11). The client here is written from the EPay
//! documentation and upstream GMWalletApp/epusdt's `submit.php` handler, not from our code:
//! `sign = md5(sorted "k=v" strings, empty values and sign/sign_type left out, joined by "&" +
//! key)`, `sign_type=MD5`. A create answers 302 to the checkout page; the notify is a GET with
//! `pid, trade_no, out_trade_no, type, name, money (4 decimals), trade_status=TRADE_SUCCESS, sign,
//! sign_type`; a paid payer is sent back through `GET /pay/return/{trade_id}`.
use std::collections::BTreeMap;

use epusdt::service::order::find_by_trade_id;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Backend, Merchant, TestApp};

const SUBMIT: &str = "/payments/epay/v1/order/create-transaction/submit.php";

/// EPay's MD5 as upstream computes it (Go `sort.Strings` over whole `k=v` strings).
fn epay_md5(params: &[(String, String)], key: &str) -> String {
    let mut pairs: Vec<String> = params
        .iter()
        .filter(|(k, v)| k != "sign" && k != "sign_type" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.sort();
    common::md5_hex(&format!("{}{key}", pairs.join("&")))
}

/// A shop plugin's signed request: `fields` plus `sign` and `sign_type=MD5`.
fn signed(fields: &[(&str, &str)], key: &str) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sign = epay_md5(&p, key);
    p.push(("sign".into(), sign));
    p.push(("sign_type".into(), "MD5".into()));
    p
}

/// The shop: a merchant with `pid` and its key.
async fn shop(app: &TestApp, pid: i64) -> String {
    let m = epusdt::service::merchant::add(
        &app.state.db,
        &app.state.keys,
        "epay shop",
        Some(pid),
        None,
        false,
    )
    .await
    .expect("merchant");
    m.secret.expose().to_string()
}

async fn submit_get(app: &TestApp, params: &[(String, String)]) -> reqwest::Response {
    app.client
        .get(app.url(SUBMIT))
        .query(params)
        .send()
        .await
        .expect("request")
}

async fn submit_post(app: &TestApp, params: &[(String, String)]) -> reqwest::Response {
    app.client
        .post(app.url(SUBMIT))
        .form(params)
        .send()
        .await
        .expect("request")
}

/// The trade id of a 302 to the checkout page.
fn checkout_trade_id(resp: &reqwest::Response) -> String {
    assert_eq!(resp.status(), StatusCode::FOUND, "EPay create answers 302");
    let loc = resp.headers()["location"].to_str().expect("location");
    assert!(loc.contains("/pay/checkout-counter/"), "{loc}");
    loc.rsplit('/').next().expect("trade id").to_string()
}

/// Pays the order as the chain watcher would (its exact payable amount).
async fn pay(app: &TestApp, trade_id: &str) {
    let o = find_by_trade_id(&app.state.db, trade_id)
        .await
        .expect("lookup")
        .expect("order");
    app.pay(&json!({ "token": o.address }), &o.actual_amount.to_string())
        .await;
}

fn query_of(uri: &str) -> Vec<(String, String)> {
    url::Url::parse(&format!("http://x{uri}"))
        .expect("uri")
        .query_pairs()
        .into_owned()
        .collect()
}

/// Checks an EPay result (notify or return) the way a shop's plugin does: the fields upstream
/// sends, a signature over them with the key, and returns them by name.
fn verify_result(pairs: &[(String, String)], key: &str) -> BTreeMap<String, String> {
    let signed: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| {
            [
                "pid",
                "trade_no",
                "out_trade_no",
                "type",
                "name",
                "money",
                "trade_status",
            ]
            .contains(&k.as_str())
        })
        .cloned()
        .collect();
    let got: BTreeMap<String, String> = pairs.iter().cloned().collect();
    assert_eq!(
        got["sign"],
        epay_md5(&signed, key),
        "sign verifies: {pairs:?}"
    );
    assert_eq!(got["sign_type"], "MD5");
    assert_eq!(got["trade_status"], "TRADE_SUCCESS");
    got
}

/// The error envelope of an EPay create, with upstream's HTTP status.
async fn envelope(resp: reqwest::Response, http: u16) -> Value {
    assert_eq!(resp.status().as_u16(), http);
    let v: Value = resp.json().await.expect("json envelope");
    assert!(v["request_id"].is_string(), "{v}");
    v
}

async fn shop_plugin_default_pays_notifies_and_returns(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let key = shop(&app, 3001).await;
    let (merchant, murl) = Merchant::start(0, "success").await;
    let notify = format!("{murl}/epay/notify?shop=1");
    let fields = [
        ("pid", "3001"),
        ("type", "alipay"),
        ("out_trade_no", "P-1"),
        ("notify_url", notify.as_str()),
        ("return_url", "https://shop.example/return?from=epusdt"),
        ("name", "VIP Month"),
        ("money", "1.00"),
    ];
    // As GET (a plugin's redirect) and as a POST form (its auto-submitted form).
    let trade_id = checkout_trade_id(&submit_get(&app, &signed(&fields, &key)).await);
    let mut second = fields;
    second[2] = ("out_trade_no", "P-2");
    let posted = checkout_trade_id(&submit_post(&app, &signed(&second, &key)).await);
    assert_ne!(trade_id, posted);
    let o = find_by_trade_id(&app.state.db, &trade_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.epay_type.as_str(), o.network.as_str()),
        ("alipay", "tron")
    );
    assert_eq!((o.currency.as_str(), o.name.as_str()), ("CNY", "VIP Month"));

    // Not paid yet: the return hop sends the payer back to the checkout page.
    let hop = format!("/pay/return/{trade_id}");
    let resp = app.client.get(app.url(&hop)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        resp.headers()["location"],
        format!("/pay/checkout-counter/{trade_id}").as_str()
    );

    pay(&app, &trade_id).await;
    let calls = merchant.wait_for(1, 20).await;
    assert_eq!(calls[0].method, "GET");
    assert!(
        calls[0].uri.starts_with("/epay/notify?"),
        "{}",
        calls[0].uri
    );
    assert_eq!(calls[0].body, "");
    let pairs = query_of(&calls[0].uri);
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "money",
            "name",
            "out_trade_no",
            "pid",
            "shop",
            "sign",
            "sign_type",
            "trade_no",
            "trade_status",
            "type"
        ],
        "exactly upstream's parameters, plus the notify URL's own"
    );
    let got = verify_result(&pairs, &key);
    assert_eq!(got["shop"], "1");
    assert_eq!(got["pid"], "3001");
    assert_eq!(got["trade_no"], trade_id);
    assert_eq!(got["out_trade_no"], "P-1");
    assert_eq!(got["type"], "alipay");
    assert_eq!(got["name"], "VIP Month");
    assert_eq!(got["money"], "1.0000");
    app.wait_delivered(&trade_id, 10).await;

    // The paid page sends the payer through the hop, which adds the signed result.
    let page = app
        .client
        .get(app.url(&format!("/pay/checkout-counter/{trade_id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .replace("&#x2f;", "/")
        .replace("\\/", "/");
    assert!(
        page.contains(&format!("{}{hop}", app.config.app_uri)),
        "{page}"
    );
    assert!(!page.contains("shop.example/return"), "{page}");
    let resp = app.client.get(app.url(&hop)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("https://shop.example/return?"), "{loc}");
    let url = url::Url::parse(&loc).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let back = verify_result(&pairs, &key);
    assert_eq!(back["from"], "epusdt", "the return URL's own query is kept");
    assert_eq!(
        (
            back["trade_no"].as_str(),
            back["money"].as_str(),
            back["type"].as_str()
        ),
        (trade_id.as_str(), "1.0000", "alipay")
    );
    app.stop().await;
}
on_all_backends!(shop_plugin_default_pays_notifies_and_returns);

/// (order, extra fields, stored type, network, echoed type)
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
    &'static str,
);

/// Every `type` a plugin or a shop sends, its network and what the callback echoes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_selectors_defaults_and_token_network() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let key = shop(&app, 3002).await;
    let (merchant, murl) = Merchant::start(0, "SUCCESS").await;
    let notify = format!("{murl}/n");
    let base = |order: &'static str| {
        vec![
            ("pid", "3002"),
            ("out_trade_no", order),
            ("money", "7.20"),
            ("name", "Book"),
        ]
    };
    let cases: [Case; 6] = [
        // (order, extra fields, stored type, network, echoed type)
        ("T-empty", &[("type", "")], "", "tron", "alipay"),
        ("T-none", &[], "", "tron", "alipay"),
        ("T-wx", &[("type", "wxpay")], "wxpay", "tron", "wxpay"),
        (
            "T-sel",
            &[("type", "usdt.tron")],
            "usdt.tron",
            "tron",
            "usdt.tron",
        ),
        (
            "T-tn",
            &[
                ("type", "alipay"),
                ("token", "usdt"),
                ("network", "ethereum"),
            ],
            "alipay",
            "ethereum",
            "alipay",
        ),
        (
            "T-erc",
            &[("type", "usdt.erc20"), ("network", "tron")],
            "usdt.erc20",
            "ethereum",
            "usdt.erc20",
        ),
    ];
    let mut trades = Vec::new();
    for (order, extra, stored, network, _) in cases {
        let mut f = base(order);
        f.push(("notify_url", notify.as_str()));
        f.extend_from_slice(extra);
        if order == "T-none" {
            // No type and no name: both optional.
            f.retain(|(k, _)| *k != "name");
        }
        let trade_id = checkout_trade_id(&submit_get(&app, &signed(&f, &key)).await);
        let o = find_by_trade_id(&app.state.db, &trade_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (o.epay_type.as_str(), o.network.as_str()),
            (stored, network),
            "{order}"
        );
        trades.push(trade_id);
    }
    for t in &trades {
        pay(&app, t).await;
    }
    let calls = merchant.wait_for(cases.len(), 30).await;
    for (order, _, _, _, echoed) in cases {
        let call = calls
            .iter()
            .map(|c| query_of(&c.uri))
            .find(|q| q.iter().any(|(k, v)| k == "out_trade_no" && v == order))
            .unwrap_or_else(|| panic!("a callback for {order}"));
        let got = verify_result(&call, &key);
        assert_eq!(
            got["type"], echoed,
            "{order}: the type as sent, never rewritten"
        );
        assert_eq!(got["money"], "7.2000");
        let name = if order == "T-none" { "" } else { "Book" };
        assert_eq!(got["name"], name, "{order}");
    }
    // Upstream accepts `success` in any case.
    for t in &trades {
        app.wait_delivered(t, 10).await;
    }
    app.stop().await;
}

/// Errors: the envelope with upstream's HTTP status (401 signature, 400 business codes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_upstreams_http_status() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let key = shop(&app, 3003).await;
    let order = |no: &'static str, ty: &'static str| {
        vec![
            ("pid", "3003"),
            ("out_trade_no", no),
            ("money", "10"),
            ("notify_url", "http://127.0.0.1:9/n"),
            ("type", ty),
        ]
    };
    let v = envelope(
        submit_get(&app, &signed(&order("X-1", "usdt.solana"), &key)).await,
        400,
    )
    .await;
    assert_eq!(v["status_code"], 10009);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with("type `usdt.solana` is not a payment type here"),
        "{msg}"
    );
    assert!(
        msg.contains("usdt.trc20") && msg.contains("usdt.bep20"),
        "{msg}"
    );

    // A selector for a network without a wallet: no wallet, 10003.
    let v = envelope(
        submit_post(&app, &signed(&order("X-2", "usdt.bep20"), &key)).await,
        400,
    )
    .await;
    assert_eq!(v["status_code"], 10003, "{v}");

    let mut forged = signed(&order("X-3", "alipay"), &key);
    forged[2].1 = "0.01".into();
    let v = envelope(submit_get(&app, &forged).await, 401).await;
    assert_eq!(v["status_code"], 401);
    let unsigned: Vec<(String, String)> = order("X-4", "alipay")
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let v = envelope(submit_get(&app, &unsigned).await, 401).await;
    assert_eq!(v["status_code"], 401);

    // The return hop of an unknown order: 10008 with HTTP 400, as upstream.
    for id in ["20260101000000123456789", "no such id"] {
        let resp = app
            .client
            .get(app.url(&format!("/pay/return/{}", id.replace(' ', "%20"))))
            .send()
            .await
            .unwrap();
        let v = envelope(resp, 400).await;
        assert_eq!(v["status_code"], 10008, "{id}: {v}");
    }

    // A paid order that is not EPay goes back to its checkout page.
    let r = app
        .create_v1(&[
            ("order_id", "V-1"),
            ("amount", "7.2"),
            ("notify_url", "http://127.0.0.1:9/n"),
            ("redirect_url", "https://shop.example/r"),
        ])
        .await;
    let trade_id = r["data"]["trade_id"].as_str().unwrap().to_string();
    app.pay(&r["data"], r["data"]["actual_amount"].to_string().as_str())
        .await;
    let resp = app
        .client
        .get(app.url(&format!("/pay/return/{trade_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(
        resp.headers()["location"],
        format!("/pay/checkout-counter/{trade_id}").as_str()
    );
    app.stop().await;
}

/// `epay_default_network` / `epay_default_currency` decide a plugin's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_defaults_decide_a_plugin_order() {
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.epay_default_network = Some("usdt.erc20".into());
        c.epay_default_currency = "usd".into();
    })
    .await
    else {
        return;
    };
    let key = shop(&app, 3004).await;
    let fields = [
        ("pid", "3004"),
        ("type", "alipay"),
        ("out_trade_no", "D-1"),
        ("notify_url", "http://127.0.0.1:9/n"),
        ("money", "3"),
    ];
    let trade_id = checkout_trade_id(&submit_get(&app, &signed(&fields, &key)).await);
    let o = find_by_trade_id(&app.state.db, &trade_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.network.as_str(), o.currency.as_str()),
        ("ethereum", "USD")
    );
    assert_eq!(o.actual_amount.to_string(), "3");
    app.stop().await;
}

/// A bad EPay default refuses to start, naming the key (exit 2).
#[test]
fn bad_epay_defaults_exit_2_naming_the_key() {
    for (var, value, key) in [
        ("EPUSDT_EPAY_DEFAULT_TOKEN", "DAI", "epay_default_token"),
        (
            "EPUSDT_EPAY_DEFAULT_NETWORK",
            "mars",
            "epay_default_network",
        ),
        (
            "EPUSDT_EPAY_DEFAULT_CURRENCY",
            "yen1",
            "epay_default_currency",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = common::epusdt(dir.path())
            .env(var, value)
            .args(["config", "check"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{var}: {err}");
    }
}

/// A paid EPay order the hop cannot sign for: no return URL (10044), its merchant disabled
/// since (10045) — both HTTP 400, as upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_hop_errors_of_a_paid_order() {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let key = shop(&app, 3005).await;
    let mut trades = Vec::new();
    for (no, ret) in [("R-1", ""), ("R-2", "https://shop.example/r")] {
        let mut f = vec![
            ("pid", "3005"),
            ("out_trade_no", no),
            ("money", "7.2"),
            ("notify_url", "http://127.0.0.1:9/n"),
        ];
        if !ret.is_empty() {
            f.push(("return_url", ret));
        }
        let trade_id = checkout_trade_id(&submit_get(&app, &signed(&f, &key)).await);
        pay(&app, &trade_id).await;
        trades.push(trade_id);
    }
    let hop = |t: &str| app.client.get(app.url(&format!("/pay/return/{t}"))).send();
    let v = envelope(hop(&trades[0]).await.unwrap(), 400).await;
    assert_eq!(v["status_code"], 10044, "{v}");
    assert_eq!(hop(&trades[1]).await.unwrap().status(), StatusCode::FOUND);

    let m = epusdt::service::merchant::find_by_pid(&app.state.db, &app.state.keys, 3005)
        .await
        .unwrap()
        .unwrap();
    let row = epusdt::store::entities::merchant::Entity::find_by_id(m.id)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut row: epusdt::store::entities::merchant::ActiveModel = row.into();
    row.enabled = Set(false);
    row.update(&app.state.db).await.unwrap();
    let v = envelope(hop(&trades[1]).await.unwrap(), 400).await;
    assert_eq!(v["status_code"], 10045, "{v}");
    assert!(!v.to_string().contains(&key), "no secret in the reply");
    app.stop().await;
}

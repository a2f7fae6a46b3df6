//! A shop integrated with BEpusdt changes only the base URL (issue 11). The client is written
//! from BEpusdt's documentation: v1 create names the fiat currency `fiat`, may send `rate` and
//! `address` (merchant-chosen, which this gateway does not offer), and the EPay route is
//! `/submit.php` with pid 1000 and the API token as key.
use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{self, Backend, TOKEN};

async fn v1(app: &common::TestApp, fields: &[(&str, &str)]) -> Value {
    app.create_v1(fields).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fiat_is_the_currency_and_merchant_chosen_rate_or_address_is_refused() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let base = [
        ("amount", "10"),
        ("notify_url", "http://example.com/n"),
        ("trade_type", "usdt.trc20"),
    ];
    // fiat=USD at 1 USD per USDT: 10 USD is 10 USDT (CNY at 7.2 would be 1.39).
    let mut f = base.to_vec();
    f.extend([("order_id", "B1"), ("fiat", "USD")]);
    let r = v1(&app, &f).await;
    assert_eq!(r["status_code"], 200, "{r}");
    let actual: rust_decimal::Decimal = r["data"]["actual_amount"]
        .to_string()
        .trim_matches('"')
        .parse()
        .expect("actual_amount");
    assert!(
        actual >= rust_decimal::Decimal::new(10, 0) && actual < rust_decimal::Decimal::new(11, 0),
        "fiat=USD must price in USD: {r}"
    );

    // fiat and currency that disagree: which one would the shop mean?
    let mut f = base.to_vec();
    f.extend([("order_id", "B2"), ("fiat", "USD"), ("currency", "CNY")]);
    let r = v1(&app, &f).await;
    assert_eq!(r["status_code"], 10009, "{r}");
    assert!(r["message"].as_str().unwrap().contains("fiat"), "{r}");

    // The same value twice is fine.
    let mut f = base.to_vec();
    f.extend([("order_id", "B3"), ("fiat", "usd"), ("currency", "USD")]);
    assert_eq!(v1(&app, &f).await["status_code"], 200);

    // BEpusdt's merchant-chosen rate and address would change what the payer pays, or to whom.
    for (key, value) in [("rate", "7.3"), ("address", common::TRON_WALLET)] {
        let mut f = base.to_vec();
        f.extend([("order_id", "B4"), (key, value)]);
        let r = v1(&app, &f).await;
        assert_eq!(r["status_code"], 10009, "{key}: {r}");
        let msg = r["message"].as_str().unwrap();
        assert!(
            msg.starts_with(key) && msg.contains("not supported"),
            "{msg}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bepusdt_submit_php_is_the_epay_route_of_the_default_merchant() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    // BEpusdt's EPay: pid 1000, key = the API token, `type` a trade type.
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in [
        ("pid", "1000"),
        ("type", "usdt.trc20"),
        ("out_trade_no", "BE-1"),
        ("notify_url", "http://example.com/notify"),
        ("return_url", "http://example.com/return"),
        ("name", "VIP"),
        ("money", "7.20"),
    ] {
        p.insert(k, v.to_string());
    }
    let mut pairs: Vec<String> = p.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    let sign = common::md5_hex(&format!("{}{TOKEN}", pairs.join("&")));
    let mut form: Vec<(String, String)> =
        p.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    form.push(("sign".into(), sign.clone()));
    form.push(("sign_type".into(), "MD5".into()));
    let resp = app
        .client
        .post(app.url("/submit.php"))
        .form(&form)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.contains("/pay/checkout-counter/"), "{loc}");

    // A wrong key is a signature error on the alias too.
    form.retain(|(k, _)| k != "sign");
    form.push(("sign".into(), common::md5_hex("forged")));
    let resp = app
        .client
        .post(app.url("/submit.php"))
        .form(&form)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

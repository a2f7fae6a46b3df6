//! Merchant API end to end over HTTP: the three protocols with independently computed
//! signatures, repeat semantics, validation, unique amounts under concurrency, crediting, signed
//! callbacks with retries, expiry and cancel — on SQLite, PostgreSQL and MySQL.
use crate::common;

use std::{collections::BTreeMap, time::Duration};

use common::{Backend, Merchant, borrow, create_v1, json_params};
use epusdt::{
    domain::network::Network,
    service::order::{CreditOutcome, IncomingTransfer, credit_transfer, find_by_trade_id},
};
use rust_decimal::Decimal;
use serde_json::{Value, json};

fn transfer_for(o: &Value, tx: &str, amount: &str, network: Network) -> IncomingTransfer {
    IncomingTransfer {
        network,
        token: epusdt::domain::network::Token::USDT,
        tx_hash: tx.into(),
        log_index: 0,
        block_number: 100,
        block_hash: "0xabc".into(),
        token_contract: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
        from_address: "TXYZ".into(),
        to_address: o["token"].as_str().unwrap().into(),
        amount: amount.parse::<Decimal>().unwrap(),
        block_time: epusdt::service::now(),
    }
}

async fn v1_round_trip_and_signed_callback(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");
    let reply = create_v1(
        &app,
        &[
            ("order_id", "20220201030210321"),
            ("amount", "100.00"),
            ("notify_url", &notify),
            ("redirect_url", "http://example.com/redirect"),
        ],
    )
    .await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    assert_eq!(reply["message"], "success");
    assert!(reply["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let data = &reply["data"];
    // 100 CNY / 7.2 = 13.888… → 13.89 USDT, on the default network (TRON).
    assert_eq!(data["amount"], json!(100));
    assert_eq!(data["actual_amount"].to_string(), "13.89");
    assert_eq!(data["token"], common::TRON_WALLET);
    let trade_id = data["trade_id"].as_str().unwrap().to_string();
    assert_eq!(
        data["payment_url"],
        format!("http://127.0.0.1:8000/pay/checkout-counter/{trade_id}")
    );
    let exp = data["expiration_time"].as_i64().unwrap();
    assert!(
        (exp - epusdt::service::now() - 600).abs() <= 5,
        "10 minutes"
    );

    let status: Value = common::get_json(&app, &format!("/pay/check-status/{trade_id}")).await;
    assert_eq!(status["data"]["status"], 1);

    // The chain watcher's entry point: this transfer pays that order.
    let t = transfer_for(data, "tx-1", "13.890000", Network::TRON);
    let out = app.credit(&t).await;
    assert!(matches!(out, CreditOutcome::Paid { .. }), "{out:?}");
    // Replaying the same transfer is a no-op.
    let again = app.credit(&t).await;
    assert_eq!(again, CreditOutcome::Duplicate);

    let calls = merchant.wait_for(1, 15).await;
    let body: Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(body["trade_id"], trade_id.as_str());
    assert_eq!(body["order_id"], "20220201030210321");
    assert_eq!(body["status"], 2);
    assert_eq!(body["block_transaction_id"], "tx-1");
    assert_eq!(body["token"], common::TRON_WALLET);
    assert_eq!(body["actual_amount"].to_string(), "13.89");
    // Verify the callback signature independently, like a merchant would.
    let params = json_params(&body);
    assert_eq!(
        body["signature"].as_str().unwrap(),
        common::v1_sign(&borrow(&params), common::TOKEN)
    );
    // Delivered once: no further callbacks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(merchant.received().len(), 1);
    let o = find_by_trade_id(&app.state.db, &trade_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status.code(), 2);
    assert_eq!(o.callback_state, 2, "delivered");
    let attempts = epusdt::service::notify::attempts(&app.state.db, o.id.get())
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].success);
    assert_eq!(attempts[0].http_status, Some(200));

    // An admin resend delivers the same signed callback once more.
    epusdt::service::notify::resend(&app.state.db, &app.state.queue, &trade_id)
        .await
        .unwrap();
    let calls = merchant.wait_for(2, 15).await;
    assert_eq!(calls[1].body, calls[0].body);

    // Checkout page of a paid order says so.
    let page = app
        .client
        .get(app.url(&format!("/pay/checkout-counter/{trade_id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-state=\"paid\""));
    app.stop().await;
}
on_all_backends!(v1_round_trip_and_signed_callback);

async fn repeat_and_conflict(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let fields = [
        ("order_id", "A-1"),
        ("amount", "10"),
        ("notify_url", "http://127.0.0.1:9/n"),
    ];
    let first = create_v1(&app, &fields).await;
    assert_eq!(first["status_code"], 200, "{first}");
    let second = create_v1(&app, &fields).await;
    assert_eq!(second["status_code"], 200, "{second}");
    assert_eq!(first["data"]["trade_id"], second["data"]["trade_id"]);
    assert_eq!(
        first["data"]["actual_amount"],
        second["data"]["actual_amount"]
    );
    let different = create_v1(
        &app,
        &[
            ("order_id", "A-1"),
            ("amount", "11"),
            ("notify_url", "http://127.0.0.1:9/n"),
        ],
    )
    .await;
    assert_eq!(different["status_code"], 10002, "{different}");
    // order_id is case-sensitive on every backend (MySQL included): a different order.
    let upper = create_v1(
        &app,
        &[
            ("order_id", "a-1"),
            ("amount", "11"),
            ("notify_url", "http://127.0.0.1:9/n"),
        ],
    )
    .await;
    assert_eq!(upper["status_code"], 200, "{upper}");
    assert_ne!(upper["data"]["trade_id"], first["data"]["trade_id"]);
    // A different order for the same amount gets the next free slot.
    let other = create_v1(
        &app,
        &[
            ("order_id", "A-2"),
            ("amount", "10"),
            ("notify_url", "http://127.0.0.1:9/n"),
        ],
    )
    .await;
    assert_eq!(other["status_code"], 200);
    assert_ne!(
        other["data"]["actual_amount"],
        first["data"]["actual_amount"]
    );
    app.stop().await;
}
on_all_backends!(repeat_and_conflict);

/// Many concurrent creates for the same amount, on two gateway instances sharing one database:
/// every live order gets its own (address, amount) slot.
async fn concurrent_creates_get_unique_slots(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    epusdt::service::wallet::add(
        &app.state.db,
        &epusdt::domain::network::Networks::presets(),
        "tron",
        common::TRON_WALLET_2,
        None,
        "t2",
    )
    .await
    .unwrap();
    let second = common::spawn_with(app.config.clone(), app.dir.clone()).await;
    let apps = [&app, &second];
    let mut tasks = Vec::new();
    for i in 0..40 {
        let target = apps[i % 2];
        let order_id = format!("C-{i}");
        tasks.push(async move {
            create_v1(
                target,
                &[
                    ("order_id", &order_id),
                    ("amount", "72"),
                    ("notify_url", "http://127.0.0.1:9/n"),
                ],
            )
            .await
        });
    }
    let replies = futures::future::join_all(tasks).await;
    let mut slots = std::collections::HashSet::new();
    for r in &replies {
        assert_eq!(r["status_code"], 200, "{r}");
        let slot = (
            r["data"]["token"].as_str().unwrap().to_string(),
            r["data"]["actual_amount"].to_string(),
        );
        assert!(slots.insert(slot.clone()), "slot {slot:?} given twice");
    }
    assert_eq!(slots.len(), 40);
    // 72 CNY / 7.2 = 10 USDT: slots fill 10.00.. over both wallets, lowest amounts first.
    let amounts: std::collections::BTreeSet<String> =
        slots.iter().map(|(_, a)| a.clone()).collect();
    assert!(amounts.contains("10"), "{amounts:?}");
    assert!(
        amounts.len() <= 21,
        "two wallets share each amount: {amounts:?}"
    );
    second.stop().await;
    app.stop().await;
}
on_all_backends!(concurrent_creates_get_unique_slots);

/// Concurrent creates share one INSERT (a group commit): the repeat rule holds inside a group.
/// Identical requests sent at once get one order; different requests with one order_id sent at
/// once get one order and 10002 for the rest; neither disturbs the other orders of the group.
async fn concurrent_repeats_get_one_order(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let fields = |order_id: String, amount: String| {
        [
            ("order_id".to_string(), order_id),
            ("amount".to_string(), amount),
            ("notify_url".to_string(), "http://127.0.0.1:9/n".to_string()),
        ]
    };
    let mut tasks = Vec::new();
    for i in 0..30 {
        // Ten identical "R-1", ten "R-2" of ten different amounts, ten distinct orders.
        let f = match i % 3 {
            0 => fields("R-1".into(), "50".into()),
            1 => fields("R-2".into(), format!("{}", 60 + i)),
            _ => fields(format!("D-{i}"), "50".into()),
        };
        let app = &app;
        tasks.push(async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            (i, create_v1(app, &f).await)
        });
    }
    let replies = futures::future::join_all(tasks).await;
    let mut r1 = std::collections::HashSet::new();
    let (mut r2_ok, mut r2_refused) = (0, 0);
    let mut slots = std::collections::HashSet::new();
    for (i, r) in &replies {
        match i % 3 {
            0 => {
                assert_eq!(r["status_code"], 200, "{r}");
                r1.insert(r["data"]["trade_id"].as_str().unwrap().to_string());
            }
            1 => match r["status_code"].as_i64() {
                Some(200) => r2_ok += 1,
                Some(10002) => r2_refused += 1,
                _ => panic!("R-2: {r}"),
            },
            _ => assert_eq!(r["status_code"], 200, "{r}"),
        }
        if r["status_code"] == 200 {
            slots.insert(r["data"]["actual_amount"].to_string());
        }
    }
    assert_eq!(r1.len(), 1, "identical repeats got one order: {r1:?}");
    assert_eq!((r2_ok, r2_refused), (1, 9), "one R-2 stands");
    // In the database: one order per order_id (R-1, R-2 and the ten D-).
    use sea_orm::EntityTrait;
    let rows = epusdt::store::entities::order::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 12, "{rows:?}");
    let order_ids: std::collections::HashSet<_> = rows.iter().map(|o| o.order_id.clone()).collect();
    assert_eq!(order_ids.len(), 12);
    assert!(rows.iter().any(|o| r1.contains(&o.trade_id)));
    // R-1 and the D- orders ask 50 CNY: each its own amount on the one wallet.
    assert_eq!(slots.len(), 12, "{slots:?}");
    app.stop().await;
}
on_all_backends!(concurrent_repeats_get_one_order);

async fn validation_errors_say_what_to_fix(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let n = "http://127.0.0.1:9/n";
    let long_id = "x".repeat(33);
    type Case<'a> = (Vec<(&'a str, &'a str)>, u64, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("amount", "10"), ("notify_url", n)],
            10009,
            "order_id is required",
        ),
        (
            vec![("order_id", "x"), ("notify_url", n)],
            10009,
            "amount is required",
        ),
        (
            vec![("order_id", "x"), ("amount", "-5"), ("notify_url", n)],
            10009,
            "greater than zero",
        ),
        (
            vec![("order_id", "x"), ("amount", "1.001"), ("notify_url", n)],
            10009,
            "decimal places",
        ),
        (
            vec![("order_id", "x"), ("amount", "\"abc\""), ("notify_url", n)],
            10009,
            "not a decimal",
        ),
        (
            vec![("order_id", "x"), ("amount", "10")],
            10009,
            "notify_url is required",
        ),
        (
            vec![
                ("order_id", "x"),
                ("amount", "10"),
                ("notify_url", "ftp://x/y"),
            ],
            10009,
            "http",
        ),
        (
            vec![
                ("order_id", "x"),
                ("amount", "10"),
                ("notify_url", "not a url"),
            ],
            10009,
            "not a valid URL",
        ),
        (
            vec![("order_id", &long_id), ("amount", "10"), ("notify_url", n)],
            10009,
            "too long",
        ),
        (
            vec![
                ("order_id", "x"),
                ("amount", "10"),
                ("notify_url", n),
                ("trade_type", "usdt.solana"),
            ],
            10009,
            "not configured on this gateway",
        ),
        (
            vec![
                ("order_id", "x"),
                ("amount", "10"),
                ("notify_url", n),
                ("currency", "EUR"),
            ],
            10006,
            "EUR",
        ),
        (
            vec![
                ("order_id", "x"),
                ("amount", "10"),
                ("notify_url", n),
                ("trade_type", "usdt.bep20"),
            ],
            10003,
            "bsc",
        ),
        (
            vec![("order_id", "x"), ("amount", "0.03"), ("notify_url", n)],
            10004,
            "below the minimum",
        ),
        (
            vec![
                ("order_id", "x"),
                ("amount", "10"),
                ("notify_url", n),
                ("timeout", "5"),
            ],
            10009,
            "timeout",
        ),
    ];
    for (fields, code, needle) in cases {
        let r = create_v1(&app, &fields).await;
        assert_eq!(r["status_code"], code, "{fields:?} → {r}");
        let msg = r["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{fields:?}: message `{msg}` lacks `{needle}`"
        );
    }
    // Wrong signature → 401, and the reply does not leak the expected one.
    let r: Value = common::post_json(&app.client, &app.url("/api/v1/order/create-transaction"), &json!({"order_id": "x", "amount": 10, "notify_url": n, "signature": "0123456789abcdef0123456789abcdef"})).await;
    assert_eq!(r["status_code"], 401, "{r}");
    assert_eq!(r["message"], "signature error");
    // Garbage bodies are a 10009 in the envelope, never an HTTP 500.
    for (ct, body) in [
        ("application/json", "{not json"),
        ("application/json", "[1,2,3]"),
        ("text/plain", "\u{0}\u{1}"),
    ] {
        let resp = app
            .client
            .post(app.url("/api/v1/order/create-transaction"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let r: Value = resp.json().await.unwrap();
        assert!(r["status_code"] == 10009 || r["status_code"] == 401, "{r}");
    }
    // Form bodies are accepted like upstream (same signature rules: form values are text,
    // signed as sent, so `10.00` is signed as `10.00`).
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("order_id", "F-1".into());
    p.insert("amount", "10.00".into());
    p.insert("notify_url", n.into());
    let sig = common::v1_sign(&p, common::TOKEN);
    let r: Value = app
        .client
        .post(app.url("/api/v1/order/create-transaction"))
        .form(&[
            ("order_id", "F-1"),
            ("amount", "10.00"),
            ("notify_url", n),
            ("signature", &sig),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status_code"], 200, "{r}");
    app.stop().await;
}
on_all_backends!(validation_errors_say_what_to_fix);

async fn no_free_slot_is_10005(backend: Backend) {
    let Some(app) = common::spawn_app_with(backend, |c| c.amount_max_tries = 2).await else {
        return;
    };
    for (i, expect) in [(1, 200), (2, 200), (3, 10005)] {
        let r = create_v1(
            &app,
            &[
                ("order_id", &format!("S-{i}")),
                ("amount", "7.2"),
                ("notify_url", "http://127.0.0.1:9/n"),
            ],
        )
        .await;
        assert_eq!(r["status_code"], expect, "{r}");
    }
    app.stop().await;
}
on_all_backends!(no_free_slot_is_10005);

async fn gmpay_round_trip(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let m =
        epusdt::service::merchant::add(&app.state.db, &app.state.keys, "shop", None, None, false)
            .await
            .unwrap();
    let secret = m.secret.expose().to_string();
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/gm");
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("pid", m.pid.to_string());
    p.insert("order_id", "G-1".into());
    p.insert("currency", "USD".into());
    p.insert("amount", "25.5".into());
    p.insert("notify_url", notify.clone());
    p.insert("network", "ethereum".into());
    p.insert("token", "USDT".into());
    p.insert("timestamp", epusdt::service::now().to_string());
    let sig = common::gmpay_sign(&p, &secret);
    let mut body = serde_json::Map::new();
    for (k, v) in &p {
        body.insert(k.to_string(), json!(v));
    }
    body.insert("amount".into(), json!(25.50));
    body.insert("pid".into(), json!(m.pid));
    body.insert("signature".into(), json!(sig));
    let r: Value = common::post_json(
        &app.client,
        &app.url("/payments/gmpay/v1/order/create-transaction"),
        &body,
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    let d = &r["data"];
    assert_eq!(d["currency"], "USD");
    assert_eq!(d["receive_address"], common::EVM_WALLET);
    assert_eq!(d["status"], 1);
    assert_eq!(d["actual_amount"].to_string(), "25.5");

    // Stale timestamp → rejected with a hint.
    let mut stale = p.clone();
    stale.insert("order_id", "G-2".into());
    stale.insert("timestamp", (epusdt::service::now() - 3600).to_string());
    let mut sb = serde_json::Map::new();
    for (k, v) in &stale {
        sb.insert(k.to_string(), json!(v));
    }
    sb.insert(
        "signature".into(),
        json!(common::gmpay_sign(&stale, &secret)),
    );
    let r2: Value = common::post_json(
        &app.client,
        &app.url("/payments/gmpay/v1/order/create-transaction"),
        &sb,
    )
    .await;
    assert_eq!(r2["status_code"], 10009, "{r2}");
    assert!(r2["message"].as_str().unwrap().contains("timestamp"));
    // An MD5 signature (upstream's algorithm) passes a `dual` merchant's signature check (the
    // stale timestamp still refuses it); one made with another secret does not.
    sb.insert("signature".into(), json!(common::v1_sign(&stale, &secret)));
    let r3: Value = common::post_json(
        &app.client,
        &app.url("/payments/gmpay/v1/order/create-transaction"),
        &sb,
    )
    .await;
    assert_eq!(r3["status_code"], 10009, "{r3}");
    sb.insert(
        "signature".into(),
        json!(common::v1_sign(&stale, common::TOKEN)),
    );
    let r3: Value = common::post_json(
        &app.client,
        &app.url("/payments/gmpay/v1/order/create-transaction"),
        &sb,
    )
    .await;
    assert_eq!(r3["status_code"], 401, "{r3}");

    // GMPay's `token` is the coin; the address is `receive_address`.
    assert_eq!(d["token"], "USDT");
    let t = transfer_for(
        &json!({"token": d["receive_address"]}),
        "0xtx",
        "25.5",
        Network::ETHEREUM,
    );
    app.credit(&t).await;
    let calls = merchant.wait_for(1, 15).await;
    let cb: Value = serde_json::from_str(&calls[0].body).unwrap();
    // Upstream's OrderNotifyResponse: pid as a string.
    assert_eq!(cb["pid"], m.pid.to_string());
    assert_eq!(cb["status"], 2);
    let params = json_params(&cb);
    assert_eq!(
        cb["signature"].as_str().unwrap(),
        common::gmpay_sign(&borrow(&params), &secret)
    );
    app.stop().await;
}
on_all_backends!(gmpay_round_trip);

mod lifecycle;

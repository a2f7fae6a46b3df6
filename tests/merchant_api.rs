//! Merchant API end to end over HTTP: the three protocols with independently computed
//! signatures, repeat semantics, validation, unique amounts under concurrency, crediting, signed
//! callbacks with retries, expiry and cancel — on SQLite, PostgreSQL and MySQL.
mod common;

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
    let t = transfer_for(data, "tx-1", "13.890000", Network::Tron);
    let out = credit_transfer(&app.state.db, &app.state.queue, &common::rules(&app), &t)
        .await
        .unwrap();
    assert!(matches!(out, CreditOutcome::Paid { .. }), "{out:?}");
    // Replaying the same transfer is a no-op.
    let again = credit_transfer(&app.state.db, &app.state.queue, &common::rules(&app), &t)
        .await
        .unwrap();
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
    epusdt::service::wallet::add(&app.state.db, "tron", common::TRON_WALLET_2, None, "t2")
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
            "not supported",
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
    // Form bodies are accepted like upstream (same signature rules).
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("order_id", "F-1".into());
    p.insert("amount", "10".into());
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
    // MD5 (v1 style) signature is not accepted for GMPay.
    sb.insert("signature".into(), json!(common::v1_sign(&stale, &secret)));
    let r3: Value = common::post_json(
        &app.client,
        &app.url("/payments/gmpay/v1/order/create-transaction"),
        &sb,
    )
    .await;
    assert_eq!(r3["status_code"], 401, "{r3}");

    let t = transfer_for(d, "0xtx", "25.5", Network::Ethereum);
    credit_transfer(&app.state.db, &app.state.queue, &common::rules(&app), &t)
        .await
        .unwrap();
    let calls = merchant.wait_for(1, 15).await;
    let cb: Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(cb["pid"], m.pid);
    assert_eq!(cb["status"], 2);
    let params = json_params(&cb);
    assert_eq!(
        cb["signature"].as_str().unwrap(),
        common::gmpay_sign(&borrow(&params), &secret)
    );
    app.stop().await;
}
on_all_backends!(gmpay_round_trip);

async fn epay_redirects_and_notifies(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let m = epusdt::service::merchant::add(
        &app.state.db,
        &app.state.keys,
        "epay shop",
        Some(2001),
        None,
        false,
    )
    .await
    .unwrap();
    let key = m.secret.expose().to_string();
    let (merchant, murl) = Merchant::start(1, "success").await;
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("pid", "2001".into());
    p.insert("type", "usdt.trc20".into());
    p.insert("out_trade_no", "E-1".into());
    p.insert("notify_url", format!("{murl}/epay"));
    p.insert("return_url", "https://shop.example/return".into());
    p.insert("name", "VIP".into());
    p.insert("money", "1.00".into());
    let sign = common::epay_sign(&p, &key);
    let mut q: Vec<(&str, String)> = p.iter().map(|(k, v)| (*k, v.clone())).collect();
    q.push(("sign", sign));
    q.push(("sign_type", "MD5".into()));
    let resp = app
        .client
        .get(app.url("/payments/epay/v1/order/create-transaction/submit.php"))
        .query(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let trade_id = loc.rsplit('/').next().unwrap().to_string();
    assert!(loc.contains("/pay/checkout-counter/"), "{loc}");
    let page = app
        .client
        .get(app.url(&format!("/pay/checkout-counter/{trade_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg"), "QR code rendered server-side");
    assert!(html.contains(common::TRON_WALLET));
    // 1.00 CNY / 7.2 = 0.14 USDT
    assert!(html.contains("0.14"));

    // Tampered money → 401 signature.
    let tampered: Vec<(&str, String)> = q
        .iter()
        .map(|(k, v)| {
            (
                *k,
                if *k == "money" {
                    "0.01".into()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    let resp = app
        .client
        .post(app.url("/payments/epay/v1/order/create-transaction/submit.php"))
        .form(&tampered)
        .send()
        .await
        .unwrap();
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["status_code"], 401);

    let o = find_by_trade_id(&app.state.db, &trade_id)
        .await
        .unwrap()
        .unwrap();
    let t = IncomingTransfer {
        to_address: o.address.clone(),
        ..transfer_for(&json!({"token": o.address}), "tx-e", "0.14", Network::Tron)
    };
    credit_transfer(&app.state.db, &app.state.queue, &common::rules(&app), &t)
        .await
        .unwrap();
    // First attempt is refused by the merchant, the retry (1 s base in tests) succeeds.
    let calls = merchant.wait_for(2, 20).await;
    assert!(!calls[0].accepted && calls[1].accepted);
    let url = url::Url::parse(&format!("http://x{}", calls[1].uri)).unwrap();
    let got: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(got["trade_status"], "TRADE_SUCCESS");
    assert_eq!(got["out_trade_no"], "E-1");
    assert_eq!(got["money"], "1.00");
    assert_eq!(got["sign"], common::epay_sign(&borrow(&got), &key));
    // The gateway records the delivery right after the merchant answered.
    let db = app.state.db.clone();
    let o = common::eventually(10, "callback recorded as delivered", || {
        let db = db.clone();
        let t = trade_id.clone();
        async move {
            let o = find_by_trade_id(&db, &t).await.unwrap().unwrap();
            (o.callback_state == 2).then_some(o)
        }
    })
    .await;
    assert_eq!(o.callback_attempts, 2);
    app.stop().await;
}
on_all_backends!(epay_redirects_and_notifies);

async fn cancel_expire_and_late_payment(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let n = "http://127.0.0.1:9/n";
    let a = create_v1(
        &app,
        &[("order_id", "X-1"), ("amount", "10"), ("notify_url", n)],
    )
    .await;
    let trade_a = a["data"]["trade_id"].as_str().unwrap().to_string();
    // Cancel, signed like create.
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("trade_id", trade_a.clone());
    let sig = common::v1_sign(&p, common::TOKEN);
    let r: Value = common::post_json(
        &app.client,
        &app.url("/api/v1/order/cancel-transaction"),
        &json!({"trade_id": trade_a, "signature": sig}),
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    assert_eq!(r["data"]["status"], 4);
    // Cancelling again is refused with a clear message.
    let r: Value = common::post_json(
        &app.client,
        &app.url("/api/v1/order/cancel-transaction"),
        &json!({"trade_id": trade_a, "signature": sig}),
    )
    .await;
    assert_eq!(r["status_code"], 10009, "{r}");
    assert!(r["message"].as_str().unwrap().contains("cancelled"));
    // The cancelled order keeps its slot for the grace period (slot_reuse_grace_secs): the next
    // order for the same amount gets the next slot.
    let b = create_v1(
        &app,
        &[("order_id", "X-2"), ("amount", "10"), ("notify_url", n)],
    )
    .await;
    assert_eq!(a["data"]["actual_amount"].to_string(), "1.39");
    assert_eq!(b["data"]["actual_amount"].to_string(), "1.4");
    let trade_b = b["data"]["trade_id"].as_str().unwrap().to_string();
    assert_ne!(trade_b, trade_a, "a new order");

    // Expiry and late payments, on an order of its own (20 CNY → 2.78 USDT).
    let c = create_v1(
        &app,
        &[("order_id", "X-3"), ("amount", "20"), ("notify_url", n)],
    )
    .await;
    assert_eq!(c["status_code"], 200, "{c}");
    let trade_c = c["data"]["trade_id"].as_str().unwrap().to_string();
    assert_eq!(c["data"]["actual_amount"].to_string(), "2.78");
    // Expiry: move the order's deadline into the past; the durable job expires it.
    use epusdt::store::entities::order;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let past = epusdt::service::now() - 120;
    order::Entity::update_many()
        .col_expr(order::Column::ExpiresAt, Expr::value(past))
        .col_expr(order::Column::CreatedAt, Expr::value(past - 600))
        .filter(order::Column::TradeId.eq(&trade_c))
        .exec(&app.state.db)
        .await
        .unwrap();
    app.state
        .queue
        .push(
            epusdt::queue::Job::Expire {
                trade_id: trade_c.clone(),
            },
            None,
        )
        .await
        .unwrap();
    let db = app.state.db.clone();
    common::eventually(10, "order expired", || {
        let db = db.clone();
        let t = trade_c.clone();
        async move {
            let o = find_by_trade_id(&db, &t).await.unwrap().unwrap();
            (o.status.code() == 3).then_some(())
        }
    })
    .await;
    let s: Value = common::get_json(&app, &format!("/pay/check-status/{trade_c}")).await;
    assert_eq!(s["data"]["status"], 3);
    // A payment mined after expiry is recorded as late, never credited.
    let t = transfer_for(&c["data"], "tx-late", "2.78", Network::Tron);
    let out = credit_transfer(&app.state.db, &app.state.queue, &common::rules(&app), &t)
        .await
        .unwrap();
    assert!(matches!(out, CreditOutcome::Late { .. }), "{out:?}");
    let o = find_by_trade_id(&app.state.db, &trade_c)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status.code(), 3);
    assert_eq!(o.flags & epusdt::domain::order::flags::LATE, 1);
    // A payment mined before expiry but seen after the expiry job ran is credited.
    let on_time = IncomingTransfer {
        tx_hash: "tx-on-time".into(),
        block_time: past - 30,
        ..t.clone()
    };
    let out = credit_transfer(
        &app.state.db,
        &app.state.queue,
        &common::rules(&app),
        &on_time,
    )
    .await
    .unwrap();
    assert!(matches!(out, CreditOutcome::Paid { .. }), "{out:?}");
    // Unknown trade ids.
    let s: Value = common::get_json(&app, "/pay/check-status/nope").await;
    assert_eq!(s["status_code"], 10008);
    let page = app
        .client
        .get(app.url("/pay/checkout-counter/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    assert!(page.text().await.unwrap().contains("not_found"));
    app.stop().await;
}
on_all_backends!(cancel_expire_and_late_payment);

/// Callbacks are never sent to private addresses unless allowed (SSRF).
#[tokio::test]
async fn private_callback_targets_are_refused_by_default() {
    let Some(app) =
        common::spawn_app_with(Backend::Sqlite, |c| c.allow_private_callbacks = false).await
    else {
        return;
    };
    for url in [
        "http://127.0.0.1:9/n",
        "http://169.254.169.254/latest",
        "http://10.1.2.3/x",
        "http://localhost/x",
    ] {
        let r = create_v1(
            &app,
            &[("order_id", "P-1"), ("amount", "10"), ("notify_url", url)],
        )
        .await;
        assert_eq!(r["status_code"], 10009, "{url}: {r}");
        assert!(r["message"].as_str().unwrap().contains("notify_url"));
    }
    app.stop().await;
}

/// A merchant answering with a redirect is not followed (a redirect could point inside the
/// network): the attempt fails and the redirect target is never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_redirects_are_not_followed() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let (target, target_url) = Merchant::start(0, "ok").await;
    let redirect_to = format!("{target_url}/internal");
    let router = axum::Router::new().route(
        "/{*path}",
        axum::routing::any(move || {
            let to = redirect_to.clone();
            async move { (axum::http::StatusCode::FOUND, [("location", to)], "moved") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let reply = create_v1(
        &app,
        &[
            ("order_id", "R-1"),
            ("amount", "10"),
            ("notify_url", &format!("{redirector}/notify")),
        ],
    )
    .await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    let t = transfer_for(&reply["data"], "tx-r", "1.39", Network::Tron);
    credit_transfer(&app.state.db, &app.state.queue, &common::rules(&app), &t)
        .await
        .unwrap();
    let trade_id = reply["data"]["trade_id"].as_str().unwrap().to_string();
    let db = app.state.db.clone();
    let o = common::eventually(10, "first attempt recorded", || {
        let db = db.clone();
        let t = trade_id.clone();
        async move {
            let o = find_by_trade_id(&db, &t).await.unwrap().unwrap();
            (o.callback_attempts >= 1).then_some(o)
        }
    })
    .await;
    assert_ne!(o.callback_state, 2, "a redirect is not a delivery");
    let attempts = epusdt::service::notify::attempts(&app.state.db, o.id.get())
        .await
        .unwrap();
    assert_eq!(attempts[0].http_status, Some(302));
    assert!(!attempts[0].success);
    assert!(
        target.received().is_empty(),
        "the redirect target was never called"
    );
    app.stop().await;
}

/// Crediting under concurrent writes (orders being created, jobs running) never fails on a
/// database lock: on SQLite, write transactions take the lock up front (BEGIN IMMEDIATE).
async fn concurrent_credits_and_creates(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let n = "http://127.0.0.1:9/n";
    let mut orders = Vec::new();
    for i in 0..15 {
        let amount = format!("{}", 72 + i * 10);
        let r = create_v1(
            &app,
            &[
                ("order_id", &format!("P-{i}")),
                ("amount", &amount),
                ("notify_url", n),
            ],
        )
        .await;
        assert_eq!(r["status_code"], 200, "{r}");
        orders.push(r["data"].clone());
    }
    let mut tasks = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        let db = app.state.db.clone();
        let queue = app.state.queue.clone();
        let t = transfer_for(
            o,
            &format!("tx-c-{i}"),
            &o["actual_amount"].to_string(),
            Network::Tron,
        );
        tasks.push(tokio::spawn(async move {
            credit_transfer(&db, &queue, &Default::default(), &t).await
        }));
    }
    let creates = (0..15).map(|i| {
        let app = &app;
        async move {
            create_v1(
                app,
                &[
                    ("order_id", &format!("Q-{i}")),
                    ("amount", "50"),
                    ("notify_url", n),
                ],
            )
            .await
        }
    });
    let created = futures::future::join_all(creates).await;
    for r in created {
        assert_eq!(r["status_code"], 200, "{r}");
    }
    for t in tasks {
        let out = t.await.unwrap().expect("credit never fails on a lock");
        assert!(matches!(out, CreditOutcome::Paid { .. }), "{out:?}");
    }
    app.stop().await;
}
on_all_backends!(concurrent_credits_and_creates);

//! EPay redirects, cancel, expiry and late payments, callback targets, concurrent credits.
use super::*;

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
        ..transfer_for(&json!({"token": o.address}), "tx-e", "0.14", Network::TRON)
    };
    app.credit(&t).await;
    // First attempt is refused by the merchant, the retry (1 s base in tests) succeeds.
    let calls = merchant.wait_for(2, 20).await;
    assert!(!calls[0].accepted && calls[1].accepted);
    let url = url::Url::parse(&format!("http://x{}", calls[1].uri)).unwrap();
    let got: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(got["trade_status"], "TRADE_SUCCESS");
    assert_eq!(got["out_trade_no"], "E-1");
    assert_eq!(got["money"], "1.0000");
    assert_eq!(got["sign"], common::epay_sign(&borrow(&got), &key));
    // The gateway records the delivery right after the merchant answered.
    let o = app.wait_delivered(&trade_id, 10).await;
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
    let t = transfer_for(&c["data"], "tx-late", "2.78", Network::TRON);
    let out = app.credit(&t).await;
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
    let t = transfer_for(&reply["data"], "tx-r", "1.39", Network::TRON);
    app.credit(&t).await;
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
            Network::TRON,
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

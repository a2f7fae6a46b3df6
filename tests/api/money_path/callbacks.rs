//! Callbacks whose job was lost or whose attempt was cut short, and a failed expiry push.
use super::*;

/// Pays an order the way the watcher does, without queueing its callback (the process "dies"
/// between the commit and `queue_callback`).
async fn pay_without_queueing(app: &common::TestApp, o: &Value, tx: &str) -> i64 {
    let txn = epusdt::store::begin_write(&app.state.db)
        .await
        .expect("begin");
    let out = credit_transfer_in(
        &txn,
        &common::rules(app),
        &transfer(o, tx, &o["actual_amount"].to_string(), service::now()),
    )
    .await
    .expect("credit");
    txn.commit().await.expect("commit");
    match out {
        CreditOutcome::Paid { order_id, .. } => order_id,
        other => panic!("expected paid, got {other:?}"),
    }
}

/// The sweeper queues a paid order's callback that was never queued (kill between commit and
/// queue), and re-queues a queued callback whose job was lost — but not one that is merely due.
async fn the_sweeper_recovers_lost_callbacks(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");
    let mut ids = Vec::new();
    for (i, amount) in ["100", "200", "300"].iter().enumerate() {
        let r = create_v1(
            &app,
            &[
                ("order_id", &format!("sweep-{i}")),
                ("amount", amount),
                ("notify_url", &notify),
            ],
        )
        .await;
        assert_eq!(r["status_code"], 200, "{r}");
        ids.push(pay_without_queueing(&app, &r["data"], &format!("tx-sweep-{i}")).await);
    }
    let now = service::now();
    // 0: never queued (PENDING) for a while; 1: queued, its job lost long ago; 2: queued and
    // due right now (a job exists or is about to run): must not be queued twice.
    let set = |id: i64, state: i16, due: Option<i64>, updated: i64| {
        let db = app.state.db.clone();
        async move {
            order::Entity::update_many()
                .col_expr(order::Column::CallbackState, Expr::value(state))
                .col_expr(order::Column::CallbackDueAt, Expr::value(due))
                .col_expr(order::Column::UpdatedAt, Expr::value(updated))
                .filter(order::Column::Id.eq(id))
                .exec(&db)
                .await
                .expect("set");
        }
    };
    set(ids[0], 0, None, now - 60).await;
    set(ids[1], 1, Some(now - 3600), now - 3600).await;
    // (due a little ahead, as a job just scheduled: "due right now" becomes "overdue, lost" when
    // a loaded run takes a few seconds to get to the sweep, and is then rightly delivered)
    set(ids[2], 1, Some(now + 30), now).await;
    service::order::sweep(&app.state.db, &app.state.queue, &common::rules(&app))
        .await
        .expect("sweep");
    // The app's own sweeper (every 30 s, the same function) may have repaired one or both of them
    // first on a loaded run, so the count of this sweep proves nothing: the proof is what the
    // merchant receives — both lost callbacks, once each, and not the one that is merely due.
    let calls = merchant.wait_for(2, 15).await;
    let delivered: Vec<String> = calls
        .iter()
        .map(|c| serde_json::from_str::<Value>(&c.body).unwrap()["order_id"].to_string())
        .collect();
    assert!(
        delivered.contains(&"\"sweep-0\"".to_string()),
        "{delivered:?}"
    );
    assert!(
        delivered.contains(&"\"sweep-1\"".to_string()),
        "{delivered:?}"
    );
    // A second sweep right away finds nothing more to do.
    let again = service::order::sweep(&app.state.db, &app.state.queue, &common::rules(&app))
        .await
        .expect("sweep");
    assert_eq!((again.queued, again.requeued), (0, 0), "{again:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(merchant.received().len(), 2, "no duplicates");
    app.stop().await;
}
on_all_backends!(the_sweeper_recovers_lost_callbacks);

/// Two sweepers (two instances, or the app's own and an operator's) that find one pending
/// callback at once queue it once: the merchant is called once, not once per sweeper.
async fn concurrent_sweeps_queue_a_pending_callback_once(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/notify");
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = create_v1(
            &app,
            &[
                ("order_id", &format!("twice-{i}")),
                ("amount", &format!("{}", 100 + i)),
                ("notify_url", &notify),
            ],
        )
        .await;
        assert_eq!(r["status_code"], 200, "{r}");
        ids.push(pay_without_queueing(&app, &r["data"], &format!("tx-twice-{i}")).await);
    }
    // Pending for a while: every sweep now wants to queue them.
    order::Entity::update_many()
        .col_expr(order::Column::UpdatedAt, Expr::value(service::now() - 60))
        .filter(order::Column::Id.is_in(ids.clone()))
        .exec(&app.state.db)
        .await
        .expect("age");
    let rules = common::rules(&app);
    let sweeps = (0..4).map(|_| service::order::sweep(&app.state.db, &app.state.queue, &rules));
    for s in futures::future::join_all(sweeps).await {
        s.expect("sweep");
    }
    merchant.wait_for(4, 15).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut delivered: Vec<String> = merchant
        .received()
        .iter()
        .map(|c| serde_json::from_str::<Value>(&c.body).unwrap()["order_id"].to_string())
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        ["\"twice-0\"", "\"twice-1\"", "\"twice-2\"", "\"twice-3\""],
        "each pending callback delivered once"
    );
    app.stop().await;
}
on_all_backends!(concurrent_sweeps_queue_a_pending_callback_once);

/// A merchant endpoint for failure modes: `/hang` never answers, `/huge` streams an endless
/// body, `/reset` closes the connection without an answer, `/error` answers 502.
async fn hostile_merchant() -> String {
    use axum::{body::Body, routing::any};
    let router = axum::Router::new()
        .route(
            "/hang",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "ok"
            }),
        )
        .route(
            "/huge",
            any(|| async {
                let chunks =
                    futures::stream::iter((0..100_000).map(|_| {
                        Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'o'; 4096]))
                    }));
                Body::from_stream(chunks)
            }),
        )
        .route(
            "/error",
            any(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    // /reset: a raw listener that reads the request and closes.
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let raw_addr = raw.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = raw.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            drop(s);
        }
    });
    format!("http://{addr}|http://{raw_addr}")
}

/// Every callback attempt is recorded — also one cut short by a crash — and failures of every
/// kind end in a retry, then in giving up after the last attempt.
async fn callback_attempts_are_recorded_whatever_the_merchant_does(backend: Backend) {
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.notify_max_attempts = 2;
        c.notify_timeout_secs = 2;
    })
    .await
    else {
        return;
    };
    let urls = hostile_merchant().await;
    let (base, raw) = urls.split_once('|').unwrap();
    let mut paid = Vec::new();
    for (i, target) in [
        format!("{base}/hang"),
        format!("{base}/huge"),
        format!("{base}/error"),
        format!("{raw}/reset"),
    ]
    .iter()
    .enumerate()
    {
        let r = create_v1(
            &app,
            &[
                ("order_id", &format!("hostile-{i}")),
                ("amount", &format!("{}", 100 + 50 * i)),
                ("notify_url", target),
            ],
        )
        .await;
        assert_eq!(r["status_code"], 200, "{r}");
        paid.push(pay_without_queueing(&app, &r["data"], &format!("tx-h-{i}")).await);
    }
    let deliver = |id: i64, attempt: u32| {
        let s = app.state.clone();
        async move { service::notify::deliver(&s.db, &s.keys, &s.config, &s.http, id, attempt).await }
    };
    // Killed in the middle of an attempt (the future is dropped): the attempt is on record.
    let cut = tokio::time::timeout(Duration::from_millis(500), deliver(paid[0], 1)).await;
    assert!(cut.is_err(), "the hanging merchant did not answer");
    let attempts = service::notify::attempts(&app.state.db, paid[0])
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].error, service::notify::INTERRUPTED);
    assert!(!attempts[0].success);
    // A merchant that times out, streams an endless body, answers 5xx or resets: each is a
    // failed attempt with a reason and a retry; the last attempt gives up.
    for (id, expect) in [
        (paid[0], "request failed"),
        (paid[1], "larger than"),
        (paid[2], "HTTP 502"),
        (paid[3], "request failed"),
    ] {
        let first = deliver(id, 1).await.expect("attempt 1");
        assert!(
            matches!(first, service::notify::NotifyOutcome::RetryIn(_)),
            "{first:?}"
        );
        let last = deliver(id, 2).await.expect("attempt 2");
        assert_eq!(last, service::notify::NotifyOutcome::GaveUp);
        let attempts = service::notify::attempts(&app.state.db, id).await.unwrap();
        let latest = attempts.last().expect("recorded");
        assert!(
            latest.error.contains(expect) && !latest.success,
            "{id}: {latest:?}"
        );
        assert!(latest.body_excerpt.len() <= 500);
        let o = order::Entity::find_by_id(id)
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o.callback_state, 3, "gave up");
        assert_eq!(o.callback_attempts, 2);
    }
    app.stop().await;
}
on_all_backends!(callback_attempts_are_recorded_whatever_the_merchant_does);

/// Expiry needs no job: the order's `expires_at` is its schedule, swept every second. With the
/// job queue's store broken, creating still works, and the order still expires (slot freed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_expire_from_their_row_without_a_queue() {
    use sea_orm::{ConnectionTrait, sea_query::Expr};
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| c.slot_reuse_grace_secs = 0).await
    else {
        return;
    };
    // The queue's table disappears (a broken queue store): every push fails.
    app.state
        .db
        .execute_unprepared("ALTER TABLE Jobs RENAME TO Jobs_unavailable")
        .await
        .expect("rename");
    let r = create_v1(
        &app,
        &[
            ("order_id", "no-queue"),
            ("amount", "100"),
            ("notify_url", NOTIFY),
        ],
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    let soon = epusdt::service::now() + 1;
    order::Entity::update_many()
        .col_expr(order::Column::ExpiresAt, Expr::value(soon))
        .filter(order::Column::OrderId.eq("no-queue"))
        .exec(&app.state.db)
        .await
        .expect("shorten its window");
    let db = app.state.db.clone();
    let o = common::eventually(15, "the order expired by the sweep", || {
        let db = db.clone();
        async move {
            let o = order::Entity::find()
                .filter(order::Column::OrderId.eq("no-queue"))
                .one(&db)
                .await
                .ok()??;
            (o.status == 3).then_some(o)
        }
    })
    .await;
    assert!(o.updated_at >= soon, "not before its time: {o:?}");
    assert_eq!(
        o.live_slot, None,
        "slot given back (no grace period configured)"
    );
    app.state
        .db
        .execute_unprepared("ALTER TABLE Jobs_unavailable RENAME TO Jobs")
        .await
        .expect("rename back");
    let again = create(&app, "after-expiry", "100").await;
    assert_eq!(again["actual_amount"].to_string(), "13.89", "the same slot");
    app.stop().await;
}

//! The money path under races and real-world payer behaviour, on SQLite, PostgreSQL and MySQL:
//! expiry racing an on-time payment, late payers and slot reuse, second payments, transfers
//! re-mined by a reorg, wrong amounts, concurrent flags, and callbacks whose job was lost or whose
//! attempt was cut short.
use crate::common;

use std::time::Duration;

use common::{Backend, Merchant, create_v1};
use epusdt::{
    domain::{network::Network, order::flags},
    service::{
        self,
        order::{CreditOutcome, IncomingTransfer, credit_transfer, credit_transfer_in},
    },
    store::entities::order,
};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, Database, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::Value;

const NOTIFY: &str = "http://127.0.0.1:9/notify";

fn transfer(o: &Value, tx: &str, amount: &str, block_time: i64) -> IncomingTransfer {
    IncomingTransfer {
        network: Network::TRON,
        token: epusdt::domain::network::Token::USDT,
        block_time,
        ..common::transfer_to(o, tx, amount)
    }
}

async fn create(app: &common::TestApp, order_id: &str, amount: &str) -> Value {
    let r = create_v1(
        app,
        &[
            ("order_id", order_id),
            ("amount", amount),
            ("notify_url", NOTIFY),
        ],
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    r["data"].clone()
}

async fn row(app: &common::TestApp, o: &Value) -> epusdt::domain::order::Order {
    service::order::find_by_trade_id(&app.state.db, o["trade_id"].as_str().expect("trade id"))
        .await
        .expect("read")
        .expect("order exists")
}

/// Moves an order's window into the past: created `age` seconds ago, expired `expired_for` ago.
async fn age_order(app: &common::TestApp, o: &Value, age: i64, expired_for: i64) {
    let now = service::now();
    order::Entity::update_many()
        .col_expr(order::Column::CreatedAt, Expr::value(now - age))
        .col_expr(order::Column::ExpiresAt, Expr::value(now - expired_for))
        .filter(order::Column::TradeId.eq(o["trade_id"].as_str().expect("trade id")))
        .exec(&app.state.db)
        .await
        .expect("age order");
}

async fn credit(app: &common::TestApp, t: &IncomingTransfer) -> CreditOutcome {
    app.credit(t).await
}

/// The expiry job's compare-and-swap commits while a credit for an on-time payment is in
/// flight: the payment still pays the order (expired → paid), it is never stored unmatched.
async fn expiry_racing_an_on_time_payment(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let a = create(&app, "race-1", "100").await;
    // Still open as stored, so the gateway's own every-second expiry leaves it to this test:
    // the held UPDATE below ends the window 5 s ago and expires it in one statement.
    age_order(&app, &a, 600, -300).await;
    let id = row(&app, &a).await.id.get();

    // The expiry UPDATE, held open in a second connection.
    let other = Database::connect(app.config.database_url.clone().expect("db url"))
        .await
        .expect("second connection");
    let expiry = epusdt::store::begin_write(&other).await.expect("begin");
    let res = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(3i16))
        .col_expr(order::Column::ExpiresAt, Expr::value(service::now() - 5))
        .col_expr(order::Column::UpdatedAt, Expr::value(service::now()))
        .filter(order::Column::Id.eq(id))
        .filter(order::Column::Status.eq(1i16))
        .exec(&expiry)
        .await
        .expect("expire");
    assert_eq!(res.rows_affected, 1);

    let t = transfer(&a, "tx-race", "13.89", service::now() - 30);
    let (db, queue, rules) = (
        app.state.db.clone(),
        app.state.queue.clone(),
        common::rules(&app),
    );
    let credit = tokio::spawn(async move { credit_transfer(&db, &queue, &rules, &t).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    expiry.commit().await.expect("commit expiry");
    let out = credit.await.expect("join").expect("credit succeeds");
    assert!(matches!(out, CreditOutcome::Paid { .. }), "{out:?}");
    let o = row(&app, &a).await;
    assert_eq!(
        o.status.code(),
        2,
        "paid on time, although the expiry committed first"
    );
    assert_eq!(o.block_transaction_id.as_deref(), Some("tx-race"));
    app.stop().await;
}
on_all_backends!(expiry_racing_an_on_time_payment);

/// A's slot expires, B takes it later; A's payer pays after A expired but before B existed:
/// recorded late against A, B stays waiting.
async fn a_late_payer_never_pays_a_newer_order(backend: Backend) {
    let Some(app) = common::spawn_app_with(backend, |c| c.slot_reuse_grace_secs = 0).await else {
        return;
    };
    let a = create(&app, "late-A", "100").await;
    age_order(&app, &a, 700, 100).await;
    let rules = common::rules(&app);
    service::order::expire_order(&app.state.db, &rules, a["trade_id"].as_str().unwrap())
        .await
        .expect("expire");
    let b = create(&app, "late-B", "100").await;
    assert_eq!(
        b["actual_amount"], a["actual_amount"],
        "without a grace period B reuses A's slot at once"
    );
    // Mined 40 s before B was created, 60 s after A expired.
    let t = transfer(&a, "tx-late-payer", "13.89", service::now() - 40);
    let out = credit(&app, &t).await;
    let a_row = row(&app, &a).await;
    assert_eq!(
        out,
        CreditOutcome::Late {
            order_id: a_row.id.get()
        }
    );
    assert_eq!(a_row.status.code(), 3);
    assert_eq!(a_row.flags & flags::LATE, flags::LATE);
    let b_row = row(&app, &b).await;
    assert_eq!(b_row.status.code(), 1, "B's payer has not paid");
    assert_eq!(b_row.flags, 0);
    // B's own payment, mined after B was created, pays B.
    let t = transfer(&b, "tx-b", "13.89", service::now());
    assert!(matches!(credit(&app, &t).await, CreditOutcome::Paid { .. }));
    app.stop().await;
}
on_all_backends!(a_late_payer_never_pays_a_newer_order);

/// An expired or cancelled order keeps its slot for `slot_reuse_grace_secs`; the sweeper
/// releases it afterwards.
async fn expired_slots_are_held_for_a_grace_period(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let rules = common::rules(&app);
    assert_eq!(rules.slot_reuse_grace_secs, 600, "the default");
    let a = create(&app, "grace-A", "100").await;
    age_order(&app, &a, 700, 100).await;
    service::order::expire_order(&app.state.db, &rules, a["trade_id"].as_str().unwrap())
        .await
        .expect("expire");
    let b = create(&app, "grace-B", "100").await;
    assert_ne!(b["actual_amount"], a["actual_amount"], "A's slot is held");
    let c = create(&app, "grace-C", "200").await;
    service::order::cancel_order(
        &app.state.db,
        &rules,
        &service::merchant::find_by_pid(&app.state.db, &app.state.keys, 1000)
            .await
            .expect("merchant")
            .expect("default merchant"),
        c["trade_id"].as_str().unwrap(),
    )
    .await
    .expect("cancel");
    let d = create(&app, "grace-D", "200").await;
    assert_ne!(
        d["actual_amount"], c["actual_amount"],
        "a cancelled order's slot is held too"
    );
    // The grace period passes: the sweeper releases both slots.
    order::Entity::update_many()
        .col_expr(order::Column::UpdatedAt, Expr::value(service::now() - 601))
        .filter(order::Column::Status.is_in([3i16, 4]))
        .exec(&app.state.db)
        .await
        .expect("age");
    let swept = service::order::sweep(&app.state.db, &app.state.queue, &rules)
        .await
        .expect("sweep");
    // (the app's own sweeper may have released them first on a slow run: what counts is that
    // the slots are free, below)
    assert!(swept.released <= 2, "{swept:?}");
    let e = create(&app, "grace-E", "100").await;
    assert_eq!(
        e["actual_amount"], a["actual_amount"],
        "A's slot is free again"
    );
    app.stop().await;
}
on_all_backends!(expired_slots_are_held_for_a_grace_period);

/// A second, identical payment for an order already paid is recorded against that order, not
/// against another waiting order on the same address.
async fn a_second_payment_is_recorded_against_the_paid_order(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let a = create(&app, "twice-A", "100").await;
    let b = create(&app, "twice-B", "200").await;
    let now = service::now();
    assert!(matches!(
        credit(&app, &transfer(&a, "tx-1", "13.89", now)).await,
        CreditOutcome::Paid { .. }
    ));
    let out = credit(&app, &transfer(&a, "tx-2", "13.89", now + 1)).await;
    let a_row = row(&app, &a).await;
    assert_eq!(
        out,
        CreditOutcome::PaidTwice {
            order_id: a_row.id.get()
        }
    );
    assert_eq!(a_row.flags & flags::PAID_TWICE, flags::PAID_TWICE);
    assert_eq!(a_row.block_transaction_id.as_deref(), Some("tx-1"));
    let b_row = row(&app, &b).await;
    assert_eq!((b_row.status.code(), b_row.flags), (1, 0), "B is untouched");
    app.stop().await;
}
on_all_backends!(a_second_payment_is_recorded_against_the_paid_order);

/// The same transaction re-mined at another position after a reorg (another block, another log
/// index) is the same payment: it never credits a second order.
async fn a_remined_transfer_never_credits_twice(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let a = create(&app, "remined-A", "100").await;
    age_order(&app, &a, 30, -570).await;
    let first = transfer(&a, "tx-moved", "13.89", service::now() - 20);
    assert!(matches!(
        credit(&app, &first).await,
        CreditOutcome::Paid { .. }
    ));
    // A paid: its slot is free, B takes it.
    let b = create(&app, "remined-B", "100").await;
    assert_eq!(b["actual_amount"], a["actual_amount"]);
    let moved = IncomingTransfer {
        log_index: 7,
        block_number: 105,
        block_hash: "blk-after-reorg".into(),
        block_time: service::now() + 1,
        ..first.clone()
    };
    assert_eq!(credit(&app, &moved).await, CreditOutcome::Duplicate);
    assert_eq!(
        row(&app, &b).await.status.code(),
        1,
        "B is not paid by A's payment"
    );
    // Two identical transfers inside one transaction (same block) are both recorded.
    let c = create(&app, "remined-C", "300").await;
    let twin1 = IncomingTransfer {
        log_index: 1,
        block_hash: "blk-twins".into(),
        ..transfer(&c, "tx-twins", "41.67", service::now())
    };
    let twin2 = IncomingTransfer {
        log_index: 2,
        ..twin1.clone()
    };
    assert!(matches!(
        credit(&app, &twin1).await,
        CreditOutcome::Paid { .. }
    ));
    let c_row = row(&app, &c).await;
    assert_eq!(
        credit(&app, &twin2).await,
        CreditOutcome::PaidTwice {
            order_id: c_row.id.get()
        }
    );
    app.stop().await;
}
on_all_backends!(a_remined_transfer_never_credits_twice);

/// A payment of the expected amount ± 0.01 never pays the order: it stays waiting and the
/// partial / overpaid flag is set on the nearest waiting order, with one and with two waiting
/// orders on the address.
async fn a_wrong_amount_is_flagged_never_credited(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let now = service::now();
    let a = create(&app, "wrong-A", "100").await;
    assert_eq!(a["actual_amount"].to_string(), "13.89");
    let id_a = row(&app, &a).await.id.get();
    assert_eq!(
        credit(&app, &transfer(&a, "tx-less", "13.88", now)).await,
        CreditOutcome::Partial { order_id: id_a }
    );
    assert_eq!(
        credit(&app, &transfer(&a, "tx-more", "13.9", now)).await,
        CreditOutcome::Overpaid { order_id: id_a }
    );
    let a_row = row(&app, &a).await;
    assert_eq!(a_row.status.code(), 1);
    assert_eq!(a_row.flags, flags::PARTIAL | flags::OVERPAID);

    // Two waiting orders on the address: the nearest amount gets the flag.
    let b = create(&app, "wrong-B", "200").await;
    assert_eq!(b["actual_amount"].to_string(), "27.78");
    let id_b = row(&app, &b).await.id.get();
    assert_eq!(
        credit(&app, &transfer(&b, "tx-b-less", "27.77", now)).await,
        CreditOutcome::Partial { order_id: id_b }
    );
    assert_eq!(
        credit(&app, &transfer(&a, "tx-a-less2", "13.88", now)).await,
        CreditOutcome::Partial { order_id: id_a }
    );
    assert_eq!(
        credit(&app, &transfer(&b, "tx-b-more", "27.79", now)).await,
        CreditOutcome::Overpaid { order_id: id_b }
    );
    let (a_row, b_row) = (row(&app, &a).await, row(&app, &b).await);
    assert_eq!(
        (a_row.status.code(), b_row.status.code()),
        (1, 1),
        "neither is paid"
    );
    assert_eq!(b_row.flags, flags::PARTIAL | flags::OVERPAID);
    app.stop().await;
}
on_all_backends!(a_wrong_amount_is_flagged_never_credited);

/// Flags are set with one atomic update: concurrent partial and overpaid transfers to the same
/// order both leave their bit.
async fn concurrent_flags_are_never_lost(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let mut orders = Vec::new();
    for i in 0..8 {
        orders.push(create(&app, &format!("flag-{i}"), &format!("{}", 100 + i * 50)).await);
    }
    let now = service::now();
    let mut tasks = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        let expected: Decimal = o["actual_amount"].to_string().parse().unwrap();
        for (tag, amount) in [
            ("less", expected - Decimal::new(1, 2)),
            ("more", expected + Decimal::new(1, 2)),
        ] {
            let t = transfer(o, &format!("tx-{i}-{tag}"), &amount.to_string(), now);
            let (db, queue, rules) = (
                app.state.db.clone(),
                app.state.queue.clone(),
                common::rules(&app),
            );
            tasks.push(tokio::spawn(async move {
                credit_transfer(&db, &queue, &rules, &t).await
            }));
        }
    }
    for t in tasks {
        t.await.expect("join").expect("credit");
    }
    for o in &orders {
        let r = row(&app, o).await;
        assert_eq!(r.flags, flags::PARTIAL | flags::OVERPAID, "{}", r.trade_id);
    }
    app.stop().await;
}
on_all_backends!(concurrent_flags_are_never_lost);

mod callbacks;

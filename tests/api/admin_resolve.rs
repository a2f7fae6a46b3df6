//! `POST /admin/api/v1/orders/{trade_id}/resolve`: an operator credits or dismisses a partial,
//! paid-twice or unmatched transfer — once per transfer (409 after, also when two race), the
//! order paid through the normal compare-and-swap with its callback queued, every resolve
//! audited with the admin, its IP and the reason.
use crate::common;

use common::{Backend, transfer_to};
use epusdt::service::{admin::Role, order::CreditOutcome};
use rust_decimal::Decimal;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::admin_auth::{OWNER_PW, VIEWER_PW, access, add_admin, call};

async fn order(app: &common::TestApp, id: &str) -> Value {
    let r = common::create_v1(
        app,
        &[
            ("order_id", id),
            ("amount", "10"),
            ("notify_url", "http://127.0.0.1:9/n"),
        ],
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    r["data"].clone()
}

fn amount(o: &Value) -> Decimal {
    o["actual_amount"]
        .to_string()
        .trim_matches('"')
        .parse()
        .unwrap()
}

async fn resolve_transfers(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    add_admin(&app, "alice", Role::Admin, OWNER_PW).await;
    add_admin(&app, "vera", Role::Viewer, VIEWER_PW).await;
    let token = access(&app, "alice", OWNER_PW).await;
    let viewer = access(&app, "vera", VIEWER_PW).await;
    let t = Some(token.as_str());

    // A partial payment: flagged, not credited.
    let a = order(&app, "RES-A").await;
    let trade_a = a["trade_id"].as_str().unwrap().to_string();
    let short = (amount(&a) - Decimal::new(5, 1)).to_string();
    assert!(matches!(
        app.pay(&a, &short).await,
        CreditOutcome::Partial { .. }
    ));
    let path_a = format!("/admin/api/v1/orders/{trade_a}/resolve");

    // Validation, role.
    for (body, code) in [
        (json!({"action": "credit"}), "invalid_body"),
        (json!({"action": "credit", "reason": "  "}), "invalid_field"),
        (
            json!({"action": "credit", "reason": "x".repeat(501)}),
            "invalid_field",
        ),
        (json!({"action": "refund", "reason": "r"}), "invalid_field"),
        (
            json!({"action": "credit", "reason": "r", "transfer_id": 999_999}),
            "not_found",
        ),
    ] {
        let (s, e) = call(&app, "POST", &path_a, t, Some(body.clone())).await;
        assert_eq!(e["error"]["code"], code, "{body}: {s} {e}");
    }
    let (s, _) = call(
        &app,
        "POST",
        "/admin/api/v1/orders/NOPE/resolve",
        t,
        Some(json!({"action": "dismiss", "reason": "r"})),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &app,
        "POST",
        &path_a,
        Some(&viewer),
        Some(json!({"action": "credit", "reason": "r"})),
    )
    .await;
    assert_eq!(s, 403);

    // Credit: the one unresolved transfer of the order; two racing resolves, one wins.
    let (_, d) = call(
        &app,
        "GET",
        &format!("/admin/api/v1/orders/{trade_a}"),
        t,
        None,
    )
    .await;
    assert_eq!(d["status"], "waiting");
    let tid = d["transfers"][0]["id"].as_i64().unwrap();
    assert_eq!(d["transfers"][0]["kind"], "partial");
    let body =
        json!({"action": "credit", "reason": "payer confirmed by ticket #12", "transfer_id": tid});
    let (r1, r2) = tokio::join!(
        call(&app, "POST", &path_a, t, Some(body.clone())),
        call(
            &app,
            "POST",
            &path_a,
            t,
            Some(
                json!({"action": "credit", "reason": "payer confirmed by ticket #12", "transfer_id": tid})
            )
        ),
    );
    let mut statuses = [r1.0, r2.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{r1:?} {r2:?}");
    let ok = if r1.0 == 200 { &r1.1 } else { &r2.1 };
    let conflict = if r1.0 == 200 { &r2.1 } else { &r1.1 };
    assert_eq!(conflict["error"]["code"], "transfer_resolved", "{conflict}");
    assert_eq!(ok["kind"], "credited", "{ok}");
    assert_eq!(ok["previous_kind"], "partial");
    assert_eq!(ok["transfer_id"], tid);
    assert_eq!(ok["callback"], "queued");
    let (_, d) = call(
        &app,
        "GET",
        &format!("/admin/api/v1/orders/{trade_a}"),
        t,
        None,
    )
    .await;
    assert_eq!(d["status"], "paid", "{d}");
    assert_eq!(d["paid_amount"], short, "{d}");
    assert_eq!(d["transfers"][0]["kind"], "credited");
    assert_ne!(d["callback_state"], 0, "callback queued: {d}");
    // And again, later: still once.
    let (s, e) = call(
        &app,
        "POST",
        &path_a,
        t,
        Some(json!({"action": "dismiss", "reason": "r", "transfer_id": tid})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("transfer_resolved"))
    );

    // A second payment of the paid order: cannot be credited, can be dismissed, once.
    assert!(matches!(
        app.pay(&a, &amount(&a).to_string()).await,
        CreditOutcome::PaidTwice { .. }
    ));
    let (s, e) = call(
        &app,
        "POST",
        &path_a,
        t,
        Some(json!({"action": "credit", "reason": "r"})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("order_already_paid")),
        "{e}"
    );
    let (s, v) = call(
        &app,
        "POST",
        &path_a,
        t,
        Some(json!({"action": "dismiss", "reason": "refunded on chain"})),
    )
    .await;
    assert_eq!(
        (s, v["kind"].as_str(), v["callback"].as_str()),
        (200, Some("dismissed"), Some("none")),
        "{v}"
    );
    let (s, _) = call(
        &app,
        "POST",
        &path_a,
        t,
        Some(json!({"action": "dismiss", "reason": "r"})),
    )
    .await;
    assert_eq!(s, 404, "no unresolved transfer left");

    // An unmatched transfer (mined before the order existed) to B's address, named by tx.
    let b = order(&app, "RES-B").await;
    let trade_b = b["trade_id"].as_str().unwrap().to_string();
    let mut early = transfer_to(&b, "tx-early-b", "3.5");
    early.block_time -= 7200;
    assert_eq!(app.credit(&early).await, CreditOutcome::Unmatched);
    let path_b = format!("/admin/api/v1/orders/{trade_b}/resolve");
    let (s, v) = call(&app, "POST", &path_b, t, Some(json!({"action": "credit", "tx": "tx-early-b", "reason": "customer paid before ordering"}))).await;
    assert_eq!(
        (s, v["previous_kind"].as_str()),
        (200, Some("unmatched")),
        "{v}"
    );
    assert_eq!(v["paid_order"], trade_b);
    let o = epusdt::service::order::find_by_trade_id(&app.state.db, &trade_b)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.status, epusdt::domain::order::OrderStatus::Paid);
    assert_eq!(o.block_transaction_id.as_deref(), Some("tx-early-b"));

    // Audited: admin, IP, reason.
    let rows: Vec<_> = epusdt::store::entities::audit_log::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action.starts_with("order.resolve"))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.actor == "admin:alice" && !r.ip.is_empty())
    );
    assert!(rows.iter().any(|r| r.action == "order.resolve_credit"
        && r.details.contains("payer confirmed by ticket #12")));
    assert!(rows.iter().any(|r| r.action == "order.resolve_dismiss"));
    app.stop().await;
}
on_all_backends!(resolve_transfers);

//! Merchant access set through the admin API: the per-merchant IP allow-list (a request from
//! elsewhere is answered exactly like a bad signature, as GMWalletApp does), and the overlap of
//! a rotated secret (`secret_overlap_secs`: the old secret keeps working that long; 0 = stops
//! at once). Requests are GMPay creates signed here from upstream's documented algorithm.
use std::collections::BTreeMap;

use crate::common;

use common::Backend;
use epusdt::service::admin::Role;
use serde_json::{Value, json};

use crate::admin_auth::{OWNER_PW, access, add_admin, call};

/// A GMPay create for merchant `pid`, signed with `secret` (HMAC-SHA256 over sorted k=v&…).
async fn create(app: &common::TestApp, pid: i64, secret: &str, order_id: &str) -> Value {
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("pid", pid.to_string());
    p.insert("currency", "CNY".into());
    p.insert("notify_url", "http://127.0.0.1:9/n".into());
    p.insert("order_id", order_id.into());
    p.insert("amount", "10".into());
    let mut body = serde_json::Map::new();
    for (k, v) in &p {
        body.insert(k.to_string(), json!(v));
    }
    body.insert("pid".into(), json!(pid));
    body.insert("amount".into(), json!(10));
    body.insert("signature".into(), json!(common::gmpay_sign(&p, secret)));
    common::post_json(
        &app.client,
        &app.url("/payments/gmpay/v1/order/create-transaction"),
        &body,
    )
    .await
}

/// A reply without its per-request id, to compare refusals.
fn bare(mut r: Value) -> Value {
    r.as_object_mut().map(|o| o.remove("request_id"));
    r
}

fn ok(r: &Value) -> bool {
    r["status_code"] == 200
}

async fn allowlist_and_overlap(backend: Backend, overlap: u32) {
    let Some(app) = common::spawn_app_with(backend, |c| c.secret_overlap_secs = overlap).await
    else {
        return;
    };
    add_admin(&app, "alice", Role::Admin, OWNER_PW).await;
    let token = access(&app, "alice", OWNER_PW).await;
    let t = Some(token.as_str());
    let (s, m) = call(
        &app,
        "POST",
        "/admin/api/v1/merchants",
        t,
        Some(json!({"name": "shop"})),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let pid = m["pid"].as_i64().unwrap();
    let secret = m["secret"].as_str().unwrap().to_string();
    assert!(ok(&create(&app, pid, &secret, "A-1").await));
    let bad_sig = bare(create(&app, pid, "not-the-secret", "A-2").await);
    assert!(!ok(&bad_sig), "{bad_sig}");

    // Allow-list: validated; another network is refused exactly like a bad signature.
    let path = format!("/admin/api/v1/merchants/{pid}");
    let (s, e) = call(
        &app,
        "PATCH",
        &path,
        t,
        Some(json!({"ip_allowlist": ["10.0.0.0/33"]})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{e}"
    );
    let (s, v) = call(
        &app,
        "PATCH",
        &path,
        t,
        Some(json!({"ip_allowlist": ["10.0.0.0/8", "192.0.2.7"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["ip_allowlist"],
        json!(["10.0.0.0/8", "192.0.2.7/32"]),
        "{v}"
    );
    let refused = bare(create(&app, pid, &secret, "A-3").await);
    assert_eq!(refused, bad_sig, "same reply as a wrong signature");
    let (_, v) = call(
        &app,
        "PATCH",
        &path,
        t,
        Some(json!({"ip_allowlist": ["10.0.0.0/8", "127.0.0.0/8"]})),
    )
    .await;
    assert_eq!(v["ip_allowlist"].as_array().unwrap().len(), 2, "{v}");
    assert!(ok(&create(&app, pid, &secret, "A-4").await));
    let (_, v) = call(&app, "PATCH", &path, t, Some(json!({"ip_allowlist": []}))).await;
    assert_eq!(v["ip_allowlist"], json!([]));
    assert!(ok(&create(&app, pid, &secret, "A-5").await));

    // Rotation: the new secret works at once; the old one only within the overlap.
    let (s, r) = call(&app, "POST", &format!("{path}/rotate-secret"), t, None).await;
    assert_eq!(s, 200, "{r}");
    let new = r["secret"].as_str().unwrap().to_string();
    assert_ne!(new, secret);
    assert!(ok(&create(&app, pid, &new, "B-1").await));
    let old = create(&app, pid, &secret, "B-2").await;
    if overlap > 0 {
        assert!(ok(&old), "old secret within the overlap: {old}");
        assert!(r["rotation_overlap_until"].as_i64().is_some(), "{r}");
        let (_, list) = call(&app, "GET", "/admin/api/v1/merchants", t, None).await;
        assert!(!list.to_string().contains(&secret), "never listed");
        // A second rotation: the first secret is gone, the second overlaps.
        let (_, r2) = call(&app, "POST", &format!("{path}/rotate-secret"), t, None).await;
        let newest = r2["secret"].as_str().unwrap();
        assert!(!ok(&create(&app, pid, &secret, "B-3").await));
        assert!(ok(&create(&app, pid, &new, "B-4").await));
        assert!(ok(&create(&app, pid, newest, "B-5").await));
    } else {
        assert_eq!(
            bare(old),
            bad_sig,
            "without an overlap the old secret stops at once"
        );
        assert!(r["rotation_overlap_until"].is_null(), "{r}");
    }
    app.stop().await;
}

async fn no_overlap(backend: Backend) {
    allowlist_and_overlap(backend, 0).await
}
async fn with_overlap(backend: Backend) {
    allowlist_and_overlap(backend, 60).await
}
on_all_backends!(no_overlap);
on_all_backends!(with_overlap);

/// A merchant's own rate limit set through the admin API binds its signed requests (and only
/// its own), `null` returns it to `rate_limit_merchant_per_minute`, 0 lifts it; orders name
/// their merchant by pid.
async fn own_rate_limit(backend: Backend) {
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.rate_limit.rate_limit_merchant_per_minute = 4;
    })
    .await
    else {
        return;
    };
    add_admin(&app, "alice", Role::Admin, OWNER_PW).await;
    let token = access(&app, "alice", OWNER_PW).await;
    let t = Some(token.as_str());
    let mut shops = Vec::new();
    for name in ["slow", "other"] {
        let (s, m) = call(
            &app,
            "POST",
            "/admin/api/v1/merchants",
            t,
            Some(json!({"name": name})),
        )
        .await;
        assert_eq!(s, 201, "{m}");
        shops.push((
            m["pid"].as_i64().unwrap(),
            m["secret"].as_str().unwrap().to_string(),
        ));
    }
    let (pid, secret) = shops[0].clone();
    let path = format!("/admin/api/v1/merchants/{pid}");
    for bad in [json!(-1), json!("ten"), json!(2_000_000), json!(1.5)] {
        let (s, e) = call(
            &app,
            "PATCH",
            &path,
            t,
            Some(json!({ "rate_limit_per_minute": bad })),
        )
        .await;
        assert!(s == 400 || s == 422, "{bad}: {s} {e}");
        assert!(e["error"]["message"].as_str().is_some(), "{e}");
    }
    let (s, v) = call(
        &app,
        "PATCH",
        &path,
        t,
        Some(json!({"rate_limit_per_minute": 2})),
    )
    .await;
    assert_eq!((s, &v["rate_limit_per_minute"]), (200, &json!(2)), "{v}");
    assert!(ok(&create(&app, pid, &secret, "L-1").await));
    assert!(ok(&create(&app, pid, &secret, "L-2").await));
    let r = create(&app, pid, &secret, "L-3").await;
    assert_eq!(
        r["status_code"], 429,
        "third request over its own limit: {r}"
    );
    // Another merchant keeps the configured default (4).
    let (other, other_secret) = &shops[1];
    for i in 0..3 {
        assert!(ok(
            &create(&app, *other, other_secret, &format!("O-{i}")).await
        ));
    }
    // 0 lifts the limit; null returns to the configured default (4 per minute, 2 used).
    let (_, v) = call(
        &app,
        "PATCH",
        &path,
        t,
        Some(json!({"rate_limit_per_minute": 0})),
    )
    .await;
    assert_eq!(v["rate_limit_per_minute"], 0, "{v}");
    assert!(ok(&create(&app, pid, &secret, "L-4").await));
    let (_, v) = call(
        &app,
        "PATCH",
        &path,
        t,
        Some(json!({"rate_limit_per_minute": null})),
    )
    .await;
    assert!(v["rate_limit_per_minute"].is_null(), "{v}");
    let (_, list) = call(&app, "GET", "/admin/api/v1/merchants", t, None).await;
    assert_eq!(list["default_rate_limit_per_minute"], 4, "{list}");
    // Unlimited requests were not counted: L-1 and L-2 leave two of the default's four.
    assert!(ok(&create(&app, pid, &secret, "L-5").await));
    assert!(ok(&create(&app, pid, &secret, "L-6").await));
    let r = create(&app, pid, &secret, "L-7").await;
    assert_eq!(r["status_code"], 429, "back on the default of 4: {r}");

    // The audit trail has the change; orders show the merchant's pid.
    let (_, audit) = call(&app, "GET", "/admin/api/v1/audit", t, None).await;
    assert!(
        audit.to_string().contains("rate_limit_per_minute"),
        "{audit}"
    );
    let placed = app
        .create_v1(&[
            ("order_id", "PID-SHOWN-1"),
            ("amount", "10"),
            ("notify_url", "http://127.0.0.1:9/n"),
        ])
        .await;
    assert_eq!(placed["status_code"], 200, "{placed}");
    let (_, orders) = call(&app, "GET", "/admin/api/v1/orders?q=PID-SHOWN-1", t, None).await;
    assert_eq!(orders["orders"][0]["merchant_pid"], 1000, "{orders}");
    let trade = orders["orders"][0]["trade_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, detail) = call(
        &app,
        "GET",
        &format!("/admin/api/v1/orders/{trade}"),
        t,
        None,
    )
    .await;
    assert_eq!(detail["merchant_pid"], 1000, "{detail}");
    assert!(detail["merchant_id"].is_i64(), "{detail}");
    app.stop().await;
}
on_all_backends!(own_rate_limit);

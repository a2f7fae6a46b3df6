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

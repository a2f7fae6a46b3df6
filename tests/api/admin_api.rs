//! The admin API's first managed resources over HTTP (issue 12): wallets, merchants (secret
//! shown once, rotation), orders (search, cursor, detail, resend), admins (owner only); every
//! write audited with the admin's name and IP; a viewer (and an admin on owner routes) gets 403
//! on every write, walked over the router's own route table.
use crate::common;

use common::{Backend, TRON_WALLET};
use epusdt::service::admin::Role;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::admin_auth::{OWNER_PW, VIEWER_PW, access, add_admin, call, login, tokens};

const OTHER_TRON: &str = common::TRON_WALLET_2;

async fn wallets_merchants_orders(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    add_admin(&app, "alice", Role::Admin, OWNER_PW).await;
    let token = access(&app, "alice", OWNER_PW).await;
    let t = Some(token.as_str());

    // Wallets: validated for the network, unique, patchable.
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/wallets",
        t,
        Some(json!({ "network": "tron", "address": "Tnotanaddress" })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{e}"
    );
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/wallets",
        t,
        Some(json!({ "network": "dogecoin", "address": OTHER_TRON })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "{e}"
    );
    let (s, w) = call(
        &app,
        "POST",
        "/admin/api/v1/wallets",
        t,
        Some(json!({ "network": "tron", "address": OTHER_TRON, "label": "cold" })),
    )
    .await;
    assert_eq!(s, 201, "{w}");
    assert_eq!(
        (w["label"].as_str(), w["enabled"].as_bool()),
        (Some("cold"), Some(true))
    );
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/wallets",
        t,
        Some(json!({ "network": "tron", "address": OTHER_TRON })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("wallet_exists"))
    );
    let id = w["id"].as_i64().unwrap();
    let (s, w2) = call(
        &app,
        "PATCH",
        &format!("/admin/api/v1/wallets/{id}"),
        t,
        Some(json!({ "label": "warm", "enabled": false })),
    )
    .await;
    assert_eq!(
        (s, w2["label"].as_str(), w2["enabled"].as_bool()),
        (200, Some("warm"), Some(false))
    );
    assert_eq!(
        call(
            &app,
            "PATCH",
            "/admin/api/v1/wallets/999999",
            t,
            Some(json!({ "enabled": true }))
        )
        .await
        .0,
        404
    );
    let (s, list) = call(&app, "GET", "/admin/api/v1/wallets", t, None).await;
    assert_eq!(s, 200);
    assert!(
        list["wallets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["address"] == OTHER_TRON && w["enabled"] == false)
    );

    // Merchants: the secret is in the create reply only.
    let (s, m) = call(
        &app,
        "POST",
        "/admin/api/v1/merchants",
        t,
        Some(json!({ "name": "shop" })),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    let pid = m["pid"].as_i64().unwrap();
    let secret = m["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32);
    let (_, list) = call(&app, "GET", "/admin/api/v1/merchants", t, None).await;
    let text = list.to_string();
    assert!(
        text.contains("\"shop\"") && !text.contains(&secret) && !text.contains("secret"),
        "{text}"
    );
    let (s, r) = call(
        &app,
        "POST",
        &format!("/admin/api/v1/merchants/{pid}/rotate-secret"),
        t,
        None,
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_ne!(r["secret"].as_str().unwrap(), secret);
    assert_eq!(
        call(
            &app,
            "POST",
            "/admin/api/v1/merchants/424242/rotate-secret",
            t,
            None
        )
        .await
        .0,
        404
    );
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/merchants/1000/rotate-secret",
        t,
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    let (s, m2) = call(
        &app,
        "PATCH",
        &format!("/admin/api/v1/merchants/{pid}"),
        t,
        Some(json!({ "enabled": false, "name": "shop 2" })),
    )
    .await;
    assert_eq!(
        (s, m2["enabled"].as_bool(), m2["name"].as_str()),
        (200, Some(false), Some("shop 2")),
        "{m2}"
    );
    assert!(m2.get("secret").is_none());
    let (s, _) = call(
        &app,
        "PATCH",
        "/admin/api/v1/merchants/1000",
        t,
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(s, 422, "pid 1000 follows api_auth_token");
    let (s, m3) = call(
        &app,
        "PATCH",
        &format!("/admin/api/v1/merchants/{pid}"),
        t,
        Some(json!({ "sign_mode": "md5" })),
    )
    .await;
    assert_eq!((s, m3["sign_mode"].as_str()), (200, Some("md5")), "{m3}");
    let (s, e) = call(
        &app,
        "PATCH",
        &format!("/admin/api/v1/merchants/{pid}"),
        t,
        Some(json!({ "sign_mode": "sha1" })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    assert_eq!(
        call(
            &app,
            "PATCH",
            "/admin/api/v1/merchants/424242",
            t,
            Some(json!({ "enabled": true }))
        )
        .await
        .0,
        404
    );

    // Orders: three created by the v1 API, found by order_id, paged by cursor.
    let mut created = Vec::new();
    for i in 0..3 {
        let r = common::create_v1(
            &app,
            &[
                ("order_id", &format!("ADM-{i}")),
                ("amount", "10"),
                ("notify_url", "http://127.0.0.1:9/n"),
            ],
        )
        .await;
        assert_eq!(r["status_code"], 200, "{r}");
        created.push(r["data"].clone());
    }
    let (s, found) = call(&app, "GET", "/admin/api/v1/orders?q=ADM-1", t, None).await;
    assert_eq!(s, 200);
    let orders = found["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "{found}");
    assert_eq!(
        (orders[0]["order_id"].as_str(), orders[0]["status"].as_str()),
        (Some("ADM-1"), Some("waiting"))
    );
    let (_, p1) = call(
        &app,
        "GET",
        "/admin/api/v1/orders?limit=2&network=tron",
        t,
        None,
    )
    .await;
    assert_eq!(p1["orders"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_string();
    let (_, p2) = call(
        &app,
        "GET",
        &format!("/admin/api/v1/orders?limit=2&cursor={cursor}"),
        t,
        None,
    )
    .await;
    assert_eq!(p2["orders"].as_array().unwrap().len(), 1);
    assert!(p2["next_cursor"].is_null());
    assert_eq!(p2["orders"][0]["order_id"], "ADM-0", "newest first");
    let (_, by_pid) = call(&app, "GET", "/admin/api/v1/orders?merchant=1000", t, None).await;
    assert_eq!(by_pid["orders"].as_array().unwrap().len(), 3);
    let (_, none) = call(&app, "GET", "/admin/api/v1/orders?merchant=424242", t, None).await;
    assert!(none["orders"].as_array().unwrap().is_empty());
    let addr = created[0]["token"].as_str().unwrap();
    let (_, by_addr) = call(
        &app,
        "GET",
        &format!("/admin/api/v1/orders?address={addr}"),
        t,
        None,
    )
    .await;
    assert!(
        by_addr["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["address"] == addr)
            && !by_addr["orders"].as_array().unwrap().is_empty()
    );
    // Malformed bodies get the admin error shape too.
    let r = app
        .client
        .post(app.url("/admin/api/v1/wallets"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_body"
    );
    let r = app
        .client
        .post(app.url("/admin/api/v1/wallets"))
        .bearer_auth(&token)
        .body("network=tron")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_body"
    );
    let (s, e) = call(&app, "GET", "/admin/api/v1/orders?status=lost", t, None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    let (_, none) = call(&app, "GET", "/admin/api/v1/orders?status=paid", t, None).await;
    assert!(none["orders"].as_array().unwrap().is_empty());

    // Resend: only a paid order; a paid one shows its transfer and queues a callback.
    let trade_id = created[2]["trade_id"].as_str().unwrap().to_string();
    let (s, e) = call(
        &app,
        "POST",
        &format!("/admin/api/v1/orders/{trade_id}/resend"),
        t,
        None,
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("order_not_paid"))
    );
    app.pay(
        &created[2],
        created[2]["actual_amount"].to_string().trim_matches('"'),
    )
    .await;
    let (s, d) = call(
        &app,
        "GET",
        &format!("/admin/api/v1/orders/{trade_id}"),
        t,
        None,
    )
    .await;
    assert_eq!((s, d["status"].as_str()), (200, Some("paid")), "{d}");
    assert_eq!(d["transfers"].as_array().unwrap().len(), 1, "{d}");
    assert!(d["callback_attempts_log"].is_array());
    // The dashboard numbers count it.
    let (s, st) = call(&app, "GET", "/admin/api/v1/stats", t, None).await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["today"]["orders_by_status"]["waiting"], 2, "{st}");
    assert_eq!(st["last_7_days"]["orders_by_status"]["paid"], 1, "{st}");
    let paid: rust_decimal::Decimal = d["paid_amount"]
        .as_str()
        .or(d["actual_amount"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    let token = d["token"].as_str().unwrap();
    let vol: rust_decimal::Decimal = st["today"]["paid_volume"]["tron"][token]
        .as_str()
        .expect("tron volume")
        .parse()
        .unwrap();
    assert_eq!(vol, paid, "{st}");
    let (s, _) = call(
        &app,
        "POST",
        &format!("/admin/api/v1/orders/{trade_id}/resend"),
        t,
        None,
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/orders/NOPE", t, None)
            .await
            .0,
        404
    );

    // Every write is in the audit trail with the admin's name and address.
    let rows = epusdt::store::entities::audit_log::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    for action in [
        "wallet.add",
        "wallet.update",
        "merchant.add",
        "merchant.rotate_secret",
        "order.resend",
    ] {
        let r = rows
            .iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("{action} audited"));
        assert_eq!(
            (r.actor.as_str(), r.ip.as_str()),
            ("admin:alice", "127.0.0.1"),
            "{action}"
        );
    }
    assert!(!rows.iter().any(|r| r.details.contains(&secret)));
    // Rates: forced CNY and configured USD from the test config; an admin rate for EUR.
    let (s, e) = call(
        &app,
        "PUT",
        "/admin/api/v1/rates/EUR",
        t,
        Some(json!({ "rate": 0.92 })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "a float is refused"
    );
    let (s, e) = call(
        &app,
        "PUT",
        "/admin/api/v1/rates/EURO",
        t,
        Some(json!({ "rate": "0.92" })),
    )
    .await;
    assert_eq!(s, 422, "{e}");
    let (s, r) = call(
        &app,
        "PUT",
        "/admin/api/v1/rates/eur",
        t,
        Some(json!({ "rate": "0.920" })),
    )
    .await;
    assert_eq!(
        (s, r["effective_rate"].as_str()),
        (200, Some("0.92")),
        "{r}"
    );
    let (_, rates) = call(&app, "GET", "/admin/api/v1/rates", t, None).await;
    let find = |c: &str| {
        rates["rates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["currency"] == c)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        (find("CNY")["rate"].as_str(), find("CNY")["source"].as_str()),
        (Some("7.2"), Some("forced_usdt_rate")),
        "{rates}"
    );
    assert_eq!(find("USD")["source"], "config");
    let (_, a) = call(&app, "GET", "/admin/api/v1/audit?action=rate.set", t, None).await;
    assert_eq!(a["events"][0]["actor"], "admin:alice", "{a}");
    assert_eq!(
        (find("EUR")["rate"].as_str(), find("EUR")["source"].as_str()),
        (Some("0.92"), Some("admin"))
    );
    // The audit trail reads back over the API, filtered and paged.
    let (s, a) = call(
        &app,
        "GET",
        "/admin/api/v1/audit?actor=admin:alice&action=wallet.add",
        t,
        None,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let events = a["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{a}");
    assert_eq!(
        (events[0]["ip"].as_str(), events[0]["target"].as_str()),
        (
            Some("127.0.0.1"),
            Some(format!("wallet:tron:{OTHER_TRON}").as_str())
        )
    );
    let (_, p1) = call(
        &app,
        "GET",
        "/admin/api/v1/audit?actor=admin:alice&limit=2",
        t,
        None,
    )
    .await;
    let cursor = p1["next_cursor"].as_str().expect("more events").to_string();
    let (_, p2) = call(
        &app,
        "GET",
        &format!("/admin/api/v1/audit?actor=admin:alice&limit=2&cursor={cursor}"),
        t,
        None,
    )
    .await;
    assert!(p2["events"][0]["id"].as_i64().unwrap() < p1["events"][1]["id"].as_i64().unwrap());
    let (s, c) = call(&app, "GET", "/admin/api/v1/chains", t, None).await;
    assert_eq!((s, c["chains"].is_object()), (200, true), "{c}");
    // An admin is not an owner.
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/admins", t, None).await.0,
        403
    );
    let _ = TRON_WALLET;
    app.stop().await;
}
on_all_backends!(wallets_merchants_orders);

/// Walks the router's route table: a viewer gets 403 on every write and 200 on the reads it
/// may do; an admin gets 403 on every owner route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_gets_403_on_every_write() {
    use epusdt::http::admin::{Access, routes};
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    add_admin(&app, "vera", Role::Viewer, VIEWER_PW).await;
    add_admin(&app, "adam", Role::Admin, OWNER_PW).await;
    let viewer = access(&app, "vera", VIEWER_PW).await;
    let admin = access(&app, "adam", OWNER_PW).await;
    let mut writes = 0;
    for r in routes() {
        let path = r
            .path
            .replace("{id}", "1")
            .replace("{pid}", "1001")
            .replace("{trade_id}", "T1")
            .replace("{username}", "adam");
        let Access::Role { least, write } = r.access else {
            continue;
        };
        let (s, v) = call(
            &app,
            r.method.as_str(),
            &path,
            Some(&viewer),
            Some(json!({})),
        )
        .await;
        if write {
            writes += 1;
            assert_eq!(
                (s, v["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "viewer {} {path}",
                r.method
            );
        } else if least == Role::Viewer {
            // Allowed: 200, or 404 for the placeholder id of a detail route.
            assert!(
                s == 200 || (s == 404 && v["error"]["code"] == "not_found"),
                "viewer {} {path}: {s} {v}",
                r.method
            );
        } else {
            assert_eq!(s, 403, "viewer {} {path}", r.method);
        }
        if least == Role::Owner {
            let (s, _) = call(
                &app,
                r.method.as_str(),
                &path,
                Some(&admin),
                Some(json!({})),
            )
            .await;
            assert_eq!(s, 403, "admin {} {path}", r.method);
        }
    }
    assert!(writes >= 7, "{writes}");
    // The refusals changed nothing.
    assert_eq!(
        epusdt::service::merchant::list(&app.state.db)
            .await
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

async fn owners_manage_admins(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    add_admin(&app, "root", Role::Owner, OWNER_PW).await;
    let t = access(&app, "root", OWNER_PW).await;
    let t = Some(t.as_str());
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/admins",
        t,
        Some(json!({ "username": "root", "role": "viewer" })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("username_taken"))
    );
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/admins",
        t,
        Some(json!({ "username": "eve", "role": "god" })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/admins",
        t,
        Some(json!({ "username": "eve", "role": "viewer", "password": "eve-short" })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field"))
    );
    let (s, created) = call(
        &app,
        "POST",
        "/admin/api/v1/admins",
        t,
        Some(json!({ "username": "eve", "role": "viewer" })),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let pw = created["password"]
        .as_str()
        .expect("generated password shown once")
        .to_string();
    assert_eq!(created["admin"]["must_change_password"], true);
    assert!(created["admin"].get("password_hash").is_none());
    let (_, list) = call(&app, "GET", "/admin/api/v1/admins", t, None).await;
    assert!(!list.to_string().contains("argon2") && !list.to_string().contains(&pw));
    let eve = tokens(&app, "eve", &pw).await;
    // Role change ends eve's sessions.
    let (s, v) = call(
        &app,
        "PATCH",
        "/admin/api/v1/admins/eve",
        t,
        Some(json!({ "role": "admin" })),
    )
    .await;
    assert_eq!((s, v["admin"]["role"].as_str()), (200, Some("admin")));
    assert_eq!(
        call(
            &app,
            "GET",
            "/admin/api/v1/me",
            eve["access_token"].as_str(),
            None
        )
        .await
        .0,
        401
    );
    // The last owner can be neither disabled nor demoted.
    let (s, e) = call(
        &app,
        "PATCH",
        "/admin/api/v1/admins/root",
        t,
        Some(json!({ "disabled": true })),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("last_owner")));
    let (s, _) = call(
        &app,
        "PATCH",
        "/admin/api/v1/admins/root",
        t,
        Some(json!({ "role": "viewer" })),
    )
    .await;
    assert_eq!(s, 409);
    assert_eq!(
        call(
            &app,
            "PATCH",
            "/admin/api/v1/admins/ghost",
            t,
            Some(json!({ "disabled": true }))
        )
        .await
        .0,
        404
    );
    let (s, _) = call(&app, "POST", "/admin/api/v1/admins/eve/reset-totp", t, None).await;
    assert_eq!(s, 200);
    assert_eq!(login(&app, "eve", &pw, None).await.status(), 200);
    let rows: Vec<String> = epusdt::store::entities::audit_log::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.actor == "admin:root")
        .map(|r| r.action)
        .collect();
    for a in ["admin.add", "admin.role", "admin.totp_reset"] {
        assert!(rows.iter().any(|x| x == a), "{a} in {rows:?}");
    }
    let _: Value = Value::Null;
    app.stop().await;
}
on_all_backends!(owners_manage_admins);

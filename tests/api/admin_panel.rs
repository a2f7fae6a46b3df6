//! The admin web panel (issue 12): the shell and its CSP over HTTP, the refresh-token cookie and
//! its CSRF rule, and the whole panel in headless Chromium (tests/browser/admin.mjs): TOTP login,
//! dashboard, an order found by its order_id and its callback resent, a wallet added, a merchant
//! created with its secret shown once, a viewer without write buttons, and the lockout message.
use crate::{
    admin_auth::{OWNER_PW, VIEWER_PW, add_admin, call, login, totp_at},
    checkout_browser::{browser_tools, screenshot_dir},
    common,
};

use std::process::Command;

use common::Backend;
use epusdt::service::admin::{self, Role, totp};
use serde_json::json;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get("set-cookie")
        .expect("a Set-Cookie header")
        .to_str()
        .expect("ascii")
        .to_string()
}

/// `name=value` of a `Set-Cookie` line.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_and_assets_are_served_with_a_strict_csp() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    for path in ["/admin", "/admin/", "/admin/login", "/admin/orders"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert!(csp.contains("frame-ancestors 'none'"));
        let body = r.text().await.unwrap();
        assert!(body.contains(r#"<script src="/admin/assets/admin.js""#));
        assert!(!body.contains("<script>"), "no inline script");
        assert!(!body.contains(" onclick="), "no inline handler");
        assert!(!body.contains("http://") && !body.contains("https://"));
    }
    let r = app.client.get(app.url("/admin/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let js = app
        .client
        .get(app.url("/admin/assets/admin.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let js = js.text().await.unwrap();
    assert!(!js.contains("eval(") && !js.contains("innerHTML"));
    let css = app
        .client
        .get(app.url("/admin/assets/admin.css"))
        .send()
        .await
        .unwrap();
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_cookie_is_httponly_strict_and_needs_the_csrf_header() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let r = login(&app, "alice", OWNER_PW, None).await;
    assert_eq!(r.status(), 200);
    let sc = set_cookie(&r);
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin/api/v1/auth",
        "Max-Age=1209600",
    ] {
        assert!(sc.contains(part), "{sc} lacks {part}");
    }
    assert!(!sc.contains("Secure"), "http app_uri: no Secure flag");
    let body: serde_json::Value = r.json().await.unwrap();
    // The JSON reply is unchanged: the same refresh token is in the body and in the cookie.
    assert_eq!(
        cookie_pair(&sc),
        format!(
            "epusdt_admin_refresh={}",
            body["refresh_token"].as_str().unwrap()
        )
    );
    let cookie = cookie_pair(&sc);
    let refresh = |cookie: String, marked: bool| {
        let mut req = app
            .client
            .post(app.url("/admin/api/v1/auth/refresh"))
            .header("cookie", cookie)
            .json(&json!({}));
        if marked {
            req = req.header("x-requested-with", "epusdt-admin");
        }
        req.send()
    };
    // CSRF: the cookie alone (what a cross-site request could carry) is refused.
    let r = refresh(cookie.clone(), false).await.unwrap();
    assert_eq!(r.status(), 403);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "csrf");
    // With the header it rotates, and the new token comes back in the cookie.
    let r = refresh(cookie.clone(), true).await.unwrap();
    assert_eq!(r.status(), 200);
    let next = cookie_pair(&set_cookie(&r));
    assert_ne!(next, cookie);
    let t: serde_json::Value = r.json().await.unwrap();
    let access = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/me", Some(&access), None)
            .await
            .0,
        200
    );
    // The rotated cookie is a replay: refused, and the whole login is revoked.
    assert_eq!(refresh(cookie, true).await.unwrap().status(), 401);
    assert_eq!(refresh(next, true).await.unwrap().status(), 401);
    // No body token and no cookie: the old "missing field" answer.
    let r = app
        .client
        .post(app.url("/admin/api/v1/auth/refresh"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Logout clears the cookie.
    let t: serde_json::Value = login(&app, "alice", OWNER_PW, None)
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url("/admin/api/v1/auth/logout"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let sc = set_cookie(&r);
    assert!(
        sc.starts_with("epusdt_admin_refresh=;") && sc.contains("Max-Age=0"),
        "{sc}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookie_when_app_uri_is_https() {
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.app_uri = "https://pay.example.com".into();
    })
    .await
    else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let r = login(&app, "alice", OWNER_PW, None).await;
    assert!(set_cookie(&r).contains("; Secure"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_in_headless_chromium() {
    let Some(dir) = browser_tools() else { return };
    // A rotated secret stays valid an hour: the panel tells until when.
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| c.secret_overlap_secs = 3600).await
    else {
        return;
    };
    // Accounts as an operator creates them: an owner with TOTP, a viewer, a victim to lock out.
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    add_admin(&app, "vera", Role::Viewer, VIEWER_PW).await;
    add_admin(&app, "victor", Role::Admin, OWNER_PW).await;
    // An initial (generated-style) password that must be changed at first sign-in.
    admin::add(
        &app.state.db,
        "nadia",
        &epusdt::config::Secret::new(VIEWER_PW),
        Role::Admin,
        true,
    )
    .await
    .unwrap();
    let alice = admin::find_by_username(&app.state.db, "alice")
        .await
        .unwrap()
        .unwrap();
    let enrol = totp::begin(&app.state.db, &app.state.keys, alice.id)
        .await
        .unwrap();
    let secret = enrol.secret.expose().to_string();
    totp::confirm(
        &app.state.db,
        &app.state.keys,
        alice.id,
        &totp_at(&secret, now()),
    )
    .await
    .unwrap();

    // A paid order with a merchant that answers its callbacks.
    let (merchant, murl) = common::Merchant::start(0, "ok").await;
    let reply = app
        .create_v1(&[
            ("order_id", "PANEL-ORDER-42"),
            ("amount", "100.00"),
            ("notify_url", &format!("{murl}/notify")),
            ("redirect_url", &format!("{murl}/thanks")),
        ])
        .await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    let data = reply["data"].clone();
    let other = app
        .create_v1(&[
            ("order_id", "PANEL-OTHER-7"),
            ("amount", "20.00"),
            ("notify_url", &format!("{murl}/notify")),
        ])
        .await["data"]
        .clone();
    app.pay(&data, &data["actual_amount"].to_string()).await;
    // Paid short by 0.5: left for an operator to resolve in the panel.
    let due: rust_decimal::Decimal = other["actual_amount"]
        .to_string()
        .trim_matches('"')
        .parse()
        .unwrap();
    let short = (due - rust_decimal::Decimal::new(5, 1)).to_string();
    assert!(matches!(
        app.pay(&other, &short).await,
        epusdt::service::order::CreditOutcome::Partial { .. }
    ));
    let trade_id = data["trade_id"].as_str().unwrap().to_string();
    app.wait_delivered(&trade_id, 30).await;

    let shots = screenshot_dir().join("admin");
    std::fs::create_dir_all(&shots).unwrap();
    let base = app.url("/admin/");
    let out = tokio::task::spawn_blocking({
        let shots = shots.clone();
        move || {
            Command::new("node")
                .current_dir(&dir)
                .arg("admin.mjs")
                .arg(&base)
                .arg(&shots)
                .env("ADMIN_TOTP_SECRET", &secret)
                .env("ADMIN_PASSWORD", OWNER_PW)
                .env("VIEWER_PASSWORD", VIEWER_PW)
                .output()
                .expect("node runs")
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "browser check failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("admin panel screenshots: {}", shots.display());

    // What the browser did, checked on the server side.
    // The first delivery, the resent one and the resolved order's.
    merchant.wait_for(3, 30).await;
    let resolved = epusdt::service::order::find_by_trade_id(
        &app.state.db,
        other["trade_id"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        resolved.status,
        epusdt::domain::order::OrderStatus::Paid,
        "credited in the panel"
    );
    let viewer = crate::admin_auth::access(&app, "vera", VIEWER_PW).await;
    let (status, wallets) = call(&app, "GET", "/admin/api/v1/wallets", Some(&viewer), None).await;
    assert_eq!(status, 200);
    assert!(
        wallets["wallets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["label"] == "panel wallet"),
        "{wallets}"
    );
    let (status, merchants) =
        call(&app, "GET", "/admin/api/v1/merchants", Some(&viewer), None).await;
    assert_eq!(status, 200);
    assert!(
        merchants["merchants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "Panel Shop"
                && m["sign_mode"] == "md5"
                && m["ip_allowlist"] == json!(["10.0.0.0/8", "192.0.2.7/32"])
                && m["rate_limit_per_minute"] == 30
                && m["rotation_overlap_until"].is_i64()),
        "{merchants}"
    );
    // The Telegram link made on the admins page.
    let vera = admin::find_by_username(&app.state.db, "vera")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((vera.telegram_id, vera.tg_notify), (Some(424242), true));
    // The viewer's writes are refused by the API too, not only hidden.
    let (status, _) = call(
        &app,
        "POST",
        "/admin/api/v1/merchants",
        Some(&viewer),
        Some(json!({ "name": "nope" })),
    )
    .await;
    assert_eq!(status, 403);
    // nadia's new password from the forced-change screen is accepted (her TOTP, enrolled in the
    // panel, is asked for next); the initial one is not.
    let r = login(&app, "nadia", "my-own-choice-2026!", None).await;
    assert_eq!(r.status(), 401);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "totp_required");
    let r = login(&app, "nadia", VIEWER_PW, None).await;
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_credentials");
    // The lockout the browser saw is real: victor is locked even with the right password.
    assert_eq!(login(&app, "victor", OWNER_PW, None).await.status(), 429);
    app.stop().await;
}

/// With `admin_listen` the panel moves to the admin listener with the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_serves_the_panel_and_not_the_public_listener() {
    epusdt::net::install_crypto_provider();
    let Some((mut config, _dir)) = common::test_config(Backend::Sqlite).await else {
        return;
    };
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = epusdt::App::build(config).await.expect("app builds");
    let (public, admin) = (app.port(), app.admin_port().expect("admin port"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("app runs");
    });
    let client = reqwest::Client::new();
    for path in ["/admin/", "/admin/orders", "/admin/assets/admin.js"] {
        let on = |port: u16| format!("http://127.0.0.1:{port}{path}");
        assert_eq!(client.get(on(admin)).send().await.unwrap().status(), 200);
        assert_eq!(client.get(on(public)).send().await.unwrap().status(), 404);
    }
    let _ = tx.send(());
    tokio::time::timeout(std::time::Duration::from_secs(20), handle)
        .await
        .expect("stops")
        .expect("app task");
}

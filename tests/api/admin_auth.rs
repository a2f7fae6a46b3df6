//! Admin authentication over HTTP (issue 12): login, refresh rotation and replay, logout,
//! lockout, TOTP (codes computed here with an independent RFC 6238 implementation), the
//! `admin_require_totp` enrolment gate, the "no route without a token" walk and the CLI
//! bootstrap. Accounts are created through the service (as an operator's CLI would) or the
//! real binary; everything else goes over HTTP.
use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use epusdt::{config::Secret, service::admin::Role};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

pub const OWNER_PW: &str = "owner-password-2026!";
pub const VIEWER_PW: &str = "viewer-password-2026!";

/// Creates an account directly (like `epusdt admin add --password-stdin`).
pub async fn add_admin(app: &TestApp, name: &str, role: Role, password: &str) {
    epusdt::service::admin::add(&app.state.db, name, &Secret::new(password), role, false)
        .await
        .expect("admin add");
}

pub async fn login(
    app: &TestApp,
    name: &str,
    password: &str,
    totp: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({ "username": name, "password": password });
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    app.client
        .post(app.url("/admin/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .expect("login request")
}

/// Logs in and returns the reply JSON (asserting 200).
pub async fn tokens(app: &TestApp, name: &str, password: &str) -> Value {
    let r = login(app, name, password, None).await;
    assert_eq!(r.status(), 200, "login as {name}");
    r.json().await.expect("json")
}

pub async fn access(app: &TestApp, name: &str, password: &str) -> String {
    tokens(app, name, password).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// `method path` with an optional bearer token and JSON body; returns (status, JSON or Null).
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = app.client.request(m, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// RFC 4648 base32 (no padding needed) → bytes.
fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buf, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c.to_ascii_uppercase())
            .expect("base32 digit") as u64;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// RFC 6238 TOTP: HMAC-SHA1 over the 30 s step counter, dynamic truncation, 6 digits.
pub fn totp_at(secret_b32: &str, unix: u64) -> String {
    let key = base32_decode(secret_b32);
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).expect("key");
    mac.update(&(unix / 30).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    format!("{:06}", bin % 1_000_000)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn jwt_part(token: &str, i: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(i).expect("jwt part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

#[test]
fn the_test_totp_matches_rfc_6238_vectors() {
    // RFC 6238 appendix B, SHA-1 seed "12345678901234567890" (8 digits there; the last 6 here).
    let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(totp_at(seed, 59), "287082");
    assert_eq!(totp_at(seed, 1111111109), "081804");
    assert_eq!(totp_at(seed, 2000000000), "279037");
}

async fn login_refresh_logout(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let t = tokens(&app, "alice", OWNER_PW).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let at = t["access_token"].as_str().unwrap().to_string();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(jwt_part(&at, 0)["alg"], "HS256");
    let claims = jwt_part(&at, 1);
    assert_eq!(claims["role"], "owner");
    assert!(
        claims["sub"].is_string() && claims["jti"].is_string(),
        "{claims}"
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );

    let (s, me) = call(&app, "GET", "/admin/api/v1/me", Some(&at), None).await;
    assert_eq!(
        (s, me["username"].as_str(), me["role"].as_str()),
        (200, Some("alice"), Some("owner"))
    );

    // Refresh rotates: a new pair; the old refresh token is spent.
    let (s, t2) = call(
        &app,
        "POST",
        "/admin/api/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": rt })),
    )
    .await;
    assert_eq!(s, 200, "{t2}");
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    let at2 = t2["access_token"].as_str().unwrap().to_string();
    assert_ne!(rt2, rt);
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/me", Some(&at2), None)
            .await
            .0,
        200
    );
    // Replaying the rotated token revokes the whole family: the successor and its access
    // token stop working too.
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": rt })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let (s, _) = call(
        &app,
        "POST",
        "/admin/api/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": rt2 })),
    )
    .await;
    assert_eq!(s, 401, "the family is revoked");
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/me", Some(&at2), None)
            .await
            .0,
        401
    );

    // Logout ends that login at once; another login is unaffected.
    let a = tokens(&app, "alice", OWNER_PW).await;
    let b = tokens(&app, "alice", OWNER_PW).await;
    let (a_at, a_rt) = (
        a["access_token"].as_str().unwrap(),
        a["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(
        call(&app, "POST", "/admin/api/v1/auth/logout", Some(a_at), None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/me", Some(a_at), None)
            .await
            .0,
        401
    );
    let (s, _) = call(
        &app,
        "POST",
        "/admin/api/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": a_rt })),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        call(
            &app,
            "GET",
            "/admin/api/v1/me",
            Some(b["access_token"].as_str().unwrap()),
            None
        )
        .await
        .0,
        200
    );

    // Refresh tokens are stored hashed: the database never holds one.
    let rows = epusdt::store::entities::admin_refresh_token::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.token_hash != a_rt && r.token_hash.len() == 64)
    );
    // The audit trail has the logins, the replay and the logout.
    let actions: Vec<String> = epusdt::store::entities::audit_log::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    for a in ["admin.login", "admin.refresh_replayed", "admin.logout"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    app.stop().await;
}
on_all_backends!(login_refresh_logout);

use sea_orm::EntityTrait;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_get_the_same_reply_in_the_same_time() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let mut times = [Duration::ZERO; 2];
    let mut bodies = Vec::new();
    for round in 0..3 {
        for (i, user) in ["alice", "mallory"].iter().enumerate() {
            let start = Instant::now();
            let r = login(&app, user, &format!("not-the-password-{round}"), None).await;
            times[i] += start.elapsed();
            assert_eq!(r.status(), 401);
            bodies.push(r.text().await.unwrap());
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let v: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(v["error"]["code"], "invalid_credentials");
    // Both paths run one argon2 verification: the unknown user is not answered faster.
    let (known, unknown) = (times[0].as_secs_f64(), times[1].as_secs_f64());
    assert!(
        unknown > known * 0.5,
        "unknown {unknown:.3}s vs known {known:.3}s"
    );
    app.stop().await;
}

async fn lockout_after_five_failures(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    add_admin(&app, "bob", Role::Viewer, VIEWER_PW).await;
    for _ in 0..5 {
        assert_eq!(
            login(&app, "alice", "wrong-password-123", None)
                .await
                .status(),
            401
        );
    }
    // Locked: even the right password gets 429 with Retry-After, for the whole window.
    let r = login(&app, "alice", OWNER_PW, None).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((840..=900).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "locked");
    // Another account is not affected.
    assert_eq!(login(&app, "bob", VIEWER_PW, None).await.status(), 200);
    // The lock is audited.
    let locked = epusdt::store::entities::audit_log::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == "admin.locked" && r.target == "admin:alice")
        .count();
    assert_eq!(locked, 1);
    // When the window has passed (moved into the past here), the right password works again.
    use epusdt::store::entities::admin_login_failure as f;
    use sea_orm::{
        ColumnTrait, QueryFilter,
        sea_query::{Expr, ExprTrait},
    };
    f::Entity::update_many()
        .col_expr(f::Column::At, Expr::col(f::Column::At).sub(901))
        .filter(f::Column::Username.eq("alice"))
        .exec(&app.state.db)
        .await
        .unwrap();
    assert_eq!(login(&app, "alice", OWNER_PW, None).await.status(), 200);
    app.stop().await;
}
on_all_backends!(lockout_after_five_failures);

async fn totp_enrolment_and_login(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let at = access(&app, "alice", OWNER_PW).await;
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/me/totp/confirm",
        Some(&at),
        Some(json!({ "code": "123456" })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("totp_not_started"))
    );
    let (s, setup) = call(&app, "POST", "/admin/api/v1/me/totp", Some(&at), None).await;
    assert_eq!(s, 200, "{setup}");
    let secret = setup["secret"].as_str().unwrap().to_string();
    let url = setup["otpauth_url"].as_str().unwrap();
    assert!(
        url.starts_with("otpauth://totp/")
            && url.contains(&format!("secret={secret}"))
            && url.contains("issuer=epusdt"),
        "{url}"
    );
    // The secret is sealed at rest.
    let row = epusdt::service::admin::find_by_username(&app.state.db, "alice")
        .await
        .unwrap()
        .unwrap();
    assert!(!row.totp_secret.unwrap().contains(&secret));

    let wrong = if totp_at(&secret, now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/me/totp/confirm",
        Some(&at),
        Some(json!({ "code": wrong })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("totp_invalid"))
    );
    let (s, _) = call(
        &app,
        "POST",
        "/admin/api/v1/me/totp/confirm",
        Some(&at),
        Some(json!({ "code": totp_at(&secret, now()) })),
    )
    .await;
    assert_eq!(s, 200);

    // Now the password alone is not enough.
    let r = login(&app, "alice", OWNER_PW, None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "totp_required"
    );
    let r = login(&app, "alice", OWNER_PW, Some(wrong)).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "totp_invalid"
    );
    // The code of the next step (within the ±1 step skew) logs in — once.
    let next = totp_at(&secret, now() + 30);
    assert_eq!(
        login(&app, "alice", OWNER_PW, Some(&next)).await.status(),
        200
    );
    let r = login(&app, "alice", OWNER_PW, Some(&next)).await;
    assert_eq!(r.status(), 401, "a TOTP code is accepted once");
    // An owner (here the CLI's service call) resets a lost device: password alone again.
    epusdt::service::admin::reset_totp(&app.state.db, "alice")
        .await
        .unwrap();
    assert_eq!(login(&app, "alice", OWNER_PW, None).await.status(), 200);
    app.stop().await;
}
on_all_backends!(totp_enrolment_and_login);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_require_totp_allows_only_enrolment_until_set_up() {
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| c.admin_require_totp = true).await
    else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let t = tokens(&app, "alice", OWNER_PW).await;
    assert_eq!(t["totp_setup_required"], true);
    let at = t["access_token"].as_str().unwrap();
    let (s, e) = call(&app, "GET", "/admin/api/v1/wallets", Some(at), None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("totp_setup_required"))
    );
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/me", Some(at), None)
            .await
            .0,
        200
    );
    let (_, setup) = call(&app, "POST", "/admin/api/v1/me/totp", Some(at), None).await;
    let secret = setup["secret"].as_str().unwrap();
    let (s, _) = call(
        &app,
        "POST",
        "/admin/api/v1/me/totp/confirm",
        Some(at),
        Some(json!({ "code": totp_at(secret, now()) })),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/wallets", Some(at), None)
            .await
            .0,
        200
    );
    app.stop().await;
}

/// Every route under /admin/api/v1 except login and refresh answers 401 without a valid token:
/// none, garbage, and a token signed with another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_route_answers_without_a_valid_token() {
    use epusdt::http::admin::{Access, routes};
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let real = access(&app, "alice", OWNER_PW).await;
    // Same header and claims, signed (HMAC-SHA256, RFC 7515) with a key that is not the server's.
    let forged = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut parts = real.split('.');
        let signing_input = format!("{}.{}", parts.next().unwrap(), parts.next().unwrap());
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"not the server key").unwrap();
        mac.update(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            b64.encode(mac.finalize().into_bytes())
        )
    };
    let all = routes();
    assert!(all.len() >= 15, "{all:?}");
    let mut checked = 0;
    for r in all.iter().filter(|r| r.access != Access::Public) {
        let path = r
            .path
            .replace("{id}", "1")
            .replace("{pid}", "1001")
            .replace("{trade_id}", "T1")
            .replace("{username}", "alice");
        for token in [None, Some("garbage"), Some(forged.as_str())] {
            let (s, v) = call(&app, r.method.as_str(), &path, token, Some(json!({}))).await;
            assert_eq!(s, 401, "{} {path} with {token:?}: {v}", r.method);
            assert!(v["error"]["code"].is_string(), "{} {path}: {v}", r.method);
        }
        checked += 1;
    }
    assert!(checked >= 13);
    // Unknown paths under the prefix too.
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/nope", None, None).await.0,
        401
    );
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/nope", Some(&real), None)
            .await
            .0,
        404
    );
    // A method a known path does not serve: 401 first, then a JSON 405.
    assert_eq!(
        call(&app, "DELETE", "/admin/api/v1/wallets", None, None)
            .await
            .0,
        401
    );
    let (s, v) = call(&app, "DELETE", "/admin/api/v1/wallets", Some(&real), None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // The two public routes answer without a token (with their own errors).
    let (s, v) = call(
        &app,
        "POST",
        "/admin/api/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": "x" })),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let (s, v) = call(
        &app,
        "POST",
        "/admin/api/v1/auth/login",
        None,
        Some(json!({ "username": 1 })),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("invalid_body"))
    );
    app.stop().await;
}

async fn disable_and_password_change_end_sessions(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    add_admin(&app, "bob", Role::Admin, VIEWER_PW).await;
    let bob = tokens(&app, "bob", VIEWER_PW).await;
    let bob_at = bob["access_token"].as_str().unwrap();
    let owner = access(&app, "alice", OWNER_PW).await;
    let (s, v) = call(
        &app,
        "PATCH",
        "/admin/api/v1/admins/bob",
        Some(&owner),
        Some(json!({ "disabled": true })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/me", Some(bob_at), None)
            .await
            .0,
        401
    );
    let (s, _) = call(
        &app,
        "POST",
        "/admin/api/v1/auth/refresh",
        None,
        Some(json!({ "refresh_token": bob["refresh_token"] })),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        login(&app, "bob", VIEWER_PW, None).await.status(),
        401,
        "disabled = wrong credentials"
    );

    // Password change: policy checked, every older session ends, the reply is a new session.
    let other = access(&app, "alice", OWNER_PW).await;
    let (s, e) = call(
        &app,
        "POST",
        "/admin/api/v1/me/password",
        Some(&owner),
        Some(json!({ "current_password": OWNER_PW, "new_password": "alice-is-me-2026" })),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("invalid_field")),
        "contains the username"
    );
    let (s, e) = call(&app, "POST", "/admin/api/v1/me/password", Some(&owner), Some(json!({ "current_password": "nope-nope-nope", "new_password": "a brand new passphrase" }))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("wrong_password"))
    );
    let (s, t) = call(
        &app,
        "POST",
        "/admin/api/v1/me/password",
        Some(&owner),
        Some(json!({ "current_password": OWNER_PW, "new_password": "a brand new passphrase" })),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/me", Some(&owner), None)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&app, "GET", "/admin/api/v1/me", Some(&other), None)
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            &app,
            "GET",
            "/admin/api/v1/me",
            t["access_token"].as_str(),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        login(&app, "alice", "a brand new passphrase", None)
            .await
            .status(),
        200
    );
    app.stop().await;
}
on_all_backends!(disable_and_password_change_end_sessions);

/// `epusdt admin add` without --password-stdin prints a generated password once; that password
/// logs in over HTTP and must be replaced before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bootstrap_prints_a_password_that_must_be_changed() {
    epusdt::net::install_crypto_provider();
    let Some((config, dir)) = common::test_config(Backend::Sqlite).await else {
        return;
    };
    let run = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut cmd = common::epusdt(dir.path());
        cmd.env("EPUSDT_DATA_DIR", dir.path())
            .env("EPUSDT_DATABASE_URL", config.database_url.clone().unwrap())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("output")
    };
    let out = run(
        &["admin", "add", "--username", "root", "--role", "owner"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let password = text
        .lines()
        .find_map(|l| l.strip_prefix("password (shown once; change it after the first login): "))
        .expect("printed password")
        .trim()
        .to_string();
    assert!(password.len() >= 12);
    let out = run(
        &[
            "admin",
            "add",
            "--username",
            "ops",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12"));
    let out = run(&["admin", "list"], None);
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        list.contains("root") && list.contains("owner") && !list.contains(&password),
        "{list}"
    );

    let app = common::spawn_with(config, dir.clone()).await;
    let t = tokens(&app, "root", &password).await;
    assert_eq!(t["must_change_password"], true);
    let at = t["access_token"].as_str().unwrap();
    let (s, e) = call(&app, "GET", "/admin/api/v1/wallets", Some(at), None).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (403, Some("password_change_required"))
    );
    let (s, t) = call(
        &app,
        "POST",
        "/admin/api/v1/me/password",
        Some(at),
        Some(json!({ "current_password": password, "new_password": "my own long passphrase" })),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        call(
            &app,
            "GET",
            "/admin/api/v1/wallets",
            t["access_token"].as_str(),
            None
        )
        .await
        .0,
        200
    );
    let audit = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        audit.contains("\"admin.add\"") && audit.contains("\"actor\":\"cli\""),
        "{audit}"
    );
    assert!(!audit.contains(&password));
    app.stop().await;
}

/// `keys rotate` re-seals the admin values too: after a rotation, with only the new key left,
/// TOTP secrets and the token signing key still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_secrets_follow_a_master_key_rotation() {
    use epusdt::crypto::{keys::KeyStore, master_key::MasterKey};
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let at = access(&app, "alice", OWNER_PW).await;
    let (_, setup) = call(&app, "POST", "/admin/api/v1/me/totp", Some(&at), None).await;
    let secret = setup["secret"].as_str().unwrap().to_string();
    let (s, _) = call(
        &app,
        "POST",
        "/admin/api/v1/me/totp/confirm",
        Some(&at),
        Some(json!({ "code": totp_at(&secret, now()) })),
    )
    .await;
    assert_eq!(s, 200);
    let db = app.state.db.clone();
    let new = MasterKey::generate();
    let rotated = KeyStore::from_keyring(app.state.keys.rotated(new.clone()));
    let n = epusdt::service::admin::reseal_all(&db, &rotated)
        .await
        .unwrap();
    assert_eq!(n, 2, "the TOTP secret and the signing key");
    let only_new = KeyStore::from_key(new);
    epusdt::service::admin::tokens::load_or_create_keys(&db, &only_new)
        .await
        .expect("signing key opens under the new key");
    let row = epusdt::service::admin::find_by_username(&db, "alice")
        .await
        .unwrap()
        .unwrap();
    let ok = epusdt::service::admin::totp::check_and_consume(
        &db,
        &only_new,
        &row,
        &totp_at(&secret, now() + 30),
    )
    .await
    .expect("TOTP secret opens under the new key");
    assert!(ok);
    app.stop().await;
}

/// Twenty wrong passwords sent at once: at most five are checked (401), the rest are refused
/// unchecked (429).
async fn parallel_guesses_do_not_outrun_the_lockout(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    add_admin(&app, "alice", Role::Owner, OWNER_PW).await;
    let guesses = (0..20).map(|i| {
        let app = &app;
        async move {
            login(app, "alice", &format!("guess-number-{i:04}"), None)
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    // Refused attempts are not failures: the account is locked exactly when five were checked.
    let expect = if checked == 5 { 429 } else { 200 };
    assert_eq!(
        login(&app, "alice", OWNER_PW, None).await.status(),
        expect,
        "{statuses:?}"
    );
    app.stop().await;
}
on_all_backends!(parallel_guesses_do_not_outrun_the_lockout);

/// The per-IP limits of every route apply to the admin API, and their 429 has the admin error
/// shape, not the merchant envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_admin_requests_get_the_admin_error_shape() {
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.rate_limit.rate_limit_route_per_minute = 3
    })
    .await
    else {
        return;
    };
    let mut last = None;
    for _ in 0..5 {
        let r = app
            .client
            .post(app.url("/admin/api/v1/auth/refresh"))
            .json(&json!({ "refresh_token": "x" }))
            .send()
            .await
            .unwrap();
        last = Some(r);
    }
    let r = last.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(v.get("status_code").is_none(), "{v}");
    app.stop().await;
}

/// `admin_listen`: the admin API moves to its own listener and is gone from the public one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_moves_the_admin_api_off_the_public_listener() {
    epusdt::net::install_crypto_provider();
    let Some((mut config, _dir)) = common::test_config(Backend::Sqlite).await else {
        return;
    };
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = epusdt::App::build(config).await.expect("app builds");
    let (public, admin) = (app.port(), app.admin_port().expect("admin port"));
    assert_ne!(public, admin);
    let state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("app runs");
    });
    epusdt::service::admin::add(
        &state.db,
        "alice",
        &Secret::new(OWNER_PW),
        Role::Owner,
        false,
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let body = json!({ "username": "alice", "password": OWNER_PW });
    let on = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    let r = client
        .post(on(public, "/admin/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "not on the public listener");
    let r = client
        .post(on(admin, "/admin/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(on(admin, "/health")).send().await.unwrap();
    assert_eq!(r.status(), 404, "only the admin API on the admin listener");
    let r = client.get(on(public, "/health")).send().await.unwrap();
    assert!(r.status().is_success() || r.status() == 503);
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("stops")
        .unwrap();
}

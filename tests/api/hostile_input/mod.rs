//! Hostile input, round two (issue 9, items 5 and 6): pid enumeration, file modes, amount
//! spellings, the SQLite WAL after a burst, `429` on kept-alive connections, forged requests
//! against a merchant's quota, and config typos — over HTTP or through the real binary.
use crate::common;

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use common::Backend;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait, TransactionTrait};
use serde_json::{Value, json};

const GMPAY: &str = "/payments/gmpay/v1/order/create-transaction";
const EPAY: &str = "/payments/epay/v1/order/create-transaction/submit.php";
const CANCEL: &str = "/api/v1/order/cancel-transaction";
const V1: &str = "/api/v1/order/create-transaction";

async fn post_form(app: &common::TestApp, path: &str, form: &[(&str, String)]) -> Value {
    let resp = app
        .client
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .expect("request");
    resp.json().await.expect("json reply")
}

/// The reply without its per-request id, for comparing two answers.
fn without_id(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove("request_id");
    }
    v
}

// ---------------------------------------------------------------------------------------------
// 5a. An unknown or disabled pid is answered like a bad signature.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_disabled_pid_is_answered_like_a_bad_signature() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let known =
        epusdt::service::merchant::add(&app.state.db, &app.state.keys, "shop", None, None, false)
            .await
            .expect("merchant");
    let disabled =
        epusdt::service::merchant::add(&app.state.db, &app.state.keys, "gone", None, None, false)
            .await
            .expect("merchant");
    let row = epusdt::store::entities::merchant::Entity::find_by_id(disabled.id)
        .one(&app.state.db)
        .await
        .expect("query")
        .expect("row");
    let mut row: epusdt::store::entities::merchant::ActiveModel = row.into();
    row.enabled = Set(false);
    row.update(&app.state.db).await.expect("disable");
    let unknown = 987_654_i64;

    let gmpay = |pid: i64, sig: &str| {
        vec![
            ("pid", pid.to_string()),
            ("order_id", "ENUM-1".to_string()),
            ("amount", "10".to_string()),
            ("currency", "USD".to_string()),
            ("notify_url", "http://127.0.0.1:9/n".to_string()),
            ("signature", sig.to_string()),
        ]
    };
    let epay = |pid: i64, sign_type: &str| {
        let mut f = vec![
            ("pid", pid.to_string()),
            ("out_trade_no", "ENUM-2".to_string()),
            ("money", "10".to_string()),
            ("name", "x".to_string()),
            ("type", "usdt.trc20".to_string()),
            ("notify_url", "http://127.0.0.1:9/n".to_string()),
            ("sign", "0".repeat(32)),
        ];
        if !sign_type.is_empty() {
            f.push(("sign_type", sign_type.to_string()));
        }
        f
    };
    let cancel = |pid: i64| {
        vec![
            ("pid", pid.to_string()),
            ("trade_id", "T0000000000000000".to_string()),
            ("signature", "0".repeat(64)),
        ]
    };
    let bad_sig = "0".repeat(64);
    for (what, path, known_form, other_forms) in [
        (
            "gmpay, bad signature",
            GMPAY,
            gmpay(known.pid, &bad_sig),
            vec![gmpay(disabled.pid, &bad_sig), gmpay(unknown, &bad_sig)],
        ),
        (
            "gmpay, no signature",
            GMPAY,
            gmpay(known.pid, "")[..5].to_vec(),
            vec![
                gmpay(disabled.pid, "")[..5].to_vec(),
                gmpay(unknown, "")[..5].to_vec(),
            ],
        ),
        (
            "epay",
            EPAY,
            epay(known.pid, ""),
            vec![epay(disabled.pid, ""), epay(unknown, "")],
        ),
        (
            "epay, bad sign_type",
            EPAY,
            epay(known.pid, "SHA1"),
            vec![epay(disabled.pid, "SHA1"), epay(unknown, "SHA1")],
        ),
        (
            "cancel",
            CANCEL,
            cancel(known.pid),
            vec![cancel(disabled.pid), cancel(unknown)],
        ),
    ] {
        let reference = without_id(post_form(&app, path, &known_form).await);
        assert_ne!(reference["status_code"], 200, "{what}: {reference}");
        for form in other_forms {
            let got = without_id(post_form(&app, path, &form).await);
            assert_eq!(
                got, reference,
                "{what}: pid {} must be answered exactly like a known pid with a bad signature",
                form[0].1
            );
            let text = got.to_string();
            assert!(
                !text.contains(&form[0].1) && !text.contains("unknown"),
                "{what}: {text}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5b. The data directory and every file the gateway creates are private.

fn modes_under(dir: &Path, out: &mut Vec<(String, u32, bool)>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let meta = e.metadata().expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        out.push((e.path().display().to_string(), mode, meta.is_dir()));
        if meta.is_dir() {
            modes_under(&e.path(), out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_and_its_files_are_private_to_the_gateway_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A data dir made earlier, open to everyone: tightened at start.
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = common::epusdt(dir.path())
        .args(["migrate"])
        .output()
        .expect("run migrate");
    assert!(out.status.success(), "{out:?}");
    let port = common::free_port();
    let mut child = common::epusdt(dir.path())
        .env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("EPUSDT_API_AUTH_TOKEN", common::TOKEN)
        .args(["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    common::wait_listening(port).await;
    // One write through HTTP: an audit line, a queue entry, log lines.
    let _ = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{V1}"))
        .json(&json!({"order_id": "M-1", "amount": 1, "notify_url": "http://127.0.0.1:9/", "signature": "x"}))
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().expect("kill");
    let _ = child.wait();
    let mut seen = Vec::new();
    modes_under(&data, &mut seen);
    let names: Vec<&str> = seen.iter().map(|(p, ..)| p.as_str()).collect();
    assert!(names.iter().any(|p| p.ends_with("epusdt.db")), "{names:?}");
    assert!(
        names.iter().any(|p| p.contains("logs/epusdt")),
        "a log file was written: {names:?}"
    );
    let dir_mode = std::fs::metadata(&data).expect("meta").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "data dir");
    let open: Vec<_> = seen
        .iter()
        .filter(|(_, mode, _)| mode & 0o077 != 0)
        .map(|(p, mode, _)| format!("{p} {mode:o}"))
        .collect();
    assert!(open.is_empty(), "readable by others: {open:?}");
}

// ---------------------------------------------------------------------------------------------
// 5c. Amounts are plain decimal text in every protocol and config key.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amounts_with_underscores_or_other_spellings_are_refused_naming_the_field() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let m = epusdt::service::merchant::add(
        &app.state.db,
        &app.state.keys,
        "shop",
        Some(3001),
        None,
        false,
    )
    .await
    .expect("merchant");
    let secret = m.secret.expose().to_string();
    for (i, amount) in ["1_000", "1__0.5_0", "_5", "5_", "+5", "1.", ".5"]
        .into_iter()
        .enumerate()
    {
        // v1 and GMPay sign text as sent (upstream's rule), so the request is signed right
        // and only the amount's spelling is wrong.
        let signed_as = amount.to_string();
        // v1: the amount as a JSON string.
        let mut p: BTreeMap<&str, String> = BTreeMap::new();
        p.insert("order_id", format!("U-{i}"));
        p.insert("amount", signed_as.clone());
        p.insert("notify_url", "http://127.0.0.1:9/n".into());
        let mut body = json!({
            "order_id": format!("U-{i}"),
            "amount": amount,
            "notify_url": "http://127.0.0.1:9/n",
        });
        body["signature"] = json!(common::v1_sign(&p, common::TOKEN));
        let r = common::post_json(&app.client, &app.url(V1), &body).await;
        assert_eq!(r["status_code"], 10009, "v1 {amount}: {r}");
        assert!(
            r["message"].as_str().unwrap_or("").starts_with("amount "),
            "v1 {amount}: {r}"
        );
        // GMPay, signed.
        let mut p: BTreeMap<&str, String> = BTreeMap::new();
        p.insert("pid", m.pid.to_string());
        p.insert("order_id", format!("G-{i}"));
        p.insert("currency", "USD".into());
        p.insert("amount", signed_as.clone());
        p.insert("notify_url", "http://127.0.0.1:9/n".into());
        let sig = common::gmpay_sign(&p, &secret);
        let mut form: Vec<(&str, String)> = p.iter().map(|(k, v)| (*k, v.clone())).collect();
        form[0] = ("amount", amount.to_string());
        form.push(("signature", sig));
        let r = post_form(&app, GMPAY, &form).await;
        assert_eq!(r["status_code"], 10009, "gmpay {amount}: {r}");
        assert!(
            r["message"].as_str().unwrap_or("").starts_with("amount "),
            "gmpay {amount}: {r}"
        );
        // EPay, signed.
        let mut p: BTreeMap<&str, String> = BTreeMap::new();
        p.insert("pid", m.pid.to_string());
        p.insert("type", "usdt.trc20".into());
        p.insert("out_trade_no", format!("E-{i}"));
        p.insert("notify_url", "http://127.0.0.1:9/n".into());
        p.insert("name", "VIP".into());
        p.insert("money", amount.into());
        let sign = common::epay_sign(&p, &secret);
        let mut form: Vec<(&str, String)> = p.iter().map(|(k, v)| (*k, v.clone())).collect();
        form.push(("sign", sign));
        let r = post_form(&app, EPAY, &form).await;
        assert_eq!(r["status_code"], 10009, "epay {amount}: {r}");
        assert!(
            r["message"].as_str().unwrap_or("").starts_with("money "),
            "epay {amount}: {r}"
        );
    }
    // Plain text still works.
    let r = common::create_v1(
        &app,
        &[
            ("order_id", "U-ok"),
            ("amount", "\"1000\""),
            ("notify_url", "http://127.0.0.1:9/n"),
        ],
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
}

#[test]
fn config_amounts_with_underscores_stop_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, value) in [
        ("EPUSDT_AMOUNT_STEP", "0_01"),
        ("EPUSDT_FORCED_USDT_RATE", "7_2"),
        ("EPUSDT_USDT_RATES", "USD:1_0"),
    ] {
        let out = common::epusdt(dir.path())
            .env(key, value)
            .args(["config", "check"])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}={value}: {err}");
        let name = key.trim_start_matches("EPUSDT_").to_ascii_lowercase();
        assert!(err.contains(&name), "{key}={value}: {err}");
    }
    let out = common::epusdt(dir.path())
        .env("EPUSDT_AMOUNT_STEP", "0.05")
        .env("EPUSDT_FORCED_USDT_RATE", "7.2")
        .env("EPUSDT_USDT_RATES", "USD:1,EUR:0.92")
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("\"0.05\"") && shown.contains("\"7.2\""),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5d. The SQLite WAL shrinks back after a burst.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_shrinks_to_the_limit_after_a_burst() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_path = dir.path().join("wal.db");
    let url = format!("sqlite://{}?mode=rwc", db_path.display());
    let db = epusdt::store::connect(&url).await.expect("connect");
    db.execute_unprepared("CREATE TABLE burst (id INTEGER PRIMARY KEY, b BLOB)")
        .await
        .expect("create");
    // A reader holds its snapshot through the burst, so no checkpoint can reset the log and
    // the WAL grows past the limit (as under load with the checkout page polling).
    let reader = db.begin().await.expect("begin");
    reader
        .execute_unprepared("SELECT count(*) FROM burst")
        .await
        .expect("read");
    // epusdt::store::SQLITE_JOURNAL_SIZE_LIMIT (spelled out so this test also runs before it).
    let limit: u64 = 16 * 1024 * 1024;
    let per_row = 256 * 1024;
    let rows = limit / per_row + 16;
    for _ in 0..rows {
        db.execute_unprepared(&format!(
            "INSERT INTO burst (b) VALUES (zeroblob({per_row}))"
        ))
        .await
        .expect("insert");
    }
    let wal = dir.path().join("wal.db-wal");
    let peak = std::fs::metadata(&wal).expect("wal").len();
    assert!(
        peak > limit,
        "the burst grew the WAL past the limit: {peak}"
    );
    reader.rollback().await.expect("rollback");
    db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)")
        .await
        .expect("checkpoint");
    db.execute_unprepared("DELETE FROM burst")
        .await
        .expect("delete");
    let after = std::fs::metadata(&wal).expect("wal").len();
    assert!(
        after <= limit,
        "WAL is {after} bytes after the burst and a checkpoint (limit {limit}, peak {peak})"
    );
}

// ---------------------------------------------------------------------------------------------
// 5e. A 429 on a kept-alive connection is a complete answer, never a reset.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_posts_through_a_429_burst_see_no_transport_error() {
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.rate_limit.rate_limit_per_minute = 5;
    })
    .await
    else {
        return;
    };
    // One connection, reused for every request.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .http1_only()
        .build()
        .expect("client");
    let body = format!(
        "{{\"order_id\":\"K\",\"amount\":1,\"notify_url\":\"http://127.0.0.1:9/\",\"name\":\"{}\",\"signature\":\"x\"}}",
        "n".repeat(48 * 1024)
    );
    let (mut limited, mut errors) = (0, Vec::new());
    for i in 0..500 {
        match client
            .post(app.url(V1))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status();
                match r.bytes().await {
                    Ok(b) => {
                        if status == 429 {
                            limited += 1;
                            let v: Value = serde_json::from_slice(&b).expect("429 body is JSON");
                            assert_eq!(v["status_code"], 429, "{v}");
                        }
                    }
                    Err(e) => errors.push(format!("#{i} body: {e:?}")),
                }
            }
            Err(e) => errors.push(format!("#{i}: {e:?}")),
        }
    }
    assert!(
        errors.is_empty(),
        "{} transport errors: {errors:#?}",
        errors.len()
    );
    assert!(limited >= 490, "the burst was limited: {limited}");
}

// ---------------------------------------------------------------------------------------------
// 6. Forged requests do not use up a merchant's quota.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_do_not_use_up_a_merchants_quota() {
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.rate_limit.rate_limit_merchant_per_minute = 3;
    })
    .await
    else {
        return;
    };
    let m =
        epusdt::service::merchant::add(&app.state.db, &app.state.keys, "shop", None, None, false)
            .await
            .expect("merchant");
    let secret = m.secret.expose().to_string();
    let signed = |order_id: &str, key: &str| {
        let mut p: BTreeMap<&str, String> = BTreeMap::new();
        p.insert("pid", m.pid.to_string());
        p.insert("order_id", order_id.to_string());
        p.insert("currency", "USD".into());
        p.insert("amount", "10".into());
        p.insert("notify_url", "http://127.0.0.1:9/n".into());
        let sig = common::gmpay_sign(&p, key);
        let mut form: Vec<(&str, String)> = p.iter().map(|(k, v)| (*k, v.clone())).collect();
        form.push(("signature", sig));
        form
    };
    for i in 0..20 {
        let r = post_form(
            &app,
            GMPAY,
            &signed(&format!("F-{i}"), "not-the-secret-at-all"),
        )
        .await;
        assert_eq!(r["status_code"], 401, "{r}");
    }
    let r = post_form(&app, GMPAY, &signed("REAL-1", &secret)).await;
    assert_eq!(
        r["status_code"], 200,
        "a signed request after 20 forged ones: {r}"
    );
    // The limit itself still binds signed requests.
    for i in 2..=3 {
        let r = post_form(&app, GMPAY, &signed(&format!("REAL-{i}"), &secret)).await;
        assert_eq!(r["status_code"], 200, "{r}");
    }
    let r = post_form(&app, GMPAY, &signed("REAL-4", &secret)).await;
    assert_eq!(r["status_code"], 429, "{r}");
}

mod config_files;

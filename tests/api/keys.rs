//! Master key: secrets are encrypted at rest (absent from the SQLite file and a PostgreSQL dump),
//! a different key refuses to start, the generated key file is 0600, and `epusdt keys rotate`
//! re-encrypts everything while a running gateway keeps verifying signatures.
use crate::common;

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
};

use common::Backend;
use epusdt::{App, config::Secret};
use serde_json::{Value, json};

const KNOWN: &str = "KNOWN-merchant-secret-4f1c2b9e";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A merchant whose secret is [`KNOWN`], for grepping storage.
async fn add_known_merchant(app: &common::TestApp) {
    epusdt::service::merchant::add(
        &app.state.db,
        &app.state.keys,
        "s",
        None,
        Some(KNOWN.into()),
        false,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_not_in_the_sqlite_file() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    add_known_merchant(&app).await;
    // The API token and the merchant secret still work for signing…
    let r = common::create_v1(
        &app,
        &[
            ("order_id", "K1"),
            ("amount", "10"),
            ("notify_url", "http://127.0.0.1:9/n"),
        ],
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    let dir = app.dir.clone();
    app.stop().await;
    // …but neither appears in any database file (main, WAL, shm) nor in the logs.
    let mut files = 0;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        assert!(
            !contains(&bytes, KNOWN),
            "merchant secret in {}",
            entry.display()
        );
        assert!(
            !contains(&bytes, common::TOKEN),
            "api token in {}",
            entry.display()
        );
    }
    assert!(files >= 2, "database files were checked");
    let key = dir.path().join("master.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "generated key file permissions");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.file_name().is_some_and(|n| n != "master.key") {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_not_in_a_postgres_dump() {
    let Some(app) = common::spawn_app(Backend::Postgres).await else {
        return;
    };
    add_known_merchant(&app).await;
    let url = app.config.database_url.clone().unwrap();
    app.stop().await;
    let out = Command::new("pg_dump").arg(&url).output();
    let Ok(out) = out else {
        common::skip("pg_dump not installed");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        contains(&out.stdout, "enc:v1:"),
        "dump holds the sealed values"
    );
    assert!(!contains(&out.stdout, KNOWN));
    assert!(!contains(&out.stdout, common::TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_master_key_refuses_to_start() {
    let Some((mut config, dir)) = common::test_config(Backend::Sqlite).await else {
        return;
    };
    config.master_key = Some(Secret::new("11".repeat(32)));
    let app = common::spawn_with(config.clone(), dir.clone()).await;
    app.stop().await;
    config.master_key = Some(Secret::new("22".repeat(32)));
    let err = App::build(config.clone())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("not the one that encrypted"), "{err}");
    // Malformed keys say what is expected.
    config.master_key = Some(Secret::new("not-a-key"));
    let err = App::build(config).await.err().expect("refused").to_string();
    assert!(err.contains("openssl rand -hex 32"), "{err}");
}

fn bin(dir: &std::path::Path) -> Command {
    let mut c = common::epusdt(dir);
    c.env("EPUSDT_LOG_LEVEL", "warn");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_keys_while_a_gateway_is_serving() {
    epusdt::net::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = bin(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[
        "merchant", "add", "--name", "shop", "--pid", "3001", "--secret", KNOWN,
    ]);
    run(&[
        "wallet",
        "add",
        "--network",
        "tron",
        "--address",
        common::TRON_WALLET,
    ]);
    let before = run(&["keys", "show"]);

    let port = common::free_port();
    let mut child = bin(dir.path())
        .env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("EPUSDT_USDT_RATES", "USD:1")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_listening(port).await;
    let create = |order_id: &'static str| async move {
        let mut p: BTreeMap<&str, String> = BTreeMap::new();
        p.insert("pid", "3001".into());
        p.insert("order_id", order_id.into());
        p.insert("currency", "USD".into());
        p.insert("amount", "5".into());
        p.insert("notify_url", "https://shop.example.com/n".into());
        let sig = common::gmpay_sign(&p, KNOWN);
        let body = json!({"pid": 3001, "order_id": order_id, "currency": "USD", "amount": 5, "notify_url": "https://shop.example.com/n", "signature": sig});
        reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{port}/payments/gmpay/v1/order/create-transaction"
            ))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(create("R-1").await["status_code"], 200);

    let out = run(&["keys", "rotate"]);
    assert!(
        out.contains("1 secret(s) re-encrypted") || out.contains("secret(s) re-encrypted"),
        "{out}"
    );
    let after = run(&["keys", "show"]);
    assert_ne!(before, after, "a new key is in use");
    assert!(dir.path().join("data/master.key.previous").exists());

    // The running gateway still verifies the merchant's signature (it reloads the key files).
    assert_eq!(create("R-2").await["status_code"], 200);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();

    // And a fresh start with only the new key files works too.
    let db_bytes = std::fs::read(dir.path().join("data/epusdt.db")).unwrap();
    assert!(!contains(&db_bytes, KNOWN));
    run(&["merchant", "list"]);
}

/// Through the real binary: failed signatures, a replayed GMPay nonce and a rate-limit burst are
/// audited (table + JSONL file), and neither the API token nor a merchant secret appears in any
/// log, audit file or database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_are_audited_and_secrets_never_logged() {
    epusdt::net::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let token = "TOKEN-never-in-logs-8d2f61a0c4";
    std::fs::write(
        dir.path().join(".env"),
        format!("api_auth_token={token}\nforced_usdt_rate=7.2\nusdt_rates=USD:1\nrate_limit_per_minute=30\nlog_level=debug\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = bin(dir.path())
            .env("EPUSDT_LOG_LEVEL", "debug")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "merchant",
        "add",
        "--name",
        "strict shop",
        "--pid",
        "4001",
        "--secret",
        KNOWN,
        "--strict",
    ]);
    run(&[
        "wallet",
        "add",
        "--network",
        "tron",
        "--address",
        common::TRON_WALLET,
    ]);
    let port = common::free_port();
    let mut child = bin(dir.path())
        .env("EPUSDT_LOG_LEVEL", "debug")
        .env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_listening(port).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // 1. A forged v1 request.
    let r: Value = common::post_json(&client, &format!("{base}/api/v1/order/create-transaction"), &json!({"order_id": "A1", "amount": 10, "notify_url": "https://shop.example.com/n", "signature": "00000000000000000000000000000000"})).await;
    assert_eq!(r["status_code"], 401);
    // 2. A signed GMPay request, then the same request replayed.
    let now = epusdt::service::now().to_string();
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in [
        ("pid", "4001"),
        ("order_id", "G1"),
        ("currency", "USD"),
        ("amount", "5"),
        ("notify_url", "https://shop.example.com/n"),
        ("nonce", "nonce-12345678"),
    ] {
        p.insert(k, v.into());
    }
    p.insert("timestamp", now.clone());
    let sig = common::gmpay_sign(&p, KNOWN);
    let body = json!({"pid": 4001, "order_id": "G1", "currency": "USD", "amount": 5, "notify_url": "https://shop.example.com/n", "nonce": "nonce-12345678", "timestamp": now, "signature": sig});
    let url = format!("{base}/payments/gmpay/v1/order/create-transaction");
    let first: Value = common::post_json(&client, &url, &body).await;
    assert_eq!(first["status_code"], 200, "{first}");
    let replay: Value = common::post_json(&client, &url, &body).await;
    assert_eq!(replay["status_code"], 10009, "{replay}");
    assert!(
        replay["message"].as_str().unwrap().contains("nonce"),
        "{replay}"
    );
    // 3. A burst over the per-IP limit (30/min).
    let mut limited = None;
    for _ in 0..40 {
        let resp = client
            .get(format!("{base}/pay/check-status/x"))
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let limited = limited.expect("the burst is limited");
    assert!(limited.headers().contains_key("retry-after"));
    assert!(limited.headers().contains_key("ratelimit-limit"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();

    let audit_dir = dir.path().join("data/audit");
    let audit: String = std::fs::read_dir(&audit_dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    for action in [
        "merchant.add",
        "wallet.add",
        "key.generated",
        "signature.failed",
        "replay.rejected",
        "ratelimit.burst",
    ] {
        assert!(
            audit.contains(action),
            "audit file lacks {action}:\n{audit}"
        );
    }
    let mut checked = 0;
    for f in walk(&dir.path().join("data")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!contains(&bytes, token), "api token in {}", f.display());
        assert!(
            !contains(&bytes, KNOWN),
            "merchant secret in {}",
            f.display()
        );
        checked += 1;
    }
    assert!(checked >= 3, "db, log and audit files checked");
    assert!(
        std::fs::read_dir(dir.path().join("data/logs"))
            .unwrap()
            .count()
            >= 1,
        "a log file was written and checked"
    );
    // The audit table has the same events.
    let db = epusdt::store::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("data/epusdt.db").display()
    ))
    .await
    .unwrap();
    use sea_orm::{EntityTrait, PaginatorTrait};
    let rows = epusdt::store::entities::audit_log::Entity::find()
        .count(&db)
        .await
        .unwrap();
    assert!(rows >= 6, "{rows} audit rows");
}

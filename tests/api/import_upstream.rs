//! Moving a shop from upstream: `epusdt import upstream --from <url>` (the real binary) on
//! databases built from upstream's schemas (tests/fixtures/upstream), on SQLite, PostgreSQL and
//! MySQL; `migrate` refusing a database that holds upstream's tables; the `.env` report.
use std::{collections::BTreeMap, path::Path, process::Output};

use epusdt::service::order::{CreditOutcome, IncomingTransfer, find_by_trade_id};
use epusdt::{domain::network::Network, service::order::callback_state};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

use crate::common::{self, Backend};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upstream");
const GM_SECRET: &str = "5f0c1e9a7b3d4c2e8f6a1b0c9d8e7f6a5f0c1e9a7b3d4c2e8f6a1b0c9d8e7f6a";

/// A fresh database on `backend` filled from the fixture files (statements end with `;`).
async fn upstream_db(backend: Backend, dir: &Path, files: &[&str]) -> Option<String> {
    upstream_db_prefixed(backend, dir, files, "").await
}

/// Same, with upstream's `*_table_prefix` applied to the table names.
async fn upstream_db_prefixed(
    backend: Backend,
    dir: &Path,
    files: &[&str],
    prefix: &str,
) -> Option<String> {
    let url = common::fresh_database(backend, dir).await?;
    let db = Database::connect(&url).await.expect("upstream db");
    for f in files {
        let mut sql = std::fs::read_to_string(format!("{FIXTURES}/{f}")).expect("fixture");
        for t in ["orders", "wallet_address", "api_keys", "chains"] {
            for (a, b) in [
                ("TABLE ", " ("),
                ("INTO ", " ("),
                ("ON ", " ("),
                ("UPDATE ", " SET"),
            ] {
                sql = sql.replace(&format!("{a}{t}{b}"), &format!("{a}{prefix}{t}{b}"));
            }
        }
        let sql: String = sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            db.execute_unprepared(stmt)
                .await
                .unwrap_or_else(|e| panic!("{f}: {e}\n{stmt}"));
        }
    }
    db.close().await.ok();
    Some(url)
}

async fn tables(url: &str) -> Vec<String> {
    let db = Database::connect(url).await.expect("db");
    let t = epusdt::store::upstream::tables(&db).await.expect("tables");
    // Closed before the binary runs: a pool merely dropped closes its SQLite connection later,
    // and the binary's switch to WAL then finds the file busy ("database is locked").
    db.close().await.ok();
    t
}

fn run(dir: &Path, db_url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = common::epusdt(dir);
    c.env("EPUSDT_DATABASE_URL", db_url)
        .env("EPUSDT_DATA_DIR", dir)
        .env("EPUSDT_LOG_LEVEL", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().expect("run epusdt")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `migrate` (and `serve`) on a database holding upstream's tables: exit 2, nothing created.
async fn migrate_refuses(backend: Backend, url: &str, dir: &Path) {
    let before = tables(url).await;
    for cmd in ["migrate", "serve"] {
        let out = run(dir, url, &[("EPUSDT_HTTP_LISTEN", "127.0.0.1:0")], &[cmd]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{backend:?} {cmd}: {said}");
        assert!(
            said.contains("epusdt import upstream --from") && said.contains("nothing was changed"),
            "{said}"
        );
    }
    let after = tables(url).await;
    assert_eq!(before.len(), after.len(), "{before:?} → {after:?}");
    assert!(
        !after
            .iter()
            .any(|t| t == "merchants" || t == "seaql_migrations")
    );
}

async fn gmwallet_shop_moves(backend: Backend) {
    let up_dir = tempfile::tempdir().unwrap();
    let Some(up) = upstream_db(
        backend,
        up_dir.path(),
        &["gmwallet.sql", "gmwallet_rows.sql"],
    )
    .await
    else {
        return;
    };
    migrate_refuses(backend, &up, up_dir.path()).await;
    // An order still waiting at the move (created a minute ago, in upstream's UTC times).
    let created = (chrono::Utc::now() - chrono::Duration::seconds(60))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let updb = Database::connect(&up).await.unwrap();
    updb.execute_unprepared(&format!(
        "INSERT INTO orders (id, trade_id, order_id, amount, currency, actual_amount, receive_address, token, network, status, notify_url, payment_type, api_key_id, created_at, updated_at) \
         VALUES (7, 'live00000000000000000007', 'ORD-7', 24, 'CNY', 3.33, 'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t', 'USDT', 'tron', 1, 'https://shop.example.com/n', 'Gmpay', 1, '{created}', '{created}')"
    ))
    .await
    .unwrap();
    updb.close().await.ok();

    let (config, dir) = common::test_config(backend).await.expect("target");
    let target = config.database_url.clone().unwrap();
    let args = ["import", "upstream", "--from", up.as_str()];
    let out = run(dir.path(), &target, &[], &args);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("GMWalletApp/epusdt"), "{said}");
    assert!(
        said.contains("wallets:   2 imported, 0 already present, 1 skipped"),
        "{said}"
    );
    assert!(
        said.contains("merchants: 3 imported, 0 already present, 1 skipped"),
        "{said}"
    );
    assert!(
        said.contains("orders:    7 imported, 0 already present, 2 skipped"),
        "{said}"
    );
    assert!(said.contains("never credited again): 2"), "{said}");
    assert!(
        said.contains("solana") && said.contains("shop-x") && said.contains("okpay"),
        "skips are explained: {said}"
    );
    assert!(!said.contains(GM_SECRET), "no secret printed: {said}");
    // Upstream's seeded pid 1000 is also our api_auth_token merchant; with no api_auth_token
    // (as here) the imported key is kept as it is, so there is nothing to warn about.
    assert!(
        !said.contains("pid 1000 is also the v1 merchant of api_auth_token"),
        "{said}"
    );

    // Again: nothing twice.
    let again = text(&run(dir.path(), &target, &[], &args));
    assert!(
        again.contains("wallets:   0 imported, 2 already present")
            && again.contains("merchants: 0 imported, 3 already present")
            && again.contains("orders:    0 imported, 7 already present")
            && again.contains("never credited again): 0"),
        "{again}"
    );

    // A password in --from is never printed (PostgreSQL here trusts any password).
    if backend == Backend::Postgres {
        let mut with_pw = url::Url::parse(&up).unwrap();
        with_pw.set_password(Some("topsecret-pw")).unwrap();
        let out = run(
            dir.path(),
            &target,
            &[],
            &["import", "upstream", "--from", with_pw.as_str()],
        );
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(
            !said.contains("topsecret-pw") && said.contains("orders:    0 imported"),
            "{said}"
        );
    }

    let app = common::spawn_with(config, dir).await;
    let db = &app.state.db;
    // Sealed, not stored in the clear.
    let raw = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT secret FROM merchants WHERE pid = 1001",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    assert!(!raw.contains(GM_SECRET));

    // Orders: status, exact amounts, hashes as the watcher writes them.
    let paid = find_by_trade_id(db, "3nQ9pL2xV7sK1mR8cT4yB_aZ")
        .await
        .unwrap()
        .expect("imported");
    assert_eq!(paid.status.code(), 2);
    assert_eq!(paid.actual_amount.to_string(), "14.2857");
    assert_eq!(paid.callback_state, callback_state::DELIVERED);
    let bsc = find_by_trade_id(db, "bscPaid000000000000000002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (bsc.network, bsc.currency.as_str(), bsc.callback_state),
        (Network::BSC, "USD", callback_state::FAILED)
    );
    // A row from before api_key_id belongs to upstream's default key (pid 1000).
    let legacy = find_by_trade_id(db, "legacy00000000000000000008")
        .await
        .unwrap()
        .unwrap();
    let default = epusdt::service::merchant::find_by_pid(db, &app.state.keys, 1000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(legacy.merchant_id.0, default.id);
    let chooser = find_by_trade_id(db, "choose000000000000000004")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chooser.status.code(), 3);
    let status: Value = app
        .client
        .get(app.url("/pay/check-status/3nQ9pL2xV7sK1mR8cT4yB_aZ"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["data"]["status"], 2, "{status}");

    // The chain shows the paid order's transfer (first seen by our watcher): not credited again.
    let seen = IncomingTransfer {
        network: Network::TRON,
        token: epusdt::domain::network::Token::USDT,
        tx_hash: "bbaa0011223344556677889900aabbccddeeff00112233445566778899aabbcc".into(),
        log_index: 0,
        block_number: 61_000_000,
        block_hash: "0000000003a2c8f0real".into(),
        token_contract: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
        from_address: "TPayer".into(),
        to_address: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
        amount: "14.2857".parse().unwrap(),
        block_time: paid.created_at + 30,
    };
    assert!(matches!(app.credit(&seen).await, CreditOutcome::Duplicate));
    let seen_bsc = IncomingTransfer {
        network: Network::BSC,
        token: epusdt::domain::network::Token::USDT,
        tx_hash: "0xabcdef0000000000000000000000000000000000000000000000000000000001".into(),
        to_address: "0x00000000000000000000000000000000000000bb".into(),
        amount: "20.01".parse().unwrap(),
        ..seen.clone()
    };
    assert!(matches!(
        app.credit(&seen_bsc).await,
        CreditOutcome::Duplicate
    ));

    // A payer cannot submit an imported payment's hash for another order.
    for (net, hash) in [
        (Network::TRON, &seen.tx_hash),
        (Network::BSC, &seen_bsc.tx_hash),
    ] {
        assert!(
            epusdt::service::order::tx_hash_used(db, net, hash)
                .await
                .unwrap()
        );
    }

    // The order waiting at the move came in expired, its slot held: paid on time, it is paid.
    let live = find_by_trade_id(db, "live00000000000000000007")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((live.status.code(), live.live_slot), (3, true));
    let on_time = IncomingTransfer {
        tx_hash: "cc00000000000000000000000000000000000000000000000000000000000007".into(),
        amount: "3.33".parse().unwrap(),
        block_time: epusdt::service::now(),
        ..seen.clone()
    };
    assert!(
        matches!(app.credit(&on_time).await, CreditOutcome::Paid { .. }),
        "an on-time payment of an order waiting at the move pays it"
    );

    // The shop's merchant signs with the secret it had upstream (GMPay, HMAC-SHA256).
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in [
        ("pid", "1001"),
        ("order_id", "after-move-1"),
        ("currency", "CNY"),
        ("amount", "72"),
        ("notify_url", "https://shop.example.com/n"),
    ] {
        p.insert(k, v.into());
    }
    let sig = common::gmpay_sign(&p, GM_SECRET);
    let reply: Value = app
        .client
        .post(app.url("/payments/gmpay/v1/order/create-transaction"))
        .json(&json!({"pid": "1001", "order_id": "after-move-1", "currency": "CNY", "amount": "72", "notify_url": "https://shop.example.com/n", "signature": sig}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status_code"], 200, "{reply}");
    app.stop().await;
}
on_all_backends!(gmwallet_shop_moves);

async fn assimon_shop_moves(backend: Backend) {
    let up_dir = tempfile::tempdir().unwrap();
    let ddl = if backend == Backend::Mysql {
        "assimon.mysql.sql"
    } else {
        "assimon.sql"
    };
    let Some(up) = upstream_db(backend, up_dir.path(), &[ddl, "assimon_rows.sql"]).await else {
        return;
    };
    migrate_refuses(backend, &up, up_dir.path()).await;

    let (config, dir) = common::test_config(backend).await.expect("target");
    let target = config.database_url.clone().unwrap();
    // Its merchant secret is the api_auth_token of its .env: without one, nothing happens.
    let out = run(
        dir.path(),
        &target,
        &[],
        &["import", "upstream", "--from", &up],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("api_auth_token"), "{}", text(&out));
    let args = [
        "import",
        "upstream",
        "--from",
        up.as_str(),
        "--api-token",
        common::TOKEN,
    ];
    let said = text(&run(dir.path(), &target, &[], &args));
    assert!(said.contains("assimon/epusdt"), "{said}");
    assert!(
        said.contains("wallets:   2 imported, 0 already present, 1 skipped")
            && said.contains("merchants: 1 imported")
            && said.contains("orders:    3 imported, 0 already present, 0 skipped")
            && said.contains("never credited again): 1"),
        "{said}"
    );
    assert!(!said.contains(common::TOKEN), "{said}");
    // With api_auth_token in the config, a re-run finds everything present.
    let again = text(&run(
        dir.path(),
        &target,
        &[("EPUSDT_API_AUTH_TOKEN", common::TOKEN)],
        &["import", "upstream", "--from", &up],
    ));
    assert!(
        again.contains("merchants: 0 imported, 1 already present")
            && again.contains("orders:    0 imported, 3 already present"),
        "{again}"
    );

    let app = common::spawn_with(config, dir).await;
    let db = &app.state.db;
    let paid = find_by_trade_id(db, "202401020304051")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            paid.status.code(),
            paid.amount.to_string(),
            paid.actual_amount.to_string()
        ),
        (2, "100".to_string(), "14.2857".to_string())
    );
    let waiting = find_by_trade_id(db, "202401020304053")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.status.code(), 3, "an old waiting order is expired");
    let disabled = epusdt::service::wallet::list(db).await.unwrap();
    assert!(
        disabled
            .iter()
            .any(|w| w.address == "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb" && !w.enabled),
        "{disabled:?}"
    );
    let seen = IncomingTransfer {
        network: Network::TRON,
        token: epusdt::domain::network::Token::USDT,
        tx_hash: "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
        log_index: 3,
        block_number: 57_000_000,
        block_hash: "real-block".into(),
        token_contract: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
        from_address: "TPayer".into(),
        to_address: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
        amount: "14.2857".parse().unwrap(),
        block_time: paid.created_at + 60,
    };
    assert!(matches!(app.credit(&seen).await, CreditOutcome::Duplicate));
    // The v1 merchant signs as it did upstream.
    let reply = app
        .create_v1(&[
            ("order_id", "after-move-1"),
            ("amount", "72"),
            ("notify_url", "https://shop.example.com/notify"),
        ])
        .await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    app.stop().await;
}
on_all_backends!(assimon_shop_moves);

/// An upstream `.env` as shipped: each key without effect reported once, with why; keys we
/// honour and empty keys are not reported.
#[tokio::test]
async fn upstream_env_is_reported_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "app_name=myshop\napp_uri=https://pay.example.com\napp_debug=false\nhttp_listen=127.0.0.1:{port}\n\
             static_path=/static\nlog_max_size=32\nqueue_concurrency=10\nqueue_level_low=1\n\
             order_expiration_time=15\norder_notice_max_retry=0\ntg_proxy=\nmysql_table_prefix=\n\
             api_auth_token=epusdt_password_xasddawqe\nforced_usdt_rate=7.1\napi_rate_url=https://rates.example.com/\n\
             networks__tron__rpc_urls=http://127.0.0.1:9\n"
        ),
    )
    .unwrap();
    let check = common::epusdt(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    let said = text(&check);
    assert!(check.status.success(), "{said}");
    for key in [
        "app_name",
        "static_path",
        "log_max_size",
        "queue_level_low",
        "order_notice_max_retry",
        "api_rate_url",
    ] {
        assert_eq!(
            said.matches(&format!("ignored: {key} (")).count(),
            1,
            "{key}: {said}"
        );
    }
    for key in [
        "app_debug",
        "app_uri",
        "http_listen",
        "queue_concurrency",
        "order_expiration_time",
        "tg_proxy",
        "mysql_table_prefix",
        "api_auth_token",
        "forced_usdt_rate",
        "networks__tron",
    ] {
        assert!(
            !said.contains(&format!("ignored: {key}")),
            "{key} falsely reported: {said}"
        );
    }
    assert!(said.contains("queue_workers = 10"), "{said}");
    assert!(!said.contains("no chain is watched"), "{said}");
    assert!(!said.contains("no fiat rate"), "{said}");

    // `serve` says it once in its log, with the wallet warning only the database knows (no
    // chain this time: nothing listens at that RPC URL).
    let env = std::fs::read_to_string(dir.path().join(".env")).unwrap();
    std::fs::write(
        dir.path().join(".env"),
        env.replace("networks__tron__rpc_urls=http://127.0.0.1:9\n", ""),
    )
    .unwrap();
    let child = common::epusdt(dir.path())
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_listening(port).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().unwrap();
    let log = text(&out);
    assert_eq!(log.matches("ignored: app_name (").count(), 1, "{log}");
    assert!(log.contains("no wallet is enabled"), "{log}");
    assert!(!log.contains("no fiat rate"), "{log}");
    assert!(!log.contains("ignored: queue_concurrency"), "{log}");
}

/// Nothing configured: the three fix-it warnings, no ignored keys.
#[test]
fn bare_config_warns_about_chain_and_rate() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::epusdt(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("no chain is watched"), "{said}");
    assert!(said.contains("no fiat rate"), "{said}");
    assert!(!said.contains("ignored:"), "{said}");
}

/// Upstream's `*_table_prefix`: found only when told (SQLite; the SQL is the same elsewhere).
#[tokio::test]
async fn a_table_prefix_is_read_when_given() {
    let up_dir = tempfile::tempdir().unwrap();
    let up = upstream_db_prefixed(
        Backend::Sqlite,
        up_dir.path(),
        &["gmwallet.sql", "gmwallet_rows.sql"],
        "ep_",
    )
    .await
    .unwrap();
    let (config, dir) = common::test_config(Backend::Sqlite).await.unwrap();
    let target = config.database_url.clone().unwrap();
    let file = up_dir.path().join("epusdt.db").display().to_string();
    let out = run(
        dir.path(),
        &target,
        &[],
        &["import", "upstream", "--from", &up],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("--table-prefix"), "{}", text(&out));
    let out = run(
        dir.path(),
        &target,
        &[],
        // A bare path is upstream's SQLite file (opened read-only).
        &[
            "import",
            "upstream",
            "--from",
            &file,
            "--table-prefix",
            "ep_",
        ],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("orders:    6 imported, 0 already present, 2 skipped"),
        "{said}"
    );
}

/// Upstream GMWalletApp seeds its default API key as pid 1000, which is also the merchant this
/// gateway keeps equal to `api_auth_token`. Without `api_auth_token` the imported key stays as
/// it was imported; the gateway's own pid 1000 is disabled when its token is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_pid_1000_survives_a_start_without_api_auth_token() {
    use epusdt::service::merchant;
    // The gateway's own pid 1000 (made from api_auth_token) is disabled once the token is gone.
    let (config, dir) = common::test_config(Backend::Sqlite).await.expect("config");
    let app = common::spawn_with(config.clone(), dir.clone()).await;
    app.stop().await;
    let mut no_token = config.clone();
    no_token.api_auth_token = None;
    let app = common::spawn_with(no_token.clone(), dir.clone()).await;
    let own = merchant::find_by_pid(&app.state.db, &app.state.keys, 1000)
        .await
        .unwrap()
        .expect("pid 1000");
    assert!(
        !own.enabled,
        "a removed api_auth_token disables its merchant"
    );
    app.stop().await;

    // An imported pid 1000 (upstream's seeded key) is left alone.
    let (mut config, dir) = common::test_config(Backend::Sqlite).await.expect("config");
    config.api_auth_token = None;
    let app = common::spawn_with(config.clone(), dir.clone()).await;
    merchant::add_imported(
        &app.state.db,
        &app.state.keys,
        1000,
        "default",
        "gm-secret",
        true,
    )
    .await
    .expect("imported");
    app.stop().await;
    let app = common::spawn_with(config, dir).await;
    let imported = merchant::find_by_pid(&app.state.db, &app.state.keys, 1000)
        .await
        .unwrap()
        .expect("pid 1000");
    assert!(
        imported.enabled,
        "the imported key still works after a restart"
    );
    assert_eq!(imported.secret.expose(), "gm-secret");
    app.stop().await;
}

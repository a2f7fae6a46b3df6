//! Durability with the real binary: the gateway is killed (SIGKILL) while a callback is waiting
//! for its retry; after a restart the retry still happens and the merchant acknowledges exactly
//! once.
use crate::common;

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use epusdt::{
    domain::network::Network,
    queue::{JobQueue, QueueBackend},
    service::order::{CreditOutcome, IncomingTransfer, credit_transfer, find_by_trade_id},
};
use serde_json::{Value, json};

fn gateway(dir: &std::path::Path, port: u16, args: &[&str]) -> Command {
    let mut c = common::epusdt(dir);
    c.env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("EPUSDT_API_AUTH_TOKEN", common::TOKEN)
        .env("EPUSDT_FORCED_USDT_RATE", "7.2")
        .env("EPUSDT_ALLOW_PRIVATE_CALLBACKS", "true")
        .env("EPUSDT_NOTIFY_RETRY_BASE_SECS", "3")
        .env("EPUSDT_LOG_LEVEL", "warn")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

async fn start(dir: &std::path::Path, port: u16) -> Child {
    let child = gateway(dir, port, &["serve"]).spawn().unwrap();
    common::wait_listening(port).await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_survives_a_crash_between_retries() {
    epusdt::net::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let out = gateway(
        dir.path(),
        port,
        &[
            "wallet",
            "add",
            "--network",
            "tron",
            "--address",
            common::TRON_WALLET,
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let mut child = start(dir.path(), port).await;

    let (merchant, murl) = common::Merchant::start(1, "ok").await;
    let mut params: BTreeMap<&str, String> = BTreeMap::new();
    params.insert("order_id", "K-1".into());
    params.insert("amount", "72".into());
    params.insert("notify_url", format!("{murl}/notify"));
    let sig = common::v1_sign(&params, common::TOKEN);
    let client = reqwest::Client::new();
    let reply: Value = common::post_json(&client, &format!("http://127.0.0.1:{port}/api/v1/order/create-transaction"), &json!({"order_id": "K-1", "amount": 72, "notify_url": format!("{murl}/notify"), "signature": sig})).await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    let trade_id = reply["data"]["trade_id"].as_str().unwrap().to_string();

    // The watcher's side, from this process on the same database and queue.
    let db = epusdt::store::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("data/epusdt.db").display()
    ))
    .await
    .unwrap();
    let queue = JobQueue::connect(QueueBackend::Sqlite(
        db.get_sqlite_connection_pool().clone(),
    ))
    .await
    .unwrap();
    let t = IncomingTransfer {
        network: Network::TRON,
        token: epusdt::domain::network::Token::USDT,
        tx_hash: "crash-tx".into(),
        log_index: 0,
        block_number: 7,
        block_hash: String::new(),
        token_contract: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
        from_address: "TX".into(),
        to_address: common::TRON_WALLET.into(),
        amount: "10".parse().unwrap(),
        block_time: epusdt::service::now(),
    };
    let outcome = credit_transfer(&db, &queue, &Default::default(), &t)
        .await
        .unwrap();
    assert!(matches!(outcome, CreditOutcome::Paid { .. }), "{outcome:?}");

    // First attempt is refused by the merchant; the retry is scheduled ~3 s later. Kill now.
    let first = merchant.wait_for(1, 20).await;
    assert!(!first[0].accepted);
    // Killed once the refusal is recorded and its retry scheduled (a kill while the reply is
    // still being recorded is the other crash: the same attempt then runs again after orphan
    // recovery, and the attempt count would not tell the two apart).
    common::eventually(20, "first attempt recorded", || {
        let db = db.clone();
        let trade_id = trade_id.clone();
        async move {
            let o = find_by_trade_id(&db, &trade_id).await.ok()??;
            (o.callback_attempts == 1).then_some(())
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Stay down past the retry's due time.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(merchant.received().len(), 1, "nothing delivered while down");

    let mut child = start(dir.path(), port).await;
    let calls = merchant.wait_for(2, 30).await;
    assert!(calls[1].accepted);
    assert_eq!(calls[0].body, calls[1].body, "same signed payload on retry");
    // Exactly once acknowledged: no further deliveries.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(merchant.received().len(), 2);
    let o = find_by_trade_id(&db, &trade_id).await.unwrap().unwrap();
    assert_eq!(o.callback_state, 2, "delivered");
    assert_eq!(o.callback_attempts, 2);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
}

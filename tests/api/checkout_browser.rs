//! The checkout page in headless Chromium (Debian's), driven by playwright-core: a real order
//! created over HTTP, checked at a phone viewport with a screenshot, then paid while the page is
//! open — the page must notice and redirect to the shop.
use crate::common;

use std::{path::PathBuf, process::Command, time::Duration};

use common::{Backend, create_v1};
use epusdt::{
    domain::network::Network,
    service::order::{IncomingTransfer, credit_transfer},
};

/// Node + chromium + playwright-core, or `None` (skip) unless services are required.
pub fn browser_tools() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let ready = node_ok
        && std::path::Path::new(&chromium).exists()
        && dir.join("node_modules/playwright-core").is_dir();
    if ready {
        Some(dir)
    } else {
        common::skip(&format!(
            "browser test needs node, {chromium} and `npm ci` in tests/browser"
        ));
        None
    }
}

pub fn screenshot_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&d).expect("screenshot dir");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_page_in_headless_chromium() {
    let Some(dir) = browser_tools() else { return };
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let (_merchant, murl) = common::Merchant::start(0, "ok").await;
    let redirect = format!("{murl}/thanks");
    let reply = create_v1(
        &app,
        &[
            ("order_id", "B-1"),
            ("amount", "100.00"),
            ("notify_url", &format!("{murl}/notify")),
            ("redirect_url", &redirect),
        ],
    )
    .await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    let data = reply["data"].clone();
    let trade_id = data["trade_id"].as_str().unwrap().to_string();
    let url = app.url(&format!("/pay/checkout-counter/{trade_id}"));
    let shot = screenshot_dir().join("checkout.png");

    // Once the page is open (its first screenshot is on disk), pay the order.
    let _ = std::fs::remove_file(&shot);
    let db = app.state.db.clone();
    let shot_seen = shot.clone();
    let queue = app.state.queue.clone();
    let to = data["token"].as_str().unwrap().to_string();
    let payer = tokio::spawn(async move {
        // Generous: on a loaded machine the page's checks before the screenshot can take
        // longer than 30 s, and paying earlier navigates the page away mid-check.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !shot_seen.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = IncomingTransfer {
            network: Network::TRON,
            token: epusdt::domain::network::Token::USDT,
            tx_hash: "browser-tx".into(),
            log_index: 0,
            block_number: 1,
            block_hash: String::new(),
            token_contract: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
            from_address: "TX".into(),
            to_address: to,
            amount: "13.89".parse().unwrap(),
            block_time: epusdt::service::now(),
        };
        credit_transfer(&db, &queue, &Default::default(), &t)
            .await
            .unwrap()
    });
    let out = tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            Command::new("node")
                .current_dir(&dir)
                .arg("checkout.mjs")
                .arg(&url)
                .arg(&shot)
                .arg("13.89")
                .arg(common::TRON_WALLET)
                .arg("--expect-paid-redirect")
                .arg(&redirect)
                .output()
                .expect("node runs")
        }
    })
    .await
    .unwrap();
    payer.await.unwrap();
    assert!(
        out.status.success(),
        "browser check failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shot.exists(), "screenshot written to {}", shot.display());
    eprintln!("checkout screenshot: {}", shot.display());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_pages_in_headless_chromium() {
    let Some(dir) = browser_tools() else { return };
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let url = app.url("/pay/checkout-counter/000000000000");
    let shot = screenshot_dir().join("not_found.png");
    let out = Command::new("node")
        .current_dir(&dir)
        .args(["checkout.mjs", &url])
        .arg(&shot)
        .args(["--closed", "not_found"])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}

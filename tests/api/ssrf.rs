//! Callback targets as an attacker writes them (issue 9, items 1 and 6): every special-purpose
//! address form is refused at order creation and again at delivery, and the outbound client
//! connects only to addresses that passed the check (no second, unchecked DNS resolution).
use crate::common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{Backend, create_v1};
use epusdt::security::ssrf::{GuardedResolver, Lookup};
use epusdt::{service::order::find_by_trade_id, store::entities::order};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use std::net::{IpAddr, Ipv4Addr};

/// A TCP listener on 127.0.0.1 that counts every connection it accepts (and answers `ok`, so a
/// connection that got through would even look like a delivery).
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, hits)
}

/// Every form from the issue (and the rest of the IANA special-purpose registries) that was
/// accepted as a `notify_url` before: v1 answers 10009 naming `notify_url`.
#[tokio::test]
async fn special_purpose_callback_targets_are_refused_at_order_creation() {
    let Some(app) =
        common::spawn_app_with(Backend::Sqlite, |c| c.allow_private_callbacks = false).await
    else {
        return;
    };
    let bad = [
        // From the issue.
        "http://[::127.0.0.1]/n",
        "http://[::7f00:1]/n",
        "http://[64:ff9b::127.0.0.1]/n",
        "http://[2002:7f00:1::]/n",
        "http://[fec0::1]/n",
        "http://198.18.0.1/n",
        "http://240.0.0.1/n",
        "http://example.com:0/n",
        "http://localhost./n",
        "http://foo.localhost/n",
        // Case and trailing-dot variants of localhost.
        "http://LOCALHOST/n",
        "http://Foo.LocalHost./n",
        // IPv4 special-purpose ranges.
        "http://0.1.2.3/n",
        "http://100.64.0.1/n",
        "http://192.0.0.8/n",
        "http://192.0.2.1/n",
        "http://198.51.100.7/n",
        "http://203.0.113.9/n",
        "http://255.255.255.255/n",
        "http://224.0.0.1/n",
        "http://172.16.0.1/n",
        "http://192.168.1.1/n",
        // Non-dotted IPv4 spellings (the URL parser normalizes them to 127.0.0.1).
        "http://2130706433/n",
        "http://0x7f.1/n",
        "http://127.1/n",
        // IPv6 forms, with and without an embedded IPv4.
        "http://[::]/n",
        "http://[::ffff:127.0.0.1]/n",
        "http://[::ffff:10.0.0.1]/n",
        "http://[64:ff9b:1::a00:1]/n",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/n",
        "http://[2001:db8::1]/n",
        "http://[fd00::1]/n",
        "http://[fe80::1]/n",
        "http://[ff02::1]/n",
        "http://[100::1]/n",
        "http://[2002:a00:1::]/n",
    ];
    let mut accepted = Vec::new();
    for (i, url) in bad.iter().enumerate() {
        let r = create_v1(
            &app,
            &[
                ("order_id", &format!("S-{i}")),
                ("amount", "10"),
                ("notify_url", url),
            ],
        )
        .await;
        if r["status_code"] != 10009 {
            accepted.push(format!("{url} → {r}"));
            continue;
        }
        let msg = r["message"].as_str().unwrap_or_default();
        assert!(msg.contains("notify_url"), "{url}: {msg}");
    }
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");
    // Public names and addresses still pass.
    for (i, url) in [
        "https://shop.example.com/notify",
        "http://93.184.215.14:8080/n",
        "http://[2606:4700::1111]/n",
        "http://[2002:5db8:d70e::]/n",
    ]
    .iter()
    .enumerate()
    {
        let r = create_v1(
            &app,
            &[
                ("order_id", &format!("OK-{i}")),
                ("amount", "10"),
                ("notify_url", url),
            ],
        )
        .await;
        assert_eq!(r["status_code"], 200, "{url}: {r}");
    }
    app.stop().await;
}

/// With `allow_private_callbacks` off (the default), delivery re-checks the stored URL: orders
/// whose `notify_url` now points at loopback (stored before the rule, or rewritten in the
/// database) are never sent, and the attempt says why. A real listener counts connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_with_the_guard_on_never_reaches_loopback() {
    let Some(app) =
        common::spawn_app_with(Backend::Sqlite, |c| c.allow_private_callbacks = false).await
    else {
        return;
    };
    let (port, hits) = counting_listener().await;
    let targets = [
        format!("http://localhost.:{port}/n"),
        format!("http://LocalHost:{port}/n"),
        format!("http://a.localhost:{port}/n"),
        format!("http://127.0.0.1:{port}/n"),
        format!("http://[::ffff:127.0.0.1]:{port}/n"),
        format!("http://[::127.0.0.1]:{port}/n"),
        format!("http://[2002:7f00:1::]:{port}/n"),
        format!("http://[64:ff9b::7f00:1]:{port}/n"),
    ];
    let mut ids = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let r = create_v1(
            &app,
            &[
                ("order_id", &format!("D-{i}")),
                ("amount", &format!("{}", 10 + i)),
                ("notify_url", "https://shop.example.com/notify"),
            ],
        )
        .await;
        assert_eq!(r["status_code"], 200, "{r}");
        let trade_id = r["data"]["trade_id"].as_str().unwrap().to_string();
        order::Entity::update_many()
            .col_expr(order::Column::NotifyUrl, Expr::value(target.clone()))
            .filter(order::Column::TradeId.eq(&trade_id))
            .exec(&app.state.db)
            .await
            .unwrap();
        let paid = r["data"]["actual_amount"].to_string();
        app.pay(&r["data"], &paid).await;
        ids.push((target.clone(), trade_id));
    }
    for (target, trade_id) in &ids {
        let db = app.state.db.clone();
        let t = trade_id.clone();
        let o = common::eventually(20, "first attempt recorded", || {
            let db = db.clone();
            let t = t.clone();
            async move {
                let o = find_by_trade_id(&db, &t).await.unwrap().unwrap();
                (o.callback_attempts >= 1).then_some(o)
            }
        })
        .await;
        let attempts = epusdt::service::notify::attempts(&app.state.db, o.id.get())
            .await
            .unwrap();
        let err = &attempts[0].error;
        assert!(!attempts[0].success, "{target}");
        assert_eq!(attempts[0].http_status, None, "{target}: {err}");
        assert!(
            err.contains("must not point") || err.contains("refused"),
            "{target}: the attempt must say it was refused, got: {err}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a loopback target was hit");
    app.stop().await;
}

/// The outbound client itself refuses to connect to a name that resolves to a forbidden address:
/// the address checked is the address connected to (no DNS-rebinding window between a check and
/// reqwest's own lookup). `localhost` resolves to 127.0.0.1 from /etc/hosts everywhere.
#[tokio::test]
async fn the_callback_client_never_connects_to_a_name_resolving_to_loopback() {
    let Some(app) =
        common::spawn_app_with(Backend::Sqlite, |c| c.allow_private_callbacks = false).await
    else {
        return;
    };
    let (port, hits) = counting_listener().await;
    let err = app
        .state
        .http
        .get(format!("http://localhost:{port}/n"))
        .send()
        .await
        .expect_err("the guarded client must refuse");
    let chain = error_chain(&err);
    assert!(chain.contains("localhost"), "names the host: {chain}");
    assert!(
        chain.contains("refused") || chain.contains("forbidden"),
        "{chain}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "loopback was connected to");
    app.stop().await;

    // Control: with private callbacks allowed, the same request reaches the listener, so the
    // refusal above is the guard and not a broken listener.
    let Some(app) =
        common::spawn_app_with(Backend::Sqlite, |c| c.allow_private_callbacks = true).await
    else {
        return;
    };
    let r = app
        .state
        .http
        .get(format!("http://localhost:{port}/n"))
        .send()
        .await
        .expect("allowed");
    assert_eq!(r.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    app.stop().await;
}

/// A resolver double answering like a rebinding DNS server (loopback, now): the guarded
/// client refuses it without connecting; with private targets allowed, the client connects
/// to exactly the address the resolver answered (it does no lookup of its own).
#[tokio::test]
async fn the_client_connects_only_to_checked_addresses() {
    epusdt::net::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 2048];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let rebinding: Lookup = Arc::new(move |_host| {
        a.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]) })
    });
    let client = |allow| {
        reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver::with_lookup(allow, rebinding.clone()))
            .build()
            .unwrap()
    };
    let url = format!("http://shop.example.com:{port}/notify");
    let err = client(false).get(&url).send().await.unwrap_err();
    let chain = error_chain(&err);
    assert!(
        chain.contains("shop.example.com resolves to a forbidden address 127.0.0.1"),
        "{chain}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let r = client(true).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(asked.load(Ordering::SeqCst), 2, "one lookup per request");
}

fn error_chain(e: &dyn std::error::Error) -> String {
    epusdt::service::notify::error_chain(e)
}

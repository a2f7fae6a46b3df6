//! Foundation: the app starts on each database, migrates, reports health, and stops cleanly.
use crate::common;

use common::Backend;
use serde_json::Value;

async fn health_reports_database_and_queue(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["database"]["status"], "ok");
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::Mysql => "mysql",
    };
    assert_eq!(body["database"]["backend"], expected);
    assert_eq!(body["queue"]["status"], "ok");

    // The database goes away: /health says so with 503 instead of hanging or lying.
    app.state.db.clone().close().await.unwrap();
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["database"]["status"], "down", "{body}");
    app.stop().await;
}
on_all_backends!(health_reports_database_and_queue);

/// Migrations are idempotent: a second start on the same database applies nothing and works.
async fn restart_on_existing_database(backend: Backend) {
    let Some((config, dir)) = common::test_config(backend).await else {
        return;
    };
    let app = common::spawn_with(config.clone(), dir.clone()).await;
    app.stop().await;
    let app = common::spawn_with(config, dir).await;
    let resp = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await;
}
on_all_backends!(restart_on_existing_database);

#[tokio::test]
async fn redis_queue_backend_is_used_when_configured() {
    let Some(redis) = common::redis_url() else {
        return;
    };
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| c.redis_url = Some(redis)).await
    else {
        return;
    };
    let body: Value = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["queue"]["backend"], "redis", "{body}");
    assert_eq!(body["queue"]["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn sqlite_file_keeps_durable_synchronous_mode() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    // Every pooled connection must be synchronous NORMAL (1) or FULL (2), never OFF (0),
    // even after apalis' setup ran on the same file.
    let pool = app.state.db.get_sqlite_connection_pool();
    for _ in 0..8 {
        let v: (i64,) = sea_orm::sqlx::query_as("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .unwrap();
        assert!(v.0 >= 1, "synchronous = {}", v.0);
    }
    app.stop().await;
}

/// SIGTERM while a request is being received: the request still completes, then the app stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_during_graceful_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(mut app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let addr = app.base.trim_start_matches("http://").to_string();
    let body = r#"{"order_id":"x","amount":10,"notify_url":"http://127.0.0.1:9/n","signature":"00000000000000000000000000000000"}"#;
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/order/create-transaction HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..20]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    app.begin_stop();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // New connections are refused once the listener has stopped accepting…
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err()
            || app.client.get(app.url("/health")).send().await.is_err(),
        "no new requests are served during shutdown"
    );
    // …but the request in flight completes.
    conn.write_all(&body.as_bytes()[20..]).await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"status_code\":401"), "{reply}");
    app.stop().await;
}

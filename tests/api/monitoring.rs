//! The monitoring pack: `/metrics` of a running binary lists every metric the alert rules and
//! the Grafana dashboard use (and the wiki documents every metric it lists); the alert rules
//! pass `promtool`; events move their counters; `metrics_token` and `metrics_listen` guard and
//! move `/metrics`.
use std::{
    collections::BTreeSet,
    path::Path,
    process::{Child, Stdio},
};

use crate::{
    chain_support::tron_mock::TronMock,
    common::{self, Backend, Merchant},
};
use epusdt::config::Secret;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `epusdt_…` metric name in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("epusdt_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// `name → type` from the exposition's `# TYPE` lines.
fn exported(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The sum of the samples `name{labels…}` that carry all of `labels` (0 when none does).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let have: BTreeSet<String> = l
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if labels
            .iter()
            .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"")))
        {
            sum += v.parse::<f64>().expect("sample value");
        }
    }
    sum
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let resp = client.get(url).send().await.expect("GET /metrics");
    assert_eq!(resp.status(), 200, "/metrics answers");
    resp.text().await.expect("body")
}

#[tokio::test]
async fn every_metric_of_the_alerts_and_dashboard_is_on_a_running_instance() {
    epusdt::net::install_crypto_provider();
    let mock = TronMock::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::free_port();
    let child = common::epusdt(dir.path())
        .arg("serve")
        .env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        // A dead first URL: the watcher fails over to the mock, counting the dead one's errors.
        .env(
            "EPUSDT_NETWORKS__TRON__RPC_URLS",
            format!("http://127.0.0.1:{},{}", common::free_port(), mock.url),
        )
        .env("EPUSDT_NETWORKS__TRON__POLL_INTERVAL_MS", "100")
        .env("EPUSDT_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start epusdt serve");
    let _child = KillOnDrop(child);
    common::wait_listening(port).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // A fresh instance lists its zero-initialised series before any traffic.
    let fresh = scrape(&client, &format!("{base}/metrics")).await;
    for name in [
        "epusdt_orders_total",
        "epusdt_callback_attempts_total",
        "epusdt_signatures_refused_total",
        "epusdt_queue_depth",
        "epusdt_db_pool_max_connections",
        "epusdt_chain_watcher_up",
    ] {
        assert!(
            exported(&fresh).contains_key(name),
            "{name} missing from a fresh /metrics:\n{fresh}"
        );
    }
    // Some traffic (HTTP series appear with the first request), and the watcher's first round.
    client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    let text = common::eventually(30, "the TRON watcher's head in /metrics", || {
        let client = client.clone();
        let url = format!("{base}/metrics");
        async move {
            let text = scrape(&client, &url).await;
            (value(&text, "epusdt_chain_head", &[("network", "tron")]) >= 100.0).then_some(text)
        }
    })
    .await;
    let types = exported(&text);
    let mut wanted = names_in(&repo_file("deploy/prometheus/alerts.yml"));
    let dashboard = repo_file("deploy/grafana/epusdt.json");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    wanted.extend(names_in(&dashboard));
    assert!(wanted.len() > 15, "names found: {wanted:?}");
    for name in &wanted {
        let ok = types.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                name.strip_suffix(s)
                    .is_some_and(|base| types.get(base).is_some_and(|t| t == "histogram"))
            });
        assert!(ok, "{name} (alerts/dashboard) is not in /metrics:\n{text}");
    }
    // The wiki documents every metric /metrics shows.
    let wiki = repo_file("wiki/OPERATIONS.md");
    for name in types.keys().filter(|n| n.starts_with("epusdt_")) {
        assert!(
            wiki.contains(&format!("`{name}`")),
            "{name} is not documented in wiki/OPERATIONS.md"
        );
    }
    assert_eq!(
        value(&text, "epusdt_chain_watcher_up", &[("network", "tron")]),
        1.0
    );
    assert_eq!(value(&text, "epusdt_queue_up", &[]), 1.0);
    assert!(
        value(
            &text,
            "epusdt_chain_rpc_errors_total",
            &[("kind", "failed")]
        ) >= 1.0,
        "the dead RPC URL's errors are counted:\n{text}"
    );

    assert!(
        value(
            &text,
            "epusdt_http_requests_total",
            &[("route", "/health"), ("method", "GET"), ("status", "200")]
        ) >= 1.0,
        "{text}"
    );
}

/// `promtool` (Debian package `prometheus`; tools/test.sh installs it) accepts the rules and
/// their unit tests (deploy/prometheus/alerts.test.yml) pass.
#[test]
fn alert_rules_pass_promtool() {
    let promtool = std::env::var("EPUSDT_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = match std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                common::skip(&format!("promtool not runnable ({e})"));
                return;
            }
        };
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Orders, callbacks, refused signatures and requests move their series (the recorder is
/// process-wide, so the checks are on increases).
async fn events_move_their_counters(backend: Backend) {
    // One attempt per callback, so a refused one gives up at once.
    let Some(app) = common::spawn_app_with(backend, |c| c.notify_max_attempts = 1).await else {
        return;
    };
    let url = app.url("/metrics");
    let before = scrape(&app.client, &url).await;
    let created = [("event", "created"), ("network", "tron"), ("token", "USDT")];
    let paid = [("event", "paid"), ("network", "tron"), ("token", "USDT")];
    let mismatch = [("protocol", "v1"), ("reason", "mismatch")];
    let delivered = [("outcome", "delivered")];
    let create_route = [
        ("route", "/api/v1/order/create-transaction"),
        ("method", "POST"),
        ("status", "200"),
    ];
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let order = app
        .create_v1(&[
            ("order_id", "metrics-1"),
            ("amount", "7.2"),
            ("notify_url", &format!("{murl}/notify")),
        ])
        .await;
    assert_eq!(order["status_code"], 200, "{order}");
    let data = &order["data"];
    app.pay(data, &data["actual_amount"].to_string()).await;
    app.wait_delivered(data["trade_id"].as_str().expect("trade_id"), 20)
        .await;
    merchant.wait_for(1, 5).await;
    // A merchant that answers, but not `ok`: rejected, and with one attempt allowed, given up.
    let (_refusing, rurl) = Merchant::start(0, "nope").await;
    let order = app
        .create_v1(&[
            ("order_id", "metrics-3"),
            ("amount", "14.4"),
            ("notify_url", &format!("{rurl}/notify")),
        ])
        .await;
    let data = &order["data"];
    app.pay(data, &data["actual_amount"].to_string()).await;
    let trade_id = data["trade_id"].as_str().expect("trade_id").to_string();
    common::eventually(20, "the refused callback given up", || async {
        let o = epusdt::service::order::find_by_trade_id(&app.state.db, &trade_id)
            .await
            .ok()??;
        (o.callback_state == 3).then_some(())
    })
    .await;
    // Cancelled by the merchant.
    let order = app
        .create_v1(&[
            ("order_id", "metrics-4"),
            ("amount", "21.6"),
            ("notify_url", &format!("{murl}/notify")),
        ])
        .await;
    let trade_id = order["data"]["trade_id"].as_str().expect("trade_id");
    let mut p = std::collections::BTreeMap::new();
    p.insert("trade_id", trade_id.to_string());
    let cancel = serde_json::json!({ "trade_id": trade_id, "signature": common::v1_sign(&p, common::TOKEN) });
    let r = common::post_json(
        &app.client,
        &app.url("/api/v1/order/cancel-transaction"),
        &cancel,
    )
    .await;
    assert_eq!(r["status_code"], 200, "{r}");
    // Expired by the every-second pass once its window is over.
    let order = app
        .create_v1(&[
            ("order_id", "metrics-5"),
            ("amount", "28.8"),
            ("notify_url", &format!("{murl}/notify")),
        ])
        .await;
    let trade_id = order["data"]["trade_id"]
        .as_str()
        .expect("trade_id")
        .to_string();
    {
        use epusdt::store::entities::order;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        order::Entity::update_many()
            .col_expr(
                order::Column::ExpiresAt,
                Expr::value(epusdt::service::now() - 1),
            )
            .filter(order::Column::TradeId.eq(trade_id.as_str()))
            .exec(&app.state.db)
            .await
            .expect("age the order");
    }
    common::eventually(15, "the order expired", || async {
        let o = epusdt::service::order::find_by_trade_id(&app.state.db, &trade_id)
            .await
            .ok()??;
        (o.status.code() == 3).then_some(())
    })
    .await;
    // A wrong signature.
    let bad = serde_json::json!({
        "order_id": "metrics-2", "amount": 1, "notify_url": format!("{murl}/notify"),
        "signature": "0123456789abcdef0123456789abcdef",
    });
    let reply = common::post_json(
        &app.client,
        &app.url("/api/v1/order/create-transaction"),
        &bad,
    )
    .await;
    assert_eq!(reply["status_code"], 401, "{reply}");
    let after = scrape(&app.client, &url).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        let (a, b) = (value(&before, name, labels), value(&after, name, labels));
        assert!(b >= a + 1.0, "{name}{labels:?}: {a} → {b}");
    };
    grew("epusdt_orders_total", &created);
    grew("epusdt_orders_total", &paid);
    grew(
        "epusdt_orders_total",
        &[("event", "cancelled"), ("network", "tron")],
    );
    grew(
        "epusdt_orders_total",
        &[("event", "expired"), ("network", "tron")],
    );
    grew("epusdt_order_amount_count", &paid);
    assert!(
        value(&after, "epusdt_order_amount_sum", &paid)
            >= value(&before, "epusdt_order_amount_sum", &paid) + 1.0,
        "the paid amount (1 USDT) is added"
    );
    grew("epusdt_signatures_refused_total", &mismatch);
    grew("epusdt_callback_attempts_total", &delivered);
    grew("epusdt_callback_attempts_total", &[("outcome", "rejected")]);
    grew("epusdt_callbacks_gave_up_total", &[]);
    grew("epusdt_callback_duration_seconds_count", &[]);
    grew("epusdt_http_requests_total", &create_route);
    grew(
        "epusdt_http_request_duration_seconds_count",
        &[
            ("route", "/api/v1/order/create-transaction"),
            ("method", "POST"),
        ],
    );
    // A path no route matches is counted under one label, not under its own path.
    app.client
        .get(app.url("/no/such/path/x7"))
        .send()
        .await
        .expect("request");
    let last = scrape(&app.client, &url).await;
    assert!(
        !last.contains("/no/such/path/x7"),
        "raw paths never become labels"
    );
    assert!(
        value(
            &last,
            "epusdt_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    app.stop().await;
}

on_all_backends!(events_move_their_counters);

#[tokio::test]
async fn metrics_token_and_listener_guard_and_move_metrics() {
    let port = common::free_port();
    let token = "metrics-token-0123456789";
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.metrics_listen = Some(format!("127.0.0.1:{port}").parse().expect("addr"));
        c.metrics_token = Some(Secret::new(token));
    })
    .await
    else {
        return;
    };
    // Not on the public listener any more.
    let public = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(public.status(), 404);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let none = app.client.get(&url).send().await.expect("request");
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    let body = none.text().await.expect("body");
    assert!(!body.contains("epusdt_"), "{body}");
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("metrics-token-0123456780")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    let ok = app
        .client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.expect("body");
    assert!(text.contains("epusdt_build_info"), "{text}");
    app.stop().await;
}

#[test]
fn a_short_metrics_token_or_a_clashing_listener_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::epusdt(dir.path())
        .args(["config", "check"])
        .env("EPUSDT_METRICS_TOKEN", "short")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics_token"), "{err}");
    assert!(!err.contains("short"), "the token is not echoed: {err}");
    let out = common::epusdt(dir.path())
        .args(["config", "check"])
        .env("EPUSDT_HTTP_LISTEN", "127.0.0.1:18000")
        .env("EPUSDT_METRICS_LISTEN", "127.0.0.1:18000")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("metrics_listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `epusdt_queue_oldest_job_age_seconds` on each queue backend: a job due two minutes ago and not
/// started is two minutes old (Redis: it ages from its push); a job scheduled for later does not
/// count.
async fn queue_age_is_the_oldest_due_job(backend: &str) {
    use epusdt::queue::{Job, JobQueue, QueueBackend};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut redis_cleanup = None;
    let queue_backend = match backend {
        "sqlite" => {
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
            let db = epusdt::store::connect(&url).await.expect("sqlite");
            QueueBackend::Sqlite(db.get_sqlite_connection_pool().clone())
        }
        "postgres" => {
            let Some(url) = common::fresh_database(Backend::Postgres, dir.path()).await else {
                return;
            };
            let db = epusdt::store::connect(&url).await.expect("postgres");
            QueueBackend::Postgres(db.get_postgres_connection_pool().clone())
        }
        _ => {
            let Some(url) = common::redis_url() else {
                return;
            };
            redis_cleanup = Some(url.clone());
            QueueBackend::Redis(url)
        }
    };
    let name = format!(
        "metrics-age-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let queue = JobQueue::connect(queue_backend)
        .await
        .expect("queue")
        .with_queue_name(&name);
    assert_eq!(queue.oldest_due_age_secs().await.expect("age"), 0, "empty");
    let now = chrono::Utc::now();
    let job = |n: &str| Job::Expire {
        trade_id: n.to_string(),
    };
    queue
        .push(job("later"), Some(now + chrono::Duration::hours(1)))
        .await
        .expect("push");
    assert_eq!(
        queue.oldest_due_age_secs().await.expect("age"),
        0,
        "a job scheduled for later is not waiting"
    );
    queue
        .push(job("overdue"), Some(now - chrono::Duration::seconds(120)))
        .await
        .expect("push");
    if backend == "redis" {
        // apalis-redis stores a past run time as "now": the job ages from its push on.
        common::eventually(10, "the Redis job to age 2 s", || async {
            (queue.oldest_due_age_secs().await.expect("age") >= 2).then_some(())
        })
        .await;
    } else {
        let age = queue.oldest_due_age_secs().await.expect("age");
        assert!((118..=180).contains(&age), "{backend}: age {age}");
    }
    assert_eq!(queue.pending_jobs().await.expect("depth"), 2);
    if let Some(url) = redis_cleanup {
        let client = redis::Client::open(url.as_str()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("*{name}*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_age_sqlite() {
    queue_age_is_the_oldest_due_job("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_age_postgres() {
    queue_age_is_the_oldest_due_job("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_age_redis() {
    queue_age_is_the_oldest_due_job("redis").await;
}

//! GMPay replay protection: the nonce store on SQLite, PostgreSQL, MySQL and Redis (single use,
//! also under concurrency and across instances; expiry; case-sensitive nonces), the strict-mode
//! policy, failing closed when the store is down, and — ignored until the GMPay handler calls the
//! guard — the same over HTTP.
use crate::common;

use std::{collections::BTreeMap, time::Duration};

use common::Backend;
use epusdt::{
    config::Config,
    http::reply::ApiError,
    security::{
        self,
        replay::{self, NONCE_TTL_SECS, ReplayError, ReplayGuard},
    },
};
use serde_json::{Value, json};

const NOW: i64 = 1_900_000_000;

fn unique(prefix: &str) -> String {
    use rand::Rng;
    format!(
        "{prefix}{:012x}",
        rand::rng().random::<u64>() & 0xffff_ffff_ffff
    )
}

/// The single-use rules every store must follow.
async fn store_contract(guard: &ReplayGuard, second_instance: &ReplayGuard) {
    let n = unique("nonce_");
    assert_eq!(guard.check_and_store(7, &n, NOW, NOW).await, Ok(()));
    assert_eq!(
        guard.check_and_store(7, &n, NOW + 5, NOW + 5).await,
        Err(ReplayError::NonceReused)
    );
    assert_eq!(
        second_instance
            .check_and_store(7, &n, NOW + 9, NOW + 9)
            .await,
        Err(ReplayError::NonceReused),
        "another instance sharing the store sees the nonce"
    );
    // Per merchant, and case-sensitive (MySQL's default collation would fold case).
    assert_eq!(guard.check_and_store(8, &n, NOW, NOW).await, Ok(()));
    assert_eq!(
        guard.check_and_store(7, &n.to_uppercase(), NOW, NOW).await,
        Ok(())
    );
    // Shape and window are checked before the store is touched.
    for bad in ["short", "has space1", "sémaphore", &"x".repeat(65)] {
        assert_eq!(
            guard.check_and_store(7, bad, NOW, NOW).await,
            Err(ReplayError::NonceMalformed),
            "{bad}"
        );
    }
    let fresh = unique("late_");
    assert_eq!(
        guard.check_and_store(7, &fresh, NOW - 301, NOW).await,
        Err(ReplayError::TimestampOutOfWindow { skew: -301 })
    );
    assert_eq!(
        guard.check_and_store(7, &fresh, NOW + 301, NOW).await,
        Err(ReplayError::TimestampOutOfWindow { skew: 301 })
    );
    assert_eq!(
        guard.check_and_store(7, &fresh, NOW + 300, NOW).await,
        Ok(()),
        "a refused timestamp did not burn the nonce"
    );

    // Concurrent retries of one request: exactly one wins.
    let raced = unique("race_");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let g = if i % 2 == 0 {
            guard.clone()
        } else {
            second_instance.clone()
        };
        let raced = raced.clone();
        tasks.push(tokio::spawn(async move {
            g.check_and_store(9, &raced, NOW, NOW).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => ok += 1,
            Err(ReplayError::NonceReused) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
}

async fn policy(guard: &ReplayGuard) {
    let ts = NOW.to_string();
    let n = unique("policy_");
    let check = |strict, t: Option<&'static str>, nonce: Option<String>| {
        let g = guard.clone();
        async move { g.check_request(5, strict, t, nonce.as_deref(), NOW).await }
    };
    assert_eq!(check(false, None, None).await, Ok(()));
    assert_eq!(
        check(true, None, None).await,
        Err(ReplayError::Missing("timestamp"))
    );
    assert_eq!(
        guard.check_request(5, false, Some(&ts), None, NOW).await,
        Ok(()),
        "timestamp alone is still accepted from non-strict merchants"
    );
    assert_eq!(
        guard.check_request(5, true, Some(&ts), None, NOW).await,
        Err(ReplayError::Missing("nonce"))
    );
    assert_eq!(
        check(false, None, Some(n.clone())).await,
        Err(ReplayError::Missing("timestamp"))
    );
    assert_eq!(
        guard
            .check_request(5, false, Some("yesterday"), Some(&n), NOW)
            .await,
        Err(ReplayError::TimestampMalformed("yesterday".into()))
    );
    assert_eq!(
        guard.check_request(5, false, Some(""), Some(""), NOW).await,
        Ok(()),
        "empty parameters count as absent"
    );
    assert_eq!(
        guard.check_request(5, true, Some(&ts), Some(&n), NOW).await,
        Ok(())
    );
    assert_eq!(
        guard.check_request(5, true, Some(&ts), Some(&n), NOW).await,
        Err(ReplayError::NonceReused)
    );
    let e: ApiError = ReplayError::NonceReused.into();
    assert_eq!(e.code, 10009);
    assert!(
        e.message.contains("nonce was already used"),
        "{}",
        e.message
    );
}

async fn database_nonces(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(url) = common::fresh_database(backend, dir.path()).await else {
        return;
    };
    let mut config = Config::for_tests(dir.path());
    config.database_url = Some(url);
    let db = epusdt::app::open_database(&config).await.expect("migrated");
    let guard = ReplayGuard::database(db.clone());
    let other = ReplayGuard::database(epusdt::app::open_database(&config).await.expect("db"));
    store_contract(&guard, &other).await;
    policy(&guard).await;

    // Every row is kept NONCE_TTL_SECS, then purged.
    let later = NOW + NONCE_TTL_SECS;
    assert_eq!(
        replay::purge_expired(&db, later - 1).await.expect("purge"),
        0
    );
    assert_eq!(replay::purge_expired(&db, later).await.expect("purge"), 6);

    // An expired row that nobody purged yet (say, written by another instance) does not make
    // its nonce "used". Warm the guard up first so its own opportunistic purge stays idle.
    let warm = unique("warm_");
    assert_eq!(guard.check_and_store(3, &warm, later, later).await, Ok(()));
    let n = unique("again_");
    sea_orm::EntityTrait::insert(security::nonce_entity::ActiveModel {
        pid: sea_orm::Set(3),
        nonce: sea_orm::Set(n.clone()),
        expires_at: sea_orm::Set(later - 1),
        ..Default::default()
    })
    .exec_without_returning(&db)
    .await
    .expect("stale row");
    assert_eq!(
        guard.check_and_store(3, &n, later + 1, later + 1).await,
        Ok(())
    );
    assert_eq!(
        guard.check_and_store(3, &n, later + 2, later + 2).await,
        Err(ReplayError::NonceReused)
    );
    assert_eq!(
        replay::purge_expired(&db, later + 10 * NONCE_TTL_SECS)
            .await
            .expect("purge"),
        2
    );
}
on_all_backends!(database_nonces);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_nonces() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let prefix = unique("epusdt_test:nonce:");
    let instance = || {
        ReplayGuard::redis(
            security::redis_manager(Some(&url))
                .expect("url")
                .expect("some"),
            prefix.clone(),
        )
    };
    let (a, b) = (instance(), instance());
    store_contract(&a, &b).await;
    policy(&a).await;

    // Kept for 600 s.
    let n = unique("ttl_");
    a.check_and_store(1, &n, NOW, NOW).await.expect("fresh");
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}1:{n}"))
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert!((590..=600).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn a_store_that_is_down_refuses_instead_of_accepting_replays() {
    let dead = security::redis_manager(Some("redis://127.0.0.1:1/"))
        .expect("url")
        .expect("some");
    let guard = ReplayGuard::redis(dead, "x:");
    let started = std::time::Instant::now();
    let e = guard
        .check_and_store(1, "abcdefgh", NOW, NOW)
        .await
        .expect_err("fails closed");
    assert!(matches!(e, ReplayError::StoreUnavailable(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let api: ApiError = e.into();
    assert_eq!(api.code, 400);
    assert_eq!(api.message, "system error, please retry later");
}

// ---------------------------------------------------------------------------------------------
// Over HTTP. Enable once `create_gmpay` calls `state.replay.check_request(..)`.

async fn gmpay(app: &common::TestApp, secret: &str, pid: i64, extra: &[(&str, String)]) -> Value {
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    p.insert("pid", pid.to_string());
    p.insert("order_id", unique("R-"));
    p.insert("currency", "USD".into());
    p.insert("amount", "12".into());
    p.insert("notify_url", "http://127.0.0.1:9/cb".into());
    p.insert("network", "ethereum".into());
    p.insert("token", "USDT".into());
    for (k, v) in extra {
        p.insert(k, v.clone());
    }
    let mut body = serde_json::Map::new();
    for (k, v) in &p {
        body.insert(k.to_string(), json!(v));
    }
    body.insert("signature".into(), json!(common::gmpay_sign(&p, secret)));
    app.client
        .post(app.url("/payments/gmpay/v1/order/create-transaction"))
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn gmpay_refuses_replayed_requests_and_enforces_strict_mode() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let strict =
        epusdt::service::merchant::add(&app.state.db, &app.state.keys, "strict", None, None, true)
            .await
            .expect("merchant");
    let secret = strict.secret.expose().to_string();
    let now = epusdt::service::now().to_string();
    let nonce = unique("n_");

    let r = gmpay(&app, &secret, strict.pid, &[]).await;
    assert_eq!(r["status_code"], 10009, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("timestamp"),
        "{r}"
    );
    let r = gmpay(&app, &secret, strict.pid, &[("timestamp", now.clone())]).await;
    assert_eq!(r["status_code"], 10009, "{r}");
    assert!(
        r["message"].as_str().unwrap_or_default().contains("nonce"),
        "{r}"
    );

    let with_nonce = [("timestamp", now.clone()), ("nonce", nonce.clone())];
    let r = gmpay(&app, &secret, strict.pid, &with_nonce).await;
    assert_eq!(r["status_code"], 200, "{r}");
    let r = gmpay(&app, &secret, strict.pid, &with_nonce).await;
    assert_eq!(r["status_code"], 10009, "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nonce was already used"),
        "{r}"
    );
    let r = gmpay(
        &app,
        &secret,
        strict.pid,
        &[("timestamp", now), ("nonce", "bad nonce".into())],
    )
    .await;
    assert_eq!(r["status_code"], 10009, "{r}");
    app.stop().await;
}

/// A captured GMPay request re-spelt (`996170651` → `996170651E0`: the same value, so the same
/// signature) is the same request: its nonce counts as used and its order id names the same
/// order. Before, the raw text made a fresh nonce and a second order from one signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_spelt_number_is_the_same_request() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let m =
        epusdt::service::merchant::add(&app.state.db, &app.state.keys, "spell", None, None, true)
            .await
            .expect("merchant");
    let secret = m.secret.expose().to_string();
    let now = epusdt::service::now().to_string();
    let signed = |nonce: &str| {
        let mut p: BTreeMap<&str, String> = BTreeMap::new();
        p.insert("pid", m.pid.to_string());
        p.insert("order_id", "996170651".into());
        p.insert("currency", "USD".into());
        p.insert("amount", "12".into());
        p.insert("notify_url", "http://127.0.0.1:9/cb".into());
        p.insert("network", "ethereum".into());
        p.insert("token", "USDT".into());
        p.insert("timestamp", now.clone());
        p.insert("nonce", nonce.to_string());
        common::gmpay_sign(&p, &secret)
    };
    let send = |order_id: &'static str, nonce_text: String, signature: String| {
        let body = format!(
            r#"{{"pid":{},"order_id":{order_id},"currency":"USD","amount":"12","notify_url":"http://127.0.0.1:9/cb","network":"ethereum","token":"USDT","timestamp":{now},"nonce":{nonce_text},"signature":"{signature}"}}"#,
            m.pid
        );
        let app = &app;
        async move {
            app.client
                .post(app.url("/payments/gmpay/v1/order/create-transaction"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let nonce = format!("7{now}");
    let first = send("996170651", nonce.clone(), signed(&nonce)).await;
    assert_eq!(first["status_code"], 200, "{first}");

    // The captured request, numbers re-spelt: same signature, same nonce.
    let replay = send("996170651E0", format!("{nonce}E0"), signed(&nonce)).await;
    assert_eq!(replay["status_code"], 10009, "{replay}");
    assert!(
        replay["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nonce was already used"),
        "{replay}"
    );

    // A new nonce, the order id re-spelt: the same order, not a second one.
    let nonce2 = format!("8{now}");
    let again = send("996170651E0", nonce2.clone(), signed(&nonce2)).await;
    assert_eq!(again["status_code"], 200, "{again}");
    assert_eq!(
        again["data"]["trade_id"], first["data"]["trade_id"],
        "{again}"
    );
    assert_eq!(
        again["data"]["order_id"], first["data"]["order_id"],
        "{again}"
    );
    app.stop().await;
}

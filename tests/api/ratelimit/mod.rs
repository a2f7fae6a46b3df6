//! Rate limiting over real HTTP: a small axum router wrapped in the production middleware (so the
//! behaviour is tested before the app wires it), the limiter alone in-process and in Redis (two
//! limiters on one Redis share counts), Redis-down policies, config parsing, and — ignored until
//! the middleware is wired into the app — the same against the real routes.
use crate::common;

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use epusdt::security::{
    self,
    ratelimit::{
        RateLimit, RateLimitSettings, RateLimiter, RedisFailurePolicy, Rule, Source, TrustedProxies,
    },
};
use serde_json::Value;

fn settings(per_ip: u32, per_route: u32, per_merchant: u32, window_ms: u64) -> RateLimitSettings {
    RateLimitSettings {
        rate_limit_per_minute: per_ip,
        rate_limit_route_per_minute: per_route,
        rate_limit_merchant_per_minute: per_merchant,
        window: Duration::from_millis(window_ms),
        ..RateLimitSettings::default()
    }
}

fn prefix() -> String {
    use rand::Rng;
    format!("epusdt_test:{:016x}:", rand::rng().random::<u64>())
}

async fn check_status(Path(trade_id): Path<String>) -> String {
    format!("status of {trade_id}")
}

/// Stands in for a merchant handler: "verifies the signature", then counts the merchant.
async fn create(State(rl): State<RateLimit>) -> Response {
    match rl.check_merchant(1000, None).await {
        Ok(_) => (StatusCode::OK, "created").into_response(),
        Err(limited) => limited.into_response(),
    }
}

/// Serves the production middleware around dummy handlers on 127.0.0.1:0; returns the base URL.
async fn serve(rl: RateLimit) -> String {
    let router = Router::new()
        .route("/pay/check-status/{trade_id}", get(check_status))
        .route("/api/v1/order/create-transaction", post(create))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(|| async { "# metrics" }))
        .layer(axum::middleware::from_fn_with_state(
            rl.clone(),
            epusdt::http::middleware::ratelimit::middleware,
        ))
        .with_state(rl);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    format!("http://{addr}")
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn header_num(r: &reqwest::Response, name: &str) -> u64 {
    header(r, name)
        .unwrap_or_else(|| panic!("missing {name}: {:?}", r.headers()))
        .parse()
        .expect("numeric header")
}

fn client() -> reqwest::Client {
    epusdt::net::install_crypto_provider();
    reqwest::Client::new()
}

async fn get_(client: &reqwest::Client, url: String) -> reqwest::Response {
    client.get(url).send().await.expect("request")
}

// ---------------------------------------------------------------------------------------------
// The limiter alone: in-process and Redis behave the same; Redis is shared by instances.

async fn limiter_basics(limiter: RateLimiter, expect: Source) {
    let key = format!("k{}", prefix());
    let window = Duration::from_secs(60);
    for left in (0..5).rev() {
        let d = limiter.check(&key, 5, window).await;
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
        assert_eq!(d.source, expect);
        assert_eq!(d.retry_after, Duration::ZERO);
    }
    let d = limiter.check(&key, 5, window).await;
    assert!(!d.allowed);
    assert!(d.first_denial);
    assert!(
        d.retry_after > Duration::ZERO && d.retry_after <= 2 * window,
        "{d:?}"
    );
    let again = limiter.check(&key, 5, window).await;
    assert!(!again.allowed && !again.first_denial);
    // Unlimited (0) never touches the store.
    let d = limiter.check(&key, 0, window).await;
    assert!(d.allowed);
    assert_eq!(d.source, Source::Unlimited);
    // Another key is independent.
    assert!(limiter.check(&format!("{key}-b"), 5, window).await.allowed);
}

#[tokio::test]
async fn in_process_limiter_basics() {
    limiter_basics(RateLimiter::in_process(), Source::InProcess).await;
}

#[tokio::test]
async fn redis_limiter_basics() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let conn = security::redis_manager(Some(&url)).expect("redis url");
    let limiter = RateLimiter::builder()
        .redis(conn)
        .key_prefix(prefix())
        .build();
    limiter_basics(limiter, Source::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_limits_through_redis_atomically() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let p = prefix();
    let instance = || {
        RateLimiter::builder()
            .redis(security::redis_manager(Some(&url)).expect("redis url"))
            .key_prefix(p.clone())
            .build()
    };
    let (a, b) = (instance(), instance());
    // A long window, so the burst cannot straddle a window boundary.
    let window = Duration::from_secs(3600);
    // 40 concurrent requests over both instances for a limit of 25: exactly 25 admitted.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let l = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(
            async move { l.check("shared", 25, window).await },
        ));
    }
    let mut admitted = 0;
    let mut first_denials = 0;
    for t in tasks {
        let d = t.await.expect("task");
        assert_eq!(d.source, Source::Redis);
        admitted += usize::from(d.allowed);
        first_denials += usize::from(d.first_denial);
    }
    assert_eq!(admitted, 25);
    assert_eq!(
        first_denials, 1,
        "the burst is reported once across instances"
    );

    // Over HTTP: two apps on one Redis share the per-route budget.
    let rl = |limiter| RateLimit::with_limiter(settings(100, 4, 100, 60_000), limiter);
    let base_a = serve(rl(instance())).await;
    let base_b = serve(rl(instance())).await;
    let c = client();
    for base in [&base_a, &base_b, &base_a, &base_b] {
        assert_eq!(
            get_(&c, format!("{base}/pay/check-status/x"))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        get_(&c, format!("{base_a}/pay/check-status/y"))
            .await
            .status(),
        429
    );
    assert_eq!(
        get_(&c, format!("{base_b}/pay/check-status/z"))
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn a_denied_rule_costs_the_other_rules_nothing_in_redis() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let limiter = RateLimiter::builder()
        .redis(security::redis_manager(Some(&url)).expect("redis url"))
        .key_prefix(prefix())
        .build();
    let rule = |name, key: &str, limit| Rule {
        name,
        key: key.into(),
        limit,
        window: Duration::from_secs(60),
    };
    let rules = [rule("ip", "ip:1", 10), rule("route", "route:1", 1)];
    assert!(limiter.check_all(&rules).await.allowed);
    for _ in 0..3 {
        let v = limiter.check_all(&rules).await;
        assert!(!v.allowed);
        assert!(v.decisions[0].allowed && !v.decisions[1].allowed);
        assert_eq!(v.binding().map(|d| d.name), Some("route"));
    }
    let d = limiter.check("ip:1", 10, Duration::from_secs(60)).await;
    assert_eq!(
        d.remaining, 8,
        "only the admitted request and this one counted"
    );
}

/// A Redis URL where nothing listens.
fn dead_redis() -> Option<redis::aio::ConnectionManager> {
    security::redis_manager(Some("redis://127.0.0.1:1/")).expect("url")
}

#[tokio::test]
async fn redis_down_applies_the_configured_policy_quickly() {
    // fallback (default): limits still hold, counted in-process; the breaker keeps it fast.
    let fallback = RateLimiter::new(dead_redis(), RedisFailurePolicy::Fallback);
    let started = Instant::now();
    for i in 0..3 {
        let d = fallback.check("k", 3, Duration::from_secs(60)).await;
        assert!(d.allowed, "request {i}");
        assert_eq!(d.source, Source::InProcess);
    }
    assert!(
        !fallback
            .check("k", 3, Duration::from_secs(60))
            .await
            .allowed
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // allow: everything passes, and no RateLimit headers are invented.
    let allow = RateLimiter::new(dead_redis(), RedisFailurePolicy::Allow);
    for _ in 0..5 {
        let d = allow.check("k", 1, Duration::from_secs(60)).await;
        assert!(d.allowed);
        assert_eq!(d.source, Source::Unavailable);
    }

    // deny: 503 with Retry-After, not 429 — the client did nothing wrong.
    let mut s = settings(100, 100, 100, 60_000);
    s.rate_limit_redis_failure = RedisFailurePolicy::Deny;
    let base = serve(RateLimit::new(s, dead_redis(), "test")).await;
    let c = client();
    let r = get_(&c, format!("{base}/pay/check-status/x")).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(header_num(&r, "retry-after") >= 1);
    assert!(header(&r, "ratelimit-limit").is_none());
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status_code"], 503);
    assert_eq!(get_(&c, format!("{base}/health")).await.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// Config: the settings parse from TOML and from `EPUSDT_*` strings, also flattened into a
// config struct the way `Config` would hold them.

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct OuterConfig {
    queue_name: String,
    #[serde(flatten)]
    rate_limit: RateLimitSettings,
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
fn settings_parse_from_toml_and_env() {
    use figment::{
        Figment,
        providers::{Env, Format, Serialized, Toml},
    };
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "epusdt.toml",
            r#"
                rate_limit_per_minute = 500
                trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
                rate_limit_redis_failure = "deny"
                [rate_limit_routes]
                "/pay/check-status/{trade_id}" = 60
            "#,
        )?;
        let fig = || {
            Figment::from(Serialized::defaults(RateLimitSettings::default()))
                .merge(Toml::file("epusdt.toml"))
                .merge(Env::prefixed("EPUSDT_"))
        };
        let s: RateLimitSettings = fig().extract()?;
        assert_eq!(s.rate_limit_per_minute, 500);
        assert_eq!(s.rate_limit_route_per_minute, 120);
        assert_eq!(s.rate_limit_merchant_per_minute, 600);
        assert_eq!(s.rate_limit_redis_failure, RedisFailurePolicy::Deny);
        assert!(s.trusted_proxies.contains("10.9.8.7".parse().expect("ip")));
        assert_eq!(
            epusdt::security::ratelimit::route_limit(&s, "/pay/check-status/{trade_id}"),
            60
        );
        assert_eq!(s.window, Duration::from_secs(60));

        jail.set_env("EPUSDT_RATE_LIMIT_MERCHANT_PER_MINUTE", "900");
        jail.set_env("EPUSDT_TRUSTED_PROXIES", "192.168.0.0/16,::1");
        jail.set_env(
            "EPUSDT_RATE_LIMIT_ROUTES",
            "/pay/check-status/{trade_id}=30,/pay/checkout-counter/{trade_id}=10",
        );
        jail.set_env("EPUSDT_RATE_LIMIT_REDIS_FAILURE", "allow");
        let s: RateLimitSettings = fig().extract()?;
        assert_eq!(s.rate_limit_merchant_per_minute, 900);
        assert!(s.trusted_proxies.contains("::1".parse().expect("ip")));
        assert!(!s.trusted_proxies.contains("10.9.8.7".parse().expect("ip")));
        assert_eq!(
            epusdt::security::ratelimit::route_limit(&s, "/pay/checkout-counter/{trade_id}"),
            10
        );
        assert_eq!(s.rate_limit_redis_failure, RedisFailurePolicy::Allow);

        let outer: OuterConfig = Figment::from(Serialized::defaults(RateLimitSettings::default()))
            .merge(Env::prefixed("EPUSDT_"))
            .extract()?;
        assert_eq!(outer.rate_limit.rate_limit_merchant_per_minute, 900);
        assert_eq!(
            epusdt::security::ratelimit::route_limit(
                &outer.rate_limit,
                "/pay/check-status/{trade_id}"
            ),
            30
        );
        assert!(outer.queue_name.is_empty());

        jail.set_env("EPUSDT_TRUSTED_PROXIES", "10.0.0.0/99");
        let e = fig().extract::<RateLimitSettings>().expect_err("bad cidr");
        assert!(e.to_string().contains("prefix length"), "{e}");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// End to end against the real app's routes. Enable once the middleware is wired into
// `http::router` and the rate-limit keys exist in `Config`.

/// Sets config keys by name (through figment, like `Config::load`), so this compiles before the
/// keys exist in `Config`.
fn set_keys(c: &mut epusdt::Config, keys: Value) {
    use figment::{Figment, providers::Serialized};
    let token = c.api_auth_token.clone();
    let db = c.database_url.clone();
    let fig = Figment::from(Serialized::defaults(c.clone())).merge(Serialized::defaults(keys));
    *c = epusdt::Config::from_figment(fig).expect("config with keys");
    c.api_auth_token = token;
    c.database_url = db;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn real_app_limits_its_public_routes() {
    let Some(app) = common::spawn_app_with(common::Backend::Sqlite, |c| {
        set_keys(
            c,
            serde_json::json!({
                "rate_limit_per_minute": 1000,
                "rate_limit_route_per_minute": 3,
                "rate_limit_merchant_per_minute": 4,
            }),
        )
    })
    .await
    else {
        return;
    };
    let c = &app.client;
    // check-status: one route for every trade id.
    for i in 0..3 {
        let r = get_(c, app.url(&format!("/pay/check-status/T{i}"))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header_num(&r, "ratelimit-limit"), 3);
    }
    let r = get_(c, app.url("/pay/check-status/T9")).await;
    assert_eq!(r.status(), 429);
    assert!(header_num(&r, "retry-after") >= 1);
    // The checkout page is its own route with its own budget.
    let r = get_(c, app.url("/pay/checkout-counter/nope")).await;
    assert_ne!(r.status(), 429);
    assert!(header(&r, "ratelimit-limit").is_some());
    // Health is exempt.
    for _ in 0..5 {
        assert_eq!(get_(c, app.url("/health")).await.status(), 200);
    }
    // v1 create: no per-route limit on the merchant API; the merchant limit (4) binds.
    for i in 0..4 {
        let r = common::create_v1(
            &app,
            &[
                ("order_id", &format!("RL-{i}")),
                ("amount", "10"),
                ("notify_url", "http://127.0.0.1:9/cb"),
            ],
        )
        .await;
        assert_eq!(r["status_code"], 200, "{r}");
    }
    let mut body = serde_json::Map::new();
    let mut p = std::collections::BTreeMap::new();
    for (k, v) in [
        ("order_id", "RL-X"),
        ("amount", "10"),
        ("notify_url", "http://127.0.0.1:9/cb"),
    ] {
        p.insert(k, v.to_string());
        body.insert(k.into(), Value::from(v));
    }
    body.insert("amount".into(), serde_json::json!(10));
    body.insert(
        "signature".into(),
        Value::from(common::v1_sign(&p, common::TOKEN)),
    );
    let r = c
        .post(app.url("/api/v1/order/create-transaction"))
        .json(&body)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 429);
    assert!(
        header(&r, "ratelimit")
            .unwrap_or_default()
            .starts_with("\"merchant\""),
        "{:?}",
        r.headers()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn real_app_counts_in_redis_when_configured() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let Some(app) = common::spawn_app_with(common::Backend::Sqlite, |c| {
        c.redis_url = Some(url.clone());
        set_keys(c, serde_json::json!({ "rate_limit_route_per_minute": 2 }));
    })
    .await
    else {
        return;
    };
    let c = &app.client;
    for _ in 0..2 {
        assert_eq!(get_(c, app.url("/pay/check-status/x")).await.status(), 200);
    }
    assert_eq!(get_(c, app.url("/pay/check-status/y")).await.status(), 429);
    // The counters are in Redis, namespaced by the deployment's queue_name.
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("epusdt:{}:rl:*", app.config.queue_name))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(
        keys.iter()
            .any(|k| k.ends_with(":route:127.0.0.1:/pay/check-status/{trade_id}")),
        "{keys:?}"
    );
    app.stop().await;
}

/// A private `redis-server` on a free port, killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: u16) -> Option<Self> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let up = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        up.then_some(Self { child, port })
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_while_redis_is_down_and_returns_to_it_when_it_is_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let Some(server) = PrivateRedis::start(port) else {
        common::skip("no redis-server binary to stop and restart");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", server.port);
    let limiter = RateLimiter::builder()
        .redis(security::redis_manager(Some(&url)).expect("url"))
        .redis_retry_after(Duration::from_millis(300))
        .build();
    let window = Duration::from_secs(3600);
    assert_eq!(limiter.check("a", 100, window).await.source, Source::Redis);

    drop(server);
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            limiter.check("a", 100, window).await.source,
            Source::InProcess
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the breaker keeps an outage cheap: {:?}",
        started.elapsed()
    );

    let _server = PrivateRedis::start(port).expect("restarted");
    let back = common::eventually(10, "the limiter to use redis again", || {
        let l = limiter.clone();
        async move {
            let d = l.check("a", 100, window).await;
            (d.source == Source::Redis).then_some(d)
        }
    })
    .await;
    // The restarted Redis is empty: counting starts over there.
    assert_eq!(back.remaining, 99);
}

mod routes;

//! The rate-limit middleware in front of a router: route, IP and merchant limits, trusted
//! proxies, unlimited health and metrics, and one audit line per burst.
use super::*;

#[tokio::test]
async fn route_limit_counts_every_trade_id_as_one_route_and_answers_429() {
    let base = serve(RateLimit::with_limiter(
        settings(100, 3, 100, 1000),
        RateLimiter::in_process(),
    ))
    .await;
    let c = client();
    for (i, left) in [2u64, 1, 0].into_iter().enumerate() {
        let r = get_(&c, format!("{base}/pay/check-status/T{i}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header_num(&r, "ratelimit-limit"), 3);
        assert_eq!(header_num(&r, "ratelimit-remaining"), left);
        assert!(header_num(&r, "ratelimit-reset") >= 1);
        assert_eq!(
            header(&r, "ratelimit-policy").as_deref(),
            Some("\"ip\";q=100;w=1, \"route\";q=3;w=1")
        );
        assert!(header(&r, "retry-after").is_none());
    }
    let r = get_(&c, format!("{base}/pay/check-status/another")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = header_num(&r, "retry-after");
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    assert_eq!(header_num(&r, "ratelimit-remaining"), 0);
    assert_eq!(header_num(&r, "ratelimit-limit"), 3);
    assert!(
        header(&r, "ratelimit")
            .unwrap_or_default()
            .starts_with("\"route\";r=0;t="),
        "{:?}",
        r.headers()
    );
    assert!(
        header(&r, "content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status_code"], 429);
    assert_eq!(
        body["message"],
        format!("too many requests: retry after {retry} s")
    );
    assert!(body["data"].is_null());
    assert_eq!(body["request_id"].as_str().map(str::len), Some(32));

    // Retry-After is honest: after waiting it, a request is admitted again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let r = get_(&c, format!("{base}/pay/check-status/T9")).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn health_and_metrics_are_never_limited() {
    let base = serve(RateLimit::with_limiter(
        settings(1, 1, 1, 60_000),
        RateLimiter::in_process(),
    ))
    .await;
    let c = client();
    assert_eq!(
        get_(&c, format!("{base}/pay/check-status/x"))
            .await
            .status(),
        200
    );
    assert_eq!(
        get_(&c, format!("{base}/pay/check-status/x"))
            .await
            .status(),
        429
    );
    for _ in 0..5 {
        for path in ["/health", "/metrics"] {
            let r = get_(&c, format!("{base}{path}")).await;
            assert_eq!(r.status(), 200, "{path}");
            assert!(header(&r, "ratelimit-limit").is_none());
        }
    }
}

#[tokio::test]
async fn ip_limit_spans_routes_and_404s_are_limited_too() {
    let base = serve(RateLimit::with_limiter(
        settings(3, 100, 100, 60_000),
        RateLimiter::in_process(),
    ))
    .await;
    let c = client();
    assert_eq!(
        get_(&c, format!("{base}/pay/check-status/a"))
            .await
            .status(),
        200
    );
    assert_eq!(get_(&c, format!("{base}/nope/1")).await.status(), 404);
    let r = get_(&c, format!("{base}/nope/2")).await;
    assert_eq!(r.status(), 404);
    assert_eq!(header_num(&r, "ratelimit-remaining"), 0);
    let r = get_(&c, format!("{base}/wp-login.php")).await;
    assert_eq!(r.status(), 429);
    let r = get_(&c, format!("{base}/pay/check-status/a")).await;
    assert_eq!(r.status(), 429);
    assert!(
        header(&r, "ratelimit")
            .unwrap_or_default()
            .starts_with("\"ip\";"),
        "the per-IP rule is the binding one: {:?}",
        r.headers()
    );
}

#[tokio::test]
async fn forwarding_headers_are_believed_only_from_trusted_proxies() {
    let c = client();
    // Untrusted peer: a made-up X-Forwarded-For does not buy a fresh budget.
    let base = serve(RateLimit::with_limiter(
        settings(2, 100, 100, 60_000),
        RateLimiter::in_process(),
    ))
    .await;
    for (i, expect) in [200, 200, 429].into_iter().enumerate() {
        let r = c
            .get(format!("{base}/pay/check-status/a"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .header("x-real-ip", format!("198.51.100.{i}"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), expect, "request {i}");
    }

    // Trusted proxy (the test client is 127.0.0.1): each forwarded client has its own budget,
    // and only the rightmost untrusted hop counts — a client cannot pick its own address.
    let mut s = settings(2, 100, 100, 60_000);
    s.trusted_proxies = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").expect("cidrs");
    let base = serve(RateLimit::with_limiter(s, RateLimiter::in_process())).await;
    let send = |xff: &'static str| {
        c.get(format!("{base}/pay/check-status/a"))
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(send("198.51.100.7").await.expect("req").status(), 200);
    assert_eq!(
        send("198.51.100.7, 10.1.2.3").await.expect("req").status(),
        200
    );
    assert_eq!(
        send("1.1.1.1, 198.51.100.7").await.expect("req").status(),
        429
    );
    assert_eq!(send("198.51.100.8").await.expect("req").status(), 200);
    let r = c
        .get(format!("{base}/pay/check-status/a"))
        .header("x-real-ip", "198.51.100.9")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
    assert_eq!(header_num(&r, "ratelimit-remaining"), 1);
}

#[tokio::test]
async fn merchant_routes_are_bound_by_the_merchant_limit_not_the_route_limit() {
    let base = serve(RateLimit::with_limiter(
        settings(100, 2, 5, 60_000),
        RateLimiter::in_process(),
    ))
    .await;
    let c = client();
    for i in 0..5 {
        let r = c
            .post(format!("{base}/api/v1/order/create-transaction"))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 200, "create {i}");
    }
    let r = c
        .post(format!("{base}/api/v1/order/create-transaction"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 429);
    assert!(
        header(&r, "ratelimit")
            .unwrap_or_default()
            .starts_with("\"merchant\";r=0"),
        "{:?}",
        r.headers()
    );
    assert!(header_num(&r, "retry-after") >= 1);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status_code"], 429);
}

/// Collects what the audit target writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_burst_is_audited_once_per_key_per_window_not_per_request() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("epusdt::audit=warn"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let base = serve(RateLimit::with_limiter(
        settings(100, 2, 100, 60_000),
        RateLimiter::in_process(),
    ))
    .await;
    let c = client();
    let mut limited = 0;
    for _ in 0..12 {
        if get_(&c, format!("{base}/pay/check-status/a"))
            .await
            .status()
            == 429
        {
            limited += 1;
        }
    }
    assert_eq!(limited, 10);
    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf8");
    assert_eq!(
        text.matches("rate-limit burst").count(),
        1,
        "one audit line for ten refusals:\n{text}"
    );
    assert!(
        text.contains(
            "route limit of 2 per 60 s reached by 127.0.0.1 on /pay/check-status/{trade_id}"
        ),
        "{text}"
    );
}

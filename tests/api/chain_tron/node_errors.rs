//! The TRON watcher against misbehaving nodes: wrong decimals or contract, no constant calls, bad API keys, errors in HTTP 200 and rate limits.
use super::*;

/// The token contract's `decimals()` (asked with `triggerconstantcontract`, as java-tron
/// answers it) must match `networks.tron.decimals`, and the contract must exist: otherwise
/// the gateway refuses to start with an error naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_decimals_or_contract_refuse_to_start() {
    let mock = TronMock::start().await;
    mock.with(|c| c.decimals = 18);
    for (nc, needle) in [
        (
            NetworkConfig {
                rpc_urls: vec![mock.url.clone()],
                ..Default::default()
            },
            "networks.tron.decimals is 6 but the token contract TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t reports 18",
        ),
        (
            NetworkConfig {
                rpc_urls: vec![mock.url.clone()],
                decimals: Some(18),
                usdt_contract: Some(tron_from_hex(WALLET_HEX).unwrap()),
                ..Default::default()
            },
            "Smart contract is not exist.); fix networks.tron.usdt_contract",
        ),
    ] {
        let (mut config, _dir) = common::test_config(Backend::Sqlite).await.unwrap();
        config.networks.insert("tron".into(), nc);
        let err = match epusdt::App::build(config).await {
            Ok(_) => panic!("must refuse to start"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(needle), "{err}");
    }
    // The check is a real call with the shape java-tron needs.
    let asked = mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("triggerconstantcontract"))
        .expect("decimals() was asked");
    assert_eq!(asked.body["function_selector"], "decimals()");
    assert_eq!(asked.body["contract_address"], format!("41{USDT_HEX}"));
    assert!(
        asked.body["owner_address"]
            .as_str()
            .is_some_and(|o| !o.is_empty())
    );
}

/// The start-up check could not reach the node (java-tron's `{"Error": …}`), so the gateway
/// started; the watcher checks again before its first scan, finds the mismatch and stops as
/// `failed` with the same error, scanning nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_mismatch_found_by_the_watcher_stops_it() {
    let mock = TronMock::start().await;
    mock.with(|c| {
        c.decimals = 18;
        c.error_next = 1;
    });
    let url = mock.url.clone();
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.networks.insert(
            "tron".into(),
            NetworkConfig {
                rpc_urls: vec![url],
                poll_interval_ms: Some(100),
                ..Default::default()
            },
        );
    })
    .await
    else {
        return;
    };
    let h = common::eventually(20, "the watcher to stop on the decimals", || async {
        let h: Value = app
            .client
            .get(app.url("/health"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (h["chains"]["tron"]["role"] == "failed").then_some(h)
    })
    .await;
    assert!(
        h["chains"]["tron"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("networks.tron.decimals is 6 but the token contract")),
        "{h}"
    );
    assert!(
        !mock
            .requests()
            .iter()
            .any(|r| r.path.ends_with("gettransactioninfobyblocknum")),
        "nothing is scanned with wrong decimals"
    );
    assert_eq!(chain_support::cursor(&app.state.db, "tron").await, None);
    app.stop().await;
}

/// A node run with `vm.supportConstant = false` refuses constant calls ("this node does not
/// support constant"): decimals cannot be checked, which is no reason to stop watching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_without_constant_calls_still_scans() {
    let mock = TronMock::start().await;
    mock.with(|c| c.no_constant_calls = true);
    let url = mock.url.clone();
    let Some(s) = start_app(Backend::Sqlite, mock, vec![url], |_| {}).await else {
        return;
    };
    let (trade_id, amount, _) =
        chain_support::create_order(&s.app, "T-C", "100", "usdt.trc20", &s.notify).await;
    let txid = "c5".repeat(32);
    s.mock.push_block(vec![payment(&txid, &amount)], 0);
    let calls = s.merchant.wait_for(1, 20).await;
    assert_paid_callback(&calls[0].body, &trade_id, &txid);
    assert!(
        s.mock
            .requests()
            .iter()
            .any(|r| r.path.ends_with("triggerconstantcontract"))
    );
    s.app.stop().await;
}

/// TronGrid answers an unknown API key with HTTP 401 `{"Error":"ApiKey not exists"}`: a
/// configuration error, named as such — at start-up (refuse to start) and when the key is
/// revoked later (the watcher stops as `failed`, it does not retry forever).
async fn bad_api_key_is_a_configuration_error(backend: Backend) {
    let mock = TronMock::start().await;
    mock.with(|c| c.api_keys = Some(vec!["good-key".into()]));
    let Some((mut config, _dir)) = common::test_config(backend).await else {
        return;
    };
    config.networks.insert(
        "tron".into(),
        NetworkConfig {
            rpc_urls: vec![mock.url.clone()],
            api_key: Some(Secret::new("test-key")),
            ..Default::default()
        },
    );
    let err = match epusdt::App::build(config).await {
        Ok(_) => panic!("must refuse to start with an unknown API key"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("networks.tron.api_key"), "{err}");
    assert!(err.contains("ApiKey not exists"), "{err}");

    // Accepted at start, revoked later.
    mock.with(|c| c.api_keys = Some(vec!["test-key".into()]));
    let url = mock.url.clone();
    let Some(s) = start_app(backend, mock, vec![url], |_| {}).await else {
        return;
    };
    let since = s.mock.request_count();
    s.mock
        .with(|c| c.api_keys = Some(vec!["another-key".into()]));
    let h = common::eventually(20, "the watcher to stop on the revoked key", || async {
        let h: Value = s
            .app
            .client
            .get(s.app.url("/health"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (h["chains"]["tron"]["role"] == "failed").then_some(h)
    })
    .await;
    let error = h["chains"]["tron"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("networks.tron.api_key"), "{h}");
    assert!(!error.contains("rate limited"), "{h}");
    // Stopped: no more requests after the refusal.
    let n = s.mock.request_count();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(s.mock.request_count(), n, "the watcher keeps calling");
    assert!(s.mock.requests_since(since).iter().any(|r| r.status == 401));
    s.app.stop().await;
}
on_sqlite_and_postgres!(bad_api_key_is_a_configuration_error);

/// java-tron answers exceptions with HTTP 200 and `{"Error": "class java.lang.… : …"}`: every
/// such answer fails the round (shown in `/health` as the node's error), nothing advances,
/// and the payment is credited once the node answers again.
async fn node_error_with_http_200(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return;
    };
    let (trade_id, amount, _) =
        chain_support::create_order(&s.app, "T-E", "100", "usdt.trc20", &s.notify).await;
    let cursor_before = chain_support::cursor(&s.app.state.db, "tron")
        .await
        .unwrap();
    s.mock.with(|c| c.error_next = usize::MAX);
    let txid = "e0".repeat(32);
    s.mock.push_block(vec![payment(&txid, &amount)], 0);
    let h = common::eventually(10, "the node's error in /health", || async {
        let h: Value = s
            .app
            .client
            .get(s.app.url("/health"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        h["chains"]["tron"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("NullPointerException"))
            .then_some(h)
    })
    .await;
    assert_ne!(h["chains"]["tron"]["role"], "failed", "{h}");
    assert_eq!(
        chain_support::cursor(&s.app.state.db, "tron")
            .await
            .unwrap(),
        cursor_before
    );
    assert_eq!(chain_support::order_status(&s.app, &trade_id).await, 1);
    s.mock.with(|c| c.error_next = 0);
    let calls = s.merchant.wait_for(1, 40).await;
    assert_paid_callback(&calls[0].body, &trade_id, &txid);
    s.app.stop().await;
}
on_sqlite_and_postgres!(node_error_with_http_200);

/// TronGrid's rate limits: 403 "… suspended for 30s" (no key) and 503 (a key over its
/// quota), here with `Retry-After: 2`. Both back off for at least what the provider asked,
/// neither is a configuration error, and the payment is credited afterwards.
async fn rate_limit_honours_retry_after(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return;
    };
    let (trade_id, amount, _) =
        chain_support::create_order(&s.app, "T-R", "100", "usdt.trc20", &s.notify).await;
    for status in [403, 503] {
        let since = s.mock.request_count();
        s.mock.with(|c| {
            c.limit = chain_support::tron_mock::Limit {
                status,
                body: chain_support::tron_mock::SUSPENDED.into(),
                retry_after: Some(2),
            };
            c.rate_limit_next = 1;
        });
        common::eventually(20, "a request after the rate limit", || async {
            let reqs = s.mock.requests_since(since);
            let limited = reqs.iter().position(|r| r.status == status)?;
            let next = reqs.get(limited + 1)?;
            Some(next.at - reqs[limited].at)
        })
        .await;
        let reqs = s.mock.requests_since(since);
        let limited = reqs.iter().position(|r| r.status == status).unwrap();
        let gap = reqs[limited + 1].at - reqs[limited].at;
        assert!(
            gap >= std::time::Duration::from_millis(1900),
            "HTTP {status} with Retry-After: 2 was retried after {gap:?}"
        );
    }
    let txid = "4e".repeat(32);
    s.mock.push_block(vec![payment(&txid, &amount)], 0);
    let calls = s.merchant.wait_for(1, 30).await;
    assert_paid_callback(&calls[0].body, &trade_id, &txid);
    s.app.stop().await;
}
on_sqlite_and_postgres!(rate_limit_honours_retry_after);

//! The admin dashboard's operational numbers: the job queue's depth in `/stats`, and per network
//! in `/chains` the RPC URL the watcher uses now — after a failover the working one, redacted
//! (a provider's key in the path never shows).
use crate::chain_support::tron_mock::TronMock;
use crate::common;

use common::Backend;
use epusdt::{config::NetworkConfig, service::admin::Role};
use serde_json::Value;

use crate::admin_auth::{OWNER_PW, access, add_admin, call};

async fn stats_queue_depth_and_active_rpc_url(backend: Backend) {
    let mock = TronMock::start().await;
    let url = mock.url.clone();
    // The first URL is dead and carries a key in its path: the watcher fails over to the mock.
    let dead = format!("http://127.0.0.1:{}/v1/SECRETKEY123", common::free_port());
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.networks.insert(
            "tron".into(),
            NetworkConfig {
                rpc_urls: vec![dead, url],
                poll_interval_ms: Some(100),
                ..Default::default()
            },
        );
    })
    .await
    else {
        return;
    };
    add_admin(&app, "alice", Role::Viewer, OWNER_PW).await;
    let token = access(&app, "alice", OWNER_PW).await;
    let t = Some(token.as_str());

    let expected = epusdt::redact::rpc_url(&mock.url);
    let chains: Value = common::eventually(20, "the watcher to use the working URL", || async {
        let (s, v) = call(&app, "GET", "/admin/api/v1/chains", t, None).await;
        (s == 200 && v["chains"]["tron"]["rpc_url"] == expected.as_str()).then_some(v)
    })
    .await;
    assert!(!chains.to_string().contains("SECRETKEY123"), "{chains}");

    // Queue depth: a number, and it counts a job pushed for later.
    let (s, st) = call(&app, "GET", "/admin/api/v1/stats", t, None).await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(
        st["queue"]["backend"],
        app.state.queue.backend_name(),
        "{st}"
    );
    let before = st["queue"]["pending_jobs"].as_u64().expect("a count");
    app.state
        .queue
        .push(
            epusdt::queue::Job::Notify {
                order_id: 999_999,
                attempt: 1,
            },
            Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        )
        .await
        .unwrap();
    let (_, st) = call(&app, "GET", "/admin/api/v1/stats", t, None).await;
    assert_eq!(
        st["queue"]["pending_jobs"].as_u64(),
        Some(before + 1),
        "{st}"
    );
    app.stop().await;
}
on_all_backends!(stats_queue_depth_and_active_rpc_url);

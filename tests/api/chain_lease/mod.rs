//! The scanning lease with the real binary on a real anvil node, on SQLite and PostgreSQL:
//! the instance that scans is killed (SIGKILL: no graceful release, its lease row stays) and
//! - a standby on the same database takes over within a few seconds of the lease's expiry, and
//!   a payment made meanwhile is credited and called back;
//! - the same instance restarted on its data dir resumes its own lease at once (stable
//!   instance identity in `<data_dir>/instance_id`), while a second process started on the
//!   same data dir by mistake stands by instead of sharing that identity.
//!
//! anvil comes from `tools/test.sh` or `EPUSDT_ANVIL`; without it these tests skip, unless
//! `EPUSDT_TEST_REQUIRE_SERVICES=1`.
use crate::chain_support;
use crate::common;

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chain_support::{ACCOUNTS, Anvil, units};
use common::Backend;
use serde_json::{Value, json};

const MASTER_KEY: &str = "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";

/// One chain: anvil with the token, the shared database (wallet = anvil account 1).
struct Chain {
    anvil: Anvil,
    token: String,
    db_url: String,
    db: sea_orm::DatabaseConnection,
    dir: tempfile::TempDir,
}

async fn chain(backend: Backend) -> Option<Chain> {
    epusdt::net::install_crypto_provider();
    let anvil = Anvil::start().await?;
    let token = anvil.deploy_token(6).await;
    anvil.mine(5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = common::fresh_database(backend, dir.path()).await?;
    let mut config = epusdt::config::Config::for_tests(&dir.path().join("setup"));
    config.database_url = Some(db_url.clone());
    let db = epusdt::app::open_database(&config).await.expect("database");
    epusdt::service::wallet::add(
        &db,
        &epusdt::domain::network::Networks::presets(),
        "ethereum",
        ACCOUNTS[1],
        None,
        "anvil-1",
    )
    .await
    .expect("wallet");
    Some(Chain {
        anvil,
        token,
        db_url,
        db,
        dir,
    })
}

/// A running `epusdt serve`, killed (SIGKILL) on drop.
struct Gateway {
    child: Child,
    port: u16,
    data_dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts `epusdt serve` with its data dir `data_dir` on the chain's database, watching
    /// ethereum on anvil (2 confirmations, 100 ms polls), with `extra` env settings.
    async fn start(c: &Chain, data_dir: &Path, extra: &[(&str, &str)]) -> Gateway {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let port = common::free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        let mut cmd = common::epusdt(c.dir.path());
        cmd.env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .env("EPUSDT_DATA_DIR", data_dir)
            .env("EPUSDT_DATABASE_URL", &c.db_url)
            .env("EPUSDT_MASTER_KEY", MASTER_KEY)
            .env("EPUSDT_API_AUTH_TOKEN", common::TOKEN)
            .env("EPUSDT_FORCED_USDT_RATE", "7.2")
            .env("EPUSDT_ALLOW_PRIVATE_CALLBACKS", "true")
            .env("EPUSDT_LOG_LEVEL", "info")
            .env("EPUSDT_NETWORKS__ETHEREUM__RPC_URLS", &c.anvil.url)
            .env("EPUSDT_NETWORKS__ETHEREUM__CHAIN_ID", "31337")
            .env("EPUSDT_NETWORKS__ETHEREUM__USDT_CONTRACT", &c.token)
            .env("EPUSDT_NETWORKS__ETHEREUM__DECIMALS", "6")
            .env("EPUSDT_NETWORKS__ETHEREUM__CONFIRMATIONS", "2")
            .env("EPUSDT_NETWORKS__ETHEREUM__POLL_INTERVAL_MS", "100")
            .env("EPUSDT_NETWORKS__ETHEREUM__REQUEST_TIMEOUT_SECS", "5");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("serve")
            .stdout(Stdio::from(log.try_clone().expect("dup")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start epusdt");
        common::wait_listening(port).await;
        Gateway {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The ethereum watcher's role in `/health` (`active`, `standby`, `starting`, ...).
    async fn role(&self) -> Option<String> {
        let h: Value = reqwest::Client::new()
            .get(self.url("/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        h["chains"]["ethereum"]["role"].as_str().map(String::from)
    }

    async fn wait_role(&self, role: &str, secs: u64) {
        common::eventually(secs, &format!("role {role}"), || async {
            (self.role().await.as_deref() == Some(role)).then_some(())
        })
        .await;
    }

    /// SIGKILL: no graceful shutdown, the lease row stays in the database.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// A v1 order for 100 CNY (13.89 USDT); returns (trade id, amount, address).
    async fn create_order(&self, order_id: &str, notify_url: &str) -> (String, String, String) {
        let mut params: BTreeMap<&str, String> = BTreeMap::new();
        params.insert("order_id", order_id.into());
        params.insert("amount", "100".into());
        params.insert("notify_url", notify_url.into());
        params.insert("trade_type", "usdt.erc20".into());
        let sig = common::v1_sign(&params, common::TOKEN);
        let reply = common::post_json(
            &reqwest::Client::new(),
            &self.url("/api/v1/order/create-transaction"),
            &json!({"order_id": order_id, "amount": 100, "notify_url": notify_url,
                    "trade_type": "usdt.erc20", "signature": sig}),
        )
        .await;
        assert_eq!(reply["status_code"], 200, "{reply}");
        let d = &reply["data"];
        (
            d["trade_id"].as_str().expect("trade id").to_string(),
            d["actual_amount"].to_string(),
            d["token"].as_str().expect("address").to_string(),
        )
    }
}

/// The order paid in the database and exactly one transfer recorded for `tx`.
async fn assert_paid_once(db: &sea_orm::DatabaseConnection, trade_id: &str, tx: &str) {
    let order = epusdt::service::order::find_by_trade_id(db, trade_id)
        .await
        .expect("read order")
        .expect("order");
    assert_eq!(order.status.code(), 2, "order paid");
    let rows: Vec<_> = chain_support::transfers(db, "ethereum")
        .await
        .into_iter()
        .filter(|t| t.tx_hash == tx)
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].kind, "matched");
}

/// The scanning instance is SIGKILLed (its lease row stays); with the default lease TTL a
/// standby takes over within a few seconds of the lease's expiry, and a payment made right
/// after the kill is credited and called back.
async fn standby_takes_over_after_the_holder_is_killed(backend: Backend) {
    let Some(c) = chain(backend).await else {
        return;
    };
    let a = Gateway::start(&c, &c.dir.path().join("a"), &[]).await;
    a.wait_role("active", 20).await;
    let b = Gateway::start(&c, &c.dir.path().join("b"), &[]).await;
    b.wait_role("standby", 20).await;
    assert_eq!(a.role().await.as_deref(), Some("active"));

    let (merchant, murl) = common::Merchant::start(0, "ok").await;
    a.kill();
    let killed = Instant::now();
    let (trade_id, amount, address) = b.create_order("T-1", &format!("{murl}/notify")).await;
    assert_eq!(address, ACCOUNTS[1]);
    let (tx, _) = c
        .anvil
        .transfer(&c.token, &address, units(&amount, 6))
        .await;
    c.anvil.mine(2).await;
    merchant.wait_for(1, 90).await;
    let took = killed.elapsed();
    eprintln!("kill → payment called back by the standby: {took:?}");
    // Default TTL (10 s) + a few seconds to notice and scan.
    assert!(
        took < Duration::from_secs(16),
        "the standby took {took:?} to take over and credit (lease TTL too long, or it waits too long between attempts)"
    );
    assert_eq!(b.role().await.as_deref(), Some("active"));
    assert_paid_once(&c.db, &trade_id, &tx).await;
    drop(b);
}
on_sqlite_and_postgres!(standby_takes_over_after_the_holder_is_killed);

/// The scanning instance is SIGKILLed and restarted on the same data dir: it resumes its own
/// lease at once (not after the 60 s TTL) and credits a payment made while it was down. A
/// second process started on that data dir meanwhile stands by (never shares the identity).
async fn restarted_instance_resumes_its_own_lease_at_once(backend: Backend) {
    let Some(c) = chain(backend).await else {
        return;
    };
    let ttl = [("EPUSDT_NETWORKS__ETHEREUM__LEASE_TTL_SECS", "60")];
    let data = c.dir.path().join("a");
    let a = Gateway::start(&c, &data, &ttl).await;
    a.wait_role("active", 20).await;
    let (merchant, murl) = common::Merchant::start(0, "ok").await;
    let (trade_id, amount, address) = a.create_order("R-1", &format!("{murl}/notify")).await;
    a.kill();

    let (tx, _) = c
        .anvil
        .transfer(&c.token, &address, units(&amount, 6))
        .await;
    c.anvil.mine(2).await;
    let restarted = Instant::now();
    let a = Gateway::start(&c, &data, &ttl).await;
    merchant.wait_for(1, 90).await;
    let took = restarted.elapsed();
    eprintln!("restart → payment called back: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "the restarted instance took {took:?} (lease TTL 60 s): it did not resume its own lease"
    );
    assert_eq!(a.role().await.as_deref(), Some("active"));
    assert_paid_once(&c.db, &trade_id, &tx).await;

    // The identity file: created once, private.
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(a.data_dir.join("instance_id")).expect("instance_id file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    // A second process on the same data dir by mistake: it must not scan as the same owner.
    let twin = Gateway::start(&c, &data, &ttl).await;
    twin.wait_role("standby", 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(twin.role().await.as_deref(), Some("standby"));
    assert_eq!(a.role().await.as_deref(), Some("active"));
    drop(twin);
    drop(a);
}
on_sqlite_and_postgres!(restarted_instance_resumes_its_own_lease_at_once);

/// The scanning instance's node answers slowly (every RPC call takes longer than the 3 s lease
/// TTL): its lease is renewed in the background, so the standby on the same database never
/// takes over while the holder is alive and busy.
async fn a_slow_node_does_not_let_the_lease_lapse(backend: Backend) {
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let proxy = chain_support::Proxy::start(anvil.port, true).await;
    let token = anvil.deploy_token(6).await;
    anvil.mine(5).await;
    let Some(holder) = common::spawn_app_with(backend, |c| {
        let mut nc = chain_support::evm_network(vec![proxy.url.clone()], &token, 6);
        nc.lease_ttl_secs = Some(3);
        c.networks.insert("ethereum".into(), nc);
    })
    .await
    else {
        return;
    };
    let role = |app: &common::TestApp| {
        let url = app.url("/health");
        async move {
            let h: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
            h["chains"]["ethereum"]["role"].as_str().map(String::from)
        }
    };
    common::eventually(20, "the first instance to scan", || async {
        (role(&holder).await.as_deref() == Some("active")).then_some(())
    })
    .await;
    proxy.set_delay_ms(3_500);
    // The second instance reaches the node directly; it shares the database (and data dir).
    let mut config = holder.config.clone();
    config
        .networks
        .get_mut("ethereum")
        .expect("ethereum")
        .rpc_urls = vec![anvil.url.clone()];
    let standby = common::spawn_with(config, holder.dir.clone()).await;
    let started = Instant::now();
    let mut seen_standby = false;
    while started.elapsed() < Duration::from_secs(10) {
        let r = role(&standby).await;
        assert_ne!(
            r.as_deref(),
            Some("active"),
            "the standby took over from a live holder after {:?}",
            started.elapsed()
        );
        seen_standby |= r.as_deref() == Some("standby");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(seen_standby);
    assert_eq!(role(&holder).await.as_deref(), Some("active"));
    proxy.set_delay_ms(0);
    standby.stop().await;
    holder.stop().await;
}
on_sqlite_and_postgres!(a_slow_node_does_not_let_the_lease_lapse);

/// A scanner whose configuration does not match the chain.
struct Misconfigured;

impl epusdt::chain::Scanner for Misconfigured {
    async fn prepare(&self) -> Result<(), epusdt::chain::ScanError> {
        Err(epusdt::chain::ScanError::Fatal(
            "networks.ethereum.chain_id is 1 but the RPC reports chain id 31337".into(),
        ))
    }
    async fn heads(&self) -> Result<epusdt::chain::Heads, epusdt::chain::ScanError> {
        Err(epusdt::chain::ScanError::Unavailable("unused".into()))
    }
    async fn block_hash(&self, _: u64) -> Result<String, epusdt::chain::ScanError> {
        Err(epusdt::chain::ScanError::Unavailable("unused".into()))
    }
    async fn scan(
        &self,
        _: u64,
        _: u64,
        _: &HashSet<String>,
    ) -> Result<epusdt::chain::ScanBatch, epusdt::chain::ScanError> {
        Err(epusdt::chain::ScanError::Unavailable("unused".into()))
    }
}

/// A watcher stopped by a configuration error gives its lease up (its heartbeat stops), so an
/// instance with a working configuration can scan.
async fn a_failed_watcher_releases_its_lease(backend: Backend) {
    let Some(app) = common::spawn_app(backend).await else {
        return;
    };
    let mut config = app.config.clone();
    let mut nc =
        chain_support::evm_network(vec!["http://127.0.0.1:1".into()], common::EVM_WALLET, 6);
    nc.lease_ttl_secs = Some(2);
    config.networks.insert("ethereum".into(), nc);
    let settings = config.chains().expect("chains").remove(0);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(
        epusdt::chain::Watcher::new(Misconfigured, settings, &chain_support::deps(&app))
            .run(stop_rx),
    );
    let lease_row = || async {
        use epusdt::store::entities::setting;
        use sea_orm::EntityTrait;
        setting::Entity::find_by_id("chain_lease:ethereum")
            .one(&app.state.db)
            .await
            .expect("read lease")
    };
    common::eventually(10, "the watcher to fail", || async {
        let s = app.state.chains.snapshot();
        (s.get("ethereum").map(|c| c.role) == Some("failed")).then_some(())
    })
    .await;
    // Released, and not taken again while the watcher sits failed (longer than the TTL).
    common::eventually(5, "the lease to be released", || async {
        lease_row().await.is_none().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lease_row().await, None);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("watcher stops")
        .expect("watcher task");
    app.stop().await;
}
on_sqlite_and_postgres!(a_failed_watcher_releases_its_lease);

mod reorg;

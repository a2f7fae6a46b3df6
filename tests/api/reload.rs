//! SIGHUP reload against the real binary: a changed `epusdt.toml` is applied while serving (a
//! forced rate shows in the next order's amount, a lowered route limit answers 429, a
//! restart-only key is reported and not applied), and a broken file is refused with the running
//! configuration kept. Also the `Gateway` harness `retention` uses: the binary in its own
//! directory, its JSON log lines collected for polling.
use crate::common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;

/// `epusdt serve` in a temp dir with `epusdt.toml` there; killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Writes `toml` (plus `http_listen` on port 0 and `log_level = "info"` when absent) to
    /// `epusdt.toml`, lets `prepare` run CLI commands on the data dir, then starts `serve` and
    /// waits for the address it logs.
    pub async fn start(toml: &str, prepare: impl FnOnce(&Path)) -> Gateway {
        epusdt::net::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut full = String::new();
        if !toml.contains("http_listen") {
            full.push_str("http_listen = \"127.0.0.1:0\"\n");
        }
        if !toml.contains("log_level") {
            full.push_str("log_level = \"info\"\n");
        }
        full.push_str(toml);
        std::fs::write(dir.path().join("epusdt.toml"), full).expect("write toml");
        prepare(dir.path());
        let mut child = common::epusdt(dir.path())
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            // Keeps draining the log so the gateway never blocks on a full pipe.
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().expect("lines").push(line);
            }
        });
        let mut gw = Gateway {
            child,
            port: 0,
            lines,
            dir,
            client: reqwest::Client::new(),
        };
        let line = gw.wait_log("epusdt listening", 0).await;
        let v: Value = serde_json::from_str(&line).expect("json log line");
        gw.port = v["fields"]["addr"]
            .as_str()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .expect("port in the listening line");
        common::wait_listening(gw.port).await;
        gw
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// How many log lines were collected so far (a mark for [`Gateway::wait_log`]).
    pub fn log_mark(&self) -> usize {
        self.lines.lock().expect("lines").len()
    }

    /// The first log line at or after `from` containing `needle` (30 s at most).
    pub async fn wait_log(&mut self, needle: &str, from: usize) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            {
                let lines = self.lines.lock().expect("lines");
                if let Some(l) = lines[from.min(lines.len())..]
                    .iter()
                    .find(|l| l.contains(needle))
                {
                    return l.clone();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the gateway exited ({status}) before logging `{needle}`");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with `{needle}`; log:\n{}",
                self.lines.lock().expect("lines").join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log lines collected since `mark`.
    pub fn lines_since(&self, mark: usize) -> Vec<String> {
        let lines = self.lines.lock().expect("lines");
        lines[mark.min(lines.len())..].to_vec()
    }

    pub fn hup(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }

    /// Still running (not exited, e.g. on SIGHUP's default action).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.path("epusdt.toml"), toml).expect("write toml");
    }
}

/// Runs `epusdt <args>` in `dir` (the same `epusdt.toml`); panics unless it succeeds.
pub fn cli(dir: &Path, args: &[&str]) {
    let out = common::epusdt(dir).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "epusdt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A signed v1 create request for 70 CNY; returns the whole reply.
async fn create(gw: &Gateway, order_id: &str, notify_url: &str) -> Value {
    create_on(gw, order_id, notify_url, None).await
}

async fn create_on(
    gw: &Gateway,
    order_id: &str,
    notify_url: &str,
    trade_type: Option<&str>,
) -> Value {
    let mut p: BTreeMap<&str, String> = BTreeMap::new();
    if let Some(t) = trade_type {
        p.insert("trade_type", t.into());
    }
    p.insert("order_id", order_id.into());
    p.insert("amount", "70".into());
    p.insert("notify_url", notify_url.into());
    let sig = common::v1_sign(&p, common::TOKEN);
    p.insert("signature", sig);
    gw.client
        .post(gw.url("/api/v1/order/create-transaction"))
        .json(&p)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json")
}

/// A v1 order for 70 CNY; returns the reply's `data`.
async fn create_order(gw: &Gateway, order_id: &str) -> Value {
    let reply = create(gw, order_id, "https://merchant.example.com/notify").await;
    assert_eq!(reply["status_code"], 200, "{reply}");
    reply["data"].clone()
}

/// The payable amount of a new 70 CNY order, as the reply writes it.
async fn amount(gw: &Gateway, order_id: &str) -> String {
    common::shortest(&create_order(gw, order_id).await["actual_amount"].to_string())
}

async fn status(gw: &Gateway, path: &str) -> u16 {
    gw.client
        .get(gw.url(path))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

fn config(rate: &str, extra: &str) -> String {
    format!(
        "http_listen = \"127.0.0.1:0\"\nlog_level = \"info\"\napi_auth_token = \"{}\"\nforced_usdt_rate = \"{rate}\"\n{extra}",
        common::TOKEN
    )
}

fn with_wallet(dir: &Path) {
    cli(
        dir,
        &[
            "wallet",
            "add",
            "--network",
            "tron",
            "--address",
            common::TRON_WALLET,
        ],
    );
}

#[tokio::test]
async fn sighup_applies_rates_and_limits_reports_restart_keys_and_keeps_serving() {
    let mut gw = Gateway::start(&config("7", ""), with_wallet).await;
    assert_eq!(amount(&gw, "r1").await, "10");
    let private = "http://127.0.0.1:9/notify";
    assert_eq!(create(&gw, "p1", private).await["status_code"], 10009);
    for _ in 0..3 {
        assert_eq!(status(&gw, "/pay/check-status/nope").await, 200);
    }

    // A new rate, a route limit of 2 per minute, private callbacks allowed, and a new listen
    // address (restart only).
    let mut toml = config(
        "3.5",
        "rate_limit_route_per_minute = 2\nallow_private_callbacks = true\n",
    );
    toml = toml.replace("127.0.0.1:0", "127.0.0.1:1");
    gw.write_config(&toml);
    let mark = gw.log_mark();
    gw.hup();
    let line = gw.wait_log("configuration reloaded", mark).await;
    let v: Value = serde_json::from_str(&line).expect("json");
    let applied = v["fields"]["applied"].as_str().unwrap_or_default();
    assert!(applied.contains("forced_usdt_rate"), "{line}");
    assert!(applied.contains("rate_limit_route_per_minute"), "{line}");
    assert!(applied.contains("allow_private_callbacks"), "{line}");
    assert_eq!(v["fields"]["needs_restart"], "http_listen", "{line}");
    assert!(gw.alive(), "SIGHUP must not end the process");

    // Still serving on the old port, with the new rate and the new limit.
    assert_eq!(amount(&gw, "r2").await, "20");
    assert_eq!(create(&gw, "p2", private).await["status_code"], 200);
    // The three requests before the reload count against the new limit of 2 per minute.
    assert_eq!(
        status(&gw, "/pay/check-status/other").await,
        429,
        "route limit 2/min after the reload"
    );
    assert_eq!(status(&gw, "/health").await, 200);
}

#[tokio::test]
async fn a_broken_config_on_sighup_is_refused_and_the_running_one_kept() {
    let mut gw = Gateway::start(&config("7", ""), with_wallet).await;
    for broken in [
        // A value out of range, a syntax error, an unknown key.
        config("7.5", "order_expiration_time = 0\n"),
        "forced_usdt_rate = \"8\"\nthis is not toml".to_string(),
        config("8", "forced_usdt_raet = \"9\"\n"),
    ] {
        gw.write_config(&broken);
        let mark = gw.log_mark();
        gw.hup();
        let line = gw.wait_log("configuration reload refused", mark).await;
        assert!(gw.alive(), "a refused reload must not end the process");
        assert!(
            !line.contains(common::TOKEN),
            "no secret in the log: {line}"
        );
    }
    assert_eq!(amount(&gw, "b1").await, "10");

    // The reloader still works after refusals.
    gw.write_config(&config("14", ""));
    let mark = gw.log_mark();
    gw.hup();
    gw.wait_log("configuration reloaded", mark).await;
    assert_eq!(amount(&gw, "b2").await, "5");
}

#[tokio::test]
async fn sighup_restarts_chain_watchers_with_new_rpc_urls_and_confirmations() {
    let chain = |rpc: &str, confirmations: u32| {
        config(
            "7",
            &format!(
                "[networks.ethereum]\nrpc_urls = [\"http://{rpc}:9\"]\nconfirmations = {confirmations}\n"
            ),
        )
    };
    let mut gw = Gateway::start(&chain("127.0.0.1", 3), |dir| {
        cli(
            dir,
            &[
                "wallet",
                "add",
                "--network",
                "ethereum",
                "--address",
                common::EVM_WALLET,
            ],
        )
    })
    .await;
    let order = create_on(&gw, "e1", "https://m.example.com/n", Some("usdt.erc20")).await;
    assert_eq!(order["status_code"], 200, "{order}");
    let trade_id = order["data"]["trade_id"]
        .as_str()
        .expect("trade_id")
        .to_owned();
    let submit = |gw: &Gateway| {
        let req = gw
            .client
            .post(gw.url(&format!("/pay/submit-tx-hash/{trade_id}")))
            .json(&serde_json::json!({ "block_transaction_id": format!("0x{}", "ab".repeat(32)) }));
        async move {
            req.send()
                .await
                .expect("submit")
                .text()
                .await
                .expect("body")
        }
    };
    let before = submit(&gw).await;
    assert!(before.contains("could not be asked"), "{before}");
    let line = gw.wait_log("chain watcher started", 0).await;
    assert!(
        line.contains("127.0.0.1:9") && line.contains("\"confirmations\":3"),
        "{line}"
    );

    gw.write_config(&chain("127.0.0.2", 5));
    let mark = gw.log_mark();
    gw.hup();
    let line = gw.wait_log("configuration reloaded", mark).await;
    assert!(line.contains("networks.ethereum"), "{line}");
    gw.wait_log("chain watchers restarting", mark).await;
    let line = gw.wait_log("chain watcher started", mark).await;
    assert!(
        line.contains("127.0.0.2:9") && line.contains("\"confirmations\":5"),
        "{line}"
    );
    assert_eq!(status(&gw, "/health").await, 200);
    assert!(gw.alive());

    // Removing the network stops its watcher and drops it from /health.
    let health = |gw: &Gateway| {
        let req = gw.client.get(gw.url("/health"));
        async move {
            req.send()
                .await
                .expect("health")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    assert!(health(&gw).await["chains"].get("ethereum").is_some());
    gw.write_config(&config("7", ""));
    let mark = gw.log_mark();
    gw.hup();
    gw.wait_log("chain watchers restarting", mark).await;
    let h = health(&gw).await;
    assert!(h["chains"].get("ethereum").is_none(), "{h}");
    let after = submit(&gw).await;
    assert!(
        after.contains("not watched"),
        "payer lookups follow the reload: {after}"
    );
}

#[tokio::test]
async fn sighup_changes_the_log_level() {
    let mut gw = Gateway::start(&config("7", ""), |_| {}).await;
    let quiet = config("7", "").replace("log_level = \"info\"", "log_level = \"warn\"");
    gw.write_config(&quiet);
    let mark = gw.log_mark();
    gw.hup();
    // Logged at info before the new level is in force; nothing at info after it.
    gw.wait_log("SIGHUP: reloading the configuration", mark)
        .await;

    // A refused reload logs its error, but no longer the info line before it.
    gw.write_config("not = [toml");
    let mark = gw.log_mark();
    gw.hup();
    gw.wait_log("configuration reload refused", mark).await;
    let since = gw.lines_since(mark);
    assert!(
        !since.iter().any(|l| l.contains("\"level\":\"INFO\"")),
        "info lines at log_level warn: {since:?}"
    );

    // Back to info: the reload's own summary line shows again.
    gw.write_config(&config("7", ""));
    let mark = gw.log_mark();
    gw.hup();
    let line = gw.wait_log("configuration reloaded", mark).await;
    assert!(line.contains("log_level"), "{line}");
}

//! Faulty infrastructure in front of a node: a TCP proxy that can be cut or slowed, and a
//! JSON-RPC double that fails like public providers do.
use super::*;

// ---------------------------------------------------------------------------------------------
// A TCP proxy in front of a node: `set_up(false)` refuses new connections and cuts open ones
// (an outage); `set_delay_ms` slows every forwarded chunk from the client.

#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    up: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    epoch: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target_port: u16, up: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let proxy = Proxy {
            url: format!("http://{addr}"),
            up: Arc::new(AtomicBool::new(up)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            epoch: Arc::new(AtomicU64::new(0)),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !p.up.load(Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    drop(client);
                    continue;
                }
                let p = p.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                        return;
                    };
                    let epoch = p.epoch.load(Ordering::SeqCst);
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let p2 = p.clone();
                    let up_stream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match tokio::io::AsyncReadExt::read(&mut cr, &mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let d = p2.delay_ms.load(Ordering::SeqCst);
                            if d > 0 {
                                tokio::time::sleep(Duration::from_millis(d)).await;
                            }
                            if p2.epoch.load(Ordering::SeqCst) != epoch
                                || sw.write_all(&buf[..n]).await.is_err()
                            {
                                return;
                            }
                        }
                    };
                    let p3 = p.clone();
                    let down_stream = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match tokio::io::AsyncReadExt::read(&mut sr, &mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if p3.epoch.load(Ordering::SeqCst) != epoch
                                || cw.write_all(&buf[..n]).await.is_err()
                            {
                                return;
                            }
                        }
                    };
                    // Either direction ending ends the connection (both halves dropped).
                    tokio::select! { _ = up_stream => {}, _ = down_stream => {} }
                });
            }
        });
        proxy
    }

    pub fn set_up(&self, up: bool) {
        if !up {
            // Existing connections stop forwarding at their next chunk.
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
        self.up.store(up, Ordering::SeqCst);
    }

    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// A JSON-RPC double in front of anvil that fails like public providers do: JSON-RPC errors
// inside HTTP 200 (range caps, result caps, rate limits), HTTP 502 from a balancer, and a
// node whose log index lags the headers it serves. Everything else is forwarded to anvil.

/// How the double misbehaves; change it while a test runs.
#[derive(Debug, Clone, Default)]
pub struct RpcFaults {
    /// `eth_getLogs` over more blocks than this is refused (HTTP 200 + JSON-RPC error).
    pub max_logs_range: Option<u64>,
    /// The (code, message) of that refusal, e.g. (-32005, "block range is too large").
    pub range_error: Option<(i64, String)>,
    /// Every request answers HTTP 200 with this JSON-RPC error (e.g. a daily quota).
    pub rpc_error: Option<(i64, String)>,
    /// Every request answers HTTP 429 with `Retry-After` seconds (and a plain-text body).
    pub too_many_requests: Option<u64>,
    /// Every n-th `eth_getLogs` answers HTTP 502 (a balancer in front of a struggling node).
    pub fail_every_nth_logs: Option<u64>,
    /// These methods answer HTTP 502.
    pub failing_methods: Vec<String>,
    /// A node whose log index stops at this block while its head and headers move on (a
    /// balancer backend whose index lags): `eth_getLogs` over a range is clamped to it, so
    /// blocks above it come back as `[]`; a query by block hash (EIP-234, read from the
    /// block's receipts) still answers.
    pub logs_lag_at: Option<u64>,
    /// Every answer is held this long (a provider far away, or a busy one).
    pub latency_ms: Option<u64>,
}

#[derive(Clone)]
pub struct RpcDouble {
    pub url: String,
    faults: Arc<std::sync::Mutex<RpcFaults>>,
    /// `eth_getLogs` answered with logs, refused for their range, and requests seen.
    pub logs_served: Arc<AtomicU64>,
    pub logs_refused: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
    /// (fromBlock, toBlock) of every `eth_getLogs` over a range answered, as asked.
    pub logs_ranges: Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
    logs_seen: Arc<AtomicU64>,
    upstream: String,
    client: reqwest::Client,
}

fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

impl RpcDouble {
    pub async fn start(upstream: &str) -> RpcDouble {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind double");
        let addr = listener.local_addr().expect("addr");
        let double = RpcDouble {
            url: format!("http://{addr}"),
            faults: Arc::default(),
            logs_served: Arc::default(),
            logs_refused: Arc::default(),
            requests: Arc::default(),
            logs_ranges: Arc::default(),
            logs_seen: Arc::default(),
            upstream: upstream.to_string(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("client"),
        };
        let router = axum::Router::new()
            .route("/", axum::routing::post(Self::handle))
            .with_state(double.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        double
    }

    pub fn set(&self, f: impl FnOnce(&mut RpcFaults)) {
        f(&mut self.faults.lock().expect("faults"));
    }

    async fn handle(
        axum::extract::State(d): axum::extract::State<RpcDouble>,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::{http::StatusCode, response::IntoResponse};
        d.requests.fetch_add(1, Ordering::SeqCst);
        let faults = d.faults.lock().expect("faults").clone();
        if let Some(ms) = faults.latency_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let Ok(mut req) = serde_json::from_slice::<Value>(&body) else {
            return (StatusCode::BAD_REQUEST, "bad json").into_response();
        };
        let id = req["id"].clone();
        let method = req["method"].as_str().unwrap_or_default().to_string();
        let error = |code: i64, message: &str| {
            axum::Json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
            )
            .into_response()
        };
        if let Some(secs) = faults.too_many_requests {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
                "Too Many Requests",
            )
                .into_response();
        }
        if let Some((code, message)) = &faults.rpc_error {
            return error(*code, message);
        }
        if faults.failing_methods.contains(&method) {
            return (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response();
        }
        if method == "eth_getLogs" {
            let n = d.logs_seen.fetch_add(1, Ordering::SeqCst) + 1;
            if faults.fail_every_nth_logs.is_some_and(|k| n % k == 0) {
                return (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response();
            }
            let filter = &req["params"][0];
            if let (Some(cap), Some(from), Some(to)) = (
                faults.max_logs_range,
                hex_u64(&filter["fromBlock"]),
                hex_u64(&filter["toBlock"]),
            ) && to.saturating_sub(from) + 1 > cap
            {
                d.logs_refused.fetch_add(1, Ordering::SeqCst);
                let (code, message) = faults
                    .range_error
                    .clone()
                    .unwrap_or((-32005, "block range is too large".into()));
                return error(code, &message);
            }
            if let (Some(from), Some(to)) =
                (hex_u64(&filter["fromBlock"]), hex_u64(&filter["toBlock"]))
            {
                d.logs_ranges.lock().expect("ranges").push((from, to));
            }
            if let Some(at) = faults.logs_lag_at {
                let from = hex_u64(&filter["fromBlock"]).unwrap_or(0);
                if from > at {
                    d.logs_served.fetch_add(1, Ordering::SeqCst);
                    return axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": []}))
                        .into_response();
                }
                if hex_u64(&filter["toBlock"]).is_some_and(|to| to > at) {
                    req["params"][0]["toBlock"] = json!(format!("{at:#x}"));
                }
            }
            d.logs_served.fetch_add(1, Ordering::SeqCst);
        }
        match d.forward(&req).await {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
        }
    }

    async fn forward(&self, req: &Value) -> Result<Value, String> {
        self.client
            .post(&self.upstream)
            .json(req)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())
    }
}

//! A seeded fuzzer over every public route of the real binary, on SQLite, PostgreSQL and MySQL:
//! hostile paths (NUL, control characters, percent-encoded junk, very long or non-ASCII ids),
//! hostile bodies (broken JSON, NUL inside values, wrong types, huge numbers), signed and
//! unsigned. Whatever the input, the gateway answers without a 5xx and without an ERROR log line
//! — client input must never look like a server fault (it would raise false alerts).
use crate::common;

use std::{collections::BTreeMap, io::BufRead, process::Stdio, time::Duration};

use common::Backend;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

/// Requests per backend (each route gets its share).
const REQUESTS: usize = 1200;

const JUNK: &[&str] = &[
    "%00",
    "a%00b",
    "%0a%0d",
    "%ff%fe",
    "..%2f..%2fetc%2fpasswd",
    "%25%32%65",
    "'%20OR%201=1--",
    "%e2%80%ae",
    "%f0%9f%92%a9",
    "%c0%80",
    "20251201000000%00",
    "-1",
    "0",
    "9999999999999999999999999999999999",
    "%20",
    "\u{7f}",
];

fn junk_text(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => "\u{0}".repeat(rng.random_range(1..4)),
        1 => format!("id\u{0}{}", rng.random::<u32>()),
        2 => "x".repeat(rng.random_range(30..400)),
        3 => "\u{202e}\u{1f4a9}\u{fffd}".into(),
        4 => format!("{}\r\n{}", rng.random::<u16>(), rng.random::<u16>()),
        _ => (0..rng.random_range(1..20))
            .map(|_| char::from(rng.random_range(1u8..128)))
            .collect(),
    }
}

fn junk_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..9) {
        0 => Value::String(junk_text(rng)),
        1 => json!(rng.random::<i64>()),
        2 => json!(1e308),
        3 => serde_json::from_str("123456789012345678901234567890.123456789").unwrap_or(json!(0)),
        4 => json!(null),
        5 => json!([1, 2, "\u{0}"]),
        6 => json!({"a": "\u{0}"}),
        7 => json!(true),
        _ => json!("-0.000000001"),
    }
}

fn junk_body(rng: &mut StdRng, fields: &[&str], token: Option<&str>) -> (String, &'static str) {
    match rng.random_range(0..5) {
        0 => {
            let raw: Vec<u8> = (0..rng.random_range(0..200))
                .map(|_| rng.random::<u8>())
                .collect();
            (
                String::from_utf8_lossy(&raw).into_owned(),
                "application/json",
            )
        }
        1 => {
            // Form encoding with NUL and junk.
            let pairs: Vec<String> = fields
                .iter()
                .map(|f| format!("{f}={}", JUNK[rng.random_range(0..JUNK.len())]))
                .collect();
            (pairs.join("&"), "application/x-www-form-urlencoded")
        }
        _ => {
            let mut obj = serde_json::Map::new();
            let mut params: BTreeMap<&str, String> = BTreeMap::new();
            for f in fields {
                if rng.random_bool(0.8) {
                    let v = if rng.random_bool(0.5) {
                        junk_value(rng)
                    } else {
                        plausible(f)
                    };
                    if let Some(s) = v.as_str() {
                        params.insert(f, s.to_string());
                    } else if v.is_number() {
                        params.insert(f, v.to_string());
                    }
                    obj.insert(f.to_string(), v);
                }
            }
            // Half of them carry a valid signature over whatever they contain.
            if let Some(t) = token.filter(|_| rng.random_bool(0.5)) {
                obj.insert("signature".into(), json!(common::v1_sign(&params, t)));
            } else {
                obj.insert("signature".into(), Value::String(junk_text(rng)));
            }
            (Value::Object(obj).to_string(), "application/json")
        }
    }
}

fn plausible(field: &str) -> Value {
    match field {
        "amount" | "money" => json!(10),
        "notify_url" => json!("http://127.0.0.1:9/notify"),
        "order_id" | "out_trade_no" => json!("F-1"),
        "pid" => json!(1000),
        _ => json!("x"),
    }
}

struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Route {
    method: reqwest::Method,
    path: &'static str,
    fields: &'static [&'static str],
}

fn routes() -> Vec<Route> {
    use reqwest::Method;
    vec![
        Route {
            method: Method::POST,
            path: "/api/v1/order/create-transaction",
            fields: &[
                "order_id",
                "amount",
                "notify_url",
                "redirect_url",
                "currency",
                "trade_type",
                "name",
                "timeout",
            ],
        },
        Route {
            method: Method::POST,
            path: "/api/v1/order/cancel-transaction",
            fields: &["trade_id", "order_id"],
        },
        Route {
            method: Method::POST,
            path: "/payments/gmpay/v1/order/create-transaction",
            fields: &[
                "pid",
                "order_id",
                "currency",
                "amount",
                "notify_url",
                "token",
                "network",
                "timestamp",
                "nonce",
                "name",
            ],
        },
        Route {
            method: Method::POST,
            path: "/payments/epay/v1/order/create-transaction/submit.php",
            fields: &[
                "pid",
                "type",
                "out_trade_no",
                "notify_url",
                "return_url",
                "name",
                "money",
                "sign",
                "sign_type",
            ],
        },
        Route {
            method: Method::GET,
            path: "/payments/epay/v1/order/create-transaction/submit.php",
            fields: &["pid", "type", "out_trade_no", "money", "sign"],
        },
        Route {
            method: Method::GET,
            path: "/pay/check-status/",
            fields: &[],
        },
        Route {
            method: Method::GET,
            path: "/pay/checkout-counter/",
            fields: &[],
        },
        Route {
            method: Method::POST,
            path: "/pay/submit-tx-hash/",
            fields: &["block_transaction_id"],
        },
        Route {
            method: Method::GET,
            path: "/pay/return/",
            fields: &[],
        },
        Route {
            method: Method::GET,
            path: "/health",
            fields: &[],
        },
        Route {
            method: Method::POST,
            path: "/pay/switch-network",
            fields: &["trade_id", "token", "network"],
        },
        Route {
            method: Method::GET,
            path: "/pay/checkout-counter-resp/",
            fields: &[],
        },
        Route {
            method: Method::GET,
            path: "/payments/gmpay/v1/config",
            fields: &[],
        },
    ]
}

async fn fuzz_every_route(backend: Backend) {
    epusdt::net::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(url) = common::fresh_database(backend, dir.path()).await else {
        return;
    };
    let port = common::free_port();
    let log_path = dir.path().join("stdout.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = common::epusdt(dir.path())
        .args(["serve"])
        .env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("EPUSDT_DATABASE_URL", &url)
        .env("EPUSDT_API_AUTH_TOKEN", common::TOKEN)
        .env("EPUSDT_FORCED_USDT_RATE", "7.2")
        .env("EPUSDT_LOG_LEVEL", "info")
        .env("EPUSDT_RATE_LIMIT_PER_MINUTE", "0")
        .env("EPUSDT_RATE_LIMIT_ROUTE_PER_MINUTE", "0")
        .env("EPUSDT_RATE_LIMIT_MERCHANT_PER_MINUTE", "0")
        .stdout(Stdio::from(log))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn epusdt");
    // Killed on every exit path, a failed assertion included.
    let mut child = KillOnDrop(child);
    common::wait_listening(port).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    let mut rng = StdRng::seed_from_u64(0x5eed_0001 ^ backend as u64);
    let routes = routes();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut server_errors = Vec::new();
    for i in 0..REQUESTS {
        let route = &routes[i % routes.len()];
        let mut path = route.path.to_string();
        if path.ends_with('/') {
            path.push_str(JUNK[rng.random_range(0..JUNK.len())]);
            if rng.random_bool(0.3) {
                path.push_str(&format!("{}", rng.random::<u32>()));
            }
        }
        let query = if route.method == reqwest::Method::GET && !route.fields.is_empty() {
            let pairs: Vec<String> = route
                .fields
                .iter()
                .map(|f| format!("{f}={}", JUNK[rng.random_range(0..JUNK.len())]))
                .collect();
            format!("?{}", pairs.join("&"))
        } else {
            String::new()
        };
        let mut req = client.request(route.method.clone(), format!("{base}{path}{query}"));
        if route.method == reqwest::Method::POST {
            let (body, ct) = junk_body(&mut rng, route.fields, Some(common::TOKEN));
            req = req.header("content-type", ct).body(body);
        }
        let resp = req.send().await.expect("the gateway answers");
        let status = resp.status().as_u16();
        *statuses.entry(status).or_default() += 1;
        if status >= 500 && route.path != "/health" {
            let text = resp.text().await.unwrap_or_default();
            server_errors.push(format!("{} {path}{query} -> {status} {text}", route.method));
        }
    }
    // The gateway is still healthy, and no client input was logged as a server error.
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    child.stop();
    let lines: Vec<String> = std::io::BufReader::new(std::fs::File::open(&log_path).unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"INFO\"")),
        "the log is read in the format the gateway writes (JSON lines)"
    );
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        server_errors.is_empty(),
        "{backend:?}: {} of {REQUESTS} requests got a 5xx: {:#?}",
        server_errors.len(),
        &server_errors[..server_errors.len().min(10)]
    );
    assert!(
        errors.is_empty(),
        "{backend:?}: {} ERROR log lines from client input: {:#?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    // The fuzzer reached the handlers (not only 404s), or it proves nothing.
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > REQUESTS / 10,
        "{statuses:?}"
    );
    eprintln!("{backend:?}: statuses {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_sqlite() {
    fuzz_every_route(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_postgres() {
    fuzz_every_route(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_mysql() {
    fuzz_every_route(Backend::Mysql).await
}

//! `epusdt healthcheck`: asks this instance's `GET /health` and exits 0 only when it answers
//! `"status": "ok"` — the database, the queue and every chain watcher are fine. The container
//! image's HEALTHCHECK runs it (no curl in the image); it never opens the database itself.
use std::{net::IpAddr, time::Duration};

use epusdt::config::Config;

use super::{CliError, CliResult};

/// GET `url` (default: `http://<http_listen>/health`, a wildcard address read as loopback).
pub async fn check(config: &Config, url: Option<String>) -> CliResult {
    let url = url.unwrap_or_else(|| local_health_url(config));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()?;
    let reply = client
        .get(&url)
        .send()
        .await
        .map_err(|e| CliError::Unhealthy(format!("{url}: {e}")))?;
    let code = reply.status();
    let body: serde_json::Value = reply
        .json()
        .await
        .map_err(|e| CliError::Unhealthy(format!("{url}: HTTP {code}, not health JSON: {e}")))?;
    let status = body["status"].as_str().unwrap_or("unknown");
    if code.is_success() && status == "ok" {
        println!("ok");
        return Ok(());
    }
    Err(CliError::Unhealthy(format!(
        "{url}: HTTP {code}, status {status}: {}",
        failing_parts(&body).join(", ")
    ))
    .into())
}

fn local_health_url(config: &Config) -> String {
    let addr = config.http_listen;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!(
        "http://{}/health",
        std::net::SocketAddr::new(ip, addr.port())
    )
}

/// `database: down (…)`, `chain tron: error (…)`: what made the instance unhealthy.
fn failing_parts(body: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let describe = |name: &str, part: &serde_json::Value| {
        let status = part["status"].as_str().unwrap_or("unknown");
        let bad = matches!(status, "down" | "error" | "failed" | "unknown");
        bad.then(|| match part["error"].as_str() {
            Some(e) => format!("{name}: {status} ({e})"),
            None => format!("{name}: {status}"),
        })
    };
    for name in ["database", "queue"] {
        out.extend(describe(name, &body[name]));
    }
    if let Some(chains) = body["chains"].as_object() {
        for (network, part) in chains {
            out.extend(describe(&format!("chain {network}"), part));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        let mut config = Config::default();
        for (listen, url) in [
            ("0.0.0.0:8000", "http://127.0.0.1:8000/health"),
            ("[::]:9000", "http://[::1]:9000/health"),
            ("10.1.2.3:8080", "http://10.1.2.3:8080/health"),
        ] {
            config.http_listen = listen.parse().unwrap();
            assert_eq!(local_health_url(&config), url);
        }
    }

    #[test]
    fn names_only_the_parts_that_are_down() {
        let body = serde_json::json!({
            "status": "degraded",
            "database": {"status": "ok", "error": null},
            "queue": {"status": "down", "error": "connection refused"},
            "chains": {
                "bsc": {"status": "standby", "error": null},
                "tron": {"status": "error", "error": "HTTP 503"},
                "ethereum": {"status": "active", "error": null},
            },
        });
        assert_eq!(
            failing_parts(&body),
            [
                "queue: down (connection refused)",
                "chain tron: error (HTTP 503)"
            ]
        );
    }
}

//! Deployment pieces run for real: `epusdt healthcheck` (the container's HEALTHCHECK) against a
//! live gateway, and `tools/docker_smoke.sh` (image + compose stack on a Docker engine).
use std::process::Command;

use epusdt::config::NetworkConfig;
use serde_json::Value;

use crate::chain_support::tron_mock::TronMock;
use crate::common::{self, Backend};

fn healthcheck(args: &[&str], envs: &[(&str, String)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::epusdt(dir.path());
    c.arg("healthcheck").args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Exit 0 only when `/health` says "ok"; a failed chain watcher, or nothing listening, is exit 1
/// with the reason. It reads `http_listen` (a wildcard address as loopback) and never opens
/// the data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_passes_only_a_healthy_gateway() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let port = app.base.rsplit(':').next().unwrap().to_string();
    let (code, out) = healthcheck(&[], &[("EPUSDT_HTTP_LISTEN", format!("0.0.0.0:{port}"))]);
    assert_eq!((code, out.trim()), (0, "ok"), "{out}");
    let (code, out) = healthcheck(&["--url", &app.url("/health")], &[]);
    assert_eq!(code, 0, "{out}");
    app.stop().await;

    let (code, out) = healthcheck(&[], &[("EPUSDT_HTTP_LISTEN", format!("0.0.0.0:{port}"))]);
    assert_eq!(code, 1, "nothing listens any more: {out}");
    assert!(
        out.contains(&format!("http://127.0.0.1:{port}/health")),
        "{out}"
    );

    // A watcher that stops (the token reports 18 decimals, not 6) makes the gateway degraded.
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
    common::eventually(20, "the tron watcher to fail", || async {
        let h: Value = app
            .client
            .get(app.url("/health"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (h["chains"]["tron"]["role"] == "failed").then_some(())
    })
    .await;
    let (code, out) = healthcheck(&["--url", &app.url("/health")], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("status degraded"), "{out}");
    assert!(
        out.contains("chain tron: error (networks.tron.decimals is 6"),
        "{out}"
    );
    app.stop().await;
}

/// `tools/docker_smoke.sh` with this build's binary: image from a locally made Debian base,
/// compose stack (sqlite profile) that starts healthy on a fresh volume, an order created
/// through the API and found again after a container restart, a failed chain watcher turning
/// the container unhealthy, nothing left running. Runs where `EPUSDT_TEST_DOCKER=1` or
/// `EPUSDT_TEST_REQUIRE_SERVICES=1` (CI); skips, saying why, when no Docker engine can start.
#[test]
fn docker_smoke() {
    let wanted = ["EPUSDT_TEST_DOCKER", "EPUSDT_TEST_REQUIRE_SERVICES"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v == "1"));
    if !wanted {
        eprintln!("SKIP: docker smoke: set EPUSDT_TEST_DOCKER=1 to run tools/docker_smoke.sh");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/docker_smoke.sh");
    let mut c = Command::new("bash");
    for (k, _) in std::env::vars() {
        if k.starts_with("EPUSDT_") {
            c.env_remove(k);
        }
    }
    let out = c
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_epusdt"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    match out.status.code() {
        Some(0) => assert!(stdout.contains("passed in"), "{stdout}\n{stderr}"),
        Some(77) => common::skip(stdout.lines().last().unwrap_or("docker smoke skipped")),
        code => panic!("docker smoke failed ({code:?}):\n{stdout}\n{stderr}"),
    }
}

/// `deploy/nginx/epusdt.conf` run by nginx in front of a live gateway (its certificate paths,
/// ports and upstream pointed at this test's): https reaches the gateway, http redirects to
/// https, `/metrics` stays internal.
/// `deploy/Caddyfile` passes `caddy validate`. Both servers are Debian packages
/// (tools/test.sh installs them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_configs_work() {
    let (Some(nginx), Some(caddy)) = (which("nginx"), which("caddy")) else {
        common::skip(
            "proxy configs: nginx or caddy not installed (apt-get install nginx-light caddy)",
        );
        return;
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&caddy)
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(format!("{root}/deploy/Caddyfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "caddy validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let app_port = app.base.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=pay.example.com", "-keyout"])
        .arg(format!("{d}/key.pem"))
        .arg("-out")
        .arg(format!("{d}/cert.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl: {made:?}");
    let (http, https) = (common::free_port(), common::free_port());
    let site = std::fs::read_to_string(format!("{root}/deploy/nginx/epusdt.conf"))
        .unwrap()
        .replace(
            "/etc/letsencrypt/live/pay.example.com/fullchain.pem",
            &format!("{d}/cert.pem"),
        )
        .replace(
            "/etc/letsencrypt/live/pay.example.com/privkey.pem",
            &format!("{d}/key.pem"),
        )
        .replace(
            "server 127.0.0.1:8000;",
            &format!("server 127.0.0.1:{app_port};"),
        )
        .replace("listen 80;", &format!("listen 127.0.0.1:{http};"))
        .replace("listen 443 ssl", &format!("listen 127.0.0.1:{https} ssl"))
        .replace("listen [::]:80;", "")
        .replace("listen [::]:443 ssl http2;", "")
        .replace("root /var/www/html;", &format!("root {d};"));
    std::fs::write(format!("{d}/site.conf"), site).unwrap();
    std::fs::write(
        format!("{d}/nginx.conf"),
        format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{}}\nhttp {{ access_log off; include {d}/site.conf; }}\n"
        ),
    )
    .unwrap();
    let mut server = Command::new(&nginx)
        .args(["-c", &format!("{d}/nginx.conf"), "-p", &d])
        .spawn()
        .unwrap();
    common::wait_listening(https).await;
    let curl = |url: String, extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "10",
                "-o",
                "/dev/stderr",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, body) = curl(format!("https://127.0.0.1:{https}/health"), &[]);
    let health = curl(format!("https://127.0.0.1:{https}/metrics"), &[]);
    let redirect = curl(
        format!("http://127.0.0.1:{http}/pay/x"),
        &["-H", "Host: pay.example.com"],
    );
    let _ = server.kill();
    let _ = server.wait();
    app.stop().await;
    assert_eq!(code.trim(), "200", "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert!(
        health.0.starts_with("404"),
        "/metrics through the proxy: {health:?}"
    );
    assert_eq!(
        redirect.0.trim(),
        "301 https://pay.example.com/pay/x",
        "{redirect:?}"
    );
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

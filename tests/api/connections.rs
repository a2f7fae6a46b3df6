//! Half-open and idle connections against the real binary under a 1,024 open-file limit: one
//! client holding 1,500 sockets that never finish their request head must not starve `/health`,
//! must not hold more than its per-IP share of the gateway's file descriptors, and must be
//! disconnected after the header timeout; an idle keep-alive connection is closed after the idle
//! timeout.
use crate::common;

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

const HELD: usize = 1500;

struct Gateway {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gateway on a port it picks itself (port 0) and reads the address it logs: a port
/// chosen by the test could be taken by another test's gateway in between.
async fn gateway() -> Gateway {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_epusdt");
    // The open-file limit of a default systemd service or shell: 1,024.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -n 1024 && exec \"$0\" serve", bin]);
    for (k, _) in std::env::vars() {
        if k.starts_with("EPUSDT_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .current_dir(dir.path())
        .env("EPUSDT_HTTP_LISTEN", "127.0.0.1:0")
        .env("EPUSDT_HTTP_HEADER_TIMEOUT_SECS", "3")
        .env("EPUSDT_HTTP_IDLE_TIMEOUT_SECS", "3")
        .env("EPUSDT_HTTP_MAX_CONNECTIONS_PER_IP", "100")
        .env("EPUSDT_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<u16>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut sent = false;
        // Keeps draining the log so the gateway never blocks on a full pipe.
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if sent || !line.contains("epusdt listening") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let port = v["fields"]["addr"]
                .as_str()
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok());
            if let Some(p) = port {
                sent = tx.send(p).is_ok();
            }
        }
    });
    let port = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("the gateway logs the address it listens on");
    common::wait_listening(port).await;
    Gateway {
        child,
        port,
        _dir: dir,
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A connection from 127.0.0.2 (another client than the health check's 127.0.0.1) that sends
/// half a request head and then nothing.
async fn half_open(port: u16) -> Result<TcpStream, String> {
    let s = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    s.bind(([127, 0, 0, 2], 0).into())
        .map_err(|e| format!("bind 127.0.0.2: {e}"))?;
    let mut c = tokio::time::timeout(
        Duration::from_secs(2),
        s.connect(([127, 0, 0, 1], port).into()),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
    Ok(c)
}

async fn health(port: u16) -> Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
    client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Is the server's side of this connection closed (EOF, reset or a 503 then EOF)?
async fn closed_by_server(c: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_one_client_holds_thousands_of_half_open_sockets() {
    epusdt::net::install_crypto_provider();
    let gw = gateway().await;
    let pid = gw.child.id();
    assert_eq!(
        health(gw.port).await,
        Ok(200),
        "the gateway answers before the test"
    );
    // Measured after the first request: the database pool opens its connections lazily.
    let baseline = open_fds(pid);
    let mut held = Vec::with_capacity(HELD);
    let mut errors: Vec<String> = Vec::new();
    let opening = Instant::now();
    for _ in 0..HELD {
        if opening.elapsed() > Duration::from_secs(20) {
            break;
        }
        match half_open(gw.port).await {
            Ok(c) => held.push(c),
            Err(e) if errors.len() < 3 => errors.push(e),
            Err(_) => {}
        }
    }
    let mut gw = gw;
    assert!(
        held.len() > 1000,
        "opened {} sockets; first errors {errors:?}; gateway exit status {:?}",
        held.len(),
        gw.child.try_wait()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = open_fds(pid);
    // Everyone else is still served.
    for _ in 0..5 {
        assert_eq!(
            health(gw.port).await,
            Ok(200),
            "/health while {HELD} sockets are held"
        );
    }
    assert!(
        during <= baseline + 100 + 20,
        "the gateway holds {during} fds (baseline {baseline}): more than one client's share"
    );
    // The held sockets are disconnected after the header timeout (3 s).
    let started = Instant::now();
    let mut still_open = 0;
    for c in held.iter_mut() {
        let left = Duration::from_secs(8).saturating_sub(started.elapsed());
        if !closed_by_server(c, left.max(Duration::from_millis(1))).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "half-open sockets the gateway never closed");
    drop(held);
    // The client's share (100 sockets) must be given back. A few fds may be new for good reasons
    // (a SQLite pool connection holds three: database, WAL and shared memory), so the bound is
    // well under the share rather than the exact baseline; the count settles for up to 3 s.
    let settle = Instant::now();
    let mut after = open_fds(pid);
    while after > baseline + 30 && settle.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = open_fds(pid);
    }
    assert!(
        after <= baseline + 30,
        "fds after release: {after} (baseline {baseline}; the client's share was 100)"
    );
    assert_eq!(health(gw.port).await, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let gw = gateway().await;
    let mut c = TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.expect("response");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Kept alive, then idle: closed within the idle timeout (3 s) plus a margin.
    assert!(
        closed_by_server(&mut c, Duration::from_secs(8)).await,
        "the idle connection stayed open"
    );
}

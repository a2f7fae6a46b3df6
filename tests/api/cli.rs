//! The real binary: zero-config start, config errors, migrate, merchant and wallet commands.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_epusdt"));
    // Keep the developer's environment out of the binary under test.
    for (k, _) in std::env::vars() {
        if k.starts_with("EPUSDT_") {
            c.env_remove(k);
        }
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn bad_config_value_exits_2_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .env("EPUSDT_HTTP_LISTEN", "not-an-address")
        .args(["serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http_listen"), "{err}");

    std::fs::write(dir.path().join(".env"), "order_expiration_time=abc\n").unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("order_expiration_time") && err.contains(".env"),
        "{err}"
    );
}

#[test]
fn config_check_prints_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "api_auth_token=supersecret-token-123\nhttp_listen=:8000\n",
    )
    .unwrap();
    let out = bin()
        .current_dir(dir.path())
        .env("EPUSDT_DATABASE_URL", "postgres://u:hunter2@db/epusdt")
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0.0.0.0:8000"), "{text}");
    assert!(!text.contains("supersecret-token-123"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

#[test]
fn serve_with_no_config_creates_sqlite_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // No config at all except the port (8000 may be taken on a dev machine).
    let mut child = bin()
        .current_dir(dir.path())
        .env("EPUSDT_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            break buf;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    assert!(body.contains("\"backend\":\"sqlite\""), "{body}");
    assert!(dir.path().join("data/epusdt.db").exists());
    assert!(dir.path().join("data/logs").is_dir());
    // SIGTERM → graceful exit 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("data/logs"))
        .unwrap()
        .collect();
    assert!(!logs.is_empty(), "a daily log file is written");
}

#[test]
fn migrate_merchant_and_wallet_commands() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = bin().current_dir(dir.path()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["migrate"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out, err) = run(&["merchant", "add", "--name", "shop"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("pid=1001"), "{out}");
    let (code, out, _) = run(&["merchant", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("shop"));
    assert!(
        !out.to_lowercase().contains("secret"),
        "list never shows secrets: {out}"
    );
    let (code, _, err) = run(&[
        "wallet",
        "add",
        "--network",
        "trc20",
        "--address",
        "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&[
        "wallet",
        "add",
        "--network",
        "tron",
        "--address",
        "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u",
    ]);
    assert_ne!(code, Some(0));
    assert!(err.to_lowercase().contains("checksum"), "{err}");
    let (code, _, err) = run(&[
        "wallet",
        "add",
        "--network",
        "bsc",
        "--address",
        "0xABCDEF0123456789abcdef0123456789ABCDEF01",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["wallet", "add", "--network", "solana", "--address", "x"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("network"), "{err}");
    let (code, out, _) = run(&["wallet", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("0xabcdef0123456789abcdef0123456789abcdef01"),
        "EVM stored lower-case: {out}"
    );
    let (code, out, _) = run(&["wallet", "disable", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("1 wallet"), "{out}");
    let (code, out, _) = run(&["wallet", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.lines()
            .any(|l| l.contains("tron") && l.contains("false")),
        "{out}"
    );
    // A forced rate from the CLI is audited like one set in the admin API.
    let (code, out, err) = run(&["rate", "set", "cny", "7.25"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("7.25 CNY"), "{out}");
    let (code, _, err) = run(&["rate", "set", "CNY", "-1"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("-1"), "{err}");
    let audit_dir = dir.path().join("data").join("audit");
    let trail: String = std::fs::read_dir(&audit_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", audit_dir.display()))
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    let line = trail
        .lines()
        .find(|l| l.contains("\"rate.set\""))
        .unwrap_or_else(|| panic!("no rate.set in the audit trail: {trail}"));
    assert!(
        line.contains("rate:CNY") && line.contains("7.25") && line.contains("cli"),
        "{line}"
    );
    // A native coin price: only for a configured coin, audited as price.set.
    let (code, _, err) = run(&["rate", "price", "TRX", "0.25"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("`TRX` is not a configured native coin (none is configured)"),
        "{err}"
    );
    let with_trx = |args: &[&str]| {
        let out = bin()
            .current_dir(dir.path())
            .env("EPUSDT_NETWORKS__TRON__TOKENS__TRX__NATIVE", "true")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = with_trx(&["rate", "price", "trx", "0"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("USDT per 1 TRX"), "{err}");
    let (code, out, err) = with_trx(&["rate", "price", "trx", "0.250"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 TRX = 0.25 USDT"), "{out}");
    let trail: String = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert!(
        trail
            .lines()
            .any(|l| l.contains("\"price.set\"") && l.contains("price:TRX") && l.contains("0.25")),
        "{trail}"
    );
}

/// `.env.example` is a valid configuration as shipped (documentation stays true), and every key
/// of the effective config is documented in it.
#[test]
fn env_example_is_valid_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    std::fs::write(dir.path().join(".env"), &example).unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines().filter(|l| l.contains(" = ")) {
        let key = line.split(" = ").next().unwrap().trim();
        assert!(
            example.contains(key),
            "config key `{key}` is not documented in .env.example"
        );
    }
}

//! `tools/security_check.sh` finds the weaknesses of a deployment and passes a sound one.
use std::{os::unix::fs::PermissionsExt, process::Command};

fn check(dir: &std::path::Path) -> (i32, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/security_check.sh");
    let mut c = Command::new("bash");
    for (k, _) in std::env::vars() {
        if k.starts_with("EPUSDT_") {
            c.env_remove(k);
        }
    }
    let out = c.arg(script).arg(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn weak_deployment_gets_told_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "http_listen=:8000\napi_auth_token=epusdt_password_xasddawqe\nredis_url=redis://127.0.0.1:6379\napp_uri=http://pay.example.com\nallow_private_callbacks=true\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join(".env"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    for needle in [
        "chmod 600 .env",
        "no master key",
        "api_auth_token is a default",
        "Redis has no password",
        "all interfaces",
        "plain http",
        "allow_private_callbacks",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
}

#[test]
fn sound_deployment_passes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "http_listen=127.0.0.1:8000\napi_auth_token=3f9a1c0e7b2d4c6a8e0f1a2b3c4d5e6f\nredis_url=redis://:s3cret@127.0.0.1:6379/0\napp_uri=https://pay.example.com\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join(".env"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    // As the gateway leaves it (it closes the data directory at start).
    std::fs::set_permissions(
        dir.path().join("data"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(dir.path().join("data/master.key"), "ab".repeat(32)).unwrap();
    std::fs::set_permissions(
        dir.path().join("data/master.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    // A key file others can read is a failure.
    std::fs::set_permissions(
        dir.path().join("data/master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 1);
    assert!(out.contains("chmod 600"), "{out}");
}

fn set_mode(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The gateway itself (`epusdt …` in `dir`): makes the real database the check reads.
fn gateway(dir: &std::path::Path, args: &[&str]) {
    let out = crate::common::epusdt(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "epusdt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same weaknesses written in `epusdt.toml` instead of `.env` are found too, and a database
/// others can read fails the check.
#[test]
fn weak_settings_in_epusdt_toml_and_a_readable_database_fail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("epusdt.toml"),
        r#"# written by hand
http_listen = "0.0.0.0:8000"   # all interfaces
app_uri = "http://pay.example.com"
allow_private_callbacks = true
api_auth_token = "3f9a1c0e7b2d4c6a8e0f1a2b3c4d5e6f"

[networks.tron]
rpc_urls = ["https://api.trongrid.io"]
"#,
    )
    .unwrap();
    set_mode(&dir.path().join("epusdt.toml"), 0o644);
    gateway(dir.path(), &["migrate"]);
    let db = dir.path().join("data/epusdt.db");
    set_mode(&db, 0o644);
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    for needle in [
        "epusdt.toml is mode 644 and holds secrets (api_auth_token): run: chmod 600 epusdt.toml",
        "listening on all interfaces (0.0.0.0:8000)",
        "app_uri is plain http (http://pay.example.com)",
        "FAIL: allow_private_callbacks=true",
        "others can read files in the data directory",
        "epusdt.db",
        "ok:   watching: tron",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    // The process environment still wins over the file, as in the gateway.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/security_check.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(dir.path())
        .env("EPUSDT_HTTP_LISTEN", "127.0.0.1:8000")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("ok:   listening on 127.0.0.1:8000"), "{out}");
    // Closed again as the check says (`chmod -R go-rwx data`: the check's own sqlite3 read may
    // have left `-wal`/`-shm` files, created with the open database's mode), the data passes.
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            set_mode(&path, 0o600);
        }
    }
    set_mode(&dir.path().join("epusdt.toml"), 0o600);
    let (_, out) = check(dir.path());
    assert!(out.contains("data directory ./data is private"), "{out}");
    assert!(!out.contains("epusdt.toml is mode"), "{out}");
}

/// An instance that cannot take a payment — no chain, no wallet, no rate — is told so, and each
/// warning goes once the gateway's own commands have set that part up.
#[test]
fn no_chain_wallet_or_rate_is_warned_until_configured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "http_listen=127.0.0.1:8000\napp_uri=https://pay.example.com\n",
    )
    .unwrap();
    set_mode(&dir.path().join(".env"), 0o600);
    gateway(dir.path(), &["migrate"]);
    gateway(dir.path(), &["keys", "show"]);
    let (code, out) = check(dir.path());
    assert_eq!(code, 0, "warnings only: {out}");
    for needle in [
        "WARN: no chain is watched",
        "WARN: no wallet is enabled",
        "WARN: no fiat rate",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }

    gateway(
        dir.path(),
        &[
            "wallet",
            "add",
            "--network",
            "tron",
            "--address",
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        ],
    );
    gateway(dir.path(), &["rate", "set", "CNY", "7.2"]);
    let mut env = std::fs::read_to_string(dir.path().join(".env")).unwrap();
    env.push_str("networks__tron__rpc_urls=https://api.trongrid.io\n");
    std::fs::write(dir.path().join(".env"), env).unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 0, "{out}");
    for needle in [
        "ok:   watching: tron",
        "ok:   1 enabled wallet(s)",
        "ok:   1 admin-set fiat rate(s)",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    assert!(!out.contains("WARN: no "), "{out}");
}

/// A Docker Compose deployment: the shipped `deploy/compose.env.example` (EPUSDT_* names) next to
/// `docker-compose.yaml` is read as the gateway reads it, the key and data in the volume are
/// pointed at instead of failed, and the postgres profile's passwords are checked.
#[test]
fn compose_deployment_is_read_from_its_env_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        format!("{root}/docker-compose.yaml"),
        dir.path().join("docker-compose.yaml"),
    )
    .unwrap();
    let example = std::fs::read_to_string(format!("{root}/deploy/compose.env.example")).unwrap();
    let env = dir.path().join(".env");
    std::fs::write(&env, &example).unwrap();
    set_mode(&env, 0o600);
    let (code, out) = check(dir.path());
    assert_eq!(code, 0, "the example as shipped: {out}");
    for needle in [
        "ok:   app_uri is https",
        "note: the master key is in the gateway's volume",
        "WARN: no chain is watched",
        "WARN: no fiat rate",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }

    // Filled in for the postgres profile, with a weak password and plain http.
    let filled = example
        .replace("COMPOSE_PROFILES=sqlite", "COMPOSE_PROFILES=postgres")
        .replace("#POSTGRES_PASSWORD=", "POSTGRES_PASSWORD=secret")
        .replace(
            "#REDIS_PASSWORD=",
            "REDIS_PASSWORD=3f9a1c0e7b2d4c6a8e0f1a2b",
        )
        .replace("#EPUSDT_FORCED_USDT_RATE", "EPUSDT_FORCED_USDT_RATE")
        .replace(
            "#EPUSDT_NETWORKS__TRON__RPC_URLS",
            "EPUSDT_NETWORKS__TRON__RPC_URLS",
        )
        .replace("EPUSDT_APP_URI=https://", "EPUSDT_APP_URI=http://");
    std::fs::write(&env, filled).unwrap();
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    for needle in [
        "FAIL: POSTGRES_PASSWORD in .env is only 6 characters",
        "ok:   REDIS_PASSWORD is 24 characters",
        "FAIL: app_uri is plain http",
        "ok:   watching: tron",
        "ok:   a fiat rate is configured",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    assert!(!out.contains("secret"), "a password is printed: {out}");
}

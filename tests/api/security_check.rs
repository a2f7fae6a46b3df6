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

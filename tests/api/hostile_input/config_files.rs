//! Config typos stop start-up; unknown EPUSDT_* variables are named.
use super::*;

// ---------------------------------------------------------------------------------------------
// 6. Config typos stop start-up; unknown EPUSDT_* variables are named.

/// Runs `cmd`; a process still running after `limit` (a gateway that started although it
/// should have refused) is killed, and reported with no exit code.
fn run_for_at_most(cmd: &mut std::process::Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

#[test]
fn an_unknown_toml_key_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = dir.path().join("epusdt.toml");
    std::fs::write(
        &toml,
        "http_lisen = \"127.0.0.1:7000\"\norder_expiration_time = 5\ncompletely_unrelated_thing = 1\n",
    )
    .expect("write");
    for args in [&["serve"][..], &["migrate"], &["config", "check"]] {
        let out = run_for_at_most(
            common::epusdt(dir.path()).args(args),
            Duration::from_secs(20),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("`http_lisen` (did you mean `http_listen`?)"),
            "{args:?}: {err}"
        );
        assert!(err.contains("`completely_unrelated_thing`"), "{err}");
        assert!(
            !err.contains("completely_unrelated_thing` (did you mean"),
            "{err}"
        );
    }
    // Every key the gateway has stays valid, network sections included.
    let mut all =
        String::from("http_listen = \"127.0.0.1:0\"\napp_uri = \"http://127.0.0.1:8000\"\n");
    all.push_str("log_level = \"info\"\nrate_limit_per_minute = 10\ntrusted_proxies = \"127.0.0.1\"\namount_step = \"0.01\"\n[networks.tron]\nenabled = false\n");
    std::fs::write(&toml, all).expect("write");
    let out = common::epusdt(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    // The path given with --config is checked too.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "queue_worker = 2\n").expect("write");
    let out = common::epusdt(dir.path())
        .args([
            "--config",
            other.to_str().expect("utf-8"),
            "config",
            "check",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("did you mean `queue_workers`?"), "{err}");
}

#[test]
fn unknown_epusdt_variables_are_named_in_a_warning_and_upstream_env_keys_stay_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Upstream .env keys we accept and ignore, and ours.
    std::fs::write(
        dir.path().join(".env"),
        "app_name=epusdt\nruntime_root_path=/runtime\nlog_save_path=/logs\nqueue_concurrency=10\nmysql_host=db\nhttp_listen=:8000\n",
    )
    .expect("write");
    let out = common::epusdt(dir.path())
        .env("EPUSDT_ORDER_EXPIRATON_TIME", "5")
        .env("EPUSDT_SOMETHING_ELSE_ENTIRELY", "1")
        .env("EPUSDT_LOG_LEVEL", "info")
        .env("EPUSDT_NETWORKS__TRON__ENABLED", "false")
        .args(["config", "check"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a warning, not an error: {err}");
    assert!(
        err.contains(
            "`EPUSDT_ORDER_EXPIRATON_TIME`: not an epusdt config key (did you mean `EPUSDT_ORDER_EXPIRATION_TIME`?)"
        ),
        "{err}"
    );
    assert!(
        err.contains("`EPUSDT_SOMETHING_ELSE_ENTIRELY`: not an epusdt config key\n"),
        "{err}"
    );
    assert!(
        !err.contains("EPUSDT_LOG_LEVEL") && !err.contains("NETWORKS"),
        "{err}"
    );
    assert_eq!(err.matches("warning:").count(), 2, "{err}");
}

//! The real binary never prints a credential given in a URL (issue 9, item 4): userinfo
//! passwords, `password=`/`pass=`/`pwd=`/`token=`/`key=`/`apikey=`/`api_key=` query parameters,
//! and API keys in RPC URL paths — in `config check` output and in the errors of `migrate`.
use crate::common;

/// Every secret below starts with `SeKrEt` so one search finds any leak.
const DATABASE_URLS: &[&str] = &[
    "postgres://u@127.0.0.1:1/db?password=SeKrEtPgQuery1&sslmode=disable",
    "postgres://u:SeKrEtPgUserinfo2@127.0.0.1:1/db",
    "postgres://127.0.0.1:1/db?user=u&Password=SeKrEtPgUpper3",
    "mysql://u@127.0.0.1:1/db?pass=SeKrEtMyPass4",
    "mysql://u@127.0.0.1:1/db?sslmode=disabled&pwd=SeKrEtMyPwd5",
    "postgres://u@127.0.0.1:1/db?options=x&token=SeKrEtToken6",
    "postgres://u@127.0.0.1:1/db?sslpassword=SeKrEtSslPw7",
    "postgres://u:SeKrEt%40Encoded8@127.0.0.1:1/db",
];

const REDIS_URLS: &[&str] = &[
    "redis://127.0.0.1:1/0?password=SeKrEtRedisQuery9",
    "redis://:SeKrEtRedisUserinfo10@127.0.0.1:1/0",
    "rediss://default:SeKrEtRedisTls11@127.0.0.1:1",
];

const RPC_URLS: &str = "https://eth-mainnet.example.com/v2/SeKrEtPathKey12,https://rpc.example.com/?apikey=SeKrEtApiKey13&x=1,https://rpc2.example.com/rpc?api_key=SeKrEtApiKey14,https://rpc3.example.com/rpc?key=SeKrEtKey15";

fn assert_no_secret(what: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stdout.contains("SeKrEt") && !stderr.contains("SeKrEt"),
        "{what} leaked a secret:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}

#[test]
fn config_check_never_prints_a_credential_in_any_url_form() {
    let dir = tempfile::tempdir().unwrap();
    for (i, db) in DATABASE_URLS.iter().enumerate() {
        let redis = REDIS_URLS[i % REDIS_URLS.len()];
        let out = common::epusdt(dir.path())
            .env("EPUSDT_DATABASE_URL", db)
            .env("EPUSDT_REDIS_URL", redis)
            .env("EPUSDT_NETWORKS__ETHEREUM__RPC_URLS", RPC_URLS)
            .args(["config", "check"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_secret(&format!("config check with {db} / {redis}"), &out);
        let text = String::from_utf8_lossy(&out.stdout);
        // What is not secret stays visible.
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(text.contains("eth-mainnet.example.com"), "{text}");
    }
    // The same values from epusdt.toml.
    std::fs::write(
        dir.path().join("epusdt.toml"),
        format!(
            "database_url = \"{}\"\nredis_url = \"{}\"\n",
            DATABASE_URLS[0], REDIS_URLS[0]
        ),
    )
    .unwrap();
    let out = common::epusdt(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_no_secret("config check from epusdt.toml", &out);
}

/// A database that cannot be reached (each try waits for the pool timeout, so two forms only).
#[test]
fn migrate_errors_never_print_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    for db in [DATABASE_URLS[0], DATABASE_URLS[3]] {
        let out = common::epusdt(dir.path())
            .env("EPUSDT_DATABASE_URL", db)
            .args(["migrate"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{db}: nothing listens on port 1");
        assert_no_secret(&format!("migrate with {db}"), &out);
    }
}

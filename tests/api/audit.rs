//! The audit log against every database backend: events land in the table and the day's file,
//! secrets passed in details reach neither, concurrent writers keep lines whole, and over-long
//! fields fit their columns.
use crate::common;

use std::{os::unix::fs::PermissionsExt, path::Path};

use chrono::Utc;
use common::Backend;
use epusdt::audit::{ACTOR_CLI, AuditEvent, AuditLog, REDACTED, actions};
use epusdt::store::entities::audit_log;
use migration::MigratorTrait;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use serde_json::{Value, json};

const SECRET: &str = "Sup3r-Secret-Merchant-Key-4f2a9c";

async fn database(backend: Backend, dir: &Path) -> Option<DatabaseConnection> {
    let url = common::fresh_database(backend, dir).await?;
    let db = epusdt::store::connect(&url).await.expect("connect");
    migration::Migrator::up(&db, None).await.expect("migrate");
    Some(db)
}

async fn scenario(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(db) = database(backend, tmp.path()).await else {
        return;
    };
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(db.clone(), &dir).unwrap();

    log.record(
        AuditEvent::new(ACTOR_CLI, actions::MERCHANT_ADD, "merchant:1001")
            .with_ip("127.0.0.1")
            .with_details(json!({
                "pid": 1001,
                "name": "shop",
                "secret": SECRET,
                "request": {"params": {"sign": SECRET, "amount": "10.00"}, "apiKey": SECRET},
                "callback": format!("https://shop:{SECRET}@shop.example/cb"),
                "key_id": "0badc0de",
            })),
    )
    .await
    .unwrap();

    // Concurrent writers: every event lands whole, once, in both places.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.record(
                AuditEvent::new(
                    format!("ip:10.0.0.{i}"),
                    actions::SIGNATURE_FAILED,
                    "merchant:1001",
                )
                .with_ip(format!("10.0.0.{i}"))
                .with_details(json!({"provided_sign": SECRET, "n": i})),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    // Fields longer than their columns are cut to fit rather than failing the insert.
    log.record(AuditEvent::new(
        "x".repeat(200),
        actions::RATELIMIT_BURST,
        "é".repeat(300),
    ))
    .await
    .unwrap();

    let path = log.file_for(Utc::now().date_naive());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(SECRET), "secret in the audit file:\n{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines.len(), 42);
    let first = &lines[0];
    assert_eq!(first["actor"], "cli");
    assert_eq!(first["action"], "merchant.add");
    assert_eq!(first["target"], "merchant:1001");
    assert_eq!(first["ip"], "127.0.0.1");
    assert_eq!(first["details"]["secret"], REDACTED);
    assert_eq!(first["details"]["request"]["params"]["sign"], REDACTED);
    assert_eq!(first["details"]["request"]["params"]["amount"], "10.00");
    assert_eq!(first["details"]["request"]["apiKey"], REDACTED);
    assert_eq!(first["details"]["key_id"], "0badc0de");
    assert_eq!(first["details"]["name"], "shop");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut ns: Vec<i64> = lines[1..41]
        .iter()
        .map(|l| l["details"]["n"].as_i64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..40).collect::<Vec<_>>());

    let rows = audit_log::Entity::find()
        .order_by_asc(audit_log::Column::Id)
        .all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 42);
    for r in &rows {
        assert!(!r.details.contains(SECRET), "secret in the table: {r:?}");
        assert!(!r.actor.contains(SECRET) && !r.target.contains(SECRET));
    }
    let r0 = &rows[0];
    assert_eq!(
        (
            r0.actor.as_str(),
            r0.action.as_str(),
            r0.target.as_str(),
            r0.ip.as_str()
        ),
        ("cli", "merchant.add", "merchant:1001", "127.0.0.1")
    );
    let details: Value = serde_json::from_str(&r0.details).unwrap();
    assert_eq!(details, first["details"]);
    assert!((Utc::now().timestamp() - r0.at).abs() < 60);
    let last = rows.last().unwrap();
    assert_eq!(last.actor.chars().count(), 64);
    assert_eq!(last.target.chars().count(), 128);
    assert_eq!(last.ip, "");
    // The file keeps the full values.
    assert_eq!(lines[41]["target"].as_str().unwrap().chars().count(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_on_postgres() {
    scenario(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_on_mysql() {
    scenario(Backend::Mysql).await;
}

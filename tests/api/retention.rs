//! Retention against the real binary on SQLite: old finished jobs of its queue and old audit
//! files are removed while new ones, waiting jobs and other queues' jobs are kept; a WAL grown
//! by a burst is truncated by the periodic checkpoint (switched on by a SIGHUP reload). And the
//! queue vacuum on PostgreSQL and Redis through the library.
use crate::{common, reload::Gateway};

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::{Days, Utc};
use epusdt::queue::{Job, JobHandler, JobQueue, QueueBackend};
use futures::FutureExt;
use sea_orm::sqlx::{self, Row, SqlitePool};

async fn sqlite(gw: &Gateway) -> SqlitePool {
    let url = format!("sqlite://{}", gw.path("data/epusdt.db").display());
    SqlitePool::connect(&url)
        .await
        .expect("open the gateway's database")
}

/// A row of apalis' `Jobs` table: `status`, finished `done_ago` seconds ago (`None`: not
/// finished), due `run_in` seconds from now.
async fn insert_job(
    pool: &SqlitePool,
    id: &str,
    queue: &str,
    status: &str,
    done_ago: Option<i64>,
    run_in: i64,
) {
    let now = Utc::now().timestamp();
    sqlx::query(
        "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, done_at) \
         VALUES (x'00', ?1, ?2, ?3, 1, 1, ?4, ?5)",
    )
    .bind(id)
    .bind(queue)
    .bind(status)
    .bind(now + run_in)
    .bind(done_ago.map(|a| now - a))
    .execute(pool)
    .await
    .expect("insert job");
}

async fn job_ids(pool: &SqlitePool) -> Vec<String> {
    let mut ids: Vec<String> = sqlx::query("SELECT id FROM Jobs WHERE id LIKE 't-%'")
        .fetch_all(pool)
        .await
        .expect("select")
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn retention_removes_old_finished_jobs_and_audit_files_and_keeps_the_rest() {
    let today = Utc::now().date_naive();
    let old_day = today.checked_sub_days(Days::new(40)).expect("date");
    let recent_day = today.checked_sub_days(Days::new(10)).expect("date");
    let mut gw = Gateway::start(
        "audit_retention_days = 30\njob_retention_days = 7\nretention_interval_secs = 3600\n",
        |dir| {
            let audit = dir.join("data/audit");
            std::fs::create_dir_all(&audit).expect("audit dir");
            for day in [old_day, recent_day] {
                std::fs::write(
                    audit.join(format!("audit-{}.jsonl", day.format("%Y-%m-%d"))),
                    "{}\n",
                )
                .expect("audit file");
            }
            std::fs::write(audit.join("notes.txt"), "operator's file").expect("other file");
        },
    )
    .await;
    // The first run happens at start: the 40-day-old file goes, the 10-day-old one stays.
    let old_file = gw.path(&format!(
        "data/audit/audit-{}.jsonl",
        old_day.format("%Y-%m-%d")
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while old_file.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old audit file kept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.path(&format!(
            "data/audit/audit-{}.jsonl",
            recent_day.format("%Y-%m-%d")
        ))
        .exists()
    );
    assert!(gw.path("data/audit/notes.txt").exists());
    assert!(
        gw.path(&format!(
            "data/audit/audit-{}.jsonl",
            today.format("%Y-%m-%d")
        ))
        .exists()
    );

    let pool = sqlite(&gw).await;
    let day = 86_400;
    insert_job(
        &pool,
        "t-done-old",
        "epusdt",
        "Done",
        Some(8 * day),
        -9 * day,
    )
    .await;
    insert_job(
        &pool,
        "t-killed-old",
        "epusdt",
        "Killed",
        Some(8 * day),
        -9 * day,
    )
    .await;
    insert_job(
        &pool,
        "t-dead-old",
        "epusdt",
        "Failed",
        Some(8 * day),
        -9 * day,
    )
    .await;
    insert_job(&pool, "t-done-new", "epusdt", "Done", Some(day), -day).await;
    insert_job(
        &pool,
        "t-other-queue-old",
        "other",
        "Done",
        Some(8 * day),
        -9 * day,
    )
    .await;
    insert_job(&pool, "t-scheduled", "epusdt", "Pending", None, 30 * day).await;

    // The next run is an hour away: shorten the interval by a reload (a live key).
    let toml = std::fs::read_to_string(gw.path("epusdt.toml")).expect("toml");
    gw.write_config(&toml.replace(
        "retention_interval_secs = 3600",
        "retention_interval_secs = 1",
    ));
    let mark = gw.log_mark();
    gw.hup();
    gw.wait_log("configuration reloaded", mark).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ids = job_ids(&pool).await;
        if !ids
            .iter()
            .any(|i| i.ends_with("-old") && i != "t-other-queue-old")
        {
            assert_eq!(ids, ["t-done-new", "t-other-queue-old", "t-scheduled"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old finished jobs kept: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
}

fn wal_size(gw: &Gateway) -> u64 {
    std::fs::metadata(gw.path("data/epusdt.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_periodic_checkpoint_truncates_a_wal_grown_by_a_burst() {
    let mut gw = Gateway::start("sqlite_checkpoint_secs = 0\n", |_| {}).await;
    let pool = sqlite(&gw).await;
    sqlx::query("CREATE TABLE burst (b BLOB)")
        .execute(&pool)
        .await
        .expect("create");
    let mut tx = pool.begin().await.expect("begin");
    for _ in 0..64 {
        sqlx::query("INSERT INTO burst VALUES (randomblob(100000))")
            .execute(&mut *tx)
            .await
            .expect("insert");
    }
    tx.commit().await.expect("commit");
    let grown = wal_size(&gw);
    assert!(grown > 4_000_000, "the burst grew the WAL: {grown} bytes");

    let toml = std::fs::read_to_string(gw.path("epusdt.toml")).expect("toml");
    gw.write_config(&toml.replace("sqlite_checkpoint_secs = 0", "sqlite_checkpoint_secs = 1"));
    let mark = gw.log_mark();
    gw.hup();
    gw.wait_log("configuration reloaded", mark).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while wal_size(&gw) > 1_000_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "WAL still {} bytes",
            wal_size(&gw)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM burst")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 64, "the checkpoint keeps every row");
    pool.close().await;
}

/// Runs one job to completion and schedules another a day ahead, then vacuums with a zero age
/// until the finished one is gone: exactly it is removed, the scheduled one stays.
async fn vacuum_scenario(queue: JobQueue) {
    let ran = Arc::new(AtomicUsize::new(0));
    queue
        .push(
            Job::Expire {
                trade_id: "T-vacuum-now".into(),
            },
            None,
        )
        .await
        .expect("push");
    queue
        .push(
            Job::Expire {
                trade_id: "T-vacuum-later".into(),
            },
            Some(Utc::now() + chrono::Duration::days(1)),
        )
        .await
        .expect("push");
    let handler: JobHandler = {
        let ran = ran.clone();
        Arc::new(move |_job: Job| {
            ran.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }.boxed()
        })
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let queue = queue.clone();
        tokio::spawn(async move {
            queue
                .run_workers(handler, 1, async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    };
    let mut removed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while removed == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the finished job was not vacuumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        removed += queue.vacuum_finished(Duration::ZERO).await.expect("vacuum");
    }
    let _ = stop_tx.send(());
    let _ = runner.await;
    assert_eq!(removed, 1);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(
        queue.vacuum_finished(Duration::ZERO).await.expect("vacuum"),
        0
    );
    assert_eq!(
        queue.pending_jobs().await.expect("pending"),
        1,
        "scheduled job kept"
    );
}

fn unique_queue(prefix: &str) -> String {
    format!(
        "epusdt-retention-{prefix}-{}-{:x}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_on_postgres_removes_finished_jobs_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(url) = common::fresh_database(common::Backend::Postgres, dir.path()).await else {
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .expect("postgres");
    let queue = JobQueue::connect(QueueBackend::Postgres(pool.clone()))
        .await
        .expect("queue")
        .with_queue_name(unique_queue("pg"));
    vacuum_scenario(queue).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_on_redis_removes_finished_jobs_only() {
    let Some(url) = common::redis_url() else {
        return;
    };
    let name = unique_queue("redis");
    let queue = JobQueue::connect(QueueBackend::Redis(url.clone()))
        .await
        .expect("queue")
        .with_queue_name(&name);
    vacuum_scenario(queue).await;
    let client = redis::Client::open(url.as_str()).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{name}*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
}

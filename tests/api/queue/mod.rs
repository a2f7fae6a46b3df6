//! Integration tests of the durable job queue against real backends.
//!
//! SQLite always runs (temp file). PostgreSQL (`EPUSDT_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and Redis (`EPUSDT_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`) are skipped with a note when unreachable, unless
//! `EPUSDT_TEST_REQUIRE_SERVICES=1`, which turns an unreachable service into a failure.
//! Every test uses its own apalis queue name (and so its own rows/keys) and cleans up.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use epusdt::queue::{DEFAULT_QUEUE_NAME, Job, JobHandler, JobQueue, QueueBackend};
use futures::FutureExt;
use sea_orm::sqlx::{
    self, Row, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::oneshot;

type Log = Arc<Mutex<Vec<(Job, DateTime<Utc>)>>>;

fn require_services() -> bool {
    std::env::var("EPUSDT_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Fails when `EPUSDT_TEST_REQUIRE_SERVICES=1`, otherwise prints why the test is skipped.
fn skip_or_fail(what: &str, err: impl std::fmt::Display) {
    assert!(
        !require_services(),
        "{what} is unreachable and EPUSDT_TEST_REQUIRE_SERVICES=1: {err}"
    );
    eprintln!("NOTE: skipping test: {what} is unreachable ({err})");
}

fn unique_queue(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("epusdt-test-{prefix}-{}-{nanos:x}", std::process::id())
}

fn recording_handler(log: Log) -> JobHandler {
    Arc::new(move |job: Job| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push((job, Utc::now()));
            Ok(())
        }
        .boxed()
    })
}

async fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

async fn sqlite_pool(path: &std::path::Path, max_connections: u32) -> SqlitePool {
    // Like the application: WAL + synchronous=NORMAL, file created on first use.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .unwrap()
}

/// Push 3 jobs (one 2 s in the future), run 2 workers, check each ran exactly once and the
/// delayed one not early, then shut down and check run_workers returns.
async fn exercise(queue: JobQueue) {
    let backend = queue.backend_name();
    let log: Log = Arc::default();

    let pushed_at = Utc::now();
    let delayed_at = pushed_at + chrono::Duration::milliseconds(2000);
    let now_a = Job::Notify {
        order_id: 1,
        attempt: 1,
    };
    let now_b = Job::Expire {
        trade_id: "T-now".into(),
    };
    let later = Job::Notify {
        order_id: 2,
        attempt: 3,
    };
    queue.push(now_a.clone(), None).await.unwrap();
    queue.push(now_b.clone(), None).await.unwrap();
    queue.push(later.clone(), Some(delayed_at)).await.unwrap();

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runner = {
        let queue = queue.clone();
        let handler = recording_handler(log.clone());
        tokio::spawn(async move {
            queue
                .run_workers(handler, 2, async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    };

    let all_ran = wait_until(Duration::from_secs(20), || log.lock().unwrap().len() >= 3).await;
    assert!(
        all_ran,
        "{backend}: not all jobs ran: {:?}",
        log.lock().unwrap()
    );
    // Give duplicates a chance to show up before judging "exactly once".
    tokio::time::sleep(Duration::from_millis(1500)).await;

    stop_tx.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(15), runner).await;
    let result = stopped.unwrap_or_else(|_| panic!("{backend}: run_workers did not return"));
    result.unwrap().unwrap();

    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3, "{backend}: each job exactly once: {log:?}");
    let jobs: HashSet<String> = log.iter().map(|(j, _)| format!("{j:?}")).collect();
    for job in [&now_a, &now_b, &later] {
        assert!(
            jobs.contains(&format!("{job:?}")),
            "{backend}: {job:?} missing in {log:?}"
        );
    }
    for (job, ran_at) in &log {
        let after_push = (*ran_at - pushed_at).to_std().unwrap_or_default();
        if *job == later {
            assert!(
                *ran_at >= delayed_at,
                "{backend}: delayed job ran early: at {ran_at}, due {delayed_at}"
            );
            let late = (*ran_at - delayed_at).to_std().unwrap_or_default();
            assert!(
                late < Duration::from_secs(4),
                "{backend}: delayed job ran {late:?} after it was due"
            );
        } else {
            assert!(
                after_push < Duration::from_secs(4),
                "{backend}: immediate job {job:?} took {after_push:?}"
            );
        }
        eprintln!("{backend}: {job:?} ran {after_push:?} after push");
    }
}

#[test]
fn job_payload_is_stable_json() {
    let notify = Job::Notify {
        order_id: 42,
        attempt: 1,
    };
    assert_eq!(
        serde_json::to_value(&notify).unwrap(),
        serde_json::json!({"kind": "notify", "order_id": 42, "attempt": 1})
    );
    let expire = Job::Expire {
        trade_id: "T1".into(),
    };
    assert_eq!(
        serde_json::to_value(&expire).unwrap(),
        serde_json::json!({"kind": "expire", "trade_id": "T1"})
    );
    let back: Job = serde_json::from_str(r#"{"kind":"expire","trade_id":"T1"}"#).unwrap();
    assert_eq!(back, expire);
    assert_eq!(DEFAULT_QUEUE_NAME, "epusdt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runs_jobs_once_and_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(&dir.path().join("queue.db"), 4).await;
    let queue = JobQueue::connect(QueueBackend::Sqlite(pool.clone()))
        .await
        .unwrap();
    assert_eq!(queue.backend_name(), "sqlite");
    assert_eq!(queue.queue_name(), "epusdt");
    assert_eq!(queue.ping().await.unwrap(), "sqlite");
    exercise(queue).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_setup_keeps_pool_durable() {
    let dir = tempfile::tempdir().unwrap();
    let max = 4;
    let pool = sqlite_pool(&dir.path().join("sync.db"), max).await;
    JobQueue::connect(QueueBackend::Sqlite(pool.clone()))
        .await
        .unwrap();

    // Hold every connection the pool can give at once, so a connection that apalis' setup
    // could have left with synchronous=OFF would be among them.
    let mut conns = Vec::new();
    for _ in 0..max {
        conns.push(pool.acquire().await.unwrap());
    }
    for conn in &mut conns {
        let sync: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .unwrap()
            .get(0);
        assert!(
            sync == 1 || sync == 2,
            "PRAGMA synchronous = {sync} (0 = OFF is not allowed)"
        );
    }
    drop(conns);

    // And a brand-new pool on the same file (the next process start).
    let fresh = sqlite_pool(&dir.path().join("sync.db"), 1).await;
    let sync: i64 = sqlx::query("PRAGMA synchronous")
        .fetch_one(&fresh)
        .await
        .unwrap()
        .get(0);
    assert!(sync == 1 || sync == 2, "fresh pool: synchronous = {sync}");
    // apalis' tables exist in the application's database file.
    let tables: i64 = sqlx::query(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('Jobs', 'Workers')",
    )
    .fetch_one(&fresh)
    .await
    .unwrap()
    .get(0);
    assert_eq!(tables, 2);
    fresh.close().await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_failed_job_is_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(&dir.path().join("retry.db"), 4).await;
    let queue = JobQueue::connect(QueueBackend::Sqlite(pool.clone()))
        .await
        .unwrap();
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let handler: JobHandler = {
        let calls = calls.clone();
        Arc::new(move |_job: Job| {
            let calls = calls.clone();
            async move {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    calls.push(Instant::now());
                    calls.len()
                };
                if n == 1 {
                    Err("database is down".to_string())
                } else {
                    Ok(())
                }
            }
            .boxed()
        })
    };
    queue
        .push(
            Job::Expire {
                trade_id: "T-retry".into(),
            },
            None,
        )
        .await
        .unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
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
    assert!(wait_until(Duration::from_secs(15), || calls.lock().unwrap().len() >= 2).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one failure, one success, nothing more");
    let gap = calls[1] - calls[0];
    // First retry delay is 1 s ± 20 %.
    assert!(
        gap >= Duration::from_millis(750),
        "retried after only {gap:?}"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_job_of_crashed_worker_runs_again_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restart.db");
    let stuck = Job::Expire {
        trade_id: "T-stuck".into(),
    };

    // "Process" 1: the handler starts the job and never finishes; then the process dies.
    let pool1 = sqlite_pool(&path, 4).await;
    let queue1 = JobQueue::connect(QueueBackend::Sqlite(pool1.clone()))
        .await
        .unwrap();
    queue1.push(stuck.clone(), None).await.unwrap();
    let started: Log = Arc::default();
    let blocking: JobHandler = {
        let started = started.clone();
        Arc::new(move |job: Job| {
            let started = started.clone();
            async move {
                started.lock().unwrap().push((job, Utc::now()));
                futures::future::pending::<()>().await;
                Ok(())
            }
            .boxed()
        })
    };
    let crashed = {
        let queue1 = queue1.clone();
        tokio::spawn(async move {
            queue1
                .run_workers(blocking, 1, futures::future::pending())
                .await
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || !started
            .lock()
            .unwrap()
            .is_empty())
        .await
    );
    // Let the worker record its lock on the job, then kill everything without any cleanup.
    tokio::time::sleep(Duration::from_millis(500)).await;
    crashed.abort();
    let _ = crashed.await;
    drop(queue1);
    pool1.close().await;
    let crashed_at = Instant::now();

    // "Process" 2 on the same file.
    let pool2 = sqlite_pool(&path, 4).await;
    let queue2 = JobQueue::connect(QueueBackend::Sqlite(pool2.clone()))
        .await
        .unwrap();
    let log: Log = Arc::default();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runner = {
        let queue2 = queue2.clone();
        let handler = recording_handler(log.clone());
        tokio::spawn(async move {
            queue2
                .run_workers(handler, 1, async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    };
    // Orphaned after 20 s of silence, re-queued by the next heartbeat (every 5 s).
    let recovered = wait_until(Duration::from_secs(60), || !log.lock().unwrap().is_empty()).await;
    let took = crashed_at.elapsed();
    assert!(
        recovered,
        "job of the crashed worker did not run again within 60 s"
    );
    eprintln!("sqlite: orphaned job ran again {took:?} after the crash");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), runner)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].0, stuck);
    pool2.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_jobs_once_and_on_time() {
    let url = std::env::var("EPUSDT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = match PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => return skip_or_fail("PostgreSQL", e),
    };
    let name = unique_queue("pg");
    let queue = JobQueue::connect(QueueBackend::Postgres(pool.clone()))
        .await
        .unwrap()
        .with_queue_name(&name);
    assert_eq!(queue.backend_name(), "postgres");
    assert_eq!(queue.ping().await.unwrap(), "postgres");
    exercise(queue).await;

    sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1")
        .bind(&name)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM apalis.workers WHERE worker_type = $1")
        .bind(&name)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_runs_jobs_once_and_on_time() {
    let url =
        std::env::var("EPUSDT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let reachable = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok::<_, redis::RedisError>(conn)
    };
    let mut conn = match tokio::time::timeout(Duration::from_secs(5), reachable).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return skip_or_fail("Redis", e),
        Err(e) => return skip_or_fail("Redis", e),
    };
    let name = unique_queue("redis");
    let queue = JobQueue::connect(QueueBackend::Redis(url.clone()))
        .await
        .unwrap()
        .with_queue_name(&name);
    assert_eq!(queue.backend_name(), "redis");
    assert_eq!(queue.ping().await.unwrap(), "redis");
    exercise(queue).await;

    // Clean up every key of this queue.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{name}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<i64>(&mut conn)
            .await
            .unwrap();
    }
    redis::cmd("ZREM")
        .arg("core:apalis:queues:list")
        .arg(format!("{name}:workers"))
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn zero_workers_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(&dir.path().join("zero.db"), 1).await;
    let queue = JobQueue::connect(QueueBackend::Sqlite(pool.clone()))
        .await
        .unwrap();
    let handler = recording_handler(Arc::default());
    let err = queue.run_workers(handler, 0, async {}).await.unwrap_err();
    assert!(err.to_string().contains("at least one worker"), "{err}");
    pool.close().await;
}

mod shutdown;

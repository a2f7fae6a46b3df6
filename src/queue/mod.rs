//! The durable job queue: callback delivery ([`Job::Notify`]) (and, from earlier versions,
//! order expiry [`Job::Expire`]) are stored in SQLite, PostgreSQL or Redis through apalis before
//! [`JobQueue::push`] returns, and are worked off by [`JobQueue::run_workers`].
//! Nothing that must happen lives only in memory: a job whose worker dies (crash, kill,
//! shutdown timeout) is re-queued by apalis' orphan recovery and runs again, so delivery
//! is *at least once* and handlers must be idempotent.
//!
//! Timings (see the constants below for the reasoning):
//! - a job pushed for now by this process wakes this process' idle workers at once (an
//!   in-memory nudge after the job is stored; the stored job is what runs, so nothing is lost
//!   when the nudge is), e.g. a callback right after the payment commits;
//! - any other due job (a later `run_at`, or pushed by another instance) is picked up within
//!   [`POLL_INTERVAL`] (0.5 s) plus up to 1 s, because apalis stores `run_at` in whole
//!   seconds and we round *up* so that nothing runs early;
//! - a worker heartbeats every [`HEARTBEAT_INTERVAL`] (5 s) and is declared dead after
//!   [`MISSED_HEARTBEATS`] × 5 s = 20 s of silence; its jobs are then re-queued by the next
//!   heartbeat of any live worker of the same queue, i.e. ≈ 20–26 s after the crash;
//! - a handler error is retried up to [`MAX_ATTEMPTS`] (25) runs in total with exponential
//!   backoff (1 s, 2 s, 4 s … capped at 60 s, ±20 % jitter; ≈ 19 min in total).

use std::{
    fmt,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use apalis::prelude::{
    Attempt, Data, PollWith, Strategy, TaskBuilder, TaskSink, WorkerBuilder, WorkerBuilderExt,
    WorkerContext, WorkerError,
};
use apalis_postgres::PostgresStorage;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use chrono::{DateTime, Utc};
use futures::{FutureExt, future::BoxFuture};
use redis::aio::ConnectionManager;
use sea_orm::sqlx::{self, PgPool, SqlitePool, sqlite::SqlitePoolOptions};
use tokio::{sync::watch, task::JoinSet};

/// The apalis queue (job type) name every job of the gateway is stored under.
///
/// apalis defaults to `std::any::type_name::<Job>()`, which would silently orphan stored
/// jobs when the Rust type is renamed or moved; this name is part of the storage format.
mod retention;
mod stats;
mod worker;
use worker::*;

pub const DEFAULT_QUEUE_NAME: &str = "epusdt";

/// How often an idle worker asks the backend for due jobs.
///
/// apalis workers only wake on their heartbeat unless a poll strategy is attached, so
/// without this a job could wait up to a full heartbeat interval.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Interval between worker heartbeats (apalis `heartbeat_interval`; default 30 s).
///
/// Each heartbeat also re-queues jobs of workers that have been silent for longer than
/// `HEARTBEAT_INTERVAL × MISSED_HEARTBEATS`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Missed heartbeats after which a worker counts as dead and its jobs are re-queued
/// (apalis `missed_heartbeats`). 4 × 5 s = a job is orphaned after 20 s without a
/// heartbeat; generous enough that a busy but alive worker (SQLite busy timeout is 5 s)
/// is never declared dead.
pub const MISSED_HEARTBEATS: usize = 4;

/// Runs of a job (first run included) before apalis gives up on it; stored per job.
pub const MAX_ATTEMPTS: usize = 25;

/// Default bound on how long in-flight jobs may take to finish after shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// First retry delay after a handler error; doubles per attempt.
const RETRY_BASE_DELAY: Duration = Duration::from_secs(1);
/// Cap of the retry delay.
const RETRY_MAX_DELAY: Duration = Duration::from_secs(60);
/// Cap of the delay before a crashed worker (backend error) is restarted.
const RESTART_MAX_DELAY: Duration = Duration::from_secs(30);

/// The one job type of the gateway (serde JSON payload; keep it stable).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Deliver (or retry delivering) the merchant callback for an order; `attempt` starts at 1.
    Notify {
        /// Primary key of the order.
        order_id: i64,
        /// Delivery attempt, starting at 1.
        attempt: u32,
    },
    /// Expire an order at its expiration time if still waiting. No longer pushed (orders
    /// expire from their own `expires_at`, `service::order::expire_due`); still run, for jobs
    /// stored by an earlier version.
    Expire {
        /// The order's trade id.
        trade_id: String,
    },
    /// Tell the opted-in admins about `notice` through the Telegram bot: fans out into one
    /// [`Job::Telegram`] per recipient (a no-op when the bot is not configured).
    Alert {
        notice: crate::domain::notice::Notice,
    },
    /// Send one Telegram message (HTML, already escaped); `attempt` starts at 1. A 429 or an
    /// outage schedules the next attempt as a new job.
    Telegram {
        chat_id: i64,
        text: String,
        attempt: u32,
    },
}

/// Where the queue keeps its jobs.
pub enum QueueBackend {
    /// The application's SQLite pool; apalis tables (`Jobs`, `Workers`) live in the same file.
    Sqlite(SqlitePool),
    /// The application's PostgreSQL pool; apalis creates and uses its own schema `apalis`.
    Postgres(PgPool),
    /// A Redis URL (`redis://…`); keys are prefixed with the queue name.
    Redis(String),
}

impl fmt::Debug for QueueBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The Redis URL may carry a password: never print it.
        match self {
            Self::Sqlite(_) => f.write_str("QueueBackend::Sqlite(..)"),
            Self::Postgres(_) => f.write_str("QueueBackend::Postgres(..)"),
            Self::Redis(_) => f.write_str("QueueBackend::Redis(..)"),
        }
    }
}

/// Errors of the job queue, worded for an operator.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The backend could not be reached or did not answer.
    #[error("{backend} job queue is unreachable: {message}")]
    Unavailable {
        /// `sqlite`, `postgres` or `redis`.
        backend: &'static str,
        /// What went wrong, with a hint where one helps.
        message: String,
    },
    /// The backend's own setup (apalis migrations) failed.
    #[error("{backend} job queue setup (apalis migrations) failed: {message}")]
    Setup {
        /// `sqlite`, `postgres` or `redis`.
        backend: &'static str,
        /// What went wrong, with a hint where one helps.
        message: String,
    },
    /// A job could not be stored; the caller must treat the job as not enqueued.
    #[error("could not store job in the {backend} job queue: {message}")]
    Push {
        /// `sqlite`, `postgres` or `redis`.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The queue was asked to do something that makes no sense (e.g. zero workers).
    #[error("invalid job queue configuration: {0}")]
    Config(String),
}

/// Handler: returns Ok(()) when the job is done; Err(msg) makes apalis retry it later
/// (infrastructure failure, e.g. DB down).
pub type JobHandler = Arc<dyn Fn(Job) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

#[derive(Clone)]
enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    Redis(ConnectionManager),
}

/// Handle on the durable queue: cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct JobQueue {
    store: Store,
    queue_name: Arc<str>,
    shutdown_timeout: Duration,
    /// Nudges this process' idle workers when a job for now is pushed (one channel per worker).
    wakers: Arc<std::sync::Mutex<Vec<futures::channel::mpsc::Sender<()>>>>,
}

impl fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobQueue")
            .field("backend", &self.backend_name())
            .field("queue_name", &self.queue_name)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

impl JobQueue {
    /// Prepares storage (runs the backend's own setup/migrations) and returns a queue handle.
    pub async fn connect(backend: QueueBackend) -> Result<Self, JobError> {
        let store = match backend {
            QueueBackend::Sqlite(pool) => {
                setup_sqlite(&pool).await?;
                Store::Sqlite(pool)
            }
            QueueBackend::Postgres(pool) => {
                PostgresStorage::setup(&pool)
                    .await
                    .map_err(|e| JobError::Setup {
                        backend: "postgres",
                        message: format!(
                            "{e} (apalis needs to create schema `apalis` and extension `hstore`: \
                             the database role must be allowed to do so)"
                        ),
                    })?;
                Store::Postgres(pool)
            }
            QueueBackend::Redis(url) => Store::Redis(connect_redis(&url).await?),
        };
        Ok(Self {
            store,
            queue_name: Arc::from(DEFAULT_QUEUE_NAME),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            wakers: Arc::default(),
        })
    }

    /// Uses another apalis queue name than [`DEFAULT_QUEUE_NAME`] (tests, or several
    /// gateways sharing one Redis/PostgreSQL). Producers and workers must agree on it; an
    /// empty name falls back to [`DEFAULT_QUEUE_NAME`].
    #[must_use]
    pub fn with_queue_name(mut self, name: impl AsRef<str>) -> Self {
        let name = name.as_ref().trim();
        self.queue_name = Arc::from(if name.is_empty() {
            DEFAULT_QUEUE_NAME
        } else {
            name
        });
        self
    }

    /// Bound on how long [`run_workers`](Self::run_workers) lets in-flight jobs finish
    /// after `shutdown` resolved (default [`DEFAULT_SHUTDOWN_TIMEOUT`]). Jobs still running
    /// then are dropped and run again after orphan recovery.
    #[must_use]
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The apalis queue name jobs are stored under.
    pub fn queue_name(&self) -> &str {
        &self.queue_name
    }

    /// `"sqlite"`, `"postgres"` or `"redis"`.
    pub fn backend_name(&self) -> &'static str {
        match self.store {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
            Store::Redis(_) => "redis",
        }
    }

    /// Durably enqueue; `run_at` None = now. Does not return before the job is stored
    /// (SQLite/PostgreSQL: transaction committed; Redis: script executed).
    ///
    /// The backends store `run_at` in whole seconds; it is rounded *up* so the job never
    /// runs before `run_at`.
    pub async fn push(&self, job: Job, run_at: Option<DateTime<Utc>>) -> Result<(), JobError> {
        let mut builder = TaskBuilder::new(job).max_attempts(MAX_ATTEMPTS);
        if let Some(secs) = run_at.and_then(unix_seconds_ceil) {
            builder = builder.run_at_timestamp(secs);
        }
        let due_now = run_at.is_none_or(|at| at <= Utc::now());
        self.store_task(builder.build()).await?;
        if due_now {
            self.wake_workers();
        }
        Ok(())
    }

    /// Nudges every idle worker of this process to fetch now (best effort: a full channel
    /// already holds a nudge; a closed one belongs to a worker that ended).
    fn wake_workers(&self) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        wakers.retain_mut(|tx| match tx.try_send(()) {
            Ok(()) => true,
            Err(e) => !e.is_disconnected(),
        });
    }

    /// A worker's nudge channel: [`JobQueue::push`] sends on it; the worker fetches on receipt.
    fn wake_stream(&self) -> futures::channel::mpsc::Receiver<()> {
        let (tx, rx) = futures::channel::mpsc::channel(1);
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    async fn store_task(&self, task: apalis::prelude::Task<Job>) -> Result<(), JobError> {
        let backend = self.backend_name();
        let push_err = |message: String| JobError::Push { backend, message };
        match &self.store {
            Store::Sqlite(pool) => {
                let mut storage = SqliteStorage::<Job>::new(pool).with_config(self.sqlite_config());
                storage
                    .push_task(task)
                    .await
                    .map_err(|e| push_err(e.to_string()))
            }
            Store::Postgres(pool) => {
                let mut storage =
                    PostgresStorage::<Job>::new(pool).with_config(self.postgres_config());
                storage
                    .push_task(task)
                    .await
                    .map_err(|e| push_err(e.to_string()))
            }
            Store::Redis(conn) => {
                let mut storage =
                    RedisStorage::<Job>::new(conn.clone()).with_config(self.redis_config());
                storage
                    .push_task(task)
                    .await
                    .map_err(|e| push_err(e.to_string()))
            }
        }
    }

    /// Runs `workers` concurrent worker(s) pulling jobs and calling `handler` until
    /// `shutdown` resolves; then stops pulling, lets in-flight jobs finish (bounded by the
    /// shutdown timeout, default 10 s) and returns.
    ///
    /// Each worker is an apalis worker processing one job at a time and fetching one job
    /// per query, so no job waits in a busy worker's buffer while another worker is idle.
    /// A worker that fails on a backend error (e.g. database briefly down) is restarted
    /// under a new name after a backoff (1 s doubling to 30 s); the jobs it held are
    /// recovered by the heartbeat mechanism.
    pub async fn run_workers(
        &self,
        handler: JobHandler,
        workers: usize,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), JobError> {
        if workers == 0 {
            return Err(JobError::Config(
                "run_workers needs at least one worker".into(),
            ));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut set = JoinSet::new();
        for index in 0..workers {
            set.spawn(supervise(
                self.clone(),
                index,
                handler.clone(),
                stop_rx.clone(),
            ));
        }
        tracing::info!(
            backend = self.backend_name(),
            queue = %self.queue_name,
            workers,
            "job workers started"
        );

        shutdown.await;
        // Receivers live in the workers; a send error only means they all ended already.
        let _ = stop_tx.send(true);
        tracing::info!(
            timeout_secs = self.shutdown_timeout.as_secs_f64(),
            "job workers stopping; waiting for in-flight jobs"
        );

        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while let Some(res) = set.join_next().await {
                if let Err(e) = res {
                    tracing::error!(error = %e, "job worker task ended abnormally");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                still_running = set.len(),
                "job workers did not finish within the shutdown timeout; aborting them. \
                 Their jobs stay locked and run again ≈20–26 s after the next start \
                 (orphan recovery)"
            );
            set.shutdown().await;
        }
        tracing::info!("job workers stopped");
        Ok(())
    }

    /// Cheap liveness check for /health (a trivial query or PING). Returns the backend name.
    pub async fn ping(&self) -> Result<&'static str, JobError> {
        let backend = self.backend_name();
        let unavailable = |message: String| JobError::Unavailable { backend, message };
        match &self.store {
            Store::Sqlite(pool) => sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| unavailable(e.to_string())),
            Store::Postgres(pool) => sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| unavailable(e.to_string())),
            Store::Redis(conn) => {
                let mut conn = conn.clone();
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| unavailable(e.to_string()))
            }
        }?;
        Ok(backend)
    }

    /// Jobs of this queue waiting to run: due or scheduled, including failed ones that will be
    /// retried (the admin `/stats` queue depth). Running jobs are not counted.
    pub async fn pending_jobs(&self) -> Result<u64, JobError> {
        let backend = self.backend_name();
        let unavailable = |message: String| JobError::Unavailable { backend, message };
        // apalis' own definition of its queue length (`queue_length.sql`), for this queue
        // (`job_type`).
        let n: i64 = match &self.store {
            Store::Sqlite(pool) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM Jobs WHERE job_type = ?1 AND (status = 'Pending' \
                     OR (status = 'Failed' AND attempts < max_attempts))",
            )
            .bind(&*self.queue_name)
            .fetch_one(pool)
            .await
            .map_err(|e| unavailable(e.to_string()))?,
            Store::Postgres(pool) => sqlx::query_scalar(
                "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND (status = 'Pending' \
                     OR (status = 'Failed' AND attempts < max_attempts))",
            )
            .bind(&*self.queue_name)
            .fetch_one(pool)
            .await
            .map_err(|e| unavailable(e.to_string()))?,
            Store::Redis(conn) => {
                let c = self.redis_config();
                let mut conn = conn.clone();
                let (active, scheduled): (i64, i64) = redis::pipe()
                    .cmd("LLEN")
                    .arg(c.active_jobs_list())
                    .cmd("ZCARD")
                    .arg(c.scheduled_jobs_set())
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                active + scheduled
            }
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn sqlite_config(&self) -> apalis_sqlite::Config {
        apalis_sqlite::Config::default()
            .queue(&*self.queue_name)
            .batch_size(1)
            .heartbeat_interval(HEARTBEAT_INTERVAL)
            .missed_heartbeats(MISSED_HEARTBEATS)
            .lock_tasks(true)
            .persist_results(true)
    }

    fn postgres_config(&self) -> apalis_postgres::Config {
        apalis_postgres::Config::default()
            .queue(&*self.queue_name)
            .batch_size(1)
            .heartbeat_interval(HEARTBEAT_INTERVAL)
            .missed_heartbeats(MISSED_HEARTBEATS)
            .lock_tasks(true)
            .persist_results(true)
    }

    fn redis_config(&self) -> apalis_redis::Config {
        apalis_redis::Config::default()
            .queue(&*self.queue_name)
            .batch_size(1)
            .heartbeat_interval(HEARTBEAT_INTERVAL)
            .missed_heartbeats(MISSED_HEARTBEATS)
            .lock_tasks(true)
            .persist_results(true)
            // Nobody subscribes to apalis' pub/sub task events.
            .emit_events(false)
    }

    /// Builds one apalis worker bound to `ctx` and returns its run future.
    fn worker_future(
        &self,
        ctx: &WorkerContext,
        handler: &JobHandler,
        stop: &watch::Receiver<bool>,
    ) -> BoxFuture<'static, Result<(), WorkerError>> {
        macro_rules! run_worker {
            ($backend:expr) => {
                WorkerBuilder::new(ctx)
                    .backend($backend)
                    // One job at a time per worker; `workers` workers give the concurrency.
                    .concurrency(1)
                    .data(handler.clone())
                    .data(StopSignal(stop.clone()))
                    .build(execute_job)
                    .run()
                    .boxed()
            };
        }
        // Fetch when nudged by a push of this process, and every POLL_INTERVAL regardless.
        let strategy = || {
            Strategy::new()
                .stream(self.wake_stream())
                .interval(POLL_INTERVAL)
        };
        match &self.store {
            Store::Sqlite(pool) => run_worker!(PollWith::new(
                SqliteStorage::<Job>::new(pool).with_config(self.sqlite_config()),
                strategy()
            )),
            Store::Postgres(pool) => run_worker!(PollWith::new(
                PostgresStorage::<Job>::new(pool).with_config(self.postgres_config()),
                strategy()
            )),
            Store::Redis(conn) => run_worker!(PollWith::new(
                RedisStorage::<Job>::new(conn.clone()).with_config(self.redis_config()),
                strategy()
            )),
        }
    }
}

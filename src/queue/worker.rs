//! The worker side of the queue: storage setup, running a job with retries and panics caught,
//! and the supervisor that restarts a worker that died.
use super::*;

/// Runs apalis' SQLite setup without weakening the application's pool.
///
/// `SqliteStorage::setup` runs `PRAGMA journal_mode = WAL`, `synchronous = OFF`,
/// `temp_store`, `cache_size`, … on whatever pooled connections it gets. `synchronous` is
/// per connection, so running it on the application's pool would leave a connection with
/// `synchronous = OFF` in that pool — unacceptable for a payments database. We therefore
/// run the setup on a separate, short-lived single-connection pool opened with the very same
/// connect options (same file) and close it afterwards. Only the file-level effects remain:
/// the migrations (tables `Jobs`, `Workers`, `_sqlx_migrations`) and WAL journal mode,
/// which is persistent and pairs well with `synchronous = NORMAL`. The application's
/// connections keep whatever `synchronous` their options set (sqlx default: FULL).
pub(super) async fn setup_sqlite(pool: &SqlitePool) -> Result<(), JobError> {
    let setup_err = |message: String| JobError::Setup {
        backend: "sqlite",
        message,
    };
    // Holding one application connection keeps a shared in-memory database alive while the
    // setup connection works on it, and proves the database is reachable.
    let _guard = pool.acquire().await.map_err(|e| JobError::Unavailable {
        backend: "sqlite",
        message: e.to_string(),
    })?;
    let options = (*pool.connect_options()).clone();
    let setup_pool = SqlitePoolOptions::new()
        .idle_timeout(None)
        .max_lifetime(None)
        .max_connections(1)
        .min_connections(0)
        .connect_with(options)
        .await
        .map_err(|e| setup_err(format!("cannot open the database file: {e}")))?;
    let result = SqliteStorage::setup(&setup_pool).await;
    setup_pool.close().await;
    result.map_err(|e| setup_err(format!("{e} (is the database file writable?)")))
}

pub(super) async fn connect_redis(url: &str) -> Result<ConnectionManager, JobError> {
    let unavailable = |message: String| JobError::Unavailable {
        backend: "redis",
        message,
    };
    let client = redis::Client::open(url)
        .map_err(|e| JobError::Config(format!("invalid Redis URL: {e}")))?;
    // redis-rs defaults to a 500 ms response timeout, too tight for the apalis Lua scripts
    // under load: a timeout fails the worker (it is restarted, but that is noise).
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = tokio::time::timeout(
        Duration::from_secs(10),
        client.get_connection_manager_with_config(config),
    )
    .await
    .map_err(|_| unavailable("timed out connecting".into()))?
    .map_err(|e| unavailable(e.to_string()))?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(conn)
}

/// `run_at` as unix seconds, rounded up; `None` when it is not in the future of 1970.
pub(super) fn unix_seconds_ceil(at: DateTime<Utc>) -> Option<u64> {
    let secs = at.timestamp();
    let secs = if at.timestamp_subsec_nanos() > 0 {
        secs.checked_add(1)?
    } else {
        secs
    };
    u64::try_from(secs).ok().filter(|s| *s > 0)
}

/// Lets a handler's retry backoff end early when the workers are asked to stop.
#[derive(Clone)]
pub(super) struct StopSignal(pub(super) watch::Receiver<bool>);

pub(super) async fn wait_for_stop(rx: &mut watch::Receiver<bool>) {
    // Err means the sender is gone, which only happens once run_workers returns: stop too.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// The apalis task function: runs the handler and turns failures into retries.
///
/// apalis-sqlite and apalis-postgres re-fetch a failed job (status `Failed`,
/// `attempts < max_attempts`) on the very next poll, and apalis' own in-process
/// `RetryLayer` cannot be interrupted by shutdown (its retry waits forever once the worker
/// stops accepting calls). So the backoff happens here: after a failure the worker waits
/// `retry_delay(attempt)` before reporting it (ending early on shutdown), then apalis
/// stores the failure and hands the job out again. Each run counts as one attempt;
/// after [`MAX_ATTEMPTS`] runs the job stays `Failed` (Redis: moved to the dead set).
pub(super) async fn execute_job(
    job: Job,
    handler: Data<JobHandler>,
    stop: Data<StopSignal>,
    attempt: Attempt,
) -> Result<(), String> {
    let attempt = attempt.current();
    let result = match std::panic::catch_unwind(AssertUnwindSafe(|| (handler)(job.clone()))) {
        Ok(fut) => AssertUnwindSafe(fut)
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(format!("job handler panicked: {}", panic_text(&panic)))),
        Err(panic) => Err(format!("job handler panicked: {}", panic_text(&panic))),
    };
    let Err(message) = result else {
        return Ok(());
    };
    if attempt >= MAX_ATTEMPTS {
        tracing::error!(
            ?job,
            attempt,
            error = %message,
            "job failed for the last time; giving up (it stays in the queue as failed)"
        );
        return Err(message);
    }
    let delay = retry_delay(attempt);
    tracing::warn!(
        ?job,
        attempt,
        retry_in_secs = delay.as_secs_f64(),
        error = %message,
        "job failed; will retry"
    );
    let mut stop = stop.0.0.clone();
    if !*stop.borrow() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wait_for_stop(&mut stop) => {}
        }
    }
    Err(message)
}

pub(super) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Exponential backoff with ±20 % jitter: 1 s, 2 s, 4 s, … capped at 60 s.
pub(super) fn retry_delay(attempt: usize) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    let base = RETRY_BASE_DELAY
        .saturating_mul(1u32 << exp)
        .min(RETRY_MAX_DELAY);
    base.mul_f64(0.8 + 0.4 * rand::random::<f64>())
}

/// A name no other worker (of this or another process, now or later) has used: apalis
/// refuses to register a name that heartbeated recently, and re-using a dead worker's name
/// would only recover that worker's jobs.
pub(super) fn worker_name(index: usize, restart: u32) -> String {
    static NONCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nonce = NONCE.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{}-{nanos:x}", std::process::id())
    });
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("epusdt-{nonce}-w{index}-r{restart}-{seq}")
}

/// Keeps worker `index` running until stop is signalled, restarting it after backend errors.
pub(super) async fn supervise(
    queue: JobQueue,
    index: usize,
    handler: JobHandler,
    mut stop: watch::Receiver<bool>,
) {
    let mut restarts: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let name = worker_name(index, restarts);
        let started = std::time::Instant::now();
        let ctx = WorkerContext::new(&name);
        let mut run = queue.worker_future(&ctx, &handler, &stop);
        let result = tokio::select! {
            result = &mut run => result,
            () = wait_for_stop(&mut stop) => match ctx.stop() {
                // Stop fetching, let the in-flight job finish, re-queue fetched-but-unstarted ones.
                Ok(()) => run.await,
                // Never polled: nothing fetched, nothing to drain.
                Err(_) => Ok(()),
            },
        };
        let stopping = *stop.borrow();
        match result {
            Ok(()) if stopping => return,
            Ok(()) => tracing::warn!(worker = %name, "job worker ended unexpectedly; restarting"),
            Err(e) if stopping => {
                tracing::warn!(worker = %name, error = %e, "job worker ended with an error during shutdown");
                return;
            }
            Err(e) => tracing::error!(
                worker = %name,
                backend = queue.backend_name(),
                error = %e,
                "job worker failed (backend error); restarting it"
            ),
        }
        if started.elapsed() > Duration::from_secs(60) {
            restarts = 0; // it had been healthy for a while: start the backoff afresh
        }
        let delay = Duration::from_secs(1u64 << restarts.min(5)).min(RESTART_MAX_DELAY);
        restarts = restarts.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wait_for_stop(&mut stop) => return,
        }
    }
}

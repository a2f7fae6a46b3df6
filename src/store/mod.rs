//! Persistence: the sea-orm entities (one module per aggregate) and the database connection.
//!
//! This layer maps rows; it never decides business rules (status changes live in
//! `domain::order`, amounts in `domain::amount`). Named unique constraints are the source of truth
//! for uniqueness: callers insert and map the violation, they never SELECT-then-INSERT.
pub mod entities;
pub mod order;
pub mod order_inserts;
pub mod upstream;

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr};

/// Bytes a SQLite `-wal` file keeps after a checkpoint. Without a limit SQLite never shrinks the
/// WAL: a burst during which readers held back the automatic checkpoint (every 1,000 pages,
/// about 4 MiB) leaves the file at its peak (42 MB seen) for good. After each complete
/// checkpoint the next commit truncates the file to this size. 16 MiB is four automatic
/// checkpoints' worth, so ordinary operation never truncates and regrows the file, while a burst
/// costs at most 16 MiB of disk once it is over.
pub const SQLITE_JOURNAL_SIZE_LIMIT: u64 = 16 * 1024 * 1024;

/// Opens the pool and applies the SQLite pragmas a payments database needs.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let sqlite = url.starts_with("sqlite:");
    if sqlite {
        prepare_sqlite_file(url).await?;
    }
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(if sqlite { 8 } else { 20 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    no_reaper(&mut opts);
    // sqlx pings every connection it hands out by default: a second round trip (on SQLite a
    // second hand-off to the connection's thread) for every statement. A SQLite file cannot
    // hang up; a server can drop a connection that sat idle, so only those are pinged.
    if sqlite {
        opts.test_before_acquire(false);
    } else {
        opts.test_before_acquire_if_idle_for(Duration::from_secs(5));
    }
    if sqlite {
        // WAL for concurrent readers; synchronous=NORMAL is durable across process crashes in WAL
        // mode; busy_timeout so concurrent writers wait instead of failing. journal_size_limit is
        // per connection, hence set on every pooled one (see [`SQLITE_JOURNAL_SIZE_LIMIT`]).
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .create_if_missing(true)
                .pragma("journal_size_limit", SQLITE_JOURNAL_SIZE_LIMIT.to_string())
                .pragma(
                    "wal_autocheckpoint",
                    SQLITE_AUTOCHECKPOINT_PAGES.to_string(),
                )
        });
    }
    let db = Database::connect(opts).await?;
    if sqlite && !sqlite_keeps_limit_statements(&db).await? {
        tracing::warn!(
            "this binary's SQLite was built without SQLITE_ENABLE_QPSG (build it from the \
             repository, whose .cargo/config.toml sets it): every query with a LIMIT is parsed \
             and planned again on each run — correct, but slower"
        );
    }
    Ok(db)
}

/// Whether the linked SQLite has the query planner stability guarantee on by default
/// (`SQLITE_ENABLE_QPSG`, set in `.cargo/config.toml`). Without it SQLite marks a statement
/// with a bound `LIMIT ?` as depending on that value, and re-binding it for the next run
/// discards the prepared statement sqlx keeps.
pub async fn sqlite_keeps_limit_statements(db: &DatabaseConnection) -> Result<bool, DbErr> {
    let row: (i64,) = sea_orm::sqlx::query_as("SELECT sqlite_compileoption_used('ENABLE_QPSG')")
        .fetch_one(db.get_sqlite_connection_pool())
        .await
        .map_err(|e| DbErr::Custom(format!("sqlite_compileoption_used: {e}")))?;
    Ok(row.0 == 1)
}

/// Creates the SQLite file and switches it to WAL on one connection, before the pool opens
/// several at once: on a fresh file, pooled connections racing to change the journal mode get
/// "database is locked" (seen once at start-up under load).
async fn prepare_sqlite_file(url: &str) -> Result<(), DbErr> {
    use std::str::FromStr;

    use sea_orm::sqlx::{ConnectOptions as _, Connection as _, sqlite::SqliteConnectOptions};
    let failed = |e: sea_orm::sqlx::Error| DbErr::Custom(format!("opening the SQLite file: {e}"));
    let conn = SqliteConnectOptions::from_str(url)
        .map_err(failed)?
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(10))
        .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .map_err(failed)?;
    conn.close().await.map_err(failed)
}

/// WAL pages after which a committing connection checkpoints by itself (SQLite's default is
/// 1,000). That checkpoint runs inside the commit of whichever request crossed the line — an
/// order create stalls for the copy and the fsync — so the app checkpoints in the background
/// every [`CHECKPOINT_EVERY`] instead ([`checkpoint_passive`]); this larger threshold is only the
/// fallback.
pub const SQLITE_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// How often the app copies the SQLite WAL back ([`checkpoint_passive`]). Under a create load
/// each commit writes every page it touched to the WAL (~100 MB/s at 5,000 creates/s), so a 1 s
/// period let the WAL reach [`SQLITE_AUTOCHECKPOINT_PAGES`] and a request's commit did the copy
/// (create p99 35 ms at 1 s, 22–24 ms at 200 ms, 19–22 ms at 100 ms; 50 ms was no better).
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// A `PRAGMA wal_checkpoint(PASSIVE)`: copies what it can of the WAL into the database without
/// waiting for (or blocking) readers and writers. Run every [`CHECKPOINT_EVERY`] off the request
/// path.
/// Nothing on other backends.
pub async fn checkpoint_passive(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .execute(db.get_sqlite_connection_pool())
        .await
        .map_err(|e| DbErr::Custom(format!("wal_checkpoint: {e}")))?;
    Ok(())
}

/// Frames of a `PRAGMA wal_checkpoint(TRUNCATE)`: `busy` is true when a reader or writer kept
/// the checkpoint from finishing (the WAL was not truncated this time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub busy: bool,
    pub log_frames: i64,
    pub checkpointed_frames: i64,
}

/// Copies the SQLite WAL into the database and truncates the `-wal` file to zero bytes, so a
/// burst does not leave a large WAL behind until the next automatic checkpoint happens to
/// complete. `None` on other backends. Waits for writers up to `busy_timeout`.
pub async fn checkpoint(db: &DatabaseConnection) -> Result<Option<Checkpoint>, DbErr> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return Ok(None);
    }
    let row: (i64, i64, i64) = sea_orm::sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(db.get_sqlite_connection_pool())
        .await
        .map_err(|e| DbErr::Custom(format!("wal_checkpoint: {e}")))?;
    Ok(Some(Checkpoint {
        busy: row.0 != 0,
        log_frames: row.1,
        checkpointed_frames: row.2,
    }))
}

/// Turns off sqlx's idle/lifetime reaper. Its periodic task walks `0..num_idle()` without ever
/// awaiting, and `num_idle` can wrap to `usize::MAX` when a connection is released while another
/// is taken (launchbadge/sqlx#3645, still in sqlx-core 0.9.0): the task then spins at 100 % CPU
/// and a runtime shutdown hangs forever (seen once in CI). Connections are checked before use
/// (`test_before_acquire`, sqlx's default), so a connection the server dropped is replaced
/// without the reaper.
pub fn no_reaper(opts: &mut ConnectOptions) {
    opts.idle_timeout(None::<Duration>)
        .max_lifetime(None::<Duration>);
}

/// The same for a pool built with sqlx directly.
pub fn sqlite_pool_options() -> sea_orm::sqlx::sqlite::SqlitePoolOptions {
    sea_orm::sqlx::sqlite::SqlitePoolOptions::new()
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
}

/// Begins a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the write lock is
/// taken up front (waiting up to `busy_timeout`), because a deferred transaction that reads and
/// then writes fails at once with `SQLITE_BUSY_SNAPSHOT` ("database is locked", code 517) when
/// another connection wrote in between — busy_timeout does not apply to that case. Other
/// backends ignore the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// On SQLite, a turn at writing for this process: SQLite has one writer at a time, and a
/// connection that finds the file locked waits in SQLite's busy handler, which *sleeps* (1, 2,
/// 5, 10, … ms) instead of being woken when the lock is free. Hot writers (order inserts) take
/// a turn here first, so they queue on an async mutex and run back to back. Other backends
/// (row locks, real concurrency) get `None`. One gate for the process: several SQLite files in
/// one process (tests) only share turns.
pub async fn write_turn(db: &DatabaseConnection) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    static GATE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    if db.get_database_backend() == DbBackend::Sqlite {
        Some(GATE.lock().await)
    } else {
        None
    }
}

/// Is this a transient conflict the database resolved by aborting our statement or transaction
/// (MySQL deadlock 1213 / lock wait timeout 1205, PostgreSQL deadlock 40P01 / serialization
/// failure 40001, SQLite busy)? Retrying the whole transaction is the documented remedy.
pub fn is_transient(err: &DbErr) -> bool {
    // Matched on the servers' own messages (a bare code like "40001" could be any number in
    // an unrelated error).
    const TRANSIENT: [&str; 5] = [
        "Deadlock found when trying to get lock",
        "Lock wait timeout exceeded",
        "deadlock detected",
        "could not serialize access",
        "database is locked",
    ];
    let msg = err.to_string();
    TRANSIENT.iter().any(|t| msg.contains(t))
}

/// A short random pause before retrying a transient conflict (attempt 1, 2, …).
pub async fn transient_pause(attempt: u32) {
    use rand::Rng;
    let base = 10u64.saturating_mul(1 << attempt.min(6));
    let ms = rand::rng().random_range(base / 2..=base);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Attempts of a write transaction that hits transient conflicts.
pub const TRANSIENT_ATTEMPTS: u32 = 5;

/// A trivial round trip, for `/health`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}

/// The pool's open connections, idle ones among them, and its limit (`/metrics`).
pub fn pool_stats(db: &DatabaseConnection) -> Option<PoolStats> {
    fn of<D: sea_orm::sqlx::Database>(p: &sea_orm::sqlx::Pool<D>) -> PoolStats {
        let size = p.size();
        // `num_idle` can wrap while a connection is released (see [`no_reaper`]).
        let idle = u32::try_from(p.num_idle()).unwrap_or(u32::MAX).min(size);
        PoolStats {
            size,
            idle,
            max: p.options().get_max_connections(),
        }
    }
    match db.get_database_backend() {
        DbBackend::Sqlite => Some(of(db.get_sqlite_connection_pool())),
        DbBackend::Postgres => Some(of(db.get_postgres_connection_pool())),
        DbBackend::MySql => Some(of(db.get_mysql_connection_pool())),
        _ => None,
    }
}

/// See [`pool_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        DbBackend::MySql => "mysql",
        _ => "unknown",
    }
}

/// Does this error come from the named unique constraint? Each backend reports the name
/// differently (PostgreSQL and MySQL name the index; SQLite lists the columns), so we match both.
pub fn is_unique_violation(err: &DbErr, constraint: &str, sqlite_cols: &str) -> bool {
    let msg = err.to_string();
    let unique = msg.contains("UNIQUE constraint failed")
        || msg.contains("duplicate key value")
        || msg.contains("Duplicate entry");
    unique && (msg.contains(constraint) || msg.contains(sqlite_cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.cargo/config.toml` builds SQLite with `SQLITE_ENABLE_QPSG`; lose it and every `.one()`
    /// on SQLite is parsed and planned again on each run (a third of a check-status's CPU).
    #[tokio::test]
    async fn sqlite_keeps_its_statements_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.path().display());
        let db = connect(&url).await.unwrap();
        assert!(sqlite_keeps_limit_statements(&db).await.unwrap());
    }

    #[test]
    fn transient_conflicts_are_recognised_by_the_servers_messages() {
        let mysql = DbErr::Custom(
            "MySqlDatabaseError { code: Some(\"40001\"), number: 1213, message: \"Deadlock found when trying to get lock; try restarting transaction\" }".into(),
        );
        let pg = DbErr::Custom("error returned from database: deadlock detected".into());
        assert!(is_transient(&mysql) && is_transient(&pg));
        let other = DbErr::Custom("order 40001 not found (code 1213)".into());
        assert!(!is_transient(&other));
    }
}

//! Retention (issue 14 part 5): what would otherwise grow for ever is trimmed on a schedule by
//! every instance (each step is idempotent, so instances running it together is harmless):
//! finished jobs older than `job_retention_days`, audit JSONL files older than
//! `audit_retention_days`, and, on SQLite, a WAL checkpoint that truncates the `-wal` file
//! (every `sqlite_checkpoint_secs`). Log files are rotated and pruned by `telemetry`.
//!
//! Must never: touch pending, scheduled or running jobs, or the `audit_log` table.
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::{audit::AuditLog, config::Config, queue::JobQueue, store};

/// What one retention run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trimmed {
    pub jobs: u64,
    pub audit_files: usize,
}

/// Removes finished jobs and old audit files as `config` says. A failing step is logged and
/// does not stop the other.
pub async fn trim(queue: &JobQueue, audit: &AuditLog, config: &Config) -> Trimmed {
    let mut out = Trimmed::default();
    let age = Duration::from_secs(u64::from(config.job_retention_days) * 86_400);
    match queue.vacuum_finished(age).await {
        Ok(n) => out.jobs = n,
        Err(e) => tracing::warn!(error = %e, "retention: could not remove finished jobs"),
    }
    let today = chrono::Utc::now().date_naive();
    match audit.prune_files(config.audit_retention_days, today) {
        Ok(files) => out.audit_files = files.len(),
        Err(e) => tracing::warn!(error = %e, "retention: could not remove old audit files"),
    }
    if out != Trimmed::default() {
        tracing::info!(
            jobs = out.jobs,
            audit_files = out.audit_files,
            "retention: removed finished jobs and old audit files"
        );
    }
    out
}

/// Truncates the SQLite WAL of the database, or of the queue's own SQLite file when the
/// database is not SQLite (MySQL without Redis); a busy checkpoint is retried next time.
pub async fn checkpoint(db: &DatabaseConnection, queue: &JobQueue) {
    match store::checkpoint(db).await {
        Ok(Some(c)) if c.busy => {
            tracing::debug!("WAL checkpoint could not finish (database busy); next time")
        }
        Ok(Some(_)) => {}
        Ok(None) => {
            if let Err(e) = queue.checkpoint_own_file().await {
                tracing::warn!(error = %e, "queue file WAL checkpoint failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

//! Retention (issue 14 part 5): what would otherwise grow for ever is trimmed on a schedule by
//! every instance (each step is idempotent, so instances running it together is harmless):
//! finished jobs older than `job_retention_days`, audit JSONL files older than
//! `audit_retention_days`, and, on SQLite, a WAL checkpoint that truncates the `-wal` file
//! (every `sqlite_checkpoint_secs`). Log files are rotated and pruned by `telemetry`.
//!
//! Must never: touch pending, scheduled or running jobs, or the `audit_log` table.
use std::{io, path::PathBuf, time::Duration};

use chrono::{Days, NaiveDate};
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
    match prune_audit_files(audit, config.audit_retention_days, today) {
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

/// Removes `audit-YYYY-MM-DD.jsonl` files dated more than `keep_days` days before `today`
/// (UTC); `keep_days == 0` keeps every file. Other files in the directory are left alone.
/// Returns the removed paths.
pub fn prune_audit_files(
    audit: &AuditLog,
    keep_days: u32,
    today: NaiveDate,
) -> io::Result<Vec<PathBuf>> {
    if keep_days == 0 {
        return Ok(Vec::new());
    }
    let Some(cutoff) = today.checked_sub_days(Days::new(u64::from(keep_days))) else {
        return Ok(Vec::new());
    };
    let today_file = audit.file_for(today);
    let Some(dir) = today_file.parent() else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let date = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("audit-")?.strip_suffix(".jsonl"))
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        if let Some(date) = date
            && date < cutoff
        {
            std::fs::remove_file(&path)?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_past_the_retention_are_removed_others_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", tmp.path().join("a.db").display());
        let db = crate::store::connect(&url).await.expect("db");
        let dir = tmp.path().join("audit");
        let log = AuditLog::open(db, &dir).expect("open");
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).expect("date");
        for day in ["2026-10-01", "2026-11-01", "2026-11-02", "2026-12-01"] {
            std::fs::write(dir.join(format!("audit-{day}.jsonl")), "{}\n").expect("write");
        }
        std::fs::write(dir.join("audit-notes.txt"), "").expect("write");
        assert!(
            prune_audit_files(&log, 0, today).expect("prune").is_empty(),
            "0 keeps all"
        );
        let removed = prune_audit_files(&log, 30, today).expect("prune");
        assert_eq!(
            removed,
            [
                dir.join("audit-2026-10-01.jsonl"),
                dir.join("audit-2026-11-01.jsonl")
            ]
        );
        assert!(dir.join("audit-2026-11-02.jsonl").exists());
        assert!(dir.join("audit-2026-12-01.jsonl").exists());
        assert!(dir.join("audit-notes.txt").exists());
    }
}

//! Retention of the daily JSONL files: files older than `audit_retention_days` are removed.
//! The `audit_log` table is never pruned here (it is the record admins query).
use std::{io, path::PathBuf};

use chrono::{Days, NaiveDate};

use super::AuditLog;

impl AuditLog {
    /// Removes `audit-YYYY-MM-DD.jsonl` files dated more than `keep_days` days before `today`
    /// (UTC); `keep_days == 0` keeps every file. Other files in the directory are left alone.
    /// Returns the removed paths.
    pub fn prune_files(&self, keep_days: u32, today: NaiveDate) -> io::Result<Vec<PathBuf>> {
        if keep_days == 0 {
            return Ok(Vec::new());
        }
        let Some(cutoff) = today.checked_sub_days(Days::new(u64::from(keep_days))) else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(self.dir())? {
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
            log.prune_files(0, today).expect("prune").is_empty(),
            "0 keeps all"
        );
        let removed = log.prune_files(30, today).expect("prune");
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

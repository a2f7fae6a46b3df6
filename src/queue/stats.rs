//! How far behind the queue is, for `/metrics`: the age of the oldest job that is due and has
//! not started. Reads apalis' tables (or Redis keys) only; never changes a job.
use sea_orm::sqlx;

use super::{JobError, JobQueue, Store};

impl JobQueue {
    /// Seconds the oldest due, not yet started job of this queue has been waiting (0 when none
    /// is due). Redis keeps no start-by time for jobs already moved to the active list, so
    /// there it is the age of the oldest overdue scheduled job.
    pub async fn oldest_due_age_secs(&self) -> Result<u64, JobError> {
        let backend = self.backend_name();
        let unavailable = |message: String| JobError::Unavailable { backend, message };
        let now = chrono::Utc::now().timestamp();
        let oldest: Option<i64> = match &self.store {
            // `run_at` is unix seconds.
            Store::Sqlite(pool) => sqlx::query_scalar(
                "SELECT MIN(run_at) FROM Jobs WHERE job_type = ?1 AND run_at <= ?2 \
                     AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))",
            )
            .bind(&*self.queue_name)
            .bind(now)
            .fetch_one(pool)
            .await
            .map_err(|e| unavailable(e.to_string()))?,
            Store::Postgres(pool) => sqlx::query_scalar(
                "SELECT CAST(EXTRACT(EPOCH FROM MIN(run_at)) AS BIGINT) FROM apalis.jobs \
                     WHERE job_type = $1 AND run_at <= now() \
                     AND (status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts))",
            )
            .bind(&*self.queue_name)
            .fetch_one(pool)
            .await
            .map_err(|e| unavailable(e.to_string()))?,
            Store::Redis(conn) => {
                let mut conn = conn.clone();
                let first: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
                    .arg(self.redis_config().scheduled_jobs_set())
                    .arg(0)
                    .arg(now)
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                first.first().map(|(_, score)| *score as i64)
            }
        };
        Ok(oldest.map_or(0, |t| u64::try_from(now - t).unwrap_or(0)))
    }
}

//! Retention of finished jobs: apalis keeps every done or dead job (with its result) for ever.
//! [`JobQueue::vacuum_finished`] removes this queue's finished jobs older than a cut-off.
//!
//! apalis' own `Vacuum::vacuum_before` is not used: on SQLite it compares the integer `run_at`
//! with a date string (so it removes every finished job whatever its age), ignores the queue
//! name and runs a full `VACUUM` of the payments database; on Redis it walks every job and
//! leaves the ids in the done/dead sets.
use std::time::Duration;

use sea_orm::sqlx;

use super::{JobError, JobQueue, Store};

/// Removes finished jobs from the done and dead sets, the data hash, the result hash and the
/// metadata. KEYS: data hash, metadata prefix, done set, dead set; ARGV: age in seconds.
const REDIS_VACUUM_LUA: &str = r#"
local cutoff = tonumber(redis.call("TIME")[1]) - tonumber(ARGV[1])
local deleted = 0
for s = 3, 4 do
  for _, id in ipairs(redis.call("SMEMBERS", KEYS[s])) do
    local meta = KEYS[2] .. ":" .. id
    local done_at = tonumber(redis.call("HGET", meta, "done_at"))
    if (done_at and done_at <= cutoff) or redis.call("EXISTS", meta) == 0 then
      redis.call("HDEL", KEYS[1], id)
      redis.call("HDEL", KEYS[2] .. ":result", id)
      redis.call("DEL", meta)
      redis.call("SREM", KEYS[s], id)
      deleted = deleted + 1
    end
  end
end
return deleted
"#;

impl JobQueue {
    /// `PRAGMA wal_checkpoint(TRUNCATE)` on the queue's own SQLite file (MySQL without Redis
    /// keeps the queue in `<data_dir>/queue.db`); `Ok(false)` on other backends or when busy.
    pub async fn checkpoint_own_file(&self) -> Result<bool, JobError> {
        let Store::Sqlite(pool) = &self.store else {
            return Ok(false);
        };
        let busy: i64 = sqlx::query_scalar("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(pool)
            .await
            .map_err(|e| JobError::Unavailable {
                backend: self.backend_name(),
                message: e.to_string(),
            })?;
        Ok(busy == 0)
    }

    /// Deletes this queue's jobs that finished (done, killed, or failed with no attempt left)
    /// more than `older_than` ago. Pending, scheduled, running and retrying jobs are never
    /// touched. Returns how many were removed.
    pub async fn vacuum_finished(&self, older_than: Duration) -> Result<u64, JobError> {
        let backend = self.backend_name();
        let unavailable = |message: String| JobError::Unavailable { backend, message };
        let secs = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        let cutoff = chrono::Utc::now().timestamp().saturating_sub(secs);
        match &self.store {
            Store::Sqlite(pool) => sqlx::query(
                "DELETE FROM Jobs WHERE job_type = ?1 AND done_at IS NOT NULL AND done_at < ?2 \
                 AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))",
            )
            .bind(&*self.queue_name)
            .bind(cutoff)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| unavailable(e.to_string())),
            Store::Postgres(pool) => sqlx::query(
                "DELETE FROM apalis.jobs WHERE job_type = $1 AND done_at IS NOT NULL \
                 AND done_at < to_timestamp($2) \
                 AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))",
            )
            .bind(&*self.queue_name)
            .bind(cutoff)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| unavailable(e.to_string())),
            Store::Redis(conn) => {
                let c = self.redis_config();
                let n: i64 = redis::Script::new(REDIS_VACUUM_LUA)
                    .key(c.job_data_hash())
                    .key(c.job_meta_hash())
                    .key(c.done_jobs_set())
                    .key(c.dead_jobs_set())
                    .arg(older_than.as_secs())
                    .invoke_async(&mut conn.clone())
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    }
}

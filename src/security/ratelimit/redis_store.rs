//! The Redis store: one Lua script ([`SLIDING_WINDOW_LUA`]) checks and counts every rule of a
//! request in one `EVALSHA` round trip, on the Redis server's clock. It only talks to Redis; what
//! happens when Redis fails (the breaker and the failure policy) is the limiter's business.
use redis::aio::ConnectionManager;

use super::window::{Observed, Rule, ms};
use crate::security::REDIS_RESPONSE_TIMEOUT;

/// Why the Redis store gave no answer; the limiter then applies its failure policy.
#[derive(Debug, thiserror::Error)]
pub enum RedisStoreError {
    #[error("timed out")]
    TimedOut,
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected script reply of {0} values")]
    UnexpectedReply(usize),
}

/// The sliding window counter for all rules of one request, atomically. `KEYS[i]` is rule i's
/// hash (`i` window index, `c` current count, `p` previous count, `d` window last reported as
/// limited); `ARGV[2i-1]`, `ARGV[2i]` its limit and window in ms. Returns
/// `{all_admitted, then per rule: fits, prev, curr, elapsed_ms, first_denial}`.
pub const SLIDING_WINDOW_LUA: &str = r#"
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rows = {}
local all = 1
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i - 1])
  local w = tonumber(ARGV[2 * i])
  local idx = math.floor(now / w)
  local h = redis.call('HMGET', KEYS[i], 'i', 'c', 'p', 'd')
  local si = tonumber(h[1]) or -1
  local c = tonumber(h[2]) or 0
  local p = tonumber(h[3]) or 0
  local d = tonumber(h[4]) or -1
  if si ~= idx then
    if si == idx - 1 then p = c else p = 0 end
    c = 0
  end
  local e = now - idx * w
  local ok = 0
  if p * (w - e) + (c + 1) * w <= limit * w then ok = 1 else all = 0 end
  rows[i] = {idx, c, p, d, e, ok, w}
end
local out = {all}
for i = 1, #KEYS do
  local r = rows[i]
  local c, d, first = r[2], r[4], 0
  if all == 1 then
    c = c + 1
  elseif r[6] == 0 and d ~= r[1] then
    d = r[1]
    first = 1
  end
  redis.call('HSET', KEYS[i], 'i', r[1], 'c', c, 'p', r[3], 'd', d)
  redis.call('PEXPIRE', KEYS[i], 2 * r[7])
  out[#out + 1] = r[6]
  out[#out + 1] = r[3]
  out[#out + 1] = c
  out[#out + 1] = r[5]
  out[#out + 1] = first
end
return out
"#;

pub(super) struct RedisStore {
    pub(super) conn: ConnectionManager,
    pub(super) script: redis::Script,
    pub(super) prefix: String,
}

impl RedisStore {
    pub(super) async fn check(
        &self,
        rules: &[Rule],
    ) -> Result<Vec<(Observed, bool)>, RedisStoreError> {
        let mut inv = self.script.prepare_invoke();
        for r in rules {
            inv.key(format!("{}{}:{}", self.prefix, ms(r.window), r.key))
                .arg(r.limit)
                .arg(ms(r.window));
        }
        let mut conn = self.conn.clone();
        let call = inv.invoke_async::<Vec<i64>>(&mut conn);
        let raw = tokio::time::timeout(2 * REDIS_RESPONSE_TIMEOUT, call)
            .await
            .map_err(|_| RedisStoreError::TimedOut)??;
        if raw.len() != 1 + 5 * rules.len() {
            return Err(RedisStoreError::UnexpectedReply(raw.len()));
        }
        let all = raw[0] == 1;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(raw[1..]
            .chunks_exact(5)
            .map(|c| {
                (
                    Observed {
                        fits: c[0] == 1,
                        prev: n(c[1]),
                        curr: n(c[2]),
                        elapsed: n(c[3]),
                        first_denial: c[4] == 1,
                    },
                    all,
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_before() {
        assert_eq!(RedisStoreError::TimedOut.to_string(), "timed out");
        assert_eq!(
            RedisStoreError::UnexpectedReply(3).to_string(),
            "unexpected script reply of 3 values"
        );
        let e: RedisStoreError =
            redis::RedisError::from((redis::ErrorKind::Io, "connection refused")).into();
        assert_eq!(
            e.to_string(),
            redis::RedisError::from((redis::ErrorKind::Io, "connection refused")).to_string()
        );
    }
}

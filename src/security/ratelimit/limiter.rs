//! The limiter: the in-process store, optionally Redis in front of it, and the breaker between
//! them. When Redis fails, [`RedisFailurePolicy`] decides (fall back to in-process counters, admit
//! without counting, or refuse); the breaker then skips Redis for a while and lets one request
//! at a time probe it, so an outage costs no per-request latency.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::aio::ConnectionManager;

use super::{
    RedisFailurePolicy, WARN_EVERY_MS,
    local::Local,
    redis_store::{RedisStore, SLIDING_WINDOW_LUA},
    window::{Decision, Rule, Source, Verdict, assemble, ms, uncounted},
};

/// Key prefix in Redis (`<prefix><window ms>:<key>`) when no namespace is given.
pub const DEFAULT_REDIS_PREFIX: &str = "epusdt:rl:";

/// In-process keys kept at most; past that, arbitrary keys are evicted (their counts restart).
pub const DEFAULT_MAX_LOCAL_KEYS: usize = 200_000;

/// How long Redis is skipped after it failed.
pub const DEFAULT_REDIS_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The sliding-window limiter: Redis when given a connection, in-process otherwise. Cheap to
/// clone; clones share counters.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    local: Local,
    redis: Option<RedisStore>,
    on_failure: RedisFailurePolicy,
    retry_after: Duration,
    /// `Local::now_ms` until which Redis is skipped after a failure.
    skip_redis_until: AtomicU64,
    last_warn: AtomicU64,
    degraded: AtomicBool,
}

/// Builds a [`RateLimiter`].
pub struct RateLimiterBuilder {
    redis: Option<ConnectionManager>,
    on_failure: RedisFailurePolicy,
    prefix: String,
    max_local_keys: usize,
    retry_after: Duration,
}

impl RateLimiterBuilder {
    /// Count in Redis through this connection (see [`crate::security::redis_manager`]).
    pub fn redis(mut self, conn: Option<ConnectionManager>) -> Self {
        self.redis = conn;
        self
    }
    pub fn on_redis_failure(mut self, policy: RedisFailurePolicy) -> Self {
        self.on_failure = policy;
        self
    }
    /// Redis key prefix; tests use a unique one.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    pub fn max_local_keys(mut self, n: usize) -> Self {
        self.max_local_keys = n;
        self
    }
    /// How long Redis is skipped after a failure before it is tried again.
    pub fn redis_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
        self
    }
    pub fn build(self) -> RateLimiter {
        RateLimiter {
            inner: Arc::new(Inner {
                local: Local::new(self.max_local_keys),
                redis: self.redis.map(|conn| RedisStore {
                    conn,
                    script: redis::Script::new(SLIDING_WINDOW_LUA),
                    prefix: self.prefix,
                }),
                on_failure: self.on_failure,
                retry_after: self.retry_after,
                skip_redis_until: AtomicU64::new(0),
                last_warn: AtomicU64::new(0),
                degraded: AtomicBool::new(false),
            }),
        }
    }
}

impl RateLimiter {
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            redis: None,
            on_failure: RedisFailurePolicy::Fallback,
            prefix: DEFAULT_REDIS_PREFIX.into(),
            max_local_keys: DEFAULT_MAX_LOCAL_KEYS,
            retry_after: DEFAULT_REDIS_RETRY_AFTER,
        }
    }

    /// Counters in this process only.
    pub fn in_process() -> Self {
        Self::builder().build()
    }

    /// Counters in Redis when `redis` is `Some`, with `on_failure` deciding when it is down.
    pub fn new(redis: Option<ConnectionManager>, on_failure: RedisFailurePolicy) -> Self {
        Self::builder()
            .redis(redis)
            .on_redis_failure(on_failure)
            .build()
    }

    /// Is Redis the primary store?
    pub fn uses_redis(&self) -> bool {
        self.inner.redis.is_some()
    }

    /// Checks and counts one key: at most `limit` requests per sliding `window` (`0` = unlimited:
    /// admitted, nothing counted, source [`Source::Unlimited`]).
    pub async fn check(&self, key: &str, limit: u32, window: Duration) -> Decision {
        let rule = Rule {
            name: "default",
            key: key.to_string(),
            limit,
            window,
        };
        let verdict = self.check_all(std::slice::from_ref(&rule)).await;
        verdict
            .decisions
            .into_iter()
            .next()
            .unwrap_or_else(|| uncounted(&rule, Source::Unlimited))
    }

    /// Checks all `rules` of one request atomically, in one Redis round trip: the request is
    /// counted against every rule only when every rule admits it. Rules with limit 0 are skipped.
    pub async fn check_all(&self, rules: &[Rule]) -> Verdict {
        let active: Vec<Rule> = rules.iter().filter(|r| r.limit > 0).cloned().collect();
        if active.is_empty() {
            return Verdict {
                allowed: true,
                decisions: Vec::new(),
            };
        }
        let inner = &self.inner;
        if let Some(redis) = &inner.redis {
            let now = inner.local.now_ms();
            let until = inner.skip_redis_until.load(Ordering::Relaxed);
            let try_redis = if now < until {
                false
            } else if !inner.degraded.load(Ordering::Relaxed) {
                true
            } else {
                // Half-open breaker: one request probes Redis, the others keep to the policy,
                // so a Redis that still hangs costs one slow request per retry period, not all.
                inner
                    .skip_redis_until
                    .compare_exchange(
                        until,
                        now + ms(inner.retry_after),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            };
            if try_redis {
                match redis.check(&active).await {
                    Ok(seen) => {
                        if inner.degraded.swap(false, Ordering::Relaxed) {
                            inner.skip_redis_until.store(0, Ordering::Relaxed);
                            tracing::info!("redis is back: rate limits are shared again");
                        }
                        return assemble(&active, seen, Source::Redis);
                    }
                    Err(e) => {
                        let now = inner.local.now_ms();
                        inner
                            .skip_redis_until
                            .store(now + ms(inner.retry_after), Ordering::Relaxed);
                        inner.degraded.store(true, Ordering::Relaxed);
                        let last = inner.last_warn.load(Ordering::Relaxed);
                        if (last == 0 || now.saturating_sub(last) >= WARN_EVERY_MS)
                            && inner
                                .last_warn
                                .compare_exchange(
                                    last,
                                    now.max(1),
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                )
                                .is_ok()
                        {
                            tracing::warn!(
                                error = %e,
                                policy = %inner.on_failure,
                                "redis rate limiting unavailable; applying rate_limit_redis_failure policy"
                            );
                        }
                    }
                }
            }
            match inner.on_failure {
                RedisFailurePolicy::Fallback => {}
                RedisFailurePolicy::Allow => {
                    return Verdict {
                        allowed: true,
                        decisions: active
                            .iter()
                            .map(|r| uncounted(r, Source::Unavailable))
                            .collect(),
                    };
                }
                RedisFailurePolicy::Deny => {
                    let wait = inner
                        .skip_redis_until
                        .load(Ordering::Relaxed)
                        .saturating_sub(inner.local.now_ms())
                        .max(1000);
                    return Verdict {
                        allowed: false,
                        decisions: active
                            .iter()
                            .map(|r| Decision {
                                allowed: false,
                                retry_after: Duration::from_millis(wait),
                                ..uncounted(r, Source::Unavailable)
                            })
                            .collect(),
                    };
                }
            }
        }
        let now = inner.local.now_ms();
        assemble(
            &active,
            inner.local.check_at(&active, now),
            Source::InProcess,
        )
    }
}

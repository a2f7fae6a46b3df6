//! Rate limiting for every public route (DESIGN §8): a sliding window per client IP, per
//! (client IP, route) and per authenticated merchant, in Redis when configured (shared by every
//! instance) and in-process otherwise. Over the limit a request gets `429 Too Many Requests` with
//! `Retry-After` and the IETF `RateLimit-*` headers; admitted requests carry `RateLimit-*` too.
//!
//! Algorithm: the two-bucket sliding window counter (as used by Cloudflare and nginx's
//! `limit_req` descendants). Each key keeps the count of the current and the previous fixed
//! window; the estimate `prev × (1 − elapsed/window) + curr` slides smoothly, costs O(1) memory
//! per key (a sliding log would cost one entry per request) and needs one Redis hash per key.
//! A request is counted against *all* of its rules only when *every* rule admits it, so a denied
//! request never eats into another quota, and denied requests are not counted at all.
//!
//! Redis: one Lua script ([`SLIDING_WINDOW_LUA`]) checks and updates all the rules of a request
//! atomically in one `EVALSHA` round trip, with time taken from the Redis server so instances with
//! skewed clocks agree. Keys expire two windows after their last write. When Redis fails, the
//! [`RedisFailurePolicy`] decides (default: fall back to in-process counters, warn at most every
//! 30 s); a breaker then skips Redis for a few seconds so an outage costs no per-request latency.
//!
//! Architecture invariants:
//! - This module never buffers a request body (a refused request's body, at most
//!   [`DRAIN_BODY_LIMIT`], is read and thrown away so its keep-alive connection survives the
//!   `429`). Merchant limits are counted by the handler, *after*
//!   the signature is verified ([`RateLimit::check_merchant`]): counting the unauthenticated `pid`
//!   of a query string would let anyone exhaust a merchant's quota with unsigned junk.
//! - A limited key is reported to the audit log once per key per window ("rate-limit burst"),
//!   never once per request.
//! - `/health` and `/metrics` are exempt ([`EXEMPT_PATHS`]): monitoring must not be throttled,
//!   and both are cheap.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use redis::aio::ConnectionManager;

pub use crate::config::ratelimit::{
    Cidr, DEFAULT_WINDOW, RateLimitSettings, RedisFailurePolicy, RouteLimits, TrustedProxies,
};

/// Paths never rate limited: monitoring must keep working while a client is being throttled.
pub const EXEMPT_PATHS: &[&str] = &["/health", "/metrics"];

/// Route key used for requests that matched no route (404s): scanners are limited like a route.
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// Key prefix in Redis (`<prefix><window ms>:<key>`) when no namespace is given.
pub const DEFAULT_REDIS_PREFIX: &str = "epusdt:rl:";

/// In-process keys kept at most; past that, arbitrary keys are evicted (their counts restart).
pub const DEFAULT_MAX_LOCAL_KEYS: usize = 200_000;

/// How long Redis is skipped after it failed.
pub const DEFAULT_REDIS_RETRY_AFTER: Duration = Duration::from_secs(5);

const SWEEP_EVERY_MS: u64 = 10_000;
const WARN_EVERY_MS: u64 = 30_000;

/// The per-(IP, route) limit for `route`.
pub fn route_limit(settings: &RateLimitSettings, route: &str) -> u32 {
    match settings.rate_limit_routes.0.get(route) {
        Some(n) => *n,
        None if crate::protocol::is_merchant_route(route) => 0,
        None => settings.rate_limit_route_per_minute,
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Redis,
    InProcess,
    /// Redis was down and the policy (`allow` / `deny`) answered without counting.
    Unavailable,
    /// The limit is 0 (disabled): nothing was counted.
    Unlimited,
}

/// One limit to apply: at most `limit` requests per sliding `window` for `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Short name for headers and logs: `ip`, `route`, `merchant`.
    pub name: &'static str,
    pub key: String,
    /// `0` means unlimited: the rule is skipped.
    pub limit: u32,
    pub window: Duration,
}

/// The outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Does this rule admit the request?
    pub allowed: bool,
    pub name: &'static str,
    pub limit: u32,
    pub window: Duration,
    /// Requests still admitted right now (after counting this one, if it was admitted).
    pub remaining: u32,
    /// Time until the full quota is back.
    pub reset_after: Duration,
    /// When denied: time until one more request would be admitted. Zero when allowed.
    pub retry_after: Duration,
    /// True exactly once per key per window: the first denial (for the audit log).
    pub first_denial: bool,
    pub source: Source,
}

/// The outcome of all rules of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Admitted by every rule (and then counted against every rule).
    pub allowed: bool,
    /// One per rule with a non-zero limit, in the order given.
    pub decisions: Vec<Decision>,
}

impl Verdict {
    /// The decision to report in headers: the denying rule that asks for the longest wait, or,
    /// when admitted, the rule with the fewest requests left.
    pub fn binding(&self) -> Option<&Decision> {
        if self.allowed {
            self.decisions
                .iter()
                .min_by_key(|d| (d.remaining, std::cmp::Reverse(d.reset_after)))
        } else {
            self.decisions
                .iter()
                .filter(|d| !d.allowed)
                .max_by_key(|d| d.retry_after)
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// One key's counters: the window index they belong to, the current and previous counts, and the
/// window in which the key was last reported as limited.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    window_ms: u64,
    idx: u64,
    curr: u64,
    prev: u64,
    denied_idx: Option<u64>,
}

impl Bucket {
    fn roll(&mut self, idx: u64) {
        if self.idx != idx {
            self.prev = if idx == self.idx.wrapping_add(1) {
                self.curr
            } else {
                0
            };
            self.curr = 0;
            self.idx = idx;
        }
    }
}

/// The state of one rule as seen by a check (the same numbers the Lua script returns).
#[derive(Debug, Clone, Copy)]
struct Observed {
    fits: bool,
    prev: u64,
    /// After counting this request, if it was admitted.
    curr: u64,
    elapsed: u64,
    first_denial: bool,
}

/// Would one more request fit? `prev·(w−e) + (curr+1)·w ≤ limit·w`, in integers (the Lua
/// script evaluates the same inequality).
fn fits(limit: u64, w: u64, prev: u64, curr: u64, e: u64) -> bool {
    let lhs =
        u128::from(prev) * u128::from(w.saturating_sub(e)) + (u128::from(curr) + 1) * u128::from(w);
    lhs <= u128::from(limit) * u128::from(w)
}

fn decide(rule: &Rule, o: Observed, source: Source) -> Decision {
    let limit = u64::from(rule.limit);
    let w = ms(rule.window);
    let e = o.elapsed.min(w);
    let decayed = u128::from(o.prev) * u128::from(w - e);
    let budget = (u128::from(limit) * u128::from(w)).saturating_sub(decayed) / u128::from(w);
    let remaining = u64::try_from(budget)
        .unwrap_or(u64::MAX)
        .saturating_sub(o.curr)
        .min(limit);
    let reset_ms = if o.curr > 0 {
        2 * w - e
    } else if o.prev > 0 {
        w - e
    } else {
        0
    };
    let retry_ms = if o.fits {
        0
    } else if o.curr < limit && o.prev > 0 {
        // Still fits in this window once enough of the previous window has slid out.
        let room = u128::from(limit - o.curr - 1) * u128::from(w);
        let keep = u64::try_from(room / u128::from(o.prev)).unwrap_or(u64::MAX);
        (w.saturating_sub(keep)).saturating_sub(e).max(1)
    } else {
        // This window is full: wait for the next one, then for the old count to slide out.
        let room = u128::from(limit.saturating_sub(1)) * u128::from(w);
        let keep = u64::try_from(room / u128::from(o.curr.max(1))).unwrap_or(u64::MAX);
        (w - e) + w.saturating_sub(keep)
    };
    Decision {
        allowed: o.fits,
        name: rule.name,
        limit: rule.limit,
        window: rule.window,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_after: Duration::from_millis(reset_ms),
        retry_after: Duration::from_millis(retry_ms),
        first_denial: o.first_denial,
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// In-process store

struct Local {
    epoch: Instant,
    max_keys: usize,
    state: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    buckets: HashMap<String, Bucket>,
    last_sweep_ms: u64,
    last_evict_warn_ms: Option<u64>,
}

impl Local {
    fn new(max_keys: usize) -> Self {
        Self {
            epoch: Instant::now(),
            max_keys: max_keys.max(16),
            state: Mutex::new(LocalState::default()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks and counts all rules at `now_ms` atomically (one lock).
    fn check_at(&self, rules: &[Rule], now_ms: u64) -> Vec<(Observed, bool)> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms.saturating_sub(state.last_sweep_ms) >= SWEEP_EVERY_MS {
            state.last_sweep_ms = now_ms;
            // A bucket two windows old has fully slid out: it counts nothing any more.
            state
                .buckets
                .retain(|_, b| now_ms / b.window_ms < b.idx.saturating_add(2));
        }
        let keys: Vec<String> = rules
            .iter()
            .map(|r| format!("{}:{}", ms(r.window), r.key))
            .collect();
        let new_keys = keys
            .iter()
            .filter(|k| !state.buckets.contains_key(*k))
            .count();
        if state.buckets.len() + new_keys > self.max_keys {
            // Under a flood of distinct keys (spoofed IPv6 /64s, say) bound memory: drop an
            // arbitrary eighth. Those keys restart from zero, which only ever errs on the lenient side.
            let drop = self.max_keys / 8 + new_keys;
            let victims: Vec<String> = state.buckets.keys().take(drop).cloned().collect();
            for k in victims {
                state.buckets.remove(&k);
            }
            if state
                .last_evict_warn_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= WARN_EVERY_MS)
            {
                state.last_evict_warn_ms = Some(now_ms);
                tracing::warn!(
                    max_keys = self.max_keys,
                    "in-process rate limiter is full; evicting arbitrary keys"
                );
            }
        }
        let mut seen = Vec::with_capacity(rules.len());
        for (rule, key) in rules.iter().zip(&keys) {
            let w = ms(rule.window);
            let idx = now_ms / w;
            let b = state.buckets.entry(key.clone()).or_insert(Bucket {
                window_ms: w,
                idx,
                ..Bucket::default()
            });
            b.roll(idx);
            let ok = fits(u64::from(rule.limit), w, b.prev, b.curr, now_ms - idx * w);
            seen.push((idx, ok));
        }
        let all = seen.iter().all(|(_, ok)| *ok);
        let mut out = Vec::with_capacity(rules.len());
        for ((rule, key), (idx, ok)) in rules.iter().zip(&keys).zip(seen) {
            let w = ms(rule.window);
            let Some(b) = state.buckets.get_mut(key) else {
                continue;
            };
            let mut first_denial = false;
            if all {
                b.curr += 1;
            } else if !ok && b.denied_idx != Some(idx) {
                b.denied_idx = Some(idx);
                first_denial = true;
            }
            out.push((
                Observed {
                    fits: ok,
                    prev: b.prev,
                    curr: b.curr,
                    elapsed: now_ms - idx * w,
                    first_denial,
                },
                all,
            ));
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

// ---------------------------------------------------------------------------------------------
// Redis store

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

struct RedisStore {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
}

impl RedisStore {
    async fn check(&self, rules: &[Rule]) -> Result<Vec<(Observed, bool)>, String> {
        let mut inv = self.script.prepare_invoke();
        for r in rules {
            inv.key(format!("{}{}:{}", self.prefix, ms(r.window), r.key))
                .arg(r.limit)
                .arg(ms(r.window));
        }
        let mut conn = self.conn.clone();
        let call = inv.invoke_async::<Vec<i64>>(&mut conn);
        let raw = tokio::time::timeout(2 * super::REDIS_RESPONSE_TIMEOUT, call)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if raw.len() != 1 + 5 * rules.len() {
            return Err(format!("unexpected script reply of {} values", raw.len()));
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

// ---------------------------------------------------------------------------------------------
// The limiter

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
    /// Count in Redis through this connection (see [`super::redis_manager`]).
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

fn uncounted(rule: &Rule, source: Source) -> Decision {
    Decision {
        allowed: true,
        name: rule.name,
        limit: rule.limit,
        window: rule.window,
        remaining: rule.limit,
        reset_after: Duration::ZERO,
        retry_after: Duration::ZERO,
        first_denial: false,
        source,
    }
}

fn assemble(rules: &[Rule], seen: Vec<(Observed, bool)>, source: Source) -> Verdict {
    let allowed = seen.iter().all(|(_, all)| *all) && seen.len() == rules.len();
    Verdict {
        allowed,
        decisions: rules
            .iter()
            .zip(seen)
            .map(|(r, (o, _))| decide(r, o, source))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP: the middleware, merchant checks, responses

/// The rate limits of the HTTP server: a [`RateLimiter`] plus the configured limits. This is the
/// middleware's state; clone it into `AppState` so handlers can call [`RateLimit::check_merchant`].
#[derive(Clone)]
pub struct RateLimit {
    limiter: RateLimiter,
    settings: Arc<RateLimitSettings>,
    /// Where bursts are recorded (table + JSONL) besides the log.
    audit: Option<crate::audit::AuditLog>,
}

impl RateLimit {
    /// Limits from `settings`, counted in Redis when `redis` is `Some`, under keys
    /// `epusdt:<namespace>:rl:…`. Pass the deployment's `queue_name`: every instance of one
    /// deployment shares it (so they share limits), other deployments on the same Redis do not.
    pub fn new(
        settings: RateLimitSettings,
        redis: Option<ConnectionManager>,
        namespace: &str,
    ) -> Self {
        let limiter = RateLimiter::builder()
            .redis(redis)
            .on_redis_failure(settings.rate_limit_redis_failure)
            .key_prefix(format!("epusdt:{namespace}:rl:"))
            .build();
        Self::with_limiter(settings, limiter)
    }

    pub fn with_limiter(settings: RateLimitSettings, limiter: RateLimiter) -> Self {
        Self {
            limiter,
            settings: Arc::new(settings),
            audit: None,
        }
    }

    /// Also record bursts in the audit trail (table + daily JSONL file).
    pub fn with_audit(mut self, audit: crate::audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    pub fn settings(&self) -> &RateLimitSettings {
        &self.settings
    }

    /// The rules for a request from `client` (an [`ip_key`]) to `route` (a route template).
    pub fn request_rules(&self, client: &str, route: &str) -> Vec<Rule> {
        let s = &self.settings;
        vec![
            Rule {
                name: "ip",
                key: format!("ip:{client}"),
                limit: s.rate_limit_per_minute,
                window: s.window,
            },
            Rule {
                name: "route",
                key: format!("route:{client}:{route}"),
                limit: route_limit(s, route),
                window: s.window,
            },
        ]
    }

    /// Counts one authenticated request of merchant `pid`. Call it in the handler after the
    /// signature is verified and before the work; on `Err`, return the error as the response.
    pub async fn check_merchant(&self, pid: i64) -> Result<Decision, RateLimited> {
        let rule = Rule {
            name: "merchant",
            key: format!("merchant:{pid}"),
            limit: self.settings.rate_limit_merchant_per_minute,
            window: self.settings.window,
        };
        let verdict = self.limiter.check_all(std::slice::from_ref(&rule)).await;
        audit_bursts(&verdict, std::slice::from_ref(&rule), &format!("pid {pid}"));
        if verdict.allowed {
            Ok(verdict
                .decisions
                .into_iter()
                .next()
                .unwrap_or_else(|| uncounted(&rule, Source::Unlimited)))
        } else {
            Err(RateLimited(verdict))
        }
    }
}

/// Free-function form of [`RateLimit::check_merchant`].
pub async fn check_merchant(rl: &RateLimit, pid: i64) -> Result<Decision, RateLimited> {
    rl.check_merchant(pid).await
}

/// A refused request; its response is `429` (or `503` when Redis is down under the `deny`
/// policy) with `Retry-After`, `RateLimit-*` and the API's JSON envelope.
#[derive(Debug, Clone)]
pub struct RateLimited(pub Verdict);

impl IntoResponse for RateLimited {
    fn into_response(self) -> Response {
        let binding = self.0.binding().copied();
        let retry = binding
            .map(|d| secs_ceil(d.retry_after).max(1))
            .unwrap_or(1);
        let unavailable = binding.is_some_and(|d| d.source == Source::Unavailable);
        let (status, message) = if unavailable {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("rate limiter unavailable: retry after {retry} s"),
            )
        } else {
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many requests: retry after {retry} s"),
            )
        };
        let mut resp = crate::http::reply::envelope(
            u32::from(status.as_u16()),
            &message,
            serde_json::Value::Null,
        );
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry));
        set_headers(h, &self.0);
        resp
    }
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX)
}

/// Adds `RateLimit-Limit/Remaining/Reset` (draft-ietf-httpapi-ratelimit-headers, older form) and
/// the structured `RateLimit-Policy` / `RateLimit` fields (newer form) for the binding rule.
pub fn set_headers(h: &mut HeaderMap, verdict: &Verdict) {
    let Some(d) = verdict.binding() else { return };
    if matches!(d.source, Source::Unavailable | Source::Unlimited) {
        return;
    }
    let reset = secs_ceil(d.reset_after);
    h.insert(
        HeaderName::from_static("ratelimit-limit"),
        HeaderValue::from(d.limit),
    );
    h.insert(
        HeaderName::from_static("ratelimit-remaining"),
        HeaderValue::from(d.remaining),
    );
    h.insert(
        HeaderName::from_static("ratelimit-reset"),
        HeaderValue::from(reset),
    );
    let policy = verdict
        .decisions
        .iter()
        .map(|p| {
            format!(
                "\"{}\";q={};w={}",
                p.name,
                p.limit,
                secs_ceil(p.window).max(1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(v) = HeaderValue::from_str(&policy) {
        h.insert(HeaderName::from_static("ratelimit-policy"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\";r={};t={reset}", d.name, d.remaining)) {
        h.insert(HeaderName::from_static("ratelimit"), v);
    }
}

fn audit_bursts(verdict: &Verdict, rules: &[Rule], who: &str) {
    for (d, r) in verdict.decisions.iter().zip(rules) {
        if d.first_denial {
            metrics::counter!("epusdt_rate_limit_bursts_total", "rule" => d.name).increment(1);
            tracing::warn!(
                target: "epusdt::audit",
                action = "rate_limit.burst",
                rule = d.name,
                key = %r.key,
                limit = d.limit,
                window_secs = d.window.as_secs(),
                client = who,
                "rate-limit burst: {} limit of {} per {} s reached by {}",
                d.name,
                d.limit,
                d.window.as_secs(),
                who
            );
        }
    }
}

/// The client address the middleware settled on (after proxy rules), for handlers that audit.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// The axum middleware: limits every request except [`EXEMPT_PATHS`] per client IP and per
/// (client IP, route template). Wire it with `Router::layer` (not `route_layer`) so that 404s
/// are limited too; it needs `into_make_service_with_connect_info::<SocketAddr>()`.
pub async fn middleware(State(rl): State<RateLimit>, mut req: Request, next: Next) -> Response {
    if EXEMPT_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = client_ip(peer, req.headers(), &rl.settings.trusted_proxies);
    req.extensions_mut().insert(ClientAddr(client));
    let client_key = client.map(ip_key).unwrap_or_else(|| "unknown".to_owned());
    let rules = rl.request_rules(&client_key, &route);
    let verdict = rl.limiter.check_all(&rules).await;
    if !verdict.allowed {
        audit_bursts(&verdict, &rules, &format!("{client_key} on {route}"));
        if let Some(audit) = &rl.audit {
            for (d, r) in verdict.decisions.iter().zip(&rules) {
                if d.first_denial {
                    let event = crate::audit::AuditEvent::new(
                        format!("ip:{client_key}"),
                        crate::audit::actions::RATELIMIT_BURST,
                        route.clone(),
                    )
                    .with_ip(client_key.clone())
                    .with_details(serde_json::json!({
                        "rule": d.name,
                        "limit": d.limit,
                        "window_secs": d.window.as_secs(),
                        "bucket": r.key,
                    }));
                    if let Err(e) = audit.record(event).await {
                        tracing::error!(error = %e, "audit write failed");
                    }
                }
            }
        }
        if let Some(d) = verdict.binding() {
            metrics::counter!("epusdt_rate_limited_total", "rule" => d.name).increment(1);
        }
        let drained = drain_body(req).await;
        let mut resp = RateLimited(verdict).into_response();
        if !drained {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return resp;
    }
    let mut resp = next.run(req).await;
    // A handler that applied a narrower limit (check_merchant) already reported it.
    if !resp.headers().contains_key("ratelimit-limit") {
        set_headers(resp.headers_mut(), &verdict);
    }
    resp
}

/// Largest request body a refused request has read and discarded before its `429`.
pub const DRAIN_BODY_LIMIT: usize = 64 * 1024;
/// How long a refused request's body may take to arrive.
pub const DRAIN_BODY_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads and discards the body of a request that is refused without reaching its handler, so
/// the connection can stay alive: a server that answers and closes while the client is still
/// sending makes the kernel reset the connection, and the client sees a broken pipe instead of
/// the `429` (52 of 2,000 keep-alive requests in one burst). Bounded by [`DRAIN_BODY_LIMIT`]
/// and [`DRAIN_BODY_TIMEOUT`]; `false` when the body was not read whole (too large, too slow,
/// or the client waits for `100 Continue`, which we must not invite), and the answer then says
/// `connection: close`.
async fn drain_body(req: Request) -> bool {
    if req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        return false;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_BODY_LIMIT as u64) {
        return false;
    }
    let body = req.into_body();
    matches!(
        tokio::time::timeout(
            DRAIN_BODY_TIMEOUT,
            axum::body::to_bytes(body, DRAIN_BODY_LIMIT)
        )
        .await,
        Ok(Ok(_))
    )
}

/// The client's address: the TCP peer, or — only when the peer is a trusted proxy — the
/// rightmost `X-Forwarded-For` entry that is not itself a trusted proxy (entries further left
/// were written by the client and cannot be believed), else `X-Real-IP`.
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return Some(peer);
    }
    let chain: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !chain.is_empty() {
        let mut client = peer;
        for hop in chain.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !trusted.contains(ip) {
                        break;
                    }
                }
                // Garbage: the last address a trusted proxy vouched for is the best we have.
                None => break,
            }
        }
        return Some(client);
    }
    headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_hop)
        .or(Some(peer))
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

/// The limiter key for a client: the IPv4 address, or the IPv6 /64 (one host usually owns a
/// whole /64, so per-address keys would be trivially dodged).
pub fn ip_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(net))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &'static str, limit: u32, window_ms: u64) -> Rule {
        Rule {
            name,
            key: name.into(),
            limit,
            window: Duration::from_millis(window_ms),
        }
    }

    fn run(local: &Local, rules: &[Rule], now: u64) -> Verdict {
        assemble(rules, local.check_at(rules, now), Source::InProcess)
    }

    #[test]
    fn admits_exactly_the_limit_then_denies_with_a_retry_time() {
        let l = Local::new(1000);
        let r = [rule("a", 3, 1000)];
        for left in [2, 1, 0] {
            let v = run(&l, &r, 10);
            assert!(v.allowed);
            assert_eq!(v.decisions[0].remaining, left);
        }
        let v = run(&l, &r, 20);
        assert!(!v.allowed);
        assert!(v.decisions[0].first_denial);
        // Window full: next window starts in 980 ms, then 3 old requests must slide to ≤ 2:
        // 3·(1000−e)/1000 ≤ 2 → e ≥ 334 → 980 + 334.
        assert_eq!(v.decisions[0].retry_after, Duration::from_millis(1314));
        assert!(
            !run(&l, &r, 30).decisions[0].first_denial,
            "once per window"
        );
        assert!(!run(&l, &r, 1000 + 333).allowed);
        assert!(run(&l, &r, 1000 + 334).allowed);
    }

    #[test]
    fn the_window_slides_instead_of_resetting() {
        let l = Local::new(1000);
        let r = [rule("a", 10, 1000)];
        for _ in 0..10 {
            assert!(run(&l, &r, 900).allowed);
        }
        // A fixed window would hand out 10 fresh requests at t=1000; the sliding one has
        // 10·(1−0.1)=9 still counted, so one more fits.
        assert!(run(&l, &r, 1100).allowed);
        assert!(!run(&l, &r, 1100).allowed);
        // Two windows later everything has slid out.
        let v = run(&l, &r, 3000);
        assert!(v.allowed);
        assert_eq!(v.decisions[0].remaining, 9);
    }

    #[test]
    fn a_denied_rule_counts_nothing_anywhere() {
        let l = Local::new(1000);
        let wide = rule("ip", 100, 1000);
        let narrow = rule("route", 1, 1000);
        assert!(run(&l, &[wide.clone(), narrow.clone()], 0).allowed);
        let v = run(&l, &[wide.clone(), narrow.clone()], 1);
        assert!(!v.allowed);
        assert!(v.decisions[0].allowed && !v.decisions[1].allowed);
        assert_eq!(v.binding().map(|d| d.name), Some("route"));
        assert_eq!(run(&l, &[wide], 2).decisions[0].remaining, 98);
    }

    #[test]
    fn memory_stays_bounded() {
        let l = Local::new(100);
        for i in 0..1000 {
            let r = Rule {
                key: format!("k{i}"),
                ..rule("k", 5, 1000)
            };
            run(&l, &[r], 0);
        }
        assert!(l.len() <= 100, "{}", l.len());
        // Old keys are swept once they have slid out.
        run(&l, &[rule("late", 5, 1000)], 60_000);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().unwrap(),
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let none = TrustedProxies::default();
        assert_eq!(client_ip(Some(peer), &h, &none), Some(peer));
        let lan = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            client_ip(Some(peer), &h, &lan),
            Some("1.2.3.4".parse().unwrap())
        );
        let mut h = HeaderMap::new();
        h.insert("x-real-ip", "[2001:db8::5]:443".parse().unwrap());
        assert_eq!(
            client_ip(Some(peer), &h, &lan),
            Some("2001:db8::5".parse().unwrap())
        );
        let mapped: IpAddr = "::ffff:10.1.1.1".parse().unwrap();
        assert!(lan.contains(mapped));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        assert_eq!(
            ip_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(ip_key("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn merchant_routes_have_no_route_limit_unless_overridden() {
        let mut s = RateLimitSettings::default();
        assert_eq!(route_limit(&s, "/pay/check-status/{trade_id}"), 120);
        assert_eq!(route_limit(&s, "/api/v1/order/create-transaction"), 0);
        s.rate_limit_routes
            .0
            .insert("/api/v1/order/create-transaction".into(), 5);
        assert_eq!(route_limit(&s, "/api/v1/order/create-transaction"), 5);
        s.rate_limit_routes.0.insert("nope".into(), 5);
        assert_eq!(s.validate().map_err(|e| e.0), Err("rate_limit_routes"));
    }
}

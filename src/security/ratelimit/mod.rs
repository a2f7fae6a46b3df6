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
//! - This module never sees a request body, and never an HTTP type: the middleware, the client-IP
//!   rules and the `429` reply live in `http::middleware::ratelimit` (a refused request's body,
//!   at most `DRAIN_BODY_LIMIT`, is read and thrown away there so its keep-alive connection
//!   survives the `429`). Merchant limits are counted by the handler, *after*
//!   the signature is verified ([`RateLimit::check_merchant`]): counting the unauthenticated `pid`
//!   of a query string would let anyone exhaust a merchant's quota with unsigned junk.
//! - A limited key is reported to the audit log once per key per window ("rate-limit burst"),
//!   never once per request.
//! - `/health` and `/metrics` are exempt ([`EXEMPT_PATHS`]): monitoring must not be throttled,
//!   and both are cheap.
//!
//! Code map: [`window`] (the sliding-window math, [`Rule`] / [`Decision`] / [`Verdict`]),
//! [`local`] (in-process store), [`redis_store`] (the Lua script), [`limiter`] ([`RateLimiter`]:
//! the stores plus the Redis breaker), and here the [`RateLimit`] facade the HTTP layer uses.
use std::{net::IpAddr, sync::Arc};

use redis::aio::ConnectionManager;

pub use crate::config::ratelimit::{
    Cidr, DEFAULT_WINDOW, RateLimitSettings, RedisFailurePolicy, RouteLimits, TrustedProxies,
};

pub mod limiter;
pub mod local;
pub mod redis_store;
pub mod window;

pub use limiter::{
    DEFAULT_MAX_LOCAL_KEYS, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_RETRY_AFTER, RateLimiter,
    RateLimiterBuilder,
};
pub use redis_store::SLIDING_WINDOW_LUA;
use window::uncounted;
pub use window::{Decision, Rule, Source, Verdict};

/// Paths never rate limited: monitoring must keep working while a client is being throttled.
pub const EXEMPT_PATHS: &[&str] = &["/health", "/metrics"];

/// Route key used for requests that matched no route (404s): scanners are limited like a route.
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// Warnings about a degraded store are logged at most this often.
const WARN_EVERY_MS: u64 = 30_000;

/// The per-(IP, route) limit for `route`.
pub fn route_limit(settings: &RateLimitSettings, route: &str) -> u32 {
    match settings.rate_limit_routes.0.get(route) {
        Some(n) => *n,
        None if crate::protocol::is_merchant_route(route) => 0,
        None => settings.rate_limit_route_per_minute,
    }
}

/// The rate limits of the HTTP server: a [`RateLimiter`] plus the configured limits. This is the
/// middleware's state; clone it into `AppState` so handlers can call [`RateLimit::check_merchant`].
#[derive(Clone)]
pub struct RateLimit {
    limiter: RateLimiter,
    /// Replaced on a configuration reload ([`RateLimit::set_settings`]); read per request.
    settings: Arc<std::sync::RwLock<Arc<RateLimitSettings>>>,
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
            settings: Arc::new(std::sync::RwLock::new(Arc::new(settings))),
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

    /// The limits in force now.
    pub fn settings(&self) -> Arc<RateLimitSettings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts new limits in force for every clone (configuration reload). Counters are kept;
    /// the Redis failure policy is fixed at start.
    pub fn set_settings(&self, settings: RateLimitSettings) {
        let new = Arc::new(settings);
        match self.settings.write() {
            Ok(mut s) => *s = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// The rules for a request from `client` (an [`ip_key`]) to `route` (a route template).
    pub fn request_rules(&self, client: &str, route: &str) -> Vec<Rule> {
        let s = self.settings();
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
                limit: route_limit(&s, route),
                window: s.window,
            },
        ]
    }

    /// Checks and counts one request from `client` (`None`: unknown) to `route` (a route
    /// template, or [`UNMATCHED_ROUTE`]) against the per-IP and per-(IP, route) rules. A refusal
    /// is logged and counted in metrics, and a key's first refusal in a window is recorded in the
    /// audit trail; answering the client is the caller's business.
    pub async fn check_request(&self, client: Option<IpAddr>, route: &str) -> Verdict {
        let client_key = client.map(ip_key).unwrap_or_else(|| "unknown".to_owned());
        let rules = self.request_rules(&client_key, route);
        let verdict = self.limiter.check_all(&rules).await;
        if !verdict.allowed {
            audit_bursts(&verdict, &rules, &format!("{client_key} on {route}"));
            if let Some(audit) = &self.audit {
                for (d, r) in verdict.decisions.iter().zip(&rules) {
                    if d.first_denial {
                        let event = crate::audit::AuditEvent::new(
                            format!("ip:{client_key}"),
                            crate::audit::actions::RATELIMIT_BURST,
                            route.to_owned(),
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
                crate::telemetry::metrics::rate_limited(d.name);
            }
        }
        verdict
    }

    /// Counts one authenticated request of merchant `pid`. Call it in the handler after the
    /// signature is verified and before the work; on `Err`, return the error as the response.
    /// `own_limit` is the merchant's own per-minute limit (admin API); None = the configured
    /// `rate_limit_merchant_per_minute`; 0 = unlimited.
    pub async fn check_merchant(
        &self,
        pid: i64,
        own_limit: Option<u32>,
    ) -> Result<Decision, RateLimited> {
        let s = self.settings();
        let rule = Rule {
            name: "merchant",
            key: format!("merchant:{pid}"),
            limit: own_limit.unwrap_or(s.rate_limit_merchant_per_minute),
            window: s.window,
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
            crate::telemetry::metrics::rate_limited(rule.name);
            Err(RateLimited(verdict))
        }
    }
}

/// Free-function form of [`RateLimit::check_merchant`].
pub async fn check_merchant(
    rl: &RateLimit,
    pid: i64,
    own_limit: Option<u32>,
) -> Result<Decision, RateLimited> {
    rl.check_merchant(pid, own_limit).await
}

/// A refused request; its response (built in `http::error`) is `429` (or `503` when Redis is
/// down under the `deny` policy) with `Retry-After`, `RateLimit-*` and the API's JSON envelope.
#[derive(Debug, Clone)]
pub struct RateLimited(pub Verdict);

fn audit_bursts(verdict: &Verdict, rules: &[Rule], who: &str) {
    for (d, r) in verdict.decisions.iter().zip(rules) {
        if d.first_denial {
            crate::telemetry::metrics::rate_limit_burst(d.name);
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

    #[tokio::test]
    async fn check_request_counts_per_ip_and_per_route() {
        let settings = RateLimitSettings {
            rate_limit_per_minute: 3,
            rate_limit_route_per_minute: 2,
            ..RateLimitSettings::default()
        };
        let rl = RateLimit::with_limiter(settings, RateLimiter::in_process());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(rl.check_request(Some(ip), "/a").await.allowed);
        let v = rl.check_request(Some(ip), "/a").await;
        assert!(v.allowed);
        assert_eq!(
            v.binding().map(|d| (d.name, d.remaining)),
            Some(("route", 0))
        );
        let v = rl.check_request(Some(ip), "/a").await;
        assert!(!v.allowed);
        assert_eq!(v.binding().map(|d| d.name), Some("route"));
        // Another route still has room under the per-IP limit (the refusal counted nothing).
        assert!(rl.check_request(Some(ip), "/b").await.allowed);
        let v = rl.check_request(Some(ip), "/b").await;
        assert!(!v.allowed);
        assert_eq!(v.binding().map(|d| d.name), Some("ip"));
        // Clients without an address share one key, apart from known ones.
        assert!(rl.check_request(None, "/a").await.allowed);
        assert_eq!(
            rl.request_rules("unknown", "/a")[0].key,
            "ip:unknown".to_owned()
        );
    }
}

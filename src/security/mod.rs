//! Request-level protections that sit in front of the merchant protocols: rate limiting on every
//! public route ([`ratelimit`]) and GMPay replay protection with single-use nonces ([`replay`]).
//!
//! Both keep their state in Redis when `redis_url` is configured (so every instance behind a load
//! balancer shares it) and locally otherwise (in-process counters; nonces in the database). This
//! module never decides what a merchant may do — it only answers "too many" or "seen before"; the
//! HTTP layer turns that into the protocol's reply.
pub mod nonce_entity;
pub mod ratelimit;
pub mod replay;
pub mod ssrf;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long a Redis command may take before we treat Redis as down. Rate limiting runs on every
/// request, so a hung Redis must cost at most this much latency (then the breaker skips Redis).
pub const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting to Redis may take.
pub const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A lazily connecting, auto-reconnecting Redis handle with short timeouts, or `None` when no
/// `redis_url` is configured. It does not connect here, so a Redis that is down at start-up does
/// not stop the gateway (the rate limiter falls back per its policy; replay checks fail closed).
/// The handle is multiplexed and cheap to clone: build it once and give it to both guards.
pub fn redis_manager(url: Option<&str>) -> Result<Option<ConnectionManager>, redis::RedisError> {
    let Some(url) = url else { return Ok(None) };
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client, config).map(Some)
}

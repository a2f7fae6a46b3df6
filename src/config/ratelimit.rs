//! Rate-limit settings (DESIGN §8): limits per minute, trusted proxies (CIDR), per-route
//! overrides and the Redis failure policy. Parsing and validation only; the limiter itself is
//! `security::ratelimit`.
use std::{collections::BTreeMap, fmt, net::IpAddr, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize, Serializer};

/// The window of every configured limit (`*_per_minute`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// What to do when Redis is configured but does not answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisFailurePolicy {
    /// Count in this process instead (limits become per instance) and log a warning.
    #[default]
    Fallback,
    /// Let every request through unlimited.
    Allow,
    /// Refuse requests with `503 Service Unavailable` and `Retry-After` until Redis is back.
    Deny,
}

impl fmt::Display for RedisFailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fallback => "fallback",
            Self::Allow => "allow",
            Self::Deny => "deny",
        })
    }
}

/// An IP network, `10.0.0.0/8` or a single address (`127.0.0.1`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr = ip
            .parse::<IpAddr>()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1)"))?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Peers whose `X-Forwarded-For` / `X-Real-IP` we believe (the reverse proxies in front of the
/// gateway). Empty (default): the TCP peer is the client and forwarding headers are ignored, so
/// nobody can dodge a limit by sending a made-up header. Config: a TOML array or a comma
/// separated string, `trusted_proxies = "127.0.0.1,10.0.0.0/8"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(nets: Vec<Cidr>) -> Self {
        Self(nets)
    }
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for TrustedProxies {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            One(String),
        }
        let joined = match Raw::deserialize(d)? {
            Raw::List(v) => v.join(","),
            Raw::One(s) => s,
        };
        Self::parse(&joined).map_err(serde::de::Error::custom)
    }
}

/// Per-route limits (per client IP and route template) that replace
/// `rate_limit_route_per_minute` for the named routes; `0` means no per-route limit. TOML table
/// `[rate_limit_routes]` `"/pay/check-status/{trade_id}" = 60`, or the string form
/// `"/pay/check-status/{trade_id}=60,/pay/checkout-counter/{trade_id}=30"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RouteLimits(pub BTreeMap<String, u32>);

impl<'de> Deserialize<'de> for RouteLimits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Map(BTreeMap<String, u32>),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Map(m) => Ok(Self(m)),
            Raw::Str(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (route, n) = p.rsplit_once('=').ok_or_else(|| {
                        D::Error::custom(format!("`{p}` must look like /route/{{param}}=60"))
                    })?;
                    let n = n.trim().parse::<u32>().map_err(|_| {
                        D::Error::custom(format!("`{p}`: the limit must be a whole number"))
                    })?;
                    Ok((route.trim().to_string(), n))
                })
                .collect::<Result<_, _>>()
                .map(Self),
        }
    }
}

/// Limits, as config keys. Every `*_per_minute` limit is a sliding 60 s window; `0` disables it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Requests per minute from one client IP (IPv6: one /64) over all routes together.
    pub rate_limit_per_minute: u32,
    /// Requests per minute from one client IP to one route template, e.g. all of
    /// `/pay/check-status/{trade_id}`. The signed merchant API (`protocol::merchant_routes()`) is exempt.
    pub rate_limit_route_per_minute: u32,
    /// Per-route overrides of `rate_limit_route_per_minute`, keyed by route template.
    pub rate_limit_routes: RouteLimits,
    /// Authenticated requests per minute per merchant (counted by the handler after the signature
    /// check; for v1 that is the default merchant).
    pub rate_limit_merchant_per_minute: u32,
    /// `fallback` (default), `allow` or `deny` when Redis is configured but down.
    pub rate_limit_redis_failure: RedisFailurePolicy,
    /// Reverse proxies whose forwarding headers are believed; see [`TrustedProxies`].
    pub trusted_proxies: TrustedProxies,
    /// Window of every limit; 60 s, shorter only in tests.
    #[serde(skip)]
    pub window: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            rate_limit_per_minute: 1200,
            rate_limit_route_per_minute: 120,
            rate_limit_routes: RouteLimits::default(),
            rate_limit_merchant_per_minute: 600,
            rate_limit_redis_failure: RedisFailurePolicy::Fallback,
            trusted_proxies: TrustedProxies::default(),
            window: DEFAULT_WINDOW,
        }
    }
}

impl RateLimitSettings {
    /// Checks what serde cannot; `Err((key, message))` names the config key to fix.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(bad) = self
            .rate_limit_routes
            .0
            .keys()
            .find(|r| !r.starts_with('/'))
        {
            return Err((
                "rate_limit_routes",
                format!(
                    "`{bad}` is not a route template; use the path as routed, e.g. /pay/check-status/{{trade_id}}"
                ),
            ));
        }
        if self.window.is_zero() {
            return Err(("rate_limit_window", "must be positive".into()));
        }
        Ok(())
    }
}

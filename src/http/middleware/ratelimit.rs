//! The HTTP side of rate limiting: the axum middleware in front of every route, the client-IP
//! rules (the TCP peer, or what a trusted proxy says in `X-Forwarded-For` / `X-Real-IP`), the
//! `RateLimit-*` headers, and draining a refused request's body so its keep-alive connection
//! survives the `429`. The counting itself lives in [`crate::security::ratelimit`], which never
//! sees an HTTP type; the `429` reply is built in [`crate::http::error`].
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::security::ratelimit::{
    EXEMPT_PATHS, RateLimit, RateLimited, Source, TrustedProxies, UNMATCHED_ROUTE, Verdict,
};

/// Whole seconds, rounded up (header values are integers).
pub(crate) fn secs_ceil(d: Duration) -> u64 {
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
    let client = client_ip(peer, req.headers(), &rl.settings().trusted_proxies);
    req.extensions_mut().insert(ClientAddr(client));
    let verdict = rl.check_request(client, &route).await;
    if !verdict.allowed {
        let admin = req.uri().path().starts_with("/admin/api/");
        let drained = drain_body(req).await;
        let mut resp = if admin {
            RateLimited(verdict).into_admin_response()
        } else {
            RateLimited(verdict).into_response()
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

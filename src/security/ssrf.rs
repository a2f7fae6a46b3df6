//! Where a merchant callback may go (SSRF policy). Owns the address policy ([`is_forbidden_ip`]),
//! the host-name policy ([`forbidden_host`]) and the DNS resolver of the callback client
//! ([`GuardedResolver`]), which refuses a name that resolves to a forbidden address — so the
//! address checked is the address connected to, with no second, unchecked lookup in between.
//!
//! Must never: let a callback reach loopback, private, link-local or any other special-purpose
//! address that is not globally reachable (IANA IPv4/IPv6 special-purpose registries), whichever
//! way it is spelled (IPv4 embedded in IPv6, `localhost.`, `*.localhost`). A leaf: it imports
//! nothing of the http, app or service layers.
use std::{
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// Is this IPv4 address one a callback must not reach? Every range of the IANA IPv4
/// special-purpose registry that is not globally reachable, plus multicast and 240/4.
pub fn is_forbidden_ipv4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    a == 0 // 0.0.0.0/8 "this network"
        || a == 10 // private
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 shared address space (CGNAT)
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, cloud metadata 169.254.169.254
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // deprecated 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // 224/4 multicast, 240/4 reserved, 255.255.255.255 broadcast
}

/// The IPv4 address an IPv6 address carries and that decides where a packet really goes:
/// IPv4-mapped `::ffff:a.b.c.d`, NAT64 well-known prefix `64:ff9b::a.b.c.d` (DNS64 synthesizes
/// these for public IPv4-only hosts, so they stay usable) and 6to4 `2002:AABB:CCDD::/48`.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Is this IPv6 address one a callback must not reach?
///
/// Forms carrying an IPv4 address: mapped (`::ffff:0:0/96`), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002::/16`) are judged by the IPv4 address inside; IPv4-compatible (`::/96`, deprecated),
/// local-use NAT64 (`64:ff9b:1::/48`) and Teredo (`2001::/32`, whose server and client
/// addresses are not a safe target to decode) are refused outright. Everything else must be
/// global unicast (`2000::/3`) outside the non-global IETF blocks — which refuses `::`, `::1`,
/// `100::/64` discard, `fc00::/7`, `fe80::/10`, `fec0::/10`, `ff00::/8`, `5f00::/16` …
pub fn is_forbidden_ipv6(v6: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_ipv4(v6) {
        return is_forbidden_ipv4(v4);
    }
    let s = v6.segments();
    if (s[0] & 0xe000) != 0x2000 {
        // Not global unicast: ::/96 (IPv4-compatible, ::, ::1), 64:ff9b:1::/48, 100::/64,
        // 5f00::/16, fc00::/7, fe80::/10, fec0::/10, ff00::/8 and every unassigned block.
        return true;
    }
    // 2001::/23 IETF protocol assignments (Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID)
    // and 2001:db8::/32 documentation.
    let ietf = s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8);
    // 3fff::/20 documentation.
    let documentation = s[0] == 0x3fff && (s[1] & 0xf000) == 0;
    ietf || documentation
}

/// Is this address one a callback must not reach (SSRF)?
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_ipv4(v4),
        IpAddr::V6(v6) => is_forbidden_ipv6(v6),
    }
}

/// Why a host name is refused before any lookup, or `None`: `localhost` and every name under
/// it, in any case, with or without the trailing root dot (RFC 6761: they resolve to loopback).
pub fn forbidden_host(name: &str) -> Option<&'static str> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() {
        return Some("has an empty host");
    }
    if n == "localhost" || n.ends_with(".localhost") {
        return Some("must not point to localhost");
    }
    None
}

/// Why a callback URL is refused; `Display` is the `"{field} {problem}"` problem the merchant sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    #[error("is not a valid URL ({0})")]
    Invalid(url::ParseError),
    #[error("must be an http:// or https:// URL")]
    Scheme,
    #[error("must not contain credentials")]
    Credentials,
    #[error("must have a host")]
    NoHost,
    #[error("must not use port 0")]
    PortZero,
    #[error("{0}")]
    Host(&'static str),
    #[error("must not point to a private, loopback, link-local or other special-purpose address")]
    ForbiddenAddress,
}

/// Checks a callback URL's shape (at order creation, and again at delivery) — http(s), a host,
/// a port other than 0, no credentials, and unless private targets are allowed: no literal
/// forbidden IP (every spelling, see [`is_forbidden_ip`]) and no `localhost` name. Names are
/// judged when resolved, by the callback client's [`GuardedResolver`].
pub fn check_callback_url(raw: &str, allow_private: bool) -> Result<url::Url, CallbackUrlError> {
    let u = url::Url::parse(raw).map_err(CallbackUrlError::Invalid)?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(CallbackUrlError::Scheme);
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(CallbackUrlError::Credentials);
    }
    let host = u.host().ok_or(CallbackUrlError::NoHost)?;
    if u.port() == Some(0) {
        return Err(CallbackUrlError::PortZero);
    }
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(d) => {
                if let Some(why) = forbidden_host(d) {
                    return Err(CallbackUrlError::Host(why));
                }
                None
            }
        };
        if ip.is_some_and(is_forbidden_ip) {
            return Err(CallbackUrlError::ForbiddenAddress);
        }
    }
    Ok(u)
}

/// A name lookup: host → addresses. The system resolver in production; a double in tests.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> + Send + Sync,
>;

/// The system resolver (getaddrinfo through tokio).
pub fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    })
}

/// Resolves a callback host and refuses it when any of its addresses is forbidden (unless
/// private targets are allowed). The addresses returned are the ones connected to.
pub async fn resolve_checked(
    lookup: &Lookup,
    host: &str,
    allow_private: bool,
) -> Result<Vec<IpAddr>, String> {
    if !allow_private && let Some(why) = forbidden_host(host) {
        return Err(format!("{host}: refused, callbacks {why}"));
    }
    let ips = lookup(host.to_string())
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    if ips.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    if !allow_private && let Some(bad) = ips.iter().find(|ip| is_forbidden_ip(**ip)) {
        return Err(format!("{host} resolves to a forbidden address {bad}"));
    }
    Ok(ips)
}

/// The callback client's DNS resolver: every connection goes to an address that passed
/// [`is_forbidden_ip`], closing the DNS-rebinding window of check-then-connect.
/// (IP-literal URLs are not resolved by reqwest; [`check_callback_url`] judges those.)
#[derive(Clone)]
pub struct GuardedResolver {
    /// `allow_private_callbacks`, shared with the reloader so a reload applies at once.
    allow_private: Arc<AtomicBool>,
    lookup: Lookup,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> Self {
        Self::with_lookup(allow_private, system_lookup())
    }

    pub fn with_lookup(allow_private: bool, lookup: Lookup) -> Self {
        Self {
            allow_private: Arc::new(AtomicBool::new(allow_private)),
            lookup,
        }
    }

    /// A resolver that reads the policy from `allow_private` on every lookup.
    pub fn live(allow_private: Arc<AtomicBool>) -> Self {
        Self {
            allow_private,
            lookup: system_lookup(),
        }
    }
}

/// A refusal by the resolver; its text names the host and the address.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let allow_private = this.allow_private.load(Ordering::Relaxed);
            let ips = resolve_checked(&this.lookup, &host, allow_private)
                .await
                .map_err(|e| Box::new(Refused(e)) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_targets() {
        for bad in [
            "http://127.0.0.1/x",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://localhost:8080/",
            "http://localhost.:8080/",
            "http://a.LOCALHOST/",
            "http://[::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://example.com:0/",
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "not a url",
        ] {
            assert!(check_callback_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_callback_url("https://shop.example.com/notify", false).is_ok());
        assert!(check_callback_url("http://127.0.0.1:9/x", true).is_ok());
    }

    fn v4(s: &str) -> bool {
        is_forbidden_ip(s.parse().unwrap())
    }

    #[test]
    fn ipv4_special_purpose_ranges() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(v4(bad), "{bad}");
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.254",
        ] {
            assert!(!v4(good), "{good}");
        }
    }

    #[test]
    fn ipv6_forms_and_their_embedded_ipv4() {
        for bad in [
            "::",
            "::1",
            "::127.0.0.1",
            "::7f00:1",
            "::8.8.8.8", // IPv4-compatible is refused outright (deprecated)
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::8.8.8.8", // local-use NAT64: refused outright
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo: refused outright
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "100::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "4000::1",
        ] {
            assert!(v4(bad), "{bad}");
        }
        for good in [
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:5db8:d70e::",
            "2001:200::1",
            "3ffe:1000::1",
            "3fff:1000::1",
        ] {
            assert!(!v4(good), "{good}");
        }
    }

    #[test]
    fn localhost_in_every_spelling() {
        for bad in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "foo.localhost",
            "Foo.LocalHost.",
            ".",
        ] {
            assert!(forbidden_host(bad).is_some(), "{bad}");
        }
        for good in ["localhost.example.com", "mylocalhost", "shop.example.com."] {
            assert!(forbidden_host(good).is_none(), "{good}");
        }
    }
}

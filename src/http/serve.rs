//! The HTTP listener: accepts TCP connections under the limits a public endpoint needs and serves
//! the router on each with hyper's HTTP/1.1 server.
//!
//! - **Header timeout** (`http_header_timeout_secs`): a request head must arrive complete within
//!   it, from the moment the connection is accepted (slowloris, half-open sockets).
//! - **Idle timeout** (`http_idle_timeout_secs`): a connection with no request in flight and no byte
//!   read or written for that long is closed (idle keep-alive sockets).
//! - **Connection caps**: at most `http_max_connections` in all (never more than the process's open
//!   file limit allows) and `http_max_connections_per_ip` from one peer address (trusted proxies
//!   are exempt: they multiplex many clients). A connection over a cap gets a short `503` and is
//!   closed at once, so one client holding thousands of sockets cannot starve `/health` or anyone
//!   else.
//!
//! Graceful shutdown stops accepting, lets requests in flight finish and closes idle connections.
//! This module must never block the accept loop on one connection, and never hold a file
//! descriptor for a connection it refused.
use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tower::ServiceExt;

use crate::security::ratelimit::TrustedProxies;

/// Connection limits of the listener (from the configuration).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// Peers exempt from the per-IP cap (reverse proxies).
    pub exempt: TrustedProxies,
}

/// The answer to a connection over a cap: complete, so a keep-alive client sees a clean refusal.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 33\r\n\r\ntoo many connections, retry later";

/// File descriptors kept free for the database pool, Redis, outbound callbacks and logs.
const FD_RESERVE: u64 = 128;

/// `configured`, lowered to what the open-file limit (`RLIMIT_NOFILE`) can hold.
pub fn effective_max_connections(configured: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return configured;
    }
    let room =
        usize::try_from(lim.rlim_cur.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            configured,
            open_file_limit = lim.rlim_cur,
            effective = room,
            "http_max_connections is above what the open-file limit allows; using the lower value (raise LimitNOFILE / ulimit -n to allow more)"
        );
        room
    } else {
        configured
    }
}

/// Open connections per peer address; a guard gives its slot back on drop.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = match self.table.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// A TCP stream that remembers when it last moved a byte.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte read or written.
    last_ms: AtomicU64,
    /// Requests whose handler has not produced a response yet.
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed();
        now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the connections to
/// finish their requests in flight (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let global = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = Arc::new(PerIp::default());
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    let mut accept_errors: u64 = 0;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE/ENFILE or a connection reset before accept: back off a little
                    // instead of spinning.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(error = %e, count = accept_errors, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let ip = peer.ip().to_canonical();
        let Ok(permit) = global.clone().try_acquire_owned() else {
            refuse(stream, "global");
            continue;
        };
        let slot = if limits.exempt.contains(ip) {
            None
        } else {
            match per_ip.take(ip, limits.max_per_ip) {
                Some(s) => Some(s),
                None => {
                    refuse(stream, "per_ip");
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        });
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let service = {
            let router = router.clone();
            let activity = activity.clone();
            service_fn(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                let activity = activity.clone();
                activity.in_flight.fetch_add(1, Ordering::Relaxed);
                async move {
                    let resp = router.oneshot(req).await;
                    activity.in_flight.fetch_sub(1, Ordering::Relaxed);
                    activity.touch();
                    Ok::<_, Infallible>(resp.unwrap_or_else(|never| match never {}))
                }
            })
        };
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        let idle = limits.idle_timeout;
        crate::telemetry::metrics::http_connection_opened();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let check = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = &mut conn => break,
                    _ = tokio::time::sleep(check) => {
                        if activity.in_flight.load(Ordering::Relaxed) == 0 && activity.idle_for() >= idle {
                            // Dropping the connection closes the socket.
                            break;
                        }
                    }
                }
            }
            crate::telemetry::metrics::http_connection_closed();
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over a cap with a complete 503 (best effort, never blocking) and closes it.
fn refuse(stream: TcpStream, cap: &'static str) {
    let _ = stream.try_write(OVER_CAPACITY);
    crate::telemetry::metrics::http_connection_refused(cap);
    drop(stream);
}

impl ConnLimits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            header_timeout: Duration::from_secs(c.http_header_timeout_secs),
            idle_timeout: Duration::from_secs(c.http_idle_timeout_secs),
            max_connections: effective_max_connections(c.http_max_connections),
            max_per_ip: c.http_max_connections_per_ip,
            exempt: c.rate_limit.trusted_proxies.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_slots_are_counted_and_given_back() {
        let t = Arc::new(PerIp::default());
        let ip: IpAddr = "127.0.0.2".parse().expect("ip");
        let a = t.take(ip, 2).expect("first");
        let _b = t.take(ip, 2).expect("second");
        assert!(t.take(ip, 2).is_none(), "over the cap");
        assert!(t.take("127.0.0.3".parse().expect("ip"), 2).is_some());
        drop(a);
        assert!(
            t.take(ip, 2).is_some(),
            "a closed connection gives its slot back"
        );
    }

    #[test]
    fn the_cap_respects_the_open_file_limit() {
        assert!(effective_max_connections(usize::MAX) < usize::MAX);
        assert_eq!(effective_max_connections(10), 10);
    }
}

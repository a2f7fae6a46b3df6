//! Failover across a network's `rpc_urls`: calls go to the last URL that worked; a failing URL
//! cools down (1 s doubling to 60 s) while the others are tried; when every URL fails the
//! call fails with all their errors. It owns endpoint health only — never the range sizing or
//! the round back-off, which are the cursor loop's. A refused request size is not a failure
//! (the endpoint stays healthy; the caller shrinks the range); a URL on another chain is
//! refused, cooled for [`WRONG_CHAIN_COOL_DOWN`] and named in the error.
//!
//! Errors never contain a raw URL: providers put API keys in paths and queries, so messages
//! are scrubbed and endpoints are shown redacted.
use std::{
    future::Future,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::ScanError;
use crate::redact::truncate;

/// One failed call on one endpoint.
#[derive(Debug, Clone)]
pub(crate) enum CallError {
    /// Connection, timeout, HTTP 5xx, malformed or inconsistent answer, node behind.
    Failed(String),
    /// HTTP 429 / 403: the provider wants us to slow down.
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The answer proves the configuration wrong (e.g. decimals mismatch): no failover.
    Fatal(String),
    /// The provider refuses the request's size (an `eth_getLogs` block range or result count
    /// over its cap): not an outage. `hint` is the largest range the provider says it accepts.
    RangeTooLarge { message: String, hint: Option<u64> },
    /// This URL serves another chain (its `eth_chainId` differs from the configured one): it
    /// is never used; the other URLs are tried, and it is checked again after a cool-down.
    WrongChain(String),
}

struct Endpoint<C> {
    client: C,
    /// Redacted URL, safe for logs.
    label: String,
    /// The raw URL, only to scrub it from error messages.
    raw: String,
    state: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    failures: u32,
    cool_until: Option<Instant>,
}

pub(crate) struct Endpoints<C> {
    items: Vec<Endpoint<C>>,
    preferred: AtomicUsize,
}

impl<C: Clone> Endpoints<C> {
    pub(crate) fn new(items: Vec<(C, &url::Url)>) -> Self {
        Self {
            items: items
                .into_iter()
                .map(|(client, url)| Endpoint {
                    client,
                    label: crate::redact::rpc_url(url.as_str()),
                    raw: url.as_str().to_string(),
                    state: Mutex::new(Health::default()),
                })
                .collect(),
            preferred: AtomicUsize::new(0),
        }
    }

    /// The redacted URL calls go to first now (the last one that worked).
    pub(crate) fn active_label(&self) -> Option<String> {
        let n = self.items.len();
        (n > 0).then(|| {
            self.items[self.preferred.load(Ordering::Relaxed) % n]
                .label
                .clone()
        })
    }

    /// Order of attempts: the preferred endpoint, then the rest; cooling ones last.
    fn order(&self) -> Vec<usize> {
        let n = self.items.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let now = Instant::now();
        let (mut ready, mut cooling): (Vec<usize>, Vec<usize>) =
            (0..n).map(|i| (start + i) % n).partition(|&i| {
                let h = lock(&self.items[i].state);
                h.cool_until.is_none_or(|t| t <= now)
            });
        ready.append(&mut cooling);
        ready
    }

    /// Runs `f` against the endpoints until one succeeds. `what` names the call in errors.
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, ScanError>
    where
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut errors = Vec::new();
        let mut all_rate_limited = true;
        let mut retry_after: Option<Duration> = None;
        // Some URL refused the size of the request: `Some(smallest hint)`.
        let mut too_large: Option<Option<u64>> = None;
        for i in self.order() {
            let ep = &self.items[i];
            match f(ep.client.clone()).await {
                Ok(v) => {
                    *lock(&ep.state) = Health::default();
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(CallError::Fatal(msg)) => {
                    return Err(ScanError::Fatal(scrub(&msg, &ep.raw, &ep.label)));
                }
                Err(CallError::RangeTooLarge { message, hint }) => {
                    // A size signal, not a failure: the endpoint stays healthy.
                    let hint = match (too_large.flatten(), hint) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    too_large = Some(hint);
                    all_rate_limited = false;
                    let msg = scrub(&message, &ep.raw, &ep.label);
                    tracing::debug!(endpoint = %ep.label, call = what, error = %msg, "the provider refused the request size");
                    errors.push(format!("{}: {msg}", ep.label));
                }
                Err(CallError::WrongChain(msg)) => {
                    all_rate_limited = false;
                    let msg = scrub(&msg, &ep.raw, &ep.label);
                    lock(&ep.state).cool_until = Some(Instant::now() + WRONG_CHAIN_COOL_DOWN);
                    crate::telemetry::metrics::rpc_error(&ep.label, "wrong_chain");
                    tracing::error!(endpoint = %ep.label, call = what, error = %msg, "RPC URL refused: it serves another chain; nothing is read from it");
                    errors.push(format!("{} refused: {msg}", ep.label));
                }
                Err(e) => {
                    let (msg, limited) = match e {
                        CallError::RateLimited {
                            message,
                            retry_after: r,
                        } => {
                            retry_after = retry_after.max(r);
                            (message, true)
                        }
                        CallError::Failed(m)
                        | CallError::Fatal(m)
                        | CallError::WrongChain(m)
                        | CallError::RangeTooLarge { message: m, .. } => (m, false),
                    };
                    all_rate_limited &= limited;
                    crate::telemetry::metrics::rpc_error(
                        &ep.label,
                        if limited { "rate_limited" } else { "failed" },
                    );
                    let msg = scrub(&msg, &ep.raw, &ep.label);
                    {
                        let mut h = lock(&ep.state);
                        h.failures = h.failures.saturating_add(1);
                        let cool = Duration::from_secs(1)
                            .saturating_mul(1u32 << h.failures.saturating_sub(1).min(6))
                            .min(Duration::from_secs(60));
                        h.cool_until = Some(Instant::now() + cool);
                    }
                    tracing::debug!(endpoint = %ep.label, call = what, error = %msg, "RPC call failed; trying the next URL");
                    errors.push(format!("{}: {msg}", ep.label));
                }
            }
        }
        let n = self.items.len();
        if let Some(hint) = too_large {
            return Err(ScanError::RangeTooLarge {
                message: format!(
                    "{what}: the provider refused the range ({})",
                    errors.join("; ")
                ),
                hint,
            });
        }
        let message = format!(
            "{what} failed on all {n} RPC URL(s) ({}); check the node/provider or add another URL to rpc_urls",
            errors.join("; ")
        );
        if all_rate_limited && !errors.is_empty() {
            Err(ScanError::RateLimited {
                message: format!(
                    "rate limited: {message}; backing off (set an api_key or a faster plan to scan quicker)"
                ),
                retry_after,
            })
        } else {
            Err(ScanError::Unavailable(message))
        }
    }

    /// Runs `f` against every endpoint (start-up checks): `Fatal` when any answers that the
    /// configuration is wrong for it (naming it), `Unavailable` when none answered.
    pub(crate) async fn call_each<F, Fut>(&self, what: &str, f: F) -> Result<(), ScanError>
    where
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<(), CallError>>,
    {
        let mut errors = Vec::new();
        let mut ok = false;
        let mut all_rate_limited = true;
        let mut retry_after: Option<Duration> = None;
        for ep in &self.items {
            let result = f(ep.client.clone()).await;
            match &result {
                Err(CallError::RateLimited { retry_after: r, .. }) => {
                    retry_after = retry_after.max(*r);
                }
                Err(_) => all_rate_limited = false,
                Ok(()) => {}
            }
            match result {
                Ok(()) => ok = true,
                Err(CallError::Fatal(msg) | CallError::WrongChain(msg)) => {
                    return Err(ScanError::Fatal(format!(
                        "RPC URL {}: {}",
                        ep.label,
                        scrub(&msg, &ep.raw, &ep.label)
                    )));
                }
                Err(
                    CallError::Failed(msg)
                    | CallError::RateLimited { message: msg, .. }
                    | CallError::RangeTooLarge { message: msg, .. },
                ) => {
                    let msg = scrub(&msg, &ep.raw, &ep.label);
                    tracing::warn!(endpoint = %ep.label, call = what, error = %msg, "could not check this RPC URL now; it is checked before its first use");
                    errors.push(format!("{}: {msg}", ep.label));
                }
            }
        }
        let message = format!(
            "{what} failed on all {} RPC URL(s) ({}); check the node/provider or add another URL to rpc_urls",
            self.items.len(),
            errors.join("; ")
        );
        if ok {
            Ok(())
        } else if all_rate_limited && !errors.is_empty() {
            // Every URL asked us to slow down: back off like any rate limit (Retry-After).
            Err(ScanError::RateLimited {
                message: format!("rate limited: {message}"),
                retry_after,
            })
        } else {
            Err(ScanError::Unavailable(message))
        }
    }
}

/// How long a URL that serves another chain is left alone before it is checked again.
pub(crate) const WRONG_CHAIN_COOL_DOWN: Duration = Duration::from_secs(60);

fn lock(m: &Mutex<Health>) -> std::sync::MutexGuard<'_, Health> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Replaces the raw URL (with or without its trailing slash) by its label and caps the length.
pub(crate) fn scrub(msg: &str, raw: &str, label: &str) -> String {
    let mut out = msg.replace(raw, label);
    if let Some(trimmed) = raw.strip_suffix('/')
        && !trimmed.is_empty()
    {
        out = out.replace(trimmed, label);
    }
    truncate(&out, 400)
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: exponential back-off applies).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_urls_and_truncates() {
        let raw = "https://eth.example.com/v3/SECRETKEY";
        let label = crate::redact::rpc_url(raw);
        assert_eq!(label, "https://eth.example.com/…");
        let msg = format!("error sending request for url ({raw}/)");
        let s = scrub(&msg, &format!("{raw}/"), &label);
        assert!(!s.contains("SECRETKEY"), "{s}");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("ab", 3), "ab");
    }

    #[tokio::test]
    async fn a_check_of_every_url_that_is_rate_limited_everywhere_is_a_rate_limit() {
        let a = url::Url::parse("http://a.invalid/").expect("url");
        let b = url::Url::parse("http://b.invalid/").expect("url");
        let eps = Endpoints::new(vec![("a", &a), ("b", &b)]);
        let r = eps
            .call_each("check", |_| async {
                Err(CallError::RateLimited {
                    message: "JSON-RPC error -32005: daily request count exceeded".into(),
                    retry_after: Some(Duration::from_secs(3)),
                })
            })
            .await;
        match r {
            Err(ScanError::RateLimited {
                message,
                retry_after,
            }) => {
                assert!(message.starts_with("rate limited:"), "{message}");
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // One URL down for another reason: not a rate limit.
        let r = eps
            .call_each("check", |c| async move {
                if c == "a" {
                    Err(CallError::Failed("connection refused".into()))
                } else {
                    Err(CallError::RateLimited {
                        message: "429".into(),
                        retry_after: None,
                    })
                }
            })
            .await;
        assert!(matches!(r, Err(ScanError::Unavailable(_))), "{r:?}");
    }

    #[tokio::test]
    async fn fails_over_and_prefers_the_working_url() {
        let a = url::Url::parse("http://a.invalid/k1").expect("url");
        let b = url::Url::parse("http://b.invalid/").expect("url");
        let eps = Endpoints::new(vec![("a", &a), ("b", &b)]);
        let r: Result<&str, _> = eps
            .call("test", |c| async move {
                if c == "a" {
                    Err(CallError::Failed("down http://a.invalid/k1".into()))
                } else {
                    Ok(c)
                }
            })
            .await;
        assert_eq!(r.expect("b answers"), "b");
        // b is now preferred and a cools down.
        assert_eq!(eps.order(), vec![1, 0]);
        let all: Result<(), _> = eps
            .call("test", |_| async {
                Err(CallError::RateLimited {
                    message: "429".into(),
                    retry_after: Some(Duration::from_secs(2)),
                })
            })
            .await;
        match all {
            Err(ScanError::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(2)))
            }
            other => panic!("expected rate limited, got {other:?}"),
        }
        let err = eps
            .call::<(), _, _>("test", |c| async move {
                let url = if c == "a" {
                    "http://a.invalid/k1"
                } else {
                    "http://b.invalid/"
                };
                Err(CallError::Failed(format!("boom {url}")))
            })
            .await
            .expect_err("fails");
        assert!(!err.to_string().contains("k1"), "{err}");
    }

    #[tokio::test]
    async fn size_refusals_keep_the_endpoint_and_wrong_chains_are_named() {
        let a = url::Url::parse("http://a.invalid/k1").expect("url");
        let b = url::Url::parse("http://b.invalid/").expect("url");
        let eps = Endpoints::new(vec![("a", &a), ("b", &b)]);
        // a refuses the size (hint 10), b is on another chain: a size signal, b named.
        let err = eps
            .call::<(), _, _>("eth_getLogs", |c| async move {
                if c == "a" {
                    Err(CallError::RangeTooLarge {
                        message: "exceed maximum block range: 10".into(),
                        hint: Some(10),
                    })
                } else {
                    Err(CallError::WrongChain("it serves chain id 999".into()))
                }
            })
            .await
            .expect_err("fails");
        match &err {
            ScanError::RangeTooLarge { hint, message } => {
                assert_eq!(*hint, Some(10));
                assert!(message.contains("http://b.invalid refused"), "{message}");
            }
            other => panic!("expected a size signal, got {other:?}"),
        }
        // a is not cooling (a size refusal is no failure); b is.
        assert_eq!(eps.order(), vec![0, 1]);
        assert!(lock(&eps.items[0].state).cool_until.is_none());
        assert!(lock(&eps.items[1].state).cool_until.is_some());
        // Start-up: a reachable URL on another chain refuses the start, naming it.
        let err = eps
            .call_each("check", |c| async move {
                if c == "a" {
                    Ok(())
                } else {
                    Err(CallError::WrongChain("it serves chain id 999".into()))
                }
            })
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, ScanError::Fatal(m) if m.contains("http://b.invalid") && m.contains("999")),
            "{err:?}"
        );
    }
}

//! Prometheus metrics: every metric name, its help text, its labels and the one function that
//! records it live here, so the HTTP, service, queue and chain code call `metrics::order_event(..)`
//! and never spell a name. The recorder is process-global (the `metrics` facade allows one per
//! process): [`install`] sets it once and keeps its handle; several `App`s in one process
//! (tests) share it. wiki/OPERATIONS.md ("Monitoring") documents each metric and alert.
//!
//! Must never: label a series with anything unbounded (order ids, client addresses, raw URLs
//! — RPC URLs are redacted first), or record a secret. Amounts are converted to `f64` here and
//! only here, for the exporter; nothing reads them back.
use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rust_decimal::{Decimal, prelude::ToPrimitive};

use crate::domain::{network::Network, protocol::Protocol};

// --- names (the alerts, the dashboard and the wiki use exactly these) -----------------------
pub const BUILD_INFO: &str = "epusdt_build_info";
pub const HTTP_REQUESTS: &str = "epusdt_http_requests_total";
pub const HTTP_DURATION: &str = "epusdt_http_request_duration_seconds";
pub const HTTP_CONNECTIONS: &str = "epusdt_http_connections";
pub const HTTP_CONNECTIONS_REFUSED: &str = "epusdt_http_connections_refused_total";
pub const ORDERS: &str = "epusdt_orders_total";
pub const ORDER_AMOUNT: &str = "epusdt_order_amount";
pub const CALLBACK_ATTEMPTS: &str = "epusdt_callback_attempts_total";
pub const CALLBACKS_GAVE_UP: &str = "epusdt_callbacks_gave_up_total";
pub const CALLBACK_DURATION: &str = "epusdt_callback_duration_seconds";
pub const QUEUE_UP: &str = "epusdt_queue_up";
pub const QUEUE_DEPTH: &str = "epusdt_queue_depth";
pub const QUEUE_OLDEST_AGE: &str = "epusdt_queue_oldest_job_age_seconds";
pub const SIGNATURES_REFUSED: &str = "epusdt_signatures_refused_total";
pub const RATE_LIMITED: &str = "epusdt_rate_limited_total";
pub const RATE_LIMIT_BURSTS: &str = "epusdt_rate_limit_bursts_total";
pub const CHAIN_UP: &str = "epusdt_chain_watcher_up";
pub const CHAIN_HEAD: &str = "epusdt_chain_head";
pub const CHAIN_CONFIRMED_HEAD: &str = "epusdt_chain_confirmed_head";
pub const CHAIN_CURSOR: &str = "epusdt_chain_cursor";
pub const CHAIN_LAG_BLOCKS: &str = "epusdt_chain_lag_blocks";
pub const CHAIN_LAG_SECONDS: &str = "epusdt_chain_lag_seconds";
pub const CHAIN_LAST_OK: &str = "epusdt_chain_last_ok_timestamp_seconds";
pub const CHAIN_ERRORS: &str = "epusdt_chain_errors_total";
pub const CHAIN_RPC_ERRORS: &str = "epusdt_chain_rpc_errors_total";
pub const CHAIN_REORGS: &str = "epusdt_chain_reorgs_total";
pub const REORGED_TRANSFERS: &str = "epusdt_reorged_transfers_total";
pub const TRANSFERS: &str = "epusdt_transfers_total";
pub const DB_POOL_CONNECTIONS: &str = "epusdt_db_pool_connections";
pub const DB_POOL_MAX: &str = "epusdt_db_pool_max_connections";

/// Seconds buckets for request and callback latency (5 ms … 30 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Token-amount buckets for order amounts.
const AMOUNT_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 5_000.0, 10_000.0, 50_000.0,
];

/// The order lifecycle events counted by [`ORDERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    Created,
    Paid,
    Expired,
    Cancelled,
}

impl OrderEvent {
    pub const ALL: [OrderEvent; 4] = [
        OrderEvent::Created,
        OrderEvent::Paid,
        OrderEvent::Expired,
        OrderEvent::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderEvent::Created => "created",
            OrderEvent::Paid => "paid",
            OrderEvent::Expired => "expired",
            OrderEvent::Cancelled => "cancelled",
        }
    }
}

/// How one callback attempt ended ([`CALLBACK_ATTEMPTS`]'s `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// The merchant acknowledged it.
    Delivered,
    /// The merchant answered, but not with the expected acknowledgement.
    Rejected,
    /// No answer: refused address, connection error, timeout, oversized reply.
    Failed,
}

impl CallbackOutcome {
    pub const ALL: [CallbackOutcome; 3] = [
        CallbackOutcome::Delivered,
        CallbackOutcome::Rejected,
        CallbackOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::Delivered => "delivered",
            CallbackOutcome::Rejected => "rejected",
            CallbackOutcome::Failed => "failed",
        }
    }
}

/// Why a merchant request was answered with a signature error ([`SIGNATURES_REFUSED`]'s
/// `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// Wrong signature for a known merchant.
    Mismatch,
    /// No signature sent.
    Missing,
    /// An unknown or disabled merchant, or none named.
    UnknownMerchant,
    /// A valid signature from outside the merchant's IP allow-list.
    IpAllowlist,
    /// A reused nonce or a timestamp outside the window (GMPay).
    Replay,
}

impl SignatureRefusal {
    pub const ALL: [SignatureRefusal; 5] = [
        SignatureRefusal::Mismatch,
        SignatureRefusal::Missing,
        SignatureRefusal::UnknownMerchant,
        SignatureRefusal::IpAllowlist,
        SignatureRefusal::Replay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignatureRefusal::Mismatch => "mismatch",
            SignatureRefusal::Missing => "missing",
            SignatureRefusal::UnknownMerchant => "unknown_merchant",
            SignatureRefusal::IpAllowlist => "ip_allowlist",
            SignatureRefusal::Replay => "replay",
        }
    }
}

/// The rate-limit rules ([`RATE_LIMITED`]'s `rule`).
pub const RATE_LIMIT_RULES: [&str; 3] = ["ip", "route", "merchant"];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, once, describes every
/// metric and sets the series with a known, bounded label set to zero, so a fresh instance's
/// `/metrics` lists them. `None` when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            STARTED.get_or_init(Instant::now);
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(CALLBACK_DURATION.into()),
                        LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(ORDER_AMOUNT.into()), AMOUNT_BUCKETS)
                });
            let recorder = match recorder {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    tracing::error!(error = %e, "metrics buckets refused: /metrics is disabled");
                    return None;
                }
            };
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    zero();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed: /metrics is disabled");
                    None
                }
            }
        })
        .as_ref()
}

/// The exposition text, or `None` when this process has another recorder.
pub fn render() -> Option<String> {
    install().map(|h| {
        h.run_upkeep();
        h.render()
    })
}

fn describe() {
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the label `version` is the running release."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by matched route (`unmatched` for none), method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency, by matched route and method."
    );
    describe_gauge!(HTTP_CONNECTIONS, "Open HTTP connections.");
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED,
        "HTTP connections refused at a connection cap (`cap`: global or per_ip)."
    );
    describe_counter!(
        ORDERS,
        "Order lifecycle events (`event`: created, paid, expired, cancelled), by network and token."
    );
    describe_histogram!(
        ORDER_AMOUNT,
        "Token amount of orders per lifecycle event (the sum is the total amount), by network and token."
    );
    describe_counter!(
        CALLBACK_ATTEMPTS,
        "Merchant callback attempts, by outcome (delivered, rejected = answered without the acknowledgement, failed = no answer)."
    );
    describe_counter!(
        CALLBACKS_GAVE_UP,
        "Callbacks abandoned after notify_max_attempts attempts (an admin can resend)."
    );
    describe_histogram!(
        CALLBACK_DURATION,
        Unit::Seconds,
        "Merchant callback attempt latency."
    );
    describe_gauge!(
        QUEUE_UP,
        "1 when the job queue answered the last scrape's depth query, else 0."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Jobs waiting to run (due or scheduled, including failed ones to retry)."
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "How long the oldest due job has been waiting to start (0 when none is due)."
    );
    describe_counter!(
        SIGNATURES_REFUSED,
        "Merchant requests answered with a signature error, by protocol and reason."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by a rate limit, by rule (ip, route, merchant)."
    );
    describe_counter!(
        RATE_LIMIT_BURSTS,
        "First refusal of a key in a rate-limit window, by rule."
    );
    describe_gauge!(
        CHAIN_UP,
        "1 when this network's watcher is scanning or on standby, 0 when it failed or stalled."
    );
    describe_gauge!(CHAIN_HEAD, "Chain head block seen by the watcher.");
    describe_gauge!(
        CHAIN_CONFIRMED_HEAD,
        "Confirmed head (head - confirmations; TRON: solidified)."
    );
    describe_gauge!(CHAIN_CURSOR, "Last block scanned and committed.");
    describe_gauge!(CHAIN_LAG_BLOCKS, "Confirmed blocks not yet scanned.");
    describe_gauge!(
        CHAIN_LAG_SECONDS,
        Unit::Seconds,
        "Seconds since the watcher last reached the confirmed head."
    );
    describe_gauge!(
        CHAIN_LAST_OK,
        Unit::Seconds,
        "Unix time of the watcher's last round that reached the confirmed head."
    );
    describe_counter!(CHAIN_ERRORS, "Failed watcher rounds, by network.");
    describe_counter!(
        CHAIN_RPC_ERRORS,
        "Failed RPC calls, by redacted URL and kind (failed, rate_limited, wrong_chain)."
    );
    describe_counter!(
        CHAIN_REORGS,
        "Reorgs below the cursor (the watcher stepped back), by network."
    );
    describe_counter!(
        REORGED_TRANSFERS,
        "Recorded transfers whose block vanished in a reorg, by network."
    );
    describe_counter!(
        TRANSFERS,
        "Token transfers to watched addresses, by network and kind (matched, late, partial, ...)."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database pool connections, by state (idle, in_use)."
    );
    describe_gauge!(DB_POOL_MAX, "Database pool size limit.");
}

/// Series with a small, known label set start at zero (`increase()` then sees the first one).
fn zero() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    gauge!(HTTP_CONNECTIONS).set(0.0);
    for cap in ["global", "per_ip"] {
        counter!(HTTP_CONNECTIONS_REFUSED, "cap" => cap).absolute(0);
    }
    for network in [
        Network::TRON,
        Network::ETHEREUM,
        Network::BSC,
        Network::POLYGON,
    ] {
        for event in OrderEvent::ALL {
            let labels = [
                ("event", event.as_str()),
                ("network", network.as_str()),
                ("token", "USDT"),
            ];
            counter!(ORDERS, &labels).absolute(0);
            let _ = histogram!(ORDER_AMOUNT, &labels);
        }
    }
    for outcome in CallbackOutcome::ALL {
        counter!(CALLBACK_ATTEMPTS, "outcome" => outcome.as_str()).absolute(0);
    }
    counter!(CALLBACKS_GAVE_UP).absolute(0);
    let _ = histogram!(CALLBACK_DURATION);
    gauge!(QUEUE_DEPTH).set(0.0);
    gauge!(QUEUE_OLDEST_AGE).set(0.0);
    for p in [Protocol::V1, Protocol::GmPay, Protocol::EPay] {
        for r in SignatureRefusal::ALL {
            counter!(SIGNATURES_REFUSED, "protocol" => p.as_str(), "reason" => r.as_str())
                .absolute(0);
        }
    }
    for rule in RATE_LIMIT_RULES {
        counter!(RATE_LIMITED, "rule" => rule).absolute(0);
        counter!(RATE_LIMIT_BURSTS, "rule" => rule).absolute(0);
    }
}

// --- HTTP ---------------------------------------------------------------------------------

/// One answered request. `route` is the matched route pattern (never the raw path).
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let route = route.to_string();
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method.to_string(), "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method.to_string())
        .record(elapsed.as_secs_f64());
}

pub fn http_connection_opened() {
    gauge!(HTTP_CONNECTIONS).increment(1.0);
}

pub fn http_connection_closed() {
    gauge!(HTTP_CONNECTIONS).decrement(1.0);
}

/// `cap`: `global` or `per_ip`.
pub fn http_connection_refused(cap: &'static str) {
    counter!(HTTP_CONNECTIONS_REFUSED, "cap" => cap).increment(1);
}

// --- orders and callbacks -----------------------------------------------------------------

/// An order changed state (or was created), with its payable token amount.
pub fn order_event(event: OrderEvent, network: Network, token: &str, amount: Decimal) {
    let labels = [
        ("event", event.as_str().to_string()),
        ("network", network.as_str().to_string()),
        ("token", token.to_string()),
    ];
    counter!(ORDERS, &labels).increment(1);
    histogram!(ORDER_AMOUNT, &labels).record(amount.to_f64().unwrap_or(0.0));
}

pub fn callback_attempt(outcome: CallbackOutcome, elapsed: Duration) {
    counter!(CALLBACK_ATTEMPTS, "outcome" => outcome.as_str()).increment(1);
    histogram!(CALLBACK_DURATION).record(elapsed.as_secs_f64());
}

pub fn callback_gave_up() {
    counter!(CALLBACKS_GAVE_UP).increment(1);
}

/// A sample of the job queue; `None` when the queue did not answer.
pub fn queue_sample(sample: Option<(u64, u64)>) {
    match sample {
        Some((depth, oldest_age_secs)) => {
            gauge!(QUEUE_UP).set(1.0);
            gauge!(QUEUE_DEPTH).set(depth as f64);
            gauge!(QUEUE_OLDEST_AGE).set(oldest_age_secs as f64);
        }
        None => gauge!(QUEUE_UP).set(0.0),
    }
}

// --- security -----------------------------------------------------------------------------

pub fn signature_refused(protocol: Protocol, reason: SignatureRefusal) {
    counter!(SIGNATURES_REFUSED, "protocol" => protocol.as_str(), "reason" => reason.as_str())
        .increment(1);
}

pub fn rate_limited(rule: &'static str) {
    counter!(RATE_LIMITED, "rule" => rule).increment(1);
}

pub fn rate_limit_burst(rule: &'static str) {
    counter!(RATE_LIMIT_BURSTS, "rule" => rule).increment(1);
}

// --- chain --------------------------------------------------------------------------------

/// The kinds of [`TRANSFERS`] (`CreditOutcome::kind`, plus `unrepresentable`: an amount the
/// scanner could not represent).
pub const TRANSFER_KINDS: [&str; 8] = [
    "matched",
    "duplicate",
    "late",
    "paid_twice",
    "partial",
    "overpaid",
    "unmatched",
    "unrepresentable",
];

/// The kinds of [`CHAIN_RPC_ERRORS`].
pub const RPC_ERROR_KINDS: [&str; 3] = ["failed", "rate_limited", "wrong_chain"];

/// A configured network and its (redacted) RPC URLs: their series start at zero before the
/// watcher's first round.
pub fn chain_registered(network: Network, urls: &[String]) {
    for url in urls {
        for kind in RPC_ERROR_KINDS {
            counter!(CHAIN_RPC_ERRORS, "url" => url.clone(), "kind" => kind).absolute(0);
        }
    }
    let n = network.as_str();
    for name in [
        CHAIN_HEAD,
        CHAIN_CONFIRMED_HEAD,
        CHAIN_CURSOR,
        CHAIN_LAG_BLOCKS,
        CHAIN_LAG_SECONDS,
    ] {
        gauge!(name, "network" => n).set(0.0);
    }
    gauge!(CHAIN_UP, "network" => n).set(1.0);
    for kind in TRANSFER_KINDS {
        counter!(TRANSFERS, "network" => n, "kind" => kind).absolute(0);
    }
    for name in [CHAIN_ERRORS, CHAIN_REORGS, REORGED_TRANSFERS] {
        counter!(name, "network" => n).absolute(0);
    }
}

/// Where the watcher stands after a round.
pub fn chain_heights(network: Network, head: u64, confirmed: i64, cursor: i64, lag_blocks: i64) {
    let n = network.as_str();
    gauge!(CHAIN_HEAD, "network" => n).set(head as f64);
    gauge!(CHAIN_CONFIRMED_HEAD, "network" => n).set(confirmed as f64);
    gauge!(CHAIN_CURSOR, "network" => n).set(cursor as f64);
    gauge!(CHAIN_LAG_BLOCKS, "network" => n).set(lag_blocks as f64);
}

/// Set at each scrape from the watcher's status: seconds since it last reached the confirmed
/// head (since start when it never has), and whether it is up.
pub fn chain_sample(network: &str, last_ok_age_secs: Option<i64>, up: bool) {
    let lag = match last_ok_age_secs {
        Some(a) => a.max(0) as f64,
        None => uptime().as_secs_f64(),
    };
    gauge!(CHAIN_LAG_SECONDS, "network" => network.to_string()).set(lag);
    gauge!(CHAIN_UP, "network" => network.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// A round reached the confirmed head at unix time `now`.
pub fn chain_caught_up(network: Network, now: i64) {
    gauge!(CHAIN_LAST_OK, "network" => network.as_str()).set(now as f64);
}

pub fn chain_error(network: Network) {
    counter!(CHAIN_ERRORS, "network" => network.as_str()).increment(1);
}

/// A failed RPC call on one endpoint. `url` must be redacted already.
pub fn rpc_error(url: &str, kind: &'static str) {
    counter!(CHAIN_RPC_ERRORS, "url" => url.to_string(), "kind" => kind).increment(1);
}

pub fn chain_reorg(network: Network) {
    counter!(CHAIN_REORGS, "network" => network.as_str()).increment(1);
}

pub fn reorged_transfers(network: Network, n: u64) {
    counter!(REORGED_TRANSFERS, "network" => network.as_str()).increment(n);
}

/// A transfer to a watched address, by what it did (`CreditOutcome::kind`).
pub fn transfer(network: Network, kind: &'static str) {
    counter!(TRANSFERS, "network" => network.as_str(), "kind" => kind).increment(1);
}

// --- database -----------------------------------------------------------------------------

pub fn db_pool(size: u32, idle: u32, max: u32) {
    gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(size.saturating_sub(idle)));
    gauge!(DB_POOL_MAX).set(f64::from(max));
}

/// Time since the recorder was installed (about the process's start).
fn uptime() -> Duration {
    STARTED.get_or_init(Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prometheus_names() {
        for name in [
            BUILD_INFO,
            HTTP_REQUESTS,
            HTTP_DURATION,
            ORDERS,
            ORDER_AMOUNT,
            CALLBACK_ATTEMPTS,
            CALLBACKS_GAVE_UP,
            CALLBACK_DURATION,
            QUEUE_UP,
            QUEUE_DEPTH,
            QUEUE_OLDEST_AGE,
            SIGNATURES_REFUSED,
            RATE_LIMITED,
            CHAIN_UP,
            CHAIN_LAG_SECONDS,
            CHAIN_RPC_ERRORS,
            DB_POOL_CONNECTIONS,
            DB_POOL_MAX,
        ] {
            assert!(name.starts_with("epusdt_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }
}

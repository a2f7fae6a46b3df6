//! Merchant callbacks: ask the order's protocol for its signed payload, deliver it, record every
//! attempt, and decide the next attempt (exponential backoff with jitter). Called by the `notify` job.
//!
//! Must never: deliver to a private/loopback/link-local address unless
//! `allow_private_callbacks`; follow redirects (a 3xx is a failed attempt); mark a callback
//! delivered unless the merchant answered exactly `ok` (EPay: HTTP 200 and `success` or `ok`, as
//! upstream); log a secret.
use std::time::Instant;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};

use super::{
    merchant,
    order::{self as orders, OrderError, callback_state, find_by_trade_id},
};
pub use crate::protocol::CallbackRequest;
use crate::{
    config::Config,
    domain::order::{Order, OrderStatus},
    protocol::{self, CallbackOrder, ProtocolError},
    security::ssrf::check_callback_url,
    store::entities::{callback_attempt, order},
    telemetry::metrics,
};

/// What the job should do after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum NotifyOutcome {
    Delivered,
    /// Already delivered, or the order is not paid: nothing to send.
    Skipped,
    /// Failed; try again after this many seconds with `attempt + 1`.
    RetryIn(u64),
    /// Failed and out of attempts.
    GaveUp,
}

/// Delay before attempt `attempt + 1`: base · 2^(attempt−1) plus up to 25 % jitter. With the
/// defaults (base 180 s, 10 attempts) the nine waits add up to at least 25.5 h.
pub fn backoff_secs(base: u64, attempt: u32) -> u64 {
    use rand::Rng;
    let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let jitter = rand::rng().random_range(0..=exp / 4);
    exp.saturating_add(jitter)
}

/// Why a callback could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("unknown protocol")]
    UnknownProtocol,
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// The order as its protocol's callback (and EPay's return hop) shows it.
pub(super) fn callback_order<'a>(o: &'a Order, m: &merchant::Merchant) -> CallbackOrder<'a> {
    CallbackOrder {
        pid: m.pid,
        trade_id: o.trade_id.as_str(),
        order_id: &o.order_id,
        amount: o.amount,
        actual_amount: o.actual_amount,
        currency: &o.currency,
        token: &o.token,
        network: Some(o.network),
        address: &o.address,
        name: &o.name,
        block_transaction_id: o.block_transaction_id.as_deref().unwrap_or_default(),
        status: i64::from(o.status.code()),
        notify_url: &o.notify_url,
        epay_type: &o.epay_type,
    }
}

/// Builds the signed callback for a paid order: the order's protocol decides its shape, and it
/// is signed with the algorithm its create request was signed with (GMPay sign modes).
pub fn build_callback(o: &Order, m: &merchant::Merchant) -> Result<CallbackRequest, CallbackError> {
    let proto = protocol::for_id(o.protocol).ok_or(CallbackError::UnknownProtocol)?;
    let alg = crate::crypto::sign::SignAlg::parse(&o.sign_alg);
    Ok(proto.callback_signed(&callback_order(o, m), m.secret.expose(), alg)?)
}

/// Whether the merchant's answer acknowledges the order's callback (its protocol's rule).
fn acknowledged(o: &Order, http_status: u16, body: &str, expect: &str) -> bool {
    protocol::for_id(o.protocol).is_some_and(|p| p.acknowledged(http_status, body, expect))
}

/// An error with its causes (reqwest puts the resolver's refusal in the source chain).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// One delivery attempt for `order_id`, recorded in `callback_attempts`.
pub async fn deliver(
    db: &DatabaseConnection,
    keys: &crate::crypto::keys::KeyStore,
    config: &Config,
    http: &reqwest::Client,
    order_id: i64,
    attempt: u32,
) -> Result<NotifyOutcome, OrderError> {
    let Some(o) = orders::find_by_id(db, order_id).await? else {
        return Ok(NotifyOutcome::Skipped);
    };
    // A child of a network switch never calls back: its parent does.
    if o.status != OrderStatus::Paid
        || o.callback_state == callback_state::DELIVERED
        || o.parent_trade_id.is_some()
    {
        return Ok(NotifyOutcome::Skipped);
    }
    let Some(m) = merchant::find_by_id(db, keys, o.merchant_id.get()).await? else {
        return Ok(NotifyOutcome::Skipped);
    };
    // Recorded before sending, completed after: an attempt cut short by a crash or kill still
    // shows in the history (the merchant may have received it).
    let record = callback_attempt::ActiveModel {
        order_id: Set(o.id.get()),
        attempt: Set(attempt as i32),
        attempted_at: Set(super::now()),
        http_status: Set(None),
        latency_ms: Set(0),
        body_excerpt: Set(String::new()),
        error: Set(INTERRUPTED.into()),
        success: Set(false),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let started = Instant::now();
    let result: Result<(u16, String, &'static str), String> = async {
        let req = build_callback(&o, &m).map_err(|e| e.to_string())?;
        let u = check_callback_url(&req.url, config.allow_private_callbacks)
            .map_err(|e| e.to_string())?;
        // Names are resolved and checked by the client's resolver, and the checked address is
        // the one connected to (no DNS-rebinding window between a check and the connection).
        let builder = match &req.json {
            Some(body) => http
                .post(u)
                .header("content-type", "application/json")
                .body(body.clone()),
            None => http.get(u),
        };
        // Per request, so a reloaded `notify_timeout_secs` applies to the next attempt.
        let resp = builder
            .timeout(std::time::Duration::from_secs(config.notify_timeout_secs))
            .send()
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        let code = resp.status().as_u16();
        let text = read_capped(resp, MAX_REPLY_BYTES).await?;
        Ok((code, text, req.expect))
    }
    .await;
    let elapsed = started.elapsed();
    let latency = elapsed.as_millis() as i64;
    let (status, body, error, success) = match &result {
        Ok((code, text, expect)) => {
            let ok = acknowledged(&o, *code, text, expect);
            let err = if ok {
                String::new()
            } else {
                format!("merchant answered HTTP {code} without `{expect}`")
            };
            (Some(i32::from(*code)), excerpt(text), err, ok)
        }
        Err(e) => (None, String::new(), excerpt(e), false),
    };
    metrics::callback_attempt(
        match (success, status) {
            (true, _) => metrics::CallbackOutcome::Delivered,
            (false, Some(_)) => metrics::CallbackOutcome::Rejected,
            (false, None) => metrics::CallbackOutcome::Failed,
        },
        elapsed,
    );
    callback_attempt::Entity::update_many()
        .col_expr(callback_attempt::Column::HttpStatus, Expr::value(status))
        .col_expr(callback_attempt::Column::LatencyMs, Expr::value(latency))
        .col_expr(callback_attempt::Column::BodyExcerpt, Expr::value(body))
        .col_expr(callback_attempt::Column::Error, Expr::value(error.clone()))
        .col_expr(callback_attempt::Column::Success, Expr::value(success))
        .filter(callback_attempt::Column::Id.eq(record.id))
        .exec(db)
        .await?;
    let (state, outcome, due) = if success {
        (callback_state::DELIVERED, NotifyOutcome::Delivered, None)
    } else if attempt >= config.notify_max_attempts {
        metrics::callback_gave_up();
        (callback_state::FAILED, NotifyOutcome::GaveUp, None)
    } else {
        let wait = backoff_secs(config.notify_retry_base_secs, attempt);
        let due = super::now().saturating_add(i64::try_from(wait).unwrap_or(i64::MAX / 2));
        (
            callback_state::QUEUED,
            NotifyOutcome::RetryIn(wait),
            Some(due),
        )
    };
    order::Entity::update_many()
        .col_expr(order::Column::CallbackState, Expr::value(state))
        .col_expr(order::Column::CallbackDueAt, Expr::value(due))
        .col_expr(order::Column::CallbackAttempts, Expr::value(attempt as i32))
        .filter(order::Column::Id.eq(o.id.get()))
        .filter(order::Column::CallbackState.ne(callback_state::DELIVERED))
        .exec(db)
        .await?;
    tracing::info!(trade_id = %o.trade_id, attempt, success, http_status = ?status, error = %crate::redact::secrets(&error), "callback attempt");
    Ok(outcome)
}

/// The error an attempt row carries until the attempt completes.
pub const INTERRUPTED: &str =
    "interrupted: the attempt did not complete (the process stopped while sending)";
/// Most bytes of a merchant's reply that are read; the expected answer is a few bytes.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Reads at most `max` bytes of the reply; a longer reply is an error (never buffered whole).
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<String, String> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the reply failed: {e}"))?
    {
        if buf.len() + chunk.len() > max {
            return Err(format!(
                "the reply is larger than {max} bytes; not read further (expected a short `ok`)"
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn excerpt(s: &str) -> String {
    s.chars().take(500).collect()
}

/// Admin resend: queue a fresh delivery cycle (attempt numbers restart at 1) regardless of the
/// previous state.
pub async fn resend(
    db: &DatabaseConnection,
    queue: &crate::queue::JobQueue,
    trade_id: &str,
) -> Result<(), OrderError> {
    let o = find_by_trade_id(db, trade_id)
        .await?
        .ok_or(OrderError::NotFound)?;
    if o.status != OrderStatus::Paid {
        return Err(OrderError::NotPaid);
    }
    order::Entity::update_many()
        .col_expr(
            order::Column::CallbackState,
            Expr::value(callback_state::QUEUED),
        )
        .col_expr(
            order::Column::CallbackDueAt,
            Expr::value(Some(super::now())),
        )
        .filter(order::Column::Id.eq(o.id.get()))
        .exec(db)
        .await?;
    queue
        .push(
            crate::queue::Job::Notify {
                order_id: o.id.get(),
                attempt: 1,
            },
            None,
        )
        .await?;
    Ok(())
}

/// Recorded attempts for an order, oldest first.
pub async fn attempts(
    db: &DatabaseConnection,
    order_id: i64,
) -> Result<Vec<callback_attempt::Model>, sea_orm::DbErr> {
    callback_attempt::Entity::find()
        .filter(callback_attempt::Column::OrderId.eq(order_id))
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_default_covers_a_day() {
        let total: u64 = (1..10).map(|a| backoff_secs(180, a)).sum();
        assert!(total >= 24 * 3600, "{total}");
        assert!(backoff_secs(1, 1) >= 1);
    }
}

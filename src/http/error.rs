//! Every mapping from an error to an HTTP reply lives here, and every `IntoResponse` of the
//! crate: [`ApiError`] (the protocol's code and message in the JSON envelope), the service's
//! [`OrderError`], the replay guard's [`ReplayError`] and the rate limiter's [`RateLimited`]
//! (`429`/`503` with `Retry-After` and `RateLimit-*`). Internal causes are logged here and never
//! sent to the client: the merchant sees "system error, please retry later".
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{
    middleware::ratelimit::{secs_ceil, set_headers},
    reply::{code, envelope},
};
use crate::{
    chain::SubmitError,
    security::{
        ratelimit::{RateLimited, Source},
        replay::ReplayError,
    },
    service::{epay_return::ReturnError, order::OrderError},
};

/// A protocol-level failure: code + message the merchant sees.
#[derive(Debug)]
pub struct ApiError {
    pub code: u32,
    pub message: String,
}

impl ApiError {
    pub fn bad_param(field: &str, problem: impl std::fmt::Display) -> Self {
        Self {
            code: code::BAD_PARAM,
            message: format!("{field} {problem}"),
        }
    }
    pub fn signature() -> Self {
        Self {
            code: code::SIGNATURE,
            message: "signature error".into(),
        }
    }
    pub fn system() -> Self {
        Self {
            code: code::SYSTEM,
            message: "system error, please retry later".into(),
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(e: OrderError) -> Self {
        let code = match &e {
            OrderError::Exists(_) => code::ORDER_EXISTS,
            OrderError::NoWallet(_) => code::NO_WALLET,
            OrderError::AmountTooSmall(..) => code::AMOUNT_TOO_SMALL,
            OrderError::NoFreeSlot(_) => code::NO_SLOT,
            OrderError::NoRate(_) => code::RATE,
            OrderError::NotFound => code::NOT_FOUND,
            OrderError::Transition(_) | OrderError::NotPaid => code::BAD_PARAM,
            OrderError::UnsupportedAsset(_) => code::UNSUPPORTED_ASSET,
            OrderError::SubOrderLimit => code::SUB_ORDER_LIMIT,
            OrderError::CannotSwitchChild => code::CANNOT_SWITCH_CHILD,
            OrderError::NotWaiting => code::NOT_WAITING,
            OrderError::Db(_)
            | OrderError::Queue(_)
            | OrderError::Merchant(_)
            | OrderError::Row(_) => {
                tracing::error!(error = %e, "internal error");
                return ApiError::system();
            }
        };
        let message = match &e {
            OrderError::Transition(t) => format!(
                "order is {} and can no longer change to {}",
                status_word(t.from.code()),
                status_word(t.to.code())
            ),
            other => other.to_string(),
        };
        ApiError { code, message }
    }
}

impl From<ReturnError> for ApiError {
    fn from(e: ReturnError) -> Self {
        let code = match e {
            ReturnError::Order(o) => return o.into(),
            ReturnError::RedirectUrl => code::REDIRECT_URL,
            ReturnError::Merchant => code::ORDER_MERCHANT,
        };
        ApiError {
            code,
            message: e.to_string(),
        }
    }
}

fn status_word(code: i16) -> &'static str {
    match code {
        1 => "waiting",
        2 => "paid",
        3 => "expired",
        4 => "cancelled",
        _ => "unknown",
    }
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::StoreUnavailable(cause) => {
                tracing::error!(error = %cause, "replay nonce store unavailable; refusing the request");
                ApiError::system()
            }
            other => ApiError {
                code: code::BAD_PARAM,
                message: other.to_string(),
            },
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        if let SubmitError::Order(inner) = e {
            return inner.into();
        }
        let code = match &e {
            SubmitError::BadHash(_) => code::BAD_PARAM,
            SubmitError::AlreadyUsed => code::TX_USED,
            SubmitError::NotWaiting(_) => code::NOT_WAITING,
            SubmitError::NotWatched(_) => code::CHAIN_NOT_ENABLED,
            _ => code::TX_NOT_VERIFIED,
        };
        ApiError {
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        envelope(self.code, &self.message, Value::Null)
    }
}

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
        let mut resp = envelope(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_messages_say_what_to_fix_and_hide_store_errors() {
        let e: ApiError = ReplayError::StoreUnavailable("redis: secret host".into()).into();
        assert!(!e.message.contains("secret"), "{}", e.message);
        let e: ApiError = ReplayError::TimestampOutOfWindow { skew: -400 }.into();
        assert!(e.message.contains("-400 s") && e.message.contains("300"));
    }

    fn verdict(source: Source, retry_ms: u64) -> crate::security::ratelimit::Verdict {
        use std::time::Duration;
        crate::security::ratelimit::Verdict {
            allowed: false,
            decisions: vec![crate::security::ratelimit::Decision {
                allowed: false,
                name: "ip",
                limit: 3,
                window: Duration::from_secs(60),
                remaining: 0,
                reset_after: Duration::from_secs(61),
                retry_after: Duration::from_millis(retry_ms),
                first_denial: true,
                source,
            }],
        }
    }

    #[tokio::test]
    async fn rate_limited_is_a_429_envelope_with_retry_after_and_headers() {
        let resp = RateLimited(verdict(Source::InProcess, 1500)).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let h = resp.headers();
        assert_eq!(h[header::RETRY_AFTER], "2");
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], "0");
        assert_eq!(h["ratelimit"], "\"ip\";r=0;t=61");
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status_code"], 429);
        assert_eq!(v["message"], "too many requests: retry after 2 s");
    }

    #[tokio::test]
    async fn rate_limiter_down_under_deny_is_a_503_without_ratelimit_headers() {
        let resp = RateLimited(verdict(Source::Unavailable, 0)).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert!(!resp.headers().contains_key("ratelimit-limit"));
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status_code"], 503);
        assert_eq!(v["message"], "rate limiter unavailable: retry after 1 s");
    }

    #[test]
    fn submitted_transaction_errors_have_upstream_codes_and_say_what_to_do() {
        let e: ApiError = SubmitError::AlreadyUsed.into();
        assert_eq!(e.code, code::TX_USED);
        let e: ApiError = SubmitError::BadHash("must be 64 hex digits").into();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                code::BAD_PARAM,
                "block_transaction_id must be 64 hex digits"
            )
        );
        let e: ApiError = SubmitError::Unconfirmed {
            missing: 3,
            required: 12,
        }
        .into();
        assert_eq!(e.code, code::TX_NOT_VERIFIED);
        assert!(
            e.message.contains("needs 3 more confirmation"),
            "{}",
            e.message
        );
        let e: ApiError = SubmitError::Order(OrderError::NotFound).into();
        assert_eq!(e.code, code::NOT_FOUND);
        let e: ApiError = SubmitError::NotWaiting("paid").into();
        assert_eq!(e.code, code::NOT_WAITING);
    }

    #[test]
    fn order_errors_keep_their_protocol_codes() {
        let e: ApiError = OrderError::NotFound.into();
        assert_eq!(e.code, code::NOT_FOUND);
        let e: ApiError = ReplayError::NonceReused.into();
        assert_eq!(e.code, code::BAD_PARAM);
        let e: ApiError = ReplayError::StoreUnavailable("x".into()).into();
        assert_eq!(
            (e.code, e.message.as_str()),
            (code::SYSTEM, "system error, please retry later")
        );
    }
}

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
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};

use crate::{
    chain::SubmitError,
    security::{
        ratelimit::{RateLimited, Source},
        replay::ReplayError,
    },
    service::{
        admin::AdminError, epay_return::ReturnError, merchant::MerchantError, order::OrderError,
        wallet::WalletError,
    },
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
            OrderError::NoRate(_) | OrderError::NoPrice { .. } => code::RATE,
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

impl RateLimited {
    /// The same refusal for the admin API: `{"error":{"code":"rate_limited"|"rate_limiter_unavailable"}}`
    /// with the same status and headers, never the merchant envelope.
    pub fn into_admin_response(self) -> Response {
        let merchant = self.clone().into_response();
        let (status, headers) = (merchant.status(), merchant.headers().clone());
        let code = if status == StatusCode::SERVICE_UNAVAILABLE {
            "rate_limiter_unavailable"
        } else {
            "rate_limited"
        };
        let retry = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("1")
            .to_string();
        let mut resp = AdminApiError::new(
            status,
            code,
            format!("too many requests: retry after {retry} s"),
        )
        .into_response();
        for (k, v) in &headers {
            if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
                resp.headers_mut().insert(k.clone(), v.clone());
            }
        }
        resp
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

/// An admin API failure: an honest HTTP status and `{"error": {"code", "message"}}` — never the
/// merchant envelope. Internal causes are logged here; the reply says only `internal_error`.
#[derive(Debug)]
pub struct AdminApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for `429` (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl AdminApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid access token is required (Authorization: Bearer …)",
        )
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
    }
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "admin API internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for AdminApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<AdminError> for AdminApiError {
    fn from(e: AdminError) -> Self {
        use StatusCode as S;
        let msg = e.to_string();
        match e {
            AdminError::Credential(_) => Self::new(S::UNPROCESSABLE_ENTITY, "invalid_field", msg),
            AdminError::Role(_) => Self::new(S::UNPROCESSABLE_ENTITY, "invalid_field", msg),
            AdminError::UsernameTaken(_) => Self::new(S::CONFLICT, "username_taken", msg),
            AdminError::TelegramTaken(_) => Self::new(S::CONFLICT, "telegram_taken", msg),
            AdminError::NotFound(_) => Self::new(S::NOT_FOUND, "not_found", msg),
            AdminError::LastOwner => Self::new(S::CONFLICT, "last_owner", msg),
            AdminError::BadCredentials => Self::new(S::UNAUTHORIZED, "invalid_credentials", msg),
            AdminError::TotpRequired => Self::new(S::UNAUTHORIZED, "totp_required", msg),
            AdminError::TotpInvalid => Self::new(S::UNAUTHORIZED, "totp_invalid", msg),
            AdminError::Locked { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(S::TOO_MANY_REQUESTS, "locked", msg)
            },
            AdminError::InvalidToken => Self::new(S::UNAUTHORIZED, "invalid_token", msg),
            AdminError::TotpAlreadyEnabled => Self::new(S::CONFLICT, "totp_already_enabled", msg),
            AdminError::TotpNotStarted => Self::new(S::CONFLICT, "totp_not_started", msg),
            AdminError::Sealed(_)
            | AdminError::Jwt(_)
            | AdminError::Hash(_)
            | AdminError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<WalletError> for AdminApiError {
    fn from(e: WalletError) -> Self {
        let msg = e.to_string();
        match e {
            WalletError::Network(..) | WalletError::Address(_) => Self::invalid(msg),
            WalletError::Exists { .. } => Self::new(StatusCode::CONFLICT, "wallet_exists", msg),
            WalletError::NotFound(_) => Self::not_found(msg),
            WalletError::Db(_) => Self::internal(&e),
        }
    }
}

impl From<MerchantError> for AdminApiError {
    fn from(e: MerchantError) -> Self {
        let msg = e.to_string();
        match e {
            MerchantError::PidTaken(_) => Self::new(StatusCode::CONFLICT, "pid_taken", msg),
            MerchantError::Invalid(_) => Self::invalid(msg),
            _ => Self::internal(&e),
        }
    }
}

impl From<OrderError> for AdminApiError {
    fn from(e: OrderError) -> Self {
        let msg = e.to_string();
        match e {
            OrderError::NotFound => Self::not_found(msg),
            OrderError::NotPaid => Self::new(StatusCode::CONFLICT, "order_not_paid", msg),
            OrderError::Transition(_) => Self::new(StatusCode::CONFLICT, "invalid_transition", msg),
            _ => Self::internal(&e),
        }
    }
}

impl From<crate::service::order::resolve::ResolveError> for AdminApiError {
    fn from(e: crate::service::order::resolve::ResolveError) -> Self {
        use crate::service::order::resolve::ResolveError as R;
        let msg = e.to_string();
        match e {
            R::OrderNotFound | R::TransferNotFound => Self::not_found(msg),
            R::Ambiguous(_) | R::NotForOrder(_) => Self::invalid(msg),
            R::Resolved { .. } => Self::new(StatusCode::CONFLICT, "transfer_resolved", msg),
            R::AlreadyPaid => Self::new(StatusCode::CONFLICT, "order_already_paid", msg),
            R::Order(o) => o.into(),
            R::Db(_) => Self::internal(&e),
        }
    }
}

impl From<sea_orm::DbErr> for AdminApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::internal(&e)
    }
}

impl From<crate::audit::AuditError> for AdminApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        Self::internal(&e)
    }
}

impl From<JsonRejection> for AdminApiError {
    fn from(e: JsonRejection) -> Self {
        let status = match e.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, "invalid_body", e.body_text())
    }
}

impl From<QueryRejection> for AdminApiError {
    fn from(e: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
    }
}

impl From<PathRejection> for AdminApiError {
    fn from(e: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text())
    }
}

/// `/metrics` without the `metrics_token` bearer token: 401 with a `WWW-Authenticate`
/// challenge, and nothing else said.
impl IntoResponse for super::monitor::MetricsUnauthorized {
    fn into_response(self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics_token is set: send Authorization: Bearer <metrics_token>\n",
        )
            .into_response()
    }
}

impl IntoResponse for super::monitor::MetricsUnavailable {
    fn into_response(self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable: another recorder was installed in this process\n",
        )
            .into_response()
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

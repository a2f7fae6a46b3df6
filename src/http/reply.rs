//! The reply envelope every merchant endpoint uses (DESIGN §4.1): HTTP 200 with
//! `{"status_code", "message", "data", "request_id"}`, and the single mapping from service
//! errors to protocol codes and messages.
use axum::{
    Json,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::service::order::OrderError;

/// Protocol error codes.
pub mod code {
    pub const OK: u32 = 200;
    pub const SYSTEM: u32 = 400;
    pub const SIGNATURE: u32 = 401;
    pub const ORDER_EXISTS: u32 = 10002;
    pub const NO_WALLET: u32 = 10003;
    pub const AMOUNT_TOO_SMALL: u32 = 10004;
    pub const NO_SLOT: u32 = 10005;
    pub const RATE: u32 = 10006;
    pub const NOT_FOUND: u32 = 10008;
    pub const BAD_PARAM: u32 = 10009;
}

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

fn status_word(code: i16) -> &'static str {
    match code {
        1 => "waiting",
        2 => "paid",
        3 => "expired",
        4 => "cancelled",
        _ => "unknown",
    }
}

pub fn request_id() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}

pub fn envelope(code: u32, message: &str, data: Value) -> Response {
    Json(json!({
        "status_code": code,
        "message": message,
        "data": data,
        "request_id": request_id(),
    }))
    .into_response()
}

pub fn success(data: Value) -> Response {
    envelope(code::OK, "success", data)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        envelope(self.code, &self.message, Value::Null)
    }
}

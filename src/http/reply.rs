//! The reply envelope every merchant endpoint uses (DESIGN §4.1): HTTP 200 with
//! `{"status_code", "message", "data", "request_id"}`, and the protocol codes. Errors are mapped
//! to replies in [`super::error`]; [`ApiError`] is re-exported here for the handlers.
use axum::{
    Json,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

pub use super::error::ApiError;

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
    /// The transaction hash was recorded before (upstream: "block transaction already processed").
    pub const TX_USED: u32 = 10007;
    pub const NOT_FOUND: u32 = 10008;
    pub const BAD_PARAM: u32 = 10009;
    /// The order is not awaiting payment.
    pub const NOT_WAITING: u32 = 10013;
    /// The order's network is not watched.
    pub const CHAIN_NOT_ENABLED: u32 = 10014;
    /// A payer-submitted transaction does not (yet) pay the order.
    pub const TX_NOT_VERIFIED: u32 = 10038;
    /// The order has no valid return URL (EPay return hop).
    pub const REDIRECT_URL: u32 = 10044;
    /// The order's merchant is unavailable (EPay return hop).
    pub const ORDER_MERCHANT: u32 = 10045;
    /// Switch-network (upstream's numbers).
    pub const SUB_ORDER_LIMIT: u32 = 10011;
    pub const CANNOT_SWITCH_CHILD: u32 = 10012;
    pub const UNSUPPORTED_ASSET: u32 = 10016;
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

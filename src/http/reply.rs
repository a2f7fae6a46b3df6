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
    pub const NOT_FOUND: u32 = 10008;
    pub const BAD_PARAM: u32 = 10009;
    /// Switch-network (upstream's numbers).
    pub const SUB_ORDER_LIMIT: u32 = 10011;
    pub const CANNOT_SWITCH_CHILD: u32 = 10012;
    pub const NOT_WAITING: u32 = 10013;
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

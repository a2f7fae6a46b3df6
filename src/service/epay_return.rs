//! EPay's return hop (`GET /pay/return/{trade_id}`, as upstream's epay_return.go): where the
//! payer's browser goes once the checkout page is done. A paid EPay order sends it on to the
//! merchant's return URL with the signed EPay result (the notify's parameters); any other order
//! back to its checkout page.
//!
//! Must never: sign for an order that is not paid, or for a disabled merchant.
use sea_orm::DatabaseConnection;

use super::{
    merchant,
    notify::callback_order,
    order::{OrderError, find_by_trade_id},
};
use crate::{domain::order::OrderStatus, protocol};

/// Where `GET /pay/return/{trade_id}` sends the payer's browser (upstream's EPay return hop).
#[derive(Debug, PartialEq, Eq)]
pub enum ReturnHop {
    /// A paid EPay order: the merchant's return URL with the signed EPay result.
    Merchant(String),
    /// Any other order (not EPay, or not paid): back to its checkout page.
    Checkout,
}

/// Why the return hop cannot send a paid EPay order back to its merchant.
#[derive(Debug, thiserror::Error)]
pub enum ReturnError {
    #[error(transparent)]
    Order(#[from] OrderError),
    /// The order has no (usable) return URL.
    #[error("the order has no valid return URL")]
    RedirectUrl,
    /// The order's merchant is gone or disabled: nothing to sign with.
    #[error("the order's merchant is unavailable")]
    Merchant,
}

/// Resolves the return hop of `trade_id`: an unknown order is [`OrderError::NotFound`].
pub async fn return_hop(
    db: &DatabaseConnection,
    keys: &crate::crypto::keys::KeyStore,
    trade_id: &str,
) -> Result<ReturnHop, ReturnError> {
    let o = find_by_trade_id(db, trade_id)
        .await?
        .ok_or(OrderError::NotFound)?;
    if o.protocol != protocol::Protocol::EPay || o.status != OrderStatus::Paid {
        return Ok(ReturnHop::Checkout);
    }
    if o.redirect_url.trim().is_empty() {
        return Err(ReturnError::RedirectUrl);
    }
    let m = match merchant::find_by_id(db, keys, o.merchant_id.get())
        .await
        .map_err(OrderError::from)?
    {
        Some(m) if m.enabled => m,
        _ => return Err(ReturnError::Merchant),
    };
    let params = protocol::epay::result_params(&callback_order(&o, &m), m.secret.expose());
    protocol::epay::return_url(&o.redirect_url, &params)
        .map(ReturnHop::Merchant)
        .map_err(|_| ReturnError::RedirectUrl)
}

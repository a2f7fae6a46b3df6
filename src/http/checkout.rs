//! `GET /pay/checkout-counter/{trade_id}`: the payer's page, rendered server-side by
//! `checkout_page` through the templates of `templates/` (no CDN, QR code generated here); and
//! `GET /pay/return/{trade_id}`, EPay's return hop: a paid EPay order's payer is sent on to the
//! merchant's return URL with the signed EPay result, anyone else back to the checkout page.
use axum::{
    Router,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};

use super::reply::ApiError;
use super::{
    checkout_page::{CheckoutView, ClosedReason, render_checkout, render_closed},
    render::RenderError,
};
use crate::{
    domain::{order::OrderStatus, protocol::Protocol},
    protocol,
    service::{
        epay_return::{self, ReturnError, ReturnHop},
        order,
    },
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/pay/checkout-counter/{trade_id}", get(checkout_counter))
        .route("/pay/return/{trade_id}", get(return_to_merchant))
}

/// The hop that sends an EPay payer back to the shop: the page links here (not to the raw
/// return URL), so the shop gets the signed result it checks, computed once the order is paid.
fn return_hop_url(state: &AppState, trade_id: &str) -> String {
    format!(
        "{}/pay/return/{trade_id}",
        state.config.app_uri.trim_end_matches('/')
    )
}

/// `GET /pay/return/{trade_id}` as upstream: a paid EPay order → 302 to the merchant's return
/// URL with the signed result (`Cache-Control: no-store`); an order that is not EPay or not paid
/// → 302 to its checkout page; an unknown order, a paid one without a return URL or whose
/// merchant is gone → the error envelope with HTTP 400 (10008, 10044, 10045).
async fn return_to_merchant(
    State(state): State<AppState>,
    Path(trade_id): Path<String>,
) -> Response {
    let hop = match crate::domain::order::check_trade_id(&trade_id) {
        Err(_) => Err(ReturnError::Order(order::OrderError::NotFound)),
        Ok(()) => epay_return::return_hop(&state.db, &state.keys, &trade_id).await,
    };
    match hop {
        Ok(ReturnHop::Merchant(url)) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response(),
        Ok(ReturnHop::Checkout) => (
            StatusCode::FOUND,
            [(
                header::LOCATION,
                format!("/pay/checkout-counter/{trade_id}"),
            )],
        )
            .into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            let status = StatusCode::from_u16(protocol::epay::upstream_error_status(e.code))
                .unwrap_or(StatusCode::BAD_REQUEST);
            let mut resp = e.into_response();
            if resp.status() == StatusCode::OK {
                *resp.status_mut() = status;
            }
            resp
        }
    }
}

fn page(status: StatusCode, html: Result<Html<String>, RenderError>) -> Response {
    let html = match html {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "checkout page");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    (
        status,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

async fn checkout_counter(State(state): State<AppState>, Path(trade_id): Path<String>) -> Response {
    // A malformed id names no order: answered without a query (a NUL would reach the database).
    if crate::domain::order::check_trade_id(&trade_id).is_err() {
        return page(
            StatusCode::NOT_FOUND,
            render_closed(ClosedReason::NotFound, None, None),
        );
    }
    let o = match order::find_by_trade_id(&state.db, &trade_id).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                render_closed(ClosedReason::NotFound, None, None),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "checkout lookup");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, retry",
            )
                .into_response();
        }
    };
    // An EPay payer goes back through the return hop, which adds the signed result.
    let hop = return_hop_url(&state, o.trade_id.as_str());
    let redirect = match (o.redirect_url.is_empty(), o.protocol) {
        (true, _) => None,
        (false, Protocol::EPay) => Some(hop.as_str()),
        (false, _) => Some(o.redirect_url.as_str()),
    };
    let now = crate::service::now();
    let reason = match o.effective_status(now) {
        OrderStatus::Waiting => None,
        OrderStatus::Expired => Some(ClosedReason::Expired),
        OrderStatus::Paid => Some(ClosedReason::Paid),
        OrderStatus::Cancelled => Some(ClosedReason::Cancelled),
    };
    if let Some(r) = reason {
        return page(
            StatusCode::OK,
            render_closed(r, Some(o.trade_id.as_str()), redirect),
        );
    }
    let label = o.network.label();
    let status_url = format!("/pay/check-status/{}", o.trade_id);
    // Fiat is shown with cents (`100.00 CNY`), as the shop showed it.
    let fiat = format!("{:.2}", o.amount);
    let actual_amount = o.actual_amount.to_string();
    let html = render_checkout(&CheckoutView {
        trade_id: o.trade_id.as_str(),
        order_id: &o.order_id,
        fiat_amount: &fiat,
        currency: &o.currency,
        actual_amount: &actual_amount,
        token: &o.token,
        network_label: label,
        address: &o.address,
        expires_at_unix: o.expires_at,
        now_unix: now,
        redirect_url: redirect,
        status_url: &status_url,
    });
    page(StatusCode::OK, html)
}

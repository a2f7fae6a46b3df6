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
    checkout_choose::{SwitchOption, asset_of, render_choose, switch_options},
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
    let o = match order::choice::lookup_cached(&state.db, &state.caches.trades, &trade_id).await {
        Ok(Some(order::choice::Lookup::Order(o))) => o,
        Ok(Some(order::choice::Lookup::Choice(c))) => return choose_page(&state, &c).await,
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
    let label = state.config.registry().label(o.network);
    let status_url = format!("/pay/check-status/{}", o.trade_id);
    // Fiat is shown with cents (`100.00 CNY`), as the shop showed it.
    let fiat = format!("{:.2}", o.amount);
    let actual_amount = o.actual_amount.to_string();
    let switch_networks = switch_offer(&state, &o).await;
    let html = render_checkout(&CheckoutView {
        trade_id: o.trade_id.as_str(),
        order_id: &o.order_id,
        fiat_amount: &fiat,
        currency: &o.currency,
        actual_amount: &actual_amount,
        token: &o.token,
        network_label: &label,
        address: &o.address,
        expires_at_unix: o.expires_at,
        now_unix: now,
        redirect_url: redirect,
        status_url: &status_url,
        switch_networks: &switch_networks,
    });
    page(StatusCode::OK, html)
}

/// The "pay on another network" offer of a waiting order (none if it cannot be read: the
/// page still works without it).
async fn switch_offer(state: &AppState, o: &crate::domain::order::Order) -> Vec<SwitchOption> {
    let key = o.trade_id.to_string();
    let facts = match state.caches.switch_facts.get(&key) {
        Some(f) => Ok(f),
        None => {
            async {
                let supported = order::supported_assets(&state.db, &state.config).await?;
                let children = order::children(&state.db, o.trade_id.as_str()).await?;
                let facts = std::sync::Arc::new((supported, children));
                state.caches.switch_facts.put(key, facts.clone());
                Ok::<_, order::OrderError>(facts)
            }
            .await
        }
    };
    match facts {
        Ok(facts) => {
            let (supported, children) = &*facts;
            let now = crate::service::now();
            let waiting: Vec<_> = children
                .iter()
                .filter(|c| c.effective_status(now) == OrderStatus::Waiting)
                .map(asset_of)
                .collect();
            if !children.is_empty() && waiting.is_empty() {
                return Vec::new();
            }
            switch_options(
                asset_of(o),
                o.parent_trade_id.is_some(),
                &waiting,
                supported,
                state.config.registry(),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "checkout: network offer unavailable");
            Vec::new()
        }
    }
}

/// The page of a placeholder: the payer chooses a network, or sees why it is closed.
async fn choose_page(state: &AppState, c: &order::choice::Choice) -> Response {
    let now = crate::service::now();
    let redirect = (!c.redirect_url.is_empty()).then_some(c.redirect_url.as_str());
    match order::choice::choice_status(c, now) {
        order::choice::STATUS_CHOOSING => {}
        3 => {
            return page(
                StatusCode::OK,
                render_closed(ClosedReason::Expired, Some(&c.trade_id), redirect),
            );
        }
        _ => {
            return page(
                StatusCode::OK,
                render_closed(ClosedReason::Cancelled, Some(&c.trade_id), redirect),
            );
        }
    }
    let networks: Vec<SwitchOption> = match order::supported_assets(&state.db, &state.config).await
    {
        Ok(n) => n
            .into_iter()
            .map(|a| SwitchOption::new(a, state.config.registry()))
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "checkout lookup");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable, retry",
            )
                .into_response();
        }
    };
    let fiat = c
        .amount
        .parse::<rust_decimal::Decimal>()
        .map(|d| format!("{d:.2}"))
        .unwrap_or_else(|_| c.amount.clone());
    page(
        StatusCode::OK,
        render_choose(&c.trade_id, &c.order_id, &fiat, &c.currency, &networks),
    )
}

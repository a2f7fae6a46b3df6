//! The checkout API of GMWalletApp/epusdt (issue 11): `GET /payments/gmpay/v1/config` (what a
//! payer may choose, site branding), `GET /pay/checkout-counter-resp/{trade_id}` (an order or
//! placeholder in upstream's CheckoutCounterResponse shape) and `POST /pay/switch-network`
//! (the payer picks token + network: a placeholder is completed, a waiting order gets its one
//! child). Also the create path of a placeholder (GMPay without token/network). Thin: the
//! rules live in `service::order::{choice, switch}`.
use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{
    merchant::{order_view, payment_url},
    reply::{self, ApiError},
};
use crate::{
    domain::{
        order::{Order, check_trade_id},
        protocol::Protocol,
    },
    protocol::{MerchantProtocol, Params, PlaceholderView, Reply, fields},
    service::{
        now,
        order::{
            self, NewOrder,
            choice::{self, Choice, Lookup, PlaceholderCreated},
        },
    },
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/payments/gmpay/v1/config", get(public_config))
        .route(
            "/pay/checkout-counter-resp/{trade_id}",
            get(checkout_counter_resp),
        )
        .route("/pay/switch-network", post(switch_network))
}

fn shaped(reply: Reply) -> Response {
    match reply {
        Reply::Data(data) => reply::success(data),
        Reply::Redirect(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
    }
}

/// A create request without token and network: the placeholder (or, for a repeat after the
/// payer chose, the order it became) in the protocol's reply shape.
pub(super) async fn create_placeholder(
    state: &AppState,
    proto: &'static dyn MerchantProtocol,
    req: NewOrder,
) -> Result<Response, ApiError> {
    let order_id = req.order_id.clone();
    match choice::create_placeholder(&state.db, &state.config, req).await? {
        PlaceholderCreated::Order(created) => {
            tracing::info!(trade_id = %created.order.trade_id, order_id, repeated = true, "order created");
            Ok(shaped(proto.reply(&order_view(state, &created.order))))
        }
        PlaceholderCreated::Choice {
            choice: c,
            repeated,
        } => {
            tracing::info!(trade_id = %c.trade_id, order_id, repeated, "placeholder created: the payer chooses token and network");
            let amount = c.amount.parse().map_err(|_| ApiError::system())?;
            Ok(shaped(proto.placeholder_reply(&PlaceholderView {
                trade_id: &c.trade_id,
                order_id: &c.order_id,
                amount,
                currency: &c.currency,
                status: choice::STATUS_CHOOSING,
                expires_at: c.expires_at,
                payment_url: payment_url(state, &c.trade_id),
            })))
        }
    }
}

/// A canonical decimal text as a JSON number.
fn num(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or(Value::Null)
}

fn payment_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::EPay => "epay",
        _ => "gmpay",
    }
}

/// Upstream: an EPay order's redirect goes through `/pay/return/{trade_id}` (signed return
/// parameters); any other order's is the merchant's own.
fn redirect_url(state: &AppState, protocol: Protocol, trade_id: &str, raw: &str) -> String {
    if protocol == Protocol::EPay && !raw.is_empty() {
        format!(
            "{}/pay/return/{trade_id}",
            state.config.app_uri.trim_end_matches('/')
        )
    } else {
        raw.to_string()
    }
}

/// Upstream's CheckoutCounterResponse of an order. Times are unix milliseconds, as upstream's.
fn order_resp(state: &AppState, o: &Order, is_selected: bool) -> Value {
    let now = now();
    json!({
        "trade_id": o.trade_id.as_str(),
        "amount": num(&o.amount.to_string()),
        "actual_amount": num(&o.actual_amount.to_string()),
        "token": o.token,
        "currency": o.currency,
        "receive_address": o.address,
        // Upstream's network keys (BSC is `binance`), as in GMPay replies.
        "network": crate::protocol::gmpay::network_key(o.network),
        "status": o.effective_status(now).code(),
        "payment_type": payment_type(o.protocol),
        "expiration_time": o.expires_at * 1000,
        "redirect_url": redirect_url(state, o.protocol, o.trade_id.as_str(), &o.redirect_url),
        "payment_url": "",
        "created_at": o.created_at * 1000,
        "is_selected": is_selected,
    })
}

/// The same shape for a placeholder: no token, network or address, `actual_amount` 0.
fn choice_resp(state: &AppState, c: &Choice) -> Value {
    let protocol = Protocol::parse(&c.protocol).unwrap_or(Protocol::GmPay);
    json!({
        "trade_id": c.trade_id,
        "amount": num(&c.amount),
        "actual_amount": 0,
        "token": "",
        "currency": c.currency,
        "receive_address": "",
        "network": "",
        "status": choice::choice_status(c, now()),
        "payment_type": payment_type(protocol),
        "expiration_time": c.expires_at * 1000,
        "redirect_url": redirect_url(state, protocol, &c.trade_id, &c.redirect_url),
        "payment_url": "",
        "created_at": c.created_at * 1000,
        "is_selected": false,
    })
}

/// `GET /pay/checkout-counter-resp/{trade_id}`; 10008 for an unknown trade_id.
async fn checkout_counter_resp(
    State(state): State<AppState>,
    Path(trade_id): Path<String>,
) -> Response {
    async {
        check_trade_id(&trade_id).map_err(|why| ApiError::bad_param("trade_id", why))?;
        let found = choice::lookup(&state.db, &trade_id)
            .await?
            .ok_or(order::OrderError::NotFound)?;
        Ok::<_, ApiError>(reply::success(match found {
            Lookup::Choice(c) => choice_resp(&state, &c),
            Lookup::Order(o) => {
                // Selected: a child, or a parent whose payer switched (upstream's flag).
                let selected = o.parent_trade_id.is_some()
                    || !order::children(&state.db, o.trade_id.as_str())
                        .await?
                        .is_empty();
                order_resp(&state, &o, selected)
            }
        }))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /pay/switch-network` `{trade_id, token, network}` (JSON or form).
async fn switch_network(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    async {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let p = Params::from_body(ct, &body)?;
        let trade_id = fields::text(&p, "trade_id", 64, true)?;
        check_trade_id(&trade_id).map_err(|why| ApiError::bad_param("trade_id", why))?;
        let token = fields::text(&p, "token", 16, true)?;
        let network = fields::text(&p, "network", 32, true)?;
        let s = order::switch_network(
            &state.db,
            &state.config,
            &state.keys,
            &state.caches.wallets,
            &trade_id,
            &token,
            &network,
        )
        .await;
        // The checkout page of this trade_id shows the switch (or its failure) at once.
        state.caches.forget_trade(&trade_id);
        let s = s?;
        Ok::<_, ApiError>(reply::success(order_resp(&state, &s.order, s.is_selected)))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /payments/gmpay/v1/config`: upstream's public config — the assets a payer may choose
/// (the tokens of each supported network, see `order::supported_networks`), site branding, the EPay
/// defaults and OkPay (not supported here: disabled).
async fn public_config(State(state): State<AppState>) -> Response {
    async {
        let registry = state.config.registry();
        let assets: Vec<Value> = order::supported_networks(&state.db, &state.config)
            .await?
            .into_iter()
            .map(|n| {
                let tokens: Vec<&str> = registry
                    .get(n)
                    .map(|i| i.tokens.iter().map(|t| t.token.as_str()).collect())
                    .unwrap_or_default();
                json!({ "network": crate::protocol::gmpay::network_key(n), "display_name": registry.label(n), "tokens": tokens })
            })
            .collect();
        Ok::<_, ApiError>(reply::success(json!({
            "supported_assets": assets,
            "site": {
                "cashier_name": "epusdt",
                "logo_url": "",
                "website_title": "epusdt",
                "support_link": "",
                "background_color": "",
                "background_image_url": "",
            },
            "epay": {
                "default_token": state.config.epay_default_token,
                "default_currency": state.config.epay_default_currency.to_lowercase(),
                "default_network": registry
                    .asset_of(
                        &state.config.epay_default_token,
                        state.config.effective_epay_default_network(),
                    )
                    .map_or("", |a| crate::protocol::gmpay::network_key(a.network)),
            },
            "okpay": { "enabled": false, "allow_tokens": [] },
            "version": env!("CARGO_PKG_VERSION"),
        })))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_epay_is_epay() {
        assert_eq!(payment_type(Protocol::EPay), "epay");
        assert_eq!(payment_type(Protocol::GmPay), "gmpay");
        assert_eq!(payment_type(Protocol::V1), "gmpay");
    }
}

//! Rates: the fiat → USDT rate in effect per currency and its source; set an admin rate. Prices:
//! the USDT price of every configured native coin (TRX, ETH, …) and its source; set one.
use axum::{
    Json,
    extract::{Path, State},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::{AdminJson, CanRead, CanWrite};
use crate::{
    audit::actions,
    domain::{amount, currency},
    http::error::AdminApiError,
    service::rate,
    state::AppState,
};

pub async fn list_rates(
    State(state): State<AppState>,
    _: CanRead,
) -> Result<Json<Value>, AdminApiError> {
    let rows = rate::list(&state.db, &state.config).await?;
    let rates: Vec<Value> = rows
        .into_iter()
        .map(|(c, r, source)| json!({ "currency": c, "rate": r.normalize().to_string(), "source": source }))
        .collect();
    let prices: Vec<Value> = rate::prices(&state.db, &state.config)
        .await?
        .into_iter()
        .map(|(n, t, p)| {
            json!({
                "network": n, "coin": t,
                "usdt_price": p.map(|(v, _)| v.normalize().to_string()),
                "source": p.map(|(_, s)| s),
            })
        })
        .collect();
    Ok(Json(json!({ "rates": rates, "prices": prices })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRate {
    /// Fiat units per 1 USDT, as a decimal string (never a float).
    rate: Value,
}

/// Sets an admin rate (fiat units per 1 USDT). A `forced_usdt_rate` in the config still wins
/// for CNY; the reply says which rate is in effect.
pub async fn set_rate(
    State(state): State<AppState>,
    who: CanWrite,
    Path(cur): Path<String>,
    AdminJson(req): AdminJson<SetRate>,
) -> Result<Json<Value>, AdminApiError> {
    let cur = currency::normalize(&cur);
    if !currency::is_fiat_code(&cur) {
        return Err(AdminApiError::invalid(format!(
            "`{cur}` is not a currency code like CNY"
        )));
    }
    let value = req
        .rate
        .as_str()
        .and_then(|s| amount::parse_plain(s.trim(), false))
        .filter(|r| *r > rust_decimal::Decimal::ZERO)
        .ok_or_else(|| {
            AdminApiError::invalid("rate must be a positive decimal string, e.g. \"7.2\"")
        })?;
    rate::set_rate(&state.db, &cur, value).await?;
    state
        .audit
        .record(
            who.admin
                .event(actions::RATE_SET, format!("rate:{cur}"))
                .with_details(json!({ "rate": value.normalize().to_string() })),
        )
        .await?;
    let effective = rate::usdt_rate(&state.db, &state.config, &cur).await?;
    Ok(Json(json!({
        "currency": cur,
        "rate": value.normalize().to_string(),
        "effective_rate": effective.map(|r| r.normalize().to_string()),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPrice {
    /// USDT per 1 coin, as a decimal string (never a float).
    usdt_price: Value,
}

/// Sets an admin price of a configured native coin (USDT per 1 coin); it wins over the
/// configuration's `usdt_price` on every network where the coin is configured.
pub async fn set_price(
    State(state): State<AppState>,
    who: CanWrite,
    Path(coin): Path<String>,
    AdminJson(req): AdminJson<SetPrice>,
) -> Result<Json<Value>, AdminApiError> {
    let coins = rate::configured_coins(&state.config);
    let Some(token) = coins
        .keys()
        .find(|t| t.as_str().eq_ignore_ascii_case(coin.trim()))
        .copied()
    else {
        return Err(AdminApiError::invalid(format!(
            "`{}` is not a configured native coin; configured: {}",
            crate::redact::truncate(&coin, 16),
            if coins.is_empty() {
                "none (set native = true in [networks.<name>.tokens.<coin>])".to_string()
            } else {
                coins
                    .keys()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    let value = req
        .usdt_price
        .as_str()
        .and_then(|s| amount::parse_plain(s.trim(), false))
        .filter(|r| *r > rust_decimal::Decimal::ZERO)
        .ok_or_else(|| {
            AdminApiError::invalid("usdt_price must be a positive decimal string, e.g. \"0.25\"")
        })?;
    rate::set_price(&state.db, token, value).await?;
    state
        .audit
        .record(
            who.admin
                .event(actions::PRICE_SET, format!("price:{token}"))
                .with_details(json!({ "usdt_price": value.normalize().to_string() })),
        )
        .await?;
    Ok(Json(json!({
        "coin": token,
        "usdt_price": value.normalize().to_string(),
        "networks": coins.get(&token),
    })))
}

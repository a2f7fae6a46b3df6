//! Wallets and merchants: thin handlers over `service::wallet` and `service::merchant`. Every
//! write is audited with the admin's name and address.
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::{AdminJson, CanRead, CanWrite};
use crate::{
    audit::actions,
    http::error::AdminApiError,
    service::{merchant, wallet},
    state::AppState,
    store::entities::{merchant as merchant_row, wallet as wallet_row},
};

fn wallet_json(w: &wallet_row::Model) -> Value {
    json!({
        "id": w.id,
        "network": w.network,
        "address": w.address,
        "label": w.label,
        "enabled": w.enabled,
        "merchant_id": w.merchant_id,
        "created_at": w.created_at,
    })
}

pub async fn list_wallets(
    State(state): State<AppState>,
    _: CanRead,
) -> Result<Json<Value>, AdminApiError> {
    let rows = wallet::list(&state.db).await?;
    Ok(Json(
        json!({ "wallets": rows.iter().map(wallet_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWallet {
    network: String,
    address: String,
    #[serde(default)]
    label: Option<String>,
}

pub async fn add_wallet(
    State(state): State<AppState>,
    who: CanWrite,
    AdminJson(req): AdminJson<NewWallet>,
) -> Result<(StatusCode, Json<Value>), AdminApiError> {
    let w = wallet::add(
        &state.db,
        state.config.registry(),
        &req.network,
        &req.address,
        None,
        req.label.as_deref().unwrap_or(""),
    )
    .await?;
    state
        .audit
        .record(
            who.admin
                .event(
                    actions::WALLET_ADD,
                    format!("wallet:{}:{}", w.network, w.address),
                )
                .with_details(json!({ "id": w.id, "label": w.label })),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(wallet_json(&w))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletPatch {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

pub async fn update_wallet(
    State(state): State<AppState>,
    who: CanWrite,
    Path(id): Path<i64>,
    AdminJson(req): AdminJson<WalletPatch>,
) -> Result<Json<Value>, AdminApiError> {
    if req.label.is_none() && req.enabled.is_none() {
        return Err(AdminApiError::invalid(
            "nothing to change: send label and/or enabled",
        ));
    }
    let w = wallet::update(&state.db, id, req.label.as_deref(), req.enabled).await?;
    state
        .audit
        .record(
            who.admin
                .event(
                    actions::WALLET_UPDATE,
                    format!("wallet:{}:{}", w.network, w.address),
                )
                .with_details(json!({ "id": w.id, "label": req.label, "enabled": req.enabled })),
        )
        .await?;
    Ok(Json(wallet_json(&w)))
}

fn merchant_json(m: &merchant_row::Model) -> Value {
    json!({
        "pid": m.pid,
        "name": m.name,
        "enabled": m.enabled,
        "strict_replay": m.strict_replay,
        "sign_mode": m.sign_mode,
        "ip_allowlist": m.ip_allowlist.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "rotation_overlap_until": m.previous_secret_until.filter(|u| *u > crate::service::now()),
        "rate_limit_per_minute": m.rate_limit_per_minute,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
    })
}

pub async fn list_merchants(
    State(state): State<AppState>,
    _: CanRead,
) -> Result<Json<Value>, AdminApiError> {
    let rows = merchant::list(&state.db).await?;
    Ok(Json(json!({
        "merchants": rows.iter().map(merchant_json).collect::<Vec<_>>(),
        // What a merchant without its own limit gets, and how long an old secret lives on.
        "default_rate_limit_per_minute": state.config.rate_limit.rate_limit_merchant_per_minute,
        "rotation_overlap_secs": state.config.secret_overlap_secs,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMerchant {
    name: String,
    #[serde(default)]
    strict_replay: bool,
}

/// Creates a merchant; the reply is the only time its secret is shown.
pub async fn add_merchant(
    State(state): State<AppState>,
    who: CanWrite,
    AdminJson(req): AdminJson<NewMerchant>,
) -> Result<(StatusCode, Json<Value>), AdminApiError> {
    let m = merchant::add(
        &state.db,
        &state.keys,
        &req.name,
        None,
        None,
        req.strict_replay,
    )
    .await?;
    state
        .audit
        .record(
            who.admin
                .event(actions::MERCHANT_ADD, format!("merchant:{}", m.pid))
                .with_details(json!({ "name": m.name, "strict_replay": m.strict_replay })),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "pid": m.pid,
            "name": m.name,
            "secret": m.secret.expose(),
            "enabled": m.enabled,
            "strict_replay": m.strict_replay,
        })),
    ))
}

/// A new random secret, shown once; the old one keeps verifying requests for
/// `secret_overlap_secs` (0: it stops at once).
pub async fn rotate_merchant_secret(
    State(state): State<AppState>,
    who: CanWrite,
    Path(pid): Path<i64>,
) -> Result<Json<Value>, AdminApiError> {
    let overlap = state.config.secret_overlap_secs;
    let m = merchant::rotate_secret(&state.db, &state.keys, pid, overlap)
        .await?
        .ok_or_else(|| AdminApiError::not_found(format!("no merchant with pid {pid}")))?;
    state
        .audit
        .record(
            who.admin
                .event(
                    actions::MERCHANT_ROTATE_SECRET,
                    format!("merchant:{}", m.pid),
                )
                .with_details(json!({ "overlap_secs": overlap })),
        )
        .await?;
    let until = (overlap > 0).then(|| crate::service::now() + i64::from(overlap));
    Ok(Json(json!({
        "pid": m.pid,
        "name": m.name,
        "secret": m.secret.expose(),
        "rotation_overlap_until": until,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    /// GMPay verification: `dual`, `md5` or `hmac_sha256`.
    #[serde(default)]
    sign_mode: Option<String>,
    /// IPs/CIDRs its signed requests may come from; `[]` = any.
    #[serde(default)]
    ip_allowlist: Option<Vec<String>>,
    /// Its own signed requests per minute: a number (0 = unlimited) or `null` for the default.
    #[serde(default, deserialize_with = "present")]
    rate_limit_per_minute: Option<Option<u32>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Renames, disables / re-enables a merchant or sets its GMPay sign mode.
pub async fn update_merchant(
    State(state): State<AppState>,
    who: CanWrite,
    Path(pid): Path<i64>,
    AdminJson(req): AdminJson<MerchantPatch>,
) -> Result<Json<Value>, AdminApiError> {
    if req.name.is_none()
        && req.enabled.is_none()
        && req.sign_mode.is_none()
        && req.ip_allowlist.is_none()
        && req.rate_limit_per_minute.is_none()
    {
        return Err(AdminApiError::invalid(
            "nothing to change: send name, enabled, sign_mode, ip_allowlist and/or rate_limit_per_minute",
        ));
    }
    if let Some(Some(n)) = req.rate_limit_per_minute
        && n > crate::service::merchant_access::RATE_LIMIT_MAX
    {
        return Err(AdminApiError::invalid(format!(
            "rate_limit_per_minute must be at most {}; use 0 for unlimited or null for the default",
            crate::service::merchant_access::RATE_LIMIT_MAX
        )));
    }
    // Validated before anything is written, so a bad list changes nothing.
    if let Some(list) = &req.ip_allowlist {
        crate::service::merchant_access::parse_allowlist(&list.join(","))
            .map_err(AdminApiError::invalid)?;
    }
    let not_found = || AdminApiError::not_found(format!("no merchant with pid {pid}"));
    let mode =
        match req.sign_mode.as_deref() {
            None => None,
            Some(m) => Some(crate::crypto::sign::SignMode::parse(m).ok_or_else(|| {
                AdminApiError::invalid("sign_mode must be dual, md5 or hmac_sha256")
            })?),
        };
    if req.name.is_some() || req.enabled.is_some() {
        merchant::update(&state.db, pid, req.name.as_deref(), req.enabled)
            .await?
            .ok_or_else(not_found)?;
    }
    if let Some(mode) = mode {
        merchant::set_sign_mode(&state.db, pid, mode)
            .await?
            .ok_or_else(not_found)?;
    }
    if let Some(list) = &req.ip_allowlist {
        crate::service::merchant_access::set_ip_allowlist(&state.db, pid, list)
            .await?
            .ok_or_else(not_found)?;
    }
    if let Some(limit) = req.rate_limit_per_minute {
        crate::service::merchant_access::set_rate_limit(&state.db, pid, limit)
            .await?
            .ok_or_else(not_found)?;
    }
    let m = merchant::list(&state.db)
        .await?
        .into_iter()
        .find(|m| m.pid == pid)
        .ok_or_else(not_found)?;
    state
        .audit
        .record(
            who.admin
                .event(actions::MERCHANT_UPDATE, format!("merchant:{pid}"))
                .with_details(
                    json!({ "name": req.name, "enabled": req.enabled, "sign_mode": req.sign_mode, "ip_allowlist": req.ip_allowlist, "rate_limit_per_minute": req.rate_limit_per_minute }),
                ),
        )
        .await?;
    Ok(Json(merchant_json(&m)))
}

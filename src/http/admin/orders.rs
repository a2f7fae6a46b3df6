//! Orders: search, detail (transfers and every callback attempt), resend the callback.
use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::{AdminJson, CanRead, CanWrite};
use crate::{
    audit::actions,
    domain::order::OrderStatus,
    http::error::AdminApiError,
    service::{
        merchant, notify,
        order::{
            confirming,
            search::{self, OrderQuery},
        },
    },
    state::AppState,
    store::entities::order,
};

fn parse_status(s: &str) -> Option<OrderStatus> {
    match s.trim().to_ascii_lowercase().as_str() {
        "waiting" | "1" => Some(OrderStatus::Waiting),
        "paid" | "2" => Some(OrderStatus::Paid),
        "expired" | "3" => Some(OrderStatus::Expired),
        "cancelled" | "canceled" | "4" => Some(OrderStatus::Cancelled),
        _ => None,
    }
}

/// An order as the admin API shows it; `pids` maps the stored merchant id to the merchant's
/// pid (what operators and merchants know it by).
fn order_json(o: &order::Model, pids: &HashMap<i64, i64>) -> Value {
    json!({
        "trade_id": o.trade_id,
        "order_id": o.order_id,
        "merchant_id": o.merchant_id,
        "merchant_pid": pids.get(&o.merchant_id),
        "protocol": o.protocol,
        "network": o.network,
        "token": o.token,
        "currency": o.currency,
        "amount": o.amount,
        "rate": o.rate,
        "actual_amount": o.actual_amount,
        "address": o.address,
        "status": OrderStatus::word_of(o.status),
        "flags": o.flags,
        "block_transaction_id": o.block_transaction_id,
        "paid_amount": o.paid_amount,
        "callback_state": o.callback_state,
        "callback_attempts": o.callback_attempts,
        "created_at": o.created_at,
        "expires_at": o.expires_at,
        "paid_at": o.paid_at,
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    network: Option<String>,
    merchant_id: Option<i64>,
    merchant: Option<i64>,
    address: Option<String>,
    q: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    cursor: Option<String>,
    limit: Option<u64>,
}

pub async fn list_orders(
    State(state): State<AppState>,
    _: CanRead,
    Query(p): Query<ListQuery>,
) -> Result<Json<Value>, AdminApiError> {
    let status = match p.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_status(s).ok_or_else(|| {
            AdminApiError::invalid("status must be waiting, paid, expired or cancelled")
        })?),
    };
    let network = match p.network.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(n) => Some(
            state
                .config
                .registry()
                .network(n)
                .ok_or_else(|| AdminApiError::invalid(format!("unknown network `{n}`")))?
                .as_str()
                .to_string(),
        ),
    };
    let cursor = match p.cursor.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            AdminApiError::invalid("cursor must be the next_cursor of a previous page")
        })?),
    };
    let page = search::search(
        &state.db,
        &OrderQuery {
            status,
            network,
            merchant_id: p.merchant_id,
            merchant_pid: p.merchant,
            address: p.address,
            q: p.q,
            created_from: p.from,
            created_to: p.to,
            cursor,
            limit: p.limit.unwrap_or(50),
        },
    )
    .await?;
    let pids = merchant::pids_by_id(&state.db).await?;
    Ok(Json(json!({
        "orders": page.orders.iter().map(|o| order_json(o, &pids)).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor.map(|c| c.to_string()),
    })))
}

pub async fn get_order(
    State(state): State<AppState>,
    _: CanRead,
    Path(trade_id): Path<String>,
) -> Result<Json<Value>, AdminApiError> {
    let d = search::detail(&state.db, &trade_id)
        .await?
        .ok_or_else(|| AdminApiError::not_found(format!("no order with trade_id {trade_id}")))?;
    let pids = merchant::pids_by_id(&state.db).await?;
    let mut v = order_json(&d.order, &pids);
    v["notify_url"] = json!(d.order.notify_url);
    v["redirect_url"] = json!(d.order.redirect_url);
    v["transfers"] = d
        .transfers
        .iter()
        .map(|t| {
            json!({
                "id": t.id, "network": t.network, "token": t.token, "tx_hash": t.tx_hash, "log_index": t.log_index,
                "block_number": t.block_number, "from": t.from_address, "to": t.to_address,
                "amount": t.amount, "block_time": t.block_time, "kind": t.kind,
            })
        })
        .collect();
    // Seen above the confirmed head, not credited (status 5 in check-status).
    v["confirming"] = confirming::of_order(&state.db, d.order.id)
        .await?
        .iter()
        .map(|p| {
            json!({
                "tx_hash": p.tx_hash, "log_index": p.log_index, "block_number": p.block_number,
                "confirmations": p.confirmations,
                "confirmations_required": p.confirmations_required, "seen_at": p.seen_at,
            })
        })
        .collect();
    v["callback_attempts_log"] = d
        .attempts
        .iter()
        .map(|a| {
            json!({
                "attempt": a.attempt, "at": a.attempted_at, "http_status": a.http_status,
                "latency_ms": a.latency_ms, "success": a.success, "body_excerpt": a.body_excerpt,
                "error": a.error,
            })
        })
        .collect();
    Ok(Json(v))
}

/// Queues a fresh callback delivery for a paid order.
pub async fn resend_callback(
    State(state): State<AppState>,
    who: CanWrite,
    Path(trade_id): Path<String>,
) -> Result<(StatusCode, Json<Value>), AdminApiError> {
    notify::resend(&state.db, &state.queue, &trade_id).await?;
    state
        .audit
        .record(
            who.admin
                .event(actions::ORDER_RESEND, format!("order:{trade_id}")),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "trade_id": trade_id, "callback": "queued" })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    action: String,
    transfer_id: Option<i64>,
    tx: Option<String>,
    reason: String,
}

/// Longest accepted `reason` of a resolve, in characters.
const REASON_MAX: usize = 500;

/// Credits a late/partial/overpaid/unmatched transfer to the order, or dismisses it; once per
/// transfer (`409 transfer_resolved` after), audited with the reason.
pub async fn resolve_transfer(
    State(state): State<AppState>,
    who: CanWrite,
    Path(trade_id): Path<String>,
    AdminJson(body): AdminJson<ResolveRequest>,
) -> Result<Json<Value>, AdminApiError> {
    use crate::service::order::{
        OrderRules,
        resolve::{self, Action, TransferRef},
    };
    let action = match body.action.as_str() {
        "credit" => Action::Credit,
        "dismiss" => Action::Dismiss,
        _ => return Err(AdminApiError::invalid("action must be credit or dismiss")),
    };
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(AdminApiError::invalid("reason is required"));
    }
    if reason.chars().count() > REASON_MAX {
        return Err(AdminApiError::invalid(format!(
            "reason must be at most {REASON_MAX} characters"
        )));
    }
    let tx = body
        .tx
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let done = resolve::resolve(
        &state.db,
        &state.queue,
        &OrderRules::from_config(&state.config),
        &trade_id,
        &TransferRef {
            id: body.transfer_id,
            tx,
        },
        action,
    )
    .await?;
    let name = match action {
        Action::Credit => actions::ORDER_RESOLVE_CREDIT,
        Action::Dismiss => actions::ORDER_RESOLVE_DISMISS,
    };
    state
        .audit
        .record(
            who.admin
                .event(name, format!("order:{trade_id}"))
                .with_details(json!({
                    "reason": reason,
                    "transfer_id": done.transfer_id,
                    "tx_hash": done.tx_hash,
                    "amount": done.amount,
                    "previous_kind": done.previous_kind,
                })),
        )
        .await?;
    Ok(Json(json!({
        "trade_id": trade_id,
        "transfer_id": done.transfer_id,
        "tx_hash": done.tx_hash,
        "amount": done.amount,
        "previous_kind": done.previous_kind,
        "kind": done.kind,
        "paid_order": done.paid_order,
        "callback": if done.paid_order.is_some() { "queued" } else { "none" },
    })))
}

//! Read-only operator views: chain watchers (`/chains`) and the audit trail (`/audit`).
use axum::{
    Json,
    extract::{Query, State},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::{CanRead, CanWrite};
use crate::{
    audit::query::{self, AuditQuery},
    http::error::AdminApiError,
    state::AppState,
};

/// Per network: watcher role, head, confirmed head, cursor, lag, last good round, last error,
/// and the RPC URL in use (redacted: providers put API keys in paths and queries).
pub async fn chains(State(state): State<AppState>, _: CanRead) -> Json<Value> {
    let persisted = crate::chain::cursors(&state.db).await.unwrap_or_default();
    let mut out = serde_json::Map::new();
    for (network, s) in state.chains.snapshot() {
        let cursor = persisted.get(network).copied().or(s.cursor);
        let lag = match (s.confirmed_head, cursor) {
            (Some(c), Some(k)) => Some((c - k).max(0)),
            _ => s.lag_blocks,
        };
        out.insert(
            network.to_string(),
            json!({
                "role": s.role,
                "head": s.head,
                "confirmed_head": s.confirmed_head,
                "cursor": cursor,
                "lag_blocks": lag,
                "last_ok_unix": s.last_ok_unix,
                "error": s.error,
                "rpc_url": s.rpc_url,
            }),
        );
    }
    Json(json!({ "chains": out }))
}

#[derive(Deserialize)]
pub struct AuditParams {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    cursor: Option<String>,
    limit: Option<u64>,
}

/// The audit trail, newest first (admin and owner: it names who did what from where).
pub async fn audit(
    State(state): State<AppState>,
    _: CanWrite,
    Query(p): Query<AuditParams>,
) -> Result<Json<Value>, AdminApiError> {
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let cursor = match nonempty(p.cursor) {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            AdminApiError::invalid("cursor must be the next_cursor of a previous page")
        })?),
    };
    let (rows, next) = query::page(
        &state.db,
        &AuditQuery {
            action: nonempty(p.action),
            actor: nonempty(p.actor),
            target: nonempty(p.target),
            from: p.from,
            to: p.to,
            cursor,
            limit: p.limit.unwrap_or(50),
        },
    )
    .await?;
    let events: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "at": r.at, "actor": r.actor, "action": r.action,
                "target": r.target, "ip": r.ip,
                "details": serde_json::from_str::<Value>(&r.details).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(
        json!({ "events": events, "next_cursor": next.map(|c| c.to_string()) }),
    ))
}

/// Today (UTC) and the last 7 days: orders by status, paid volume per network and token,
/// callback success; and the scanner lag per network now.
pub async fn stats(
    State(state): State<AppState>,
    _: CanRead,
) -> Result<Json<Value>, AdminApiError> {
    let now = crate::service::now();
    let today = now - now.rem_euclid(86_400);
    let day = crate::service::stats::window(&state.db, today).await?;
    let week = crate::service::stats::window(&state.db, now - 7 * 86_400).await?;
    let persisted = crate::chain::cursors(&state.db).await.unwrap_or_default();
    let lag: serde_json::Map<String, Value> = state
        .chains
        .snapshot()
        .into_iter()
        .map(|(network, s)| {
            let cursor = persisted.get(network).copied().or(s.cursor);
            let lag = match (s.confirmed_head, cursor) {
                (Some(c), Some(k)) => Some((c - k).max(0)),
                _ => s.lag_blocks,
            };
            (network.to_string(), json!(lag))
        })
        .collect();
    // A queue that cannot be read must not take the dashboard down: `null` and the error logged.
    let queue_depth = match state.queue.pending_jobs().await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "admin /stats: job queue depth unavailable");
            None
        }
    };
    Ok(Json(json!({
        "today": day,
        "last_7_days": week,
        "scanner_lag_blocks": lag,
        "queue": { "backend": state.queue.backend_name(), "pending_jobs": queue_depth },
    })))
}

//! Operations endpoint `GET /health` (database, queue and each chain watcher's head, cursor
//! and lag; 503 when the database is down). `GET /metrics` is [`super::monitor`]'s. This
//! handler only reads; it never changes state.
use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::{state::AppState, store};

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// Each configured chain: this instance's view, with the cursor read from the database (so a
/// standby instance shows the scanning instance's progress). `true` when a watcher is stalled.
async fn chains_health(state: &AppState, db_ok: bool) -> (serde_json::Value, bool) {
    let chains = state.chains.snapshot();
    if chains.is_empty() {
        return (json!({}), false);
    }
    let persisted = if db_ok {
        tokio::time::timeout(Duration::from_secs(3), crate::chain::cursors(&state.db))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    } else {
        Default::default()
    };
    let mut stalled = false;
    let mut out = serde_json::Map::new();
    for (network, s) in chains {
        let cursor = persisted.get(network).copied().or(s.cursor);
        let lag = match (s.confirmed_head, cursor) {
            (Some(c), Some(k)) => Some((c - k).max(0)),
            _ => s.lag_blocks,
        };
        let is_stalled = crate::chain::is_stalled(&s);
        stalled |= is_stalled;
        out.insert(
            network.to_string(),
            json!({
                "status": if is_stalled { "error" } else { s.role },
                "role": s.role,
                "head": s.head,
                "confirmed_head": s.confirmed_head,
                "cursor": cursor,
                "lag_blocks": lag,
                "last_ok_unix": s.last_ok_unix,
                "error": s.error,
            }),
        );
    }
    (serde_json::Value::Object(out), stalled)
}

async fn health(State(state): State<AppState>) -> Response {
    let limit = Duration::from_secs(3);
    let db = tokio::time::timeout(limit, store::ping(&state.db)).await;
    let db_ok = matches!(db, Ok(Ok(())));
    let db_error = match &db {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_string()),
    };
    let queue = tokio::time::timeout(limit, state.queue.ping()).await;
    let queue_ok = matches!(queue, Ok(Ok(_)));
    let queue_error = match &queue {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_string()),
    };
    if let Some(e) = &db_error {
        tracing::error!(error = %e, "health: database down");
    }
    let (chains, chains_stalled) = chains_health(&state, db_ok).await;
    let status = match (db_ok, queue_ok && !chains_stalled) {
        (true, true) => "ok",
        (true, false) => "degraded",
        _ => "down",
    };
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "database": {
            "status": if db_ok { "ok" } else { "down" },
            "backend": store::backend_name(&state.db),
            "error": db_error,
        },
        "queue": {
            "status": if queue_ok { "ok" } else { "down" },
            "backend": state.queue.backend_name(),
            "error": queue_error,
        },
        "chains": chains,
    });
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

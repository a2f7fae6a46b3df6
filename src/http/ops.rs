//! Operations endpoints: `GET /health` (database and queue status; 503 when the database is
//! down). Chain lag joins here when watchers exist.
use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::{app::AppState, store};

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
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
    let status = match (db_ok, queue_ok) {
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
    });
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

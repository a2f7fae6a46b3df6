//! Operations endpoints: `GET /health` (database, queue and each chain watcher's head, cursor
//! and lag; 503 when the database is down) and `GET /metrics` (Prometheus text format).
//!
//! The Prometheus recorder is process-global (the `metrics` facade allows one): it is installed
//! once per process by [`install_metrics_recorder`] and its handle kept in a `OnceLock`, so
//! several `App`s in one process (tests) share it. These handlers only read; they never change
//! state.
use std::{sync::OnceLock, time::Duration};

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
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
}

static PROMETHEUS: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, once. If another
/// recorder was installed first, `/metrics` answers 503 saying so.
pub fn install_metrics_recorder() {
    PROMETHEUS.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        match metrics::set_global_recorder(recorder) {
            Ok(()) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "another metrics recorder is installed: /metrics is disabled");
                None
            }
        }
    });
}

async fn metrics_text() -> Response {
    install_metrics_recorder();
    match PROMETHEUS.get().and_then(Option::as_ref) {
        Some(handle) => {
            handle.run_upkeep();
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
                .into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable: another recorder was installed in this process\n",
        )
            .into_response(),
    }
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
        let age = crate::chain::age_secs(s.last_ok_unix);
        let limit = i64::try_from(crate::chain::stalled_after(&s).as_secs()).unwrap_or(i64::MAX);
        let is_stalled = s.role == "failed"
            || (s.role == "active" && s.error.is_some() && age.is_none_or(|a| a > limit));
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

//! `GET /metrics` (Prometheus text format) and the middleware that counts every HTTP request by
//! matched route, method and status.
//!
//! `/metrics` is on the public listener unless `metrics_listen` gives it its own; either way,
//! with `metrics_token` set it answers only `Authorization: Bearer <metrics_token>` (401
//! otherwise). Each scrape first samples what has no event to count: the job queue's depth and
//! the age of its oldest due job, the database pool, each chain watcher's lag and health. The
//! metric names and recording functions live in `telemetry::metrics`.
use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{state::AppState, store, telemetry::metrics};

/// Just `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics_text))
}

/// The `metrics_listen` listener's router: `/metrics` only, no rate limit, not counted.
pub fn listener_router(state: AppState) -> Router {
    router().with_state(state)
}

/// `/metrics` without the bearer token `metrics_token` requires (see `http::error`).
#[derive(Debug)]
pub struct MetricsUnauthorized;

/// `/metrics` in a process whose `metrics` recorder is not ours (see `http::error`).
#[derive(Debug)]
pub struct MetricsUnavailable;

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !crate::crypto::sign::signature_matches(token.expose(), given.trim()) {
            return MetricsUnauthorized.into_response();
        }
    }
    sample(&state).await;
    match metrics::render() {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => MetricsUnavailable.into_response(),
    }
}

/// Sets the gauges that are read, not counted. Bounded in time: a slow queue or database makes
/// the queue gauges report down, never a hanging scrape.
async fn sample(state: &AppState) {
    metrics::install();
    if let Some(p) = store::pool_stats(&state.db) {
        metrics::db_pool(p.size, p.idle, p.max);
    }
    let limit = Duration::from_secs(3);
    let queue = tokio::time::timeout(limit, async {
        let depth = state.queue.pending_jobs().await?;
        let age = state.queue.oldest_due_age_secs().await?;
        Ok::<_, crate::queue::JobError>((depth, age))
    })
    .await;
    match queue {
        Ok(Ok(s)) => metrics::queue_sample(Some(s)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "/metrics: job queue unavailable");
            metrics::queue_sample(None);
        }
        Err(_) => {
            tracing::warn!("/metrics: job queue did not answer within 3 s");
            metrics::queue_sample(None);
        }
    }
    for (network, s) in state.chains.snapshot() {
        metrics::chain_sample(
            network,
            crate::chain::age_secs(s.last_ok_unix),
            !crate::chain::is_stalled(&s),
        );
    }
}

/// Counts each request by its matched route pattern (`unmatched` when no route matched, so
/// random paths cannot grow the label set), method and final status, and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "other".to_string(),
    };
    let response = next.run(request).await;
    metrics::http_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

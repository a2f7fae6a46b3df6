//! HTTP: axum routers. Handlers are thin — parse, authenticate, call a service function, shape
//! the reply. Errors are mapped to the protocol's reply in one place ([`error`]); internal causes
//! are logged, never sent to clients.
pub mod admin;
pub mod checkout;
pub mod checkout_choose;
pub mod checkout_page;
pub mod error;
pub mod merchant;
pub mod middleware;
pub mod monitor;
pub mod ops;
pub mod render;
pub mod reply;
pub mod serve;
pub mod submit_tx;
pub mod switch;

use axum::Router;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// The public listener's router. The admin API is on it unless `admin_listen` gives it its own
/// listener ([`admin_router`]).
pub fn router(state: AppState) -> Router {
    let mut routes = Router::new()
        .merge(ops::router())
        .merge(merchant::router())
        .merge(checkout::router())
        .merge(submit_tx::router())
        .merge(switch::router());
    if state.config.metrics_listen.is_none() {
        routes = routes.merge(monitor::router());
    }
    if state.config.admin_listen.is_none() {
        routes = routes
            .merge(admin_api(&state))
            .merge(admin::panel::router());
    }
    with_layers(routes, state)
}

/// The `admin_listen` listener's router: the admin API and panel only, with the same rate limits.
pub fn admin_router(state: AppState) -> Router {
    with_layers(admin_api(&state).merge(admin::panel::router()), state)
}

/// The admin API, whose writes clear this process' create-path caches.
fn admin_api(state: &AppState) -> Router<AppState> {
    admin::router().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        admin::forget_cached_after_writes,
    ))
}

fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(axum::middleware::from_fn_with_state(
            state.rate_limit.clone(),
            middleware::ratelimit::middleware,
        ))
        .layer(axum::middleware::from_fn(monitor::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

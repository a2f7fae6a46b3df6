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
pub mod ops;
pub mod render;
pub mod reply;
pub mod serve;
pub mod submit_tx;
pub mod switch;

use axum::Router;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ops::router())
        .merge(merchant::router())
        .merge(checkout::router())
        .merge(admin::router())
        .merge(submit_tx::router())
        .merge(switch::router())
        .layer(axum::middleware::from_fn_with_state(
            state.rate_limit.clone(),
            middleware::ratelimit::middleware,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

//! The admin JSON API under `/admin/api/v1` (issue 12; wiki/ADMIN.md lists every route).
//!
//! Every route is in [`routes`] with the access it needs, and the router is built from that
//! table, so the table is the router (a test walks it: every route but login and refresh must
//! answer 401 without a token). Access is decided by the extractors in [`guard`] only. Errors
//! are `{"error": {"code", "message"}}` with honest statuses (`http::error::AdminApiError`),
//! never the merchant envelope.
pub mod admins;
pub mod auth;
pub mod guard;
pub mod orders;
pub mod panel;
pub mod rates;
pub mod resources;
pub mod status;

use axum::{
    Router,
    http::Method,
    routing::{MethodRouter, any, get, patch, post, put},
};

use crate::{domain::admin::Role, http::error::AdminApiError, state::AppState};

/// Prefix of every admin API route.
pub const PREFIX: &str = "/admin/api/v1";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: login and refresh only.
    Public,
    /// Any signed-in admin, also one that still has to set up TOTP or change its password.
    Session,
    /// A signed-in admin with at least this role; `write` routes change something.
    Role { least: Role, write: bool },
}

/// One admin route: method, path (axum syntax) and access.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

const fn read(least: Role) -> Access {
    Access::Role {
        least,
        write: false,
    }
}
const fn write(least: Role) -> Access {
    Access::Role { least, write: true }
}

fn table() -> Vec<(RouteInfo, MethodRouter<AppState>)> {
    use Access::{Public, Session};
    let r = |method: Method, path: &'static str, access: Access| RouteInfo {
        method,
        path,
        access,
    };
    vec![
        (
            r(Method::POST, "/admin/api/v1/auth/login", Public),
            post(auth::login),
        ),
        (
            r(Method::POST, "/admin/api/v1/auth/refresh", Public),
            post(auth::refresh),
        ),
        (
            r(Method::POST, "/admin/api/v1/auth/logout", Session),
            post(auth::logout),
        ),
        (r(Method::GET, "/admin/api/v1/me", Session), get(auth::me)),
        (
            r(Method::POST, "/admin/api/v1/me/password", Session),
            post(auth::change_password),
        ),
        (
            r(Method::POST, "/admin/api/v1/me/totp", Session),
            post(auth::totp_begin),
        ),
        (
            r(Method::POST, "/admin/api/v1/me/totp/confirm", Session),
            post(auth::totp_confirm),
        ),
        (
            r(Method::GET, "/admin/api/v1/wallets", read(Role::Viewer)),
            get(resources::list_wallets),
        ),
        (
            r(Method::POST, "/admin/api/v1/wallets", write(Role::Admin)),
            post(resources::add_wallet),
        ),
        (
            r(
                Method::PATCH,
                "/admin/api/v1/wallets/{id}",
                write(Role::Admin),
            ),
            patch(resources::update_wallet),
        ),
        (
            r(Method::GET, "/admin/api/v1/merchants", read(Role::Viewer)),
            get(resources::list_merchants),
        ),
        (
            r(Method::POST, "/admin/api/v1/merchants", write(Role::Admin)),
            post(resources::add_merchant),
        ),
        (
            r(
                Method::PATCH,
                "/admin/api/v1/merchants/{pid}",
                write(Role::Admin),
            ),
            patch(resources::update_merchant),
        ),
        (
            r(
                Method::POST,
                "/admin/api/v1/merchants/{pid}/rotate-secret",
                write(Role::Admin),
            ),
            post(resources::rotate_merchant_secret),
        ),
        (
            r(Method::GET, "/admin/api/v1/orders", read(Role::Viewer)),
            get(orders::list_orders),
        ),
        (
            r(
                Method::GET,
                "/admin/api/v1/orders/{trade_id}",
                read(Role::Viewer),
            ),
            get(orders::get_order),
        ),
        (
            r(
                Method::POST,
                "/admin/api/v1/orders/{trade_id}/resend",
                write(Role::Admin),
            ),
            post(orders::resend_callback),
        ),
        (
            r(
                Method::POST,
                "/admin/api/v1/orders/{trade_id}/resolve",
                write(Role::Admin),
            ),
            post(orders::resolve_transfer),
        ),
        (
            r(Method::GET, "/admin/api/v1/rates", read(Role::Viewer)),
            get(rates::list_rates),
        ),
        (
            r(
                Method::PUT,
                "/admin/api/v1/rates/{currency}",
                write(Role::Admin),
            ),
            put(rates::set_rate),
        ),
        (
            r(
                Method::PUT,
                "/admin/api/v1/prices/{coin}",
                write(Role::Admin),
            ),
            put(rates::set_price),
        ),
        (
            r(Method::GET, "/admin/api/v1/stats", read(Role::Viewer)),
            get(status::stats),
        ),
        (
            r(Method::GET, "/admin/api/v1/chains", read(Role::Viewer)),
            get(status::chains),
        ),
        (
            r(Method::GET, "/admin/api/v1/audit", read(Role::Admin)),
            get(status::audit),
        ),
        (
            r(Method::GET, "/admin/api/v1/admins", read(Role::Owner)),
            get(admins::list_admins),
        ),
        (
            r(Method::POST, "/admin/api/v1/admins", write(Role::Owner)),
            post(admins::add_admin),
        ),
        (
            r(
                Method::PATCH,
                "/admin/api/v1/admins/{username}",
                write(Role::Owner),
            ),
            patch(admins::update_admin),
        ),
        (
            r(
                Method::POST,
                "/admin/api/v1/admins/{username}/reset-totp",
                write(Role::Owner),
            ),
            post(admins::reset_admin_totp),
        ),
    ]
}

/// Every admin route with its access (what the router serves).
pub fn routes() -> Vec<RouteInfo> {
    table().into_iter().map(|(info, _)| info).collect()
}

/// Anything else under the prefix: 401 without a valid token, else a JSON 404.
async fn unknown(_: guard::Session) -> AdminApiError {
    AdminApiError::not_found("no such admin API route")
}

/// A method a known path does not serve: 401 without a valid token, else a JSON 405.
async fn wrong_method(_: guard::Session) -> AdminApiError {
    AdminApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method",
    )
}

pub fn router() -> Router<AppState> {
    let mut paths: std::collections::BTreeMap<&'static str, MethodRouter<AppState>> =
        std::collections::BTreeMap::new();
    for (info, handler) in table() {
        let merged = match paths.remove(info.path) {
            Some(prev) => prev.merge(handler),
            None => handler,
        };
        paths.insert(info.path, merged);
    }
    let mut router = Router::new();
    for (path, handler) in paths {
        router = router.route(path, handler.fallback(wrong_method));
    }
    router
        .route(PREFIX, any(unknown))
        .route("/admin/api/v1/{*rest}", any(unknown))
}

/// An admin write (merchant, wallet, rate, ...) takes effect at once in this process: the
/// short-lived caches of the create path (`service::cache`) are cleared after it.
pub async fn forget_cached_after_writes(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let response = next.run(request).await;
    if write {
        state.caches.clear();
    }
    response
}

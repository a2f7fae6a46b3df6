//! The web panel (issue 12): `GET /admin/` and `/admin/{page}` serve one server-rendered shell
//! (`templates/admin/shell.html`); `assets/admin.js` drives it over `/admin/api/v1` with
//! `fetch()`. Everything is embedded at build time. The CSP allows scripts and styles from this
//! origin only (no inline script, no inline handler, no eval) and connections to this origin only.
use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{http::render, state::AppState};

const JS: &str = include_str!("../../../assets/admin.js");
const CSS: &str = include_str!("../../../assets/admin.css");

/// The panel's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Client-side pages the shell answers for (anything else is a 404).
pub const PAGES: &[&str] = &[
    "login",
    "dashboard",
    "orders",
    "merchants",
    "wallets",
    "rates",
    "admins",
    "audit",
    "chains",
    "account",
];

fn secured(mut r: Response, cache: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn shell_page() -> Response {
    match render::render("admin/shell.html", ()) {
        Ok(html) => secured(html.into_response(), "no-store"),
        Err(e) => {
            tracing::error!(error = %e, "admin panel shell failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

async fn shell() -> Response {
    shell_page()
}

async fn page(Path(page): Path<String>) -> Response {
    if PAGES.contains(&page.as_str()) {
        shell_page()
    } else {
        secured(
            (StatusCode::NOT_FOUND, "no such admin page").into_response(),
            "no-store",
        )
    }
}

async fn js() -> Response {
    secured(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            JS,
        )
            .into_response(),
        "no-cache",
    )
}

async fn css() -> Response {
    secured(
        ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response(),
        "no-cache",
    )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(shell))
        .route("/admin/", get(shell))
        .route("/admin/assets/admin.js", get(js))
        .route("/admin/assets/admin.css", get(css))
        .route("/admin/{page}", get(page))
}

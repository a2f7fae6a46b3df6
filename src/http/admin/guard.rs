//! The one place admin API access is decided: [`Session`] (a valid access token of an enabled
//! admin, still on its session version and login) and [`Authorized`] (a session that also has
//! the route's least role, has TOTP when `admin_require_totp` says so, and has replaced a
//! generated password). Every handler takes one of them; only login and refresh take neither.
use std::marker::PhantomData;

use axum::{
    extract::{FromRequest, FromRequestParts},
    http::{header, request::Parts},
};

use crate::{
    audit::AuditEvent,
    domain::admin::Role,
    http::{error::AdminApiError, middleware::ratelimit::ClientAddr},
    service::admin::tokens,
    state::AppState,
};

/// A JSON body whose rejection is an admin API error (`400`/`415`/`422` with `{error}`).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AdminApiError))]
pub struct AdminJson<T>(pub T);

/// The client address the rate-limit middleware settled on (after proxy rules).
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ClientAddr>()
                .and_then(|c| c.0)
                .map(|ip| ip.to_string()),
        ))
    }
}

/// An authenticated admin, whatever its role and set-up state.
#[derive(Debug, Clone)]
pub struct Session {
    pub session: tokens::Session,
    pub ip: Option<String>,
}

impl Session {
    pub fn username(&self) -> &str {
        &self.session.admin.username
    }

    /// An audit event by this admin, from its address.
    pub fn event(&self, action: &'static str, target: impl Into<String>) -> AuditEvent {
        let e = AuditEvent::new(format!("admin:{}", self.username()), action, target);
        match &self.ip {
            Some(ip) => e.with_ip(ip.clone()),
            None => e,
        }
    }

    /// Whether `admin_require_totp` holds this admin to TOTP set-up only.
    pub fn totp_setup_required(&self, state: &AppState) -> bool {
        state.config.admin_require_totp && !self.session.admin.totp_enabled
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = AdminApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(AdminApiError::unauthorized)?;
        let session = tokens::authenticate(&state.db, &state.admin_tokens, token).await?;
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state)
            .await
            .unwrap_or(ClientIp(None));
        Ok(Self { session, ip })
    }
}

/// The least role a route needs.
pub trait Need: Send + Sync + 'static {
    const ROLE: Role;
}
/// Read-only routes.
pub struct ViewerUp;
/// Writes to merchants, wallets, orders and rates.
pub struct AdminUp;
/// Admin accounts and settings.
pub struct OwnerOnly;
impl Need for ViewerUp {
    const ROLE: Role = Role::Viewer;
}
impl Need for AdminUp {
    const ROLE: Role = Role::Admin;
}
impl Need for OwnerOnly {
    const ROLE: Role = Role::Owner;
}

/// A session allowed to use a route that needs `N::ROLE`.
pub struct Authorized<N: Need> {
    pub admin: Session,
    _need: PhantomData<N>,
}

pub type CanRead = Authorized<ViewerUp>;
pub type CanWrite = Authorized<AdminUp>;
pub type Owner = Authorized<OwnerOnly>;

impl<N: Need> FromRequestParts<AppState> for Authorized<N> {
    type Rejection = AdminApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let admin = Session::from_request_parts(parts, state).await?;
        if admin.totp_setup_required(state) {
            return Err(AdminApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "totp_setup_required",
                "admin_require_totp is on: set up TOTP first (POST /admin/api/v1/me/totp)",
            ));
        }
        if admin.session.admin.must_change_password {
            return Err(AdminApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "password_change_required",
                "replace the initial password first (POST /admin/api/v1/me/password)",
            ));
        }
        if !admin.session.role.allows(N::ROLE) {
            return Err(AdminApiError::forbidden(format!(
                "this needs the {} role; you are {}",
                N::ROLE,
                admin.session.role
            )));
        }
        Ok(Self {
            admin,
            _need: PhantomData,
        })
    }
}

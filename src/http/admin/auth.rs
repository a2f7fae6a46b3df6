//! `/admin/api/v1/auth/*` and `/admin/api/v1/me*`: login, refresh, logout, the current admin,
//! TOTP set-up and password change.
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::IntoResponse,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::{AdminJson, ClientIp, Session};
use crate::{
    audit::actions,
    http::error::AdminApiError,
    secret::Secret,
    service::admin::{self, auth, password, tokens, totp},
    state::AppState,
};

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

fn token_reply(t: &tokens::TokenPair, extra: Value) -> Json<Value> {
    let mut v = json!({
        "access_token": t.access_token.expose(),
        "token_type": t.token_type,
        "expires_in": t.expires_in,
        "refresh_token": t.refresh_token.expose(),
    });
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    Json(v)
}

/// Name of the cookie that carries the refresh token for the web panel.
pub const REFRESH_COOKIE: &str = "epusdt_admin_refresh";
/// The header a cookie-authenticated refresh must carry (a cross-site form cannot set it).
pub const CSRF_HEADER: &str = "x-requested-with";
/// Its value.
pub const CSRF_VALUE: &str = "epusdt-admin";
/// The cookie is sent to the auth routes only.
const COOKIE_PATH: &str = "/admin/api/v1/auth";
/// Refresh tokens live 14 days (`service::admin::tokens`); the cookie as long.
const COOKIE_MAX_AGE: u64 = 14 * 24 * 3600;

/// `Set-Cookie` for the refresh token (or, with `None`, one that clears it): HttpOnly,
/// SameSite=Strict, scoped to the auth path, `Secure` when `app_uri` is https.
fn refresh_cookie(state: &AppState, token: Option<&str>) -> [(header::HeaderName, HeaderValue); 1] {
    let secure = if state.config.app_uri.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let (value, age) = match token {
        Some(t) => (t, COOKIE_MAX_AGE),
        None => ("", 0),
    };
    let cookie = format!(
        "{REFRESH_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"
    );
    // Hex token and fixed text: always a valid header value.
    let v = HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""));
    [(header::SET_COOKIE, v)]
}

/// The refresh token from the request's cookie, if any.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == REFRESH_COOKIE && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AdminJson(req): AdminJson<LoginRequest>,
) -> Result<impl IntoResponse, AdminApiError> {
    let done = match auth::login(
        &state.db,
        &state.keys,
        &state.admin_tokens,
        &state.audit,
        auth::Login {
            username: &req.username,
            password: Secret::new(req.password),
            totp: req.totp.as_deref(),
            ip: ip.as_deref(),
        },
    )
    .await
    {
        Ok(done) => done,
        Err(e @ (admin::AdminError::BadCredentials | admin::AdminError::TotpInvalid)) => {
            // The failure that starts a lock raises the Telegram lockout notice (once a lock).
            if state.telegram.is_some() && auth::is_locked_account(&state.db, &req.username).await?
            {
                let notice = crate::domain::notice::Notice::Lockout {
                    username: req.username.clone(),
                };
                if let Err(err) = crate::service::telegram::raise(&state.queue, notice).await {
                    tracing::warn!(error = %err, "could not queue the lockout notice");
                }
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let a = &done.admin;
    Ok((
        refresh_cookie(&state, Some(done.tokens.refresh_token.expose())),
        token_reply(
            &done.tokens,
            json!({
                "must_change_password": a.must_change_password,
                "totp_setup_required": state.config.admin_require_totp && !a.totp_enabled,
            }),
        ),
    ))
}

#[derive(Deserialize)]
pub struct RefreshRequest {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// Rotates a refresh token: the body's, or else the panel's cookie — which is accepted only with
/// `X-Requested-With: epusdt-admin` (CSRF: a cross-site form or simple request cannot set it).
pub async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    AdminJson(req): AdminJson<RefreshRequest>,
) -> Result<impl IntoResponse, AdminApiError> {
    let token = match req.refresh_token {
        Some(t) => t,
        None => {
            let Some(t) = cookie_token(&headers) else {
                return Err(AdminApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    "refresh_token is missing (in the body or the panel's cookie)",
                ));
            };
            let marked = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == CSRF_VALUE);
            if !marked {
                return Err(AdminApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "a cookie refresh needs the header X-Requested-With: epusdt-admin",
                ));
            }
            t
        }
    };
    match tokens::refresh(&state.db, &state.admin_tokens, &token).await? {
        tokens::Refreshed::Ok(pair) => Ok((
            refresh_cookie(&state, Some(pair.refresh_token.expose())),
            token_reply(&pair, json!({})),
        )),
        tokens::Refreshed::Replayed { admin_id, family } => {
            tracing::warn!(
                admin_id,
                "a rotated admin refresh token was reused: its login is revoked"
            );
            let mut e = crate::audit::AuditEvent::new(
                format!("admin_id:{admin_id}"),
                actions::ADMIN_REFRESH_REPLAYED,
                format!("admin_id:{admin_id}"),
            )
            .with_details(json!({ "family": family }));
            if let Some(ip) = ip {
                e = e.with_ip(ip);
            }
            state.audit.record(e).await?;
            Err(admin::AdminError::InvalidToken.into())
        }
        tokens::Refreshed::Invalid => Err(admin::AdminError::InvalidToken.into()),
    }
}

/// Ends the login the access token belongs to: its refresh tokens are revoked and the access
/// token stops working at once.
pub async fn logout(
    State(state): State<AppState>,
    who: Session,
) -> Result<impl IntoResponse, AdminApiError> {
    tokens::revoke_family(&state.db, &who.session.claims.fam).await?;
    state
        .audit
        .record(who.event(actions::ADMIN_LOGOUT, format!("admin:{}", who.username())))
        .await?;
    Ok((StatusCode::NO_CONTENT, refresh_cookie(&state, None)))
}

pub async fn me(State(state): State<AppState>, who: Session) -> Json<Value> {
    let a = &who.session.admin;
    Json(json!({
        "id": a.id,
        "username": a.username,
        "role": who.session.role.as_str(),
        "totp_enabled": a.totp_enabled,
        "totp_setup_required": who.totp_setup_required(&state),
        "must_change_password": a.must_change_password,
        "created_at": a.created_at,
    }))
}

/// Starts TOTP set-up: a new secret, shown once; TOTP is off until confirmed.
pub async fn totp_begin(
    State(state): State<AppState>,
    who: Session,
) -> Result<Json<Value>, AdminApiError> {
    let e = totp::begin(&state.db, &state.keys, who.session.admin.id).await?;
    state
        .audit
        .record(who.event(
            actions::ADMIN_TOTP_STARTED,
            format!("admin:{}", who.username()),
        ))
        .await?;
    Ok(Json(json!({
        "secret": e.secret.expose(),
        "otpauth_url": e.otpauth_url.expose(),
        "otpauth_qr": otpauth_qr(e.otpauth_url.expose()),
    })))
}

/// The `otpauth://` URL as a QR code: an SVG `data:` URI for an `<img>` (the panel's CSP allows
/// `data:` images), or `null` if it does not fit.
fn otpauth_qr(url: &str) -> Option<String> {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    let svg = qrcode::QrCode::new(url.as_bytes())
        .ok()?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg.as_bytes())
    ))
}

#[derive(Deserialize)]
pub struct CodeRequest {
    code: String,
}

pub async fn totp_confirm(
    State(state): State<AppState>,
    who: Session,
    AdminJson(req): AdminJson<CodeRequest>,
) -> Result<Json<Value>, AdminApiError> {
    match totp::confirm(&state.db, &state.keys, who.session.admin.id, &req.code).await {
        Ok(()) => {}
        // A wrong code here is a bad field of a valid session, not a failed authentication.
        Err(admin::AdminError::TotpInvalid) => {
            return Err(AdminApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "totp_invalid",
                "the code does not match the new secret (or was already used); check the device's clock",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    state
        .audit
        .record(who.event(
            actions::ADMIN_TOTP_ENABLED,
            format!("admin:{}", who.username()),
        ))
        .await?;
    Ok(Json(json!({ "totp_enabled": true })))
}

#[derive(Deserialize)]
pub struct PasswordRequest {
    current_password: String,
    new_password: String,
}

/// Changes the caller's password. Every session ends (this one too); the reply carries a new one.
pub async fn change_password(
    State(state): State<AppState>,
    who: Session,
    AdminJson(req): AdminJson<PasswordRequest>,
) -> Result<impl IntoResponse, AdminApiError> {
    let a = &who.session.admin;
    if !password::verify(
        Secret::new(req.current_password),
        Some(a.password_hash.clone()),
    )
    .await
    {
        return Err(AdminApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "current_password is wrong",
        ));
    }
    admin::set_password(
        &state.db,
        &a.username,
        &Secret::new(req.new_password),
        false,
    )
    .await?;
    let fresh = admin::find_by_username(&state.db, &a.username)
        .await?
        .ok_or(admin::AdminError::InvalidToken)?;
    let pair = tokens::issue(&state.db, &state.admin_tokens, &fresh).await?;
    state
        .audit
        .record(who.event(
            actions::ADMIN_PASSWORD_CHANGE,
            format!("admin:{}", a.username),
        ))
        .await?;
    Ok((
        refresh_cookie(&state, Some(pair.refresh_token.expose())),
        token_reply(&pair, json!({ "must_change_password": false })),
    ))
}

//! Admin accounts (owner only): list, create, change role / disable, reset TOTP.
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::{AdminJson, Owner};
use crate::{
    audit::actions,
    http::error::AdminApiError,
    secret::Secret,
    service::admin::{self, Role},
    state::AppState,
};

pub async fn list_admins(
    State(state): State<AppState>,
    _: Owner,
) -> Result<Json<Value>, AdminApiError> {
    Ok(Json(json!({ "admins": admin::list(&state.db).await? })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAdmin {
    username: String,
    role: String,
    #[serde(default)]
    password: Option<String>,
}

fn role(s: &str) -> Result<Role, AdminApiError> {
    Role::parse(s).ok_or_else(|| admin::AdminError::Role(s.into()).into())
}

/// Creates an admin. The initial password (given, or generated and shown once) must be
/// replaced at the first login.
pub async fn add_admin(
    State(state): State<AppState>,
    who: Owner,
    AdminJson(req): AdminJson<NewAdmin>,
) -> Result<(StatusCode, Json<Value>), AdminApiError> {
    let r = role(&req.role)?;
    let generated = req.password.is_none();
    let pw = req
        .password
        .map(Secret::new)
        .unwrap_or_else(admin::generate_password);
    let a = admin::add(&state.db, &req.username, &pw, r, true).await?;
    state
        .audit
        .record(
            who.admin
                .event(actions::ADMIN_ADD, format!("admin:{}", a.username))
                .with_details(json!({ "role": a.role })),
        )
        .await?;
    let mut v = json!({ "admin": a });
    if generated {
        v["password"] = json!(pw.expose());
    }
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminPatch {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
    /// A Telegram user id to link (the bot acts with this admin's role), or `null` to unlink.
    #[serde(default, deserialize_with = "present")]
    telegram_id: Option<Option<i64>>,
    /// The admin's opt-in to the bot's notices.
    #[serde(default)]
    tg_notify: Option<bool>,
}

/// A field that is present (`Some`, its value possibly `null`) or absent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// Changes role and/or disabled; either ends the admin's sessions.
pub async fn update_admin(
    State(state): State<AppState>,
    who: Owner,
    Path(username): Path<String>,
    AdminJson(req): AdminJson<AdminPatch>,
) -> Result<Json<Value>, AdminApiError> {
    if req.role.is_none()
        && req.disabled.is_none()
        && req.telegram_id.is_none()
        && req.tg_notify.is_none()
    {
        return Err(AdminApiError::invalid(
            "nothing to change: send role, disabled, telegram_id and/or tg_notify",
        ));
    }
    let mut view = None;
    if let Some(tg) = req.telegram_id {
        if tg.is_some_and(|id| id <= 0) {
            return Err(AdminApiError::invalid(
                "telegram_id must be a Telegram user id (a positive number) or null",
            ));
        }
        let a = admin::telegram::link(&state.db, &username, tg).await?;
        let action = if tg.is_some() {
            actions::ADMIN_TELEGRAM_LINK
        } else {
            actions::ADMIN_TELEGRAM_UNLINK
        };
        state
            .audit
            .record(
                who.admin
                    .event(action, format!("admin:{username}"))
                    .with_details(json!({ "telegram_id": tg })),
            )
            .await?;
        view = Some(a);
    }
    if let Some(on) = req.tg_notify {
        view = Some(admin::telegram::set_notify(&state.db, &username, on).await?);
    }
    if let Some(r) = req.role.as_deref() {
        let a = admin::set_role(&state.db, &username, role(r)?).await?;
        state
            .audit
            .record(
                who.admin
                    .event(actions::ADMIN_ROLE, format!("admin:{username}"))
                    .with_details(json!({ "role": a.role })),
            )
            .await?;
        view = Some(a);
    }
    if let Some(d) = req.disabled {
        let a = admin::set_disabled(&state.db, &username, d).await?;
        let action = if d {
            actions::ADMIN_DISABLE
        } else {
            actions::ADMIN_ENABLE
        };
        state
            .audit
            .record(who.admin.event(action, format!("admin:{username}")))
            .await?;
        view = Some(a);
    }
    Ok(Json(json!({ "admin": view })))
}

pub async fn reset_admin_totp(
    State(state): State<AppState>,
    who: Owner,
    Path(username): Path<String>,
) -> Result<Json<Value>, AdminApiError> {
    let a = admin::reset_totp(&state.db, &username).await?;
    state
        .audit
        .record(
            who.admin
                .event(actions::ADMIN_TOTP_RESET, format!("admin:{username}")),
        )
        .await?;
    Ok(Json(json!({ "admin": a })))
}

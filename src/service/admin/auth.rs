//! Login: password, lockout and TOTP, with one answer for an unknown user and a wrong password.
//!
//! Lockout: every failed login (wrong password, wrong TOTP code; known username or not) is a
//! row in `admin_login_failures`. When a username has [`MAX_FAILURES`] failures within
//! [`WINDOW_SECS`], it is locked for [`WINDOW_SECS`] after the last of them: every login for it
//! answers `Locked` without looking at the password (so the right password does not help),
//! and attempts while locked are not counted (the lock does not extend itself). A successful
//! login or a password reset clears the rows. An attempt is recorded *before* its password is
//! checked (and removed if it was not a failure), and one that finds more than
//! [`MAX_FAILURES`] attempts in the window is refused unchecked, so parallel guessing cannot
//! outrun the count.
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::{AdminError, password, tokens};
use crate::{
    audit::{AuditEvent, AuditLog, actions},
    crypto::keys::KeyStore,
    secret::Secret,
    store::entities::{admin, admin_login_failure as failure},
};

/// Failed logins that lock a username…
pub const MAX_FAILURES: u64 = 5;
/// …when they fall within this many seconds; the lock lasts as long after the last failure.
pub const WINDOW_SECS: i64 = 15 * 60;

/// A login request.
pub struct Login<'a> {
    pub username: &'a str,
    pub password: Secret,
    pub totp: Option<&'a str>,
    pub ip: Option<&'a str>,
}

/// A successful login.
#[derive(Debug)]
pub struct LoggedIn {
    pub tokens: tokens::TokenPair,
    pub admin: admin::Model,
}

/// Seconds until `username` may try again, if it is locked at `now`.
pub async fn locked_for(
    db: &impl ConnectionTrait,
    username: &str,
    now: i64,
) -> Result<Option<u64>, DbErr> {
    let recent = failure::Entity::find()
        .filter(failure::Column::Username.eq(username))
        .filter(failure::Column::At.gt(now - 2 * WINDOW_SECS))
        .order_by_desc(failure::Column::At)
        .limit(MAX_FAILURES)
        .all(db)
        .await?;
    if (recent.len() as u64) < MAX_FAILURES {
        return Ok(None);
    }
    let (last, first) = (recent[0].at, recent[recent.len() - 1].at);
    let until = last + WINDOW_SECS;
    if last - first < WINDOW_SECS && now < until {
        Ok(Some(u64::try_from(until - now).unwrap_or(1).max(1)))
    } else {
        Ok(None)
    }
}

/// Records an attempt for the username before its password is checked, so concurrent guesses
/// count against each other; returns the row (kept as the failure, or removed when the attempt
/// turns out not to be one).
async fn reserve_attempt(
    db: &DatabaseConnection,
    login: &Login<'_>,
    now: i64,
) -> Result<i64, DbErr> {
    let row = failure::ActiveModel {
        username: Set(login.username.chars().take(64).collect()),
        at: Set(now),
        ip: Set(login.ip.unwrap_or("").chars().take(64).collect()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    // Old rows are never needed again.
    failure::Entity::delete_many()
        .filter(failure::Column::At.lt(now - 2 * WINDOW_SECS))
        .exec(db)
        .await?;
    Ok(row.id)
}

async fn release_attempt(db: &DatabaseConnection, id: i64) -> Result<(), DbErr> {
    failure::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// Attempts (finished failures and ones in flight) for `username` in the window.
async fn attempts_in_window(
    db: &DatabaseConnection,
    username: &str,
    now: i64,
) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    failure::Entity::find()
        .filter(failure::Column::Username.eq(username))
        .filter(failure::Column::At.gt(now - WINDOW_SECS))
        .count(db)
        .await
}

/// Whether `username` (an existing account) is locked now: the admin login asks after a failed
/// attempt, so the attempt that starts a lock raises the lockout notice once.
pub async fn is_locked_account(db: &DatabaseConnection, username: &str) -> Result<bool, DbErr> {
    if username.chars().count() > 64 || super::find_by_username(db, username).await?.is_none() {
        return Ok(false);
    }
    Ok(locked_for(db, username, crate::service::now())
        .await?
        .is_some())
}

/// The reserved attempt stays as a failure: audit it, and the lock it may have started.
async fn failed(
    db: &DatabaseConnection,
    audit: &AuditLog,
    login: &Login<'_>,
    reason: &'static str,
    now: i64,
) -> Result<(), AdminError> {
    event(
        audit,
        login,
        actions::ADMIN_LOGIN_FAILED,
        serde_json::json!({ "reason": reason }),
    )
    .await;
    if let Some(retry_after) = locked_for(db, login.username, now).await? {
        tracing::warn!(retry_after, "admin login locked after repeated failures");
        event(
            audit,
            login,
            actions::ADMIN_LOCKED,
            serde_json::json!({ "failures": MAX_FAILURES, "window_secs": WINDOW_SECS, "retry_after": retry_after }),
        )
        .await;
    }
    Ok(())
}

pub(super) async fn clear_failures(db: &impl ConnectionTrait, username: &str) -> Result<(), DbErr> {
    failure::Entity::delete_many()
        .filter(failure::Column::Username.eq(username))
        .exec(db)
        .await?;
    Ok(())
}

async fn event(
    audit: &AuditLog,
    login: &Login<'_>,
    action: &'static str,
    details: serde_json::Value,
) {
    let target: String = login.username.chars().take(64).collect();
    let mut e = AuditEvent::new(format!("admin:{target}"), action, format!("admin:{target}"))
        .with_details(details);
    if let Some(ip) = login.ip {
        e = e.with_ip(ip);
    }
    if let Err(err) = audit.record(e).await {
        tracing::error!(error = %err, "cannot record admin login audit event");
    }
}

/// Checks the credentials and starts a session. Errors: `Locked`, `BadCredentials` (unknown
/// user, wrong password and disabled account alike), `TotpRequired`, `TotpInvalid`.
pub async fn login(
    db: &DatabaseConnection,
    keys: &KeyStore,
    signer: &tokens::TokenKeys,
    audit: &AuditLog,
    login: Login<'_>,
) -> Result<LoggedIn, AdminError> {
    let now = crate::service::now();
    if let Some(retry_after) = locked_for(db, login.username, now).await? {
        event(
            audit,
            &login,
            actions::ADMIN_LOGIN_REFUSED_LOCKED,
            serde_json::json!({ "retry_after": retry_after }),
        )
        .await;
        return Err(AdminError::Locked { retry_after });
    }
    // Reserve the attempt first: of any number of concurrent guesses, at most MAX_FAILURES get
    // their password checked within a window.
    let attempt = reserve_attempt(db, &login, now).await?;
    if attempts_in_window(db, login.username, now).await? > MAX_FAILURES {
        release_attempt(db, attempt).await?;
        let retry_after = locked_for(db, login.username, now)
            .await?
            .unwrap_or(WINDOW_SECS as u64);
        event(
            audit,
            &login,
            actions::ADMIN_LOGIN_REFUSED_LOCKED,
            serde_json::json!({ "retry_after": retry_after }),
        )
        .await;
        return Err(AdminError::Locked { retry_after });
    }
    let row = if login.username.chars().count() <= 64 {
        super::find_by_username(db, login.username).await?
    } else {
        None
    };
    let row = row.filter(|m| !m.disabled);
    let ok = password::verify(
        login.password.clone(),
        row.as_ref().map(|m| m.password_hash.clone()),
    )
    .await;
    let Some(m) = row.filter(|_| ok) else {
        failed(db, audit, &login, "password", now).await?;
        return Err(AdminError::BadCredentials);
    };
    if m.totp_enabled {
        let Some(code) = login.totp.filter(|c| !c.trim().is_empty()) else {
            // Asking for the code is not a failure.
            release_attempt(db, attempt).await?;
            return Err(AdminError::TotpRequired);
        };
        if !super::totp::check_and_consume(db, keys, &m, code).await? {
            failed(db, audit, &login, "totp", now).await?;
            return Err(AdminError::TotpInvalid);
        }
    }
    clear_failures(db, &m.username).await?;
    let tokens = tokens::issue(db, signer, &m).await?;
    event(
        audit,
        &login,
        actions::ADMIN_LOGIN,
        serde_json::json!({ "totp": m.totp_enabled }),
    )
    .await;
    Ok(LoggedIn { tokens, admin: m })
}

//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, ±1 step of clock skew) via `totp-rs`.
//!
//! Set-up: [`begin`] stores a new secret sealed under the master key (AAD `admin:<id>:totp`)
//! with TOTP still off and returns it once (base32 + `otpauth://` URL); [`confirm`] turns TOTP
//! on when a code from it checks out. A code is accepted once: the step it matched is stored
//! and a code of that step or an earlier one is refused afterwards.
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr,
};
use totp_rs::{Builder, Secret as TotpSecret, Totp};

use super::AdminError;
use crate::{crypto::keys::KeyStore, secret::Secret, store::entities::admin};

/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "epusdt";

pub(super) fn aad(id: i64) -> String {
    format!("admin:{id}:totp")
}

fn build(secret_b32: &str, account: &str) -> Result<Totp, AdminError> {
    let secret = TotpSecret::try_from_base32(secret_b32)
        .map_err(|e| AdminError::Hash(format!("totp secret: {e}")))?;
    // An account name with ':' is refused by the otpauth format; usernames never contain one.
    Builder::new()
        .with_secret(secret)
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| AdminError::Hash(format!("totp: {e}")))
}

/// What the set-up shows once.
#[derive(Debug)]
pub struct Enrolment {
    pub secret: Secret,
    pub otpauth_url: Secret,
}

/// Starts (or restarts) the set-up: a fresh secret, TOTP still off until [`confirm`].
pub async fn begin(
    db: &DatabaseConnection,
    keys: &KeyStore,
    admin_id: i64,
) -> Result<Enrolment, AdminError> {
    let m = admin::Entity::find_by_id(admin_id)
        .one(db)
        .await?
        .ok_or(AdminError::InvalidToken)?;
    if m.totp_enabled {
        return Err(AdminError::TotpAlreadyEnabled);
    }
    let secret = TotpSecret::generate().to_base32();
    let totp = build(&secret, &m.username)?;
    let url = totp
        .to_url()
        .map_err(|e| AdminError::Hash(format!("totp url: {e}")))?;
    admin::Entity::update_many()
        .col_expr(
            admin::Column::TotpSecret,
            Expr::value(keys.encrypt(&secret, &aad(m.id))),
        )
        .col_expr(
            admin::Column::TotpLastStep,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(admin::Column::UpdatedAt, Expr::value(crate::service::now()))
        .filter(admin::Column::Id.eq(m.id))
        .filter(admin::Column::TotpEnabled.eq(false))
        .exec(db)
        .await?;
    Ok(Enrolment {
        secret: Secret::new(secret),
        otpauth_url: Secret::new(url),
    })
}

/// Checks `code` against the admin's stored secret and consumes its step. `Ok(false)` for a
/// wrong or reused code.
pub async fn check_and_consume(
    db: &DatabaseConnection,
    keys: &KeyStore,
    m: &admin::Model,
    code: &str,
) -> Result<bool, AdminError> {
    let Some(sealed) = &m.totp_secret else {
        return Ok(false);
    };
    let secret = keys.decrypt(sealed, &aad(m.id))?;
    let totp = build(secret.expose(), &m.username)?;
    let now = u64::try_from(crate::service::now()).unwrap_or(0);
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(step) = totp.check(&code, now) else {
        return Ok(false);
    };
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    // Compare-and-swap on the last step: a code (or an older one) is accepted once, also when
    // two requests race with it.
    let res = admin::Entity::update_many()
        .col_expr(admin::Column::TotpLastStep, Expr::value(step))
        .filter(admin::Column::Id.eq(m.id))
        .filter(
            Condition::any()
                .add(admin::Column::TotpLastStep.is_null())
                .add(admin::Column::TotpLastStep.lt(step)),
        )
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Turns TOTP on once a code from the pending secret checks out.
pub async fn confirm(
    db: &DatabaseConnection,
    keys: &KeyStore,
    admin_id: i64,
    code: &str,
) -> Result<(), AdminError> {
    let m = admin::Entity::find_by_id(admin_id)
        .one(db)
        .await?
        .ok_or(AdminError::InvalidToken)?;
    if m.totp_enabled {
        return Err(AdminError::TotpAlreadyEnabled);
    }
    if m.totp_secret.is_none() {
        return Err(AdminError::TotpNotStarted);
    }
    if !check_and_consume(db, keys, &m, code).await? {
        return Err(AdminError::TotpInvalid);
    }
    admin::Entity::update_many()
        .col_expr(admin::Column::TotpEnabled, Expr::value(true))
        .col_expr(admin::Column::UpdatedAt, Expr::value(crate::service::now()))
        .filter(admin::Column::Id.eq(m.id))
        .exec(db)
        .await?;
    Ok(())
}

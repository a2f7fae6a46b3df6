//! Admin accounts and their sessions (issue 12): accounts (argon2id passwords, roles, disable),
//! login with lockout and TOTP ([`auth`]), access and refresh tokens ([`tokens`]), TOTP set-up
//! ([`totp`]). The admin API and `epusdt admin …` call these functions; neither holds a rule.
//!
//! Must never: store or log a password, a refresh token or a TOTP secret in clear (hashes and
//! sealed values only; [`AdminError`] messages carry none); tell an unknown username from a
//! wrong password; let a disabled account, a changed password or a changed role keep a session.
pub mod auth;
pub mod password;
pub mod telegram;
pub mod tokens;
pub mod totp;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Set,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;

pub use crate::domain::admin::Role;
use crate::{
    crypto::envelope::EnvelopeError,
    domain::admin::{self as rules, CredentialError},
    secret::Secret,
    store::{self, entities::admin},
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Credential(#[from] CredentialError),
    #[error("`{0}` is not a role; use owner, admin or viewer")]
    Role(String),
    #[error("username `{0}` is taken")]
    UsernameTaken(String),
    #[error("Telegram user {0} is already linked to another admin")]
    TelegramTaken(i64),
    #[error("no admin named `{0}`")]
    NotFound(String),
    #[error("the last enabled owner cannot be disabled or lose the owner role")]
    LastOwner,
    #[error("wrong username or password")]
    BadCredentials,
    #[error("this account requires a TOTP code")]
    TotpRequired,
    #[error("the TOTP code is wrong or was already used")]
    TotpInvalid,
    #[error("too many failed logins: try again in {retry_after} s")]
    Locked { retry_after: u64 },
    #[error("the token is invalid, expired or revoked")]
    InvalidToken,
    #[error("two-factor authentication is already enabled; an owner can reset it")]
    TotpAlreadyEnabled,
    #[error("start the TOTP set-up first (POST /admin/api/v1/me/totp)")]
    TotpNotStarted,
    #[error("stored secret cannot be decrypted: {0}")]
    Sealed(#[from] EnvelopeError),
    #[error("token signing: {0}")]
    Jwt(String),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// An admin as the API and the CLI show it: no hash, no secret.
#[derive(Debug, Clone, Serialize)]
pub struct AdminView {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub totp_enabled: bool,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The linked Telegram user, if any (the bot acts with this admin's role).
    pub telegram_id: Option<i64>,
    /// Opted in to the bot's notices.
    pub tg_notify: bool,
}

impl From<&admin::Model> for AdminView {
    fn from(m: &admin::Model) -> Self {
        Self {
            id: m.id,
            username: m.username.clone(),
            role: m.role.clone(),
            totp_enabled: m.totp_enabled,
            disabled: m.disabled,
            must_change_password: m.must_change_password,
            created_at: m.created_at,
            updated_at: m.updated_at,
            telegram_id: m.telegram_id,
            tg_notify: m.tg_notify,
        }
    }
}

/// The role stored on a row; an unknown value (hand-edited database) is the least role.
pub fn role_of(m: &admin::Model) -> Role {
    Role::parse(&m.role).unwrap_or(Role::Viewer)
}

/// A random password for `admin add` without `--password-stdin`: 20 characters from an
/// alphabet without look-alikes (~115 bits).
pub fn generate_password() -> Secret {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    Secret::new(
        (0..20)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect::<String>(),
    )
}

pub async fn find_by_username(
    db: &impl ConnectionTrait,
    username: &str,
) -> Result<Option<admin::Model>, DbErr> {
    admin::Entity::find()
        .filter(admin::Column::Username.eq(username))
        .one(db)
        .await
}

async fn must_find(db: &impl ConnectionTrait, username: &str) -> Result<admin::Model, AdminError> {
    find_by_username(db, username)
        .await?
        .ok_or_else(|| AdminError::NotFound(username.into()))
}

/// Creates an account. `must_change_password` marks a generated password the admin should replace.
pub async fn add(
    db: &DatabaseConnection,
    username: &str,
    password: &Secret,
    role: Role,
    must_change_password: bool,
) -> Result<AdminView, AdminError> {
    rules::check_username(username)?;
    rules::check_password(username, password.expose())?;
    let hash = password::hash(password.clone()).await?;
    let now = super::now();
    let row = admin::ActiveModel {
        username: Set(username.into()),
        password_hash: Set(hash),
        must_change_password: Set(must_change_password),
        failed_logins: Set(0),
        locked_until: Set(None),
        created_at: Set(now),
        role: Set(role.as_str().into()),
        totp_secret: Set(None),
        totp_enabled: Set(false),
        totp_last_step: Set(None),
        disabled: Set(false),
        session_version: Set(0),
        updated_at: Set(now),
        tg_notify: Set(false),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(m) => Ok(AdminView::from(&m)),
        Err(e) if store::is_unique_violation(&e, "admins_username_key", "admins.username") => {
            Err(AdminError::UsernameTaken(username.into()))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<AdminView>, DbErr> {
    Ok(admin::Entity::find()
        .order_by_asc(admin::Column::Id)
        .all(db)
        .await?
        .iter()
        .map(AdminView::from)
        .collect())
}

/// Ends every session of an admin: bumps the session version (access tokens) and revokes every
/// refresh token.
async fn end_sessions(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    admin::Entity::update_many()
        .col_expr(
            admin::Column::SessionVersion,
            Expr::col(admin::Column::SessionVersion).add(1),
        )
        .col_expr(admin::Column::UpdatedAt, Expr::value(super::now()))
        .filter(admin::Column::Id.eq(id))
        .exec(db)
        .await?;
    tokens::revoke_all(db, id).await
}

/// Refuses a change that would leave no enabled owner.
async fn keep_an_owner(db: &impl ConnectionTrait, m: &admin::Model) -> Result<(), AdminError> {
    if role_of(m) != Role::Owner || m.disabled {
        return Ok(());
    }
    let owners = admin::Entity::find()
        .filter(admin::Column::Role.eq(Role::Owner.as_str()))
        .filter(admin::Column::Disabled.eq(false))
        .count(db)
        .await?;
    if owners <= 1 {
        return Err(AdminError::LastOwner);
    }
    Ok(())
}

/// Disables (or re-enables) an account; disabling ends its sessions. The last enabled owner
/// cannot be disabled.
pub async fn set_disabled(
    db: &DatabaseConnection,
    username: &str,
    disabled: bool,
) -> Result<AdminView, AdminError> {
    let m = must_find(db, username).await?;
    if disabled {
        keep_an_owner(db, &m).await?;
    }
    let mut am: admin::ActiveModel = m.clone().into();
    am.disabled = Set(disabled);
    am.updated_at = Set(super::now());
    let m = am.update(db).await?;
    if disabled {
        end_sessions(db, m.id).await?;
    }
    Ok(AdminView::from(&m))
}

/// Changes an account's role and ends its sessions. The last enabled owner keeps the role.
pub async fn set_role(
    db: &DatabaseConnection,
    username: &str,
    role: Role,
) -> Result<AdminView, AdminError> {
    let m = must_find(db, username).await?;
    if role_of(&m) == role {
        return Ok(AdminView::from(&m));
    }
    keep_an_owner(db, &m).await?;
    let mut am: admin::ActiveModel = m.into();
    am.role = Set(role.as_str().into());
    am.updated_at = Set(super::now());
    let m = am.update(db).await?;
    end_sessions(db, m.id).await?;
    Ok(AdminView::from(&m))
}

/// Sets a new password (checked against the policy), ends every session and clears the lockout.
pub async fn set_password(
    db: &DatabaseConnection,
    username: &str,
    password: &Secret,
    must_change_password: bool,
) -> Result<AdminView, AdminError> {
    let m = must_find(db, username).await?;
    rules::check_password(&m.username, password.expose())?;
    let hash = password::hash(password.clone()).await?;
    let mut am: admin::ActiveModel = m.into();
    am.password_hash = Set(hash);
    am.must_change_password = Set(must_change_password);
    am.updated_at = Set(super::now());
    let m = am.update(db).await?;
    end_sessions(db, m.id).await?;
    auth::clear_failures(db, &m.username).await?;
    Ok(AdminView::from(&m))
}

/// Removes an account's TOTP (lost phone): the next login needs only the password. Ends its
/// sessions.
pub async fn reset_totp(db: &DatabaseConnection, username: &str) -> Result<AdminView, AdminError> {
    let m = must_find(db, username).await?;
    let mut am: admin::ActiveModel = m.into();
    am.totp_secret = Set(None);
    am.totp_enabled = Set(false);
    am.totp_last_step = Set(None);
    am.updated_at = Set(super::now());
    let m = am.update(db).await?;
    end_sessions(db, m.id).await?;
    Ok(AdminView::from(&m))
}

/// Re-seals every sealed admin value (TOTP secrets, the JWT signing key) that is plaintext or
/// sealed by an older master key, like `merchant::reseal_all`. Returns how many were re-sealed.
pub async fn reseal_all(
    db: &impl ConnectionTrait,
    keys: &crate::crypto::keys::KeyStore,
) -> Result<usize, AdminError> {
    let mut n = 0;
    for m in admin::Entity::find()
        .filter(admin::Column::TotpSecret.is_not_null())
        .all(db)
        .await?
    {
        let Some(old) = m.totp_secret.clone() else {
            continue;
        };
        if let Some(new) = keys.reseal(&old, &totp::aad(m.id))? {
            let res = admin::Entity::update_many()
                .col_expr(admin::Column::TotpSecret, Expr::value(new))
                .filter(admin::Column::Id.eq(m.id))
                .filter(admin::Column::TotpSecret.eq(old))
                .exec(db)
                .await?;
            n += res.rows_affected as usize;
        }
    }
    n += tokens::reseal_signing_key(db, keys).await?;
    Ok(n)
}

//! Access tokens (JWT, HS256, 15 minutes) and refresh tokens (opaque, rotated on use).
//!
//! The HS256 key is 32 random bytes generated once and kept in the `settings` row
//! [`SIGNING_KEY_SETTING`], sealed under the master key (AAD `setting:admin_jwt_key`), so every
//! instance signs with the same key and a stolen database alone cannot mint tokens.
//!
//! A refresh token is 32 random bytes (hex); only its SHA-256 is stored. Each login starts a
//! family; a refresh revokes the token used, names its successor and issues the successor in the
//! same family. Presenting a token that was already rotated means it was copied: the whole
//! family is revoked. Access tokens carry their family (`fam`), and the admin API accepts one
//! only while its family still has a live refresh token, so logout and a replay end the
//! session at once, not 15 minutes later.
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, Set, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AdminError, Role, role_of};
use crate::{
    crypto::keys::KeyStore,
    secret::Secret,
    store::entities::{admin, admin_refresh_token as refresh, setting},
};

/// The `settings` key of the sealed JWT signing key.
pub const SIGNING_KEY_SETTING: &str = "admin_jwt_key";
const SIGNING_KEY_AAD: &str = "setting:admin_jwt_key";
/// Lifetime of an access token.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
/// Lifetime of a refresh token (each rotation starts a new one).
pub const REFRESH_TTL_SECS: i64 = 14 * 24 * 3600;

/// The HS256 key, loaded once at start-up. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys([redacted])")
    }
}

impl TokenKeys {
    fn from_secret(bytes: &[u8]) -> Result<Self, AdminError> {
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes)
                .map_err(|e| AdminError::Jwt(e.to_string()))?,
            decoding: DecodingKey::from_secret(bytes)
                .map_err(|e| AdminError::Jwt(e.to_string()))?,
        })
    }
}

/// Loads the signing key, generating and storing it (sealed) on first use. Two instances
/// starting together agree: the insert of the second fails and it reads the first one's key.
pub async fn load_or_create_keys(
    db: &DatabaseConnection,
    keys: &KeyStore,
) -> Result<TokenKeys, AdminError> {
    if let Some(row) = setting::Entity::find_by_id(SIGNING_KEY_SETTING.to_string())
        .one(db)
        .await?
    {
        let key = keys.decrypt(&row.value, SIGNING_KEY_AAD)?;
        let bytes = hex::decode(key.expose()).map_err(|e| AdminError::Jwt(e.to_string()))?;
        return TokenKeys::from_secret(&bytes);
    }
    let fresh = hex::encode(rand::random::<[u8; 32]>());
    let row = setting::ActiveModel {
        key: Set(SIGNING_KEY_SETTING.into()),
        value: Set(keys.encrypt(&fresh, SIGNING_KEY_AAD)),
        updated_at: Set(crate::service::now()),
    };
    if setting::Entity::insert(row).exec(db).await.is_err() {
        // Another instance stored one first: use it.
        let row = setting::Entity::find_by_id(SIGNING_KEY_SETTING.to_string())
            .one(db)
            .await?
            .ok_or_else(|| AdminError::Jwt("signing key row vanished".into()))?;
        let key = keys.decrypt(&row.value, SIGNING_KEY_AAD)?;
        let bytes = hex::decode(key.expose()).map_err(|e| AdminError::Jwt(e.to_string()))?;
        return TokenKeys::from_secret(&bytes);
    }
    let bytes = hex::decode(&fresh).map_err(|e| AdminError::Jwt(e.to_string()))?;
    TokenKeys::from_secret(&bytes)
}

pub(super) async fn reseal_signing_key(
    db: &impl ConnectionTrait,
    keys: &KeyStore,
) -> Result<usize, AdminError> {
    let Some(row) = setting::Entity::find_by_id(SIGNING_KEY_SETTING.to_string())
        .one(db)
        .await?
    else {
        return Ok(0);
    };
    let Some(new) = keys.reseal(&row.value, SIGNING_KEY_AAD)? else {
        return Ok(0);
    };
    let res = setting::Entity::update_many()
        .col_expr(setting::Column::Value, Expr::value(new))
        .filter(setting::Column::Key.eq(SIGNING_KEY_SETTING))
        .filter(setting::Column::Value.eq(row.value))
        .exec(db)
        .await?;
    Ok(res.rows_affected as usize)
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The admin's id.
    pub sub: String,
    pub name: String,
    pub role: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// The admin's session version when issued.
    pub ver: i32,
    /// The refresh-token family (the login) this token belongs to.
    pub fam: String,
}

/// What login and refresh hand out (the tokens redact themselves; the reply exposes them).
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: Secret,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: Secret,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn access_token(keys: &TokenKeys, m: &admin::Model, family: &str) -> Result<Secret, AdminError> {
    let now = crate::service::now();
    let claims = Claims {
        sub: m.id.to_string(),
        name: m.username.clone(),
        role: role_of(m).as_str().into(),
        jti: random_hex(16),
        iat: now,
        exp: now + ACCESS_TTL_SECS,
        ver: m.session_version,
        fam: family.into(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding)
        .map(Secret::new)
        .map_err(|e| AdminError::Jwt(e.to_string()))
}

/// Inserts a refresh token of `family` and returns it (the only time it exists in clear).
async fn new_refresh(
    db: &impl ConnectionTrait,
    admin_id: i64,
    family: &str,
) -> Result<(refresh::Model, Secret), DbErr> {
    let token = random_hex(32);
    let now = crate::service::now();
    let row = refresh::ActiveModel {
        token_hash: Set(digest(&token)),
        family_id: Set(family.into()),
        admin_id: Set(admin_id),
        created_at: Set(now),
        expires_at: Set(now + REFRESH_TTL_SECS),
        revoked: Set(false),
        replaced_by: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok((row, Secret::new(token)))
}

/// Starts a session (a new family) for an admin who just proved who they are.
pub async fn issue(
    db: &DatabaseConnection,
    keys: &TokenKeys,
    m: &admin::Model,
) -> Result<TokenPair, AdminError> {
    let family = random_hex(16);
    let (_, refresh_token) = new_refresh(db, m.id, &family).await?;
    Ok(TokenPair {
        access_token: access_token(keys, m, &family)?,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        refresh_token,
    })
}

/// The outcome of a refresh.
#[derive(Debug)]
pub enum Refreshed {
    Ok(TokenPair),
    /// A rotated token came back: its family is now revoked. Carries the admin for the audit.
    Replayed {
        admin_id: i64,
        family: String,
    },
    Invalid,
}

/// Rotates a refresh token: the presented one is revoked and names its successor.
pub async fn refresh(
    db: &DatabaseConnection,
    keys: &TokenKeys,
    presented: &str,
) -> Result<Refreshed, AdminError> {
    let Some(row) = refresh::Entity::find()
        .filter(refresh::Column::TokenHash.eq(digest(presented.trim())))
        .one(db)
        .await?
    else {
        return Ok(Refreshed::Invalid);
    };
    if row.revoked {
        if row.replaced_by.is_some() {
            revoke_family(db, &row.family_id).await?;
            return Ok(Refreshed::Replayed {
                admin_id: row.admin_id,
                family: row.family_id,
            });
        }
        return Ok(Refreshed::Invalid);
    }
    if row.expires_at <= crate::service::now() {
        return Ok(Refreshed::Invalid);
    }
    let admin = admin::Entity::find_by_id(row.admin_id).one(db).await?;
    let Some(admin) = admin.filter(|a| !a.disabled) else {
        revoke_family(db, &row.family_id).await?;
        return Ok(Refreshed::Invalid);
    };
    // Successor first, then the compare-and-swap on the old token: the family never lacks a
    // live token, and of two concurrent uses only one wins; the loser is a replay.
    let (next, refresh_token) = new_refresh(db, admin.id, &row.family_id).await?;
    let swapped = refresh::Entity::update_many()
        .col_expr(refresh::Column::Revoked, Expr::value(true))
        .col_expr(refresh::Column::ReplacedBy, Expr::value(next.id))
        .filter(refresh::Column::Id.eq(row.id))
        .filter(refresh::Column::Revoked.eq(false))
        .exec(db)
        .await?;
    if swapped.rows_affected == 0 {
        revoke_family(db, &row.family_id).await?;
        return Ok(Refreshed::Replayed {
            admin_id: row.admin_id,
            family: row.family_id,
        });
    }
    let pair = TokenPair {
        access_token: access_token(keys, &admin, &row.family_id)?,
        token_type: "Bearer",
        expires_in: ACCESS_TTL_SECS,
        refresh_token,
    };
    Ok(Refreshed::Ok(pair))
}

pub async fn revoke_family(db: &impl ConnectionTrait, family: &str) -> Result<(), DbErr> {
    refresh::Entity::update_many()
        .col_expr(refresh::Column::Revoked, Expr::value(true))
        .filter(refresh::Column::FamilyId.eq(family))
        .filter(refresh::Column::Revoked.eq(false))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn revoke_all(db: &impl ConnectionTrait, admin_id: i64) -> Result<(), DbErr> {
    refresh::Entity::update_many()
        .col_expr(refresh::Column::Revoked, Expr::value(true))
        .filter(refresh::Column::AdminId.eq(admin_id))
        .filter(refresh::Column::Revoked.eq(false))
        .exec(db)
        .await?;
    Ok(())
}

/// An authenticated admin: the current row behind a valid access token.
#[derive(Debug, Clone)]
pub struct Session {
    pub admin: admin::Model,
    pub role: Role,
    pub claims: Claims,
}

/// Checks an access token: signature, expiry, the admin still enabled, the session version
/// unchanged and the login (family) not logged out or revoked.
pub async fn authenticate(
    db: &DatabaseConnection,
    keys: &TokenKeys,
    token: &str,
) -> Result<Session, AdminError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "iat", "sub"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &validation)
        .map_err(|_| AdminError::InvalidToken)?
        .claims;
    let id: i64 = claims.sub.parse().map_err(|_| AdminError::InvalidToken)?;
    let admin = admin::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|a| !a.disabled && a.session_version == claims.ver)
        .ok_or(AdminError::InvalidToken)?;
    let live = refresh::Entity::find()
        .filter(refresh::Column::FamilyId.eq(claims.fam.as_str()))
        .filter(refresh::Column::AdminId.eq(id))
        .filter(refresh::Column::Revoked.eq(false))
        .filter(refresh::Column::ExpiresAt.gt(crate::service::now()))
        .count(db)
        .await?;
    if live == 0 {
        return Err(AdminError::InvalidToken);
    }
    let role = role_of(&admin);
    Ok(Session {
        admin,
        role,
        claims,
    })
}

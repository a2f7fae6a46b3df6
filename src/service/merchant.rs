//! Merchants: the legacy default merchant (from `api_auth_token`, pid 1000) and any number of
//! `pid` + secret merchants for GMPay and EPay. Secrets never reach a log: [`Merchant`]'s `Debug`
//! redacts them.
use std::fmt;

use rand::{Rng, distr::Alphanumeric};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};

use crate::{
    config::Secret,
    store::{self, entities::merchant},
};

/// The pid of the legacy v1 merchant whose secret is `api_auth_token`.
pub const DEFAULT_PID: i64 = 1000;

#[derive(Clone)]
pub struct Merchant {
    pub id: i64,
    pub pid: i64,
    pub name: String,
    pub secret: Secret,
    pub strict_replay: bool,
    pub enabled: bool,
}

impl fmt::Debug for Merchant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merchant")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("name", &self.name)
            .field("secret", &self.secret)
            .finish()
    }
}

impl From<merchant::Model> for Merchant {
    fn from(m: merchant::Model) -> Self {
        Self {
            id: m.id,
            pid: m.pid,
            name: m.name,
            secret: Secret::new(m.secret),
            strict_replay: m.strict_replay,
            enabled: m.enabled,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MerchantError {
    #[error("merchant pid {0} already exists")]
    PidTaken(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Creates, updates or disables the pid-1000 merchant so it mirrors `api_auth_token`.
pub async fn sync_default_merchant(
    db: &DatabaseConnection,
    token: Option<&Secret>,
) -> Result<(), MerchantError> {
    let now = super::now();
    let existing = merchant::Entity::find()
        .filter(merchant::Column::Pid.eq(DEFAULT_PID))
        .one(db)
        .await?;
    match (existing, token) {
        (None, Some(t)) => {
            let row = merchant::ActiveModel {
                pid: Set(DEFAULT_PID),
                name: Set("default (api_auth_token)".into()),
                secret: Set(t.expose().to_string()),
                strict_replay: Set(false),
                enabled: Set(true),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            };
            match row.insert(db).await {
                Ok(_) => {}
                // Another instance inserted it at the same moment: fine.
                Err(e) if store::is_unique_violation(&e, "merchants_pid_key", "merchants.pid") => {}
                Err(e) => return Err(e.into()),
            }
        }
        (Some(m), Some(t)) if m.secret != t.expose() || !m.enabled => {
            let mut am: merchant::ActiveModel = m.into();
            am.secret = Set(t.expose().to_string());
            am.enabled = Set(true);
            am.updated_at = Set(now);
            am.update(db).await?;
        }
        (Some(m), None) if m.enabled => {
            tracing::warn!(
                "api_auth_token is not set: the legacy v1 merchant (pid 1000) is disabled"
            );
            let mut am: merchant::ActiveModel = m.into();
            am.enabled = Set(false);
            am.updated_at = Set(now);
            am.update(db).await?;
        }
        _ => {}
    }
    Ok(())
}

pub async fn find_by_pid(db: &DatabaseConnection, pid: i64) -> Result<Option<Merchant>, DbErr> {
    Ok(merchant::Entity::find()
        .filter(merchant::Column::Pid.eq(pid))
        .one(db)
        .await?
        .map(Merchant::from))
}

pub async fn find_by_id(db: &DatabaseConnection, id: i64) -> Result<Option<Merchant>, DbErr> {
    Ok(merchant::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(Merchant::from))
}

/// A random 32-character alphanumeric secret.
pub fn generate_secret() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Adds a merchant. `pid` defaults to the next free number ≥ 1001; the secret to a random one.
pub async fn add(
    db: &DatabaseConnection,
    name: &str,
    pid: Option<i64>,
    secret: Option<String>,
    strict_replay: bool,
) -> Result<Merchant, MerchantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(MerchantError::Invalid(
            "name must be 1 to 64 characters".into(),
        ));
    }
    let secret = secret.unwrap_or_else(generate_secret);
    if secret.len() < 16 {
        return Err(MerchantError::Invalid(
            "secret must be at least 16 characters; omit it to generate one".into(),
        ));
    }
    let pid = match pid {
        Some(p) if p <= 0 => {
            return Err(MerchantError::Invalid(
                "pid must be a positive number".into(),
            ));
        }
        Some(p) => p,
        None => {
            let max = merchant::Entity::find()
                .order_by_desc(merchant::Column::Pid)
                .one(db)
                .await?
                .map(|m| m.pid)
                .unwrap_or(DEFAULT_PID);
            max.max(DEFAULT_PID) + 1
        }
    };
    let now = super::now();
    let row = merchant::ActiveModel {
        pid: Set(pid),
        name: Set(name.to_string()),
        secret: Set(secret),
        strict_replay: Set(strict_replay),
        enabled: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(m) => Ok(m.into()),
        Err(e) if store::is_unique_violation(&e, "merchants_pid_key", "merchants.pid") => {
            Err(MerchantError::PidTaken(pid))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<Merchant>, DbErr> {
    Ok(merchant::Entity::find()
        .order_by_asc(merchant::Column::Pid)
        .all(db)
        .await?
        .into_iter()
        .map(Merchant::from)
        .collect())
}

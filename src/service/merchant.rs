//! Merchants: the legacy default merchant (from `api_auth_token`, pid 1000) and any number of
//! `pid` + secret merchants for GMPay and EPay. Secrets are stored AES-256-GCM encrypted under the
//! master key (AAD `merchant:<pid>:secret`, so a ciphertext copied to another row fails) and never
//! reach a log: [`Merchant`]'s `Debug` redacts them.
use std::fmt;

use rand::{Rng, distr::Alphanumeric};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};

use crate::{
    crypto::{envelope::EnvelopeError, keys::KeyStore, sign::SignMode},
    secret::Secret,
    store::{
        self,
        entities::{merchant, setting},
    },
};

/// Settings key holding the fingerprint of the master key that seals the secrets.
pub const FINGERPRINT_KEY: &str = "master_key_fingerprint";

pub(super) fn aad(pid: i64) -> String {
    format!("merchant:{pid}:secret")
}

/// The pid of the legacy v1 merchant whose secret is `api_auth_token`.
pub const DEFAULT_PID: i64 = 1000;
/// The name of the merchant that mirrors `api_auth_token` (pid 1000) when this gateway made it.
pub const DEFAULT_NAME: &str = "default (api_auth_token)";

#[derive(Clone)]
pub struct Merchant {
    pub id: i64,
    pub pid: i64,
    pub name: String,
    pub secret: Secret,
    pub strict_replay: bool,
    /// How this merchant's GMPay requests are verified.
    pub sign_mode: SignMode,
    pub enabled: bool,
    /// Where its signed requests may come from; empty = anywhere (`merchant_access`).
    pub ip_allowlist: Vec<crate::config::ratelimit::Cidr>,
    /// The secret before the last rotation, while `secret_overlap_secs` still accepts it.
    pub previous_secret: Option<Secret>,
    /// Its own signed-requests-per-minute limit; None = `rate_limit_merchant_per_minute`.
    pub rate_limit_per_minute: Option<u32>,
}

impl fmt::Debug for Merchant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merchant")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("name", &self.name)
            .field("secret", &self.secret)
            .field("sign_mode", &self.sign_mode)
            .field("ip_allowlist", &self.ip_allowlist)
            .field("previous_secret", &self.previous_secret)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .finish()
    }
}

impl Merchant {
    /// Opens a row: decrypts its secret with the keyring.
    pub fn open(m: merchant::Model, keys: &KeyStore) -> Result<Self, MerchantError> {
        let secret = keys
            .decrypt(&m.secret, &aad(m.pid))
            .map_err(|source| MerchantError::Secret { pid: m.pid, source })?;
        // An unknown mode (a hand-edited row) fails closed rather than guessing.
        let sign_mode = SignMode::parse(&m.sign_mode).ok_or_else(|| {
            MerchantError::Invalid(format!(
                "merchant {} has an unknown sign_mode `{}` (use one of {})",
                m.pid,
                m.sign_mode,
                SignMode::NAMES
            ))
        })?;
        let ip_allowlist = super::merchant_access::parse_allowlist(&m.ip_allowlist)
            .map_err(|e| MerchantError::Invalid(format!("merchant {}: {e}", m.pid)))?;
        let previous_secret = super::merchant_access::open_previous(&m, keys);
        // A negative value (a hand-edited row) fails closed like an unknown sign mode.
        let rate_limit_per_minute = m
            .rate_limit_per_minute
            .map(|n| {
                u32::try_from(n).map_err(|_| {
                    MerchantError::Invalid(format!(
                        "merchant {} has a negative rate_limit_per_minute ({n})",
                        m.pid
                    ))
                })
            })
            .transpose()?;
        Ok(Self {
            id: m.id,
            pid: m.pid,
            name: m.name,
            secret,
            strict_replay: m.strict_replay,
            sign_mode,
            enabled: m.enabled,
            ip_allowlist,
            previous_secret,
            rate_limit_per_minute,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MerchantError {
    #[error("merchant pid {0} already exists")]
    PidTaken(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("secret of merchant {pid} cannot be decrypted: {source}")]
    Secret { pid: i64, source: EnvelopeError },
    #[error(
        "the master key (fingerprint {configured}) is not the one that encrypted this database's secrets (fingerprint {stored}); configure the original key via master_key / master_key_file, or rotate with both keys available"
    )]
    WrongMasterKey { configured: String, stored: String },
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Creates, updates or disables the pid-1000 merchant so it mirrors `api_auth_token`.
pub async fn sync_default_merchant(
    db: &DatabaseConnection,
    keys: &KeyStore,
    token: Option<&Secret>,
) -> Result<(), MerchantError> {
    let now = super::now();
    let existing = row_by_pid(db, DEFAULT_PID).await?;
    match (existing, token) {
        (None, Some(t)) => {
            let row = merchant::ActiveModel {
                pid: Set(DEFAULT_PID),
                name: Set(DEFAULT_NAME.into()),
                secret: Set(keys.encrypt(t.expose(), &aad(DEFAULT_PID))),
                strict_replay: Set(false),
                sign_mode: Set("dual".into()),
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
        (Some(m), Some(t))
            if !m.enabled
                || keys
                    .decrypt(&m.secret, &aad(m.pid))
                    .map_or(true, |s| s.expose() != t.expose()) =>
        {
            let mut am: merchant::ActiveModel = m.into();
            am.secret = Set(keys.encrypt(t.expose(), &aad(DEFAULT_PID)));
            am.enabled = Set(true);
            am.updated_at = Set(now);
            am.update(db).await?;
        }
        // A pid 1000 brought in by `import upstream` (GMWalletApp seeds its default API key as
        // pid 1000) is the operator's own merchant: without api_auth_token it stays as imported.
        (Some(m), None) if m.enabled && m.name == DEFAULT_NAME => {
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

/// The `merchants` row with this pid, if any.
pub(super) async fn row_by_pid(
    db: &DatabaseConnection,
    pid: i64,
) -> Result<Option<merchant::Model>, DbErr> {
    merchant::Entity::find()
        .filter(merchant::Column::Pid.eq(pid))
        .one(db)
        .await
}

pub async fn find_by_pid(
    db: &DatabaseConnection,
    keys: &KeyStore,
    pid: i64,
) -> Result<Option<Merchant>, MerchantError> {
    row_by_pid(db, pid)
        .await?
        .map(|m| Merchant::open(m, keys))
        .transpose()
}

/// [`find_by_pid`] through the process' cache (`service::cache`): the bool is true when the
/// merchant came from the cache (the caller re-reads it before refusing a signature).
pub async fn find_by_pid_cached(
    db: &DatabaseConnection,
    keys: &KeyStore,
    cache: &super::cache::TtlMap<i64, Merchant>,
    pid: i64,
) -> Result<Option<(Merchant, bool)>, MerchantError> {
    if let Some(m) = cache.get(&pid) {
        return Ok(Some((m, true)));
    }
    let found = find_by_pid(db, keys, pid).await?;
    if let Some(m) = &found {
        cache.put(pid, m.clone());
    }
    Ok(found.map(|m| (m, false)))
}

pub async fn find_by_id(
    db: &DatabaseConnection,
    keys: &KeyStore,
    id: i64,
) -> Result<Option<Merchant>, MerchantError> {
    merchant::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(|m| Merchant::open(m, keys))
        .transpose()
}

/// A random 32-character alphanumeric secret.
pub fn generate_secret() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// Adds a merchant with the default sign mode (`dual`); see [`add_with_mode`].
pub async fn add(
    db: &DatabaseConnection,
    keys: &KeyStore,
    name: &str,
    pid: Option<i64>,
    secret: Option<String>,
    strict_replay: bool,
) -> Result<Merchant, MerchantError> {
    add_with_mode(db, keys, name, pid, secret, strict_replay, SignMode::Dual).await
}

/// Adds a merchant. `pid` defaults to the next free number ≥ 1001; the secret to a random one.
pub async fn add_with_mode(
    db: &DatabaseConnection,
    keys: &KeyStore,
    name: &str,
    pid: Option<i64>,
    secret: Option<String>,
    strict_replay: bool,
    sign_mode: SignMode,
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
    let row = NewRow {
        pid,
        name,
        secret: &secret,
        strict_replay,
        sign_mode,
        enabled: true,
    };
    insert(db, keys, row).await
}

/// A merchant row to insert (the secret is sealed on the way in).
struct NewRow<'a> {
    pid: i64,
    name: &'a str,
    secret: &'a str,
    strict_replay: bool,
    sign_mode: SignMode,
    enabled: bool,
}

async fn insert(
    db: &DatabaseConnection,
    keys: &KeyStore,
    r: NewRow<'_>,
) -> Result<Merchant, MerchantError> {
    let now = super::now();
    let row = merchant::ActiveModel {
        pid: Set(r.pid),
        name: Set(r.name.to_string()),
        secret: Set(keys.encrypt(r.secret, &aad(r.pid))),
        strict_replay: Set(r.strict_replay),
        sign_mode: Set(r.sign_mode.as_str().into()),
        enabled: Set(r.enabled),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(m) => Merchant::open(m, keys),
        Err(e) if store::is_unique_violation(&e, "merchants_pid_key", "merchants.pid") => {
            Err(MerchantError::PidTaken(r.pid))
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds a merchant brought over from an upstream database (`epusdt import upstream`) with the
/// pid and secret its shop already signs with: the secret is kept as it is (upstream set no
/// minimum length) and sealed like any other. `PidTaken` when the pid exists.
pub async fn add_imported(
    db: &DatabaseConnection,
    keys: &KeyStore,
    pid: i64,
    name: &str,
    secret: &str,
    enabled: bool,
) -> Result<Merchant, MerchantError> {
    if pid <= 0 || secret.is_empty() {
        return Err(MerchantError::Invalid(
            "an imported merchant needs a positive pid and a secret".into(),
        ));
    }
    let name: String = match name.trim() {
        "" => format!("imported {pid}"),
        n => n.chars().take(64).collect(),
    };
    let row = NewRow {
        pid,
        name: &name,
        secret,
        strict_replay: false,
        sign_mode: SignMode::Dual,
        enabled,
    };
    insert(db, keys, row).await
}

/// Changes how a merchant's GMPay requests are verified. Returns the previous mode; `None`
/// when no merchant has this pid.
pub async fn set_sign_mode(
    db: &DatabaseConnection,
    pid: i64,
    mode: SignMode,
) -> Result<Option<String>, MerchantError> {
    let Some(m) = row_by_pid(db, pid).await? else {
        return Ok(None);
    };
    let previous = m.sign_mode.clone();
    let mut am: merchant::ActiveModel = m.into();
    am.sign_mode = Set(mode.as_str().into());
    am.updated_at = Set(super::now());
    am.update(db).await?;
    Ok(Some(previous))
}

/// Every merchant, without secrets (listing never decrypts).
pub async fn list(db: &DatabaseConnection) -> Result<Vec<merchant::Model>, DbErr> {
    let mut rows = merchant::Entity::find()
        .order_by_asc(merchant::Column::Pid)
        .all(db)
        .await?;
    for r in &mut rows {
        r.secret = String::new();
        r.previous_secret = None;
    }
    Ok(rows)
}

/// Every merchant's pid by internal id (orders store the id; operators know the pid).
pub async fn pids_by_id(
    db: &DatabaseConnection,
) -> Result<std::collections::HashMap<i64, i64>, DbErr> {
    use sea_orm::QuerySelect;
    let rows: Vec<(i64, i64)> = merchant::Entity::find()
        .select_only()
        .column(merchant::Column::Id)
        .column(merchant::Column::Pid)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Start-up check: the configured master key must be the one recorded in the database (or the
/// previous one during a rotation). The first start records it. Then every secret still in
/// plaintext (an upgrade) or sealed by the previous key is re-sealed under the current key.
/// Returns how many rows were re-sealed.
pub async fn secure_secrets(
    db: &DatabaseConnection,
    keys: &KeyStore,
) -> Result<usize, MerchantError> {
    let current = keys.fingerprint();
    let stored = setting::Entity::find_by_id(FINGERPRINT_KEY.to_string())
        .one(db)
        .await?;
    match stored {
        None => {
            let row = setting::ActiveModel {
                key: Set(FINGERPRINT_KEY.into()),
                value: Set(current.clone()),
                updated_at: Set(super::now()),
            };
            if let Err(e) = setting::Entity::insert(row).exec(db).await {
                // Another instance recorded it first: it must be ours too.
                let again = setting::Entity::find_by_id(FINGERPRINT_KEY.to_string())
                    .one(db)
                    .await?
                    .ok_or(e)?;
                if !keys.fingerprints().contains(&again.value) {
                    return Err(MerchantError::WrongMasterKey {
                        configured: current,
                        stored: again.value,
                    });
                }
            }
        }
        Some(s) if keys.fingerprints().contains(&s.value) => {}
        Some(s) => {
            return Err(MerchantError::WrongMasterKey {
                configured: current,
                stored: s.value,
            });
        }
    }
    let n = reseal_all(db, keys).await?;
    set_fingerprint(db, &current).await?;
    Ok(n)
}

/// Re-seals every merchant secret that is plaintext or sealed by an older key. Each row is
/// updated with a compare-and-swap on its old value, so a concurrent change is never overwritten.
pub async fn reseal_all(
    db: &impl sea_orm::ConnectionTrait,
    keys: &KeyStore,
) -> Result<usize, MerchantError> {
    let mut n = 0;
    for m in merchant::Entity::find().all(db).await? {
        let sealed = keys
            .reseal(&m.secret, &aad(m.pid))
            .map_err(|source| MerchantError::Secret { pid: m.pid, source })?;
        if let Some(new) = sealed {
            let res = merchant::Entity::update_many()
                .col_expr(
                    merchant::Column::Secret,
                    sea_orm::sea_query::Expr::value(new),
                )
                .filter(merchant::Column::Id.eq(m.id))
                .filter(merchant::Column::Secret.eq(m.secret.clone()))
                .exec(db)
                .await?;
            n += res.rows_affected as usize;
        }
        n += super::merchant_access::reseal_previous(db, keys, &m).await?;
    }
    Ok(n)
}

pub async fn set_fingerprint(
    db: &impl sea_orm::ConnectionTrait,
    fingerprint: &str,
) -> Result<(), DbErr> {
    setting::Entity::update_many()
        .col_expr(
            setting::Column::Value,
            sea_orm::sea_query::Expr::value(fingerprint),
        )
        .col_expr(
            setting::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(super::now()),
        )
        .filter(setting::Column::Key.eq(FINGERPRINT_KEY))
        .exec(db)
        .await?;
    Ok(())
}

/// Replaces a merchant's secret with a fresh random one and returns the merchant with it (shown
/// once). The old secret keeps verifying requests for `overlap_secs` (0 = it stops at once;
/// `secret_overlap_secs`). Refuses the default merchant (pid 1000), whose secret is
/// `api_auth_token` and would be restored from the config at the next start.
pub async fn rotate_secret(
    db: &DatabaseConnection,
    keys: &KeyStore,
    pid: i64,
    overlap_secs: u32,
) -> Result<Option<Merchant>, MerchantError> {
    if pid == DEFAULT_PID {
        return Err(MerchantError::Invalid(
            "the secret of merchant 1000 is api_auth_token; change it in the config".into(),
        ));
    }
    let Some(m) = row_by_pid(db, pid).await? else {
        return Ok(None);
    };
    let secret = generate_secret();
    let (previous, until) = super::merchant_access::previous_for_rotation(&m, keys, overlap_secs)?;
    let mut am: merchant::ActiveModel = m.into();
    am.previous_secret = Set(previous);
    am.previous_secret_until = Set(until);
    am.secret = Set(keys.encrypt(&secret, &aad(pid)));
    am.updated_at = Set(super::now());
    let m = am.update(db).await?;
    Merchant::open(m, keys).map(Some)
}

/// Renames and/or enables/disables a merchant (admin API). A disabled merchant's requests are
/// refused; its orders still complete. Refuses pid 1000, which mirrors `api_auth_token`.
pub async fn update(
    db: &DatabaseConnection,
    pid: i64,
    name: Option<&str>,
    enabled: Option<bool>,
) -> Result<Option<merchant::Model>, MerchantError> {
    if pid == DEFAULT_PID {
        return Err(MerchantError::Invalid(
            "merchant 1000 follows api_auth_token; change it in the config".into(),
        ));
    }
    let Some(m) = row_by_pid(db, pid).await? else {
        return Ok(None);
    };
    let mut am: merchant::ActiveModel = m.into();
    if let Some(n) = name {
        let n = n.trim();
        if n.is_empty() || n.chars().count() > 64 {
            return Err(MerchantError::Invalid(
                "name must be 1 to 64 characters".into(),
            ));
        }
        am.name = Set(n.to_string());
    }
    if let Some(e) = enabled {
        am.enabled = Set(e);
    }
    am.updated_at = Set(super::now());
    let mut m = am.update(db).await?;
    m.secret = String::new();
    Ok(Some(m))
}

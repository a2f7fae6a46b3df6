//! `epusdt import upstream`: brings an assimon/epusdt or GMWalletApp/epusdt shop's wallets,
//! merchants (API keys, secrets sealed under the master key) and order history into our
//! (migrated) database, idempotently: a re-run adds nothing twice and says what it skipped.
//!
//! Money safety: an imported paid order is terminal and its transaction hash is recorded in
//! `transfers` (log index -1, block hash unknown), so the watcher's re-mined-transfer check
//! treats the real transfer as already recorded and never credits it again. Waiting upstream
//! orders come in expired with their original window, so a payment made on time still pays
//! them (expired → paid) and their amount slot stays reserved for the grace period.
//! This module reads the upstream database only through `store::upstream` and never writes it.
use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, Set};

use crate::{
    config::{Config, Secret},
    crypto::keys::KeyStore,
    service::{
        merchant::{self, DEFAULT_PID, MerchantError},
        wallet::{self, WalletError},
    },
    store::{
        entities::wallet as wallet_entity,
        upstream::{self, Variant},
    },
};

mod orders;

/// What to import from where.
pub struct ImportOptions {
    /// The upstream database URL (`mysql://…`, `postgres://…`, `sqlite://<file>`).
    pub from: String,
    /// Upstream's `*_table_prefix` (empty when none).
    pub table_prefix: String,
    /// assimon's `api_auth_token` (its merchant secret lives in its `.env`, not the database);
    /// default: our `api_auth_token`.
    pub api_token: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("upstream database: {0}")]
    Upstream(DbErr),
    #[error(
        "an assimon/epusdt database has no merchant secret: its orders belong to the api_auth_token of its .env. Keep api_auth_token in the config (or pass --api-token) and run the import again"
    )]
    NoApiToken,
    #[error("{0}")]
    Merchant(#[from] MerchantError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Counts per kind of record, and one line per record skipped or worth a look.
#[derive(Debug, Default)]
pub struct Summary {
    pub variant: Option<&'static str>,
    pub wallets: Counts,
    pub merchants: Counts,
    pub orders: Counts,
    /// Paid orders whose transaction hash went into `transfers`.
    pub hashes_recorded: usize,
    pub notes: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub imported: usize,
    /// Already here (a previous run, or the same record added by hand).
    pub present: usize,
    /// Not importable (unsupported network or token, malformed values): see the notes.
    pub skipped: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} imported, {} already present, {} skipped",
            self.imported, self.present, self.skipped
        )
    }
}

/// Runs the import into `db` (migrated) and returns the summary.
pub async fn import_upstream(
    db: &DatabaseConnection,
    keys: &KeyStore,
    config: &Config,
    opts: &ImportOptions,
) -> Result<Summary, ImportError> {
    let up = upstream::open(&opts.from, &opts.table_prefix)
        .await
        .map_err(ImportError::Upstream)?;
    let mut sum = Summary {
        variant: Some(up.variant.as_str()),
        ..Default::default()
    };
    // Merchants first: orders refer to them. Upstream key id → our merchant id.
    let mut merchants = std::collections::HashMap::new();
    match up.variant {
        Variant::Assimon => {
            let token = opts
                .api_token
                .as_ref()
                .or(config.api_auth_token.as_ref())
                .ok_or(ImportError::NoApiToken)?;
            let id = import_merchant(
                db,
                keys,
                config,
                &mut sum,
                DEFAULT_PID,
                merchant::DEFAULT_NAME,
                token.expose(),
                true,
            )
            .await?;
            if let Some(id) = id {
                merchants.insert(String::new(), id);
            }
        }
        Variant::GmWallet => {
            for k in up.api_keys().await.map_err(ImportError::Upstream)? {
                let Some(pid) = k.pid.parse::<i64>().ok().filter(|p| *p > 0) else {
                    sum.merchants.skipped += 1;
                    sum.notes.push(format!(
                        "api key `{}`: pid `{}` is not a positive number (our pids are numbers); not imported",
                        k.name, k.pid
                    ));
                    continue;
                };
                if k.secret.is_empty() {
                    sum.merchants.skipped += 1;
                    sum.notes
                        .push(format!("api key pid {pid}: no secret; not imported"));
                    continue;
                }
                let id = import_merchant(
                    db, keys, config, &mut sum, pid, &k.name, &k.secret, k.enabled,
                )
                .await?;
                if let Some(id) = id {
                    merchants.insert(k.id.clone(), id);
                    // upstream's seeded default key: orders without api_key_id are its.
                    if pid == DEFAULT_PID {
                        merchants.insert(String::new(), id);
                    }
                }
            }
        }
    }
    import_wallets(db, &up, &mut sum).await?;
    orders::import_orders(db, config, &up, &merchants, &mut sum).await?;
    Ok(sum)
}

/// One merchant: added, or recognised as present (same pid and secret). A pid that exists
/// here with another secret is left as it is, and said so. Returns our merchant id.
#[allow(clippy::too_many_arguments)]
async fn import_merchant(
    db: &DatabaseConnection,
    keys: &KeyStore,
    config: &Config,
    sum: &mut Summary,
    pid: i64,
    name: &str,
    secret: &str,
    enabled: bool,
) -> Result<Option<i64>, ImportError> {
    let id = match merchant::find_by_pid(db, keys, pid).await? {
        Some(m) if m.secret.expose() == secret => {
            sum.merchants.present += 1;
            m.id
        }
        Some(m) => {
            sum.merchants.present += 1;
            sum.notes.push(format!(
                "merchant pid {pid} already exists here with another secret: kept ours; the shop's requests signed with upstream's secret will be refused until they match"
            ));
            m.id
        }
        None => match merchant::add_imported(db, keys, pid, name, secret, enabled).await {
            Ok(m) => {
                sum.merchants.imported += 1;
                m.id
            }
            Err(MerchantError::PidTaken(_)) => {
                sum.merchants.present += 1;
                match merchant::find_by_pid(db, keys, pid).await? {
                    Some(m) => m.id,
                    None => return Ok(None),
                }
            }
            Err(e) => return Err(e.into()),
        },
    };
    // pid 1000 is also our v1 merchant: a configured api_auth_token replaces its secret at every
    // start; without one, the imported merchant is kept as it is.
    if pid == DEFAULT_PID
        && config
            .api_auth_token
            .as_ref()
            .is_some_and(|t| t.expose() != secret)
    {
        sum.notes.push(format!(
            "merchant pid {DEFAULT_PID} is also the v1 merchant of api_auth_token: set api_auth_token to its secret (or unset it), or `serve` will overwrite it"
        ));
    }
    Ok(Some(id))
}

async fn import_wallets(
    db: &DatabaseConnection,
    up: &upstream::Upstream,
    sum: &mut Summary,
) -> Result<(), ImportError> {
    for w in up.wallets().await.map_err(ImportError::Upstream)? {
        let Some(net) = crate::domain::network::Networks::presets().usable(&w.network) else {
            sum.wallets.skipped += 1;
            sum.notes.push(format!(
                "wallet {} on {}: network not supported here; not imported",
                w.address, w.network
            ));
            continue;
        };
        match wallet::add(
            db,
            &crate::domain::network::Networks::presets(),
            net.as_str(),
            &w.address,
            None,
            &w.remark,
        )
        .await
        {
            Ok(row) => {
                sum.wallets.imported += 1;
                if !w.enabled {
                    let mut am: wallet_entity::ActiveModel = row.into();
                    am.enabled = Set(false);
                    am.update(db).await?;
                }
            }
            Err(WalletError::Exists { .. }) => sum.wallets.present += 1,
            Err(WalletError::Address(e)) => {
                sum.wallets.skipped += 1;
                sum.notes.push(format!(
                    "wallet `{}` on {net}: {e}; not imported",
                    w.address
                ));
            }
            Err(WalletError::Db(e)) => return Err(e.into()),
            Err(e) => {
                sum.wallets.skipped += 1;
                sum.notes.push(format!("wallet `{}`: {e}", w.address));
            }
        }
    }
    Ok(())
}

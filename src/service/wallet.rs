//! Receive wallets: watch-only addresses per network, optionally owned by one merchant
//! (`merchant_id = NULL` means shared by all). Addresses are validated and normalised by
//! `domain::network` before they are stored, so matching can compare strings exactly.
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, Set,
};

use crate::{
    domain::network::{Network, Networks},
    store::{self, entities::wallet},
};

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("unknown network `{0}`; use one of: {1}")]
    Network(String, String),
    #[error("invalid address: {0}")]
    Address(#[from] crate::domain::address::AddressError),
    #[error("wallet {network} {address} already exists")]
    Exists { network: String, address: String },
    #[error("no wallet matches `{0}`")]
    NotFound(String),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Adds a receive wallet of `network` (a name or alias of `networks`). A wallet receives every
/// token of its network (USDT and USDC alike): orders tell them apart by token.
pub async fn add(
    db: &DatabaseConnection,
    networks: &Networks,
    network: &str,
    address: &str,
    merchant_id: Option<i64>,
    label: &str,
) -> Result<wallet::Model, WalletError> {
    let net = networks
        .usable(network)
        .ok_or_else(|| WalletError::Network(network.into(), networks.usable_names()))?;
    let address = networks.parse_address(net, address)?;
    let row = wallet::ActiveModel {
        merchant_id: Set(merchant_id),
        network: Set(net.as_str().into()),
        address: Set(address.clone()),
        label: Set(label.chars().take(64).collect()),
        enabled: Set(true),
        created_at: Set(super::now()),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(m) => Ok(m),
        Err(e)
            if store::is_unique_violation(
                &e,
                "wallets_network_address_key",
                "wallets.network, wallets.address",
            ) =>
        {
            Err(WalletError::Exists {
                network: net.as_str().into(),
                address,
            })
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<wallet::Model>, DbErr> {
    wallet::Entity::find()
        .order_by_asc(wallet::Column::Id)
        .all(db)
        .await
}

/// Enables or disables by id or by address. Returns the number of wallets changed.
pub async fn set_enabled(
    db: &DatabaseConnection,
    id_or_address: &str,
    enabled: bool,
) -> Result<u64, WalletError> {
    let key = id_or_address.trim();
    let cond = match key.parse::<i64>() {
        Ok(id) => Condition::all().add(wallet::Column::Id.eq(id)),
        Err(_) => Condition::any()
            .add(wallet::Column::Address.eq(key))
            .add(wallet::Column::Address.eq(key.to_ascii_lowercase())),
    };
    let res = wallet::Entity::update_many()
        .col_expr(
            wallet::Column::Enabled,
            sea_orm::sea_query::Expr::value(enabled),
        )
        .filter(cond)
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        // Distinguish "no such wallet" from "already in that state".
        let exists = wallet::Entity::find()
            .filter(
                Condition::any()
                    .add(wallet::Column::Address.eq(key))
                    .add(wallet::Column::Address.eq(key.to_ascii_lowercase())),
            )
            .one(db)
            .await?;
        if exists.is_none() && key.parse::<i64>().is_err() {
            return Err(WalletError::NotFound(key.into()));
        }
    }
    Ok(res.rows_affected)
}

/// Enabled wallets a merchant may receive on for a network: its own and the shared ones.
pub async fn receiving(
    db: &impl sea_orm::ConnectionTrait,
    network: Network,
    merchant_id: i64,
) -> Result<Vec<wallet::Model>, DbErr> {
    wallet::Entity::find()
        .filter(wallet::Column::Network.eq(network.as_str()))
        .filter(wallet::Column::Enabled.eq(true))
        .filter(
            Condition::any()
                .add(wallet::Column::MerchantId.is_null())
                .add(wallet::Column::MerchantId.eq(merchant_id)),
        )
        .order_by_asc(wallet::Column::Id)
        .all(db)
        .await
}

/// [`receiving`] through the process' cache (`service::cache`). An empty answer is never
/// cached, so a wallet added by another process is used at once.
pub async fn receiving_cached(
    db: &impl sea_orm::ConnectionTrait,
    cache: &super::cache::TtlMap<(Network, i64), super::cache::Wallets>,
    network: Network,
    merchant_id: i64,
) -> Result<super::cache::Wallets, DbErr> {
    let key = (network, merchant_id);
    if let Some(w) = cache.get(&key) {
        return Ok(w);
    }
    let w = std::sync::Arc::new(receiving(db, network, merchant_id).await?);
    if !w.is_empty() {
        cache.put(key, w.clone());
    }
    Ok(w)
}

/// Changes a wallet's label and/or enabled flag by id (admin API). `None` leaves a field as is.
pub async fn update(
    db: &DatabaseConnection,
    id: i64,
    label: Option<&str>,
    enabled: Option<bool>,
) -> Result<wallet::Model, WalletError> {
    let Some(row) = wallet::Entity::find_by_id(id).one(db).await? else {
        return Err(WalletError::NotFound(id.to_string()));
    };
    let mut am: wallet::ActiveModel = row.into();
    if let Some(l) = label {
        am.label = Set(l.trim().chars().take(64).collect());
    }
    if let Some(e) = enabled {
        am.enabled = Set(e);
    }
    Ok(am.update(db).await?)
}

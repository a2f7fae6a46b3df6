//! Fiat → USDT rates: `forced_usdt_rate` (CNY, upstream semantics), an admin-set rate in the
//! settings table (`rate.<FIAT>`), or the configured `usdt_rates`. A missing rate is an error
//! (protocol code 10006) — never a silent default.
//!
//! Native coins (TRX, ETH, BNB, …) also need a price, USDT per 1 coin: an admin-set one
//! (`price.<COIN>` in the settings table, by `epusdt rate price` or the admin API; one per
//! symbol, shared by every network where the coin is configured), else the token section's
//! `usdt_price`. No price → 10006, never a default. USDC is priced like USDT (no price).
use rust_decimal::Decimal;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};

use crate::{
    config::Config,
    domain::network::{Network, Token},
    store::entities::setting,
};

/// Fiat units per 1 USDT for `currency`, or `None` when no rate is configured.
pub async fn usdt_rate(
    db: &impl ConnectionTrait,
    config: &Config,
    currency: &str,
) -> Result<Option<Decimal>, DbErr> {
    if currency == "USDT" {
        return Ok(Some(Decimal::ONE));
    }
    if currency == "CNY"
        && let Some(r) = config.forced_usdt_rate
    {
        return Ok(Some(r));
    }
    if let Some(s) = setting::Entity::find_by_id(format!("rate.{currency}"))
        .one(db)
        .await?
        && let Ok(r) = Decimal::from_str_exact(s.value.trim())
        && r > Decimal::ZERO
    {
        return Ok(Some(r));
    }
    Ok(config.usdt_rates.get(currency).copied())
}

/// Is any fiat rate set at all: in the config, or by an admin (`rate.<FIAT>` settings)?
pub async fn any_rate(db: &impl ConnectionTrait, config: &Config) -> Result<bool, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    if config.has_configured_rate() {
        return Ok(true);
    }
    Ok(setting::Entity::find()
        .filter(setting::Column::Key.starts_with("rate."))
        .one(db)
        .await?
        .is_some())
}

/// Stores an admin-set rate (`epusdt rate set CNY 7.2`).
pub async fn set_rate(
    db: &impl ConnectionTrait,
    currency: &str,
    rate: Decimal,
) -> Result<(), DbErr> {
    put_setting(db, format!("rate.{currency}"), rate).await
}

/// Writes (or overwrites) one decimal setting.
async fn put_setting(db: &impl ConnectionTrait, key: String, value: Decimal) -> Result<(), DbErr> {
    let row = setting::ActiveModel {
        key: Set(key),
        value: Set(value.normalize().to_string()),
        updated_at: Set(super::now()),
    };
    setting::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(setting::Column::Key)
                .update_columns([setting::Column::Value, setting::Column::UpdatedAt])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Where a rate comes from, in the order [`usdt_rate`] looks.
pub const SOURCE_FORCED: &str = "forced_usdt_rate";
pub const SOURCE_ADMIN: &str = "admin";
pub const SOURCE_CONFIG: &str = "config";

/// Every fiat rate the gateway knows (admin-set, configured, forced CNY) with the one in effect
/// and its source, sorted by currency.
pub async fn list(
    db: &impl ConnectionTrait,
    config: &Config,
) -> Result<Vec<(String, Decimal, &'static str)>, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let admin_set: std::collections::BTreeMap<String, Decimal> = setting::Entity::find()
        .filter(setting::Column::Key.starts_with("rate."))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|s| {
            let cur = s.key.strip_prefix("rate.")?.to_string();
            let r = Decimal::from_str_exact(s.value.trim()).ok()?;
            (r > Decimal::ZERO).then_some((cur, r))
        })
        .collect();
    let mut currencies: std::collections::BTreeSet<String> =
        config.usdt_rates.keys().cloned().collect();
    currencies.extend(admin_set.keys().cloned());
    if config.forced_usdt_rate.is_some() {
        currencies.insert("CNY".into());
    }
    let mut out = Vec::new();
    for c in currencies {
        let found = match (c.as_str(), config.forced_usdt_rate) {
            ("CNY", Some(r)) => Some((r, SOURCE_FORCED)),
            _ => admin_set
                .get(&c)
                .map(|r| (*r, SOURCE_ADMIN))
                .or_else(|| config.usdt_rates.get(&c).map(|r| (*r, SOURCE_CONFIG))),
        };
        if let Some((r, source)) = found {
            out.push((c, r, source));
        }
    }
    Ok(out)
}

/// Where a native coin's price comes from, in the order [`coin_price`] looks.
pub const PRICE_SOURCE_ADMIN: &str = "admin";
pub const PRICE_SOURCE_CONFIG: &str = "usdt_price";

fn price_key(coin: Token) -> String {
    format!("price.{coin}")
}

/// USDT per 1 `coin` and where it came from: the admin-set price, else `configured` (the token
/// section's `usdt_price`); `None` when neither exists.
pub async fn coin_price(
    db: &impl ConnectionTrait,
    coin: Token,
    configured: Option<Decimal>,
) -> Result<Option<(Decimal, &'static str)>, DbErr> {
    if let Some(s) = setting::Entity::find_by_id(price_key(coin)).one(db).await?
        && let Ok(p) = Decimal::from_str_exact(s.value.trim())
        && p > Decimal::ZERO
    {
        return Ok(Some((p, PRICE_SOURCE_ADMIN)));
    }
    Ok(configured
        .filter(|p| *p > Decimal::ZERO)
        .map(|p| (p, PRICE_SOURCE_CONFIG)))
}

/// Stores an admin-set coin price (`epusdt rate price TRX 0.25`: USDT per 1 coin).
pub async fn set_price(
    db: &impl ConnectionTrait,
    coin: Token,
    price: Decimal,
) -> Result<(), DbErr> {
    put_setting(db, price_key(coin), price).await
}

/// The native coins configured anywhere (symbol, the networks where each is configured).
pub fn configured_coins(config: &Config) -> std::collections::BTreeMap<Token, Vec<Network>> {
    let mut out: std::collections::BTreeMap<Token, Vec<Network>> = Default::default();
    for n in config.registry().iter() {
        if let Some(t) = n.native() {
            out.entry(t.token).or_default().push(n.network);
        }
    }
    out
}

/// Every configured native coin on every network with its price in effect and source (`None`
/// when unpriced: orders in it fail with 10006).
pub async fn prices(
    db: &impl ConnectionTrait,
    config: &Config,
) -> Result<Vec<(Network, Token, Option<(Decimal, &'static str)>)>, DbErr> {
    let mut out = Vec::new();
    for n in config.registry().iter() {
        if let Some(t) = n.native() {
            out.push((
                n.network,
                t.token,
                coin_price(db, t.token, t.usdt_price).await?,
            ));
        }
    }
    Ok(out)
}
